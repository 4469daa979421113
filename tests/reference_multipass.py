"""Slow, obviously-correct numpy references for :func:`dmft.simulate` and for the DMFT solver's
parameter side (its direct rows; tests only).

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


# ---------------------------------------------------------------- anisotropic gradient flow
def silverstein(weights, eigenvalues, delta, z):
    """``e(z) = (1/d) tr(K Qbar(z))`` at the complex points ``z`` (M,), with the deterministic
    equivalent ``Qbar(z) = (delta K / (1 + e) - z)^-1`` of the resolvent ``(X^T X - z)^-1``
    of ``n = delta d`` rows ``x ~ N(0, K/d)``: the fixed point
    ``e = sum_g p_g lam_g / (delta lam_g / (1 + e) - z)`` (Silverstein's equation in this
    normalisation). Newton's method with backtracking, continued along the path ``z`` from
    ``z[0]`` (real, right of the spectrum, where ``e`` is the negative root reached from
    ``-Tr K/(d z)``); a step of the path that Newton does not take is split in eight.
    Returns ``e`` (M,) and ``q`` (M, G), ``q_g = 1/(delta lam_g/(1 + e) - z)``."""
    p, lam = np.asarray(weights, float), np.asarray(eigenvalues, float)
    z = np.asarray(z, complex)

    def residual(e, zj):
        return e - p @ (lam / (delta * lam / (1 + e) - zj))

    def newton(e, zj):
        F = residual(e, zj)
        for _ in range(100):
            den = delta * lam / (1 + e) - zj
            step = F / (1 - p @ (delta * lam**2 / (1 + e) ** 2 / den**2))
            for _ in range(30):  # backtrack until |F| falls
                Fn = residual(e - step, zj)
                if abs(Fn) < abs(F):
                    break
                step = step / 2
            e, F = e - step, Fn
            if abs(step) <= 1e-15 * max(1.0, abs(e)) or abs(F) <= 1e-15 * max(1.0, abs(e)):
                return e
        return None

    def follow(e, z0, z1, depth=0):
        got = newton(e, z1)
        if got is not None:
            return got
        if depth == 4:
            raise RuntimeError(f"silverstein: Newton did not converge at z = {z1}")
        for w in np.linspace(0, 1, 9)[1:]:
            e = follow(e, z0, z0 + w * (z1 - z0), depth + 1)
        return e

    e_all = np.empty(z.shape, complex)
    e = newton(-(p @ lam) / z[0], z[0])
    e_all[0] = e
    for j in range(1, z.size):
        e = e_all[j] = follow(e, z[j - 1], z[j])
    q = 1.0 / (delta * lam[None, :] / (1 + e_all[:, None]) - z[:, None])
    return e_all, q


def power_law_unnormalised(d):
    """``onepass``'s ``lam_i = (i/d)^1.5`` (``Tr K/d = 0.40``), teacher ``x*_i^2 ∝ (i/d)^-0.5``:
    data whose solves take the normalisation path, for :func:`anisotropic_gf`."""
    from onepass import data as D

    u = np.arange(1, d + 1) / d
    xs = u**-0.25
    return D.gaussian_mixture(np.zeros((1, d)), [u**1.5], teacher=(xs / np.linalg.norm(xs))[None], name="pl")


def anisotropic_gf(weights, eigenvalues, teacher_power, *, delta, lr, noise_var, times, init_var=0.0,
                   nodes=1024):
    """``lim (theta(t) - theta*)^T K (theta(t) - theta*)/d + sigma^2`` (twice the test loss) for
    gradient flow ``d theta/dt = -lr grad R`` on the squared loss, ``y = theta*^T x + sigma eps``,
    rows ``x ~ N(0, K/d)``, ``K`` with eigenvalue ``lam_g`` on a fraction ``p_g`` of the
    coordinates carrying teacher power ``rho_g`` (``theta*_i^2`` averaged over the group),
    ``theta_0`` i.i.d. ``N(0, init_var)``, no ridge.

    With ``H = X^T X``, ``E = exp(-lr t H)`` and ``e_0 = theta_0 - theta*``,
    ``theta(t) - theta* = E e_0 + sigma (I - E) H^+ X^T eps``, so the error is
    ``theta*^T E K E theta*/d + init_var tr(K E^2)/d + sigma^2 tr(K (I - E)^2 H^+)/d + sigma^2``.
    The traces are one-resolvent functionals, ``tr(K f(H))/d = -(1/2 pi i) oint f(z) e(z) dz``
    (:func:`silverstein`); the first term is the two-resolvent one
    ``(1/2 pi i)^2 oint oint f(z1) f(z2) theta*^T Q(z1) K Q(z2) theta*/d``, whose deterministic
    equivalent (leave-one-out on ``H = sum_mu x_mu x_mu^T``) is
    ``sum_g p_g rho_g lam_g q_g(z1) q_g(z2) / (1 - u(z1, z2))``,
    ``u = delta sum_g p_g lam_g^2 q_g(z1) q_g(z2) / ((1 + e(z1)) (1 + e(z2)))``.
    Contour: an ellipse around ``[0, h+]``, ``h+ = (sqrt(delta lam_max) + sqrt(Tr K/d))^2``
    (a bound on the spectrum of ``H``), trapezoid rule on ``nodes`` points (geometric
    convergence; the answer with ``nodes/2`` is returned as the second output, its change the
    quadrature error).
    """
    p, lam = np.asarray(weights, float), np.asarray(eigenvalues, float)
    rho = np.asarray(teacher_power, float).reshape(len(p))
    times = np.atleast_1d(np.asarray(times, float))
    tau = p @ lam
    top = (math.sqrt(delta * lam.max()) + math.sqrt(tau)) ** 2
    left, right = 0.1 / max(lr * times.max(), 1.0), 0.25 * top  # e^{lr t z} stays O(1) on the left
    centre, a = 0.5 * (top + right - left), 0.5 * (top + right + left)
    b = 0.5 * top

    def error(M):
        th = 2 * np.pi * np.arange(M) / M
        z = centre + a * np.cos(th) + 1j * b * np.sin(th)
        dz = (-a * np.sin(th) + 1j * b * np.cos(th)) * (2 * np.pi / M)
        e, q = silverstein(p, lam, delta, z)
        out = np.empty(times.size)
        for j, t in enumerate(times):
            f = np.exp(-lr * t * z)
            one = np.where(np.abs(z) > 0, (1 - f) ** 2 / z, 0.0)
            trace = lambda g: -(np.sum(g * e * dz) / (2j * np.pi)).real  # noqa: E731
            w1 = f * dz / (2j * np.pi)
            qa = q * w1[:, None]  # (M, G)
            s = 1.0 / (1 + e)
            u = delta * (q * (lam**2 * p) * s[:, None]) @ (q * s[:, None]).T
            bias = ((qa * (p * rho * lam)) @ qa.T / (1 - u)).sum().real
            out[j] = bias + init_var * trace(f**2) + noise_var * trace(one) + noise_var
        return out

    return error(nodes), error(nodes // 2)


# ---------------------------------------------------------------- the DMFT solver's parameter side
def _teacher_row_direct(par, n, Grow):
    """Row ``n >= 1`` of ``m`` and ``nu`` (isotropic): ``m_n = (delta Phi_n - lam sum_{j<n}
    w_j m_j) / (1 + lam uL_n dt / 2)`` (trapezoid of the rate, ``w_j = (uL_j + uR_j) dt / 2``),
    ``nu_n = (Phi_n - sum_{j<=n} G_nj m_j) rho^-1``."""
    dt, delta, lam = par.dt, par.delta, par.lr * par.ridge
    m, nu, Phi = par.m, par.nu, par.Phi
    wm = 0.5 * dt * (par.uL[:n] + par.uR[:n])
    m[:, n] = (delta * Phi[:, n] - lam * np.einsum("j,bjae->bae", wm, m[:, :n])) / (1 + 0.5 * lam * dt * par.uL[n])
    nu[:, n] = (Phi[:, n] - np.einsum("bjah,bjhe->bae", Grow[:, : n + 1], m[:, : n + 1])) @ par.rho_inv


def parameter_row_direct(par, n, Grow, Gprow, Gprev=None, Gpprev=None, dW=None, dG=None):
    """Row ``n`` of the parameter side ``par`` (a ``dmft.multipass._solve._ParamSide``) in the
    direct ``O(n^2)`` form of docs/dmft_theory.md, section 3, in place of its incremental
    ``row`` (same arguments; row 0 is the library's, which is direct already): ``K_nj = delta
    G_nj - lr ridge w_j`` (trapezoid of the rate, ``w_j = (uL_j + uR_j) dt / 2``, ``uL_n dt / 2``
    at ``j = n``), ``A_n. = (I - K_nn)^-1 sum_{j<n} K_nj A_j.``,
    ``R_n,m = (I - K_nn)^-1 [I + sum_{m<=j<n} K_nj R_jm - (K - K^+)_nm]`` (``K^+`` the right
    half-hat), ``C_n. = delta A_n. S A^T + asum_n q0 asum^T + b_n rho b^T``."""
    from dmft.multipass import _kernels_solve, _solve

    if n == 0:
        return par.first_row(Grow)
    k, dt, delta, lam = par.k, par.dt, par.delta, par.lr * par.ridge
    C, R, A, S = par.C, par.R, par.A, par.S
    B = C.shape[0]
    nk, n1k = n * k, (n + 1) * k
    eye = np.eye(k)
    w = 0.5 * dt * (par.uL[: n + 1] + par.uR[: n + 1])
    w[n] = 0.5 * dt * par.uL[n]
    Kb = delta * Grow[:, : n + 1] - lam * w[None, :, None, None] * eye
    K = _solve._flat(Kb)
    if not isinstance(par, _solve._GroupParamSide):  # the groups' rows of m, nu are set by the coupled solve
        _teacher_row_direct(par, n, Grow)
    Minv = np.linalg.inv(eye - Kb[:, n])
    A[:, nk:n1k, nk:n1k] = Minv
    R[:, nk:n1k, nk:n1k] = eye
    A[:, nk:n1k, :nk] = Minv @ (K[:, :, :nk] @ A[:, :nk, :nk])
    wl = 0.5 * dt * par.uL[:n]
    Km = _solve._flat(delta * (Grow[:, :n] - Gprow[:, :n]) - lam * wl[None, :, None, None] * eye)
    R[:, nk:n1k, :nk] = Minv @ (K[:, :, :nk] @ R[:, :nk, :nk] - Km + np.tile(eye, n))
    _kernels_solve.row_sums(A, par.nu, delta, n, par.RtT, par.asum, par.bvec)
    Sn = S[:, :n1k, :n1k]  # only the lower triangle is kept (blocks n >= m)
    X = delta * (A[:, nk:n1k, :n1k] @ (np.tril(Sn) + np.swapaxes(np.tril(Sn, -1), -1, -2)))
    Crow = X @ np.swapaxes(A[:, :n1k, :n1k], -1, -2)
    Crow += np.einsum("bah,hg,bmeg->bame", par.asum[:, n], par.q0, par.asum[:, : n + 1]).reshape(B, k, n1k)
    Crow += np.einsum("bah,hg,bmeg->bame", par.bvec[:, n], par.rho, par.bvec[:, : n + 1]).reshape(B, k, n1k)
    diag = Crow[:, :, nk:n1k]
    Crow[:, :, nk:n1k] = 0.5 * (diag + np.swapaxes(diag, -1, -2))
    C[:, nk:n1k, :n1k] = Crow
    C[:, :n1k, nk:n1k] = np.swapaxes(Crow, -1, -2)
