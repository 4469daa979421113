"""Slow, obviously-correct numpy references for :func:`dmft.simulate` (tests only).

Everything here is plain numpy/scipy written straight from docs/simulate.md; the tests
assert that the numba simulators agree with it on small cases with the same random draws.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate


def _grad(model, r, y):
    out = np.empty(model.k)
    model.grad(np.asarray(r, float), np.asarray(y, float), model.param_array, out)
    return out


def dataset(model, n, d, init_std, rng):
    """Same draws, same order as the simulator: X, theta*, eps, theta_0; labels by the teacher."""
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    theta_star = rng.standard_normal((d, model.k_star))
    eps = rng.standard_normal((n, model.noise_dim))
    theta0 = init_std * rng.standard_normal((d, model.k))
    Y = np.empty((n, model.label_dim))
    for i in range(n):
        model.teacher(X[i] @ theta_star, eps[i], model.param_array, Y[i])
    return X, Y, theta_star, theta0


def sgd(model, X, Y, theta0, batches, c, decay):
    """``theta <- decay theta - c sum_{i in batch} x_i l'(theta^T x_i, y_i)`` batch by batch."""
    theta = theta0.copy()
    for b in batches:
        b = np.asarray(b, dtype=int)
        G = np.array([_grad(model, X[i] @ theta, Y[i]) for i in b]).reshape(len(b), model.k)
        theta = decay * theta - c * X[b].T @ G
    return theta


def simulate_sgd(model, *, d, delta, lr, batch, alpha, times, seed, n_seeds, ridge=0.0,
                 init_std=0.0):
    """Whole SGD pipeline (with replacement), one sampling draw per interval between
    recorded steps; observables at ``t`` interpolate linearly between the steps around ``t/h``.

    Returns ``(train_loss, norm, overlap)`` with shapes (seed, time[, k, k or k_star]).
    """
    n = int(round(delta * d))
    kappa = max(1, int(round(batch * n**alpha)))
    c = lr / batch
    h = kappa / (batch * n)
    decay = 1.0 - (c * kappa / n) * ridge  # 1 - (eta/n) lam with eta = c kappa
    train, norm, overlap = [], [], []
    for child in np.random.SeedSequence(seed).spawn(n_seeds):
        data_ss, sample_ss = child.spawn(2)
        X, Y, theta_star, theta = dataset(model, n, d, init_std, np.random.default_rng(data_ss))
        rng = np.random.default_rng(sample_ss)
        # observables at the steps around t, interpolated linearly in t
        x = np.asarray(times, float) / h
        lo = np.floor(x + 1e-9 * np.maximum(1, x)).astype(int)
        w = np.where(x - lo > 1e-9 * np.maximum(1, x), x - lo, 0.0)
        steps = sorted(set(lo.tolist()) | set((lo + (w > 0)).tolist()))
        obs, step = {}, 0
        for target in steps:
            if target > step:
                idx = rng.integers(0, n, size=(target - step) * kappa)
                theta = sgd(model, X, Y, theta, idx.reshape(-1, kappa), c, decay)
                step = target
            R = X @ theta
            obs[target] = (np.mean([model.loss(R[i], Y[i], model.param_array) for i in range(n)]),
                           theta.T @ theta / d, theta.T @ theta_star / d)
        tr, no, ov = [], [], []
        for a, wa in zip(lo, w):
            both = [obs[a]] if wa == 0 else [obs[a], obs[a + 1]]
            mix = [(1 - wa) * u + wa * v for u, v in zip(both[0], both[-1])]
            tr.append(mix[0])
            no.append(mix[1])
            ov.append(mix[2])
        train.append(tr)
        norm.append(no)
        overlap.append(ov)
    return np.array(train), np.array(norm), np.array(overlap)


def sme_step(model, X, Y, theta, *, lr, batch, ridge, tau, xi):
    """One Euler-Maruyama step of ``d theta = -lr grad R dt + (lr/sqrt(batch)) sum_i x_i l'_i dB_i``."""
    G = np.array([_grad(model, X[i] @ theta, Y[i]) for i in range(X.shape[0])])
    dB = math.sqrt(tau) * xi
    return theta - lr * (X.T @ G * tau + ridge * tau * theta) - lr / math.sqrt(batch) * X.T @ (G * dB[:, None])


def gf_linear_exact(X, Y, theta0, *, lr, ridge, t):
    """Gradient flow on ``sum_i |theta^T x_i - y_i|^2/2 + (lam/2)|theta|^2`` in closed form."""
    A = X.T @ X + ridge * np.eye(X.shape[1])
    w, V = np.linalg.eigh(A)
    b = V.T @ (X.T @ Y)
    z0 = V.T @ theta0
    zinf = b / w[:, None]
    z = zinf + np.exp(-lr * w * t)[:, None] * (z0 - zinf)
    return V @ z


def marchenko_pastur_gf(delta, noise_var, lr, t):
    """``lim |theta(t) - theta*|^2/d + sigma^2`` for GF on the squared loss from ``theta_0 = 0``,
    ``rho = 1``, ``lam = 0``: the spectrum of ``X^T X`` is ``delta`` times Marchenko-Pastur of
    ratio ``1/delta``; per eigenvalue ``u`` the error is
    ``e^{-2 lr u t} + sigma^2 (1 - e^{-lr u t})^2 / u``. Needs ``delta > 1``."""
    g = 1.0 / delta
    lo, hi = (1 - math.sqrt(g)) ** 2, (1 + math.sqrt(g)) ** 2

    def f(v):  # v: eigenvalue of the normalised MP law, u = delta v
        dens = math.sqrt(max((hi - v) * (v - lo), 0.0)) / (2 * math.pi * g * v)
        u = delta * v
        return dens * (math.exp(-2 * lr * u * t) + noise_var * (1 - math.exp(-lr * u * t)) ** 2 / u)

    val, _ = integrate.quad(f, lo, hi, epsabs=1e-13, epsrel=1e-13, limit=200)
    return val + noise_var


def poisson_sgd_paths(X, Y, theta0, *, lr, batch, ridge, t, n_paths, rng):
    """Monte Carlo of Poisson-clock SGD on the squared loss (k = 1): every sample is kicked,
    ``theta -= (lr/batch) x_i (x_i^T theta - y_i)``, at the times of its own Poisson process
    of rate ``batch``; between kicks ``theta`` decays as ``exp(-lr ridge dt)``.
    Returns the (n_paths, d) final states."""
    n, d = X.shape
    c = lr / batch
    y = Y[:, 0]
    theta = np.tile(theta0[:, 0], (n_paths, 1))
    # superposed clock of rate n batch: exponential gaps, uniform sample per event
    now = np.zeros(n_paths)
    alive = np.ones(n_paths, dtype=bool)
    while alive.any():
        gap = rng.exponential(1.0 / (n * batch), size=n_paths)
        nxt = now + gap
        stop = alive & (nxt > t)
        theta[stop] *= np.exp(-lr * ridge * (t - now[stop]))[:, None]
        alive &= ~stop
        idx = rng.integers(0, n, size=n_paths)
        a = alive
        theta[a] *= np.exp(-lr * ridge * gap[a])[:, None]
        xi = X[idx[a]]
        res = np.einsum("pa,pa->p", xi, theta[a]) - y[idx[a]]
        theta[a] -= c * res[:, None] * xi
        now[a] = nxt[a]
    return theta
