"""DMFT solver for multi-pass SGD, SME and gradient flow (docs/dmft_theory.md).

One causal forward solver, three drivers of the per-sample force (:class:`Poisson` for SGD,
:class:`Gaussian` for SME, :class:`Deterministic` for GF). The sample side is a Monte Carlo
over ``n_paths`` typical training samples; the parameter side (linear and Gaussian for a
ridge penalty) is solved exactly on the grid. See ``docs/dmft_theory.md`` for the
derivation as implemented and every normalisation.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import mmap
import os
import threading
import time as _time
import warnings
from dataclasses import dataclass

import numpy as np
import threadpoolctl
from scipy import special
from scipy import stats
from scipy.stats import qmc

from .. import _config, _stats, errors, expectation, grids, output
from .. import models as _models
from .. import schedules as _schedules
from . import _kernels_solve as _k
from . import _spectral
from .._jit import specialise
from .._progress import progress_bar

__all__ = ["solve", "Poisson", "Gaussian", "Deterministic", "DRIVERS"]

#: a grid-scale oscillation of ``tr C(t, t)`` that alternates in sign over this many consecutive
#: steps, above 4 replica standard errors and this fraction of the value, and grows or lasts to
#: t_max, is a step instability (a stable grid's start-up transient decays; measured on SGD, SME, GF)
_SAWTOOTH_STEPS, _SAWTOOTH_REL = 8, 1e-3
_REFINING = threading.local()  # set while a check solve runs whose blow-up needs no cause (no check of the check)
_CHECKING = threading.local()  # set while a step check's solve runs
#: the Gaussian inputs of the solve a step check compares with (its common random numbers)
_COMMON = threading.local()
_CANCEL = threading.local()  # on a companion's thread: the Event that stops it
_SHARED = threading.local()  # on a companion's thread: the random inputs of the solve it serves


class _Cancelled(Exception):
    """A companion solve stopped because the solve it serves ended without it."""


class _Companion:
    """A solve whose result this one needs at its end (the kink extrapolation's solve at twice
    the width), run beside it on a second thread: the numba kernels, nearly all of such a
    solve's time, release the GIL, so two cores do the pair in the time of one solve. Its
    warnings are not the user's (:func:`dmft.errors.quiet`); it solves on the random inputs
    ``rnd`` of the solve it serves (drawn once, on both cores, before it starts: the same
    numbers it would draw), refines as that solve does, and keeps its per-replica outputs as a
    step check's solve does (for the paired check of the extrapolation). Nothing a companion runs may enter
    ``warnings.catch_warnings``: the filters it swaps are the process's, and would silence
    the other thread's warnings meanwhile. ``_config.COMPANION_THREAD = False``: run it
    in :meth:`result`, on this thread."""

    def __init__(self, kw: dict, rnd):
        self._kw, self._out, self._stop, self._rnd = kw, {}, threading.Event(), rnd
        self._flags = getattr(_REFINING, "active", False)
        self._thread = threading.Thread(target=self._run, daemon=True) if _config.COMPANION_THREAD else None
        if self._thread is not None:
            self._thread.start()

    def _run(self):
        saved = (getattr(_REFINING, "active", False), getattr(_CHECKING, "active", False),
                 getattr(_SHARED, "rnd", None), getattr(_CANCEL, "event", None), getattr(_CHECKING, "replicas", None))
        # a step check's flag always: the solve keeps its per-replica outputs and skips its own
        # quadrature-error estimate (the extrapolation reports the solve at h's)
        _REFINING.active, _CHECKING.active, _SHARED.rnd = self._flags, True, self._rnd
        _CANCEL.event = self._stop
        try:
            with errors.quiet():
                self._out["ds"] = solve(**self._kw)
            self._out["replicas"] = _CHECKING.replicas
        except BaseException as e:  # handed to the thread that asks for the result
            self._out["error"] = e
        finally:  # this thread's own flags, when it runs in result()
            _REFINING.active, _CHECKING.active, _SHARED.rnd, _CANCEL.event, _CHECKING.replicas = saved
            self._rnd = None  # the served solve's inputs: its step check frees what it does not reuse

    def result(self):
        """The companion's Dataset and its per-replica test loss and ``tr norm`` (or its
        exception), once it has finished."""
        if self._thread is None:
            self._run()
        else:
            self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out["ds"], self._out["replicas"]

    def cancel(self):
        """Stop a companion whose result is no longer needed, and wait for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------- drivers
class _Driver:
    """A driver of the per-sample force: its events on the grid and its defaults.

    Subclasses set ``name`` (the ``dynamics`` string), ``dense`` (one event per cell at its
    midpoint, shared by all paths, instead of events at their exact times),
    ``default_corrector``, ``step_order`` (order in ``dt`` of the grid error, for the step
    check's Richardson estimate; None: no step check) and the coefficients of the runtime
    estimate, ``grid_cost`` (per ``k^2 N^2`` and replica / 8) and ``path_cost``.
    """

    normals_per_cell = 0

    def __post_init__(self):
        errors.positive("rate", self.rate)

    def midpoint_normals(self, k: int) -> int:
        """Standard normals per path and cell for the noise of a cell's first half (SME only)."""
        return 0

    def default_tangent_stride(self, kinked: bool, t_max: float) -> int:
        """Every path carries tangents unless the driver says otherwise."""
        return 1


@dataclass(frozen=True)
class Poisson(_Driver):
    """SGD: ``z`` is a Poisson process of rate ``rate`` (= batch ``kappa_bar``).

    Events are the exact jump times of each path (uniform order statistics given a
    Poisson count); ``dz = 1`` at each.
    """

    rate: float
    name = "sgd"
    dense = False
    default_corrector = 1
    step_order = None
    #: the largest ``lr dt`` of a stretched grid's late steps: the events keep their exact
    #: times, the grid carries the kernels (Huber-on-tanh at lr = 2, steps up to 0.16:
    #: within the SE of the uniform grid, docs/dmft_theory.md, "Stretched grids")
    stretch_lr_step = 0.32
    grid_cost, path_cost = 6e-6, 7e-9

    def default_dt(self, lr: float) -> float:
        """0.02: the events sit at their exact times, the grid only carries the kernels."""
        return 0.02

    def default_paths(self, kinked: bool, t_max: float = 0.0) -> int:
        """Monte Carlo paths of a solve (docs/performance.md, "DMFT solver")."""
        return 131072

    def half_cell(self, dt: float) -> float:
        """No drift of a first half cell: the events sit at their exact times."""
        return 0.0

    def sample_side(self, run, grid, rnd, teacher):
        return _EventSide(run, grid, rnd, teacher)

    def sample_memory(self, P, B, N, k, stride, t_max, inputs):
        """Doubles of the sample side ``(shared, drawn, paths, events, in_parts)`` (see
        :func:`_memory_estimate`; ``drawn``: the inputs and events of all paths, ``in_parts``:
        what the parts' sample sides allocate)."""
        mean = self.rate * t_max
        # the most events of P Poisson paths: the 1 - 1/P quantile (normal above 1e6 events)
        J = float(stats.poisson.isf(1 / P, mean)) + 1 if mean < 1e6 else mean + 6 * math.sqrt(mean)
        # events (cell, lam, dz, the bridge's normals, and their construction) for all paths; the parts' own
        # gradients and g', per-cell lists, and the tangent paths' packed triangles for their own J_p events,
        # E J_p (J_p + 1) / 2 = (mean^2 + 2 mean) / 2, in single precision (half a double each)
        own = P * J * (k + k * k) + 4 * P * mean
        tangents = P / stride * (mean * mean + 2 * mean) / 4 * k * k
        return 0.0, inputs + P * J * (6 + k), own, tangents, own + tangents

    def sample_runtime(self, P, N, stride, t_max):
        """``c_path P J N`` with ``J = rate t_max`` events per path."""
        return self.path_cost * P * self.rate * t_max * N

    def events(self, rng: np.random.Generator, n_paths: int, n_cells: int, dt: float, xi=None,
               time_grid=grids.Uniform()):
        """The events are drawn at rate ``rate`` in the training time ``t`` and placed on the grid
        at their internal times ``u = tau^-1(t)`` of the ``time_grid`` (:mod:`dmft.grids`)."""
        T = float(time_grid.t(n_cells * dt))
        counts = rng.poisson(self.rate * T, size=n_paths)
        jmax = max(int(counts.max()), 1)
        s = T * (1.0 - rng.random((n_paths, jmax)))  # in (0, T]
        s[np.arange(jmax)[None, :] >= counts[:, None]] = np.inf
        s.sort(axis=1)
        valid = np.isfinite(s)
        s[valid] = np.minimum(time_grid.u(s[valid]), n_cells * dt)
        x = np.where(valid, s / dt, 1.0)
        cell = np.clip(np.ceil(x), 1, n_cells).astype(np.int64)
        lam = np.clip(x - (cell - 1), 1e-12, 1.0)
        cell[~valid] = 0
        lam[~valid] = 0.0
        return counts.astype(np.int64), cell, lam, np.where(valid, 1.0, 0.0)

    def event_normals(self, rng: np.random.Generator, shape, k: int) -> np.ndarray:
        """The standard normals (P, J, k) of the field's Brownian bridge at each event
        (:func:`~dmft.multipass._kernels_solve.sample_cell_poisson`)."""
        return rng.standard_normal((*shape, k))

    def scheduled(self, ev_cell, ev_lam, ev_dz, grid, u):
        """``dz u(s)`` for a schedule ``lr(s) = lr0 u(s)``: each event's per-sample step is
        ``c u(s)`` at its own (exact) time ``s``, so the kernels keep the one ``c = tau lr0 / batch``."""
        valid = ev_cell > 0
        out = np.zeros_like(ev_dz)
        out[valid] = ev_dz[valid] * u((ev_cell[valid] - 1 + ev_lam[valid]) * grid.dt)
        return out


#: SME and GF paths (every one with tangents) for models with a Dirac part in ``l''``: the
#: smoothed Dirac term is a density estimate at the kink, and its noise in ``Gamma`` enters
#: the kernels squared (docs/dmft_theory.md, "Kinks")
_KINKED_DENSE_PATHS = 65536


@dataclass(frozen=True)
class _Dense(_Driver):
    rate: float
    dense = True
    #: midpoint events with the half-cell drift (and for SME the half cell's noise and the
    #: self-damped noise force) are second order (measured on the squared loss against its
    #: exact moments, docs/dmft_theory.md, "Discretisation")
    step_order = 2
    #: the largest ``lr dt`` of a stretched grid's late steps: the explicit cells' error is
    #: second order in ``lr dt``; below the ``lr dt = 0.2`` warning, and the step check measures
    #: it (docs/dmft_theory.md, "Stretched grids")
    stretch_lr_step = 0.16

    def default_dt(self, lr: float) -> float:
        """``0.04 / max(1, lr)``: the grid error is second order in ``lr dt`` times the loss's
        curvature (docs/dmft_theory.md, "Step bias")."""
        return 0.04 / max(1.0, lr)

    def default_paths(self, kinked: bool, t_max: float = 0.0) -> int:
        """Monte Carlo paths of a solve; more for a model with a Dirac part in ``l''``."""
        return _KINKED_DENSE_PATHS if kinked else 8192

    def half_cell(self, dt: float) -> float:
        """The driver's mean increment over half a cell, ``rate dt / 2``: the drift of a
        cell's first half before its midpoint event."""
        return 0.5 * self.rate * dt

    def sample_side(self, run, grid, rnd, teacher):
        return _DenseSide(run, grid, rnd, teacher)

    def sample_memory(self, P, B, N, k, stride, t_max, inputs):
        """Doubles of the sample side ``(shared, drawn, paths, events, in_parts)`` (see
        :func:`_memory_estimate`): ``R`` between the shared event times (``Rmid``); the inputs
        and events (cell, lam, dz) of all paths; gradients and forces per cell, the tangent paths'
        dz, hz and g' (single precision: half a double each), which the parts' sample sides allocate."""
        J = N
        rmid = B * N * N * k * k
        own = P * J * 2 * k + P / stride * N * (2 + k * k) / 2
        return rmid, inputs + P * J * 3, own, 0.0, rmid + own

    def sample_runtime(self, P, N, stride, t_max):
        """``c_path (P / stride) N^2``: the tangent paths' backward rows."""
        return self.path_cost * P / stride * N * N

    def _dz(self, xi, shape, dt):
        raise NotImplementedError

    def dz_moments(self, dt):
        """Mean and variance of one cell's ``dz``, independent of the path's past."""
        raise NotImplementedError

    def event_normals(self, rng: np.random.Generator, shape, k: int) -> np.ndarray:
        """None per event: the bridge's normals are in the cell's (``midpoint_normals``)."""
        return np.zeros((shape[0], 0, k))

    def scheduled(self, ev_cell, ev_lam, ev_dz, grid, u):
        """A schedule ``lr(s) = lr0 u(s)``: cell ``j``'s increment with the rate's means over the
        cell, ``ubar_j dz_mean + (mean u^2)_j^(1/2) (dz - dz_mean)``: the drift of ``lr(s) dt`` and
        the noise variance of ``lr(s)^2 dt`` integrated over the cell (second order for a smooth
        rate and at a jump of a :class:`~dmft.schedules.StepDecay` inside the cell alike), so
        the kernels keep the one ``c = tau lr0 / batch``."""
        dz_mean, _ = self.dz_moments(grid.dt)
        return grid.rates * dz_mean + np.sqrt(grid.rates2) * (ev_dz - dz_mean)

    def events(self, rng: np.random.Generator, n_paths: int, n_cells: int, dt: float, xi=None,
               time_grid=grids.Uniform()):
        """One event per cell at its midpoint (midpoint rule for the drift, non-anticipating);
        ``xi`` (n_paths, n_cells * normals_per_cell): the driver's standard normals."""
        counts = np.full(n_paths, n_cells, dtype=np.int64)
        cell = np.broadcast_to(np.arange(1, n_cells + 1, dtype=np.int64), (n_paths, n_cells)).copy()
        lam = np.full((n_paths, n_cells), 0.5)
        return counts, cell, lam, self._dz(xi, (n_paths, n_cells), dt)


@dataclass(frozen=True)
class Gaussian(_Dense):
    """SME: ``dz = rate dt + sqrt(rate) dB`` (same mean and variance as the Poisson driver)."""

    name = "sme"
    normals_per_cell = 1
    default_corrector = 1
    grid_cost, path_cost = 1.3e-5, 1.5e-8

    def midpoint_normals(self, k: int) -> int:
        """The path's own Brownian increment and the field's bridge (``k``) over the first
        half of a cell, independent of the cell's ``dz`` (docs/dmft_theory.md, "Discretisation")."""
        return 1 + k

    def _dz(self, xi, shape, dt):
        return self.rate * dt + math.sqrt(self.rate * dt) * xi.reshape(shape)

    def dz_moments(self, dt):
        return self.rate * dt, self.rate * dt

    def default_paths(self, kinked: bool, t_max: float = 0.0) -> int:
        """8192 up to ``t_max = 16``, then ``16384 t_max / 32`` (a multiple of 1024): with 1024
        paths per replica SME's closures run away from the simulation after ``t = 16`` on
        Huber-on-tanh at ``lr = 2``, with 2048 they follow it to ``t = 32`` (docs/dmft_theory.md,
        "Stretched grids"; beyond 32 an extrapolation, not measured)."""
        if kinked or t_max <= 16:
            return super().default_paths(kinked, t_max)
        return max(16384, 1024 * math.ceil(16 * t_max / 32))


@dataclass(frozen=True)
class Deterministic(_Dense):
    """GF: ``dz = rate dt``."""

    name = "gf"
    default_corrector = 0
    grid_cost, path_cost = 7e-6, 2.1e-8

    def default_tangent_stride(self, kinked: bool, t_max: float) -> int:
        """2 up to ``t_max = 8`` (1 with a Dirac part in ``l''``): GF's standard error there is
        mostly not the tangents' (docs/performance.md, "DMFT vs simulation"); 1 beyond, where
        the tangents' noise grows with ``t`` and, entering the closure squared, biases the
        curves up (docs/dmft_theory.md, "Tangent subsampling")."""
        return 1 if kinked or t_max > 8.0 else 2

    def _dz(self, xi, shape, dt):
        return np.full(shape, self.rate * dt)

    def dz_moments(self, dt):
        return self.rate * dt, 0.0


DRIVERS = {"sgd": Poisson, "sme": Gaussian, "gf": Deterministic}


def _driver(dynamics, batch, driver) -> _Driver:
    """The driver of ``dynamics`` at rate ``batch``, or ``driver``, which they must then match
    (None: not given; defaults ``'sgd'`` and 1)."""
    if driver is None:
        return DRIVERS[errors.choice("dynamics", "sgd" if dynamics is None else dynamics, tuple(DRIVERS))](
            errors.positive("batch", 1.0 if batch is None else batch))
    if not isinstance(driver, tuple(DRIVERS.values())):
        raise errors.ParameterError(
            f"driver={driver!r} is not allowed: driver must be one of dmft.multipass.Poisson(rate), "
            "Gaussian(rate), Deterministic(rate) or None")
    if dynamics is not None and dynamics != driver.name:
        raise errors.ParameterError(
            f"dynamics={dynamics!r} is not allowed with driver={driver!r}: that driver is dynamics={driver.name!r} "
            "(pass one of the two)")
    if batch is not None and batch != driver.rate:
        raise errors.ParameterError(
            f"batch={batch!r} is not allowed with driver={driver!r}: the driver's rate is the batch "
            "(pass one of the two)")
    return driver


# ---------------------------------------------------------------- helpers
def _cell_lists(counts, cell, n_cells):
    """Per grid cell: active paths and their event index range ``[lo, hi)`` in the cell."""
    P, J = cell.shape
    jj = np.broadcast_to(np.arange(J), (P, J))
    pp = np.broadcast_to(np.arange(P)[:, None], (P, J))
    valid = jj < counts[:, None]
    c, p, j = cell[valid], pp[valid], jj[valid]
    order = np.lexsort((j, p, c))
    c, p, j = c[order], p[order], j[order]
    bounds = np.searchsorted(c, np.arange(n_cells + 2))
    out = [None] * (n_cells + 1)
    for n in range(1, n_cells + 1):
        ps, js = p[bounds[n]:bounds[n + 1]], j[bounds[n]:bounds[n + 1]]
        up, idx, cnt = np.unique(ps, return_index=True, return_counts=True)
        lo = js[idx].astype(np.int64)
        out[n] = (up.astype(np.int64), lo, lo + cnt)
    return out


def _flat(X):
    """(B, n, k, k) blocks -> (B, k, n k) row layout."""
    B, n, k, _ = X.shape
    return X.transpose(0, 2, 1, 3).reshape(B, k, n * k)


def _blocks(X2, n, k):
    """(B, n k, n k) block layout -> (B, n, n, k, k)."""
    B = X2.shape[0]
    return X2.reshape(B, n, k, n, k).transpose(0, 1, 3, 2, 4)


#: sampling of the paths' Gaussian inputs
SAMPLING = ("qmc", "mc")
KINK_RESPONSES = ("auto", "smoothed", "boundary", "signed_noise")


#: paths per block of the pseudo-random streams (``sampling='mc'``'s normals, SGD's events): a
#: path's inputs depend on its index and the seed only, not on the replicas or parts that hold it
STREAM_BLOCK = 4096


def _stream_blocks(ss, paths: range, P: int):
    """``(rng, n, rows, out)`` for the stream blocks of ``P`` paths that hold ``paths``: block
    ``i`` of ``n`` paths draws from ``rng``, seeded by child ``i`` of ``ss``; its ``rows`` among
    ``paths`` go to ``out`` in the rows of ``paths``."""
    for i in range(paths.start // STREAM_BLOCK, -(-paths.stop // STREAM_BLOCK)):
        lo, hi = max(paths.start, i * STREAM_BLOCK), min(paths.stop, (i + 1) * STREAM_BLOCK)
        yield (np.random.default_rng(errors.child_seed(ss, i)), min(STREAM_BLOCK, P - i * STREAM_BLOCK),
               slice(lo - i * STREAM_BLOCK, hi - i * STREAM_BLOCK), slice(lo - paths.start, hi - paths.start))


def _normals(ss, sampling, B, Pb, ks, nd, k, N, nxi, stride=1, threads=1, replicas=None):
    """Standard-normal inputs of the paths of ``replicas`` (default all ``B``; ``Pb`` paths each,
    replica-major rows).

    Returns ``Z`` (P, ks + (N+1) k): teacher then field innovations at ``t_0..t_N``
    (the columns of the joint Cholesky factor); ``eps`` (P, nd) label noise; ``xi``
    (P, N nxi) the driver's normals per cell (SME: ``dB``, then the half cell's own and
    bridge normals). ``"mc"``: pseudo-random, in blocks of :data:`STREAM_BLOCK` paths from
    children of ``ss``. ``"qmc"``: for each replica one scrambled
    Sobol point set (independent scrambles, so replicas stay i.i.d. and their spread is an
    honest standard error) through the normal quantile, coordinates
    ordered by importance: teacher, label noise, field at ``t_0``, then per cell its driver
    normals and the field at ``t_n``. With a tangent ``stride > 1`` the points of a replica
    are shuffled: every 2nd point of scipy's Sobol sequence has the same sign in the
    second coordinate (the first is paired with the point after it by a shift of 1/2), so
    the tangent paths would all start on one side of the field at ``t_0``. Each replica's
    points come from its own child of ``ss``: ``threads`` draw replicas side by side
    (:func:`_on_threads`; scipy's Sobol draw and ``ndtri`` release the GIL), the same values.
    Either way a path's inputs do not depend on which ``replicas`` are drawn with it.
    """
    replicas = range(B)[replicas if replicas is not None else slice(None)]
    P = len(replicas) * Pb
    dim = ks + nd + (N + 1) * k + N * nxi
    Z = np.empty((P, ks + (N + 1) * k))
    eps = np.empty((P, nd))
    xi = np.empty((P, N * nxi))
    if sampling == "mc":
        paths = range(replicas.start * Pb, replicas.stop * Pb)
        for rng, n, rows, out in _stream_blocks(ss, paths, B * Pb):
            for x in (Z, eps, xi):
                x[out] = rng.standard_normal((n, x.shape[1]))[rows]
        return Z, eps, xi
    if dim > qmc.Sobol.MAXDIM:
        raise errors.ParameterError(
            f"sampling='qmc' is not allowed here: the grid needs {dim} Gaussian inputs per path, "
            f"Sobol points have at most {qmc.Sobol.MAXDIM}; use sampling='mc' or a larger dt")

    def draw(chunk):
        for b in chunk:
            _qmc_replica(b - replicas.start, errors.child_seed(ss, b), Z, eps, xi, Pb, ks, nd, k, N, nxi, stride, dim)

    qmc.Sobol(1, scramble=False)  # scipy loads its direction numbers (a module global) on this thread
    _on_threads(draw, replicas, threads)
    return Z, eps, xi


def _qmc_replica(b, sb, Z, eps, xi, Pb, ks, nd, k, N, nxi, stride, dim):
    """Replica ``b``'s rows of :func:`_normals`' ``"qmc"`` inputs, from its seed ``sb``."""
    rows = slice(b * Pb, (b + 1) * Pb)
    rng = np.random.default_rng(sb)
    sobol = qmc.Sobol(dim, scramble=True, seed=rng)
    # a replica size that is no power of two is less balanced, still unbiased: its points
    # are the first Pb of the next power of two (scipy warns otherwise, and silencing that
    # would edit the process-wide warning filters, which a companion solve's thread must not).
    # Points are multiples of 2^-bits and can be exactly 0 (ndtri(0) = -inf): take the
    # middle of each cell instead
    u = sobol.random(1 << (Pb - 1).bit_length())[:Pb]
    u += 0.5**(sobol.bits + 1)
    special.ndtri(u, out=u)  # in place: fresh pages cost as much as the quantile
    if stride > 1:
        u = u[rng.permutation(Pb)]
    Z[rows, :ks] = u[:, :ks]
    eps[rows] = u[:, ks:ks + nd]
    Z[rows, ks:ks + k] = u[:, ks + nd:ks + nd + k]
    per_cell = u[:, ks + nd + k:].reshape(Pb, N, nxi + k)
    xi[rows] = per_cell[:, :, :nxi].reshape(Pb, N * nxi)
    Z[rows, ks + k:] = per_cell[:, :, nxi:].reshape(Pb, N * k)


def _chunk_bounds(n: int, parts: int) -> list:
    """Bounds of ``parts`` contiguous chunks of ``range(n)``, as equal as they go."""
    return [i * n // parts for i in range(parts + 1)]


def _on_threads(fn, items, threads: int):
    """``fn(chunk)`` for ``threads`` contiguous chunks of ``items``, the first on this thread and
    the others on their own (with this thread's context), numpy's BLAS on one thread meanwhile
    (:class:`_BlasThreads`: the quadratures' point transforms are matrix products); after all
    have ended, the first chunk's exception is raised."""
    bounds = _chunk_bounds(len(items), max(1, min(threads, len(items))))
    chunks = [items[a:b] for a, b in zip(bounds, bounds[1:])]
    with _one_blas_thread() if len(chunks) > 1 else contextlib.nullcontext():
        others = [_Beside(fn, chunk) for chunk in chunks[1:]]
        try:
            fn(chunks[0])
        finally:
            for other in others:
                other.thread.join()
    for other in others:
        other.result()


class _Beside:
    """``fn(*args)`` on its own thread (with this thread's context) from construction; ``result()``
    waits for it and returns its value or raises its exception (``thread.join()`` only waits)."""

    def __init__(self, fn, *args):
        self.value, self.error = None, None
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run, fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn, args):
        try:
            self.value = fn(*args)
        except BaseException as e:  # noqa: BLE001 (raised by the calling thread)
            self.error = e

    def result(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


def _bridge_factor(delta: float, qv, at: float = 0.25):
    """Symmetric square root (B, k, k) of ``at delta qv``, the covariance of the field's
    Brownian bridge at the position ``lam`` in a cell with ``at = lam (1 - lam)`` (the
    midpoint: 1/4): ``qv`` (B, k, k) is the mean increment of ``F``'s quadratic variation
    over one cell, so ``delta qv`` is the field's."""
    w, V = np.linalg.eigh((0.5 * at) * delta * (qv + np.swapaxes(qv, -1, -2)))
    return (V * np.sqrt(np.maximum(w, 0.0))[:, None, :]) @ np.swapaxes(V, -1, -2)


def _node_rates(rates, N: int):
    """``(uL, uR)`` (N+1,): the rate's mean over the cell left and right of each grid node, in
    units of ``lr0`` (0 outside ``[0, t_N]``), from the per-cell means ``rates`` (N,); None: a
    constant rate. The trapezoid weight of node ``j`` inside row ``n`` is ``(uL_j + uR_j) dt / 2``
    (``uL_n dt / 2`` at ``j = n``): a cell's own mean rate at both its ends, which keeps the
    rule second order at a jump of the rate inside a cell."""
    u = np.ones(N) if rates is None else np.asarray(rates, dtype=float)
    return np.r_[0.0, u], np.r_[u, 0.0]


def _inv_blocks(M):
    """Inverses of a stack of ``k x k`` blocks; ``k = 1`` without LAPACK's per-call cost
    (3 per grid step)."""
    return 1.0 / M if M.shape[-1] == 1 else np.linalg.inv(M)


def _grid_zeros(shape) -> np.ndarray:
    """A float64 array of zeros for the two-time kernels (``O(N^2)`` per replica and group), on
    anonymous memory that the kernel zero-fills lazily. numpy advises huge pages for blocks of
    4 MB and more, and where the system compacts memory for advised pages at their first touch
    (``transparent_hugepage/defrag = madvise``) a solve waits for that compaction
    (docs/performance.md, "Anisotropic data")."""
    size = math.prod(shape)
    if size == 0:
        return np.zeros(shape)
    return np.frombuffer(mmap.mmap(-1, 8 * size), dtype=np.float64).reshape(shape)


def _row_products(*args):
    (_k.row_products_parallel if _config.PARALLEL else _k.row_products)(*args)


def _cheaper(dK1, dW1, dK2, dW2) -> np.ndarray:
    """Per replica (B,): whether :func:`_kernels_solve.row_products` reads less for ``(dK1,
    dW1)`` than for ``(dK2, dW2)``: it skips zero weights, and reads ``2.5 n`` numbers per weight
    of ``dK`` (``A``, ``R``, ``C``) and ``n / 2`` per weight of ``dW`` (the step response, or
    about as much of ``A``'s rows where ``dW`` is dense: :func:`_kernels_solve._cumulative_dW`)
    and group (``dK`` (.., B, n, k, k) may have a leading group axis, ``dW`` (B, n, k, k) is
    shared). Decided per replica, so that a solve on threads (replicas in parts) decides alike."""
    groups = dK1.size // dW1.size

    def reads(dK, dW):
        nz = np.count_nonzero(dK, axis=(-3, -2, -1))
        return 5 * nz.reshape(-1, nz.shape[-1]).sum(0) + groups * np.count_nonzero(dW, axis=(-3, -2, -1))

    return reads(dK1, dW1) <= reads(dK2, dW2)


class _ParamSide:
    """Row ``n`` of the parameter-side kernels of every replica (docs/dmft_theory.md, section 3).

    Discretisation with hat functions on the grid: ``theta_n = src_n + sum_{j<=n} K_nj theta_j``,
    ``K_nj = delta G_nj - lr0 ridge w_j`` (trapezoid weights ``w_j = (uL_j + uR_j) dt / 2`` of
    the rate ``lr(t) = lr0 u(t)``, :func:`_node_rates`), ``src = theta_0 + U + delta nu theta*``.
    ``m_n + ridge int_0^t lr m = delta E[F_n w*^T]``;
    ``nu_n = (Phi_n - sum_j G_nj m_j) rho^-1``; ``A`` the resolvent of ``(I - K)``;
    ``R_n.`` from a unit step source at the kick with the right half-hat only at the kick;
    ``C_n. = A_n. Sigma A^T`` with ``Sigma = q0 + delta S + delta^2 nu rho nu^T``.
    The incremental row is two numba kernels (row_products, finish_row), ``O(n^2 k^2)`` per row
    at most; tests/reference_multipass.py holds the direct numpy rows it is checked against.
    """

    def __init__(self, k, ks, dt, delta, lr, ridge, q0, rho, C, R, A, S, m, nu, Phi, asum, bvec, rates=None):
        self.k, self.ks, self.dt, self.delta, self.lr, self.ridge = k, ks, dt, delta, lr, ridge
        self.rates = rates
        self.uL, self.uR = _node_rates(rates, m.shape[1] - 1)
        self.q0, self.rho, self.rho_inv = q0, rho, np.linalg.inv(rho)
        self.C, self.R, self.A, self.S = C, R, A, S
        self.m, self.nu, self.Phi, self.asum, self.bvec = m, nu, Phi, asum, bvec
        # the step response, transposed: RtT[c k + e, m k + a] = sum_{j=c}^m (A_mj)_ae
        self.RtT = _grid_zeros(A.shape)
        self.last_products = None  # (n, dK, dW, (PA, PR, PC)) of the last row computed

    looks_ahead = False  # row() computes one row (see _SpectralParamSide)

    def row(self, n, Grow, Gprow, Gprev, Gpprev, dW, dG=None):
        """Row ``n`` from row ``n - 1`` and the increments ``G_n. - G_{n-1}.`` (incremental).

        Exact identities of the discrete system (``K^(n)`` the row-``n`` operator):
        ``sum_{j<n} K_nj A_j. = A_{n-1}. - E_{n-1} + sum_j dK_j A_j.``,
        ``R_nm = Minv [R_{n-1,m} - delta dG^-_m + sum_j dK_j R_jm]``,
        ``C_nm = Minv [C_{n-1,m} + sum_j dK_j C_jm + delta dS_n. A_m.^T + delta dnu rho b_m^T]``,
        with ``dK_j = K_nj - K_{n-1,j}`` and ``dS_n. A^T = sum_c dW_c Rt_.c^T`` (``dW`` the
        increments of ``S`` over cells, ``Rt`` the step response). For SGD ``dK`` and ``dW``
        are non-zero only at the grid nodes of the cell's events, and
        :func:`_kernels_solve.row_products` skips the zero blocks: ``O(nnz n)`` per row.
        The direct ``O(n^2)`` rows are the reference in tests/reference_multipass.py.
        """
        if n == 0:
            return self.first_row(Grow)
        k, dt, lam = self.k, self.dt, self.lr * self.ridge
        nk = n * k
        eye = np.eye(k)
        Minv = _inv_blocks(eye - (self._times_delta(Grow[:, n]) - lam * 0.5 * dt * self.uL[n] * eye))
        if dG is None:
            dG = Grow[:, :n] - Gprev[:, :n]
        dGm = dG - (Gprow[:, :n] - Gpprev[:, :n])
        dK = self._times_delta(dG)
        dK[..., n - 1, :, :] -= lam * 0.5 * dt * self.uR[n - 1] * eye
        PA, PR, PC = self._products_of_row(n, dK, dW, Minv.shape[:-1] + (nk,))
        self.last_products = (n, dK, dW.copy(), (PA, PR, PC))  # dW may be a view of a reused buffer
        self._finish(n, Grow, dGm, Minv, PA, PR, PC)

    def _products_of_row(self, n, dK, dW, shape):
        """The products ``P = sum_j dK_j X_j.`` (``X = A, R, C``, and ``C``'s ``dW`` term) of row
        ``n``, each of ``shape`` (.., k, n k), from the last row computed where that reads less."""
        nk = shape[-1]
        pk = nk - shape[-2]
        PA, PR, PC = (np.zeros(shape) for _ in range(3))
        last = self.last_products
        if last is not None and last[0] == n:
            # another sweep of this row: the products are linear in (dK, dW), so a replica sums
            # their change where it has fewer non-zero weights than the row (a sweep that keeps
            # the predicted G row changes dW alone; SGD's sparse rows are cheaper afresh)
            _, dK0, dW0, P0 = last
            change = _cheaper(dK - dK0, dW - dW0, dK, dW)
            for P, p0 in zip((PA, PR, PC), P0):
                P[:] = np.where(change[:, None, None], p0, 0.0)
            at = change[:, None, None, None]
            self._products(np.where(at, dK - dK0, dK), np.where(at, dW - dW0, dW), 0, nk, PA, PR, PC)
        elif last is not None and last[0] == n - 1:
            # the products are linear in (dK, dW) and rows/columns < n - 1 are final: reuse
            # the previous row's (a predictor's dK, dW equal them except at j >= n - 2)
            _, dK0, dW0, P0 = last
            for P, p0 in zip((PA, PR, PC), P0):
                P[..., :pk] = p0
            ddK, ddW = dK.copy(), dW.copy()
            ddK[..., : n - 1, :, :] -= dK0
            ddW[:, : n - 1] -= dW0
            self._products(ddK, ddW, 0, pk, PA, PR, PC)
            self._products(dK, dW, pk, nk, PA, PR, PC)
        else:
            self._products(dK, dW, 0, nk, PA, PR, PC)
        return PA, PR, PC

    def _times_delta(self, x):
        """``delta x``: the coefficient of ``G`` in ``K``."""
        return self.delta * x

    def _products(self, dK, dW, lo, hi, PA, PR, PC):
        """``P += sum_j dK_j X_j.`` on the columns ``lo <= col < hi`` (:func:`_kernels_solve.row_products`)."""
        _row_products(dK, dW, self.A, self.R, self.C, self.RtT, self.delta, lo, hi, PA, PR, PC)

    def _finish(self, n, Grow, dGm, Minv, PA, PR, PC):
        """Rows ``n`` of ``m, nu`` (isotropic identities) and of ``A, R, C`` from the products."""
        step = (n, self.dt, self.delta, self.lr * self.ridge)
        if self.rates is None:
            _k.finish_row(step, (Grow, dGm, Minv), (PA, PR, PC), (self.q0, self.rho, self.rho_inv),
                          (self.A, self.R, self.C, self.S, self.RtT), (self.m, self.nu, self.Phi, self.asum, self.bvec))
            return
        self._teacher_rates(n, Grow)
        _k.kernel_row(step, (Grow, dGm, Minv), (PA, PR, PC), (self.q0, self.rho),
                      (self.A, self.R, self.C, self.S, self.RtT), (self.nu, self.asum, self.bvec))
        self._diagonal_rates(n, Minv)

    def _teacher_rates(self, n, Grow):
        """A schedule's row ``n`` of ``m`` and ``nu``: ``m_n (1 + lam uL_n dt/2) = delta Phi_n - lam
        sum_{j<n} w_j m_j`` with the rate's trapezoid weights (:func:`_node_rates`), ``nu_n = (Phi_n -
        sum_{j<=n} G_nj m_j) rho^-1`` (the kernels' ``teacher_row`` has the plain trapezoid)."""
        lam, dt, m = self.lr * self.ridge, self.dt, self.m
        w = 0.5 * dt * (self.uL[:n] + self.uR[:n])
        m[:, n] = (self.delta * self.Phi[:, n] - lam * np.einsum("j,bjae->bae", w, m[:, :n])) / (
            1.0 + 0.5 * lam * dt * self.uL[n])
        self.nu[:, n] = (self.Phi[:, n] - np.einsum("bjah,bjhe->bae", Grow[:, :n + 1], m[:, :n + 1])) @ self.rho_inv

    def _diagonal_rates(self, n, Minv):
        """A schedule's ``C_nn``: the kernels' ``diagonal_block`` has ``K_nj = delta G_nj - lam w0_j``
        with the plain trapezoid ``w0``; the rate's weights ``w_j`` add ``Minv D`` (symmetrised),
        ``D = -lam sum_{j<n} (w_j - w0_j) C_nj^T``, ``C_nj`` the final blocks of row ``n``."""
        lam, dt, k = self.lr * self.ridge, self.dt, self.k
        if lam == 0.0:
            return
        dw = 0.5 * dt * (self.uL[:n] + self.uR[:n]) - np.r_[0.5 * dt, np.full(n - 1, dt)]
        nk = n * k
        crow = self.C[:, nk:nk + k, :nk].reshape(-1, k, n, k)  # [b, e, j, h] = (C_nj)_eh
        X = Minv @ (-lam * np.einsum("j,bejh->bhe", dw, crow))
        self.C[:, nk:nk + k, nk:nk + k] += 0.5 * (X + np.swapaxes(X, -1, -2))

    def _teacher_first(self, Grow):
        """Row 0 of ``m`` and ``nu``: ``m_0 = delta Phi_0``, ``nu_0 = (Phi_0 - G_00 m_0) rho^-1``."""
        m = self.m
        m[:, 0] = self.delta * self.Phi[:, 0]
        self.nu[:, 0] = (self.Phi[:, 0] - np.einsum("bjah,bjhe->bae", Grow[:, :1], m[:, :1])) @ self.rho_inv

    def first_row(self, Grow):
        """Row 0 (the direct form; no earlier row to increment): ``A_00 = (I - delta G_00)^-1``,
        ``R_00 = I``, ``C_00 = A_00 (delta S_00) A_00^T + asum_0 q0 asum_0^T + b_0 rho b_0^T``
        (symmetrised)."""
        k, delta = self.k, self.delta
        C, R, A, S = self.C, self.R, self.A, self.S
        B = C.shape[0]
        eye = np.eye(k)
        self._teacher_first(Grow)
        Minv = _inv_blocks(eye - delta * Grow[:, 0])
        A[:, :k, :k] = Minv
        R[:, :k, :k] = eye
        _k.row_sums(A, self.nu, delta, 0, self.RtT, self.asum, self.bvec)
        Arow = A[:, :k, :k]
        Sn = S[:, :k, :k]
        X = delta * (Arow @ (np.tril(Sn) + np.swapaxes(np.tril(Sn, -1), -1, -2)))
        Crow = X @ np.swapaxes(A[:, :k, :k], -1, -2)
        Crow += np.einsum("bah,hg,bmeg->bame", self.asum[:, 0], self.q0, self.asum[:, :1]).reshape(B, k, k)
        Crow += np.einsum("bah,hg,bmeg->bame", self.bvec[:, 0], self.rho, self.bvec[:, :1]).reshape(B, k, k)
        C[:, :k, :k] = 0.5 * (Crow + np.swapaxes(Crow, -1, -2))


class _GroupParamSide(_ParamSide):
    """One spectral group's parameter side of a mixture (docs/dmft_mixture.md, section 4): the
    isotropic incremental row with the group's ``delta``, ``G_g``, ``S_g`` and ``rho_g`` (which
    may be singular) for ``rho``. Its rows of ``m`` and ``nu`` are set by the mixture's side
    before :meth:`row` runs."""

    def __init__(self, k, ks, dt, delta, lr, ridge, q0, rho, C, R, A, S, m, nu, asum, bvec, rates=None):
        super().__init__(k, ks, dt, delta, lr, ridge, q0, np.eye(ks), C, R, A, S, m, nu, None, asum, bvec, rates)
        self.rho, self.rho_inv = rho, None

    def _finish(self, n, Grow, dGm, Minv, PA, PR, PC):
        _k.kernel_row((n, self.dt, self.delta, self.lr * self.ridge), (Grow, dGm, Minv), (PA, PR, PC),
                      (self.q0, self.rho), (self.A, self.R, self.C, self.S, self.RtT), (self.nu, self.asum, self.bvec))
        if self.rates is not None:
            self._diagonal_rates(n, Minv)

    def _teacher_first(self, Grow):
        """Nothing: the coupled solve has set the rows."""


class _GroupRows:
    """The rows of all groups of a :class:`_SpectralParamSide` in one kernel call per row
    (:func:`_kernels_solve.group_rows`), in the direct form (docs/dmft_anisotropic.md, section 5):
    ``C_g`` from ``A_g`` and the shared ``S``, ``R_g`` from ``A_g`` and the shared ``G``, so that a
    row reads a group's own history only in ``A_g``, whose rows are packed one after the other
    (``A[g, b, off[r]:off[r + 1]]`` the ``(r // k + 1) k`` columns of row ``r`` of its lower block
    triangle: one contiguous stream). The shared matrices are kept here for dot products:
    ``Ghat`` transposed (``G^-`` below the diagonal blocks, ``G`` on them) and ``S`` symmetric.
    The last sweep of row ``n`` comes with the predictor's inputs of row ``n + 1`` (``ahead``):
    both rows in one pass over ``A_g``, and the predictor's own call finds its row done."""

    def __init__(self, k, dt, lam, q0, uL, uR, dlam, rho, S, R, C, nu, asum, bvec):
        G, B, NK, _ = C.shape
        self.k, self.dt, self.lam, self.q0, self.uL, self.uR = k, dt, lam, q0, uL, uR
        self.dlam, self.rho, self.S, self.R, self.C = dlam, rho, S, R, C
        self.nu, self.asum, self.bvec = nu, asum, bvec
        self.off = np.r_[0, np.cumsum((np.arange(NK) // k + 1) * k)]
        self.A = _grid_zeros((G, B, int(self.off[-1])))
        self.GhatT, self.Ssym = _grid_zeros(S.shape), _grid_zeros(S.shape)
        self.last = None  # the inputs of the last row computed (_inputs)
        self.done_ahead = None  # the inputs of the row computed ahead

    def row(self, n, Grow, Gprow, Gprev, Gpprev, dW, dG=None, ahead=None):
        """Row ``n`` of every group (the arguments of :meth:`_ParamSide.row`; the direct form
        needs only the rows ``Grow`` of ``G`` and ``Gprow`` of ``G^+``), and with ``ahead = (Grow,
        Gprow)`` row ``n + 1`` (the predictor's) in the same pass. A call whose inputs are those
        of the row done ahead finds it done; a sweep that keeps the last call's rows of ``G`` (an
        SGD sweep before the last) recomputes ``C`` alone (``A`` and ``R`` depend on ``G`` alone)."""
        self._shared_rows(n, Grow, Gprow)
        last, self.last = self.last, self._inputs(n, Grow, Gprow)
        if _same(self.done_ahead, self.last):
            return
        if last is not None and last[0] == n and _same(last[1:3], self.last[1:3]):
            _k.group_c_rows(n, self.dlam, self.Ssym, self.q0, self.rho, self.nu, self.A, self.C,
                            (self.asum, self.bvec), self.off)
            return
        k, dt, lam = self.k, self.dt, self.lam
        rows = [Grow]
        if ahead is not None:
            self._shared_rows(n + 1, *ahead)
            rows.append(ahead[0])
        top = n + len(rows) - 1  # the weights of nodes j < top
        eye = np.eye(k)
        Minv = np.stack([_inv_blocks(eye - (self.dlam[:, None, None, None] * Gi[None, :, i] - lam * 0.5 * dt
                                            * self.uL[i] * eye)) for i, Gi in enumerate(rows, start=n)])
        ridge_w, rfac = lam * 0.5 * dt * (self.uL[:top] + self.uR[:top]), 1.0 + lam * 0.5 * dt * self.uL[:top]
        _k.group_rows(n, self.dlam, ridge_w, rfac, Minv, np.stack(rows), (self.GhatT, self.Ssym), self.q0, self.rho,
                      self.nu, (self.A, self.R, self.C), (self.asum, self.bvec), self.off)
        self.done_ahead = None if ahead is None else self._inputs(n + 1, *ahead)

    def _inputs(self, n, Grow, Gprow):
        """What row ``n`` depends on: its rows of ``G``, ``G^+``, ``S`` and ``nu`` (copies)."""
        k = self.k
        return (n, Grow[:, :n + 1].copy(), Gprow[:, :n + 1].copy(), self.S[:, n * k:(n + 1) * k, :(n + 1) * k].copy(),
                self.nu[:, n].copy())

    def _shared_rows(self, n, Grow, Gprow):
        """Column ``n`` of ``Ghat^T`` and row and column ``n`` of the symmetric ``S`` (which keeps its
        lower block triangle, and of its diagonal blocks the lower triangle), both (B, NK, NK)."""
        k, S = self.k, self.S
        nk, n1k = n * k, (n + 1) * k
        self.GhatT[:, :nk, nk:n1k] = np.swapaxes(_flat(Grow[:, :n] - Gprow[:, :n]), -1, -2)
        self.GhatT[:, nk:n1k, nk:n1k] = np.swapaxes(Grow[:, n], -1, -2)
        self.Ssym[:, nk:n1k, :nk] = S[:, nk:n1k, :nk]
        self.Ssym[:, :nk, nk:n1k] = np.swapaxes(S[:, nk:n1k, :nk], -1, -2)
        D = S[:, nk:n1k, nk:n1k]
        self.Ssym[:, nk:n1k, nk:n1k] = np.tril(D) + np.swapaxes(np.tril(D, -1), -1, -2)


def _same(a, b) -> bool:
    """Whether two tuples of (the same row's) inputs are equal, element by element; None is not."""
    return a is not None and b is not None and len(a) == len(b) and all(
        np.array_equal(x, y) for x, y in zip(a, b))


def _group_mean_kernels(p, groups, steps, k):
    """``sum_g p_g X_g`` of each group array ``X`` (G, B, NK, NK) in ``groups`` at the grid
    ``steps``, as (B, T, T, k, k): the Euclidean two-time kernels of a spectral parameter side."""
    idx = (np.asarray(steps)[:, None] * k + np.arange(k)).ravel()
    T = len(steps)
    return [np.einsum("g,gbij->bij", p, X[:, :, idx][:, :, :, idx]).reshape(-1, T, k, T, k).transpose(0, 1, 3, 2, 4)
            for X in groups]


def _group_mean_trace(p, Cg, k):
    """``tr`` of ``sum_g p_g C_g(t_n, t_n)`` per replica and grid step -> (B, N+1)."""
    diag = np.einsum("g,gbii->bi", p, Cg)
    return diag.reshape(diag.shape[0], -1, k).sum(-1)


class _SpectralParamSide:
    """The parameter side of anisotropic data (docs/dmft_anisotropic.md, section 5).

    One isotropic parameter side per spectral group ``g`` (weight ``p_g``, eigenvalue ``lam_g``
    normalised so that ``sum_g p_g lam_g = 1``, teacher power ``rho_g`` in the same
    normalisation; :class:`_GroupRows`), all driven by the one sample side's ``G``, ``S`` and
    ``Phi``. Row ``n``:
    the coupled solve for ``nu_n`` and every ``m_g,n`` (:meth:`teacher_row`), the groups'
    rows, then the sample side's kernels ``C_K = sum_g p_g lam_g C_g``, ``R_K`` and ``m_K``
    in ``C``, ``R``, ``m`` (the arrays the sample side reads).
    """

    def __init__(self, k, ks, dt, delta, lr, ridge, q0, weights, eigenvalues, rho, C, R, S, m, nu, Phi, rates=None):
        G = len(weights)
        B, NK, _ = C.shape
        N1 = m.shape[1]
        self.k, self.dt, self.lam = k, dt, lr * ridge
        self.rates = rates
        self.uL, self.uR = _node_rates(rates, N1 - 1)
        self.p = np.asarray(weights, float)
        self.w = self.p * np.asarray(eigenvalues, float)  # p_g lam_g, summing to 1
        self.dlam = delta * np.asarray(eigenvalues, float)
        self.rho_g = np.asarray(rho, float)
        self.rho_k = np.einsum("g,gab->ab", self.w, self.rho_g)
        self.C, self.R, self.m, self.nu, self.Phi = C, R, m, nu, Phi
        self.Cg, self.Rg = (_grid_zeros((G, B, NK, NK)) for _ in range(2))
        self.mg = np.zeros((G, B, N1, k, ks))
        self.asum = np.zeros((G, B, N1, k, k))
        self.bvec = np.zeros((G, B, N1, k, ks))
        self.rows = _GroupRows(k, dt, lr * ridge, q0, self.uL, self.uR, self.dlam, self.rho_g, S, self.Rg, self.Cg,
                               nu, self.asum, self.bvec)

    looks_ahead = True

    def row(self, n, Grow, Gprow, Gprev, Gpprev, dW, dG=None, ahead=None):
        """Row ``n`` of every group and of ``C``, ``R``, ``m`` (arguments of :meth:`_ParamSide.row`).
        ``ahead = (Grow, Gprow)`` of the predictor of row ``n + 1`` (whose rows of ``S`` and ``Phi``
        are written): that row's groups too, in the same pass (:class:`_GroupRows`)."""
        self.teacher_row(n, Grow)
        if ahead is not None:
            self.teacher_row(n + 1, ahead[0])
        self.rows.row(n, Grow, Gprow, Gprev, Gpprev, dW, dG, ahead=ahead)
        k = self.k
        rows = slice(n * k, (n + 1) * k)
        crow = np.einsum("g,gbij->bij", self.w, self.Cg[:, :, rows, : (n + 1) * k])
        self.C[:, rows, : (n + 1) * k] = crow
        self.C[:, : (n + 1) * k, rows] = np.swapaxes(crow, -1, -2)
        self.R[:, rows, : (n + 1) * k] = np.einsum("g,gbij->bij", self.w, self.Rg[:, :, rows, : (n + 1) * k])

    def teacher_row(self, n, Grow):
        """``nu_n`` and ``m_g,n`` of every group and replica, and ``m_K,n = sum_g p_g lam_g m_g,n``.

        Discretised like the isotropic ``m`` (trapezoid weights ``w_j`` of the rate, hat functions for ``G``):
        ``m_g,n = Minv_g (b_g + delta lam_g nu_n rho_g)`` with
        ``b_g = sum_{j<n} (delta lam_g G_nj - lam w_j) m_g,j`` and ``Minv_g = (I - K_g,nn)^-1``,
        and Stein's ``nu_n rho_K = Phi_n - sum_{j<=n} G_nj m_K,j``: a linear equation for
        ``nu_n``, ``nu rho_K + sum_g p_g lam_g delta lam_g G_nn Minv_g nu rho_g = Phi_n -
        sum_{j<n} G_nj m_K,j - G_nn sum_g p_g lam_g Minv_g b_g`` (``k ks`` unknowns per replica).
        """
        k, dt, lam = self.k, self.dt, self.lam
        mg, w, dlam, rho_g = self.mg, self.w, self.dlam, self.rho_g
        G, B = mg.shape[:2]
        ks = mg.shape[-1]
        Gn = Grow[:, n]
        if n > 0:
            Gm = np.einsum("bjah,gbjhe->gbae", Grow[:, :n], mg[:, :, :n])
            if self.rates is None:
                wm = dt * (mg[:, :, :n].sum(axis=2) - 0.5 * mg[:, :, 0])
            else:
                wm = np.einsum("j,gbjae->gbae", 0.5 * dt * (self.uL[:n] + self.uR[:n]), mg[:, :, :n])
            half = 0.5 * lam * dt * self.uL[n]
        else:
            Gm = wm = np.zeros((G, B, k, ks))
            half = 0.0  # the trapezoid has no weight at t_0 on a one-point interval
        b = dlam[:, None, None, None] * Gm - lam * wm
        eye = np.eye(k)
        Minv = _inv_blocks((1.0 + half) * eye - dlam[:, None, None, None] * Gn[None])
        mb = Minv @ b
        rhs = self.Phi[:, n] - np.einsum("g,gbae->bae", w, Gm) - Gn @ np.einsum("g,gbae->bae", w, mb)
        Mg = (w * dlam)[:, None, None, None] * (Gn[None] @ Minv)  # (G, B, k, k)
        # vec(M nu rho) = kron(M, rho^T) vec(nu) for row-major vec
        L = np.kron(eye, self.rho_k.T)[None] + np.einsum("gbah,gfe->baehf", Mg, rho_g).reshape(B, k * ks, k * ks)
        nu = np.linalg.solve(L, rhs.reshape(B, k * ks, 1)).reshape(B, k, ks)
        self.nu[:, n] = nu
        mg[:, :, n] = mb + Minv @ (dlam[:, None, None, None] * (nu[None] @ rho_g[:, None]))
        self.m[:, n] = np.einsum("g,gbae->bae", w, mg[:, :, n])

    def plain(self, steps):
        """``sum_g p_g X_g`` of ``C``, ``R`` (B, T, T, k, k) and ``m`` (B, T, k, ks) at the grid
        ``steps``: the Euclidean ``theta^T theta/d``, response and ``theta^T theta*/d`` (in the
        solve's normalisation)."""
        C, R = _group_mean_kernels(self.p, (self.Cg, self.Rg), steps, self.k)
        upper = np.triu(np.ones((len(steps),) * 2, bool), 1)[:, :, None, None]  # C_g keeps its lower blocks
        C = np.where(upper, np.swapaxes(np.swapaxes(C, 1, 2), -1, -2), C)
        return [C, R, np.einsum("g,gbtae->btae", self.p, self.mg[:, :, np.asarray(steps)])]

    def plain_trace(self):
        """``tr`` of ``sum_g p_g C_g(t_n, t_n)`` per replica and grid step -> (B, N+1)."""
        return _group_mean_trace(self.p, self.Cg, self.k)


class _MixtureParamSide:
    """The parameter side of a hard-label mixture (docs/dmft_mixture.md, sections 2 and 4).

    The sample side runs ``C`` class blocks per replica (sample-side replica ``b C + c`` holds the
    paths of class ``c`` of replica ``b``), so its statistics are per class: ``G_c``, ``S_c`` and
    ``Phi_c`` (its column ``c`` is ``E[F | c]``, the paths' one-hot class being their ``w*``).
    Spectral group ``g`` (weight ``p_g``, eigenvalues ``lam_g^(c)`` normalised to ``sum_g p_g
    lam_g^(c) = 1``, mean power ``gram_g``) is the isotropic row (:class:`_GroupParamSide`) driven
    by ``G_g = sum_c pi_c lam_g^(c) G_c`` and ``S_g`` alike, with ``nu -> Nu``, ``Nu_c = pi_c E[F | c]``
    and ``rho -> gram_g``; its class-mean fields ``M_g`` solve ``M_g + lr ridge int M_g = delta (Nu
    gram_g + int G_g M_g)``. The sample side reads, per class block, ``C_c = sum_g p_g lam_g^(c) C_g``,
    ``R_c`` alike (rows written into ``C``, ``R``) and the shift ``M_c = sum_g p_g M_g,c`` (``M``, B, N+1, k, C).
    """

    def __init__(self, k, dt, delta, lr, ridge, q0, groups, probs, C, R, S, Phi, rates=None):
        n_classes = len(probs)
        Bs, NK, _ = C.shape
        B, N1, G = Bs // n_classes, Phi.shape[1], len(groups.weights)
        self.k, self.dt, self.delta, self.lam, self.rates = k, dt, delta, lr * ridge, rates
        self.uL, self.uR = _node_rates(rates, N1 - 1)
        self.p, self.probs = groups.weights, np.asarray(probs, float)
        self.lam_gc = groups.eigenvalues  # (G, C), normalised
        self.wc = self.probs[None, :] * self.lam_gc  # weights of the class statistics in each group
        self.gram = groups.gram
        self.C, self.R, self.S, self.Phi = C, R, S, Phi
        self.Cg, self.Rg, self.Ag, self.Sg = (_grid_zeros((G, B, NK, NK)) for _ in range(4))
        self.Mg = np.zeros((G, B, N1, k, n_classes))
        self.M, self.nu = np.zeros((B, N1, k, n_classes)), np.zeros((B, N1, k, n_classes))
        self.asum, self.bvec = np.zeros((G, B, N1, k, k)), np.zeros((G, B, N1, k, n_classes))
        self.groups = [
            _GroupParamSide(k, n_classes, dt, delta, lr, ridge, q0, self.gram[g], self.Cg[g], self.Rg[g],
                            self.Ag[g], self.Sg[g], self.Mg[g], self.nu, self.asum[g], self.bvec[g], rates)
            for g in range(G)]

    def _by_group(self, X):
        """``sum_c pi_c lam_g^(c) X_c`` (G, B, ...) of a sample-side array ``X`` (B C, ...); None stays None."""
        if X is None:
            return None
        return np.einsum("gc,bc...->gb...", self.wc, X.reshape(-1, self.probs.size, *X.shape[1:]))

    def _by_class(self, X):
        """``sum_g p_g lam_g^(c) X_g`` (B C, ...) of group arrays ``X`` (G, B, ...)."""
        out = np.einsum("g,gc,gb...->bc...", self.p, self.lam_gc, X)
        return out.reshape(-1, *out.shape[2:])

    looks_ahead = False

    def row(self, n, Grow, Gprow, Gprev, Gpprev, dW, dG=None):
        """Row ``n`` of every group, of ``Nu``, ``M`` and of the class blocks' ``C``, ``R`` (arguments
        of :meth:`_ParamSide.row`, per sample-side replica)."""
        k, C = self.k, self.probs.size
        rows, cols = slice(n * k, (n + 1) * k), slice(0, (n + 1) * k)
        self.Sg[:, :, rows, cols] = self._by_group(self.S[:, rows, cols])
        phi = self.Phi[:, n].reshape(-1, C, k, C)
        self.nu[:, n] = self.probs * np.stack([phi[:, c, :, c] for c in range(C)], axis=-1)
        inputs = [self._by_group(x) for x in (Grow, Gprow, Gprev, Gpprev, dW, dG)]
        for g, group in enumerate(self.groups):
            self._mean_row(n, g, inputs[0][g])
            group.row(n, *(None if x is None else x[g] for x in inputs))
        self.M[:, n] = np.einsum("g,gbae->bae", self.p, self.Mg[:, :, n])
        crow = self._by_class(self.Cg[:, :, rows, cols])
        self.C[:, rows, cols] = crow
        self.C[:, cols, rows] = np.swapaxes(crow, -1, -2)
        self.R[:, rows, cols] = self._by_class(self.Rg[:, :, rows, cols])

    def _mean_row(self, n, g, Grow):
        """Group ``g``'s ``M_g,n ((1 + lam uL_n dt/2) I - delta G_g,nn) = delta (Nu_n gram_g + sum_{j<n} G_g,nj
        M_g,j) - lam sum_{j<n} w_j M_g,j`` (the rate's trapezoid weights ``w_j``, hat functions for ``G``, as the
        isotropic ``m``)."""
        M, dt, lam, k = self.Mg[g], self.dt, self.lam, self.k
        rhs = self.delta * self.nu[:, n] @ self.gram[g]
        half = 0.0  # the trapezoid has no weight at t_0 on a one-point interval
        if n > 0:
            w = 0.5 * dt * (self.uL[:n] + self.uR[:n])
            rhs = rhs + self.delta * np.einsum("bjah,bjhe->bae", Grow[:, :n], M[:, :n]) - lam * np.einsum(
                "j,bjae->bae", w, M[:, :n])
            half = 0.5 * lam * dt * self.uL[n]
        M[:, n] = _inv_blocks((1.0 + half) * np.eye(k) - self.delta * Grow[:, n]) @ rhs

    def add_means(self, n, Pb, paths, W):
        """``W[q] += M_c(t_n)`` for the ``paths``; path ``p`` is in class block ``p // Pb``, whose
        replica is ``// C`` and class ``% C``."""
        if paths.size:
            block, C = paths // Pb, self.probs.size
            W += self.M[block // C, n, :, block % C]

    def plain(self, steps):
        """``sum_g p_g X_g`` of ``C``, ``R`` (B, T, T, k, k) at the grid ``steps`` (as
        :meth:`_SpectralParamSide.plain`) and the class means ``M`` (B, T, k, C)."""
        return [*_group_mean_kernels(self.p, (self.Cg, self.Rg), steps, self.k), self.M[:, np.asarray(steps)]]

    def plain_trace(self):
        """``tr`` of ``sum_g p_g C_g(t_n, t_n)`` per replica and grid step -> (B, N+1)."""
        return _group_mean_trace(self.p, self.Cg, self.k)


def _interpolation(times: np.ndarray, dt: float, N: int, jumps=()):
    """``(steps, W, W1)``: the grid steps that the output ``times`` need, and the matrices
    (len(times), len(steps)) with ``x(times) = W x(t_steps)``. ``W``: quadratic (three-point
    Lagrange) interpolation on the three grid points nearest each time (``0, dt, 2 dt`` before
    ``dt``), exact for quadratics: a one-time output that starts as ``t^2`` (the norm after a
    zero start) keeps its value at times below ``dt``, where linear interpolation would double
    it at ``dt/2``. ``W1``: linear interpolation, for the two-time outputs, which have a kink
    on the diagonal (a three-point rule across it does no better). A time within 1e-9 steps
    of a grid point is that point (weight exactly 1) in both.

    ``jumps``: the times of a schedule's jumps (:func:`dmft.schedules.jump_times`), where the
    curves have a kink, so a stencil across one errs by ``O(dt)``. Neither rule reaches across
    one (:func:`_piece_row`): a time takes the grid points of its own piece between two jumps
    (a jump on a grid point belongs to both of its pieces), the same stencils moved inside; a
    time at a jump takes the piece before it (extrapolated from its last grid points, whose
    values the rate after the jump has not touched), and a time after a jump inside a cell but
    before the next grid point interpolates through that value at the jump. Rows of times whose
    stencil crosses no jump are unchanged; a piece with fewer grid points than the rule needs
    (jumps less than two steps apart) keeps the stencils that cross."""
    x = np.asarray(times, dtype=float) / dt
    i0 = np.clip(np.floor(x + 1e-9), 0, N).astype(np.int64)
    f = np.where((x - i0 > 1e-9) & (i0 < N), x - i0, 0.0)
    on_grid = f == 0.0
    # nodes a, a+1, a+2 around x: the middle one nearest x, inside [0, N]
    a = np.clip(np.rint(x).astype(np.int64) - 1, 0, max(N - 2, 0))
    u = x - a
    if N >= 2:
        w3 = np.stack([(u - 1) * (u - 2) / 2, -u * (u - 2), u * (u - 1) / 2], axis=1)
        nodes = a[:, None] + np.arange(3)
    else:  # a one-step grid has no three points: linear
        w3 = np.stack([1 - f, f, np.zeros_like(f)], axis=1)
        nodes = np.stack([i0, np.minimum(i0 + 1, N), np.minimum(i0 + 1, N)], axis=1)
    w3[on_grid] = [1.0, 0.0, 0.0]
    nodes[on_grid] = i0[on_grid, None]
    n1 = np.stack([i0, np.minimum(i0 + 1, N)], axis=1)  # the linear rule's nodes and weights
    w1 = np.stack([1.0 - f, f], axis=1)
    w1[~(f > 0), 1] = 0.0
    J = np.asarray(jumps, dtype=float) / dt
    J = J[(J > 1e-9) & (J < N - 1e-9)]
    rows3, rows1 = _piecewise_rows(x, N, J, on_grid, nodes, n1) if len(J) else ({}, {})
    extra = [n for row in (*rows3.values(), *rows1.values()) for n in row]
    steps = np.unique(np.r_[nodes.ravel(), n1.ravel(), np.asarray(extra, dtype=np.int64)])
    rows = np.arange(len(x))
    W = np.zeros((len(x), len(steps)))
    for j in range(3):
        np.add.at(W, (rows, np.searchsorted(steps, nodes[:, j])), w3[:, j])
    W1 = np.zeros_like(W)
    for j in range(2):
        np.add.at(W1, (rows, np.searchsorted(steps, n1[:, j])), w1[:, j])
    for Wx, moved in ((W, rows3), (W1, rows1)):
        for r, row in moved.items():
            Wx[r] = 0.0
            for n, w in row.items():
                Wx[r, np.searchsorted(steps, n)] += w
    return steps, W, W1


def _lagrange(x: float, points) -> list:
    """The Lagrange weights at ``x`` of the polynomial through ``points``."""
    return [math.prod((x - q) / (p - q) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


def _piece_row(x: float, N: int, J: np.ndarray, order: int):
    """``{grid step: weight}`` of the time ``x`` (in steps) for the rule of ``order`` (2: three
    points, 1: two) inside its piece between the jumps ``J`` (a time at a jump: the piece before
    it), or None when the piece has too few grid points. Between a jump inside a cell and the
    piece's first grid point the rule interpolates through the jump's value from the piece
    before (the curve is continuous there), instead of extrapolating from the right."""
    tol = 1e-9
    lo = max([0.0] + [j for j in J if j < x - tol])
    hi = min([float(N)] + [j for j in J if j >= x - tol])
    first, last = int(math.ceil(lo - tol)), int(math.floor(hi + tol))
    if last - first < order:
        return None
    if x < first - tol and lo > 0:  # after a jump inside the cell (lo, first)
        left = _piece_row(lo, N, J, order)
        if left is not None:
            points = [lo] + [first + i for i in range(order)]
            w = _lagrange(x, points)
            row = {n: w[0] * v for n, v in left.items()}
            for i in range(order):
                row[first + i] = row.get(first + i, 0.0) + w[1 + i]
            return row
    a = int(np.rint(x)) - 1 if order == 2 else int(math.floor(x + tol))
    a = min(max(a, first), last - order)
    points = [a + i for i in range(order + 1)]
    return dict(zip(points, _lagrange(x, points)))


def _piecewise_rows(x, N, J, on_grid, nodes, n1):
    """The rows ``{row: {grid step: weight}}`` of the quadratic and the linear rule for the
    off-grid times ``x`` (in steps) whose default stencil (``nodes``, ``n1``) reaches across a
    jump of ``J`` (in steps, inside ``(0, N)``): :func:`_piece_row` (:func:`_interpolation`)."""
    out = ({}, {})
    for r in np.nonzero(~on_grid)[0]:
        for moved, stencil, order in zip(out, (nodes[r], n1[r]), (2, 1)):
            lo, hi = stencil.min(), stencil.max()
            if np.any((J > lo + 1e-9) & (J < hi - 1e-9)) or np.any(np.abs(J - x[r]) <= 1e-9):
                row = _piece_row(float(x[r]), N, J, order)
                if row is not None:
                    moved[r] = row
    return out


def _memory_estimate(driver, B, Pb, N, k, ks, nd, n_time, stride, t_max, sampling, n_groups=0, at_once=1.0,
                     boundary=False, signed_noise=False, drawn_in_parts=False):
    """Peak bytes a solve allocates (above the process's baseline) and the largest part:
    ``'grid'`` (the ``(N+1) k`` square kernels of every replica, ``O(N^2)``), ``'paths'`` (per-path
    inputs, events, gradients and tangents, ``O(P N)``) or ``'events'`` (SGD: the per-path
    tangents over pairs of events, ``O(P J^2)`` with ``J`` about ``batch t_max``). Anisotropic
    data: four ``(B, NK, NK)`` arrays per spectral group (the direct rows of :class:`_GroupRows`
    keep ``C, R`` and the packed triangle of ``A`` per group and two shared, about ``2.5 G + 2``;
    a mixture's groups ``C, R, A, S`` and the step response per group on ``B / n_classes``
    replicas).
    ``at_once``: the share of the replicas whose sample sides are allocated at the same time
    (parts of the replicas in turn, :func:`_parts_in_turn`). ``boundary``: GF's ghost pairs
    (``GHOST_SLOTS`` per tangent path, their force changes at every step) and the tangents' seeds;
    ``signed_noise``: SME's noise forces per path and cell and their ``g'`` on the tangent paths.
    ``drawn_in_parts``: the parts draw their paths' inputs and events (:func:`_draws_in_parts`),
    else they are drawn for all paths before the parts start.
    Counted in float64 so that absurd inputs give ``inf`` instead of an OverflowError;
    checked against measured peak RSS in tests/test_resources.py."""
    P = float(Pb) * B
    N, k, B = float(N), float(k), float(B)
    NK = (N + 1) * k
    D = ks + NK
    nxi = driver.normals_per_cell + driver.midpoint_normals(int(k))
    # C, R, A, S, the step response RtT; the replicas' Cholesky factors L; C and R at the output times
    grid = (5 + 4 * n_groups) * B * NK * NK + B * D * D + 2 * B * n_time * n_time * k * k
    inputs = P * (D + nd + N * nxi)
    shared, drawn, paths, events, in_parts = driver.sample_memory(P, B, N, k, stride, t_max, inputs)
    paths += drawn
    if drawn_in_parts:
        in_parts += drawn
    if boundary:
        ghosts = P / stride * (GHOST_SLOTS * 2 * (N + 1) * k + (N + 1) * k * k / 2) + P * (4 * GHOST_SLOTS + 3)
        paths, in_parts = paths + ghosts, in_parts + ghosts
    if signed_noise:
        noise = P * N * k + P / stride * N * k * k / 2
        paths, in_parts = paths + noise, in_parts + noise
    grid += shared
    # Sobol draws of one replica (two copies) at the start; one replica's fields at the end
    transient = 2 * Pb * (D + nd + N * nxi) if sampling == "qmc" else 0.0
    transient = max(transient, Pb * n_time * k, 2 * B * n_time * n_time * k * k)
    parts = {"grid": grid, "paths": paths, "events": events}
    total = sum(parts.values()) + transient
    in_turn = total - (1 - at_once) * in_parts  # nan where both are inf: then the total
    return 8 * (total if math.isnan(in_turn) else in_turn), max(parts, key=parts.get)


def _runtime_estimate(driver, B, P, N, k, stride, t_max, n_groups=0) -> float:
    """Seconds of a solve: ``1 + c_grid (B/8) k^2 N^2`` for the parameter side and the
    factors, plus the sample side's tangents, ``c_path P k^2 J N`` for SGD (``J`` events per
    path) and ``c_path (P / stride) k^2 N^2`` for SME and GF; ``c`` fitted to Huber-on-tanh
    solves on one core of the reference machine (docs/performance.md, "Resource estimates").
    Anisotropic data: each of ``n_groups`` spectral groups adds about the grid term (measured
    0.6x for GF, 1.3x for SGD; docs/performance.md, "Anisotropic data")."""
    B, P, N = float(B), float(P), float(N)
    path = driver.sample_runtime(P, N, stride, t_max)
    return 1.0 + k * k * ((1 + n_groups) * driver.grid_cost * B / 8 * N * N + path)


# ---------------------------------------------------------------- phases of a solve
@dataclass
class _Setup:
    """The checked inputs of one solve, with what follows from the model and the data."""

    arguments: dict  # the inputs as given (seed copied), for the check solves with other steps
    model: object
    driver: _Driver
    delta: float
    lr: float  # lr0 = lr(0), the unit of the per-cell and per-event rates
    t_max: float
    times: np.ndarray
    given_times: bool
    n_time: int
    dt: float  # the requested largest step
    n_replicas: int
    n_paths: int
    tangent_stride: int
    ridge: float
    init_std: float
    corrector: int
    sampling: str
    seed: object
    ss: np.random.SeedSequence
    progress: bool
    max_memory_gb: float
    check_dt: bool | None
    on_divergence: str
    kink_bandwidth: float
    kink_extrapolate: bool
    data: object
    spec: object  # the spectral groups of anisotropic data, or None
    dirac: np.ndarray  # per kink plane: l'' has a Dirac part there
    kinked: bool  # the Dirac parts are smoothed (kink_bandwidth > 0)
    jump: float
    max_runtime_s: float | None = None
    schedule: object = None  # lr(t), a schedule of dmft.schedules (a number: Constant)
    lr_max: float = 0.0  # the schedule's largest rate on [0, t_max] (defaults, step heuristics)
    lr_top: float = 0.0  # lr_max times the data's largest eigenvalue: the stiffest parameter-side rate
    mixture: object = None  # a hard-label mixture's _spectral.Mixture (docs/dmft_mixture.md), or None
    mixture_groups: object = None  # its _spectral.MixtureGroups
    time_grid: object = None  # t = tau(u) of the internal time u the grid is uniform in (dmft.grids)
    boundary: bool = False  # kink_response="boundary": GF's boundary terms instead of the smoothing
    signed_noise: bool = False  # kink_response="signed_noise": SME's noise through s(r) l'(r), unsmoothed

    @property
    def uniform(self) -> bool:
        """The grid is uniform in the training time (``u = t``)."""
        return isinstance(self.time_grid, grids.Uniform)

    @property
    def dynamics(self) -> str:
        return self.driver.name

    @property
    def batch(self) -> float:
        return self.driver.rate


def _checked(arguments: dict) -> _Setup:
    """The validation phase: every argument checked (ParameterError naming it) and the
    driver's defaults filled in; ``arguments`` is updated to the string form of the driver."""
    a = arguments
    model = _models.get(a["model"])
    if model.k_star < 1:
        raise errors.ParameterError(
            f"model={model.name!r} has k_star={model.k_star}: the DMFT needs a teacher (k_star >= 1)")
    delta = errors.positive("delta", a["delta"])
    schedule = _spectral.check_lr(a["lr"])
    driver = _driver(a["dynamics"], a["batch"], a["driver"])
    # the check solves take the string form
    arguments.update(dynamics=driver.name, batch=driver.rate, driver=None)
    given_times = a["times"] is not None
    times, t_max, n_time = errors.output_times(a["times"], a["n_time"], a["t_max"], n_time_default=101,
                                               t_max_default=4.0)
    t_max = errors.positive("t_max", t_max)
    time_grid = grids.check(a["time_grid"], t_max)
    lr_max = _schedules.peak_rate(schedule, times, t_max)
    lr = float(schedule(0.0, 0.0))
    kink_bandwidth = errors.nonnegative("kink_bandwidth", a["kink_bandwidth"])
    jumps = model.gradient_jumps()
    dirac = jumps > _models.GRADIENT_JUMP_TOL  # Dirac parts of l'', smoothed in the tangents
    kinked = bool(dirac.any()) and kink_bandwidth > 0
    response = errors.choice("kink_response", a["kink_response"], KINK_RESPONSES)
    if response == "boundary":
        _check_boundary(model, driver, dirac, kink_bandwidth, a["data"])
    if response == "signed_noise":
        _check_signed_noise(model, driver, dirac, kink_bandwidth)
    boundary = response == "boundary" or (response == "auto" and _boundary_applies(model, driver, dirac,
                                                                                   kink_bandwidth, a["data"]))
    signed_noise = response == "signed_noise" or (response == "auto" and _applies(_check_signed_noise, model, driver,
                                                                                  dirac, kink_bandwidth))
    dt = errors.positive("dt", driver.default_dt(lr_max) if a["dt"] is None else a["dt"])
    if dt > t_max:
        raise errors.ParameterError(f"dt={dt!r} is not allowed: dt must be in (0, t_max={t_max}]")
    n_replicas = errors.positive_int("n_replicas", a["n_replicas"], minimum=2)
    n_paths = errors.positive_int("n_paths", driver.default_paths(kinked, t_max) if a["n_paths"] is None else a["n_paths"],
                                  minimum=n_replicas)
    stride = a["tangent_stride"]
    tangent_stride = errors.positive_int(
        "tangent_stride", driver.default_tangent_stride(kinked, t_max) if stride is None else stride)
    ridge = errors.nonnegative("ridge", a["ridge"])
    init_std = errors.init_std(a["init_std"], model.k, _config.BLOWUP_NORM)
    corrector = errors.positive_int("corrector", driver.default_corrector if a["corrector"] is None else
                                    a["corrector"], minimum=0)
    sampling = errors.choice("sampling", a["sampling"], SAMPLING)
    max_memory_gb = errors.positive("max_memory_gb", a["max_memory_gb"])
    on_divergence = errors.on_divergence(a["on_divergence"])
    check_dt = errors.choice("check_dt", a["check_dt"], (None, True, False))
    max_runtime_s = a["max_runtime_s"]
    if max_runtime_s is not None:
        max_runtime_s = errors.positive("max_runtime_s", max_runtime_s)
    seed = errors.seed_value(a["seed"])
    ss = errors.seed_sequence(seed)
    data = a["data"]
    mixture = None if data is None else _spectral.solver_mixture(data, model)
    mixture_groups = None if mixture is None else _spectral.MixtureGroups.of(data, a["groups"])
    spec = None if data is None or mixture is not None else _spectral.Groups.of(data, a["groups"])
    # the stiffest parameter-side rate is lr lam_max (lr for isotropic inputs)
    groups = spec if mixture is None else mixture_groups
    lr_top = lr_max if groups is None else lr_max * float(groups.eigenvalues.max())
    if isinstance(time_grid, grids.Stretched) and time_grid.max_ratio is None:
        max_ratio = _stretch_ratio(driver, lr_top, dt)
        # a chosen grid that cannot stretch stays uniform (the same numbers as without the map)
        time_grid = (grids.Uniform() if a["time_grid"] is None and max_ratio == 1.0
                     else dataclasses.replace(time_grid, max_ratio=max_ratio))
    # the check solves take the grid chosen here (nested grids at 2 dt and dt / 2)
    arguments["time_grid"] = time_grid
    # the same random inputs for the solves that check or extrapolate this one (a
    # Generator is drawn once; a SeedSequence is copied before it spawns)
    arguments["seed"] = seed if not isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(
        ss.entropy, spawn_key=ss.spawn_key, pool_size=ss.pool_size, n_children_spawned=ss.n_children_spawned)
    jump = float(jumps.max(initial=0.0))
    if mixture is not None and dirac.any():
        raise errors.ParameterError(
            f"model={model.name!r} is not allowed with data={data.name!r}: its gradient jumps across a kink (by "
            f"{float(jumps.max()):.3g}); the multi-pass DMFT on mixtures takes models whose gradient is "
            "continuous (e.g. logistic, smooth_hinge)")
    if dirac.any() and not kinked:
        errors.warn(
            f"dmft.solve: model {model.name!r} has a gradient that jumps by {jump:.3g} across a declared kink "
            "in r, so l'' has a Dirac part that the response kernel's pathwise tangents miss with "
            "kink_bandwidth=0; the DMFT curves are biased", errors.DiracResponseWarning, stacklevel=3)
    return _Setup(arguments, model, driver, delta, lr, t_max, times, given_times, n_time, dt, n_replicas, n_paths,
                  tangent_stride, ridge, init_std, corrector, sampling, seed, ss, a["progress"], max_memory_gb,
                  check_dt, on_divergence, kink_bandwidth, a["kink_extrapolate"], data, spec, dirac, kinked, jump,
                  max_runtime_s, schedule, lr_max, lr_top, mixture, mixture_groups, time_grid, boundary,
                  signed_noise)


def _check_boundary(model, driver, dirac, kink_bandwidth: float, data):
    """``kink_response="boundary"`` is built for GF, ``k = 1``, one kink plane of ``r`` whose
    gradient jumps, isotropic data and ``kink_bandwidth > 0`` (the density's width)."""
    where = ("kink_response='boundary' is not allowed here: it is built for dynamics='gf', k = 1, one kink "
             "in r whose gradient jumps, data=None and kink_bandwidth > 0 (kink_response='smoothed' takes "
             "the rest); got ")
    planes = int(np.count_nonzero(dirac))  # planes whose gradient jumps all involve r
    if driver.name != "gf":
        raise errors.ParameterError(where + f"dynamics={driver.name!r}")
    if model.k != 1 or planes != 1:
        raise errors.ParameterError(where + f"model={model.name!r} with k = {model.k} and {planes} kink "
                                    f"plane(s) whose gradient jumps")
    if data is not None:
        raise errors.ParameterError(where + f"data={getattr(data, 'name', data)!r}")
    if not kink_bandwidth > 0:
        raise errors.ParameterError(where + f"kink_bandwidth={kink_bandwidth!r}")
    if _sliding_kink(model, model.kink_planes()[dirac][0]):
        raise errors.ParameterError(
            f"kink_response='boundary' is not allowed for model={model.name!r}: its force pushes towards its kink "
            "from both sides at some points (a sliding kink, as an absolute loss has), where the kinked path "
            "chatters across it and no boundary term applies; kink_response='smoothed' takes it")


def _boundary_applies(model, driver, dirac, kink_bandwidth: float, data) -> bool:
    """``kink_response="auto"``: the boundary terms wherever they are built (:func:`_check_boundary`)."""
    return _applies(_check_boundary, model, driver, dirac, kink_bandwidth, data)


def _applies(check, *args) -> bool:
    """``kink_response="auto"``: whether ``check(*args)`` passes (it raises ParameterError where not)."""
    try:
        check(*args)
    except errors.ParameterError:
        return False
    return True


def _check_signed_noise(model, driver, dirac, kink_bandwidth: float):
    """``kink_response="signed_noise"`` is built for SME with smoothed kinks (``kink_bandwidth > 0``)
    across every one of which ``l'`` flips its sign (``l'(+) = -l'(-)``, as phase retrieval's and an
    absolute loss's), so that ``s(r) l'(r)`` is continuous (:func:`_sign_flips`)."""
    where = ("kink_response='signed_noise' is not allowed here: it is built for dynamics='sme' with "
             "kink_bandwidth > 0 and a gradient that flips its sign across every kink in r (l'(+) = -l'(-), as "
             "phase retrieval's; kink_response='smoothed' takes the rest); got ")
    if driver.name != "sme":
        raise errors.ParameterError(where + f"dynamics={driver.name!r}")
    if not (dirac.any() and kink_bandwidth > 0):
        raise errors.ParameterError(where + f"model={model.name!r} with kink_bandwidth={kink_bandwidth!r} and "
                                    f"{int(np.count_nonzero(dirac))} kink plane(s) whose gradient jumps")
    for plane in model.kink_planes()[dirac]:
        if not _sign_flips(model, plane):
            raise errors.ParameterError(where + f"model={model.name!r}, whose gradient does not flip its sign "
                                        f"across the kink plane {plane.tolist()}")


def _sign_flips(model, plane, n_points: int = 64, seed: int = 0) -> bool:
    """Whether ``l'(+) = -l'(-)`` across ``plane`` at ``n_points`` random points of it (labels
    from the teacher there), to round-off of the step ``1e-7`` across it."""
    for gp, gm, _ in model.gradients_across(plane, n_points, np.random.default_rng(seed)):
        if np.abs(gp + gm).max() > 1e-6 * (1.0 + np.abs(gp - gm).max()):
            return False
    return True


def _sliding_kink(model, plane, n_points: int = 64, seed: int = 0) -> bool:
    """Whether the force ``g = -l'`` points towards the kink plane ``plane`` from both sides at
    any of ``n_points`` random points of it (labels from the teacher there), beyond round-off of
    the jump: phase retrieval's repels on both sides, a ReLU unit's pushes away on one side and
    is 0 on the other; an absolute loss ``|r - y|`` attracts (a sliding mode)."""
    for gp, gm, unit in model.gradients_across(plane, n_points, np.random.default_rng(seed)):
        tol = 1e-6 * (1.0 + abs(float((gp - gm) @ unit)))
        if -float(gp @ unit) < -tol and -float(gm @ unit) > tol:
            return True
    return False


@dataclass
class _Grid:
    """The grid and memory plan: ``N`` cells of ``dt``, the output steps, the paths per
    replica, the run's scales and its resource estimates."""

    N: int
    dt: float
    every: int  # grid steps per output interval (1 with output ``times``: the step check's doubling)
    out_steps: np.ndarray
    interp: np.ndarray | None  # grid steps -> output times (quadratic), None on grid times
    interp1: np.ndarray | None  # the same, linear (two-time outputs)
    time_out: np.ndarray
    B: int
    Pb: int  # paths per replica
    k: int
    ks: int
    tau: float  # Tr K / d of anisotropic data (1: isotropic), the solve's normalisation
    c: float  # per-sample step tau lr0 / batch (at t = 0)
    half: float  # drift of half a cell (dense drivers), 0 for SGD
    n_groups: int
    split: int = 1  # sample-side replicas per replica: a mixture's classes (B above counts them)
    threads: int = 1  # parts of the replicas, each on its own thread (_solve_threads)
    parts: int = 0  # more parts than threads, in turn (_parts_in_turn); 0: one per thread
    drawn_in_parts: bool = False  # each part draws its paths' inputs (_draws_in_parts)
    mem: float = 0.0
    runtime: float = 0.0
    #: a schedule's mean of ``lr / lr0`` and of ``(lr / lr0)^2`` over each cell (N,); None: a constant rate
    rates: np.ndarray | None = None
    rates2: np.ndarray | None = None

    @property
    def P(self) -> int:
        return self.B * self.Pb

    @property
    def D(self) -> int:
        return self.ks + (self.N + 1) * self.k


def _plan(run: _Setup) -> _Grid:
    """The grid of the output times and ``dt``, and its memory and run time, refused above
    ``max_memory_gb`` / ``max_runtime_s`` (ParameterError naming the argument that drives it)."""
    t_max, dt, clock = run.t_max, run.dt, run.time_grid
    u_max = float(clock.u(t_max))
    if run.given_times or not run.uniform:
        every = 2  # the step check doubles the step at the same output times
        N = max(1, math.ceil(u_max / dt - 1e-9))
        dt = u_max / N
        jumps = clock.u(_schedules.jump_times(run.schedule, t_max))
        out_steps, interp, interp1 = _interpolation(clock.u(run.times), dt, N, jumps)
        time_out = run.times
    else:
        every = max(1, math.ceil(t_max / dt / (run.n_time - 1) - 1e-9))
        N = every * (run.n_time - 1)
        dt = t_max / N
        out_steps, interp, interp1 = np.arange(run.n_time) * every, None, None
        time_out = out_steps * dt
    groups = run.spec if run.mixture is None else run.mixture_groups
    lr_top = run.lr_top
    # Huber-on-tanh SGD shows no dt drift up to lr dt = 0.16 (docs/dmft_theory.md)
    errors.warn_unresolved(f"dmft.solve(dynamics={run.dynamics!r})", lr_top, dt, 0.2, stacklevel=4)
    if not run.uniform:  # the stretched grid's largest step
        errors.warn_unresolved(f"dmft.solve(dynamics={run.dynamics!r}, time_grid={clock!r})", lr_top,
                               dt * float(clock.speed(u_max)), run.driver.stretch_lr_step, stacklevel=4)
    # a mixture's sample side runs one block of paths per class and replica (_MixtureParamSide)
    split = 1 if run.mixture is None else run.mixture.n_classes
    B = run.n_replicas * split
    Pb = -(-run.n_paths // B)
    Pb = -(-Pb // run.tangent_stride) * run.tangent_stride
    # anisotropic data: the solve runs in the normalisation Tr K/d = 1 (docs/dmft_anisotropic.md, section 5)
    tau = 1.0 if groups is None else groups.trace_ratio
    half = run.driver.half_cell(dt)
    # a mixture's paths carry their one-hot class in place of the teacher field (docs/dmft_mixture.md)
    ks = run.model.k_star if run.mixture is None else run.mixture.n_classes
    grid = _Grid(N, dt, every, out_steps, interp, interp1, time_out, B, Pb, run.model.k, ks, tau,
                 tau * run.lr / run.batch, half, 0 if groups is None else len(groups.weights), split=split,
                 drawn_in_parts=_draws_in_parts(run))
    _check_resources(run, grid)  # before the O(N) rates below
    if not isinstance(run.schedule, _schedules.Constant) or not run.uniform:
        # a time grid's tau' multiplies the rate of drift and noise variance alike (dmft.grids)
        edges = np.arange(N + 1) * dt
        grid.rates = _schedules.cell_means(run.schedule, edges, time_grid=clock) / run.lr
        grid.rates2 = _schedules.cell_means(run.schedule, edges, power=2, time_grid=clock) / run.lr**2
    return grid


def _has_companion(run: _Setup) -> bool:
    """Whether a solve at twice the kink width runs beside this one (the width extrapolation)."""
    return run.kinked and run.kink_extrapolate and not run.boundary


def _n_kink_planes(run: _Setup) -> int:
    """The kink planes whose Dirac parts the solve smooths or takes boundary terms for."""
    return int(np.count_nonzero(run.dirac & run.kinked))


def _draws_in_parts(run: _Setup) -> bool:
    """Whether each part of the solve draws its own paths' inputs when it starts and frees them
    when it ends (:func:`_work`), so that parts in turn (:func:`_parts_in_turn`) hold only theirs:
    unless the inputs of all paths serve another solve (a kink companion beside this one, the step
    check after it) or come from one (this solve is a companion or a step check's solve), or a
    mixture draws its paths' classes for all of them. The numbers are the same either way
    (:func:`_random_inputs`)."""
    handed = getattr(_SHARED, "rnd", None) is not None or getattr(_COMMON, "base", None) is not None
    checked = run.check_dt is not False and bool(run.driver.step_order)
    return not (handed or checked or _has_companion(run) or run.mixture is not None)


def _check_resources(run: _Setup, grid: _Grid):
    """Fill ``grid.mem`` and ``grid.runtime``; refuse a solve above the limits."""
    driver, N, P, dt = run.driver, grid.N, grid.P, grid.dt
    t_max, requested_dt = run.t_max, run.dt

    def estimate(at_once=1.0):
        return _memory_estimate(driver, grid.B, grid.Pb, N, grid.k, grid.ks, run.model.noise_dim,
                                len(grid.out_steps), run.tangent_stride, t_max, run.sampling, grid.n_groups, at_once,
                                run.boundary, run.signed_noise, grid.drawn_in_parts)

    mem, culprit = estimate()
    if mem > run.max_memory_gb * 2**30:
        grid.parts, mem = _parts_in_turn(grid, _solve_threads(run, None), run.max_memory_gb * 2**30, estimate)
    if mem > run.max_memory_gb * 2**30:
        what = {"grid": f"n_time={run.n_time!r}" if grid.every == 1 and run.n_time - 1 > t_max / requested_dt
                else f"t_max={t_max!r} with dt={requested_dt!r}", "paths": f"n_paths={run.n_paths!r}",
                "events": f"batch={run.batch!r}"}[culprit]
        raise errors.ParameterError(
            f"{what} is not allowed here: the solve would need {mem / 2**30:.3g} GB"
            + (f" with its replicas in {grid.parts} parts in turn" if grid.parts else "") + f" > max_memory_gb="
            f"{run.max_memory_gb:g} (N = {N} grid steps of dt = {dt:.3g}, {P} paths"
            + ("" if driver.dense else f", about {run.batch * t_max:.3g} SGD events per path") + "); "
            + {"grid": f"raise dt or lower t_max or n_time (memory grows like N^2){_stretch_hint(run)}",
               "paths": "lower n_paths", "events": "lower batch or t_max"}[culprit]
            + ", or raise max_memory_gb")
    runtime = _runtime_estimate(driver, grid.B, P, N, grid.k, run.tangent_stride, t_max, grid.n_groups)
    if driver.step_order and run.check_dt is not False:  # the step check's solve with twice the step
        runtime += _runtime_estimate(driver, grid.B, P, max(1, N // 2), grid.k, run.tangent_stride, t_max,
                                     grid.n_groups)
    if run.max_runtime_s is not None and runtime > run.max_runtime_s:
        raise errors.ParameterError(
            f"t_max={t_max!r} with dt={requested_dt!r} and n_paths={run.n_paths!r} is not allowed here: the solve "
            f"would take about {runtime:.3g} s > max_runtime_s={run.max_runtime_s:g} (N = {N} grid steps, {P} "
            f"paths); lower t_max or n_paths, raise dt, or raise max_runtime_s (None: no limit){_stretch_hint(run)}")
    errors.warn_long_run("dmft.solve", runtime, hint=_stretch_hint(run), stacklevel=5)
    grid.mem, grid.runtime = mem, runtime


def _parts_in_turn(grid: _Grid, threads: int, limit: float, estimate):
    """The fewest parts of the replicas, ``threads`` of them at a time, whose sample sides fit
    ``limit`` bytes beside what is allocated for all paths (``estimate(at_once)``:
    :func:`_memory_estimate` with that share of the replicas' sample sides at once), and the
    memory then; the most parts (one replica each) if none fits, 0 if there are no more replicas
    than threads. Parts in turn give the numbers of parts side by side (their replicas are
    independent until the outputs)."""
    units = grid.B // grid.split
    for parts in range(threads + 1, units + 1):
        mem = estimate(min(threads, parts) * -(-units // parts) / units)[0]
        if mem <= limit or parts == units:
            return parts, mem
    return 0, estimate()[0]


def _stretch_ratio(driver: _Driver, lr_top: float, dt: float) -> float:
    """The default ``max_ratio`` of a stretched grid: the driver's largest accurate step
    ``lr_top max_step`` (``driver.stretch_lr_step``) in units of ``dt``, at least 1."""
    return max(1.0, driver.stretch_lr_step / (lr_top * dt))


def _stretch_hint(run: _Setup) -> str:
    """``'; ... time_grid=dmft.grids.Stretched() ...'`` for a uniform grid past the stretched
    grid's fine part that could stretch (docs/dmft_theory.md, "Stretched grids"), else ``''``."""
    if (not run.uniform or run.t_max <= 2 * grids.Stretched().t_fine
            or _stretch_ratio(run.driver, run.lr_top, run.dt) == 1.0):
        return ""
    return "; time_grid=dmft.grids.Stretched() needs fewer grid points at long horizons"


@dataclass
class _Random:
    """The random inputs of a solve (seeded): ``Z`` (P, D) the standard normals of the teacher
    and the field innovations, ``eps`` (P, nd) the label noise, ``xi`` (P, N nxi) the driver's
    normals per cell, ``zeta`` (P, N, n_mid) the SME's normals of each cell's first half, the
    events ``counts`` (P,), ``ev_cell``, ``ev_lam``, ``ev_dz`` (P, J) and SGD's normals of the
    field's bridge at each event ``ev_zeta`` (P, J, k; dense drivers: (P, 0, k)) (layout:
    :mod:`dmft.multipass._kernels_solve`; with a schedule ``ev_dz`` carries the event's rate
    in units of ``lr0``, :meth:`Poisson.scheduled`, :meth:`_Dense.scheduled`)."""

    Z: np.ndarray
    eps: np.ndarray
    xi: np.ndarray
    zeta: np.ndarray
    counts: np.ndarray
    ev_cell: np.ndarray
    ev_lam: np.ndarray
    ev_dz: np.ndarray
    ev_zeta: np.ndarray


def _random_inputs(run: _Setup, grid: _Grid, seeds, threads: int, replicas: slice | None = None) -> _Random:
    """The inputs of the paths of ``replicas`` (default all): the Gaussian ones (:func:`_normals`
    on ``threads`` threads, or a step check's common random numbers) and the driver's events
    (:func:`_events`), from the two children ``seeds`` of the seed; on a kink companion's thread,
    those of the solve it serves (read only by either). A path's inputs are the same whichever
    ``replicas`` are drawn with it: the parts of a solve that draw their own
    (:func:`_draws_in_parts`) get the numbers of one draw for all."""
    shared = getattr(_SHARED, "rnd", None)
    if shared is not None:
        _SHARED.rnd = None  # this solve's inputs only, not those of the solves it starts
        return shared
    driver, N, k = run.driver, grid.N, grid.k
    replicas = range(grid.B)[replicas if replicas is not None else slice(None)]
    paths = range(replicas.start * grid.Pb, replicas.stop * grid.Pb)
    P = len(paths)
    s_z, s_ev = seeds
    nxi, n_mid = driver.normals_per_cell, driver.midpoint_normals(k)

    def events(xi):
        return _events(run, grid, s_ev, paths, xi)

    # SGD's events do not read the normals: drawn on a thread beside them (their own stream)
    beside = _Beside(events, None) if not driver.dense and threads > 1 else None
    common = _common_inputs(N, s_z) if len(replicas) == grid.B else None
    Z, eps, xi = common or _normals(s_z, run.sampling, grid.B, grid.Pb, grid.ks, run.model.noise_dim, k, N,
                                    nxi + n_mid, run.tangent_stride, threads, slice(replicas.start, replicas.stop))
    cell_normals = xi.reshape(P, N, nxi + n_mid)
    zeta = np.ascontiguousarray(cell_normals[:, :, nxi:])
    counts, ev_cell, ev_lam, ev_dz, ev_zeta = (
        beside.result() if beside is not None else events(cell_normals[:, :, :nxi].reshape(P, N * nxi)))
    if grid.rates is not None:
        ev_dz = driver.scheduled(ev_cell, ev_lam, ev_dz, grid,
                                 lambda u: run.schedule.rates(run.time_grid.t(u)) / run.lr)
    return _Random(Z, eps, xi, zeta, counts, ev_cell, ev_lam, ev_dz, ev_zeta)


def _events(run: _Setup, grid: _Grid, ss, paths: range, xi):
    """``(counts, ev_cell, ev_lam, ev_dz, ev_zeta)`` of ``paths`` (:class:`_Random`): a dense
    driver's from the paths' normals ``xi``; SGD's in blocks of :data:`STREAM_BLOCK` paths, each
    from its own child of ``ss`` (so a part of the solve draws only its own), padded with
    empty events to the most of any of ``paths``."""
    driver, N, k = run.driver, grid.N, grid.k
    if driver.dense:
        counts, ev_cell, ev_lam, ev_dz = driver.events(None, len(paths), N, grid.dt, xi, run.time_grid)
        return counts, ev_cell, ev_lam, ev_dz, driver.event_normals(None, ev_cell.shape, k)
    blocks = []
    for rng, n, rows, _ in _stream_blocks(ss, paths, grid.P):
        counts, *events = driver.events(rng, n, N, grid.dt, None, run.time_grid)
        events.append(driver.event_normals(rng, events[0].shape, k))
        blocks.append((counts[rows], *(x[rows] for x in events)))
    J = max(block[1].shape[1] for block in blocks)

    def padded(x):  # past a path's count its events are empty (cell 0, lam 0, dz 0) and never read
        return np.pad(x, [(0, 0), (0, J - x.shape[1])] + [(0, 0)] * (x.ndim - 2))

    return (np.concatenate([block[0] for block in blocks]),
            *(np.concatenate([padded(block[j]) for block in blocks]) for j in range(1, 5)))


@dataclass
class _State:
    """The solve's state on the grid (block layout ``[n k + a, m k + e]``, B replicas): the
    kernels ``C, R, A`` and ``S`` (lower block triangle only, the force covariance), the
    teacher rows ``m, nu, Phi`` and the parameter side's sums ``asum, bvec`` (filled by
    ``par``), the joint factors ``L`` (B, D, D), the last two rows of ``G`` and ``G^+``
    (``Gprev, Gpprev`` and ``Gprev2, Gpprev2``, (B, N+1, k, k)), the last cell's increments of
    ``S`` and of ``F F^T`` (the predictor's extrapolation), and the diagnostics."""

    C: np.ndarray
    R: np.ndarray
    A: np.ndarray
    S: np.ndarray
    m: np.ndarray
    nu: np.ndarray
    Phi: np.ndarray
    asum: np.ndarray
    bvec: np.ndarray
    L: np.ndarray
    Gprev: np.ndarray
    Gpprev: np.ndarray
    Gprev2: np.ndarray
    Gpprev2: np.ndarray
    dW_last: np.ndarray
    dFF_last: np.ndarray
    rel_pivots: np.ndarray
    par: object = None  # the parameter side (of a part's replicas, or _JoinedParams of all parts)
    min_pivot: float = np.inf
    n_zero_pivots: int = 0
    residual: float = 0.0
    changes: np.ndarray | None = None  # per step: the last corrector sweep's change of C's row and its size

    #: the per-replica arrays above, in the order of the constructor
    ARRAYS = ("C", "R", "A", "S", "m", "nu", "Phi", "asum", "bvec", "L", "Gprev", "Gpprev", "Gprev2", "Gpprev2",
              "dW_last", "dFF_last", "rel_pivots")

    @classmethod
    def allocate(cls, grid: _Grid, rho):
        """Zero kernels of every replica and the teacher rows of every factor; the parts of the
        solve work on views of them (:meth:`part`)."""
        B, N, k, ks = grid.B, grid.N, grid.k, grid.ks
        NK, D = (N + 1) * k, grid.D
        kernels = [_grid_zeros((B, NK, NK)) for _ in range(4)]
        rows = [np.zeros((B, N + 1, k, ks)) for _ in range(3)]
        asum, bvec = np.zeros((B, N + 1, k, k)), np.zeros((B, N + 1, k, ks))
        Gprev = np.zeros((B, N + 1, k, k))
        Gpprev = np.zeros((B, N + 1, k, k))
        state = cls(*kernels, *rows, asum, bvec, _grid_zeros((B, D, D)), Gprev, Gpprev, Gprev.copy(), Gpprev.copy(),
                    np.zeros((B, N + 1, k, k)), np.zeros((B, k, k)), np.empty((B, 2 * k)))
        for b in range(B):
            _k.chol_append(state.L[b], rho, 0, 0.0, np.empty(ks))  # rho is definite (_spectral.Groups.of checks rho_K)
        return state

    def part(self, run: _Setup, grid: _Grid, replicas: slice, rho, q0) -> _State:
        """The state of the sample-side ``replicas`` (``grid``: their part of the solve) as views of
        this one's arrays (a part's thread writes only its own replicas' rows), with its own
        parameter side."""
        state = _State(*(getattr(self, name)[replicas] for name in _State.ARRAYS))
        state.changes = np.zeros((grid.N + 1, 2))
        k, ks = grid.k, grid.ks
        C, R, A, S = state.C, state.R, state.A, state.S
        m, nu, Phi = state.m, state.nu, state.Phi
        if run.mixture is not None:  # lam_g^(c) / tau and gram_g / tau are normalised, M is invariant
            mg, tau = run.mixture_groups, grid.tau
            groups = _spectral.MixtureGroups(mg.weights, mg.eigenvalues / tau, mg.gram / tau, mg.names, mg.mode)
            state.par = _MixtureParamSide(k, grid.dt, run.delta, run.lr, run.ridge, q0, groups, run.mixture.probs, C,
                                          R, S, Phi, grid.rates)
        elif run.spec is None:
            state.par = _ParamSide(k, ks, grid.dt, run.delta, run.lr, run.ridge, q0, rho, C, R, A, S, m, nu, Phi,
                                   state.asum, state.bvec, grid.rates)
        else:  # lr ridge is invariant under the normalisation; lam_g / tau and tau rho_g are normalised
            spec, tau = run.spec, grid.tau
            state.par = _SpectralParamSide(k, ks, grid.dt, run.delta, run.lr, run.ridge, q0, spec.weights,
                                           spec.eigenvalues / tau, tau * spec.teacher_power, C, R, S, m, nu, Phi,
                                           grid.rates)
        return state

    def chol_rows(self, n, final, ahead=False):
        """Rows of grid point ``n`` of every replica's factor ``L``; with ``ahead`` also those
        of ``n + 1`` (from the predicted kernel row) in the same pass over ``L``, which is
        memory-bound. The diagnostics count the pivots of final rows only."""
        k, ks = self.m.shape[2], self.m.shape[3]
        (_k.chol_rows_parallel if _config.PARALLEL else _k.chol_rows)(
            self.L, self.m, self.C, n, 2 if ahead else 1, k, ks, _config.CHOL_JITTER, self.rel_pivots)
        if final:
            self.min_pivot = min(self.min_pivot, float(self.rel_pivots[:, :k].min()))
            rows = ks + n * k + np.arange(k)
            self.n_zero_pivots += int(np.count_nonzero(self.L[:, rows, rows] == 0.0))


@dataclass
class _Teacher:
    """Per path: the teacher's field ``wstar`` (P, ks), the labels ``y`` (P, label_dim) and the
    kink planes ``kinks = (a, off, width, x, xp)`` (:func:`_kink_planes`)."""

    wstar: np.ndarray
    y: np.ndarray
    kinks: tuple


def _classes(run: _Setup, grid: _Grid) -> _Teacher:
    """A mixture's paths: sample-side replica ``b C + c`` holds class ``c`` of replica ``b``
    (:class:`_MixtureParamSide`); ``wstar`` a path's one-hot class (so the sample side's ``Phi =
    E[F w*^T]`` has ``E[F | c]`` in column ``c``), ``y`` the class label; no kink planes
    (:func:`_checked` refuses kinked models on mixtures)."""
    mix, P, k = run.mixture, grid.P, grid.k
    classes = (np.arange(P) // grid.Pb) % mix.n_classes
    wstar = np.ascontiguousarray(np.eye(mix.n_classes)[classes])
    kinks = (np.zeros((0, k)), np.zeros((P, 0)), np.zeros((grid.B, 0)), np.zeros((P, 0)), np.zeros((P, 0)))
    return _Teacher(wstar, np.ascontiguousarray(mix.labels[classes]), kinks)


def _teacher(run: _Setup, grid: _Grid, rnd: _Random, state: _State) -> _Teacher:
    """The teacher's fields from the factors' teacher rows, the labels (a DivergenceError
    ``'data'`` when not finite) and the kink planes of the smoothed Dirac parts; a mixture's
    classes (:func:`_classes`)."""
    model = run.model
    if run.mixture is not None:
        return _classes(run, grid)
    wstar = np.ascontiguousarray(rnd.Z[:, :grid.ks] @ state.L[0, :grid.ks, :grid.ks].T)
    y = np.zeros((grid.P, model.label_dim))
    specialise(_k.labels, teacher=model.teacher)(model.param_array, wstar, rnd.eps, y)
    kinks = _kink_planes(model, run.dirac & run.kinked, wstar, rnd.eps, grid.B)
    if not np.isfinite(y).all():
        bad = int(np.argmin(np.isfinite(y).all(axis=1)))
        raise errors.DivergenceError(
            f"dmft.solve: the teacher of model {model.name!r} returned the label {y[bad].tolist()} at "
            f"r_star={wstar[bad].tolist()}, eps={rnd.eps[bad].tolist()}", 0.0, cause="data")
    return _Teacher(wstar, y, kinks)


# ---------------------------------------------------------------- sample side (per driver)
class _SampleSide:
    """The sample side of a driver: the paths' workspace, the per-cell sums of every replica
    (``dGm, dGp`` the increments of the row of ``G`` on the hat functions, ``dS``, ``dFF``,
    ``dPhi``, ``QV``; :func:`dmft.multipass._kernels_solve.sample_cell_poisson`) and the
    cell's kernel call."""

    template = None  # the driver's sample-side kernel in dmft.multipass._kernels_solve

    def __init__(self, run: _Setup, grid: _Grid, rnd: _Random, teacher: _Teacher):
        B, N, k, ks = grid.B, grid.N, grid.k, grid.ks
        self.run, self.grid, self.rnd, self.teacher = run, grid, rnd, teacher
        self.params = run.model.param_array
        self.g = np.zeros((grid.P, rnd.ev_cell.shape[1], k))
        self.dGm = np.zeros((B, N + 1, k, k))
        self.dGp = np.zeros((B, N + 1, k, k))
        self.dS = np.zeros((B, N + 1, k, k))
        self.dFF = np.zeros((B, k, k))
        self.dPhi = np.zeros((B, k, ks))
        self.QV = np.zeros((B, k, k))
        self.kernel = specialise(type(self).template, grad=run.model.grad, hess=run.model.hess, K=k,
                                 GHOSTS=int(run.boundary), SIGNED=int(run.signed_noise), parallel=_config.PARALLEL)
        self.sums = (self.dGm, self.dGp, self.dS, self.dFF, self.dPhi, self.QV)
        self.events = (rnd.ev_cell, rnd.ev_lam, rnd.ev_dz)
        self.labels = (teacher.y, teacher.wstar)
        # the field's Brownian bridge inside a cell, from the cell's quadratic variation QV
        self.QV_last, self.bridge = np.zeros((B, k, k)), np.zeros((B, k, k))

    def clear(self):
        """Zero the cell's sums before a sweep."""
        for x in (self.dGm, self.dGp, self.dS, self.dFF, self.dPhi):
            x[:] = 0.0

    def commit(self):
        """After a step: the cell's quadratic variation, for the next cell's first sweep."""
        self.QV_last[:] = self.QV

    def _update_bridge(self, it, at):
        """The bridge's square root at ``at = lam (1 - lam)`` from the last sweep's quadratic
        variation (the first sweep: the last cell's), and ``QV`` zeroed for this sweep's."""
        self.bridge[:] = _bridge_factor(self.run.delta, self.QV if it else self.QV_last, at=at)
        self.QV[:] = 0.0


class _EventSide(_SampleSide):
    """Poisson (SGD): every path's events at their exact times, its tangents forward in the
    packed triangle ``psi``; a cell's active paths from :func:`_cell_lists`. The field between
    grid points has its Brownian bridge, of the cell's quadratic variation ``QV`` (the last
    sweep's; the first sweep: the last cell's), as the dense drivers' midpoints have."""

    template = _k.sample_cell_poisson

    def __init__(self, run, grid, rnd, teacher):
        super().__init__(run, grid, rnd, teacher)
        J, k = rnd.ev_cell.shape[1], grid.k
        self.gp = np.zeros((grid.P, J, k, k))
        # each tangent path's packed triangle for its own events (the most events of any path
        # would allocate about 2.5 times as much at t_max = 100), in single precision: its
        # rounding is independent from path to path (tests/test_dmft_solve.py, the bound)
        J_path = rnd.counts[::run.tangent_stride][:grid.P // run.tangent_stride]
        self.psi_at = np.r_[0, np.cumsum(J_path * (J_path + 1) // 2 * k * k)].astype(np.int64)
        self.psi = np.zeros(int(self.psi_at[-1]), np.float32)
        self.cells = _cell_lists(rnd.counts, rnd.ev_cell, grid.N)
        self.path_state = (self.g, self.gp, self.psi, self.psi_at)
        self.bridges = (rnd.ev_zeta, self.bridge)

    def cell(self, n):
        """``(active, lo, hi)``: the paths with events in cell ``n`` and their event ranges."""
        return self.cells[n]

    def tangents(self, it, sweeps):
        """Sweeps before the last keep the predicted G row, as the dense drivers' do
        (docs/dmft_theory.md, "Corrector sweeps")."""
        return it == sweeps

    def prepare(self, n, it, R):
        """The bridge's square root for the events' own positions (scaled by ``b(lam)`` in the
        kernel); every path reads its own events' responses."""
        self._update_bridge(it, at=1.0)

    def sample(self, n, tangents, active, lo, hi, Wold, Wnew, R):
        cell = (n, self.grid.c, self.grid.Pb, self.run.tangent_stride, tangents)
        self.kernel(self.params, cell, (active, lo, hi), self.events, (Wold, Wnew), R, self.labels, self.path_state,
                    self.sums, self.teacher.kinks, self.bridges)

    def grads_finite(self, n) -> bool:
        """The gradients that step ``n`` wrote (the events of its active paths in the cell) are finite."""
        return _k.events_finite(self.g, *self.cells[n])

    def forces(self, paths):
        """The force ``g_i dz_i`` of every event of ``paths`` (train loss)."""
        return self.g[paths] * self.rnd.ev_dz[paths, :, None]


class _DenseSide(_SampleSide):
    """SME and GF: one event per cell at its midpoint, shared by all paths, so the responses
    between events ``Rmid`` (B, N, N, k, k) are computed once per replica and the tangents of
    a row backwards for a replica's tangent paths at once (``dense_tangents``), with those
    paths as the last axis: ``dzT``, ``hzT`` (B, N, Mt) and ``gpT`` (B, N, k, k, Mt), in single
    precision (``chunked_tangents``)."""

    template = _k.sample_cell_dense

    def __init__(self, run, grid, rnd, teacher):
        super().__init__(run, grid, rnd, teacher)
        B, N, k, Pb, stride = grid.B, grid.N, grid.k, grid.Pb, run.tangent_stride
        P = grid.P
        self.dz_mean, self.dz_var = run.driver.dz_moments(grid.dt)
        self.all_paths = np.arange(P, dtype=np.int64)
        self.Rmid = np.zeros((B, N, N, k, k))  # R(s_j, s_l), shared event times
        Mt = Pb // stride
        # single precision, as the tangents' recursion (chunked_tangents) takes them
        self.dzT = np.ascontiguousarray(rnd.ev_dz.reshape(B, Pb, -1)[:, ::stride].transpose(0, 2, 1)[:, :, :Mt],
                                        dtype=np.float32)
        self.gpT = np.zeros((B, N, k, k, Mt), np.float32)
        self.gp0T = np.zeros((B, k, k, Mt), np.float32)
        self.fev = np.zeros((P, N, k))
        self.n_mid = run.driver.midpoint_normals(k)
        # SME: the noise of each cell's first half at its event (docs/dmft_theory.md, "Discretisation")
        c, half = grid.c, grid.half
        self.own, self.damp = (c * math.sqrt(self.dz_var / 2), c * half) if self.n_mid else (0.0, 0.0)
        self.mid = (rnd.zeta, self.bridge, self.own, self.damp)
        # the coefficient of g_{j-1} in r(s_j-) on the tangent paths
        # (a schedule: the cell's half-cell drift at its mean rate u1, its noise at the root mean square u2)
        u1, u2 = (np.ones((N, 1)),) * 2 if grid.rates is None else (grid.rates[:, None], np.sqrt(grid.rates2)[:, None])
        # (a signed noise: dzT and hzT keep the noise parts, the drift parts dzd, hzd go by row)
        signed = run.signed_noise
        hzT = np.zeros((B, N, Mt)) if signed else np.broadcast_to(half * u1, (B, N, Mt)).copy()
        if self.n_mid:
            hzT += (self.own * u2) * rnd.zeta[:, :, 0].reshape(B, Pb, N)[:, ::stride].transpose(0, 2, 1)[:, :, :Mt]
        self.hzT = hzT.astype(np.float32)
        dzd, hzd = (self.dz_mean * u1[:, 0], half * u1[:, 0]) if signed else (np.zeros(0), np.zeros(0))
        if signed:
            self.dzT -= dzd[:, None].astype(np.float32)
        self.gs = np.zeros((P, N, k) if signed else (0, 0, k))  # the noise's force s(r) g(r)
        self.path_state = (self.g, self.fev, self.gs)
        self.ghosts = _ghosts(P, B, Mt, N, k) if run.boundary else _ghosts(0, B, 0, 0, k)
        seeds = (B, N, k, k, Mt) if run.boundary else (B, 0, k, k, 0)
        noise = (B, N, k, k, Mt) if signed else (B, 0, k, k, 0)
        self.tangent_paths = (self.dzT, self.hzT, self.gpT, self.gp0T, np.zeros(seeds, np.float32),
                              np.zeros((B, k, k, seeds[-1]), np.float32),
                              (dzd, hzd, np.zeros(noise, np.float32), np.zeros((B, k, k, noise[-1]), np.float32)))

    def cell(self, n):
        lo = np.full(self.grid.P, n - 1, dtype=np.int64)
        return self.all_paths, lo, lo + 1

    def tangents(self, it, sweeps):
        """Sweeps before the last keep the predicted G row instead of the tangents' (O(N^3)
        per path; docs/dmft_theory.md, "Corrector sweeps")."""
        return it == sweeps

    def prepare(self, n, it, R):
        """The bridge from the last sweep's (first sweep: the last cell's) quadratic variation,
        and the responses between the events (the same times for all paths) once per replica."""
        if self.n_mid:  # at the midpoint, lam (1 - lam) = 1/4
            self._update_bridge(it, at=0.25)
        ev_cell, ev_lam = self.rnd.ev_cell, self.rnd.ev_lam
        _k.shared_response(R, n, ev_lam[0, n - 1], ev_cell[0, : n - 1], ev_lam[0, : n - 1],
                           self.Rmid[:, n - 1, : n - 1])

    def sample(self, n, tangents, active, lo, hi, Wold, Wnew, R):
        grid = self.grid
        cell, mid = (n, grid.c, grid.half, self.dz_mean, self.dz_var, grid.Pb, self.run.tangent_stride), self.mid
        if grid.rates is not None:
            # a schedule: the cell's drift (half cell, dz mean, self-damping) at its mean rate u1,
            # its noise (dz variance, the half cell's own noise) at the root mean square u2
            u1, u2sq = grid.rates[n - 1], grid.rates2[n - 1]
            cell = (n, grid.c, grid.half * u1, self.dz_mean * u1, self.dz_var * u2sq, grid.Pb, self.run.tangent_stride)
            mid = (mid[0], mid[1], self.own * math.sqrt(u2sq), self.damp * u1)
        self.kernel(self.params, cell, (active, lo, hi), self.events, (Wold, Wnew), R, self.Rmid, self.labels,
                    self.path_state, self.tangent_paths, self.sums, self.teacher.kinks, mid,
                    max(32, _config.TANGENT_CHUNK_PATHS // grid.k) if tangents else 0, self.ghosts)

    def grads_finite(self, n) -> bool:
        """The gradients of step ``n``'s event (cell ``n - 1``, every path) are finite."""
        return bool(np.isfinite(self.g[:, n - 1]).all())

    def forces(self, paths):
        return self.fev[paths]


# ---------------------------------------------------------------- predict and correct
def _predict(n: int, state: _State):
    """The predictor of row ``n``: the parameter side with linearly extrapolated sample-side
    inputs (G row, ``F -> 2 F_{n-1} - F_{n-2}``, Phi), so the predicted kernel row is
    ``A Sigma A^T`` with a PSD ``Sigma`` and stays consistent with the earlier rows. Returns
    the predicted rows ``(Grow, Gprow)`` of ``G`` and ``G^+`` and the increment ``Grow - G_{n-1}``
    passed to the parameter side (None: computed there)."""
    S, Phi = state.S, state.Phi
    B, _, k, _ = state.Gprev.shape
    nk, n1k = n * k, (n + 1) * k
    if n >= 2:
        Grow, Gprow, dGpred, dWp = _extrapolated(n, state.Gprev, state.Gpprev, state.Gprev2, state.Gpprev2,
                                                 state.dW_last[:, : n - 1], state.dFF_last, S, Phi)
    else:
        Grow, Gprow = state.Gprev.copy(), state.Gpprev.copy()
        dGpred = None
        dWp = np.zeros((B, n, k, k))
        S[:, nk:n1k, :nk] = S[:, nk - k:nk, :nk]
        S[:, nk:n1k, nk:n1k] = S[:, nk - k:nk, nk - k:nk]
        Phi[:, n] = Phi[:, n - 1]
    state.par.row(n, Grow, Gprow, state.Gprev, state.Gpprev, dWp, dGpred)
    return Grow, Gprow, dGpred


def _extrapolated(n: int, G1, Gp1, G2, Gp2, dW1, dFF1, S, Phi):
    """The predictor's inputs of row ``n >= 2`` from the final rows ``n - 1`` (``G1``, ``Gp1`` the
    rows of ``G``, ``G^+``; ``dW1`` (B, n-1, k, k) and ``dFF1`` the cell's increments of ``S``) and
    ``n - 2`` (``G2``, ``Gp2``): writes row ``n`` of ``S`` and ``Phi`` and returns ``(Grow, Gprow,
    dGpred, dWp)``, the rows of ``G`` and ``G^+``, the increment ``Grow - G1`` and the increments of
    ``S`` (:func:`_predict`)."""
    B, _, k, _ = G1.shape
    nk, n1k = n * k, (n + 1) * k
    # the increment is passed as is: bit-equal to the last row's, so the
    # parameter side reuses that row's products (see _ParamSide.row)
    dGpred = G1[:, :n] - G2[:, :n]
    Grow = G1.copy()
    Grow[:, :n] += dGpred
    Gprow = 2 * Gp1 - Gp2
    # F_n -> F_{n-1} + dF_{n-1}: the last step's increments again (sparse dW)
    dWp = np.zeros((B, n, k, k))
    dWp[:, : n - 1] = dW1
    dWp[:, n - 1] += dFF1
    S[:, nk:n1k, :nk] = S[:, nk - k:nk, :nk] + _flat(np.cumsum(dWp, axis=1))
    s11 = S[:, nk - k:nk, nk - k:nk]
    s22 = S[:, nk - 2 * k:nk - k, nk - 2 * k:nk - k]
    s12 = S[:, nk - k:nk, nk - 2 * k:nk - k]
    S[:, nk:n1k, nk:n1k] = 4 * s11 + s22 - 2 * s12 - 2 * np.swapaxes(s12, -1, -2)
    Phi[:, n] = 2 * Phi[:, n - 1] - Phi[:, n - 2]
    return Grow, Gprow, dGpred, dWp


def _correct(n: int, state: _State, side: _SampleSide, Grow, Gprow, dG=None, ahead=False):
    """A corrector sweep's row ``n``: ``S`` and ``Phi`` from the cell's sums, then the
    parameter side with the row ``Grow`` of ``G`` (sampled, or the predicted one and its
    increment ``dG``). ``ahead`` (the last sweep, for a parameter side that ``looks_ahead``):
    the predictor's inputs of row ``n + 1`` too (:func:`_extrapolated`, the numbers
    :func:`_predict` will compute), so that the side computes both rows in one pass."""
    S, k = state.S, state.Gprev.shape[2]
    nk, n1k = n * k, (n + 1) * k
    dW = side.dS[:, :n]
    dScum = np.cumsum(dW, axis=1)
    S[:, nk:n1k, :nk] = S[:, nk - k:nk, :nk] + _flat(dScum)
    d1 = dScum[:, n - 1]
    S[:, nk:n1k, nk:n1k] = S[:, nk - k:nk, nk - k:nk] + d1 + np.swapaxes(d1, -1, -2) + side.dFF
    state.Phi[:, n] = state.Phi[:, n - 1] + side.dPhi
    if ahead:
        G1, Gp1, _, _ = _extrapolated(n + 1, Grow, Gprow, state.Gprev, state.Gpprev, dW, side.dFF, S, state.Phi)
        state.par.row(n, Grow, Gprow, state.Gprev, state.Gpprev, dW, dG, ahead=(G1, Gp1))
    else:
        state.par.row(n, Grow, Gprow, state.Gprev, state.Gpprev, dW, dG)


def _fields(n: int, it: int, run: _Setup, grid: _Grid, state: _State, side: _SampleSide, paths, Wold, Wnew):
    """The factor rows a sweep needs and the fields of the cell's active ``paths`` at its ends:
    the first sweep finishes the rows of ``n - 1`` (with the predicted ones of ``n`` in the same
    pass) and fills ``Wold``; every sweep fills ``Wnew`` from its rows of ``n``."""
    L, Z, ks, k, Pb = state.L, side.rnd.Z, grid.ks, grid.k, grid.Pb
    kinks = side.teacher.kinks
    if it == 0:  # the final rows of n - 1 and the first of n: one pass over L
        state.chol_rows(n - 1, final=True, ahead=True)
        if n == 1 and len(kinks[0]):  # the distance to each kink at t = 0
            W0 = np.zeros((grid.P, k))
            _k.grid_field(L, Z, ks, k, Pb, np.arange(grid.P, dtype=np.int64), W0)
            kinks[3][:] = W0 @ kinks[0].T - kinks[1]
        _kink_widths(kinks, run.kink_bandwidth, grid.B, side.ghosts if run.boundary else None)
        if paths.size:  # both ends of the cell in one pass over the paths' inputs
            _k.grid_fields(L, Z, ks + (n - 1) * k, ks + n * k, k, Pb, paths, Wold, Wnew)
            if run.mixture is not None:  # r = M_c(t) + w(t) + ...: the class mean, linear in the cell like w
                state.par.add_means(n - 1, Pb, paths, Wold)
    else:
        state.chol_rows(n, final=False)
        if paths.size:
            _k.grid_field(L, Z, ks + n * k, k, Pb, paths, Wnew)
    if paths.size and run.mixture is not None:
        state.par.add_means(n, Pb, paths, Wnew)


def _step(n: int, run: _Setup, grid: _Grid, state: _State, side: _SampleSide):
    """Row ``n`` of every kernel: the predictor, then the corrector sweeps (at least one at
    ``n = 1``, which has no history to extrapolate: its predicted row is the start's; for GF
    without a corrector sweep an O(dt) relative error of every output at t_1). Returns the
    fields at ``t_n`` of the cell's active paths and the rows ``(Grow, Gprow)`` of ``G``."""
    k = grid.k
    nk, n1k = n * k, (n + 1) * k
    active, lo, hi = side.cell(n)
    Grow, Gprow, dGpred = _predict(n, state)
    Wnew = np.zeros((active.size, k))
    Wold = np.zeros((active.size, k))
    prev_row = state.C[:, nk:n1k, :n1k].copy()
    sweeps = max(run.corrector, 1) if n == 1 else run.corrector
    for it in range(sweeps + 1):
        tangents = side.tangents(it, sweeps)
        _fields(n, it, run, grid, state, side, active, Wold, Wnew)
        side.clear()
        side.prepare(n, it, state.R)
        if active.size:
            side.sample(n, tangents, active, lo, hi, Wold, Wnew, state.R)
        if tangents:
            Grow = state.Gprev + side.dGm + side.dGp
            Gprow = state.Gpprev + side.dGp
        _correct(n, state, side, Grow, Gprow, None if tangents else dGpred,
                 ahead=it == sweeps and n < grid.N and state.par.looks_ahead)
        row = state.C[:, nk:n1k, :n1k].copy()
        if it == sweeps:  # the last sweep's change of the row and the row's size (the residual: _joined)
            state.changes[n] = np.abs(row - prev_row).max(), np.abs(row).max()
        prev_row = row
    return Wnew, Grow, Gprow


# ---------------------------------------------------------------- the replicas in parts, on threads
@dataclass
class _Part:
    """The loop state of one part of a solve's replicas (the sample-side replicas ``replicas``,
    whole replicas: a mixture's class blocks stay together), integrated on its own thread: its
    grid (``B`` its replicas), its paths' inputs and teacher, its views of the state, its sample
    side and its training loss. How far it got: ``at`` the stage it is in (0 setting up, step
    ``n``, ``N + 1`` the training loss), ``done`` the steps completed, ``ended`` the stage at
    which it blew up or raised ``error`` (None: it did not). Per step, for a blow-up's cause:
    ``fields_ok`` (the step's fields finite and moderate) and ``grads_ok`` (every gradient so
    far finite)."""

    replicas: slice
    grid: _Grid
    rnd: _Random | None  # None until a part that draws its own inputs (``draw``) starts, and after it ends
    teacher: _Teacher | None
    state: _State
    draw: object = None  # () -> the part's _Random, for a part that draws its own (_draws_in_parts)
    counts: np.ndarray | None = None  # its paths' events, kept after it ends
    side: _SampleSide | None = None
    train: np.ndarray | None = None
    at: int = 0
    done: int = 0
    ended: int | None = None
    error: BaseException | None = None
    fields_ok: np.ndarray | None = None
    grads_ok: np.ndarray | None = None


def _solve_threads(run: _Setup, companion) -> int:
    """Threads (parts of the replicas) for a solve: ``_config.SOLVE_THREADS``, at most one per core
    this process may use and per replica (and ``_config.SOLVE_THREADS_HERE`` where it is set);
    one beside a kink ``companion`` or on a companion's own
    thread (the pair already has both cores), and with ``_config.PARALLEL`` (numba's threading
    layers abort on parallel kernels entered from two threads at once)."""
    if companion is not None or getattr(_CANCEL, "event", None) is not None or _config.PARALLEL:
        return 1
    cap = _config.SOLVE_THREADS_HERE.get()
    return max(1, min(_config.SOLVE_THREADS if cap is None else cap, _cores(), run.n_replicas))


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _split(run: _Setup, grid: _Grid, rnd: _Random | None, teacher: _Teacher | None, state: _State, rho, q0, seeds):
    """The solve's replicas in ``grid.threads`` parts of whole replicas (``grid.parts`` when the
    memory limit needs more, :func:`_parts_in_turn`), as equal as they go, each with its paths'
    rows of the inputs and the teacher (views: the values drawn for all paths), or (``rnd`` None)
    what it needs to draw its own: the ``seeds`` of :func:`_random_inputs`."""
    bounds = _chunk_bounds(grid.B // grid.split, max(grid.parts, grid.threads))
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        replicas = slice(lo * grid.split, hi * grid.split)
        paths = slice(replicas.start * grid.Pb, replicas.stop * grid.Pb)
        sub = dataclasses.replace(grid, B=replicas.stop - replicas.start)
        part = _Part(replicas, sub, None, None, state.part(run, sub, replicas, rho, q0))
        if rnd is None:
            part.draw = functools.partial(_random_inputs, run, grid, seeds, 1, replicas)
        else:
            a, off, width, x, xp = teacher.kinks
            kk = (a, off[paths], width[replicas], x[paths], xp[paths])
            part.rnd = _Random(*(getattr(rnd, f.name)[paths] for f in dataclasses.fields(_Random)))
            part.teacher = _Teacher(teacher.wstar[paths], teacher.y[paths], kk)
        part.fields_ok, part.grads_ok = np.ones(grid.N + 1, bool), np.ones(grid.N + 1, bool)
        parts.append(part)
    return parts


class _Team:
    """The parts of one solve on their threads. They do not wait for each other: what they share
    is where the solve ends. A part that blows up or raises at step ``n`` ends the solve there,
    as the one-thread solve would (its replicas go in lock-step): the other parts go on to step
    ``n`` (their diagnostics at ``n`` share in the blow-up's cause; an earlier end of theirs comes
    first) and no further. ``abort``: stop at once (an interrupt). The progress bar, shown by the
    calling thread, follows the parts' mean step."""

    def __init__(self, parts, bar, cancel):
        self.parts, self.bar, self.cancel = parts, bar, cancel
        self.limit, self.shown = parts[0].grid.N + 1, 0
        self.lock, self.abort = threading.Lock(), threading.Event()
        self.caller = threading.current_thread()

    def going(self, n: int) -> bool:
        """Whether a part goes on to step ``n`` (raises _Cancelled when a companion's solve is no longer needed)."""
        if self.cancel is not None and self.cancel.is_set():
            raise _Cancelled
        return n <= self.limit and not self.abort.is_set()

    def end(self, part: _Part, at: int, error=None):
        """``part`` blew up (``error`` None) or raised ``error`` at stage ``at``."""
        with self.lock:
            part.ended, part.error = at, error
            self.limit = min(self.limit, at)

    def show(self):
        done = sum(p.done for p in self.parts) // len(self.parts)
        if done > self.shown:
            self.bar.update(done - self.shown)
            self.shown = done

    def work(self, run: _Setup, threads: int):
        """The parts' work (:func:`_work`) on ``threads`` threads, this one and others that take
        its context along (:func:`errors.quiet`). This thread takes the first part before the
        others start (a helper that started first could otherwise take every part on a loaded
        machine); then each thread takes the next part not yet begun, so parts beyond
        ``threads`` run in turn (the memory limit, :func:`_parts_in_turn`)."""
        todo = iter(self.parts)

        def take():
            with self.lock:
                return next(todo, None)

        def take_parts(part):
            while part is not None and not self.abort.is_set():
                _work(run, part, self)
                part = take()

        first = take()
        helpers = [threading.Thread(target=contextvars.copy_context().run, args=(lambda: take_parts(take()),),
                                    name=f"dmft.solve part thread {i}", daemon=True)
                   for i in range(1, min(threads, len(self.parts)))]
        try:
            for t in helpers:
                t.start()
            take_parts(first)
            for t in helpers:
                while t.is_alive():
                    t.join(0.1)
                    self.show()
            self.show()  # the steps of parts that ended after this thread's last
        except BaseException:  # an interrupt while waiting: the others stop at their next step
            self.abort.set()
            raise
        finally:
            for t in helpers:
                t.join()

    def outcome(self, run: _Setup, grid: _Grid):
        """None when every part finished; else the first end over the parts, as the one-thread
        solve meets it (an exception before a blow-up at the same step): the exception is raised,
        a blow-up's DivergenceError returned (its cause from every part's diagnostics at its step)."""
        ends = [(p.ended, p.error is None, i) for i, p in enumerate(self.parts) if p.ended is not None]
        if not ends:
            return None
        n, blew_up, i = min(ends)
        if not blew_up:
            raise self.parts[i].error
        blamed = all(p.fields_ok[n] for p in self.parts) and not all(p.grads_ok[n] for p in self.parts)
        return _blow_up(run.arguments, bool(run.driver.step_order), float(run.time_grid.t(n * grid.dt)), grid.dt,
                        run.max_memory_gb, blamed)


def _integrate_parts(run: _Setup, grid: _Grid, parts: list):
    """Every part's work on its thread (:class:`_Team`); the DivergenceError of a blow-up, or None."""
    bar = progress_bar(run.progress, total=grid.N, desc=f"dmft.solve {run.dynamics}", leave=False)
    team = _Team(parts, bar, getattr(_CANCEL, "event", None))
    try:
        with _one_blas_thread() if min(grid.threads, len(parts)) > 1 else contextlib.nullcontext():
            team.work(run, grid.threads)
    finally:
        bar.close()
    return team.outcome(run, grid)


class _BlasThreads:
    """numpy's BLAS on one thread while a solve's parts run (threadpoolctl): OpenBLAS's worker
    threads, which spin for a while after each matrix product (the training loss's), took the
    core of the other part (docs/performance.md, "Replicas on two threads"). A product's entries
    do not depend on BLAS's threads (it splits the output, not the sums). The setting is the
    process's: the first solve in sets it, the last one out restores it."""

    def __init__(self):
        self.lock, self.users, self.limits = threading.Lock(), 0, None

    @contextlib.contextmanager
    def one(self):
        with self.lock:
            if self.users == 0:
                self.limits = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
            self.users += 1
        try:
            yield
        finally:
            with self.lock:
                self.users -= 1
                if self.users == 0:
                    self.limits.restore_original_limits()


_one_blas_thread = _BlasThreads().one


def _work(run: _Setup, part: _Part, team: _Team):
    """One part's work: its sample side, its rows, and (if no part ended the solve before) its
    training loss; where it ends is recorded in ``part`` and ``team``, not raised."""
    try:
        if part.draw is not None:
            part.rnd = part.draw()
            part.teacher = _teacher(run, part.grid, part.rnd, part.state)
        part.counts = part.rnd.counts
        part.side = run.driver.sample_side(run, part.grid, part.rnd, part.teacher)
        if _integrate(run, part, team):
            part.at = part.grid.N + 1
            part.train = _train_loss(run, part)
    except Exception as e:  # noqa: BLE001 (handed to the calling thread, which raises the first)
        team.end(part, part.at, e)
    except BaseException as e:  # an interrupt: every part stops now
        team.end(part, -1, e)
        team.abort.set()
    finally:
        part.side = None  # its paths' workspace: the next part in turn allocates its own
        if part.draw is not None:
            part.rnd, part.teacher = None, None


def _integrate(run: _Setup, part: _Part, team: _Team) -> bool:
    """Rows ``1 .. N`` of the part's replicas (row 0 first) while the team goes on; False if it
    stopped before (its own blow-up of ``C(t, t)`` recorded in ``team``, or another part's end)."""
    grid, state, side = part.grid, part.state, part.side
    k = grid.k
    # row 0; its factor rows come with step 1's
    state.par.row(0, state.Gprev.copy(), state.Gpprev, state.Gprev, state.Gpprev, None)
    for n in range(1, grid.N + 1):
        if not team.going(n):
            return False
        part.at = n
        Wnew, Grow, Gprow = _step(n, run, grid, state, side)
        # a blow-up's cause (_blow_up), here or in another part at this step
        part.fields_ok[n] = np.isfinite(Wnew).all() and np.abs(Wnew).max(initial=0.0) <= _config.MODERATE_FIELD
        part.grads_ok[n] = part.grads_ok[n - 1] and side.grads_finite(n)
        cnn = state.C[:, n * k:(n + 1) * k, n * k:(n + 1) * k]
        if not np.all(np.isfinite(cnn)) or np.abs(cnn).max() > _config.BLOWUP_NORM:
            team.end(part, n)
            return False
        state.Gprev2, state.Gpprev2 = state.Gprev, state.Gpprev
        state.Gprev, state.Gpprev = Grow, Gprow
        state.dW_last[:, :n] = side.dS[:, :n]
        state.dFF_last = side.dFF.copy()
        side.commit()
        part.done = n
        if threading.current_thread() is team.caller:
            team.show()
    state.chol_rows(grid.N, final=True)
    return True


def _joined(state: _State, parts: list) -> _State:
    """The whole state after the parts' threads: their diagnostics combined, their parameter sides
    as one."""
    # the largest change over all replicas relative to the largest row (at least 1), per step
    change, size = np.max([p.state.changes for p in parts], axis=0).T
    state.residual = max(0.0, float((change / np.maximum(1.0, size)).max()))
    state.min_pivot = min(p.state.min_pivot for p in parts)
    state.n_zero_pivots = sum(p.state.n_zero_pivots for p in parts)
    state.par = parts[0].state.par if len(parts) == 1 else _JoinedParams([p.state.par for p in parts])
    return state


class _JoinedParams:
    """The spectral or mixture parameter sides of a solve's parts as one, for the output
    reduction: their per-replica outputs in replica order."""

    def __init__(self, sides):
        self.sides = sides

    def plain(self, steps):
        return [np.concatenate(x) for x in zip(*(side.plain(steps) for side in self.sides))]

    def plain_trace(self):
        return np.concatenate([side.plain_trace() for side in self.sides])


# ---------------------------------------------------------------- output reduction
def _train_loss(run: _Setup, part: _Part) -> np.ndarray:
    """Training loss (n_out, B) of a part's replicas at the output steps, after its rows: one
    matrix product per replica gives the fields of all paths at all output times (rows of L
    and R are final)."""
    grid, rnd, state, side = part.grid, part.rnd, part.state, part.side
    model, out_steps, B, Pb, k, ks = run.model, grid.out_steps, grid.B, grid.Pb, grid.k, grid.ks
    dense = run.driver.dense
    train_losses = specialise(_k.train_losses_shared if dense else _k.train_losses, loss=model.loss)
    train = np.zeros((len(out_steps), B))
    field_rows = (ks + out_steps[:, None] * k + np.arange(k)).ravel()
    if dense:  # every path has its events at the cell midpoints: R(t_n, s_l) once per replica
        Rt = np.zeros((len(out_steps), grid.N, k, k))
    for b in range(B):
        paths = slice(b * Pb, (b + 1) * Pb)
        Wb = (rnd.Z[paths] @ state.L[b, field_rows].T).reshape(Pb, len(out_steps), k)
        if run.mixture is not None:  # the class mean of the block (docs/dmft_mixture.md)
            Wb += state.par.M[b // grid.split, out_steps, :, b % grid.split]
        if dense:
            _k.response_table(state.R[b], out_steps, rnd.ev_cell[0], rnd.ev_lam[0], Rt)
            train_losses(model.param_array, out_steps, grid.c, Rt, side.forces(paths), Wb, side.teacher.y[paths],
                         train[:, b])
        else:
            train_losses(model.param_array, out_steps, grid.c, rnd.counts[paths], rnd.ev_cell[paths],
                         rnd.ev_lam[paths], side.forces(paths), Wb, state.R[b], side.teacher.y[paths], train[:, b])
    return train


def _replica_train_loss(run: _Setup, grid: _Grid, parts: list) -> np.ndarray:
    """The parts' training losses (n_out, replicas); a mixture's class blocks weighted by pi."""
    train = np.concatenate([p.train for p in parts], axis=1)
    if run.mixture is not None:
        train = train.reshape(len(grid.out_steps), -1, grid.split) @ run.mixture.probs
    return train


def _replica_outputs(run: _Setup, grid: _Grid, state: _State, train):
    """Per replica at the output times: ``train`` (n_out, B), ``norm`` and ``overlap``
    (Euclidean with anisotropic data), the field's ``qk``, ``mk`` (the test loss's), and
    ``correlation``, ``response`` (B, n_out, n_out, k, k). A mixture: ``overlap`` and ``mk`` are
    the class means ``M`` (B, n_out, k, C), ``qk`` the class blocks' ``C_c(t, t)`` (B, n_out, C, k, k)."""
    k, o, tau = grid.k, grid.out_steps, grid.tau
    C = _blocks(state.C, grid.N + 1, k)
    R = _blocks(state.R, grid.N + 1, k)
    norm_b = C[:, o, o]  # (B, n_time, k, k)
    m_b = state.m[:, o]
    C = C[:, o][:, :, o]
    R = R[:, o][:, :, o]
    # the test loss sees the field's covariance; the outputs are the Euclidean kernels
    qk_b, mk_b = norm_b, m_b
    if run.spec is not None:
        C, R, m_b = state.par.plain(o)
        C, m_b = C / tau, m_b / tau
        norm_b = np.einsum("btt...->bt...", C)
    if run.mixture is not None:
        split = grid.split
        qk_b = np.swapaxes(norm_b.reshape(-1, split, *norm_b.shape[1:]), 1, 2)
        C, R, m_b = state.par.plain(o)
        C = C / tau
        norm_b, mk_b = np.einsum("btt...->bt...", C), m_b
    interp, interp1 = grid.interp, grid.interp1
    if interp is not None:  # grid steps -> the requested times (quadratic; bilinear on two times)
        train = interp @ train
        norm_b, m_b, qk_b, mk_b = (np.einsum("ou,bu...->bo...", interp, x) for x in (norm_b, m_b, qk_b, mk_b))
        # one time axis after the other: a three-operand einsum loops over all five indices at once
        C, R = (np.einsum("bov...,pv->bop...", np.einsum("ou,buv...->bov...", interp1, x), interp1) for x in (C, R))
    return train, norm_b, m_b, qk_b, mk_b, C, R


def _mean_sem(x, axis=0):
    return x.mean(axis), _stats.sem(x, axis)


def _dataset(run: _Setup, grid: _Grid, rho, threads, train, norm_b, m_b, qk_b, mk_b, C, R):
    """The replica means and standard errors as variables; the test loss by quadrature at
    the mean kernels (per replica to first order, for its standard error; the output times
    split over ``threads``). Returns the variables and the per-replica test loss and
    ``tr norm`` (a step check's paired differences)."""
    model, time, B = run.model, grid.time_out, grid.B
    tr, tr_s = _mean_sem(train.T)
    nm, nm_s = _mean_sem(norm_b)
    ov, ov_s = _mean_sem(m_b)
    co, co_s = _mean_sem(C)
    re, re_s = _mean_sem(R)
    output.check_finite("norm", time, nm)
    qk, mk = (nm, ov) if run.spec is None and run.mixture is None else (qk_b.mean(0), mk_b.mean(0))
    tl, tl_b = _test_losses(model, qk, mk, qk_b, mk_b, rho, run.mixture, threads)
    replicas = (tl_b, np.einsum("btaa->bt", norm_b))
    tl_s = _stats.sem(tl_b)
    # the norm is finite here: a non-finite loss is the model's
    output.check_finite("test_loss", time, tl, cause="model")
    # a step check's solve compares values: the integration error estimate is its caller's
    checking = getattr(_CHECKING, "active", False)
    tl_err = np.nan if checking else _test_loss_error(model, qk, mk, rho, tl_s, run.mixture, threads=threads)
    output.check_finite("train_loss", time, tr, cause="model")
    kdims = ("time", "student", "student2")
    odims = ("time", "student", "teacher")
    cdims = ("time", "student", "class")
    kk = ("time", "time2", "student", "student2")
    variables = {
        "train_loss": (("time",), tr), "train_loss_sem": (("time",), tr_s),
        "test_loss": (("time",), tl), "test_loss_sem": (("time",), tl_s),
        "norm": (kdims, nm), "norm_sem": (kdims, nm_s),
        **({"overlap": (odims, ov), "overlap_sem": (odims, ov_s)} if run.mixture is None else
           {"mean_overlap": (cdims, ov), "mean_overlap_sem": (cdims, ov_s)}),
        "correlation": (kk, co), "correlation_sem": (kk, co_s),
        "response": (kk, re), "response_sem": (kk, re_s),
    }
    return variables, replicas, tl_err


def _attrs(run: _Setup, grid: _Grid, counts: np.ndarray, state: _State, tl_err, t_start) -> dict:
    """Inputs and diagnostics of a solve (``counts``: the events of every path)."""
    seed = run.seed
    attrs = {
        "solver": "dmft.solve", "dynamics": run.dynamics, "driver": repr(run.driver),
        **run.model.attrs(),
        "delta": run.delta, "lr": run.lr if isinstance(run.schedule, _schedules.Constant) else repr(run.schedule),
        "batch": run.batch, "c": grid.c, "t_max": run.t_max, "dt": grid.dt, "time_grid": repr(run.time_grid),
        "max_step": grid.dt * float(run.time_grid.speed(grid.N * grid.dt)),
        "n_steps": grid.N, "n_time": run.n_time, "n_paths": grid.P, "n_replicas": grid.B // grid.split,
        "tangent_stride": run.tangent_stride, "ridge": run.ridge, "init_std": run.init_std,
        "corrector": run.corrector, "sampling": run.sampling,
        "seed": seed if not isinstance(seed, np.random.SeedSequence) else -1,
        "corrector_residual": state.residual, "test_loss_quadrature_error": tl_err,
        "gradient_jump_at_kinks": run.jump, "kink_bandwidth": run.kink_bandwidth,
        "kink_response": "boundary" if run.boundary else "signed_noise" if run.signed_noise else "smoothed",
        "response_estimator": ("pathwise+boundary_terms" if run.boundary else "pathwise+smoothed_dirac")
                              if _n_kink_planes(run) else "pathwise",
        "events_per_path": float(counts.mean()),
        "max_events_per_path": int(counts.max()), "chol_min_relative_pivot": float(state.min_pivot),
        "chol_zero_pivots": int(state.n_zero_pivots), "memory_gb": grid.mem / 2**30,
        "runtime_estimate_s": grid.runtime,
        "runtime_s": _time.perf_counter() - t_start,
        "sem_method": "spread of n_replicas independent lock-step replicas / sqrt(n_replicas); "
                      "test_loss_sem by the delta method (Price: dL/dq = E l''/2, dL/dm = E d2l/dr dr*)",
    }
    if run.mixture is not None:
        attrs.update({key: v for key, v in run.data.attrs().items() if key not in attrs})
        attrs.update(labels="hard: model.labels_for_classes(C)[c] for a sample of class c",
                     class_labels=run.mixture.labels.ravel(), groups=run.mixture_groups.mode, n_groups=grid.n_groups,
                     trace_ratio=grid.tau)
    if run.spec is not None:
        attrs.update({key: v for key, v in run.data.attrs().items() if key not in attrs})
        attrs.update(groups=run.spec.mode, n_groups=grid.n_groups, trace_ratio=grid.tau,
                     teacher_prior="fixed: theta* = sqrt(d) data.teacher^T")
    return attrs


def _diverged(run: _Setup, grid: _Grid, err):
    """``on_divergence``: the truncated solve, or raise ``err``."""
    if run.on_divergence == "truncate":
        return _truncated(run.arguments, err, grid.time_out, grid.dt)
    raise err


def _checks(ds, run: _Setup, grid: _Grid, inputs, replicas, wide: _Companion | None):
    """After the solve: the kink width's extrapolation (from the companion ``wide``) and the
    step check of ``check_dt`` on common random numbers from the solve's Gaussian ``inputs``
    ``(Z, eps, xi)`` (:class:`_Random`)."""
    if wide is not None:
        waited = _time.perf_counter()
        rough, rough_replicas = wide.result()
        # wall time: the companion's run beside this solve costs only the wait for it
        ds = _extrapolate_kinks(ds, rough).assign_attrs(
            runtime_s=ds.attrs["runtime_s"] + _time.perf_counter() - waited)
        # replica b of both widths ran on the same inputs: the extrapolation per replica is
        # what a step check pairs with its own on common random numbers
        replicas = tuple(2 * a - b for a, b in zip(replicas, rough_replicas))
        if getattr(_CHECKING, "active", False):
            _CHECKING.replicas = replicas
    _warn_noise_driven(ds, _n_kink_planes(run) > 0 and not run.boundary)  # the boundary terms: a smooth model's noise
    ds.attrs.update(dt_check_max_z=np.nan, dt_check_step_error=np.nan, dt_check_dt=np.nan)
    if run.check_dt is not False and run.driver.step_order:
        try:
            own = (replicas, (*inputs, grid.N, grid.k))
            ds.attrs.update(_check_time_step(ds, run.arguments, grid.every, warn_noise=run.check_dt is True, own=own))
        except errors.DivergenceError as err:
            return _diverged(run, grid, err)
    return ds


def solve(
    model,
    *,
    delta: float = 2.0,
    lr: float = 2.0,
    batch: float | None = None,
    dynamics: str | None = None,
    t_max: float | None = None,
    dt: float | None = None,
    n_time: int | None = None,
    times=None,
    n_paths: int | None = None,
    n_replicas: int = 8,
    tangent_stride: int | None = None,
    ridge: float = 0.0,
    init_std: float = 0.0,
    corrector: int | None = None,
    sampling: str = "qmc",
    seed: int = 0,
    progress: bool = True,
    max_memory_gb: float = 4.0,
    check_dt: bool | None = None,
    on_divergence: str = "raise",
    max_runtime_s: float | None = 3600.0,
    kink_bandwidth: float = 0.1,
    kink_extrapolate: bool = True,
    kink_response: str = "auto",
    data=None,
    groups="auto",
    driver=None,
    time_grid=None,
):
    """Solve the dynamical mean-field equations of multi-pass SGD / SME / GF.

    Parameters
    ----------
    model : dmft.models.Model or str
        Loss, derivatives and teacher (docs/models.md).
    delta : float
        Samples per dimension ``n/d``.
    lr : float, schedule or function of time
        Learning-rate scale ``eta_bar``: a positive number, or a schedule of
        :mod:`dmft.schedules` (``Constant``, ``TimeDependent``, ``StepDecay``, ``Cosine``; a
        function ``t -> lr`` is ``TimeDependent``) in the units of ``t``, as in
        :func:`dmft.simulate`: an SGD event at ``s`` has the per-sample step ``lr(s)/batch``,
        SME's drift and noise and GF's drift are at ``lr(t)``, the ridge term is ``lr(t) lam``
        (docs/dmft_theory.md, "Learning-rate schedules"). ``Constant(x)`` gives the numbers
        of ``x`` bit for bit; ``AdaGradNorm`` is refused. ``attrs['lr']`` is the number, or
        the schedule's ``repr``; ``attrs['c']`` the per-sample step at ``t = 0``.
    batch : float
        Batch scale ``kappa_bar`` (Poisson rate, default 1); per-sample step ``c = lr/batch``;
        one epoch is ``t = 1/batch``.
    dynamics : {"sgd", "sme", "gf"}
        Driver of the per-sample force: Poisson jumps, Gaussian diffusion, deterministic
        (default ``"sgd"``).
    t_max, dt : float
        Horizon (default 4, or the last of ``times``) and largest grid step; the step used
        is ``t_max / N`` with ``N`` the smallest multiple of ``n_time - 1`` (with ``times``:
        the smallest ``N``) with ``t_max / N <= dt``. Default ``dt`` 0.02 for SGD, ``0.04 / max(1, lr)``
        for SME/GF (a schedule: its largest rate on ``[0, t_max]``).
    n_time : int
        Output times ``linspace(0, t_max, n_time)`` (default 101, as :func:`dmft.simulate`,
        so ``theory - simulation`` is one subtraction).
    times : array or None
        Output times instead of ``n_time`` (exclusive with it): 1-d, strictly increasing, in
        ``[0, t_max]``, e.g. log-spaced for long horizons. The grid stays uniform; a one-time
        output at a time between grid points is the quadratic (three-point Lagrange)
        interpolation of the grid values at the three grid points nearest it (``0, dt, 2 dt``
        below ``dt``), error ``O(dt^3)`` and exact for a start like ``t^2``; ``correlation``
        and ``response`` on ``times x times`` are bilinear, error ``O(dt^2)``, exact at grid
        times only across their kink at equal times (``R(t, t) = I``). The test loss is that
        of the interpolated ``norm`` and ``overlap``. The grid's own error at the first steps
        stays (at ``t < dt`` it is the dominant part). Grid times are returned exactly as
        without ``times``.
    n_paths : int
        Monte Carlo sample paths in total (rounded up to a multiple of ``n_replicas``).
        Default 131072 for SGD, 8192 for SME and GF (their run times and standard errors:
        docs/performance.md, "DMFT solver"); SME beyond ``t_max = 16``: 16384, and
        ``16384 t_max / 32`` beyond 32 (fewer paths per replica let its closures run away).
        Models with a Dirac part in ``l''`` (see ``kink_bandwidth``): 65536 for SME and GF.
    tangent_stride : int
        Only every ``tangent_stride``-th path carries the pathwise tangents that estimate
        ``Gamma`` (cost ``O(J^3)`` per path; the other paths still enter ``S``, ``Phi`` and
        the losses). Default 2 for GF up to ``t_max = 8`` (1 for models with a Dirac part in
        ``l''``, and beyond ``t_max = 8``), 1 for SGD and SME: the SME's standard error is
        mostly the tangents', GF's is not at short horizons (time x SE^2 in
        docs/performance.md, "DMFT vs simulation"; docs/dmft_theory.md, "Tangent subsampling").
    n_replicas : int
        The paths are split into this many independent replicas solved in lock-step;
        outputs are replica means, ``*_sem`` the replica standard errors. The replicas are
        integrated in parts on ``dmft._config.SOLVE_THREADS`` threads (default 2, at most
        one per core), with the numbers of one thread bit for bit.
    ridge : float
        Ridge ``lam`` of ``R(theta) = sum_i l + lam |theta|^2 / 2``.
    init_std : float
        Initial coordinates ``theta_0 ~ N(0, init_std^2 I_k)``.
    corrector : int
        Corrector sweeps of the current step (sample side re-run with the corrected
        kernel row); the last change is reported as ``attrs['corrector_residual']``.
        Default 1 for SGD and SME, 0 for GF: GF's kernels are smooth, so the predictor
        alone adds less than the grid error of the default ``dt``; SGD's and SME's curves
        move by more than their standard errors without the sweep (docs/dmft_theory.md,
        "Causality"). The first step gets at least one: it has no history to extrapolate.
    sampling : {"qmc", "mc"}
        Gaussian inputs of the paths (teacher, label noise, field innovations, SME's
        Brownian increments): randomised quasi-Monte Carlo (one scrambled Sobol set per
        replica) or pseudo-random. QMC gives smaller standard errors at equal paths
        (docs/dmft_theory.md, "Randomised quasi-Monte Carlo"). SGD's jump times are
        pseudo-random either way, and so are ``"mc"``'s inputs: in blocks of paths, so that
        they depend on ``seed`` and the path's index only, not on ``n_replicas``.
    seed : int, numpy.random.Generator or numpy.random.SeedSequence
        Seed; equal seeds give bit-identical output on one machine (across CPUs: the
        tolerance in docs/reliability.md, "Reproducibility"). A ``numpy.random.Generator``
        stands for the integer ``int(seed.integers(2**63))`` drawn from it (``attrs['seed']``).
    progress : bool
        Show a progress bar (if the switch :func:`dmft.set_progress` allows it).
    check_dt : bool or None
        SME and GF: whether the grid's own step bias is checked (the replica standard
        errors do not include it). Default (``None``): solve again with twice the step
        (about a fifth of the cost; on every second output time when ``dt`` is the output
        spacing) and compare the test loss and ``tr norm`` at the output times. The check
        solves run on common random numbers: this solve's Gaussian inputs with each pair of
        cells joined (twice the step) or each cell split by a Brownian bridge (half the
        step), so that replica ``b`` of both sees the same teacher, noise and Brownian
        path, and the standard error of a difference is that of the replica-by-replica
        differences (kinked solves, an extrapolation of two: independent inputs and the
        combined standard error). Where the estimated step error of this solve,
        ``|x(dt) - x(dt')| / |(dt'/dt)^p - 1|`` (Richardson; order ``p = 2``), exceeds
        :data:`~dmft.errors.STEP_BIAS_LIMIT` (10%) of the test loss (of ``tr norm``'s largest
        value) and the difference 2 standard errors (or the check is
        too noisy to tell: the estimate's own standard error above 5%), or the coarser solve
        diverges, the solve is refined: solved again with half the step (2^2-2^3 the cost),
        and the same test against it, without the noise clause, decides: above the limit and
        2 standard errors (or a divergence with ``dt/2``) raises
        :class:`~dmft.errors.DivergenceError`
        (cause ``'time_step'``, or the cause of the divergence with ``dt/2``) instead of
        returning the numbers. ``True``: the same, and an
        :class:`~dmft.errors.UnresolvedTimeStepWarning` wherever the outputs moved by more
        than 4 standard errors (docs/dmft_theory.md, "Step bias"). ``False``: no check.
        ``attrs['dt_check_max_z']`` is the largest ``|difference| / SE`` (``inf`` when the
        coarser solve diverged), ``attrs['dt_check_step_error']`` the largest estimated
        relative step error, ``attrs['dt_check_dt']`` the step compared with (all NaN when
        not checked: SGD, whose events sit at their exact times, or ``check_dt=False``).
    kink_bandwidth : float
        Models whose gradient jumps across a declared kink in ``r`` (ReLU, ``|r|``; see
        :meth:`dmft.models.Model.gradient_jumps`) have a Dirac part in ``l''`` that pathwise
        tangents miss. The solve then smooths the loss across each such kink by a Gaussian
        of width ``kink_bandwidth`` times the replica's standard deviation of the distance
        to the kink, in the paths and their tangents alike: the DMFT of a smooth model, at a
        distance ``O(kink_bandwidth^2)`` (docs/dmft_theory.md, "Kinks"). ``0`` turns this
        off (a :class:`~dmft.errors.DiracResponseWarning` then says the curves are biased).
        Unused for models without such kinks. GF with one such kink takes the boundary terms
        instead (``kink_response``), where ``kink_bandwidth`` sets their density's width.
    kink_extrapolate : bool
        Models with such kinks, smoothed: solve again with twice the width (same random inputs) and
        return the extrapolation ``2 x(h) - x(2h)`` of every output (the smoothing's bias is
        first order in ``h``: samples pile up at a kink; docs/dmft_theory.md, "Kinks"), with
        ``sqrt(4 se(h)^2 + se(2h)^2)`` as its standard error (the two solves share their
        inputs, so their errors correlate positively and this bounds the error of the
        combination). ``attrs['kink_bias_estimate']`` is the largest ``|x(h) - x(2h)|``
        relative to ``max |x|`` over the test loss and ``tr norm``: the bias that the
        extrapolation removed.
    kink_response : {"auto", "smoothed", "boundary", "signed_noise"}
        How the response carries the Dirac part of ``l''``. ``"smoothed"``: the smoothing and
        extrapolation above. ``"boundary"`` (GF, ``k = 1``, one kink in ``r`` whose force does not
        point towards it from both sides, isotropic data, ``kink_bandwidth > 0``):
        the kinked model itself, each crossing with its saltation, plus the boundary terms of
        the paths whose fate a kick flips (paths that start near the kink and recede, and the
        lowest touch of each cluster of touches), each from a pair of ghost paths, with a
        density at the kink of width ``kink_bandwidth`` times the distance's spread
        (docs/dmft_theory.md, "Kinks"); no extrapolation. Its standard errors stay those of a
        smooth model where the smoothed tangents turn heavy-tailed (phase retrieval).
        ``"signed_noise"`` (SME, ``kink_bandwidth > 0``, a gradient that flips its sign across
        every kink in ``r``, ``l'(+) = -l'(-)``, as phase retrieval's): the smoothing and
        extrapolation of the drift as ``"smoothed"``, while the noise, whose law depends on the force
        only through ``g g^T``, takes the kinked model's ``s(r) g(r)`` with a sign ``s`` that flips
        at each kink, which is continuous there: the tangents have no jump of the noise to
        differentiate (docs/dmft_theory.md, "Kinks").
        ``"auto"`` (default): ``"boundary"`` or ``"signed_noise"`` where built, else ``"smoothed"``;
        ``attrs['kink_response']`` is the one used.
    on_divergence : {'raise', 'truncate'}
        What to do when the solve diverges (see Raises): raise, or return the output times
        before the divergence (solved again on them), with ``attrs['truncated'] = 1``,
        ``attrs['diverged_at']`` and ``attrs['divergence_cause']``.
    max_memory_gb, max_runtime_s : float
        Refuse (ParameterError, before any work) a solve whose estimated peak memory or run
        time is above these (``max_runtime_s=None``: no time limit). Above the memory limit,
        parts of the replicas run in turn, one per thread at a time, when that fits (the
        paths' workspace is then allocated per part, and their inputs and events too unless a
        kink companion or the step check needs them for all paths; the same numbers). A
        :class:`~dmft.errors.LongRunWarning` announces estimates above a minute. Estimates in
        ``attrs['memory_gb']`` and ``attrs['runtime_estimate_s']`` (docs/reliability.md).
    data : onepass.data.GaussianMixture or None
        Anisotropic teacher-student data (one class, zero mean, covariance ``K = diag(lam)``,
        fixed teacher rows; e.g. :func:`onepass.data.teacher_student`): inputs
        ``x ~ N(0, K/d)``, teacher ``theta* = sqrt(d) x*^T`` as in :func:`dmft.simulate`. The
        parameter side is then one linear process per spectral group, coupled through the
        sample side's spectrally averaged kernels (docs/dmft_anisotropic.md). Or a Gaussian
        mixture with hard labels and diagonal class covariances of equal trace (e.g.
        :func:`dmft.data.binary_mixture` with ``'identity'``, ``'zero_one'``, ``'power_law'``, or
        :func:`dmft.data.multiclass_mixture`; class ``c`` of ``C`` has inputs ``x = mu_c/sqrt(d) + z``,
        ``z ~ N(0, K_c/d)``, and the label ``model.labels_for_classes(C)[c]``, as in
        :func:`dmft.simulate`): the paths run in one block
        per class and replica, a path's field is shifted by the class-mean field
        ``M_c(t) = theta(t)^T mu_c/sqrt(d)``, and the parameter side has one process per spectral
        group of eigenvalue tuples (docs/dmft_mixture.md). ``None``: isotropic inputs, teacher prior
        ``N(0, I)``.
    groups : 'auto', 'exact' or onepass.data.Binned
        Spectral groups of ``data``: one per distinct eigenvalue (a mixture's: per distinct tuple
        of the classes' eigenvalues) (``'exact'``), ``Binned(G)`` bins of ``log(lam)``, or
        ``'auto'``: exact up to 32 distinct eigenvalues
        (``dmft.multipass._spectral.AUTO_MAX_GROUPS``), else 32 bins.
        Memory and parameter-side cost grow linearly in the number of groups.
    driver : dmft.multipass.Poisson, Gaussian, Deterministic or None
        The driver as an object, instead of ``dynamics`` and ``batch``:
        ``driver=Poisson(rate)`` is ``dynamics="sgd", batch=rate`` (``Gaussian``: ``"sme"``,
        ``Deterministic``: ``"gf"``); the driver's defaults (``dt``, ``n_paths``,
        ``tangent_stride``, ``corrector``) apply. Given with ``dynamics`` or ``batch``, they
        must agree. ``attrs['dynamics']`` is the driver's name either way.
    time_grid : dmft.grids.Uniform, dmft.grids.Stretched or None
        Where the grid points lie in time. ``Uniform()``: steps of ``dt``.
        ``Stretched(t_fine, max_ratio)`` keeps the step ``dt`` up to ``t_fine`` and then lets it
        grow like ``dt t / t_fine`` up to ``max_ratio dt``, for long horizons: the solver runs on
        a uniform grid of ``u`` with ``t = tau(u)``, the time change that keeps the dynamics
        exact (docs/dmft_theory.md, "Stretched grids"). ``dt`` is the first step,
        ``attrs['max_step']`` the last; the outputs are at ``times`` (or ``n_time`` equally
        spaced times) as on a uniform grid. None (default): ``Uniform()`` up to ``t_max = 8``,
        ``Stretched()`` beyond (steps up to the driver's accurate ``lr max_step``; uniform
        when ``dt`` is already that large); ``attrs['time_grid']`` is the grid used.

    Returns
    -------
    xarray.Dataset
        ``train_loss``, ``test_loss`` (time); ``norm`` (time, student, student2) =
        ``C_theta(t, t)`` (with ``data``: ``theta^T theta/d``, the Euclidean norm; the test
        loss uses the ``K``-weighted one); ``overlap`` (time, student, teacher) = ``m(t)``, or
        with mixture data ``mean_overlap`` (time, student, class) = ``M_c(t)``;
        ``correlation``, ``response`` (time, time2, student, student2); each with a
        ``*_sem``; coordinate ``epoch = t * batch``; inputs and diagnostics in ``attrs``
        (``memory_gb``: the estimated peak memory).

    Raises
    ------
    dmft.errors.ParameterError
        An argument out of range, or a grid that needs more than ``max_memory_gb``
        (the message names the argument that drives it), before any computation.
    dmft.errors.DivergenceError
        With ``.time`` and ``.cause``: the teacher's labels are not finite (``'data'``, at
        time 0); ``C(t, t)`` non-finite or above 1e12 (``'model'`` if the gradient was not
        finite at moderate fields, else for SME and GF ``'time_step'`` when a solve with half
        the step does not blow up by then and ``'learning_rate'`` when it does; SGD
        ``'learning_rate'``); ``tr C(t, t)`` oscillating at the grid scale, or for GF the
        objective ``train_loss + ridge tr(norm) / (2 delta)`` increasing beyond its noise
        (``'time_step'``: the grid is unstable at this ``lr dt``); a loss that is not finite
        at a finite norm (``'model'``).

    Examples
    --------
    >>> import dmft
    >>> ds = dmft.solve(dmft.models.linear_regression(0.5), delta=2, lr=0.5, dynamics="gf",
    ...                 t_max=1.0, n_paths=256, progress=False)
    >>> ds.test_loss.dims, ds.correlation.dims
    (('time',), ('time', 'time2', 'student', 'student2'))
    """
    arguments = dict(locals())  # the inputs, for the check solves with other steps
    t_start = _time.perf_counter()
    run = _checked(arguments)
    wide = None
    try:  # the companion stops when this solve ends without it (an error, a truncated run)
        grid = _plan(run)
        # the inputs (the companion's too) and the test-loss quadratures on every core: a kink
        # companion ends about when this solve's steps do (the same steps), and each output
        # time's numbers are its own on any thread
        cores = _solve_threads(run, None)
        seeds = run.ss.spawn(2)
        rnd = None if grid.drawn_in_parts else _random_inputs(run, grid, seeds, cores)
        if _has_companion(run):
            wide = _Companion({**run.arguments, "kink_bandwidth": 2 * run.kink_bandwidth, "kink_extrapolate": False,
                               "check_dt": False, "progress": False}, rnd)
        grid.threads = _solve_threads(run, wide)
        rho = np.eye(grid.ks) if run.spec is None else run.spec.rho_k
        q0 = grid.tau * run.init_std**2 * np.eye(grid.k)
        state = _State.allocate(grid, rho)
        teacher = None if rnd is None else _teacher(run, grid, rnd, state)
        parts = _split(run, grid, rnd, teacher, state, rho, q0, seeds)
        err = _integrate_parts(run, grid, parts)
        if err is not None:
            return _diverged(run, grid, err)
        state = _joined(state, parts)
        train = _replica_train_loss(run, grid, parts)
        err = _step_instability(state.C, train, grid.out_steps, grid.dt, run.ridge, run.delta, run.dynamics, grid.k,
                                None if run.spec is None and run.mixture is None
                                else state.par.plain_trace() / grid.tau, run.time_grid)
        if err is not None:
            return _diverged(run, grid, err)
        variables, replicas, tl_err = _dataset(run, grid, rho, cores, *_replica_outputs(run, grid, state, train))
        if getattr(_CHECKING, "active", False):  # per replica, for a step check's paired differences
            _CHECKING.replicas = replicas
        coords = {
            "time": grid.time_out, "time2": grid.time_out, "epoch": ("time", grid.time_out * run.batch),
            "student": np.arange(grid.k), "student2": np.arange(grid.k),
            **({"teacher": np.arange(grid.ks)} if run.mixture is None else {"class": np.arange(grid.ks)}),
        }
        counts = np.concatenate([p.counts for p in parts])
        attrs = _attrs(run, grid, counts, state, tl_err, t_start)
        ds = output.build(variables, coords, attrs, time_axis="multipass")
        inputs = None if rnd is None else (rnd.Z, rnd.eps, rnd.xi)
        # the step check solves again: this solve's state and events are not needed beside it
        del state, parts, teacher, train, rnd
        return _checks(ds, run, grid, inputs, replicas, wide)
    finally:
        if wide is not None:
            wide.cancel()


#: relative standard error (test loss or ``tr norm``) above which a kinked solve is called
#: noise-driven: ReLU units stay near 1%, phase retrieval reaches 5-85% at the default paths
_KINK_NOISE_REL = 0.03


def _relative_sem(ds) -> np.ndarray:
    """Per output time, the larger standard error of the test loss and of ``tr norm``
    relative to its value."""
    rel = [se / np.maximum(np.abs(x), 1e-300) for x, se in
           ((ds.test_loss.values, ds.test_loss_sem.values), (_trace(ds.norm), np.sqrt(_trace(ds.norm_sem ** 2))))]
    return np.fmax(*rel)


#: relative standard error (test loss or ``tr norm``) above which a solve without kinks is called
#: noise-driven: SME at ``t_max = 32`` with 8192 paths passes it at ``t = 20`` (14%), where its
#: replicas run away from the simulation (docs/dmft_theory.md, "Stretched grids")
_NOISE_REL = 0.05
#: a step check's difference beyond this many standard errors is a step error, noise or not
#: (SME on least squares at ``lr dt = 0.3``: 7.6 SE with a 9% standard error; the runaways
#: above: 2.0-2.7 SE)
_NOISE_Z = 4.0


def _warn_noise_driven(ds, kinked: bool):
    """Warn when a solve's standard error of the test loss or of ``tr norm`` exceeds
    ``_KINK_NOISE_REL`` (a ``kinked`` solve: its smoothed Dirac term's noise dominates;
    :class:`~dmft.errors.DiracResponseWarning`) or ``_NOISE_REL`` (any other;
    :class:`~dmft.errors.NoiseDrivenWarning`) of its value at some output time."""
    rel = _relative_sem(ds)
    i = int(np.nanargmax(rel))
    if rel[i] <= (_KINK_NOISE_REL if kinked else _NOISE_REL):
        return
    if kinked:
        what = f"the response of model {ds.attrs['model']!r} is noise-driven"
        why = ("the Dirac term at its kinks is a density estimate, with heavy tails: such a solve can also be biased "
               "beyond its standard error, docs/dmft_theory.md, 'Finite-path bias at the narrow width'")
        more = f" or a wider kink_bandwidth (now {ds.attrs['kink_bandwidth']:g})" + _boundary_hint(ds)
    else:
        what = "the solve is noise-driven"
        why = ("too few paths for its response estimates, whose tails grow heavy at long horizons: such a solve can "
               "also be biased beyond its standard error, docs/dmft_theory.md, 'Stretched grids'")
        more = ""
    errors.warn(f"dmft.solve: {what}: a standard error of {rel[i]:.0%} of the value at t = {float(ds.time[i]):.3g} "
                f"({why}); pass more n_paths (now {ds.attrs['n_paths']}){more}",
                errors.DiracResponseWarning if kinked else errors.NoiseDrivenWarning, stacklevel=4)


def _boundary_hint(ds) -> str:
    """For a smoothed GF solve of one student direction: the estimator without the smoothing's tails."""
    if ds.attrs.get("dynamics") == "gf" and ds.attrs.get("k") == 1 and ds.attrs.get("kink_response") == "smoothed":
        return ("; with one kink in r, kink_response='boundary' gives GF's response without the smoothing's heavy "
                "tails (docs/dmft_theory.md, 'Kinks')")
    return ""


def _extrapolate_kinks(ds, wide):
    """Richardson extrapolation in the kink width ``h``, whose smoothing bias is first order
    (samples pile up at a kink, docs/dmft_theory.md, "Kinks"): ``2 x(h) - x(2h)`` for every
    output, from ``wide``, the solve at ``2 h`` on the same random inputs; standard errors
    ``sqrt(4 se(h)^2 + se(2h)^2)``."""
    bias = 0.0
    for fine, rough in ((ds.test_loss.values, wide.test_loss.values), (_trace(ds.norm), _trace(wide.norm))):
        bias = max(bias, float(np.max(np.abs(fine - rough)) / max(np.max(np.abs(fine)), 1e-300)))
    out = ds.copy()
    for name in ds.data_vars:
        if name.endswith("_sem"):
            out[name].values = np.sqrt(4 * ds[name].values ** 2 + wide[name].values ** 2)
        elif name + "_sem" in ds:
            out[name].values = 2 * ds[name].values - wide[name].values
    out.attrs.update(kink_extrapolation="2 x(h) - x(2h)", kink_bias_estimate=bias)
    return out


def _kink_planes(model, keep, wstar, eps, B):
    """``(a, off, width, x, xp)`` for :func:`dmft.multipass._kernels_solve.sample_cell`: the rows
    ``keep`` of ``model.kink_planes()``, ``a_r . r + a_* . r* + a_eps . eps = b``, as ``a = a_r``
    (m, k) and the per-path offsets ``off = b - a_* . r* - a_eps . eps`` (P, m); ``width``
    (B, m), ``x`` (P, m) and the previous event's ``xp`` (P, m) are filled during the solve."""
    planes = model.kink_planes()[keep]
    k, ks = model.k, model.k_star
    off = planes[:, -1] - wstar @ planes[:, k:k + ks].T - eps @ planes[:, k + ks:-1].T
    m, P = len(planes), len(wstar)
    return (np.ascontiguousarray(planes[:, :k]), np.ascontiguousarray(off), np.zeros((B, m)), np.zeros((P, m)),
            np.zeros((P, m)))


#: ghost pairs a GF path can hold at once (kink_response="boundary"; touches come in clusters
#: that hold one slot, and at most 0.02% of the paths filled 4 on phase retrieval)
GHOST_SLOTS = 4
#: a cluster of touches ends where the path rises this many kernel widths above its lowest touch
GHOST_RISE = 1.0


def _ghosts(P: int, B: int, Mt: int, N: int, k: int) -> tuple:
    """The boundary terms' state (``sample_cell_dense``, "Ghosts"): ``(xp2, tau, weight, offset,
    start, dforce, hb, open_slot, open_min, rise)`` for ``P`` paths of which ``B Mt`` carry
    tangents, ``GHOST_SLOTS`` slots each, ``rise = GHOST_RISE``; ``P = 0``: none."""
    G = GHOST_SLOTS
    return (np.zeros((P, 1)), np.full((P, G), -1, np.int64), np.zeros((P, G)), np.zeros((P, G)),
            np.zeros((P, G), np.int64), np.zeros((B * Mt, G, 2, N + 1 if P else 0, k)), np.zeros(B),
            np.full(P, -1, np.int64), np.zeros(P), GHOST_RISE)


def _kink_widths(kinks, bandwidth: float, B: int, ghosts=None):
    """The smoothing width of each kink: ``bandwidth`` times the replica's standard
    deviation of the paths' latest distance ``x`` to it (0 when all paths sit on it). With the
    boundary terms (``ghosts``) no kink is smoothed (width -1: crossings take their saltation) and
    that width is the kernel's of the boundary terms; the paths' last two distances move back."""
    a, _, width, x, xp = kinks
    if len(a):
        width[:] = bandwidth * x.reshape(B, -1, len(a)).std(axis=1)
        if ghosts is not None:
            ghosts[6][:] = width[:, 0]
            width[:] = -1.0
            ghosts[0][:] = xp
            xp[:] = x


def _blow_up(arguments: dict, gridded: bool, t_bad: float, dt: float, max_memory_gb: float, blamed: bool):
    """The :class:`~dmft.errors.DivergenceError` of ``C(t, t)`` blowing up at ``t_bad``, with its cause.

    ``'model'`` when ``blamed``: a gradient is not finite although the fields of the step are
    finite and moderate (:func:`_integrate`'s diagnostics); a driver without a grid error (``gridded`` False:
    SGD, events at their exact times):
    ``'learning_rate'``; SME and GF: a solve with half the step on ``[0, 1.5 t_bad + 2 dt]``
    (a quarter of the paths, pseudo-random inputs) decides: ``'learning_rate'`` if it blows up
    by ``1.25 t_bad + 2 dt`` too (the dynamics itself diverges), else ``'time_step'``; with
    fewer than ``_FEW_PATHS_PER_REPLICA`` paths per replica, ``'n_paths'`` instead of
    ``'learning_rate'`` when ``_MORE_PATHS`` times the paths stay finite
    (:func:`_more_paths_stay_finite`).
    """
    where = f"dmft.solve(dynamics={arguments['dynamics']!r}): C(t, t) diverged at time {t_bad:.4g}"
    if blamed:
        return errors.DivergenceError(
            f"{where}: the model's gradient is not finite at finite fields |r| <= {_config.MODERATE_FIELD:g}", t_bad,
            cause="model")
    if not gridded or getattr(_REFINING, "active", False):
        return errors.DivergenceError(where, t_bad, cause="learning_rate")
    t_end = 1.5 * t_bad + 2 * dt
    n_paths = arguments["n_paths"] or DRIVERS[arguments["dynamics"]](arguments["batch"]).default_paths(False)  # a probe
    kw = {**arguments, "t_max": t_end, "dt": dt / 2, "n_time": 2, "times": None, "progress": False, "check_dt": False,
          "on_divergence": "raise", "sampling": "mc", "max_memory_gb": max_memory_gb,
          "n_paths": max(n_paths // 4, 2 * arguments["n_replicas"])}
    try:
        _check_solve(kw)  # no cause is looked for in the probe's own blow-up
        refined = None
    except errors.DivergenceError as e:
        if e.cause == "time_step":  # dt/2 is unstable too
            return errors.DivergenceError(f"{where} at {_lr_dt(arguments['lr'], dt)}; with dt/2 the grid is "
                                          "still unstable", t_bad, cause="time_step")
        refined = e.time
    except errors.ParameterError:  # the check would exceed max_memory_gb: say so
        return errors.DivergenceError(f"{where} (not checked with a smaller dt: memory)", t_bad)
    if refined is not None and refined <= 1.25 * t_bad + 2 * dt:
        more = _more_paths_stay_finite(arguments, t_bad, dt, max_memory_gb)
        if more is not None:
            return errors.DivergenceError(f"{where} with {arguments['n_paths']} paths; {more}", t_bad, cause="n_paths")
        return errors.DivergenceError(f"{where}; with dt/2 it diverges at {refined:.4g} too", t_bad)
    return errors.DivergenceError(
        f"{where} at {_lr_dt(arguments['lr'], dt)}; with dt/2 = {dt / 2:.3g} it "
        + ("stays finite" if refined is None else f"diverges only at {refined:.4g}") + f" up to {t_end:.4g}", t_bad,
        cause="time_step")


def _lr_dt(lr, dt: float) -> str:
    """``'lr * dt = x'`` for a message (a schedule: at ``t = 0``)."""
    schedule = _schedules.as_schedule(lr)
    if isinstance(schedule, _schedules.Constant):
        return f"lr * dt = {schedule.lr * dt:.3g}"
    return f"lr(0) * dt = {schedule(0.0, 0.0) * dt:.3g}"


#: a blow-up of a solve with fewer paths per replica than this is also tried with
#: ``_MORE_PATHS`` times as many: the kernels' Monte Carlo noise can drive it
_FEW_PATHS_PER_REPLICA = 512
_MORE_PATHS = 8


def _more_paths_stay_finite(arguments: dict, t_bad: float, dt: float, max_memory_gb: float):
    """With few paths per replica: the solve again on ``[0, 1.5 t_bad + 2 dt]`` with
    ``_MORE_PATHS`` times the paths (same step); a sentence saying so if it stays finite up
    to ``1.25 t_bad + 2 dt`` (the blow-up is the Monte Carlo noise's), else None."""
    paths = arguments["n_paths"]
    if paths is None or paths // arguments["n_replicas"] >= _FEW_PATHS_PER_REPLICA:
        return None
    t_end = 1.5 * t_bad + 2 * dt
    kw = {**arguments, "t_max": t_end, "n_time": 2, "times": None, "progress": False, "check_dt": False,
          "on_divergence": "raise", "max_memory_gb": max_memory_gb, "n_paths": _MORE_PATHS * paths}
    try:
        _check_solve(kw)
    except errors.DivergenceError as e:
        if e.time <= 1.25 * t_bad + 2 * dt:
            return None
    except errors.ParameterError:  # more paths would exceed max_memory_gb
        return None
    return f"with {_MORE_PATHS * paths} paths it stays finite up to {t_end:.4g}"


def _step_instability(C, train, out_steps, dt: float, ridge: float, delta: float, dynamics: str, k: int = 1,
                      trace=None, time_grid=grids.Uniform()):
    """A :class:`~dmft.errors.DivergenceError` (cause ``'time_step'``) if the grid is unstable, else None.

    ``C`` (B, (N+1) k, (N+1) k) per replica; ``train`` (n_time, B) at ``out_steps``;
    ``trace`` (B, N+1): ``tr`` of the norm per replica (default: of ``C``'s diagonal; with
    anisotropic data the Euclidean norm, which the ridge penalises); ``time_grid`` maps grid
    step ``n`` to the training time ``tau(n dt)`` of the messages.
    Two signs: ``tr C(t_n, t_n)`` oscillating at the grid scale without decaying (the
    amplitude of ``(-1)^n`` in ``x_n``, a third difference ``(x_{n-1} - 3 x_n + 3 x_{n+1} -
    x_{n+2}) / 8`` that vanishes on quadratics, alternating in sign over ``_SAWTOOTH_STEPS``
    steps or more above 4 replica standard errors and ``_SAWTOOTH_REL`` of ``x``, and growing
    over that run or lasting to ``t_max``); and for GF, whose objective
    ``train_loss + ridge tr(norm) / (2 delta)`` never increases, an increase between
    output times beyond 4 standard errors and 1e-3 of its value.
    """
    B, NK, _ = C.shape
    N = NK // k - 1  # the last output step is N only when the output times reach t_max
    x = np.einsum("bii->bi", C).reshape(B, N + 1, k).sum(-1) if trace is None else trace
    if N >= _SAWTOOTH_STEPS + 3:
        s = (x[:, :-3] - 3 * x[:, 1:-2] + 3 * x[:, 2:-1] - x[:, 3:]) / 8
        amp, se = s.mean(0), _stats.sem(s)
        big = (np.abs(amp) > 4 * se) & (np.abs(amp) > _SAWTOOTH_REL * np.abs(x.mean(0)[1:-2]))
        flag = np.r_[big & np.r_[False, np.sign(amp[1:]) == -np.sign(amp[:-1])], False]
        edges = np.flatnonzero(np.diff(np.r_[0, flag.astype(int)]))  # alternating starts and ends of runs
        for a, b in zip(edges[::2], edges[1::2] - 1):
            # a run that grows (|g| >= 1) or lasts to t_max: a mode of the grid that does not decay
            if b - a + 1 >= _SAWTOOTH_STEPS and (abs(amp[b]) >= abs(amp[a]) or b == len(amp) - 1):
                n0 = int(a) + 1  # s[i] is centred at i + 1.5
                t0 = float(time_grid.t(n0 * dt))
                rel = float(np.max(np.abs(amp[a:b + 1]) / np.abs(x.mean(0)[a + 1:b + 2])))
                how = "growing" if abs(amp[b]) >= abs(amp[a]) else "up to t_max"
                return errors.DivergenceError(
                    f"dmft.solve(dynamics={dynamics!r}): the step dt = {dt:.4g} is unstable: tr C(t, t) oscillates "
                    f"at the grid scale from time {t0:.4g} ({how}, relative amplitude up to {rel:.2g})", t0,
                    cause="time_step")
    if dynamics == "gf":
        energy = train + ridge * x[:, out_steps].T / (2 * delta)  # (n_time, B)
        inc = np.diff(energy, axis=0)
        mean, se = inc.mean(1), _stats.sem(inc, 1)
        up = (mean > 4 * se) & (mean > 1e-3 * np.abs(energy[1:].mean(1)))
        if up.any():
            j = int(np.argmax(up)) + 1
            t = float(time_grid.t(out_steps[j] * dt))
            return errors.DivergenceError(
                f"dmft.solve(dynamics='gf'): the step dt = {dt:.4g} is unstable: the gradient-flow objective "
                f"increases by {mean[j - 1]:.3g} (+- {se[j - 1]:.2g}) up to time {t:.4g}", t, cause="time_step")
    return None


def _truncated(arguments: dict, err, times: np.ndarray, dt: float):
    """``on_divergence='truncate'``: the solve again on the output times before ``err.time``
    (raises ``err`` when fewer than two are left)."""
    keep = int(np.sum(times < err.time))
    if keep < 2:
        raise err
    if arguments["times"] is not None:
        ds = solve(**{**arguments, "t_max": None, "times": times[:keep], "dt": dt})
    else:
        ds = solve(**{**arguments, "t_max": float(times[keep - 1]), "n_time": keep, "dt": dt})
    ds.attrs.update(truncated=1, diverged_at=min(float(err.time), float(ds.attrs.get("diverged_at", np.inf))),
                    divergence_cause=ds.attrs.get("divergence_cause", err.cause))
    return ds


def _check_time_step(ds, arguments: dict, every: int, warn_noise: bool, own=None) -> dict:
    """The step-bias check of ``check_dt``: a solve with twice the step, and if it disagrees
    (or diverges) one with half the step, which decides. ``own``: ``(replicas, inputs)`` of the
    checked solve, its per-replica test loss and ``tr norm`` and its Gaussian inputs
    ``(Z, eps, xi, N, k)``, on which the check solves run (common random numbers,
    :func:`_nested_inputs`) and are compared replica by replica; None: independent inputs.
    Returns the attrs ``dt_check_max_z``, ``dt_check_step_error``, ``dt_check_dt``; raises
    :class:`~dmft.errors.DivergenceError` for a step error above
    :data:`~dmft.errors.STEP_BIAS_LIMIT` against the half step or a divergence there."""
    dt, name = ds.attrs["dt"], f"dmft.solve(dynamics={ds.attrs['dynamics']!r})"
    replicas, inputs = own if own is not None else (None, None)
    base = {**arguments, "check_dt": False, "progress": False, "on_divergence": "raise"}
    found = {"dt_check_max_z": 0.0, "dt_check_step_error": 0.0, "dt_check_dt": np.nan}
    coarse_kw, fine, kept = _coarser(ds, base, every)
    if coarse_kw is not None:
        try:
            coarse, coarse_replicas = _check_solve(coarse_kw, inputs=inputs)
        except errors.DivergenceError as e:
            coarse = None
            found.update(dt_check_max_z=np.inf, dt_check_step_error=np.inf, dt_check_dt=2 * dt)
            if warn_noise:
                warnings.warn(
                    f"{name}: the step dt = {dt:.4g} is not resolved: doubling the step makes the solve diverge ({e}); "
                    "pass a smaller dt", errors.UnresolvedTimeStepWarning, stacklevel=4)
        if coarse is not None:
            paired = None if replicas is None else ([r[:, kept] for r in replicas], coarse_replicas)
            # a screen: a step error the noise hides still goes to the decisive check
            flagged = _compare_steps(fine, coarse, found, name, warn_noise, paired=paired, screen=True)
            if flagged is None:
                return found
            refused = _noise_or_step(fine, coarse, flagged, name)
            if refused is not flagged:  # a noise-driven kinked solve: half the step only adds noise
                raise refused
    try:
        half, half_replicas = _check_solve({**base, "dt": dt / 2}, find_cause=True, inputs=inputs)
    except errors.DivergenceError as e:
        raise errors.DivergenceError(
            f"{name}: the step dt = {dt:.4g} is not resolved: with dt/2 = {dt / 2:.4g} the solve diverges at time "
            f"{e.time:.4g} (cause {e.cause.replace('_', ' ')})", e.time, e.threshold, cause=e.cause) from None
    except errors.ParameterError as e:  # dt/2 exceeds max_memory_gb or max_runtime_s
        raise errors.DivergenceError(
            f"{name}: the step dt = {dt:.4g} is not resolved: twice the step moves the outputs by more than "
            f"{errors.STEP_BIAS_LIMIT:.0%}, and the check with dt/2 does not fit the limits ({e})", 0.0,
            cause="time_step") from None
    found = {"dt_check_max_z": found["dt_check_max_z"], "dt_check_step_error": 0.0, "dt_check_dt": dt / 2}
    paired = None if replicas is None else (replicas, half_replicas)
    flagged = _compare_steps(ds, half, found, name, warn_noise, paired=paired)
    if flagged is not None:
        raise _noise_or_step(ds, half, flagged, name)
    err = found["dt_check_step_error"]
    if err > errors.STEP_BIAS_LIMIT:  # above the limit, but within the noise
        warnings.warn(
            f"{name}: the step check is noise-limited: the estimated step error is {err:.3g} times the test loss or "
            f"tr(norm), within {found['dt_check_max_z']:.1f} standard errors; the solve's Monte Carlo noise hides "
            f"whether dt = {dt:.4g} is resolved: pass more n_paths (now {ds.attrs['n_paths']})",
            errors.UnresolvedTimeStepWarning, stacklevel=4)
    return found


def _noise_or_step(ds, half, flagged, name: str):
    """The error of a step check that ``half`` (the solve with another step: half, or twice in
    the screen) flagged: ``flagged`` (cause ``'time_step'``), or cause ``'n_paths'`` where the
    solve is noise-driven (either solve's standard error above ``_KINK_NOISE_REL`` of the value
    up to the flagged time for a kinked solve; ``_NOISE_REL`` for any other, whose flagged
    difference is also within ``_NOISE_Z`` standard errors: beyond, a step error). Refining
    the step cannot settle it: a kinked solve's Dirac term is a density estimate whose noise grows as the
    step shrinks (the tangent of a path crossing a repelling kink at a small speed ``v`` grows
    like ``exp(c |J| / v)`` on a grid that resolves it; docs/dmft_theory.md, "Where the noise
    wins"), and a long horizon's tangents are heavy-tailed, with more noise on a finer grid
    (SME at ``t_max = 32``: the ``dt / 2`` solve's closures run away first, docs/dmft_theory.md,
    "Stretched grids"). Its curve is not returned."""
    kinked = ds.attrs.get("response_estimator") == "pathwise+smoothed_dirac"
    noise = max(float(np.nanmax(_relative_sem(x)[x.time.values <= flagged.time + 1e-12], initial=0.0))
                for x in (ds, half))
    significant = not kinked and getattr(flagged, "z", 0.0) > _NOISE_Z
    if noise <= (_KINK_NOISE_REL if kinked else _NOISE_REL) or significant:
        return flagged
    said = str(flagged).removesuffix("; " + errors.CAUSES["time_step"])
    if kinked:
        why = ("the Dirac term at the model's kinks is a density estimate, whose noise refining the step does not "
               "reduce" + _boundary_hint(ds))
    else:
        why = ("the tangents' heavy tails, whose noise a finer step raises; check_dt=False returns the curve with its "
               "standard errors")
    return errors.DivergenceError(
        f"{said.replace(' is not resolved:', ' cannot be checked:', 1)}; the solve is noise-driven (a standard error of "
        f"{noise:.0%} of the value by then: {why})", flagged.time, cause="n_paths")


def _coarser(ds, base: dict, every: int):
    """``(keyword arguments of the solve with twice the step, the outputs to compare it with,
    their output indices)``; with an even number of steps per output interval the coarse solve
    keeps the output times, else every second one (up to the last but one when ``n_time - 1``
    is odd), so that its grid is every second node of this one (the check's common random
    numbers need nested grids: 5 steps of 0.04 per output interval would otherwise become 3 of
    0.067); ``(None, None, None)`` with fewer than 3 times."""
    if every % 2 == 0:
        if 2 * ds.attrs["dt"] > ds.attrs["t_max"]:
            return None, None, None
        return {**base, "dt": 2 * ds.attrs["dt"]}, ds, slice(None)
    n = ds.sizes["time"] - (ds.sizes["time"] - 1) % 2
    if n < 3:
        return None, None, None
    kw = {**base, "dt": 2 * ds.attrs["dt"], "t_max": float(ds.time[n - 1]), "n_time": (n - 1) // 2 + 1}
    return kw, ds.isel(time=slice(0, n, 2), time2=slice(0, n, 2)), slice(0, n, 2)


def _check_solve(kw: dict, *, find_cause: bool = False, inputs=None):
    """``(solve(**kw), its per-replica test loss and tr norm)`` without its warnings (they are
    not the user's), on inputs built from ``inputs`` (the checked solve's ``(Z, eps, xi, N, k)``,
    see :func:`_common_inputs`; None: its own); a blow-up's cause is only looked for
    (:func:`_blow_up`) with ``find_cause``."""
    _REFINING.active, _CHECKING.active = not find_cause, True
    _COMMON.base = inputs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = solve(**kw)
        return ds, _CHECKING.replicas
    finally:
        _REFINING.active = _CHECKING.active = False
        _COMMON.base = None


def _common_inputs(N: int, ss):
    """The Gaussian inputs ``(Z, eps, xi)`` of a step check's solve with ``N`` grid steps, built
    from those of the solve it checks (:func:`_nested_inputs`, fresh normals from ``ss``), or
    None: any other solve, or grids of which neither refines the other."""
    base = getattr(_COMMON, "base", None)
    _COMMON.base = None  # this solve's inputs only, not those of the solves it starts
    return None if base is None else _nested_inputs(*base, N, np.random.default_rng(ss))


def _nested_inputs(Z, eps, xi, N0: int, k: int, N: int, rng):
    """Common random numbers: the inputs of a grid of ``N`` steps from those of a grid of
    ``N0`` steps on the same time origin (layout of :func:`_normals`: ``Z`` (P, ks + (N0+1) k),
    ``eps`` (P, nd), ``xi`` (P, N0 nxi)). A cell's normals (field innovation, driver normals)
    scale like increments over the cell: halving every cell (``N = 2 N0``) splits each ``u`` into
    ``(u + v) / sqrt(2)`` and ``(u - v) / sqrt(2)``, ``v`` fresh from ``rng``; doubling them
    (``2 N <= N0``: the first ``2 N`` cells) joins pairs into ``(u_1 + u_2) / sqrt(2)``. Both are
    orthogonal maps of independent standard normals, so the result is again independent standard
    normals, row by row (each replica keeps its paths), and the SME's Brownian increments over a
    cell are those of the other grid exactly. Teacher, label noise and the field at ``t_0`` are
    shared. None when neither grid refines the other."""
    if N != 2 * N0 and 2 * N > N0:
        return None
    P = Z.shape[0]
    head = Z.shape[1] - N0 * k  # teacher and the field at t_0

    def cells(U):
        U = U.reshape(P, N0, -1) if U.shape[1] else np.zeros((P, N0, 0))
        if N == 2 * N0:
            V = rng.standard_normal(U.shape)
            return np.stack([U + V, U - V], axis=2).reshape(P, -1) / math.sqrt(2)
        return (U[:, 0:2 * N:2] + U[:, 1:2 * N:2]).reshape(P, -1) / math.sqrt(2)

    return np.hstack([Z[:, :head], cells(Z[:, head:])]), eps, cells(xi)


def _compare_steps(fine, other, found: dict, name: str, warn_noise: bool, paired=None, screen: bool = False):
    """Compare the test loss and ``tr norm`` of ``fine`` (step ``dt``) with ``other`` (step
    ``dt'``) at the output times: ``z = |difference| / SE`` and the estimated relative step error
    ``|difference| / |(dt'/dt)^p - 1|`` of ``fine`` (Richardson, order ``p`` of
    the driver's ``step_order``) per the test loss (or ``tr norm``'s largest value). The SE is that of the
    replica-by-replica differences with ``paired`` (``(fine's, other's)`` per-replica test loss and
    ``tr norm``, (B, n_time) each: common random numbers make it smaller than the combined SE),
    else the combined SE. Updates ``found``; returns the :class:`~dmft.errors.DivergenceError` of
    the first time at which the step error exceeds :data:`~dmft.errors.STEP_BIAS_LIMIT` and
    ``z > 2``, or None. With ``screen``, also where the estimate's own standard error is above
    half the limit (a step error at the limit would not stand out by 2 SE: refine to see)."""
    dt, dt_other = fine.attrs["dt"], other.attrs["dt"]
    order = DRIVERS[fine.attrs["dynamics"]].step_order
    ratio = 1 / abs((dt_other / dt) ** order - 1)
    tr_f, tr_o = _trace(fine.norm), _trace(other.norm)
    pairs = [("test loss", fine.test_loss.values, other.test_loss.values, fine.test_loss_sem.values,
              other.test_loss_sem.values, np.abs(fine.test_loss.values)),
             ("tr norm", tr_f, tr_o, np.sqrt(_trace(fine.norm_sem ** 2)), np.sqrt(_trace(other.norm_sem ** 2)),
              np.full(tr_f.shape, np.max(np.abs(tr_f))))]
    first = None
    for i, (what, x, y, se_x, se_y, scale) in enumerate(pairs):
        diff = np.abs(x - y)
        if paired is None:
            se = np.hypot(se_x, se_y)
        else:
            d = paired[0][i] - paired[1][i]
            se = _stats.sem(d)
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), 0.0)
        per_scale = ratio / np.where(scale > 0, scale, np.inf)
        rel = diff * per_scale
        found["dt_check_max_z"] = max(found["dt_check_max_z"], float(z.max(initial=0.0)))
        found["dt_check_step_error"] = max(found["dt_check_step_error"], float(rel.max(initial=0.0)))
        # above the limit, and significant or too noisy to be told from a step error at the limit
        noisy = 2 * se * per_scale > errors.STEP_BIAS_LIMIT
        bad = np.flatnonzero((rel > errors.STEP_BIAS_LIMIT) & ((z > 2) | (screen & noisy)))
        if bad.size and (first is None or fine.time.values[bad[0]] < first[0]):
            j = bad[0]
            first = (float(fine.time.values[j]), what, x[j], y[j], rel[j], z[j])
    found["dt_check_dt"] = dt_other
    if warn_noise and found["dt_check_max_z"] > 4:
        warnings.warn(
            f"{name}: the step dt = {dt:.4g} is not resolved: the step {dt_other:.4g} moved the test loss or tr(norm) "
            f"by {found['dt_check_max_z']:.1f} standard errors; pass a smaller dt", errors.UnresolvedTimeStepWarning,
            stacklevel=5)
    if first is None:
        return None
    t, what, x, y, rel, z = first
    err = errors.DivergenceError(
        f"{name}: the step dt = {dt:.4g} is not resolved: at time {t:.4g} the {what} is {x:.4g}, with the step "
        f"{dt_other:.4g} {y:.4g}, an estimated step error of {rel:.0%} > {errors.STEP_BIAS_LIMIT:.0%} ({z:.1f} "
        "standard errors)", t, cause="time_step")
    err.z = float(z)  # the difference in standard errors (:func:`_noise_or_step`)
    return err


def _trace(da) -> np.ndarray:
    """``tr`` over the last two (student) dims of ``norm`` -> (time,)."""
    return da.values.diagonal(axis1=-2, axis2=-1).sum(-1)


def _test_loss_error(model, q, mo, rho, sem, mixture=None, n_checks: int = 6, threads: int = 1) -> float:
    """Largest estimated integration error of the test loss (the quadrature against a refined
    rule) at ``n_checks`` output times spread over the run; a :class:`QuadratureWarning` when
    it exceeds a third of the test loss's standard error there (outputs with no spread, such
    as a deterministic start, have no such yardstick and only enter the reported error).
    The error is a smooth function of ``(q, m)``, so a few times bound it along the run. A
    ``mixture``: ``q`` per class, ``mo`` the class means, the error the class-weighted sum.
    The times' quadratures run on ``threads`` (:func:`_on_threads`)."""
    worst, worst_ratio, at = 0.0, 0.0, 0
    spread = 1e-9 * float(np.max(sem))  # below: round-off of a deterministic output
    checked = np.unique(np.linspace(0, q.shape[0] - 1, n_checks).round().astype(int))
    errs = {}

    def quadratures(times):
        for n in times:
            if mixture is None:
                cov = np.block([[q[n], mo[n]], [mo[n].T, rho]])
                errs[n] = expectation.gaussian_moments(model, np.zeros(len(cov)), cov, error=True).error
            else:
                errs[n] = sum(p * mom.error for p, mom in _class_moments(model, mixture, q[n], mo[n], error=True))

    _on_threads(quadratures, checked, threads)
    for n in checked:
        err = errs[n]
        ratio = err / sem[n] if sem[n] > spread else 0.0
        worst = max(worst, err)
        if ratio > worst_ratio:
            worst_ratio, at = ratio, n
    if worst_ratio > 1 / 3:
        errors.warn(
            f"dmft.solve: the test loss's estimated integration error {worst:.3g} exceeds a third of its "
            f"standard error ({sem[at]:.3g} at output {at}); pass a finer expectation rule or declare the "
            "model's kinks (models.Model.kinks)", errors.QuadratureWarning, stacklevel=3)
    return float(worst)


def _class_moments(model, mixture, q, M, error=False):
    """``[(pi_c, Moments of l(r, y_c) over r ~ N(M[:, c], q[c]))]`` per class of a ``mixture``."""
    return [(p, expectation.gaussian_moments(model, M[:, c], q[c], label=mixture.labels[c], error=error))
            for c, p in enumerate(mixture.probs)]


def _test_losses(model, q, mo, q_b, m_b, rho, mixture=None, threads: int = 1):
    """Test loss ``E l(r, y)``, ``(r, w*)`` Gaussian ``[[q, m], [m^T, rho]]``, at the replica
    means, and per replica to first order (Price's theorem: ``dL/dq = E[l'']/2``,
    ``dL/dm = E[d2 l/dr dr*]``, both returned by the same quadrature). A ``mixture``: ``mo``
    (T, k, C) are the class means, ``q`` (T, C, k, k), ``L = sum_c pi_c E l(M_c + w_c, y_c)``, ``w_c ~ N(0, q_c)``,
    ``dL/dq = sum_c pi_c E[l''_c]/2``, ``dL/dM_c = pi_c E[l'_c]``. The output times' quadratures
    run on ``threads`` (:func:`_on_threads`; each time's numbers are its own)."""
    T = q.shape[0]
    out = np.zeros(T)
    lin = np.zeros(q_b.shape[:2])
    fill = _mixture_test_losses if mixture is not None else _plain_test_losses
    _on_threads(lambda times: fill(model, q, mo, q_b, m_b, rho, mixture, times, out, lin), range(T), threads)
    return out, lin


def _plain_test_losses(model, q, mo, q_b, m_b, rho, mixture, times, out, lin):
    """:func:`_test_losses` without a mixture at the output ``times``, into ``out`` and ``lin``."""
    k, ks = model.k, model.k_star
    zeros = np.zeros(k + ks)
    cov = np.zeros((k + ks, k + ks))
    cov[k:, k:] = rho
    for n in times:
        cov[:k, :k] = q[n]
        cov[:k, k:] = mo[n]
        cov[k:, :k] = mo[n].T
        mom = expectation.gaussian_moments(model, zeros, cov)
        out[n] = mom.loss
        dq = q_b[:, n] - q[n]
        dm = m_b[:, n] - mo[n]
        lin[:, n] = mom.loss + 0.5 * np.einsum("ab,xab->x", mom.hess, dq) + np.einsum(
            "ae,xae->x", mom.hess_star, dm)


def _mixture_test_losses(model, q, M, q_b, M_b, rho, mixture, times, out, lin):
    """:func:`_test_losses` of a ``mixture`` at the output ``times``, into ``out`` and ``lin`` (zeros):
    ``q`` (T, C, k, k) each class's field covariance, ``M`` (T, k, C), and per replica ``q_b``, ``M_b``."""
    for n in times:
        for c, (p, mom) in enumerate(_class_moments(model, mixture, q[n], M[n])):
            out[n] += p * mom.loss
            lin[:, n] += p * (mom.loss + 0.5 * np.einsum("ab,xab->x", mom.hess, q_b[:, n, c] - q[n, c])
                              + (M_b[:, n, :, c] - M[n, :, c]) @ mom.grad)
