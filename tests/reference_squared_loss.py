"""Exact ``d -> infinity`` moments of multi-pass SME and gradient flow on the squared loss (tests only).

Setting of docs/dmft_theory.md, section 1: rows ``x_i ~ N(0, I_d/d)``, ``n = delta d``,
``theta* ~ N(0, I_d)`` (``rho = 1``), labels ``y = theta*^T x + sigma eps``, ``theta_0 = 0``,
no ridge, ``l = (r - y)^2 / 2``. With the residuals ``e = X theta - y`` and ``G = X X^T``
(``n x n``), SME ``d theta = -lr X^T e dt + (lr / sqrt(batch)) X^T diag(e) dB`` reads

    de = -lr G e dt + (lr / sqrt(batch)) G diag(e) dB.

The mean is gradient flow; the second moments ``v_i = E e_i^2`` close (the noise enters
through them only): ``v(t) = (e^{-lr G t} y)^2 + kappa int_0^t [(e^{-lr G (t-s)} G)^2] v(s) ds``,
``kappa = lr^2 / batch``, squares entrywise. As ``d -> infinity`` the diagonal entries of
functions of ``G`` concentrate on ``<f> = int f(lam) dmu(lam)``, ``mu`` the Marchenko-Pastur
law of ratio ``delta`` (with an atom ``1 - 1/delta`` at 0 for ``delta > 1``), so their
average ``vbar`` obeys a scalar Volterra equation and

    vbar(t) = <e^{-2 lr lam t} (lam + sigma^2)> + kappa int_0^t <lam^2 e^{-2 lr lam (t-s)}> vbar(s) ds
    q(t)    = delta <(1 - e^{-lr lam t})^2 (1 + sigma^2 / lam)>
              + kappa delta int_0^t <lam e^{-2 lr lam (t-s)}> vbar(s) ds
    m(t)    = delta <1 - e^{-lr lam t}>

with test loss ``(q - 2 m + 1 + sigma^2) / 2`` and training loss ``vbar / 2``; gradient flow is
``kappa = 0``. On Gauss nodes ``lam_j`` of ``mu`` the convolutions are a linear ODE,
``du_j/dt = vbar - 2 lr lam_j u_j``, solved exactly by a matrix exponential.
:func:`moments_on_data` evaluates the same formulas with one data set's spectrum in place of
``mu`` (the closure's test against the exact finite-``d`` moments).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import linalg


def marchenko_pastur_nodes(delta: float, n_nodes: int = 48):
    """``(lam, w, atom)``: Gauss-Legendre nodes and weights of the continuous part of the law
    of ``G``'s eigenvalues and the mass of its atom at 0. ``lam = 1 + delta + 2 sqrt(delta) cos phi``
    maps the density ``sqrt((lam_+ - lam)(lam - lam_-)) / (2 pi delta lam)`` to
    ``2 sin^2 phi / (pi lam)`` on ``phi in [0, pi]``, analytic in ``phi`` (exponential convergence)."""
    x, wx = np.polynomial.legendre.leggauss(n_nodes)
    phi = 0.5 * math.pi * (x + 1.0)
    lam = 1.0 + delta + 2.0 * math.sqrt(delta) * np.cos(phi)
    w = 0.5 * math.pi * wx * 2.0 * np.sin(phi) ** 2 / (math.pi * lam)
    return lam, w, max(0.0, 1.0 - 1.0 / delta)


def _noise_part(times, lam, w_b, w_k, w_q, b0, *, lr, kappa):
    """``(vbar, q_noise)`` at ``times`` from ``vbar = sum_j w_b[j] e^{-2 lr lam_j t} + b0 + kappa
    sum_j w_k[j] u_j`` and ``q_noise = kappa sum_j w_q[j] u_j``, ``du_j/dt = vbar - 2 lr lam_j u_j``."""
    M = lam.size
    A = np.zeros((2 * M + 1, 2 * M + 1))  # state (u, e^{-2 lr lam t}, 1)
    A[:M, :M] = -2.0 * lr * np.diag(lam) + kappa * np.outer(np.ones(M), w_k)
    A[:M, M:2 * M] = np.outer(np.ones(M), w_b)
    A[:M, 2 * M] = b0
    A[M:2 * M, M:2 * M] = -2.0 * lr * np.diag(lam)
    x0 = np.r_[np.zeros(M), np.ones(M), 1.0]
    vbar, qn = [], []
    for t in times:
        x = linalg.expm(A * t) @ x0
        vbar.append(w_b @ x[M:2 * M] + b0 + kappa * w_k @ x[:M])
        qn.append(kappa * w_q @ x[:M])
    return np.array(vbar), np.array(qn)


def moments(times, *, delta: float, lr: float, noise_var: float, batch: float = 1.0, dynamics: str = "sme",
            n_nodes: int = 48) -> dict:
    """``d -> infinity`` ``norm`` (``q``), ``overlap`` (``m``), ``test_loss`` and ``train_loss`` at
    ``times`` for ``dynamics`` ``'sme'`` or ``'gf'`` (module docstring)."""
    times = np.atleast_1d(np.asarray(times, dtype=float))
    lam, w, atom = marchenko_pastur_nodes(delta, n_nodes)
    E = np.exp(-lr * np.outer(times, lam))
    m = delta * (1.0 - E) @ w
    q_gf = delta * ((1.0 - E) ** 2 * (1.0 + noise_var / lam)) @ w
    kappa = lr * lr / batch if dynamics == "sme" else 0.0
    vbar, q_noise = _noise_part(times, lam, w * (lam + noise_var), w * lam**2, delta * w * lam, atom * noise_var,
                                lr=lr, kappa=kappa)
    q = q_gf + q_noise
    return {"norm": q, "overlap": m, "test_loss": 0.5 * (q - 2.0 * m + 1.0 + noise_var), "train_loss": 0.5 * vbar}


def moments_on_data(times, X, y, *, lr: float, batch: float = 1.0) -> np.ndarray:
    """``norm`` of SME from ``theta_0 = 0`` by the same closure on one data set ``(X, y)``: its
    ``G`` spectrum in place of ``mu`` and the projections ``(u_j^T y)^2 / n`` in place of
    ``<. (lam + sigma^2)>`` (what the concentration replaces them with)."""
    n, d = X.shape
    lam, U = np.linalg.eigh(X @ X.T)
    lam = np.maximum(lam, 0.0)
    uy = U.T @ y
    times = np.atleast_1d(np.asarray(times, dtype=float))
    w = np.full(n, 1.0 / n)
    _, q_noise = _noise_part(times, lam, uy**2 / n, w * lam**2, (n / d) * w * lam, 0.0, lr=lr, kappa=lr * lr / batch)
    # gradient flow mean: theta = X^T G^+ (1 - e^{-lr G t}) y
    safe = np.where(lam > 1e-12, lam, 1.0)
    q_gf = []
    for t in times:
        coef = np.where(lam > 1e-12, (1.0 - np.exp(-lr * lam * t)) / safe, lr * t) * uy
        theta = X.T @ (U @ coef)
        q_gf.append(theta @ theta / d)
    return np.array(q_gf) + q_noise
