"""Numba kernel of the one-pass SGD simulator; called only by :func:`onepass.simulate`.

``sgd_run`` is a template: :func:`dmft._jit.specialise` binds ``grad`` and ``teacher`` to
a model's functions and compiles it with a disk cache.
"""
import math

import numpy as np


def sgd_run(params, X, Xstar, means, sqrt_lam, cum_probs, labels, hard,
            lr_steps, adagrad, lr0, b0, snap_steps, label_dim, noise_dim, seed):
    """One-pass SGD ``X <- X - (gamma_j/d) grad_r f(r_j, y_j) a_j^T`` with a fresh sample per step.

    X: (k, d) start, modified in place; Xstar: (k_star, d); means, sqrt_lam: (C, d);
    cum_probs: (C,) cumulative class probabilities; labels: (C, label_dim) hard labels;
    lr_steps: (n_steps,) learning rate per step (ignored with ``adagrad``);
    snap_steps: (n_snap,) increasing step counts at which X is recorded.
    Returns snapshots (n_snap, k, d) and the learning rate in force at each snapshot.
    AdaGrad-Norm: ``gamma_j = lr0 / sqrt(b0^2 + d^-2 sum_{l<=j} |g_l|^2 |a_l|^2)``.
    """
    np.random.seed(seed)
    k, d = X.shape
    ks = Xstar.shape[0]
    C = means.shape[0]
    n_snap = snap_steps.size
    snaps = np.empty((n_snap, k, d))
    lr_snap = np.empty(n_snap)
    a = np.empty(d)
    r = np.empty(k)
    rs = np.empty(ks)
    g = np.empty(k)
    y = np.empty(label_dim)
    eps = np.empty(noise_dim)
    acc = 0.0
    gamma = lr0 / math.sqrt(b0 * b0) if adagrad else (lr_steps[0] if lr_steps.size else 0.0)
    j = 0
    for s in range(n_snap):
        while j < snap_steps[s]:
            u = np.random.random()
            c = 0
            while c < C - 1 and u > cum_probs[c]:
                c += 1
            a2 = 0.0
            for i in range(d):
                a[i] = means[c, i] + sqrt_lam[c, i] * np.random.standard_normal()
                a2 += a[i] * a[i]
            for q in range(k):
                acc_r = 0.0
                for i in range(d):
                    acc_r += X[q, i] * a[i]
                r[q] = acc_r
            if hard:
                for m in range(label_dim):
                    y[m] = labels[c, m]
            else:
                for q in range(ks):
                    acc_r = 0.0
                    for i in range(d):
                        acc_r += Xstar[q, i] * a[i]
                    rs[q] = acc_r
                for m in range(noise_dim):
                    eps[m] = np.random.standard_normal()
                teacher(rs, eps, params, y)  # noqa: F821 (bound by specialise)
            grad(r, y, params, g)  # noqa: F821
            if adagrad:
                g2 = 0.0
                for q in range(k):
                    g2 += g[q] * g[q]
                acc += g2 * a2 / (d * d)
                gamma = lr0 / math.sqrt(b0 * b0 + acc)
            else:
                gamma = lr_steps[j]
            for q in range(k):
                step = gamma * g[q] / d
                for i in range(d):
                    X[q, i] -= step * a[i]
            j += 1
        snaps[s] = X
        lr_snap[s] = gamma
    return snaps, lr_snap
