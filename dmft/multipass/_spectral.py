"""Data of :func:`dmft.simulate` and :func:`dmft.solve` (docs/dmft_anisotropic.md, docs/simulate.md).

The data objects are those of :mod:`dmft.data` (Gaussian mixtures with diagonal covariances
``K_c = diag(lam^(c))``). Units: ``onepass`` samples ``a = mu_c + K_c^{1/2} xi`` and teacher rows
``x*`` with ``|x*| ~ 1``; the multi-pass conventions (docs/dmft_theory.md, section 1) use
``x = a / sqrt(d)`` (mean ``mu_c / sqrt(d)``, covariance ``K_c/d``) and ``theta* = sqrt(d) x*^T``, so
that ``r* = theta*^T x = x* a`` is the same pre-activation, ``theta*^T theta*/d = x* x*^T`` and
``theta^T E[x | c] = X mu_c`` is ``onepass``'s ``mean_overlap``. The DMFT solver takes one-class
teacher-student data and hard-label mixtures with diagonal class covariances of equal trace
(:func:`solver_mixture`, :class:`MixtureGroups`); the simulators take any mixture
(:func:`check_simulation_data`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import data as _data, errors
from .. import schedules as _schedules


def _check_mixture(data, model):
    """``data`` if it is a :class:`dmft.data.GaussianMixture` whose labels ``model`` can take, else ParameterError."""
    if not isinstance(data, _data.GaussianMixture):
        raise errors.ParameterError(
            f"data={data!r} is not allowed: data must be a Gaussian mixture from dmft.data (the same module as "
            "onepass.data; e.g. dmft.data.teacher_student('power_law', d=1000)) or None")
    if data.teacher is not None and data.k_star != model.k_star:
        raise errors.ParameterError(
            f"data={data.name!r} is not allowed: it has k_star={data.k_star} teacher rows; model {model.name} "
            f"needs k_star={model.k_star}")
    return data


def solver_mixture(data, model):
    """:class:`Mixture` of the hard-label mixture ``data`` that :func:`dmft.solve` takes for
    ``model`` (docs/dmft_mixture.md: diagonal class covariances of equal trace), None for
    teacher-student data (one class with zero mean, a teacher and a covariance that is not
    zero), else ParameterError naming ``data`` with what it is and what is allowed."""
    _check_mixture(data, model)
    if data.n_classes == 1 and not np.any(data.means != 0.0):
        if data.teacher is None:
            raise errors.ParameterError(f"data={data.name!r} is not allowed: the multi-pass DMFT needs a teacher")
        if not np.any(data.eigenvalues[0] > 0.0):
            raise errors.ParameterError(f"data={data.name!r} is not allowed: its covariance is zero (Tr K = 0)")
        return None
    if data.teacher is not None:
        raise errors.ParameterError(
            f"data={data.name!r} is not allowed: the multi-pass DMFT takes mixtures with hard labels (no teacher, e.g. "
            "dmft.data.binary_mixture); this one has teacher rows (soft labels) and mean norms "
            f"{data.mean_norms.tolist()} (dmft.simulate takes it)")
    tau = data.trace_ratio
    if tau[0] <= 0.0 or np.ptp(tau) > 1e-12 * tau[0]:
        raise errors.ParameterError(
            f"data={data.name!r} is not allowed: the multi-pass DMFT takes mixtures whose classes have the same "
            f"positive Tr K_c / d; this one has {tau.tolist()} (dmft.simulate takes it)")
    return check_simulation_data(data, model)


def check_lr(lr):
    """The schedule of time that ``lr`` stands for in the multi-pass DMFT (a number:
    :class:`dmft.schedules.Constant`; a function of time: ``TimeDependent``), else
    ParameterError naming ``lr``: :class:`dmft.schedules.AdaGradNorm` adapts to ``onepass``'s
    accumulated gradient norm, which the DMFT does not have."""
    if isinstance(lr, _schedules.AdaGradNorm):
        raise errors.ParameterError(
            f"lr={lr!r} is not allowed: the multi-pass DMFT (dmft.solve, dmft.compare) takes a positive number or a "
            "schedule of time (Constant, TimeDependent, StepDecay, Cosine of dmft.schedules, or a function t -> lr); "
            "AdaGradNorm is for onepass")
    return _schedules.as_schedule(lr)


def check_simulation_data(data, model):
    """:class:`Mixture` of ``data`` if :func:`dmft.simulate` takes it for ``model``, else ParameterError:
    a Gaussian mixture with teacher rows for ``model`` (soft labels) or hard labels that
    ``model.labels_for_classes`` gives for its number of classes, and inputs that are not all zero."""
    _check_mixture(data, model)
    labels = None
    if data.teacher is None:
        try:
            labels = model.labels_for_classes(data.n_classes)
        except errors.ParameterError as e:
            raise errors.ParameterError(
                f"data={data.name!r} is not allowed: it has hard labels (no teacher) and model {model.name} has none "
                f"for its {data.n_classes} classes ({e})") from None
        if labels.shape != (data.n_classes, model.label_dim):
            raise errors.ParameterError(
                f"data={data.name!r} is not allowed: model {model.name}'s class labels have shape {labels.shape}, "
                f"not (n_classes, label_dim) = ({data.n_classes}, {model.label_dim})")
    if not np.any(data.eigenvalues > 0.0) and not np.any(data.means != 0.0):
        raise errors.ParameterError(f"data={data.name!r} is not allowed: its inputs are zero (Tr K = 0, mu = 0)")
    return Mixture.of(data, labels)


def dimension(data, d, default: int):
    """The simulation's ``d``: ``d`` (``default`` if None) without data; with data, the
    data's ``d``, which a given ``d`` must equal (else ParameterError naming ``d``)."""
    if data is None:
        return default if d is None else d
    if d is not None and d != data.d:
        raise errors.ParameterError(f"d={d!r} is not allowed: with data, d must be the data's d = {data.d} (or None)")
    return data.d


@dataclass(frozen=True, eq=False)
class Mixture:
    """The simulators' data in the multi-pass units: class ``c`` (probability ``probs[c]``) has
    inputs ``x = means[c] + scales[c] * xi``, ``xi ~ N(0, I_d)``.

    probs (C,); means (C, d): ``mu_c / sqrt(d)``; eigenvalues (C, d): ``lam_i^(c)``; scales (C, d):
    ``sqrt(lam_i^(c) / d)``; teacher (d, ks): ``theta* = sqrt(d) x*^T``, or None with hard labels
    ``labels`` (C, label_dim): class ``c`` has the label ``labels[c]``.
    """

    probs: np.ndarray
    means: np.ndarray
    eigenvalues: np.ndarray
    teacher: np.ndarray | None
    labels: np.ndarray | None

    @classmethod
    def of(cls, data, labels=None):
        d = data.d
        teacher = None if data.teacher is None else np.sqrt(d) * np.array(data.teacher.T)
        return cls(np.array(data.probs), np.array(data.means) / np.sqrt(d), np.array(data.eigenvalues), teacher, labels)

    @property
    def n_classes(self) -> int:
        return self.probs.size

    @property
    def scales(self) -> np.ndarray:
        """``sqrt(lam_i^(c) / d)`` (C, d): the columns of standard normal inputs that give ``N(0, K_c/d)``."""
        return np.sqrt(self.eigenvalues / self.eigenvalues.shape[1])

    @property
    def is_teacher_student(self) -> bool:
        """One class with zero mean and a teacher (the data :func:`dmft.solve` takes too)."""
        return self.n_classes == 1 and self.teacher is not None and not np.any(self.means != 0.0)

    def edge(self, n: int) -> float:
        """Estimate, before the data exist, of the largest eigenvalue of ``X^T X`` for ``n`` rows: the
        Marchenko-Pastur edge ``(1 + sqrt(n/d))^2`` times ``max lam``, plus the means' spike
        ``n max_c |mu_c|^2 / d``."""
        d = self.eigenvalues.shape[1]
        spike = n * float((self.means**2).sum(axis=1).max())
        return (1 + np.sqrt(n / d)) ** 2 * float(self.eigenvalues.max()) + spike


#: ``groups='auto'`` of :func:`dmft.solve`: exact spectral groups up to this many distinct
#: eigenvalues, else this many bins of ``log(lam)`` (memory and parameter-side cost are linear in it)
AUTO_MAX_GROUPS = 32


def _make_groups(data, groups):
    """:func:`dmft.data.make_groups` of ``data``, with ``'auto'``: exact up to
    :data:`AUTO_MAX_GROUPS` distinct eigenvalues (tuples), else that many bins."""
    if groups != "auto":
        return _data.make_groups(data, groups)
    g = _data.make_groups(data, "exact")
    return g if len(g.sizes) <= AUTO_MAX_GROUPS else _data.make_groups(data, _data.Binned(AUTO_MAX_GROUPS))


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
        g = _make_groups(data, groups)
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


@dataclass(frozen=True, eq=False)
class MixtureGroups:
    """Spectral groups of a hard-label mixture in the multi-pass units (docs/dmft_mixture.md, section 4).

    weights (G,): ``p_g = |g|/d``; eigenvalues (G, C): ``lam_g^(c)``; gram (G, C, C):
    ``(1/|g|) sum_{i in g} v_i v_i^T`` with ``v_ci = sqrt(d) mu_ci`` (the class means' power in the
    group, the analogue of the teacher power ``rho_g``); names, mode: as :class:`dmft.data.Groups`.
    """

    weights: np.ndarray
    eigenvalues: np.ndarray
    gram: np.ndarray
    names: tuple
    mode: str

    @classmethod
    def of(cls, data, groups="auto"):
        """Groups of ``data`` by eigenvalue tuple: ``'exact'``, ``Binned(G)`` or ``'auto'`` (as :meth:`Groups.of`)."""
        g = _make_groups(data, groups)
        sizes = g.sizes.astype(float)
        # data_outer[g] = sum_{i in g} mu_i mu_i^T (no teacher rows) and v_i = sqrt(d) mu_i
        return cls(sizes / data.d, np.array(g.eigenvalues), data.d * g.data_outer / sizes[:, None, None], g.names,
                   g.mode)

    @property
    def trace_ratio(self) -> float:
        """``tau = Tr K_c / d = sum_g p_g lam_g^(c)``, the same for every class (:func:`solver_mixture`)."""
        return float(self.weights @ self.eigenvalues[:, 0])
