"""Anisotropic teacher-student data for :func:`dmft.simulate` and :func:`dmft.solve` (docs/dmft_anisotropic.md).

The data objects are those of :mod:`dmft.data` (one class, zero mean, a teacher, a
diagonal covariance ``K = diag(lam_i)``). Units: ``onepass`` samples ``a ~ N(0, K)`` and
teacher rows ``x*`` with ``|x*| ~ 1``; the multi-pass conventions (docs/dmft_theory.md,
section 1) use ``x = a / sqrt(d) ~ N(0, K/d)`` and ``theta* = sqrt(d) x*^T``, so that
``r* = theta*^T x = x* a`` is the same pre-activation and ``theta*^T theta*/d = x* x*^T``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import data as _data, errors


def check_data(data, model):
    """``data`` if it is one-class teacher-student data for ``model``, else ParameterError."""
    if not isinstance(data, _data.GaussianMixture):
        raise errors.ParameterError(
            f"data={data!r} is not allowed: data must be teacher-student data from dmft.data (the same "
            "module as onepass.data; e.g. dmft.data.teacher_student('power_law', d=1000)) or None")
    if data.n_classes != 1 or np.any(data.means != 0.0):
        raise errors.ParameterError(
            f"data={data.name!r} is not allowed: the multi-pass solver and simulators take one class with zero mean "
            f"(teacher-student data); this data has {data.n_classes} classes and mean norms {data.mean_norms.tolist()}")
    if data.teacher is None:
        raise errors.ParameterError(f"data={data.name!r} is not allowed: the multi-pass data needs a teacher")
    if data.k_star != model.k_star:
        raise errors.ParameterError(
            f"data={data.name!r} is not allowed: it has k_star={data.k_star} teacher rows; model {model.name} "
            f"needs k_star={model.k_star}")
    if not np.any(data.eigenvalues[0] > 0.0):
        raise errors.ParameterError(f"data={data.name!r} is not allowed: its covariance is zero (Tr K = 0)")
    return data


def dimension(data, d, default: int):
    """The simulation's ``d``: ``d`` (``default`` if None) without data; with data, the
    data's ``d``, which a given ``d`` must equal (else ParameterError naming ``d``)."""
    if data is None:
        return default if d is None else d
    if d is not None and d != data.d:
        raise errors.ParameterError(f"d={d!r} is not allowed: with data, d must be the data's d = {data.d} (or None)")
    return data.d


@dataclass(frozen=True, eq=False)
class Coordinates:
    """Per coordinate in the multi-pass units: ``eigenvalues`` (d,) ``lam_i``, ``teacher`` (d, ks) ``theta*``."""

    eigenvalues: np.ndarray
    teacher: np.ndarray

    @classmethod
    def of(cls, data):
        d = data.d
        return cls(np.array(data.eigenvalues[0]), np.sqrt(d) * np.array(data.teacher.T))

    @property
    def column_scale(self) -> np.ndarray:
        """``sqrt(lam_i / d)``: the columns of standard normal inputs that give ``x ~ N(0, K/d)``."""
        return np.sqrt(self.eigenvalues / self.eigenvalues.size)


#: ``groups='auto'`` of :func:`dmft.solve`: exact spectral groups up to this many distinct
#: eigenvalues, else this many bins of ``log(lam)`` (memory and parameter-side cost are linear in it)
AUTO_MAX_GROUPS = 32


@dataclass(frozen=True, eq=False)
class Groups:
    """Spectral groups in the multi-pass units (docs/dmft_anisotropic.md, "Groups").

    weights (G,): ``p_g = |g|/d``; eigenvalues (G,): ``lam_g``; teacher_power (G, ks, ks):
    ``rho_g = (1/|g|) sum_{i in g} theta*_i theta*_i^T``; names, mode: as
    :class:`dmft.data.Groups`.
    """

    weights: np.ndarray
    eigenvalues: np.ndarray
    teacher_power: np.ndarray
    names: tuple
    mode: str

    @classmethod
    def of(cls, data, groups="auto"):
        """Groups of ``data``: ``'exact'``, ``onepass.data.Binned(G)`` or ``'auto'`` (exact up to
        :data:`AUTO_MAX_GROUPS` distinct eigenvalues, else that many bins)."""

        if groups == "auto":
            g = _data.make_groups(data, "exact")
            if len(g.sizes) > AUTO_MAX_GROUPS:
                g = _data.make_groups(data, _data.Binned(AUTO_MAX_GROUPS))
        else:
            g = _data.make_groups(data, groups)
        ks = data.k_star
        sizes = g.sizes.astype(float)
        # data_outer[g, :ks, :ks] = sum_{i in g} x*_i x*_i^T and theta*_i = sqrt(d) x*_i
        rho = data.d * g.data_outer[:, :ks, :ks] / sizes[:, None, None]
        out = cls(sizes / data.d, g.eigenvalues[:, 0].copy(), rho, g.names, g.mode)
        if np.linalg.eigvalsh(out.rho_k)[0] <= 1e-12 * max(np.abs(out.rho_k).max(), 1e-300):
            raise errors.ParameterError(
                f"data={data.name!r} is not allowed: the teacher field w* = theta*^T x has a singular covariance "
                f"rho_K = {out.rho_k.tolist()} (a teacher row without weight on the covariance's support)")
        return out

    @property
    def trace_ratio(self) -> float:
        """``tau = Tr K / d = sum_g p_g lam_g``."""
        return float(self.weights @ self.eigenvalues)

    @property
    def rho_k(self) -> np.ndarray:
        """``Var(w*) = sum_g p_g lam_g rho_g`` (ks, ks): the teacher field's covariance."""
        return np.einsum("g,gab->ab", self.weights * self.eigenvalues, self.teacher_power)

    @property
    def rho(self) -> np.ndarray:
        """``theta*^T theta*/d = sum_g p_g rho_g`` (ks, ks)."""
        return np.einsum("g,gab->ab", self.weights, self.teacher_power)
