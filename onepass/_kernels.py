"""Numba kernel of the one-pass SGD simulator; called only by :func:`onepass.simulate`.

``sgd_steps`` is a template: :func:`dmft._jit.specialise` binds ``grad`` and ``teacher``
to a model's functions and compiles it with a disk cache. The ``d`` fresh normals of a step
are drawn inside the kernel by :func:`dmft._kernels_normal.fill_normals` (vectorised,
~7x cheaper than numpy's ziggurat, and never written to memory in blocks); classes and
label noise (O(1) per step) are drawn by the caller.
"""
import math

import numpy as np

from dmft._kernels_normal import fill_normals


def sgd_steps(params, X, Xstar, means, sqrt_lam, classes, key, gamma_rng, first_step, eps, labels, hard, lr_steps,
              adagrad, lr0, b0, acc, label_dim):
    """Steps ``X <- X - (gamma_j/d) grad_r f(r_j, y_j) a_j^T``, ``a_j = mu_c + sqrt(lam_c) xi_j``.

    X: (k, d) modified in place; Xstar: (k_star, d); means, sqrt_lam: (C, d);
    classes: (n,) class of each step; ``xi_j`` is block ``first_step + j`` of the normal stream
    ``(key, gamma_rng)`` (uint64; block length d rounded up to even); eps: (n, noise_dim)
    label noise; labels: (C, label_dim) hard labels; lr_steps: (n,) learning rates
    (ignored with ``adagrad``, where ``gamma_j = lr0/sqrt(b0^2 + acc_j)`` and
    ``acc_j = acc + d^-2 sum_{l<=j} |g_l|^2 |a_l|^2``).
    Returns ``(acc, gamma)`` after the last step.
    """
    k, d = X.shape
    ks = Xstar.shape[0]
    n = classes.shape[0]
    xi = np.empty(d + d % 2)
    a = np.empty(d)
    r = np.empty(k)
    rs = np.empty(ks)
    g = np.empty(k)
    y = np.empty(label_dim)
    gamma = 0.0
    for j in range(n):
        c = classes[j]
        fill_normals(key, gamma_rng, np.uint64(first_step + j) * np.uint64(xi.shape[0]), xi)
        a2 = 0.0
        for i in range(d):
            a[i] = means[c, i] + sqrt_lam[c, i] * xi[i]
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
            teacher(rs, eps[j], params, y)  # noqa: F821 (bound by specialise)
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
    return acc, gamma
