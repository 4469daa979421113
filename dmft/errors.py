"""Errors raised by the library and the argument checks every entry point shares."""
from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from typing import Any

import numpy as np

from . import _config, _stats

__all__ = ["ParameterError", "DivergenceError", "CAUSES", "LongRunWarning", "UnresolvedTimeStepWarning",
           "DerivativeMismatchWarning", "DiracResponseWarning", "UndeclaredKinkWarning", "QuadratureWarning", "seed_value", "SEED_RANGE"]


#: inside :func:`quiet`; a context variable, so the threads a solve starts with
#: ``contextvars.copy_context()`` (its parts) take it along
_QUIET = contextvars.ContextVar("dmft_quiet_warnings", default=False)


def warn(message: str, category: type[Warning], *, stacklevel: int = 2) -> None:
    """``warnings.warn``, except inside :func:`quiet`: a solve run beside the user's (the kink
    extrapolation's second width) whose warnings are not the user's, and where
    ``catch_warnings`` (process-wide state) cannot silence them safely."""
    if not _QUIET.get():
        warnings.warn(message, category, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def quiet():
    """:func:`warn` is silent in this context (this thread, and threads started with a copy of it)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


class ParameterError(ValueError):
    """An argument is outside its allowed range; the message names it, its value and the range."""


#: what made a trajectory blow up (:attr:`DivergenceError.cause`) and what to do about it
CAUSES = {
    "learning_rate": "lower the learning rate",
    "time_step": "lower dt (the solver's own time step is unstable or unresolved at this learning rate)",
    "model": "fix the model: its loss or gradient is not finite (or not bounded below) where the run went",
    "data": "fix the data: the teacher's labels or the inputs are not finite",
    "n_paths": "pass more n_paths (the DMFT's Monte Carlo noise, fed back through its kernels, blows up)",
}


class DivergenceError(FloatingPointError):
    """A trajectory blew up or a solver's step went unstable.

    ``time``: the first time at which the state was non-finite, too large or (for a
    step-size instability) oscillating at the grid scale; ``threshold``: the learning-rate
    stability threshold there when known, else ``None``; ``cause``: one of :data:`CAUSES`
    (``'learning_rate'``, ``'time_step'``, ``'model'``, ``'data'``), whose advice ends the
    message.
    """

    def __init__(self, message: str, time: float, threshold: float | None = None, cause: str = "learning_rate"):
        if cause not in CAUSES:
            raise ValueError(f"cause={cause!r}: expected one of {sorted(CAUSES)}")
        if not message.endswith(CAUSES[cause]):
            message = f"{message}; {CAUSES[cause]}"
        super().__init__(message)
        self.time = time
        self.threshold = threshold
        self.cause = cause

    def __reduce__(self):  # keep time, threshold and cause through pickling (dask, multiprocessing)
        return type(self), (self.args[0], self.time, self.threshold, self.cause)


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ParameterError(f"{name}={value!r} is not allowed: {name} must be {allowed}")


def _real(name: str, value, allowed: str) -> float:
    """``float(value)`` for a real number; strings, bytes, booleans and None are refused."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        _fail(name, value, allowed)
    try:
        return float(value)
    except (TypeError, ValueError):
        _fail(name, value, allowed)


def positive(name: str, value, *, allow_inf: bool = False) -> float:
    """Return ``float(value)`` if it is a finite (or, when allowed, infinite) number > 0."""
    x = _real(name, value, "a positive number")
    if not (x > 0) or math.isnan(x) or (math.isinf(x) and not allow_inf):
        _fail(name, value, "a positive finite number" if not allow_inf else "a positive number")
    return x


def nonnegative(name: str, value) -> float:
    x = _real(name, value, "a non-negative number")
    if not (x >= 0) or math.isinf(x):
        _fail(name, value, "a finite number >= 0")
    return x


def init_std(value, k: int, blowup: float) -> float:
    """A non-negative ``init_std`` whose initial ``tr q = k init_std^2`` is below the blow-up limit."""
    x = nonnegative("init_std", value)
    if x > math.sqrt(blowup / k):
        _fail("init_std", value, f"<= {math.sqrt(blowup / k):.3g} (the initial tr q = k init_std^2 would be above "
                                 f"the blow-up limit {blowup:g})")
    return x


def in_range(name: str, value, low: float, high: float, *, closed_high: bool = False) -> float:
    """Check ``low <= value < high`` (or ``<= high`` with ``closed_high``)."""
    x = _real(name, value, f"a number in [{low}, {high}{']' if closed_high else ')'}")
    ok = low <= x <= high if closed_high else low <= x < high
    if not ok:
        _fail(name, value, f"in [{low}, {high}{']' if closed_high else ')'}")
    return x


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, float) and value.is_integer()):
            _fail(name, value, f"an integer >= {minimum}")
    if int(value) < minimum:
        _fail(name, value, f"an integer >= {minimum}")
    return int(value)


def choice(name: str, value, allowed) -> Any:
    if value not in allowed:
        _fail(name, value, "one of " + ", ".join(repr(a) for a in allowed))
    return value


def finite_array(name: str, value, *, shape: tuple | None = None, nonnegative: bool = False) -> np.ndarray:
    """``np.asarray(value, float)`` checked for finiteness, shape and (optionally) sign."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        _fail(name, "<array>", "a rectangular array of real numbers (rows of equal length)")
    if shape is not None and a.shape != shape:
        raise ParameterError(f"{name} has shape {a.shape}; expected {shape}")
    if not np.all(np.isfinite(a)):
        bad = a[~np.isfinite(a)].ravel()[0]
        _fail(name, f"<array containing {bad}>", "finite everywhere")
    if nonnegative and np.any(a < 0):
        _fail(name, f"<array with minimum {a.min():.3g}>", "non-negative everywhere")
    return a


def output_times(times, n_time, t_max, *, n_time_default: int, t_max_default: float):
    """``(times, t_max, n_time)`` of a run's outputs.

    Without ``times``: ``linspace(0, t_max, n_time)`` (``None`` takes the defaults). With
    ``times``: a non-empty 1-d strictly increasing array in ``[0, t_max]``; ``t_max``
    defaults to its last value and ``n_time`` to its length (passing ``n_time`` too is an
    error: the two are exclusive)."""
    if times is None:
        t_max = positive("t_max", t_max_default if t_max is None else t_max)
        n_time = positive_int("n_time", n_time_default if n_time is None else n_time, minimum=2)
        return np.linspace(0.0, t_max, n_time), t_max, n_time
    if n_time is not None:
        raise ParameterError(f"n_time={n_time!r} is not allowed together with times: n_time and times are "
                             "exclusive, pass one of them")
    a = finite_array("times", times, nonnegative=True)
    if a.ndim != 1 or a.size < 1:
        raise ParameterError(f"times has shape {a.shape}; expected a non-empty 1-d array")
    down = np.flatnonzero(np.diff(a) <= 0)
    if down.size:
        i = int(down[0])
        raise ParameterError(f"times is not allowed: times must be strictly increasing (times[{i}]={a[i]:g}, "
                             f"times[{i + 1}]={a[i + 1]:g})")
    if t_max is None:
        return a, float(a[-1]), int(a.size)
    t_max = positive("t_max", t_max)
    if a[-1] > t_max:
        raise ParameterError(f"times is not allowed: times must lie in [0, t_max={t_max:g}] (its last value is "
                             f"{a[-1]:g})")
    return a, t_max, int(a.size)


#: a ``numpy.random.Generator`` given as ``seed`` stands for the integer seed
#: ``int(generator.integers(SEED_RANGE))`` drawn from it
SEED_RANGE = 2**63


def seed_value(seed):
    """``seed`` as the library uses and records it: a non-negative integer or a
    ``numpy.random.SeedSequence`` as given; a ``numpy.random.Generator`` is replaced by the
    integer ``int(seed.integers(2**63))`` drawn from it.

    So a Generator advances (numpy's convention: two calls with one Generator give
    different numbers), equal Generator states give equal numbers, and the integer, stored
    in the output's ``seed`` attribute, reproduces the run."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(SEED_RANGE))
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        _fail("seed", seed, "a non-negative integer, a numpy.random.Generator or a numpy.random.SeedSequence")
    return int(seed)


def seed_sequence(seed) -> np.random.SeedSequence:
    """The ``SeedSequence`` of a seed (see :func:`seed_value`): ``SeedSequence(seed)`` for an integer."""
    seed = seed_value(seed)
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def child_seed(ss: np.random.SeedSequence, i: int) -> np.random.SeedSequence:
    """Child ``i`` of ``ss`` as a fresh ``ss.spawn(i + 1)[i]`` gives it, whatever was spawned from
    ``ss`` before (``spawn`` counts its children; this does not)."""
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i), pool_size=ss.pool_size)


def probabilities(name: str, value, *, size: int | None = None, atol: float = 1e-9) -> np.ndarray:
    """A 1-d array of non-negative finite numbers summing to 1 (within ``atol``)."""
    p = finite_array(name, value, shape=None if size is None else (size,), nonnegative=True)
    if p.ndim != 1 or p.size < 1:
        raise ParameterError(f"{name} has shape {p.shape}; expected a non-empty 1-d array")
    if abs(p.sum() - 1.0) > atol:
        _fail(name, p.tolist(), f"probabilities summing to 1 (they sum to {p.sum():.12g})")
    return p


def on_divergence(value) -> str:
    """``'raise'`` (default everywhere) or ``'truncate'`` (return the output up to blow-up)."""
    return choice("on_divergence", value, ("raise", "truncate"))


class UnresolvedTimeStepWarning(UserWarning):
    """A time step is too coarse for the learning rate (``lr * dt`` large): results are biased.

    A ``UserWarning`` (advice about the inputs), not a ``RuntimeWarning``: the test suite
    turns numerical RuntimeWarnings raised inside the library into errors."""


class DerivativeMismatchWarning(UserWarning):
    """A derivative given to :func:`dmft.models.custom` (``grad`` or ``hess``) differs from the
    central finite difference of ``loss`` (or ``grad``) by more than the difference's own error:
    every curve computed with the model would be wrong."""


def warn_unresolved(name: str, lr: float, dt: float, limit: float, *, stacklevel: int = 3) -> None:
    """Warn (:class:`UnresolvedTimeStepWarning`) when ``lr * dt > limit``."""
    if lr * dt > limit:
        warn(
            f"{name}: lr * dt = {lr * dt:.3g} > {limit:g}; the time step does not resolve the dynamics "
            f"(discretisation error O(lr dt)); use dt <= {limit / lr:.3g}",
            UnresolvedTimeStepWarning, stacklevel=stacklevel)


#: a solver's own time step whose estimated bias of an output exceeds this fraction of it is
#: an error (DivergenceError, cause 'time_step'), not a number
STEP_BIAS_LIMIT = _config.STEP_BIAS_LIMIT


def step_bias(where: str, dt: float, order: int, times, quantities) -> DivergenceError | None:
    """The DivergenceError (cause ``'time_step'``) of a simulator's fixed step ``dt`` whose
    estimated bias is above :data:`STEP_BIAS_LIMIT`, or None.

    ``quantities``: ``(name, x, x_half, by_largest)`` with ``x``, ``x_half`` (seeds, time), the
    runs and the runs with every step halved on the same random path (NaN where a seed was not
    checked or had diverged). Per output time over the seeds, the Richardson estimate
    ``|mean(x - x_half)| / (1 - 2^-order)`` relative to ``|mean x|`` (with ``by_largest``: to its
    largest value over time) and ``z``, the mean difference over its standard error across seeds.
    Flagged where the estimate is above the limit and ``z > 2`` or the check is too noisy to tell
    (one seed, or the estimate's standard error above half the limit); the error names the first
    such time and a step that would bring the largest estimate to half the limit."""
    ratio = 1 / (1 - 2.0 ** -order)
    first, worst = None, 0.0
    for name, x, x_half, by_largest in quantities:
        diff = x - x_half
        count = np.sum(np.isfinite(diff), axis=0)
        if not count.any():
            continue
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # output times no seed reached
            mean, value = np.nanmean(diff, axis=0), np.nanmean(x, axis=0)
            se = _stats.nansem(diff, axis=0)
            scale = np.full(value.shape, np.nanmax(np.abs(value))) if by_largest else np.abs(value)
            per_scale = ratio / np.where(scale > 0, scale, np.inf)
            rel, z = np.abs(mean) * per_scale, np.abs(mean) / se
        noisy = (count < 2) | (2 * se * per_scale > STEP_BIAS_LIMIT)
        bad = np.flatnonzero((rel > STEP_BIAS_LIMIT) & ((z > 2) | noisy))
        worst = max(worst, float(np.nanmax(rel)))
        if bad.size and (first is None or bad[0] < first[0]):
            j = int(bad[0])
            first = (j, name, value[j], value[j] - mean[j], rel[j], z[j])
    if first is None:
        return None
    j, name, x, y, rel, z = first
    suggested = dt * (STEP_BIAS_LIMIT / 2 / worst) ** (1 / order)
    return DivergenceError(
        f"{where}: the step dt = {dt:.4g} is not resolved: at time {times[j]:.4g} the {name} (mean over the seeds) is "
        f"{x:.4g}, with dt/2 on the same random path {y:.4g}, an estimated step error of {rel:.0%} > "
        f"{STEP_BIAS_LIMIT:.0%} ({z:.1f} standard errors); use dt <= {suggested:.3g}", float(times[j]),
        cause="time_step")


#: estimated run times above this many seconds are announced (LongRunWarning)
LONG_RUN_S = 60.0


class LongRunWarning(UserWarning):
    """A computation is estimated to take longer than :data:`LONG_RUN_S` seconds (it still
    runs; ``max_runtime_s`` caps it)."""


def warn_long_run(name: str, seconds: float, *, hint: str = "", stacklevel: int = 4) -> None:
    """Announce (:class:`LongRunWarning`) an estimated run time above :data:`LONG_RUN_S`,
    with a ``hint`` of how to shorten it."""
    if seconds > LONG_RUN_S:
        warn(f"{name}: estimated run time {seconds:.3g} s (pass max_runtime_s to cap it{hint})", LongRunWarning,
             stacklevel=stacklevel)


class DiracResponseWarning(UserWarning):
    """The loss's gradient jumps across a kink in ``r`` (``l''`` has a Dirac part) and the
    DMFT response is biased or noisy: with ``kink_bandwidth=0`` the pathwise tangents miss
    the Dirac part; with the kink smoothing its density estimate at the kink dominates the
    standard errors (docs/dmft_theory.md, "Kinks")."""


class NoiseDrivenWarning(UserWarning):
    """A DMFT solve's standard error is a large share of its value at some output time: its
    response estimates (pathwise tangents) are heavy-tailed there, so it can also be biased
    beyond its standard error (docs/dmft_theory.md, "Stretched grids", *Where GF's noise comes
    from*): pass more ``n_paths``."""


class UndeclaredKinkWarning(UserWarning):
    """The model's ``grad`` (or teacher) jumps across a surface that none of its declared
    kinks (:attr:`dmft.models.Model.kinks`) contains: the multi-pass response misses the
    Dirac part of ``l''`` there (a ReLU unit: 10-20% off) and Gaussian expectations across a
    teacher's jump converge slowly. Found by :meth:`dmft.models.Model.undeclared_jumps`."""


class QuadratureWarning(UserWarning):
    """The estimated Gaussian-integration error of an output exceeds a third of its
    standard error (or of the requested accuracy): refine the rule or declare the model's
    kinks (:attr:`dmft.models.Model.kinks`)."""


def exit_status(prog: str, error: Exception) -> int:
    """Print a command-line failure to stderr; exit status 2 for bad input, 3 for divergence."""
    import sys

    if isinstance(error, DivergenceError):
        print(f"{prog}: diverged: {error} (cause: {error.cause.replace('_', ' ')})", file=sys.stderr)
        return 3
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2
