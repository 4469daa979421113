"""Numba kernels of the one-pass SGD simulator; called only by :func:`onepass.simulate`.

``sgd_steps`` and ``heldout_sums`` are templates: :func:`dmft._jit.specialise` binds
``grad``, ``teacher`` (and ``loss``) to a model's functions and compiles them with a disk cache. The ``d`` fresh normals of a step
are drawn inside the kernel (:mod:`dmft._kernels_normal`) in the same loop that forms the
sample and its squared norm, and the update of step ``j`` is applied in the same pass over
``X`` as the student's preactivations of step ``j + 1``: two passes over ``d`` per step, and
the normals never go through memory. Classes and label noise (O(1) per step) are drawn by
the caller.
"""
import math

import numpy as np

from dmft._kernels_normal import normal_pair, word


def sgd_steps(params, X, Xstar, means, sqrt_lam, d, classes, key, gamma_rng, first_step, eps, labels, hard, lr_steps,
              adagrad, lr0, b0, acc, label_dim):
    """Steps ``X <- X - (gamma_j/d) grad_r f(r_j, y_j) a_j^T``, ``a_j = mu_c + sqrt(lam_c) xi_j``.

    All arrays over coordinates have ``D = d + d % 2`` columns (an odd ``d`` gets a zero
    column in X, Xstar, means and sqrt_lam, so its extra normal is multiplied by 0).
    X: (k, D) modified in place; Xstar: (k_star, D); means, sqrt_lam: (C, D);
    classes: (n,) class of each step; ``xi_j`` is block ``first_step + j`` of the normal stream
    ``(key, gamma_rng)`` (uint64; words ``(first_step + j) D ... + D - 1``, coordinates ``i``
    and ``D/2 + i`` from the pair of words ``i``, ``D/2 + i``); eps: (n, noise_dim)
    label noise; labels: (C, label_dim) hard labels; lr_steps: (n,) learning rates
    (ignored with ``adagrad``, where ``gamma_j = lr0/sqrt(b0^2 + acc_j)`` and
    ``acc_j = acc + d^-2 sum_{l<=j} |g_l|^2 |a_l|^2``).
    Returns ``(acc, gamma)`` after the last step.
    """
    k, D = X.shape
    h = D // 2
    ks = Xstar.shape[0]
    n = classes.shape[0]
    a = np.zeros(D)
    a_prev = np.zeros(D)
    pending = np.zeros(k)  # gamma g_q / d of the previous step, not yet applied to X
    r = np.empty(k)
    rs = np.empty(ks)
    g = np.empty(k)
    y = np.empty(label_dim)
    gamma = 0.0
    for j in range(n):
        c = classes[j]
        key_j = key + np.uint64(first_step + j) * np.uint64(D) * gamma_rng
        a2 = 0.0
        for i in range(h):
            x1, x2 = normal_pair(word(key_j, gamma_rng, np.uint64(i)), word(key_j, gamma_rng, np.uint64(h + i)))
            u = means[c, i] + sqrt_lam[c, i] * x1
            v = means[c, h + i] + sqrt_lam[c, h + i] * x2
            a[i] = u
            a[h + i] = v
            a2 += u * u + v * v
        for q in range(k):
            s = pending[q]
            acc_r = 0.0
            for i in range(D):
                x = X[q, i] - s * a_prev[i]
                X[q, i] = x
                acc_r += x * a[i]
            r[q] = acc_r
        if hard:
            for m in range(label_dim):
                y[m] = labels[c, m]
        else:
            for q in range(ks):
                acc_r = 0.0
                for i in range(D):
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
            pending[q] = gamma * g[q] / d
        a, a_prev = a_prev, a
    for q in range(k):
        s = pending[q]
        for i in range(D):
            X[q, i] -= s * a_prev[i]
    return acc, gamma



def heldout_sums(params, W, means, sqrt_lam, classes, key, gamma_rng, eps, labels, hard, trace_ratio, k, ks, label_dim,
                 out):
    """Loss statistics of ``T`` snapshots on one held-out set; called only by :func:`onepass.simulate`.

    Sample ``s`` is ``a_s = mu_c + sqrt(lam_c) xi_s`` with ``c = classes[s]`` and ``xi_s`` block
    ``s`` of the normal stream ``(key, gamma_rng)``, laid out as the blocks of :func:`sgd_steps`;
    its preactivations are ``W a_s`` with W: (T k + ks, D) the rows of every snapshot
    ``X_t`` then ``X*`` (``D`` even, padded as in :func:`sgd_steps`); its label is the hard
    label of ``c`` or the teacher's ``y(r*, eps[s])``. With ``g = grad_r f(r, y)`` it writes
    ``out`` (5, T): mean loss, sum of squared deviations of the loss (Welford), sums of
    ``|g|^2``, of ``(Tr K_c/d) |g|^2`` (``trace_ratio[c]``) and, if ``ks == k``, of
    ``g . (r - r*)``.
    """
    J, D = W.shape
    T = out.shape[1]
    h = D // 2
    a = np.empty(D)
    rw = np.empty(J)
    r = np.empty(k)
    rs = np.empty(ks)
    g = np.empty(k)
    y = np.empty(label_dim)
    out[:, :] = 0.0
    for s in range(classes.shape[0]):
        c = classes[s]
        key_s = key + np.uint64(s) * np.uint64(D) * gamma_rng
        for i in range(h):
            x1, x2 = normal_pair(word(key_s, gamma_rng, np.uint64(i)), word(key_s, gamma_rng, np.uint64(h + i)))
            a[i] = means[c, i] + sqrt_lam[c, i] * x1
            a[h + i] = means[c, h + i] + sqrt_lam[c, h + i] * x2
        for j in range(J):
            acc = 0.0
            for i in range(D):
                acc += W[j, i] * a[i]
            rw[j] = acc
        for q in range(ks):
            rs[q] = rw[T * k + q]
        if hard:
            for q in range(label_dim):
                y[q] = labels[c, q]
        else:
            teacher(rs, eps[s], params, y)  # noqa: F821 (bound by specialise)
        for t in range(T):
            for q in range(k):
                r[q] = rw[t * k + q]
            loss_s = loss(r, y, params)  # noqa: F821
            delta = loss_s - out[0, t]
            out[0, t] += delta / (s + 1)
            out[1, t] += delta * (loss_s - out[0, t])
            grad(r, y, params, g)  # noqa: F821
            g2 = 0.0
            for q in range(k):
                g2 += g[q] * g[q]
            out[2, t] += g2
            out[3, t] += trace_ratio[c] * g2
            if ks == k:
                gr = 0.0
                for q in range(k):
                    gr += g[q] * (r[q] - rs[q])
                out[4, t] += gr
