"""Finite-d simulators of one-pass SGD: numba SGD and homogenized SGD (THEORY.md section 2).

Parameter-side observables (``norm``, overlaps, group sums, ``alignment``) are exact
functions of the iterate ``X``. Sample-side observables (``risk``, ``fisher_trace``,
``lr_threshold``) are measured on a held-out set: ``n_test`` fresh samples of the data
(class, ``a = mu_c + K_c^{1/2} xi``, hard label or teacher label with fresh noise) drawn
once per seed from its own stream and passed through the model's loss and gradient at
every output time. No Gaussian expectation of the engine is involved, so the simulation
checks the theory's quadrature as well as its equations.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from dmft import errors, output
from dmft._jit import specialise
from dmft._kernels_normal import stream

from ._kernels import heldout_sums, sgd_steps
from .schedules import AdaGradNorm, as_schedule
from .theory import Problem, _initial_X, time_grid

def _parameter_observables(problem: Problem, X: np.ndarray) -> dict:
    W = problem.stack(X)
    return problem.parameter_observables(W @ W.T, problem.groups.sum_outer(W))


def _heldout_stream(ss: np.random.SeedSequence) -> np.random.SeedSequence:
    """Child 2 of the seed's ``SeedSequence`` (SGD runs on children 0 and 1, HSGD on ``ss`` itself)."""
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 2), pool_size=ss.pool_size)


def _heldout_observables(problem: Problem, snaps, ss, n_test: int) -> dict:
    """``risk``, ``risk_se``, ``fisher_trace`` (and ``lr_threshold``) of each snapshot on one held-out set.

    snaps: list of T (k, d) iterates. Over the ``n_test`` samples, ``risk`` is the mean loss
    and ``risk_se = std(loss)/sqrt(n_test)``; ``fisher_trace = mean |g|^2`` estimates
    ``sum_c p_c tr I_c``; with ``k = k_star``, ``lr_threshold = 2 mean(g . (r - r*)) /
    mean((Tr K_c/d) |g|^2)`` (``A`` and ``(Tr K/d) I`` of ``dD^2/dt``, ``c`` the sample's class).
    """
    data, model = problem.data, problem.model
    k, ks = problem.k, problem.ks
    class_ss, normal_ss = _heldout_stream(ss).spawn(2)
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
             n_seeds: int = 4, seed: int = 0, dynamics: str = "sgd", dt: float = 0.01,
             groups="auto", rule=None, n_test: int = 10_000, workers: int | None = None, progress: bool = True):
    """Simulate one-pass SGD (``dynamics='sgd'``) or homogenized SGD (``'hsgd'``) at the data's ``d``.

    Same arguments and output variables as :func:`onepass.solve`, plus a ``seed`` dim.
    SGD: one fresh sample per step, ``t = step/d``, numba kernel (O(k d) per step).
    HSGD: Euler-Maruyama with step ``dt`` of
    ``dX = -gamma grad L(X) dt + (gamma/sqrt(d)) sqrt(sum_c p_c I_c(X) (x) K_c) dW``
    (weak error O(dt)); its drift and noise are Gaussian expectations of the theory's
    engine (``rule``), so HSGD checks the ODE's closure, not the engine. Seeds ``seed`` spawn
    ``n_seeds`` independent streams; they run on ``workers`` threads (default: one per core,
    at most ``n_seeds``), and the numbers do not depend on ``workers``.

    ``risk``, ``fisher_trace`` and ``lr_threshold`` are measured on ``n_test`` held-out
    samples per seed (one set for all output times, from the seed's stream); ``risk_se``
    (seed, time) is the held-out standard error ``std(loss)/sqrt(n_test)`` of each seed's
    ``risk``. The spread of ``risk`` over seeds includes it. The other observables are
    exact functions of ``X``.
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
    n_test = errors.positive_int("n_test", n_test, minimum=2)
    streams = errors.seed_sequence(seed).spawn(n_seeds)

    def one_seed(ss):
        snaps, lrs = _run_sgd(problem, schedule, t, X0, ss) if dynamics == "sgd" else \
            _run_hsgd(problem, schedule, t, X0, dt, ss)
        held = _heldout_observables(problem, snaps, ss, n_test)
        return [{**_parameter_observables(problem, X), **{name: v[j] for name, v in held.items()}, "lr": g}
                for j, (X, g) in enumerate(zip(snaps, lrs))]

    # the SGD kernel releases the GIL, so seeds on threads use every core
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = list(tqdm(pool.map(one_seed, streams), total=n_seeds, disable=not progress,
                         desc=f"onepass.simulate[{dynamics}]", unit="seed"))
    attrs = {"lr": repr(schedule), "t_max": float(t[-1]), "n_seeds": n_seeds, "seed": seed,
             "dynamics": dynamics, "source": "simulation", "n_test": n_test,
             "risk_method": "held-out: mean loss over n_test fresh samples per seed (one set for all times); "
                            "risk_se = std(loss)/sqrt(n_test)",
             "dt": dt if dynamics == "hsgd" else 1.0 / problem.data.d}
    ds = problem.dataset(t, runs, attrs, seed_dim=True)
    try:
        output.check_finite(f"onepass.simulate[{dynamics}] risk", t, ds.risk.max("seed").values)
    except errors.DivergenceError as e:
        thr = _last_threshold(ds, e.time)
        msg = str(e) if thr is None else f"{e}; the stability threshold 2A/((Tr K/d) I) before the blow-up was {thr:.4g}"
        raise errors.DivergenceError(msg, e.time, thr) from None
    return ds


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
        lrs.append(gamma if step else schedule(0.0, 0.0))
    return snaps, lrs


def _padded(A):
    """``A`` (rows, d) as a C-contiguous float copy with ``d + d % 2`` columns, the extra one zero."""
    out = np.zeros((A.shape[0], A.shape[1] + A.shape[1] % 2))
    out[:, :A.shape[1]] = A
    return out


def _psd_sqrt(M):
    w, v = np.linalg.eigh(0.5 * (M + M.T))
    return v * np.sqrt(np.clip(w, 0, None))


def _run_hsgd(problem: Problem, schedule, t, X0, dt, ss):
    data = problem.data
    rng = np.random.default_rng(ss)
    k, ks, d = problem.k, problem.ks, data.d
    lam, p = data.eigenvalues, data.probs
    kk = k + ks
    X = X0.copy()
    acc, now = 0.0, 0.0
    snaps, lrs = [], []
    for target in t:
        while now < target - 1e-12:
            h = min(dt, target - now)
            W = problem.stack(X)
            B = np.einsum("ci,ai,bi->cab", lam, W[:kk], W[:kk])
            mom = problem.moments(W @ W.T, B)
            gamma = schedule(now, acc)
            grad = np.zeros((k, d))
            noise = np.zeros((k, d))
            for c, m in enumerate(mom):
                lin = m.hess @ X + (m.hess_star @ data.teacher if ks else 0.0)
                grad += p[c] * (np.outer(m.grad, data.means[c]) + lin * lam[c])
                noise += _psd_sqrt(m.fisher) @ rng.standard_normal((k, d)) * np.sqrt(p[c] * lam[c])
            X = X - gamma * h * grad + gamma * np.sqrt(h / d) * noise
            acc += h * problem.acc_rate(mom)
            now += h
            if not np.all(np.isfinite(X)) or np.abs(X).max() > 1e8:
                raise errors.DivergenceError(f"homogenized SGD diverged at time {now:.4g}; lower the learning rate", now)
        snaps.append(X.copy())
        lrs.append(schedule(now, acc))
    return snaps, lrs
