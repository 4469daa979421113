"""Why GF's standard error grows at long horizons: the tangents' heavy tail, and a control
variate that does not help (docs/dmft_theory.md, "Stretched grids", *Limits*).

Huber-on-tanh (``noise_std = 0.3``, ``threshold = 0.5``), ``delta = 2``, ``lr = 2``, GF to
``t_max = 32``. One ``dmft.solve`` (8192 paths) gives the kernels ``C``, ``R`` and ``m``. On
them, independently of the solver, numpy paths of the sample side on a uniform grid
(``--dt``), explicit Euler:

    r(t_j) = w(t_j) + lr dt sum_{l<j} R(t_j, t_l) g(r(t_l)),   g = -l'(r, y),
    (w*, w) Gaussian with Cov(w*) = 1, Cov(w, w*) = m, Cov(w) = C,  y = tanh(w*) + 0.3 eps,

and at ``t_n = 4, 8, 16, 32`` each path's response ``T(n, i) = dF(t_n) / dw(t_i)``
(``F(t_n) = lr dt sum_{l<n} g(r(t_l))``) by the backward recursion of the dense tangents.
Printed per time:

* the Stein identity ``E[F(t_n) wt(s)] = sum_i E[T(n, i)] Ct(i, s)`` (``wt = w - m w*``, the
  field given the teacher, covariance ``Ct = C - m m^T``), as a check of the paths;
* per eigen-direction ``v`` of ``Ct`` on ``[0, t_n)``, the per-path standard deviation of the
  tangent estimate ``T . v`` and of the Stein estimate ``F wt . v / lambda`` of the same mean,
  and of their best linear combination (a control variate);
* the quantiles of each path's tangent mass ``sum_i T(n, i)``, and at ``t = 32`` the share of
  its variance carried by the top 1% of paths, with their residuals;
* what tangents on a subsample would gain (two-phase sampling): every path whose ``g' > 0`` on
  more than 10% of its steps so far carries tangents, a fraction ``pi`` of the others, each
  stratum's mean from its tangent paths. Variance ``between + W_1 s_1^2 + W_0 s_0^2 / pi`` per
  path at cost ``W_1 + W_0 pi`` (tangents are nearly all of a long GF solve's time), against
  ``Var`` at cost 1: the largest gain ``Var / (variance x cost)`` over ``pi``.

* what splitting a path in time would gain: ``--copies`` copies of each of ``--parents`` paths
  keep its inputs up to ``tau`` and draw the field's later innovations again (the field by the
  Cholesky factor of ``Cov(w*, w)``, so its innovation at ``t_j`` is the ``j``-th normal). The
  within-parent variance of the mass over the total (law of total variance) is the most that
  any splitting at ``tau``, of every path or of the slow ones only, can remove.

Returns per time the identity's largest error and entry, the three standard deviations, the
mass's mean, standard deviation and quantiles, and at ``t_max`` ``future_share`` ``{tau:
share}``. ``--quick``: ``t_max = 4``, 1024 paths in the solve and 2000 here.

``python validation/gf_tangent_tails.py [--paths 20000] [--dt 0.16] [--seed 0] [--parents 4000]
[--copies 16] [--quick]``
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.interpolate import RegularGridInterpolator

import dmft

LR, THRESHOLD, NOISE = 2.0, 0.5, 0.3


def kernels(dt: float, t_max: float, n_paths: int):
    """``C``, ``R`` (N+1, N+1) and ``m`` (N+1,) of a GF solve, interpolated to the grid ``j dt``."""
    ds = dmft.solve(dmft.models.huber_tanh(NOISE, THRESHOLD), lr=LR, batch=1.0, dynamics="gf", t_max=t_max,
                    n_paths=n_paths, seed=1, progress=False, check_dt=False, max_runtime_s=None)
    t0, t = ds.time.values, np.arange(int(round(t_max / dt)) + 1) * dt
    at = np.stack(np.meshgrid(t, t, indexing="ij"), -1)
    C = RegularGridInterpolator((t0, t0), ds.correlation.values[:, :, 0, 0])(at)
    R = np.tril(RegularGridInterpolator((t0, t0), ds.response.values[:, :, 0, 0])(at))
    return C, R, np.interp(t, t0, ds.overlap.values[:, 0, 0])


def paths(C, R, m, dt: float, P: int, seed: int):
    """Inputs ``(w*, w, y)`` and the Euler paths' ``g`` and ``g' = -l''`` (P, N+1)."""
    N = len(m) - 1
    ev, V = np.linalg.eigh(_joint(C, m))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N + 2)) @ (V * np.sqrt(np.clip(ev, 0, None))).T
    return _euler(R, dt, X, rng.standard_normal(P))


def _joint(C, m):
    """``Cov(w*, w(t_0), .., w(t_N))``."""
    return np.block([[np.ones((1, 1)), m[None]], [m[:, None], C]])


def _euler(R, dt: float, X, eps):
    """The Euler paths on the inputs ``X = (w*, w)`` (P, N+2) and label noises ``eps`` (P,)."""
    ws, w = X[:, 0], X[:, 1:]
    y = np.tanh(ws) + NOISE * eps
    P, N = X.shape[0], X.shape[1] - 2
    r, g, gp = (np.zeros((P, N + 1)) for _ in range(3))
    for j in range(N + 1):
        r[:, j] = w[:, j] + LR * dt * (g[:, :j] @ R[j, :j])
        th = np.tanh(r[:, j])
        s2, u = 1 - th**2, th - y
        du = np.clip(u, -THRESHOLD, THRESHOLD)
        g[:, j] = -du * s2
        gp[:, j] = -((np.abs(u) <= THRESHOLD) * s2 * s2 - 2 * du * th * s2)
    return ws, w, y, r, g, gp


def responses(R, gp, n: int, dt: float):
    """``T(n, i) = dF(t_n)/dw(t_i)`` (P, n), backwards: ``y_i = a_i + g'_i lr dt sum_{j>i} y_j R(t_j, t_i)``."""
    a = LR * dt * gp[:, :n]
    T = np.zeros_like(a)
    for i in range(n - 1, -1, -1):
        T[:, i] = a[:, i] + (gp[:, i] * LR * dt * (T[:, i + 1:n] @ R[i + 1:n, i]) if i + 1 < n else 0.0)
    return T


def future_share(C, R, m, dt: float, taus, n: int, parents: int, copies: int, seed: int) -> dict:
    """``{tau: share}``: the within-parent variance of the tangent mass at ``t_n`` over its total,
    for ``copies`` copies of each parent path that keep its inputs up to ``t_tau`` (``tau`` a
    time) and draw the field's innovations after it again."""
    Lc = np.linalg.cholesky(_joint(C, m) + 1e-10 * np.eye(len(m) + 1))
    rng = np.random.default_rng(seed)
    out = {}
    for tau in taus:
        keep = 2 + int(round(tau / dt))  # w* and the field at t_0 .. t_tau
        Z = np.repeat(rng.standard_normal((parents, len(m) + 1)), copies, axis=0)
        Z[:, keep:] = rng.standard_normal((len(Z), Z.shape[1] - keep))
        eps = np.repeat(rng.standard_normal(parents), copies)
        gp = _euler(R, dt, Z @ Lc.T, eps)[-1]
        mass = responses(R, gp, n, dt).sum(1).reshape(parents, copies)
        out[tau] = float(mass.var(1, ddof=1).mean() / mass.var())
    return out


def two_phase_gain(X, strata):
    """Largest ``Var X / (variance x cost)`` of the two-phase estimator over ``pi`` (above)."""
    W1 = strata.mean()
    W0 = 1 - W1
    between = W1 * W0 * (X[strata].mean() - X[~strata].mean())**2
    return max(X.var() / ((between + W1 * X[strata].var() + W0 * X[~strata].var() / pi) * (W1 + W0 * pi))
               for pi in (1, 0.5, 0.3, 0.2, 0.1, 0.05))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=20000)
    ap.add_argument("--dt", type=float, default=0.16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parents", type=int, default=4000)
    ap.add_argument("--copies", type=int, default=16)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    t_max, solve_paths, P = (4.0, 1024, 2000) if a.quick else (32.0, 8192, a.paths)
    parents, copies = (200, 8) if a.quick else (a.parents, a.copies)
    C, R, m = kernels(a.dt, t_max, solve_paths)
    ws, w, y, r, g, gp = paths(C, R, m, a.dt, P, a.seed)
    F = LR * a.dt * (np.cumsum(g, axis=1) - g)
    Ct, wt = C - np.outer(m, m), w - np.outer(ws, m)
    out = {}
    for tn in [t for t in (4, 8, 16, 32) if t <= t_max]:
        n = int(round(tn / a.dt))
        T = responses(R, gp, n, a.dt)
        stein = (F[:, n, None] * wt[:, :n]).mean(0)
        lam, U = np.linalg.eigh(Ct[:n, :n])
        lam, U = lam[::-1][:6], U[:, ::-1][:, :6]
        Tv, Sv = T @ U, F[:, n, None] * (wt[:, :n] @ U) / lam
        D = Sv - Tv
        cov = ((Tv - Tv.mean(0)) * (D - D.mean(0))).mean(0)
        best = Tv.var(0) - cov**2 / D.var(0)
        mass = T.sum(1)
        quantiles = np.quantile(mass, [.001, .01, .1, .5, .9, .99, .999])
        gains = [two_phase_gain(x, (gp[:, :n] > 0).mean(1) > 0.1) for x in (mass, Tv[:, 0], Tv[:, 1])]
        out[tn] = dict(two_phase_gain=gains, identity_error=np.abs(stein - T.mean(0) @ Ct[:n, :n]).max(),
                       largest=np.abs(stein).max(), sd_tangents=Tv.std(0), sd_stein=Sv.std(0), sd_combined=np.sqrt(best),
                       mass_mean=mass.mean(), mass_sd=mass.std(), mass_quantiles=quantiles)
        print(f"t = {tn}: Stein identity off by {out[tn]['identity_error']:.3g} (largest entry {out[tn]['largest']:.3g})")
        print("  eigenvalues of Ct       ", np.round(lam, 3))
        print("  per-path sd, tangents   ", np.round(Tv.std(0), 4))
        print("  per-path sd, Stein      ", np.round(Sv.std(0), 4))
        print("  per-path sd, combination", np.round(np.sqrt(best), 4))
        print("  tangent mass: mean %.3f, sd %.3f, quantiles (0.1, 1, 10, 50, 90, 99, 99.9%%) %s"
              % (mass.mean(), mass.std(), np.round(quantiles, 2)))
        print("  two-phase gain (mass, top two directions)", np.round(gains, 2))
    top = mass > np.quantile(mass, 0.99)
    u = np.tanh(r[:, -1]) - y
    taus = (0.0, 1.0, 2.0) if a.quick else (0.0, 4.0, 8.0, 16.0)
    out[t_max]["future_share"] = future_share(C, R, m, a.dt, taus, n, parents, copies, a.seed)
    print(f"t = {t_max:g}, share of the mass's variance from the field's innovations after tau (splitting's "
          "most):", {tau: f"{v:.1%}" for tau, v in out[t_max]["future_share"].items()})
    print(f"t = {t_max:g}, top 1% of tangent mass: {((mass[top] - mass.mean())**2).sum() / ((mass - mass.mean())**2).sum():.0%} "
          f"of its variance; |y| > 1 in {np.mean(np.abs(y[top]) > 1):.0%} of them (all paths: "
          f"{np.mean(np.abs(y) > 1):.0%}); residual |tanh r - y| > threshold in {np.mean(np.abs(u[top]) > THRESHOLD):.0%} "
          f"(all paths: {np.mean(np.abs(u) > THRESHOLD):.0%})")
    return out


if __name__ == "__main__":
    main()
