"""Finite-d simulators of one-pass SGD: numba SGD and homogenized SGD (docs/onepass.md, "Equations as implemented").

Parameter-side observables (``norm``, overlaps, group sums, ``alignment``) are exact
functions of the iterate ``X``. Sample-side observables (``risk``, ``fisher_trace``,
``lr_threshold``) are measured on a held-out set: ``n_test`` fresh samples of the data
(class, ``a = mu_c + K_c^{1/2} xi``, hard label or teacher label with fresh noise) drawn
once per seed from its own stream and passed through the model's loss and gradient at
every output time. No Gaussian expectation of the engine is involved, so the simulation
checks the theory's quadrature as well as its equations.
"""
from __future__ import annotations

import math
import os
import time as _time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dmft import errors, output
from dmft._config import BLOWUP_NORM
from dmft._jit import specialise
from dmft._kernels_normal import stream
from dmft._brownian import BridgeNormals
from dmft._progress import progress_bar
from dmft.schedules import AdaGradNorm, as_schedule

from ._kernels import heldout_sums, sgd_steps
from .theory import Problem, _initial_X, _model_or_data, _stiffness, time_grid

#: seconds per multiply-add or normal of the simulators' loops (one core; docs/performance.md)
_SECONDS_PER_OP = 1e-9
#: fixed cost of one SGD step (class draw, label noise, loop) and of one HSGD step (its
#: per-class matrices in Python) in the same units
_STEP_OVERHEAD, _HSGD_STEP_OVERHEAD = 150, 200_000
#: HSGD's step warns (UnresolvedTimeStepWarning) above this z = gamma dt max lam |E l''|,
#: a variance bias z/(2 - z) of 5%
_Z_WARN = 2 * 0.05 / 1.05
#: above this z (an additive-noise variance bias z/(2 - z) of 1%) HSGD's step is checked against
#: dt/2 by default: noise that grows with the state raises the bias to about z/(2 - g - z), ``g``
#: the noise's feedback gain (``gamma`` for the squared loss with K = I), so that 10% at this z
#: needs ``g > 1.78``, within 11% of the mean-square stability edge ``g = 2``
_Z_CHECK = 2 * 0.01 / 1.01

def _parameter_observables(problem: Problem, X: np.ndarray) -> dict:
    W = problem.stack(X)
    return problem.parameter_observables(W @ W.T, problem.groups.sum_outer(W))


#: children of a seed's ``SeedSequence``: SGD runs on 0 and 1 (HSGD on the seed itself), the
#: held-out set on 2, the fresh normals of HSGD's step check on 3
_HELDOUT_CHILD, _BRIDGE_CHILD = 2, 3


def _heldout_observables(problem: Problem, snaps, ss, n_test: int) -> dict:
    """``risk``, ``risk_se``, ``fisher_trace`` (and ``lr_threshold``) of each snapshot on one held-out set.

    snaps: list of T (k, d) iterates. Over the ``n_test`` samples, ``risk`` is the mean loss
    and ``risk_se = std(loss)/sqrt(n_test)``; ``fisher_trace = mean |g|^2`` estimates
    ``sum_c p_c tr I_c``; with ``k = k_star``, ``lr_threshold = 2 mean(g . (r - r*)) /
    mean((Tr K_c/d) |g|^2)`` (``A`` and ``(Tr K/d) I`` of ``dD^2/dt``, ``c`` the sample's class).
    """
    data, model = problem.data, problem.model
    k, ks = problem.k, problem.ks
    class_ss, normal_ss = errors.child_seed(ss, _HELDOUT_CHILD).spawn(2)
    rng = np.random.default_rng(class_ss)
    classes = np.minimum(np.searchsorted(np.cumsum(data.probs), rng.random(n_test), side="right"), data.n_classes - 1)
    hard = problem.labels is not None
    eps = rng.standard_normal((n_test, 0 if hard else model.noise_dim))  # fresh label noise
    labels = np.ascontiguousarray(problem.labels if hard else np.zeros((1, model.label_dim)), dtype=float)
    W = _padded(np.vstack(list(snaps) + ([data.teacher] if ks else [])))
    out = np.empty((5, len(snaps)))
    kernel = specialise(heldout_sums, loss=model.loss, grad=model.grad, teacher=model.teacher, error_model="numpy")
    with np.errstate(over="ignore", invalid="ignore"):
        kernel(model.param_array, W, _padded(data.means), _padded(np.sqrt(data.eigenvalues)), classes,
               *stream(normal_ss), eps, labels, hard, np.asarray(data.trace_ratio, dtype=float), k, ks,
               model.label_dim, out)
    mean, m2, g2, g2_weighted, gr = out
    held = {"risk": mean, "risk_se": np.sqrt(m2 / (n_test - 1) / n_test), "fisher_trace": g2 / n_test}
    if ks == k:
        noise = g2_weighted / n_test
        with np.errstate(divide="ignore", invalid="ignore"):
            # at an exact interpolating optimum both vanish: no constraint on the rate
            held["lr_threshold"] = np.where(noise > 1e-12, 2 * (gr / n_test) / noise, np.inf)
    return held


def simulate(model, data, *, lr=0.5, t_max: float = 20.0, n_time: int = 101, times=None, X0=None,
             n_seeds: int = 4, seed: int = 0, dynamics: str = "sgd", dt: float = 0.01, check_dt: bool | None = None,
             groups="auto", rule=None, n_test: int = 10_000, workers: int | None = None, progress: bool = True,
             on_divergence: str = "raise", max_memory_gb: float = 4.0, max_runtime_s: float | None = 3600.0):
    """Simulate one-pass SGD (``dynamics='sgd'``) or homogenized SGD (``'hsgd'``) at the data's ``d``.

    Same arguments and output variables as :func:`onepass.solve`, plus a ``seed`` dim.
    SGD: one fresh sample per step, ``t = step/d``, numba kernel (O(k d) per step).
    HSGD: Euler-Maruyama with step ``dt`` of
    ``dX = -gamma grad L(X) dt + (gamma/sqrt(d)) sqrt(sum_c p_c I_c(X) (x) K_c) dW``
    (weak error O(dt)); its drift and noise are Gaussian expectations of the theory's
    engine (``rule``), so HSGD checks the ODE's closure, not the engine. Seeds ``seed`` spawn
    ``n_seeds`` independent streams (an int, a ``numpy.random.SeedSequence``, or a
    ``numpy.random.Generator``, which stands for the integer ``int(seed.integers(2**63))``
    drawn from it, ``attrs['seed']``); they run on ``workers`` threads (default: one per core,
    at most ``n_seeds``), and the numbers do not depend on ``workers``.

    ``risk``, ``fisher_trace`` and ``lr_threshold`` are measured on ``n_test`` held-out
    samples per seed (one set for all output times, from the seed's stream); ``risk_se``
    (seed, time) is the held-out standard error ``std(loss)/sqrt(n_test)`` of each seed's
    ``risk``. The spread of ``risk`` over seeds includes it. The other observables are
    exact functions of ``X``.

    Divergence (:class:`~dmft.errors.DivergenceError`, or with ``on_divergence='truncate'``
    the output times before the earliest one over the seeds, ``attrs['truncated'] = 1``,
    ``attrs['diverged_at']``, ``attrs['divergence_cause']``): ``risk`` or ``tr norm`` non-finite
    or above 1e12 (cause ``'learning_rate'``, with the seed mean of ``lr_threshold`` before it
    as ``threshold``; ``'model'`` if the state was finite or the gradient is not finite at
    moderate fields, ``'data'`` if the teacher's labels are not); HSGD's Euler-Maruyama step
    unstable, ``z = gamma dt max_i sum_c p_c lam_i^(c) |E l''_c| >= 2``, or not resolved: the
    stiffest mode's variance inflated by ``z / (2 - z)`` above
    :data:`~dmft.errors.STEP_BIAS_LIMIT` (10%, ``z > 0.18``; cause ``'time_step'``, at the
    first such step); above 5% (``z > 0.095``) an
    :class:`~dmft.errors.UnresolvedTimeStepWarning`. The ``z`` bound is that of noise that does
    not depend on the state; noise that grows with it feeds the variance excess back (about
    ``z / (2 - g - z)``, ``g`` the noise's gain, ``gamma`` for the squared loss with K = I).
    ``check_dt`` (default ``None``: where ``z > 0.0198``, an additive-noise bias of 1%; ``True``:
    always; ``False``: never) therefore runs every seed again with each step halved, on the same
    Brownian path (each normal ``u`` of a step becomes ``(u + v)/sqrt(2)``, ``(u - v)/sqrt(2)``
    with a fresh ``v``) and the same held-out set, and takes the Richardson estimate of the step
    error, ``2 |mean(x(dt) - x(dt/2))|`` over the seeds, of the risk (relative to it) and of
    ``tr norm`` (to its largest value): above 10% and 2 standard errors (or too noisy to tell),
    or a halved run that fails, is a ``'time_step'`` DivergenceError at that output time with a
    step that would bring the estimate to 5% (costs twice the run).

    ``max_memory_gb``, ``max_runtime_s``: refuse (ParameterError, before any work) a run whose
    estimated memory or run time is above these (``None``: no time limit); a
    :class:`~dmft.errors.LongRunWarning` announces estimates above a minute. The estimates are
    ``attrs['memory_gb']`` and ``attrs['runtime_estimate_s']``; they depend on ``workers``
    (and HSGD's on a timing), the other outputs do not.

    Examples
    --------
    >>> import onepass
    >>> data = onepass.data.teacher_student(d=100)
    >>> ds = onepass.simulate("linear_regression", data, lr=1.0, t_max=1.0, n_time=3, n_seeds=2,
    ...                       n_test=1000, progress=False)
    >>> ds.risk.dims
    ('seed', 'time')
    """
    problem = Problem.build(model, data, groups, rule)
    schedule = as_schedule(lr)
    t = time_grid(t_max, n_time, times)
    n_seeds = errors.positive_int("n_seeds", n_seeds)
    errors.choice("dynamics", dynamics, ("sgd", "hsgd"))
    workers = min(n_seeds, os.cpu_count() or 1) if workers is None else errors.positive_int("workers", workers)
    X0 = _initial_X(problem, X0)
    if dynamics == "hsgd":
        dt = errors.positive("dt", dt)
    check_dt = errors.choice("check_dt", check_dt, (None, True, False))
    n_test = errors.positive_int("n_test", n_test, minimum=2)
    on_divergence = errors.on_divergence(on_divergence)
    max_memory_gb = errors.positive("max_memory_gb", max_memory_gb)
    if max_runtime_s is not None:
        max_runtime_s = errors.positive("max_runtime_s", max_runtime_s)
    seed = errors.seed_value(seed)
    streams = errors.seed_sequence(seed).spawn(n_seeds)
    mem, runtime = _check_cost(problem, schedule, t, X0, dynamics, dt, n_seeds, n_test, workers, max_memory_gb,
                               max_runtime_s, check_dt)

    def one_seed(ss):
        half = None
        if dynamics == "sgd":
            snaps, lrs = _run_sgd(problem, schedule, t, X0, ss)
            err = None
        else:
            snaps, lrs, err, z_max = _run_hsgd(problem, schedule, t, X0, dt, ss)
            if err is None and check_dt is not False and (check_dt or z_max > _Z_CHECK):
                half, err = _halved_hsgd(problem, schedule, t, X0, dt, ss, n_test)
        held = _heldout_observables(problem, snaps, ss, n_test)
        return [{**_parameter_observables(problem, X), **{name: v[j] for name, v in held.items()}, "lr": g}
                for j, (X, g) in enumerate(zip(snaps, lrs))], err, half

    # the SGD kernel releases the GIL, so seeds on threads use every core
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(progress_bar(progress, pool.map(one_seed, streams), total=n_seeds,
                                    desc=f"onepass.simulate[{dynamics}]", unit="seed"))
    attrs = {"lr": repr(schedule), "t_max": float(t[-1]), "n_seeds": n_seeds, "seed": seed,
             "dynamics": dynamics, "source": "simulation", "n_test": n_test,
             "risk_method": "held-out: mean loss over n_test fresh samples per seed (one set for all times); "
                            "risk_se = std(loss)/sqrt(n_test)",
             "dt": dt if dynamics == "hsgd" else 1.0 / problem.data.d,
             "memory_gb": mem / 2**30, "runtime_estimate_s": runtime}
    ds = problem.dataset(t, [r for r, _, _ in results], attrs, seed_dim=True)
    errs = [e for _, e, _ in results if e is not None] + [_divergence(problem, ds, dynamics)]
    if dynamics == "hsgd":
        half = np.array([h if h is not None else np.full((2, len(t)), np.nan) for _, _, h in results])
        errs.append(errors.step_bias(
            "onepass.simulate[hsgd]", dt, 1, t,
            [("risk", ds.risk.values, half[:, 0], False),
             ("tr norm", ds.norm.values.diagonal(axis1=-2, axis2=-1).sum(-1), half[:, 1], True)]))
    errs = [e for e in errs if e is not None]
    if errs:
        first = min(errs, key=lambda e: e.time)
        keep = ds.time.values < first.time
        if on_divergence == "raise" or not keep.any():
            raise first
        ds = ds.isel(time=keep)
        ds.attrs.update(truncated=1, diverged_at=first.time, divergence_cause=first.cause,
                        t_max=float(ds.time[-1]))
    return ds


def _divergence(problem: Problem, ds, dynamics: str):
    """The DivergenceError of the first output time at which a seed's ``risk`` or ``tr norm``
    is non-finite or above 1e12 (None if none), with its cause: ``'model'``/``'data'`` when
    the state is finite there (the loss is not) or a probe finds a non-finite gradient at
    moderate fields (:func:`_probe_gradient`), else ``'learning_rate'`` with the seed mean
    of ``lr_threshold`` before it."""
    tr = ds.norm.values.diagonal(axis1=-2, axis2=-1).sum(-1)  # (seed, time)
    risk = ds.risk.values
    bad_state = ~np.isfinite(tr) | (np.abs(np.nan_to_num(tr)) > BLOWUP_NORM)
    bad = bad_state | ~np.isfinite(risk) | (np.abs(np.nan_to_num(risk)) > BLOWUP_NORM)
    if not bad.any():
        return None
    j = int(np.argmax(bad.any(axis=0)))
    t_bad = float(ds.time[j])
    where = f"onepass.simulate[{dynamics}] diverged at time {t_bad:.4g}"
    if not bad_state[:, j].any():
        return errors.DivergenceError(f"{where}: the risk is not finite at a finite state", t_bad,
                                      cause=_model_or_data(problem))
    good = tr[:, :j][np.isfinite(tr[:, :j])]
    probe = _probe_gradient(problem, float(np.max(good, initial=1.0)))
    if probe is not None:
        return errors.DivergenceError(f"{where}: the model's gradient is not finite at r = {probe[0]}, "
                                      f"y = {probe[1]}", t_bad, cause="model")
    thr = _last_threshold(ds, t_bad)
    msg = where if thr is None else f"{where}; the stability threshold 2A/((Tr K/d) I) before the blow-up was {thr:.4g}"
    return errors.DivergenceError(msg, t_bad, thr)


def _probe_gradient(problem: Problem, norm: float):
    """``(r, y)`` where the model's gradient is not finite among 256 fields ``r ~ N(0, s^2 I)``
    (``s^2`` the largest finite ``tr norm`` before the blow-up, at least 1; fixed points) with
    the data's labels, or None. A blow-up inside one kernel call leaves no state just before
    it: the probe looks where the run was going."""
    model = problem.model
    rng = np.random.default_rng(0)
    r = math.sqrt(max(norm, 1.0)) * rng.standard_normal((256, model.k))
    g = np.empty(model.k)
    y = np.empty(model.label_dim)
    for i in range(len(r)):
        if problem.labels is not None:
            y[:] = problem.labels[i % len(problem.labels)]
        else:
            model.teacher(rng.standard_normal(model.k_star), rng.standard_normal(model.noise_dim),
                          model.param_array, y)
        model.grad(r[i], y, model.param_array, g)
        if not np.isfinite(g).all():
            return r[i].tolist(), y.tolist()
    return None


def _check_cost(problem: Problem, schedule, t, X0, dynamics: str, dt: float, n_seeds: int, n_test: int,
                workers: int, max_memory_gb: float, max_runtime_s, check_dt=None):
    """``(bytes, seconds)`` of the run, or a ParameterError past the limits.

    Memory per seed running at once (``workers``): its iterates at every output time and,
    for the held-out pass over them, their stacked and their padded copy (``3 n_time k d``),
    padded copies of the data rows, the held-out samples. Time: SGD ``t_max d`` steps of about ``(k + k_star + 2) d``
    multiply-adds and normals, HSGD ``t_max / dt`` steps of ``(C + 2) k d`` plus the
    class moments (timed here once), the held-out pass ``n_time n_test (k + k_star) d``;
    at ``_SECONDS_PER_OP`` (measured, docs/performance.md), seeds shared among the cores.
    """
    data = problem.data
    d, k, ks, C = float(data.d), problem.k, problem.ks, data.n_classes
    T = float(len(t))
    parallel = max(1, min(workers, n_seeds, os.cpu_count() or 1))
    mem = 8 * (min(workers, n_seeds) * (3 * T * k * d + 3 * (C + ks + k + 1) * d + 3 * n_test)
               + n_seeds * T * (problem.D ** 2 + 8))
    if mem > max_memory_gb * 2**30:
        raise errors.ParameterError(
            f"n_time={len(t)!r} is not allowed here: onepass.simulate would need about {mem / 2**30:.3g} GB > "
            f"max_memory_gb={max_memory_gb:g} (each of {min(workers, n_seeds)} seeds at once keeps its k x d iterate "
            f"at every output time, d = {data.d}); lower n_time or workers, or raise max_memory_gb")
    # the held-out pass draws n_test d normals and takes dot products with every iterate
    heldout = n_test * d + 0.4 * T * n_test * (k + ks) * d
    if dynamics == "sgd":
        per_seed = float(t[-1]) * d * ((k + ks + 2) * d + _STEP_OVERHEAD) + heldout
        extra = 0.0
    else:
        steps = math.ceil(float(t[-1]) / dt)
        W = problem.stack(np.zeros((k, data.d)) if X0 is None else X0)
        B = np.einsum("ci,ai,bi->cab", data.eigenvalues, W[:k + ks], W[:k + ks])
        cost = []
        for _ in range(2):  # the first call may compile
            t0 = _time.perf_counter()
            mom = problem.moments(W @ W.T, B)
            cost.append(_time.perf_counter() - t0)
        # the step check (check_dt) runs every step again as two halves, judged by z at the start
        z = 0.5 * dt * _stiffness(problem, mom, schedule(0.0, 0.0))
        if check_dt is not False and (check_dt or z > _Z_CHECK):
            steps, heldout = 3 * steps, 2 * heldout
        extra = steps * min(cost)
        # per step: C k d normals (~10 operations each) and the per-class Python work
        per_seed = steps * (10 * C * k * d + _HSGD_STEP_OVERHEAD) + heldout
    runtime = n_seeds * (per_seed * _SECONDS_PER_OP + extra) / parallel
    if max_runtime_s is not None and runtime > max_runtime_s:
        raise errors.ParameterError(
            f"t_max={float(t[-1])!r} is not allowed here: onepass.simulate would take about {runtime:.3g} s > "
            f"max_runtime_s={max_runtime_s:g} ({n_seeds} seeds of "
            + (f"t_max d = {float(t[-1]) * d:.3g} SGD steps in d = {data.d}" if dynamics == "sgd" else
               f"t_max / dt = {math.ceil(float(t[-1]) / dt)} HSGD steps")
            + f" on {parallel} cores); lower t_max or n_seeds, or raise max_runtime_s (None: no limit)")
    errors.warn_long_run("onepass.simulate", runtime)
    return mem, runtime


def _last_threshold(ds, t_bad):
    """Seed mean of ``lr_threshold`` at the last output time before ``t_bad`` (None if absent)."""
    if "lr_threshold" not in ds or not (ds.time < t_bad).any():
        return None
    v = ds.lr_threshold.sel(time=ds.time[ds.time < t_bad][-1]).values
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


_BLOCK = 512  # steps per kernel call: classes and label noise for a block are drawn at once


def _run_sgd(problem: Problem, schedule, t, X0, ss):
    data, model = problem.data, problem.model
    d, C = data.d, data.n_classes
    class_ss, normal_ss = ss.spawn(2)
    rng = np.random.default_rng(class_ss)
    key, gamma_rng = stream(normal_ss)
    snap_steps = np.rint(t * d).astype(np.int64)
    adagrad = isinstance(schedule, AdaGradNorm)
    lr0, b0 = (schedule.lr, schedule.b0) if adagrad else (0.0, 1.0)
    hard = problem.labels is not None
    labels = np.ascontiguousarray(problem.labels if hard else np.zeros((1, model.label_dim)), dtype=float)
    # the kernel works on D = d + d % 2 columns: an odd d gets a zero column (see sgd_steps)
    Xstar = _padded(data.teacher if data.teacher is not None else np.zeros((0, d)))
    means, sqrt_lam, cum = _padded(data.means), _padded(np.sqrt(data.eigenvalues)), np.cumsum(data.probs)
    noise_dim = 0 if hard else model.noise_dim
    kernel = specialise(sgd_steps, grad=model.grad, teacher=model.teacher, error_model="numpy")
    X = _padded(X0)
    acc = 0.0
    gamma = schedule(0.0, 0.0)
    snaps, lrs = [], []
    step = 0
    for target in snap_steps:
        while step < target:
            n = int(min(_BLOCK, target - step))
            classes = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), C - 1)
            eps = rng.standard_normal((n, noise_dim))
            # the learning rate of step j is the schedule at t = j/d
            lr_steps = np.zeros(0) if adagrad else schedule.rates((step + np.arange(n)) / d)
            with np.errstate(over="ignore", invalid="ignore"):
                acc, gamma = kernel(model.param_array, X, Xstar, means, sqrt_lam, d, classes, key, gamma_rng, step,
                                    eps, labels, hard, lr_steps, adagrad, lr0, b0, acc, model.label_dim)
            step += n
        snaps.append(X[:, :d].copy())
        # the rate at the snapshot's time, as onepass.solve reports it (AdaGrad-Norm: the last step's)
        lrs.append(gamma if adagrad and step else schedule(step / d, acc))
    return snaps, lrs


def _padded(A):
    """``A`` (rows, d) as a C-contiguous float copy with ``d + d % 2`` columns, the extra one zero."""
    out = np.zeros((A.shape[0], A.shape[1] + A.shape[1] % 2))
    out[:, :A.shape[1]] = A
    return out


def _psd_sqrt(M):
    w, v = np.linalg.eigh(0.5 * (M + M.T))
    return v * np.sqrt(np.clip(w, 0, None))


def _step_bias(z: float) -> float:
    """Relative excess of the stationary variance of an Ornstein-Uhlenbeck mode
    ``de = -a e dt + s dW`` under Euler-Maruyama with ``z = a dt``: ``s^2 dt / (1 - (1 - z)^2)``
    against ``s^2 / (2 a)``, i.e. ``1 / (1 - z/2) - 1 = z / (2 - z)`` (HSGD's stiffest mode;
    its transient decays at ``-log(1 - z)/dt`` instead of ``a``, a relative error of about
    ``z/2`` too)."""
    return z / (2 - z)


def _halved_hsgd(problem: Problem, schedule, t, X0, dt, ss, n_test: int):
    """HSGD again with every step split in two halves on the same Brownian path
    (:class:`dmft._brownian.BridgeNormals`, fresh normals from a child of ``ss``): ``(its risk
    and tr norm, (2, time), None)``, or ``(None, DivergenceError)`` (cause ``'time_step'``) when it
    diverges or is unstable where the run was not. The risk is measured on the run's held-out set."""
    normals = BridgeNormals(np.random.default_rng(ss), np.random.default_rng(errors.child_seed(ss, _BRIDGE_CHILD)))
    snaps, _, err, _ = _run_hsgd(problem, schedule, t, X0, dt, ss, split=2, normals=normals)
    if err is not None:
        return None, errors.DivergenceError(
            f"homogenized SGD is not resolved at dt = {dt:.4g}: with every step halved it fails at time {err.time:.4g} "
            f"({err})", err.time, cause="time_step")
    risk = _heldout_observables(problem, snaps, ss, n_test)["risk"]
    return np.array([risk, [np.trace(_parameter_observables(problem, X)["norm"]) for X in snaps]]), None


def _run_hsgd(problem: Problem, schedule, t, X0, dt, ss, split: int = 1, normals=None):
    """Euler-Maruyama of HSGD: steps of ``min(dt, time to the next output)``, each as ``split``
    equal steps, with the standard normals of ``normals`` (default ``default_rng(ss)``).
    Returns the iterates and learning rates at ``t``, a DivergenceError or None, and the largest
    ``z = gamma h max_i sum_c p_c lam_i |E l''_c|`` of the run."""
    data = problem.data
    rng = np.random.default_rng(ss) if normals is None else normals
    k, ks, d = problem.k, problem.ks, data.d
    lam, p = data.eigenvalues, data.probs
    kk = k + ks
    X = X0.copy()
    acc, now = 0.0, 0.0
    snaps, lrs = [], []
    warned = False
    z_max = 0.0

    def stop(err):  # the snapshots so far, NaN for the rest
        nan = np.full_like(X, np.nan)
        return snaps + [nan] * (len(t) - len(snaps)), lrs + [np.nan] * (len(t) - len(lrs)), err, z_max

    for target in t:
        for h in _steps(dt, target - now, split):
            W = problem.stack(X)
            B = np.einsum("ci,ai,bi->cab", lam, W[:kk], W[:kk])
            try:
                mom = problem.moments(W @ W.T, B)
            except errors.ParameterError as e:  # an iterate so large that B is no covariance any more
                return stop(errors.DivergenceError(
                    f"homogenized SGD diverged at time {now:.4g} (the class covariances left the cone: {e})", now))
            gamma = schedule(now, acc)
            z = 0.5 * h * _stiffness(problem, mom, gamma)
            z_max = max(z_max, z)
            if z >= 2:
                return stop(errors.DivergenceError(
                    f"homogenized SGD is unstable at time {now:.4g}: the Euler-Maruyama step dt = {h:.4g} has gamma dt "
                    f"max_i sum_c p_c lam_i |E l''_c| = {z:.3g} >= 2; use dt < {2 * h / z:.3g}", now,
                    cause="time_step"))
            bias = _step_bias(z)
            if bias > errors.STEP_BIAS_LIMIT:
                return stop(errors.DivergenceError(
                    f"homogenized SGD is not resolved at time {now:.4g}: the Euler-Maruyama step dt = {h:.4g} (z = gamma "
                    f"dt max_i sum_c p_c lam_i |E l''_c| = {z:.3g}) inflates the stiffest mode's variance by z/(2 - z) = "
                    f"{bias:.0%} > {errors.STEP_BIAS_LIMIT:.0%}; use dt <= {h * _Z_WARN / z:.3g}", now, cause="time_step"))
            if bias > _step_bias(_Z_WARN) and not warned:
                warned = True
                warnings.warn(f"onepass.simulate[hsgd]: the Euler-Maruyama step dt = {h:.4g} inflates the stiffest "
                              f"mode's variance by z/(2 - z) = {bias:.1%} at time {now:.4g}; use dt <= "
                              f"{h * _Z_WARN / z:.3g}", errors.UnresolvedTimeStepWarning, stacklevel=2)
            grad = np.zeros((k, d))
            noise = np.zeros((k, d))
            for c, m in enumerate(mom):
                lin = m.hess @ X + (m.hess_star @ data.teacher if ks else 0.0)
                grad += p[c] * (np.outer(m.grad, data.means[c]) + lin * lam[c])
                noise += _psd_sqrt(m.fisher) @ rng.standard_normal((k, d)) * np.sqrt(p[c] * lam[c])
            X = X - gamma * h * grad + gamma * np.sqrt(h / d) * noise
            acc += h * problem.acc_rate(mom)
            now += h
            if not np.all(np.isfinite(X)) or np.sum(X * X) / d > BLOWUP_NORM:
                return stop(errors.DivergenceError(f"homogenized SGD diverged at time {now:.4g}", now))
        snaps.append(X.copy())
        lrs.append(schedule(now, acc))
    return snaps, lrs, None, z_max


def _steps(dt: float, gap: float, split: int):
    """The steps over an output interval of length ``gap``: ``min(dt, what is left)`` until less
    than 1e-12 is left, each as ``split`` equal steps."""
    while gap > 1e-12:
        step = min(dt, gap)
        gap -= step
        yield from (step / split,) * split
