"""Numba kernels behind :func:`dmft.simulate` (its only caller).

``sgd_steps``, ``per_sample``, ``row_losses`` and ``teacher_labels`` are templates: :func:`dmft._jit.specialise`
binds the model's functions (``grad``, ``loss``, ``teacher``) and compiles them with a
disk cache. Kernels see only arrays and scalars.
"""
import numpy as np
from numba import njit

from .._config import FASTMATH

#: re-association lets LLVM vectorise the dot products (results stay deterministic)
_FM = set(FASTMATH)


@njit(cache=True, fastmath=_FM)
def predict(X, i, theta, r):
    """``r = theta^T x_i`` (k,) for row ``i`` of ``X`` (n, d) and ``theta`` (d, k)."""
    d, k = theta.shape
    if k == 1:
        acc = 0.0
        for a in range(d):
            acc += X[i, a] * theta[a, 0]
        r[0] = acc
    else:
        for q in range(k):
            r[q] = 0.0
        for a in range(d):
            xa = X[i, a]
            for q in range(k):
                r[q] += xa * theta[a, q]


def sgd_steps(params, X, Y, theta, idx, start, c, decay):
    """Mini-batch SGD steps on a fixed data set, in place on ``theta`` (d, k).

    Step ``s`` uses the batch ``idx[start[s]:start[s+1]]`` (row indices of ``X``), its step
    ``c[s]`` and its ridge factor ``decay[s]`` (arrays of ``start.size - 1`` entries):

        theta <- decay[s] * theta - c[s] * sum_{i in batch} x_i l'(theta^T x_i, y_i)^T

    with every gradient of the batch taken at the same (pre-step) ``theta``. Cost per
    step O(batch * d * k): predictions are formed only for the batch. For ``k = 1`` the
    last update of a step also forms the prediction of the next step's first sample in
    the same pass (same sums; the next row streams in while ``theta`` is updated).
    """
    d, k = theta.shape
    n_steps = start.size - 1
    maxb = 1
    for s in range(n_steps):
        maxb = max(maxb, start[s + 1] - start[s])
    G = np.empty((maxb, k))
    r = np.empty(k)
    g = np.empty(k)
    r_next = 0.0
    have_next = False
    for s in range(n_steps):
        b0 = start[s]
        nb = start[s + 1] - b0
        cs, ds = c[s], decay[s]
        for j in range(nb):
            i = idx[b0 + j]
            if j == 0 and have_next:
                r[0] = r_next
            else:
                predict(X, i, theta, r)
            grad(r, Y[i], params, g)  # noqa: F821 (bound by specialise)
            for q in range(k):
                G[j, q] = cs * g[q]
        have_next = False
        if ds != 1.0:
            for a in range(d):
                for q in range(k):
                    theta[a, q] *= ds
        for j in range(nb):
            i = idx[b0 + j]
            if k == 1:
                gj = G[j, 0]
                if j == nb - 1 and s + 1 < n_steps and start[s + 2] > start[s + 1]:
                    i_next = idx[start[s + 1]]
                    acc = 0.0
                    for a in range(d):
                        t = theta[a, 0] - X[i, a] * gj
                        theta[a, 0] = t
                        acc += X[i_next, a] * t
                    r_next = acc
                    have_next = True
                else:
                    for a in range(d):
                        theta[a, 0] -= X[i, a] * gj
            else:
                for a in range(d):
                    xa = X[i, a]
                    for q in range(k):
                        theta[a, q] -= xa * G[j, q]


def per_sample(params, X, theta, Y, G, want_loss, want_grad):
    """Predictions ``r_i = theta^T x_i`` of all rows, then the sum of ``l(r_i, y_i)`` (if
    ``want_loss``, else 0) and, if ``want_grad``, ``G[i] = l'(r_i, y_i)`` (the drift of SME
    and gradient flow). Single-threaded, O(n d k)."""
    n, d = X.shape
    k = theta.shape[1]
    r = np.empty(k)
    g = np.empty(k)
    total = 0.0
    for i in range(n):
        predict(X, i, theta, r)
        if want_loss:
            total += loss(r, Y[i], params)
        if want_grad:
            grad(r, Y[i], params, g)
            for q in range(k):
                G[i, q] = g[q]
    return total


@njit(cache=True, fastmath=_FM)
def weighted_transpose(X, G, w, out):
    """``out = X^T (G * w[:, None])`` (d, k), single-threaded, O(n d k)."""
    n, d = X.shape
    k = G.shape[1]
    out[:, :] = 0.0
    for i in range(n):
        for q in range(k):
            gq = G[i, q] * w[i]
            if gq != 0.0:
                for a in range(d):
                    out[a, q] += X[i, a] * gq


def row_losses(params, R, Y, out):
    """``out[i] = l(R[i], Y[i])`` for predictions ``R`` (n, k) and labels ``Y`` (n, label_dim)."""
    for i in range(R.shape[0]):
        out[i] = loss(R[i], Y[i], params)  # noqa: F821 (bound by specialise)


def teacher_labels(params, Rstar, EPS, Y):
    """``Y[i] = sigma_star(Rstar[i], EPS[i])`` for every row."""
    for i in range(Rstar.shape[0]):
        teacher(Rstar[i], EPS[i], params, Y[i])


@njit(cache=True, fastmath=_FM)
def linear_moments_rhs(X, y, A, b, mu, S, lr, lam, noise, dmu, dS, s):
    """Right-hand side of the exact sampling-noise moment equations of Poisson-clock SGD
    on the squared loss (``k = 1``); see :func:`dmft.multipass.linear_sgd_moments`.

    Writes ``s_i = x_i^T S x_i - 2 y_i x_i^T mu + y_i^2`` (twice the expected loss of
    sample ``i``), ``dmu = -lr (A mu - b + lam mu)`` and
    ``dS = -lr (S A + A S - mu b^T - b mu^T + 2 lam S) + noise sum_i s_i x_i x_i^T``.
    Single-threaded, O(n d^2 + d^3).
    """
    n, d = X.shape
    row = np.empty(d)
    for i in range(n):
        xm = 0.0
        for a in range(d):
            xm += X[i, a] * mu[a]
        row[:] = 0.0
        for a in range(d):
            xa = X[i, a]
            for c in range(d):
                row[c] += xa * S[a, c]
        q = 0.0
        for c in range(d):
            q += row[c] * X[i, c]
        s[i] = q - 2.0 * y[i] * xm + y[i] * y[i]
    for a in range(d):
        acc = 0.0
        for c in range(d):
            acc += A[a, c] * mu[c]
        dmu[a] = -lr * (acc - b[a] + lam * mu[a])
    dS[:, :] = 0.0
    for i in range(n):
        for a in range(d):
            w = noise * s[i] * X[i, a]
            for c in range(d):
                dS[a, c] += w * X[i, c]
    SA = np.zeros((d, d))
    for a in range(d):
        for e in range(d):
            sae = S[a, e]
            for c in range(d):
                SA[a, c] += sae * A[e, c]
    for a in range(d):
        for c in range(d):
            dS[a, c] -= lr * (SA[a, c] + SA[c, a] - mu[a] * b[c] - b[a] * mu[c] + 2.0 * lam * S[a, c])
