"""Learning-rate schedules for one-pass SGD (docs/onepass.md, "Schedules").

Each schedule maps time ``t`` and the accumulated squared gradient
``acc(t) = int_0^t sum_c p_c (Tr K_c/d) tr I_c(s) ds`` (the deterministic equivalent of
``d^-2 sum_{l<=j} |grad_X f_l|^2``) to a learning rate ``gamma_t``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import errors

__all__ = ["Constant", "TimeDependent", "AdaGradNorm"]


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
    if isinstance(lr, (Constant, TimeDependent, AdaGradNorm)):
        return lr
    if callable(lr):
        return TimeDependent(lr)
    return Constant(errors.positive("lr", lr))
