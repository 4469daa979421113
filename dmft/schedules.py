"""Learning-rate schedules (docs/onepass.md, "Schedules"; docs/simulate.md, "Learning-rate schedules").

Each schedule maps time ``t`` and the accumulated squared gradient
``acc(t) = int_0^t sum_c p_c (Tr K_c/d) tr I_c(s) ds`` (the deterministic equivalent of
``d^-2 sum_{l<=j} |grad_X f_l|^2``) to a learning rate ``gamma_t``; ``rates(t)`` gives the
rates at an array of times for the schedules of time alone. ``onepass`` takes all of them,
:func:`dmft.simulate`, :func:`dmft.solve` and :func:`dmft.compare` those of time alone (in their
time units: ``lr(t)`` is the scale ``eta_bar``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import errors, grids

__all__ = ["Constant", "TimeDependent", "StepDecay", "Cosine", "AdaGradNorm"]


@dataclass(frozen=True)
class Constant:
    """``gamma_t = lr`` at every time (what a number given as ``lr`` stands for)."""

    lr: float = 0.5

    def __post_init__(self):
        errors.positive("lr", self.lr)

    def __call__(self, t: float, acc: float) -> float:
        return self.lr

    def rates(self, t: np.ndarray) -> np.ndarray:
        """``gamma`` at each time of ``t`` (the simulator's per-step rates)."""
        return np.full(np.shape(t), float(self.lr))


@dataclass(frozen=True)
class TimeDependent:
    """``gamma_t = fn(t)`` for any positive function of time."""

    fn: Callable[[float], float]

    def __post_init__(self):
        if not callable(self.fn):
            raise errors.ParameterError(f"fn={self.fn!r} is not allowed: fn must be a callable t -> learning rate")

    def __call__(self, t: float, acc: float) -> float:
        g = float(self.fn(t))
        if not (g > 0) or not math.isfinite(g):
            raise errors.ParameterError(f"lr(t={t:.4g})={g!r} is not allowed: the schedule must return a positive finite number")
        return g

    def rates(self, t: np.ndarray) -> np.ndarray:
        """``gamma`` at each time of ``t`` (the simulator's per-step rates)."""
        return np.array([self(float(s), 0.0) for s in t])


@dataclass(frozen=True)
class StepDecay:
    """``gamma_t = lr factor^floor(t/every)``: the rate drops by ``factor`` every ``every`` time units.

    A time within ``1e-12 every`` below a jump counts as after it, so that a time computed as
    ``j every`` (a step or a jump of a simulation) has the rate after the ``j``-th drop despite rounding.
    """

    lr: float = 0.5
    factor: float = 0.5
    every: float = 1.0

    def __post_init__(self):
        errors.positive("lr", self.lr)
        if errors.positive("factor", self.factor) > 1.0:
            raise errors.ParameterError(f"factor={self.factor!r} is not allowed: factor must be in (0, 1]")
        errors.positive("every", self.every)

    def __call__(self, t: float, acc: float) -> float:
        return float(self.rates(np.array([t]))[0])

    def rates(self, t: np.ndarray) -> np.ndarray:
        """``gamma`` at each time of ``t`` (the simulator's per-step rates)."""
        return self.lr * self.factor ** np.floor(np.asarray(t, dtype=float) / self.every + 1e-12)

    def jumps(self, t_end: float) -> np.ndarray:
        """The times ``j every`` in ``(0, t_end)`` where the rate jumps (the simulators' integrators restart there)."""
        j = np.arange(1, math.ceil(t_end / self.every) + 1)
        return self.every * j[self.every * j < t_end - 1e-12 * self.every]


@dataclass(frozen=True)
class Cosine:
    """``gamma_t = lr_min + (lr - lr_min) (1 + cos(pi t / t_max)) / 2`` up to ``t_max``, then ``lr_min``."""

    lr: float = 0.5
    t_max: float = 1.0
    lr_min: float = 0.0

    def __post_init__(self):
        errors.positive("lr", self.lr)
        errors.positive("t_max", self.t_max)
        errors.in_range("lr_min", self.lr_min, 0.0, self.lr, closed_high=True)

    def __call__(self, t: float, acc: float) -> float:
        return float(self.rates(np.array([t]))[0])

    def rates(self, t: np.ndarray) -> np.ndarray:
        """``gamma`` at each time of ``t`` (the simulator's per-step rates)."""
        u = np.minimum(np.asarray(t, dtype=float) / self.t_max, 1.0)
        return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1.0 + np.cos(np.pi * u))


@dataclass(frozen=True)
class AdaGradNorm:
    """``gamma_t = lr / sqrt(b0^2 + acc(t))`` (AdaGrad-Norm; normalisation in docs/onepass.md, "Schedules")."""

    lr: float = 1.0
    b0: float = 1.0

    def __post_init__(self):
        errors.positive("lr", self.lr)
        errors.positive("b0", self.b0)

    def __call__(self, t: float, acc: float) -> float:
        return self.lr / math.sqrt(self.b0**2 + acc)


def as_schedule(lr):
    if isinstance(lr, (Constant, TimeDependent, StepDecay, Cosine, AdaGradNorm)):
        return lr
    if callable(lr):
        return TimeDependent(lr)
    return Constant(errors.positive("lr", lr))


def jump_times(schedule, t_end: float) -> np.ndarray:
    """The times in ``(0, t_end)`` where ``schedule`` jumps (those of :class:`StepDecay`; none for the
    others): the ODE integrators of both packages integrate piece by piece between them."""
    return schedule.jumps(t_end) if isinstance(schedule, StepDecay) else np.zeros(0)


def rate_between(schedule, t: float, a: float, b: float, acc: float = 0.0) -> float:
    """The rate at ``t`` for an integrator step inside ``[a, b]``, a piece between two jumps: ``t``
    is moved ``1e-7 (b - a)`` inside, so that a stage at a jump takes the rate of its piece."""
    return schedule(min(max(t, a + 1e-7 * (b - a)), b - 1e-7 * (b - a)), acc)


def peak_rate(schedule, times, t_max: float) -> float:
    """The largest rate of ``schedule`` at the output times and 1025 equally spaced times of
    ``[0, t_max]`` (the step checks and estimates of the multi-pass solver and simulator use it),
    after checking that those rates are finite and >= 0 and not all 0 (ParameterError naming
    ``lr``; ``TimeDependent`` refuses non-positive rates itself)."""
    g = schedule.rates(np.union1d(np.linspace(0.0, t_max, 1025), times))
    if not np.all(np.isfinite(g)) or np.any(g < 0) or not np.any(g > 0):
        raise errors.ParameterError(
            f"lr={schedule!r} is not allowed: its rates on [0, t_max] must be finite and >= 0, not all 0 "
            f"(they span {np.min(g)!r} .. {np.max(g)!r})")
    return float(g.max())


#: Gauss-Legendre nodes and weights on [-1, 1] of :func:`cell_means` (exact for polynomials of degree 9)
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(5)


def cell_means(schedule, edges: np.ndarray, power: int = 1, time_grid=None) -> np.ndarray:
    """``(1/(b - a)) int_a^b lr(s)^power ds`` over each cell ``[a, b]`` of ``edges`` (M+1,) -> (M,).

    Five-point Gauss-Legendre on each piece of a cell between the jumps of a :class:`StepDecay`
    (where the rate is constant, so the mean is exact), i.e. to ``O((b - a)^10)`` for a smooth rate.
    With a ``time_grid`` of :mod:`dmft.grids` (None: :class:`~dmft.grids.Uniform`, ``u = t``)
    the ``edges`` are internal times ``u`` and the mean is that of ``lr(tau(u))^power tau'(u)``
    (the grid's kinks of ``tau'`` cut the pieces too)."""
    edges = np.asarray(edges, dtype=float)
    clock = grids.Uniform() if time_grid is None else time_grid
    kinks = clock.kinks()
    cuts = np.union1d(edges, np.r_[clock.u(jump_times(schedule, float(clock.t(edges[-1])))),
                                   kinks[(kinks > edges[0]) & (kinks < edges[-1])]])
    a, b = cuts[:-1], cuts[1:]
    mid, half = 0.5 * (a + b), 0.5 * (b - a)
    nodes = (mid[:, None] + half[:, None] * _GL_NODES).ravel()
    # tau'^(1/power), raised to power below: the noise variance takes tau' once
    g = (schedule.rates(clock.t(nodes)) * clock.speed(nodes) ** (1.0 / power)).reshape(len(a), -1)
    piece = half * ((g**power) @ _GL_WEIGHTS)  # int over each piece
    cell = np.clip(np.searchsorted(edges, mid, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(cell, weights=piece, minlength=len(edges) - 1) / np.diff(edges)
