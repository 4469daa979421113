"""Time grids of the multi-pass DMFT (docs/dmft_theory.md, "Stretched grids").

:func:`dmft.solve` steps on a uniform grid of an internal time ``u`` (step ``dt``) and maps
it to the training time ``t = tau(u)``. Solving the DMFT of the time-changed dynamics is
exact: in ``u`` an SGD path's events arrive at rate ``batch tau'(u)`` and keep their step,
and the drift and the noise variance of SME and GF (and the ridge) take the factor
``tau'(u)``. So a grid whose steps grow with ``t`` (``dt tau'(u)`` in training time) costs
the solver no new equation, only fewer grid points at long horizons.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import errors

__all__ = ["Uniform", "Stretched"]


@dataclass(frozen=True)
class Uniform:
    """Steps of ``dt`` everywhere: ``t = u`` (the default)."""

    def t(self, u):
        """Training time ``tau(u)`` of the internal times ``u``."""
        return np.asarray(u, dtype=float)

    def u(self, t):
        """Internal time ``tau^-1(t)`` of the training times ``t``."""
        return np.asarray(t, dtype=float)

    def speed(self, u):
        """``tau'(u)``: a grid step of ``dt`` at ``u`` spans ``dt tau'(u)`` of training time."""
        return np.ones(np.shape(u))

    def kinks(self) -> np.ndarray:
        """The ``u`` where ``tau'`` has a kink (the cell means integrate piece by piece)."""
        return np.zeros(0)


@dataclass(frozen=True)
class Stretched:
    """Steps of ``dt`` up to ``t = t_fine``, then growing in proportion to ``t`` (steps of
    ``dt t / t_fine``, log-spaced grid points) until they reach ``max_ratio dt``, then
    constant:

        tau(u) = u                              for u <= a,            a = t_fine
        tau(u) = a exp((u - a) / a)             for a <= u <= u1,      u1 = a + a ln(max_ratio)
        tau(u) = a max_ratio + max_ratio (u - u1)   beyond.

    ``tau`` and ``tau'`` are continuous, ``tau''`` jumps at ``a`` and ``u1``. The grid points
    up to ``t_max`` are ``u_max / dt`` with ``u_max = a + a ln(t_max / a)`` while ``t_max <= a
    max_ratio``: a doubling of ``t_max`` adds ``a ln 2 / dt`` of them. The fine steps resolve
    the start, the coarse ones the slow late dynamics; the accuracy against the uniform grid
    is measured in docs/dmft_theory.md, "Stretched grids".

    ``max_ratio=None`` (default): :func:`dmft.solve` takes the largest step its driver keeps
    accurate, ``lr max_step = 0.32`` for SGD and ``0.16`` for SME and GF (``lr`` the largest
    rate, times the largest eigenvalue for anisotropic data), and records the grid it used in
    ``attrs['time_grid']``."""

    t_fine: float = 4.0
    max_ratio: float | None = None

    def __post_init__(self):
        errors.positive("t_fine", self.t_fine)
        if self.max_ratio is not None and (not (self.max_ratio >= 1.0) or not math.isfinite(self.max_ratio)):
            raise errors.ParameterError(f"max_ratio={self.max_ratio!r} is not allowed: max_ratio must be None or a "
                                        "finite number >= 1 (the largest step in units of dt)")

    @property
    def _m(self) -> float:
        if self.max_ratio is None:
            raise errors.ParameterError("max_ratio=None is not allowed here: dmft.solve chooses it from the driver "
                                        "and lr; pass a number to use the map by itself")
        return self.max_ratio

    @property
    def _u1(self) -> float:
        return self.t_fine * (1.0 + math.log(self._m))

    def t(self, u):
        u = np.asarray(u, dtype=float)
        a, m, u1 = self.t_fine, self._m, self._u1
        mid = a * np.exp((np.clip(u, a, u1) - a) / a)
        return np.where(u <= a, u, np.where(u <= u1, mid, a * m + m * (u - u1)))

    def u(self, t):
        t = np.asarray(t, dtype=float)
        a, m, u1 = self.t_fine, self._m, self._u1
        mid = a + a * np.log(np.clip(t, a, a * m) / a)
        return np.where(t <= a, t, np.where(t <= a * m, mid, u1 + (t - a * m) / m))

    def speed(self, u):
        u = np.asarray(u, dtype=float)
        a, m = self.t_fine, self._m
        return np.clip(np.exp((u - a) / a), 1.0, m)

    def kinks(self) -> np.ndarray:
        return np.array([self.t_fine, self._u1])


def check(time_grid, t_max: float):
    """The grid that ``time_grid`` stands for, else ParameterError. ``None`` chooses from the
    horizon: :class:`Uniform` up to ``t_max = 2 t_fine`` of the default :class:`Stretched`
    (where a stretched grid saves at most 15% of them), ``Stretched()``
    beyond."""
    if time_grid is None:
        return Stretched() if t_max > 2 * Stretched.t_fine else Uniform()
    if not isinstance(time_grid, (Uniform, Stretched)):
        raise errors.ParameterError(f"time_grid={time_grid!r} is not allowed: time_grid must be None, "
                                    "dmft.grids.Uniform() or dmft.grids.Stretched(...)")
    return time_grid
