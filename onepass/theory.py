"""Exact ODEs of one-pass SGD on Gaussian mixtures: ``onepass.solve`` (docs/onepass.md, "Equations as implemented").

State: for each spectral group ``g`` the matrix ``P_g = sum_{i in g} w_i w_i^T`` with
``w_i = [x_i; x*_i; mu_{1,i} .. mu_{C,i}]`` (``D = k + k_star + C``), and the accumulated
squared gradient ``acc`` (AdaGrad-Norm). The ODE is

    dP_g/dt = -gamma (A_g P_g + P_g A_g^T) + gamma^2 (|g|/d) sum_c p_c lam_g^(c) E I_c E^T
    d acc/dt = sum_c p_c (Tr K_c/d) tr I_c

with ``A_g``'s x-rows ``[sum_c p_c lam_g^c H_c, sum_c p_c lam_g^c H*_c, p_1 G_1 .. p_C G_C]``.
"""
from __future__ import annotations

import time as _time
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy.integrate import solve_ivp

from dmft import errors, models as _models, output
from dmft._config import BLOWUP_NORM
from dmft._progress import progress_bar
from dmft.data import Binned, GaussianMixture, make_groups
from dmft.expectation import _check_rule, gaussian_moments
from dmft.schedules import as_schedule, jump_times, rate_between


@dataclass(frozen=True, eq=False)
class Problem:
    """Model, data and groups with the index bookkeeping of ``w_i``; shared by theory and simulators."""

    model: _models.Model
    data: GaussianMixture
    groups: object
    labels: np.ndarray | None  # (C, label_dim) hard labels, or None for a teacher
    rule: object = None

    @classmethod
    def build(cls, model, data, groups="auto", rule=None):
        model = _models.get(model)
        _check_rule(rule)
        if not isinstance(data, GaussianMixture):
            raise errors.ParameterError(f"data={data!r} is not allowed: data must come from onepass.data")
        if data.teacher is None:
            labels = model.labels_for_classes(data.n_classes)
        else:
            labels = None
            if data.k_star != model.k_star:
                raise errors.ParameterError(
                    f"data has k_star={data.k_star} teacher rows; model {model.name} needs k_star={model.k_star}")
        return cls(model, data, make_groups(data, groups), labels, rule)

    @property
    def k(self):
        return self.model.k

    @property
    def ks(self):
        return self.data.k_star

    @property
    def D(self):
        return self.k + self.ks + self.data.n_classes

    def stack(self, X: np.ndarray) -> np.ndarray:
        """``W`` (D, d) with columns ``w_i`` for student rows ``X`` (k, d)."""
        parts = [X] + ([self.data.teacher] if self.ks else []) + [self.data.means]
        return np.vstack(parts)

    def initial_P(self, X0: np.ndarray | None) -> np.ndarray:
        """``P_g(0)`` (G, D, D) for student rows ``X0`` (k, d); ``None`` is the zero student.

        A zero student's rows of ``P_g`` are zero (as the sums of ``0 * w`` are) and the
        others were summed with the groups: no pass over the d coordinates.
        """
        if X0 is not None:
            return self.groups.sum_outer(self.stack(X0))
        P = np.zeros((len(self.groups.sizes), self.D, self.D))
        P[:, self.k:, self.k:] = self.groups.data_outer
        return P

    def class_stats(self, S: np.ndarray, B: np.ndarray, c: int):
        """Mean and covariance of ``(r, r*) | c`` from ``S = sum_g P_g`` and ``B_c``."""
        kk = self.k + self.ks
        mean = S[:kk, kk + c]
        return mean, B[c]

    def moments(self, S: np.ndarray, B: np.ndarray):
        out = []
        for c in range(self.data.n_classes):
            mean, cov = self.class_stats(S, B, c)
            lab = None if self.labels is None else self.labels[c]
            out.append(gaussian_moments(self.model, mean, cov, label=lab, rule=self.rule))
        return out

    def risk_error(self, S: np.ndarray, B: np.ndarray) -> float:
        """Estimated integration error of the risk, ``sum_c p_c |E_c l(rule) - E_c l(refined)|``."""
        err = 0.0
        for c, pc in enumerate(self.data.probs):
            mean, cov = self.class_stats(S, B, c)
            lab = None if self.labels is None else self.labels[c]
            err += pc * gaussian_moments(self.model, mean, cov, label=lab, rule=self.rule, error=True).error
        return float(err)

    def class_covariances(self, P: np.ndarray) -> np.ndarray:
        """``B_c = sum_g lam_g^(c) P_g[:k+k*, :k+k*]`` -> (C, k+k*, k+k*)."""
        kk = self.k + self.ks
        return np.einsum("gc,gab->cab", self.groups.eigenvalues, P[:, :kk, :kk])

    def drift_matrices(self, mom) -> np.ndarray:
        """x-rows of ``A_g`` for every group -> (G, k, D)."""
        k, ks, C = self.k, self.ks, self.data.n_classes
        p = self.data.probs
        lam_rows = np.zeros((C, k, self.D))
        const = np.zeros((k, self.D))
        for c, m in enumerate(mom):
            lam_rows[c, :, :k] = p[c] * m.hess
            if ks:
                lam_rows[c, :, k:k + ks] = p[c] * m.hess_star
            const[:, k + ks + c] = p[c] * m.grad
        return np.einsum("gc,cab->gab", self.groups.eigenvalues, lam_rows) + const

    def drift(self, P: np.ndarray, mom) -> np.ndarray:
        """``A_g P_g + P_g A_g^T`` per group (G, D, D): the gradient part of ``dP_g/dt`` over ``-gamma``."""
        A = np.zeros_like(P)
        A[:, :self.k, :] = self.drift_matrices(mom)
        AP = A @ P
        return AP + np.swapaxes(AP, 1, 2)

    def fisher_rate(self, mom) -> np.ndarray:
        """``sum_c p_c lam_g^(c) I_c`` per group -> (G, k, k)."""
        I = np.stack([m.fisher for m in mom])
        return np.einsum("gc,c,cab->gab", self.groups.eigenvalues, self.data.probs, I)

    def acc_rate(self, mom) -> float:
        return float(sum(p * tr * np.trace(m.fisher) for p, tr, m in zip(self.data.probs, self.data.trace_ratio, mom)))

    def rhs(self, P: np.ndarray, gamma: float):
        """``dP/dt`` (G, D, D), ``d acc/dt`` and the moments used."""
        S = P.sum(axis=0)
        mom = self.moments(S, self.class_covariances(P))
        dP = -gamma * self.drift(P, mom)
        noise = gamma**2 * (self.groups.sizes / self.data.d)[:, None, None] * self.fisher_rate(mom)
        dP[:, :self.k, :self.k] += noise
        return dP, self.acc_rate(mom), mom

    # ------------------------------------------------------------ observables
    def parameter_observables(self, S, P):
        """Observables of the parameters alone, from ``S = sum_g P_g`` and ``P`` (G, D, D)."""
        k, ks, C = self.k, self.ks, self.data.n_classes
        mu0 = k + ks
        obs = {
            "norm": S[:k, :k],
            "mean_overlap": S[:k, mu0:mu0 + C],
            "group_norm": np.trace(P[:, :k, :k], axis1=1, axis2=2),
            "group_mean_overlap": P[:, :k, mu0:mu0 + C],
        }
        if ks:
            obs["overlap"] = S[:k, k:k + ks]
            if ks == k:
                obs["distance"] = np.trace(S[:k, :k]) - 2 * np.trace(S[:k, k:2 * k]) + np.trace(S[k:2 * k, k:2 * k])
        if C == 2 and k == 1:
            obs["alignment"] = S[0, mu0] / np.sqrt(S[0, 0]) / self.data.mean_norms[0] if S[0, 0] > 0 and self.data.mean_norms[0] > 0 else 0.0
        return obs

    def observables(self, S, B, P, mom, gamma):
        """Observables at one time; ``P`` (G, D, D) is the group-resolved state."""
        k, ks = self.k, self.ks
        p = self.data.probs
        obs = {
            "risk": sum(pc * m.loss for pc, m in zip(p, mom)),
            **self.parameter_observables(S, P),
            "fisher_trace": sum(pc * np.trace(m.fisher) for pc, m in zip(p, mom)),
            "lr": gamma,
        }
        if ks == k:
            M = self.drift(P, mom).sum(axis=0)
            a = 0.5 * (np.trace(M[:k, :k]) - 2 * np.trace(M[:k, k:2 * k]))
            noise = self.acc_rate(mom)
            # at an exact interpolating optimum both vanish: no constraint on the rate
            obs["lr_threshold"] = 2 * a / noise if noise > 1e-12 else np.inf
        return obs

    def dataset(self, times, records, attrs, seed_dim=False):
        """Stack per-time observable dicts (list over seeds if ``seed_dim``) into a Dataset."""
        dims_of = {
            "risk": (), "norm": ("student", "student2"), "mean_overlap": ("student", "class"),
            "group_norm": ("group",), "group_mean_overlap": ("group", "student", "class"),
            "fisher_trace": (), "lr": (), "overlap": ("student", "teacher"), "distance": (),
            "lr_threshold": (), "alignment": (), "risk_se": (),
        }
        lead = ("seed", "time") if seed_dim else ("time",)
        runs = records if seed_dim else [records]
        variables = {}
        for name in runs[0][0]:
            arr = np.array([[np.asarray(r[name], dtype=float) for r in run] for run in runs])
            variables[name] = (lead + dims_of[name], arr if seed_dim else arr[0])
        coords = {"time": np.asarray(times, dtype=float), "group": list(self.groups.names),
                  "class": np.arange(self.data.n_classes)}
        if seed_dim:
            coords["seed"] = np.arange(len(runs))
        coords["group_size"] = ("group", self.groups.sizes)
        attrs = {**self.model.attrs(), **self.data.attrs(), "groups": self.groups.mode, **attrs}
        ds = output.build(variables, coords, attrs, time_axis="onepass")
        ds["group_size"].attrs.update(long_name="coordinates in group", units="1")
        for g in range(self.data.n_classes):
            ds["group_eigenvalue_" + str(g)] = ("group", self.groups.eigenvalues[:, g],
                                                 {"long_name": f"eigenvalue of K_{g} in group", "units": "1"})
        ds = ds.set_coords([v for v in ds.data_vars if v.startswith("group_eigenvalue_")])
        return ds


def _initial_X(problem: Problem, X0):
    k, d = problem.k, problem.data.d
    if X0 is None:
        return np.zeros((k, d))
    X0 = errors.finite_array("X0", np.atleast_2d(X0))
    if X0.shape != (k, d):
        raise errors.ParameterError(f"X0 has shape {X0.shape}; expected (k, d) = {(k, d)}")
    return X0


def time_grid(t_max, n_time, times):
    """The output times (:func:`dmft.errors.output_times`): ``times`` if given (then ``t_max``
    and ``n_time`` are not used), else ``linspace(0, t_max, n_time)``."""
    if times is not None:
        return errors.output_times(times, None, None, n_time_default=2, t_max_default=1.0)[0]
    return errors.output_times(None, n_time, t_max, n_time_default=n_time, t_max_default=t_max)[0]


def _threshold(problem, schedule, tt, yy, unpack):
    """``lr_threshold`` at one ODE state (None where not defined or not finite)."""
    try:
        P, acc = unpack(np.asarray(yy))
        S = P.sum(axis=0)
        B = problem.class_covariances(P)
        obs = problem.observables(S, B, P, problem.moments(S, B), schedule(float(tt), acc))
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return None
    thr = obs.get("lr_threshold")
    return float(thr) if thr is not None and np.isfinite(thr) else None


def solve(model, data, *, lr=0.5, t_max: float = 20.0, n_time: int = 201, times=None, X0=None,
          groups="auto", rule=None, rtol: float = 1e-7, atol: float = 1e-10, progress: bool = True,
          on_divergence: str = "raise", max_memory_gb: float = 4.0, max_runtime_s: float | None = 3600.0):
    """Deterministic-equivalent risk curves of one-pass SGD (docs/onepass.md, "Equations as implemented").

    Parameters
    ----------
    model : dmft.models.Model or built-in name
    data : onepass.data.GaussianMixture (e.g. ``onepass.data.binary_mixture('zero_one')``)
    lr : float, callable ``t -> gamma_t``, or a schedule (``onepass.AdaGradNorm(lr, b0)``)
    t_max, n_time, times : output grid in units of ``t = steps/d``
    X0 : (k, d) initial student rows (default zero)
    groups : ``'auto'``, ``'exact'`` or ``onepass.data.Binned(n_bins)``
    rule : expectation rule (default: Gauss-Hermite, quasi-Monte Carlo above 4 dims)
    progress : show a bar over time (if the switch :func:`dmft.set_progress` allows it)
    max_memory_gb, max_runtime_s : refuse (ParameterError, before integrating) a solve whose
        estimated memory or run time is above these (``None``: no time limit); the run time
        is the measured cost of one right-hand side times the evaluations an explicit
        integrator needs at the initial stiffness (a LongRunWarning above a minute). The
        estimates are ``attrs['memory_gb']`` and ``attrs['runtime_estimate_s']`` (the latter
        rests on a timing, so it differs between runs like a run time).

    Returns
    -------
    xarray.Dataset with ``risk``, ``norm``, ``overlap``, ``distance``, ``mean_overlap``,
    ``alignment`` (binary), ``group_norm``, ``group_mean_overlap``, ``fisher_trace``,
    ``lr``, ``lr_threshold`` (teacher-student, ``k = k_star``) on ``time``.
    Raises DivergenceError with the time of blow-up if the state explodes (cause
    ``'learning_rate'``; also when the state leaves the cone of covariances on the way);
    its ``threshold`` is ``lr_threshold`` (teacher-student, ``k = k_star``) at the last
    output time before the blow-up. Moments or a risk that are not finite at a finite state
    have cause ``'model'`` (``'data'`` if the teacher's labels are not finite). With
    ``on_divergence='truncate'`` the output times before the divergence are returned
    instead, with ``attrs['diverged_at']``, ``attrs['divergence_cause']`` and
    ``attrs['truncated'] = 1``.
    ``attrs['binning_error_risk']`` estimates the error of binned groups on the risk (0 for
    exact groups; see :func:`_binning_error`).

    Examples
    --------
    Least squares on the identity covariance, where ``|X - X*|^2 = 0.25 + 0.75 exp(-t)``
    at ``lr = 1`` (docs/onepass.md, "Reference values the tests use"):

    >>> import onepass
    >>> from dmft import models
    >>> data = onepass.data.teacher_student(d=100)
    >>> ds = onepass.solve(models.linear_regression(noise_std=0.5), data, lr=1.0, times=[0.0, 1.0],
    ...                    progress=False)
    >>> round(float(ds.distance[1]), 4)
    0.5259
    """
    problem = Problem.build(model, data, groups, rule)
    schedule = as_schedule(lr)
    t = time_grid(t_max, n_time, times)
    rtol = errors.positive("rtol", rtol)
    atol = errors.positive("atol", atol)
    on_divergence = errors.on_divergence(on_divergence)
    max_memory_gb = errors.positive("max_memory_gb", max_memory_gb)
    if max_runtime_s is not None:
        max_runtime_s = errors.positive("max_runtime_s", max_runtime_s)
    X0 = None if X0 is None else _initial_X(problem, X0)
    mem, runtime = _check_cost(problem, schedule, t, X0, max_memory_gb, max_runtime_s)
    ds = _integrate(problem, schedule, t, X0, rtol, atol, progress, on_divergence)
    ds.attrs.update(_binning_error(problem, schedule, ds, X0, rtol, atol))
    ds.attrs.update(memory_gb=mem / 2**30, runtime_estimate_s=runtime)
    return ds


def _stiffness(problem, mom, gamma: float) -> float:
    """``2 gamma max_g sum_c p_c lam_g^(c) |H_c|``: the largest decay rate of the linearised ODE
    (the rate of ``P_g``'s student block), with ``|H_c|`` the spectral norm of ``E l''``."""
    h = np.array([np.abs(np.linalg.eigvalsh(0.5 * (m.hess + m.hess.T))).max() for m in mom])
    return float(2 * gamma * np.max(problem.groups.eigenvalues @ (problem.data.probs * h)))


def _check_cost(problem, schedule, t, X0, max_memory_gb: float, max_runtime_s):
    """``(bytes, seconds)`` of the solve, or a ParameterError past the limits.

    Memory: the state at every output time (kept twice by the integrator) and the
    integrator's 13 stages. Time: DOP853 takes about ``t_max rho / 6 + 20`` steps of 12
    right-hand sides at the initial stiffness ``rho`` (:func:`_stiffness`; checked against
    measured evaluation counts in docs/performance.md, "Resource estimates"), plus one per output time,
    each costing what one evaluation at ``t = 0`` took here.
    """
    P0 = problem.initial_P(X0)
    size = P0.size + 1.0
    mem = 8 * size * (2 * len(t) + 16)
    if mem > max_memory_gb * 2**30:
        raise errors.ParameterError(
            f"n_time={len(t)!r} is not allowed here: onepass.solve would need about {mem / 2**30:.3g} GB > "
            f"max_memory_gb={max_memory_gb:g} ({P0.shape[0]} groups of {P0.shape[1]}^2 entries at each output "
            "time); lower n_time, use groups=onepass.data.Binned(n) with fewer bins, or raise max_memory_gb")
    gamma = schedule(0.0, 0.0)
    cost = []
    for _ in range(2):  # the first call may compile
        t0 = _time.perf_counter()
        _, _, mom = problem.rhs(P0, gamma)
        cost.append(_time.perf_counter() - t0)
    steps = float(t[-1]) * _stiffness(problem, mom, gamma) / 6 + 20
    runtime = (12 * steps + len(t)) * min(cost)
    if max_runtime_s is not None and runtime > max_runtime_s:
        raise errors.ParameterError(
            f"t_max={float(t[-1])!r} is not allowed here: onepass.solve would take about {runtime:.3g} s > "
            f"max_runtime_s={max_runtime_s:g} (about {12 * steps:.3g} right-hand sides of {min(cost):.2g} s: an "
            "explicit integrator's steps grow like lr t_max); lower t_max or lr, or raise max_runtime_s "
            "(None: no limit)")
    errors.warn_long_run("onepass.solve", runtime)
    return mem, runtime


def _binning_error(problem, schedule, ds, X0, rtol, atol) -> dict:
    """``binning_error_risk`` and how it was estimated, for the solution ``ds`` of ``problem``.

    Binned groups converge as ``n_bins^-2`` (docs/onepass.md), so the error of ``Binned(n)``
    is estimated by Richardson extrapolation, ``max_t |risk_n - risk_{n/2}| / 3``, from one
    more solve with ``n/2`` bins (cost independent of ``d``).
    """
    n = problem.groups.n_bins
    if n == 0:
        return {"binning_error_risk": 0.0, "binning_error_method": "exact groups"}
    if n == 1:
        return {"binning_error_risk": np.nan, "binning_error_method": "not estimated: no coarser binning than 1 bin"}
    coarse = Problem(problem.model, problem.data, make_groups(problem.data, Binned(n // 2)), problem.labels,
                     problem.rule)
    try:
        ref = _integrate(coarse, schedule, ds.time.values, X0, rtol, atol, False, "truncate")
    except errors.DivergenceError:
        return {"binning_error_risk": np.nan, "binning_error_method": f"not estimated: Binned({n // 2}) diverged"}
    m = min(ref.sizes["time"], ds.sizes["time"])
    err = float(np.max(np.abs(ds.risk.values[:m] - ref.risk.values[:m]))) / 3
    return {"binning_error_risk": err,
            "binning_error_method": f"max over times of |risk(Binned({n})) - risk(Binned({n // 2}))| / 3"}


def _solve_pieces(f, t, y0, jumps, **options):
    """DOP853 from 0 through the output times ``t``: one ``solve_ivp`` without ``jumps``, else one per
    piece between them (a jump of the rate defeats the error control of a step across it), with
    ``f(tt, y, (a, b))``. Returns scipy's ``t``, ``y``, ``status``, ``t_events`` over the output times."""
    if not len(jumps):
        return solve_ivp(f, (0.0, float(t[-1])), y0, t_eval=t, method="DOP853", **options)
    edges = np.concatenate([[0.0], jumps, [float(t[-1])]])
    ts, ys, y = [], [], y0
    for a, b in zip(edges[:-1], edges[1:]):
        inside = t[((t >= a) if a == 0.0 else (t > a)) & (t <= b)]
        t_eval = inside if inside.size and inside[-1] == b else np.append(inside, b)
        sol = solve_ivp(lambda tt, yy: f(tt, yy, (a, b)), (a, b), y, t_eval=t_eval, method="DOP853", **options)
        keep = np.isin(sol.t, t)
        ts.append(sol.t[keep])
        ys.append(sol.y[:, keep])
        if sol.status != 0 or sol.t.size < t_eval.size:
            return SimpleNamespace(t=np.concatenate(ts), y=np.hstack(ys), status=sol.status, t_events=sol.t_events)
        y = sol.y[:, -1]
    return SimpleNamespace(t=np.concatenate(ts), y=np.hstack(ys), status=0, t_events=[np.zeros(0)])


def _integrate(problem, schedule, t, X0, rtol, atol, progress, on_divergence):
    """The ODE solve of :func:`solve` on checked inputs -> Dataset."""
    P0 = problem.initial_P(X0)
    G, D = P0.shape[0], P0.shape[1]

    def unpack(y):
        return y[:-1].reshape(G, D, D), y[-1]

    bar = progress_bar(progress, total=float(t[-1]), desc="onepass.solve", unit="t")

    def f(tt, y, piece=None):  # piece: the (a, b) between two of the schedule's jumps being integrated
        P, acc = unpack(y)
        gamma = schedule(tt, acc) if piece is None else rate_between(schedule, tt, *piece, acc)
        try:
            dP, dacc, _ = problem.rhs(P, gamma)
        except errors.ParameterError as e:  # a state outside the covariance cone: it has run away
            raise _Diverged(tt, "learning_rate", f"the state left the cone of covariances ({e})") from None
        if not (np.isfinite(dP).all() and np.isfinite(dacc)) and np.isfinite(y).all() and np.abs(y).max() < BLOWUP_NORM:
            raise _Diverged(tt, _model_or_data(problem), "the moments are not finite at a finite state")
        if tt > bar.n:
            bar.update(tt - bar.n)
        return np.append(dP.ravel(), dacc)

    def blowup(tt, y):
        return BLOWUP_NORM - np.max(np.abs(y))

    blowup.terminal = True
    y0 = np.append(P0.ravel(), 0.0)
    diverged_at = None
    if t[-1] == 0:
        states = np.array([y0] * len(t))
    else:
        try:
            with bar:
                sol = _solve_pieces(f, t, y0, jump_times(schedule, float(t[-1])), rtol=rtol, atol=atol,
                                    events=blowup)
        except _Diverged as e:
            err = errors.DivergenceError(f"onepass.solve diverged at time {e.time:.4g}: {e.detail}", e.time,
                                         cause=e.cause)
            if on_divergence == "raise" or not np.any(t < e.time):
                raise err from None
            ds = _integrate(problem, schedule, t[t < e.time], X0, rtol, atol, progress, on_divergence)
            ds.attrs.update(truncated=1, diverged_at=min(e.time, ds.attrs.get("diverged_at", np.inf)),
                            divergence_cause=ds.attrs.get("divergence_cause", e.cause))
            return ds
        diverged_at = None
        if sol.status != 0 or len(sol.t) < len(t) or not np.all(np.isfinite(sol.y)):
            t_bad = float(sol.t_events[0][0]) if len(sol.t_events[0]) else float(sol.t[-1] if len(sol.t) else 0.0)
            good = np.all(np.isfinite(sol.y), axis=0) & (np.abs(sol.y).max(axis=0, initial=0.0) < BLOWUP_NORM)
            n_good = int(np.argmin(good)) if not good.all() else len(sol.t)
            threshold = _threshold(problem, schedule, sol.t[n_good - 1], sol.y[:, n_good - 1], unpack) \
                if n_good else _threshold(problem, schedule, 0.0, y0, unpack)
            if on_divergence == "raise" or n_good == 0:
                msg = f"onepass.solve diverged at time {t_bad:.4g} (state above {BLOWUP_NORM:g})"
                if threshold is not None:
                    msg += (f"; the learning-rate stability threshold 2A/((Tr K/d) I) was {threshold:.4g} "
                            f"at t = {float(sol.t[n_good - 1]) if n_good else 0.0:.4g}")
                raise errors.DivergenceError(msg + "; lower the learning rate", t_bad, threshold)
            t, sol_y, diverged_at = t[:n_good], sol.y[:, :n_good], t_bad
        else:
            sol_y = sol.y
        states = sol_y.T
    records, risk_error = [], 0.0
    checked = set(np.unique(np.linspace(0, len(t) - 1, 6).round().astype(int)))
    for j, (tt, yy) in enumerate(zip(t, states)):
        P, acc = unpack(yy)
        gamma = schedule(tt, acc)
        S = P.sum(axis=0)
        B = problem.class_covariances(P)
        records.append(problem.observables(S, B, P, problem.moments(S, B), gamma))
        if j in checked:  # the error is smooth in the state: a few times bound it along the run
            err = problem.risk_error(S, B)
            risk_error = max(risk_error, err)
            if err > 1e-4 * abs(records[-1]["risk"]):
                warnings.warn(
                    f"onepass.solve: the risk's estimated integration error {err:.3g} at t = {tt:.4g} exceeds "
                    f"1e-4 of the risk ({records[-1]['risk']:.4g}); pass a finer rule or declare the model's kinks",
                    errors.QuadratureWarning, stacklevel=3)
    attrs = {"lr": repr(schedule), "t_max": float(t[-1]), "rtol": rtol, "atol": atol,
             "source": "theory", "method": "onepass ODE (docs/onepass.md)",
             "risk_quadrature_error": risk_error}
    if t[-1] != 0 and diverged_at is not None:
        attrs.update(truncated=1, diverged_at=diverged_at, divergence_cause="learning_rate")
    ds = problem.dataset(t, records, attrs)
    output.check_finite("risk", t, ds.risk.values, cause=_model_or_data(problem))  # the state is finite here
    return ds


class _Diverged(Exception):
    """Stops the integrator at time ``time``; becomes a DivergenceError with ``cause``."""

    def __init__(self, time: float, cause: str, detail: str):
        super().__init__(detail)
        self.time, self.cause, self.detail = float(time), cause, detail


def _model_or_data(problem) -> str:
    """``'data'`` if the teacher gives a non-finite label at one of 65 points ``r* = eps = u 1``
    with ``u`` in ``[-8, 8]`` (where the quadrature goes), else ``'model'``: who made finite
    states give non-finite moments."""
    model = problem.model
    if problem.labels is not None:
        return "data" if not np.isfinite(problem.labels).all() else "model"
    y = np.empty(model.label_dim)
    for u in np.linspace(-8.0, 8.0, 65):
        model.teacher(np.full(model.k_star, u), np.full(model.noise_dim, u), model.param_array, y)
        if not np.isfinite(y).all():
            return "data"
    return "model"
