"""Gaussian-mixture data with commuting (diagonal) covariances (docs/onepass.md, "Data").

Class ``c`` (probability ``p_c``) has samples ``a = mu_c + K_c^{1/2} xi`` with
``K_c = diag(eigenvalues[c])`` in one common basis. Soft-label (teacher-student) data
carries teacher rows ``X*`` (``k_star x d``); hard-label data has no teacher and the
label of class ``c`` is ``model.labels_for_classes(C)[c]``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from . import _kernels_groups, errors

__all__ = ["Identity", "ZeroOne", "PowerLaw", "SPECTRA", "GaussianMixture", "gaussian_mixture", "binary_mixture",
           "teacher_student", "multiclass_mixture", "Binned"]


# ------------------------------------------------------------------ spectra
@dataclass(frozen=True)
class Identity:
    """``K = I``; the mean profile is flat."""

    def eigenvalues(self, d: int, n_classes: int) -> np.ndarray:
        return np.ones((n_classes, d))

    def mean_profile(self, d: int) -> np.ndarray:
        return np.ones(d)


@dataclass(frozen=True)
class ZeroOne:
    """Two classes with eigenvalues in {0, 1}: ``lam^(1) = j``, ``lam^(2) = k`` on ``I_jk``.

    ``fractions`` are the sizes of ``I00, I01, I10, I11`` as fractions of ``d``.
    """

    fractions: tuple = (0.25, 0.25, 0.25, 0.25)

    def __post_init__(self):
        f = errors.finite_array("fractions", self.fractions, shape=(4,), nonnegative=True)
        if abs(f.sum() - 1) > 1e-12:
            raise errors.ParameterError(f"fractions={self.fractions!r} is not allowed: fractions must sum to 1")

    def eigenvalues(self, d: int, n_classes: int) -> np.ndarray:
        if n_classes != 2:
            raise errors.ParameterError(f"n_classes={n_classes!r} is not allowed: the zero-one model has 2 classes")
        sizes = np.floor(np.asarray(self.fractions) * d).astype(int)
        sizes[-1] = d - sizes[:-1].sum()
        pattern = [(0, 0), (0, 1), (1, 0), (1, 1)]
        lam = np.concatenate([np.tile(np.array(p, float)[:, None], (1, s)) for p, s in zip(pattern, sizes)], axis=1)
        return lam

    def mean_profile(self, d: int) -> np.ndarray:
        return np.ones(d)


@dataclass(frozen=True)
class PowerLaw:
    """``lam_i = (i/d)^alpha`` and mean profile ``mu_i^2 ∝ (i/d)^beta``.

    Phase transition at ``alpha = 1 + beta``: mild (``alpha < 1 + beta``) risk saturates,
    extreme (``alpha >= 1 + beta``) keeps falling.
    """

    alpha: float = 1.2
    beta: float = 1.0

    def __post_init__(self):
        errors.nonnegative("alpha", self.alpha)
        errors.nonnegative("beta", self.beta)

    def eigenvalues(self, d: int, n_classes: int) -> np.ndarray:
        u = np.arange(1, d + 1) / d
        return np.tile(u**self.alpha, (n_classes, 1))

    def mean_profile(self, d: int) -> np.ndarray:
        u = np.arange(1, d + 1) / d
        return u ** (self.beta / 2)


#: the spectra by name (``spectrum='power_law'`` etc. builds the class with its defaults)
SPECTRA = {"identity": Identity, "zero_one": ZeroOne, "power_law": PowerLaw}


# ------------------------------------------------------------------ data
@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Per-coordinate description of the data; arrays are read-only.

    means: (C, d); eigenvalues: (C, d); probs: (C,); teacher: (k_star, d) or None.
    """

    means: np.ndarray
    eigenvalues: np.ndarray
    probs: np.ndarray
    teacher: np.ndarray | None = None
    name: str = "gaussian_mixture"
    description: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return self.means.shape[1]

    @property
    def n_classes(self) -> int:
        return self.means.shape[0]

    @property
    def k_star(self) -> int:
        return 0 if self.teacher is None else self.teacher.shape[0]

    @functools.cached_property
    def trace_ratio(self) -> np.ndarray:
        """``Tr K_c / d`` per class (the average eigenvalue)."""
        return self.eigenvalues.mean(axis=1)

    @functools.cached_property
    def mean_norms(self) -> np.ndarray:
        """``|mu_c|`` per class."""
        return np.linalg.norm(self.means, axis=1)

    def attrs(self) -> dict:
        return {
            "data": self.name, "d": self.d, "n_classes": self.n_classes, "probs": self.probs,
            "mean_norms": self.mean_norms, "trace_ratio": self.trace_ratio,
            "teacher_norms": np.linalg.norm(self.teacher, axis=1) if self.teacher is not None else "None",
            **{f"data_{k}": v for k, v in self.description.items()},
        }


def _spectrum(s):
    if isinstance(s, str):
        if s not in SPECTRA:
            raise errors.ParameterError(f"spectrum={s!r} is not allowed: spectrum must be one of {sorted(SPECTRA)}")
        return SPECTRA[s]()
    if not hasattr(s, "eigenvalues"):
        raise errors.ParameterError(f"spectrum={s!r} is not allowed: spectrum must be Identity(), ZeroOne(), PowerLaw(...) or a name")
    return s


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


def gaussian_mixture(means, covariances, probs=None, teacher=None, name="gaussian_mixture") -> GaussianMixture:
    """Data from explicit arrays.

    means : list of C arrays of length d (or a (C, d) array)
    covariances : list of C eigenvalue arrays of length d (diagonal covariances in the
        common eigenbasis), or scalars (multiples of the identity)
    probs : C class probabilities summing to 1 (default uniform)
    teacher : (k_star, d) teacher rows for soft labels, or None for hard labels
    """
    means = np.atleast_2d(errors.finite_array("means", means))
    if means.ndim != 2 or means.shape[1] < 1:
        raise errors.ParameterError(f"means has shape {means.shape}; expected (C, d) with d >= 1")
    C, d = means.shape
    if len(covariances) != C:
        raise errors.ParameterError(f"covariances has {len(covariances)} entries; expected one per class ({C})")
    rows = []
    for c, cov in enumerate(covariances):
        a = np.asarray(cov, dtype=float)
        if a.ndim > 1 or (a.ndim == 1 and a.shape != (d,)):
            raise errors.ParameterError(
                f"covariances[{c}] has shape {a.shape}; expected a scalar or the {d} eigenvalues (d = {d} from means)")
        rows.append(np.broadcast_to(a, (d,)))
    lam = errors.finite_array("covariances", np.stack(rows), shape=(C, d), nonnegative=True)
    probs = np.full(C, 1.0 / C) if probs is None else errors.probabilities("probs", probs, size=C)
    if teacher is not None:
        teacher = errors.finite_array("teacher", np.atleast_2d(teacher))
        if teacher.shape[1] != d:
            raise errors.ParameterError(f"teacher has shape {teacher.shape}; expected (k_star, {d})")
        teacher = _frozen(teacher)
    return GaussianMixture(_frozen(means), _frozen(lam), _frozen(probs), teacher, name)


def binary_mixture(spectrum="identity", *, d: int = 1000, mean_norm: float = 1.0) -> GaussianMixture:
    """Two equiprobable classes with means ``+mu, -mu`` (``|mu| = mean_norm``), hard labels.

    ``spectrum``: ``Identity()``, ``ZeroOne()``, ``PowerLaw(alpha, beta)`` or a name; the
    direction of ``mu`` follows the spectrum's mean profile (flat, or ``mu_i^2 ∝ (i/d)^beta``).
    """
    d = errors.positive_int("d", d, minimum=2)
    mean_norm = errors.nonnegative("mean_norm", mean_norm)
    s = _spectrum(spectrum)
    prof = s.mean_profile(d)
    mu = mean_norm * prof / np.linalg.norm(prof)
    out = gaussian_mixture([mu, -mu], list(s.eigenvalues(d, 2)), name=f"binary_{type(s).__name__}")
    return GaussianMixture(out.means, out.eigenvalues, out.probs, None, out.name, {"spectrum": repr(s), "mean_norm": mean_norm})


def teacher_student(spectrum="identity", *, d: int = 1000, teacher_norm: float = 1.0, k_star: int = 1,
                    seed: int = 0) -> GaussianMixture:
    """One class, zero mean, covariance from ``spectrum``, teacher rows of norm ``teacher_norm``.

    ``k_star = 1``: the flat teacher ``x*_i = teacher_norm / sqrt(d)``. ``k_star > 1``:
    orthogonal rows drawn from ``seed`` (an int or a ``numpy.random.Generator``, see
    :func:`dmft.errors.seed_value`).
    """
    d = errors.positive_int("d", d, minimum=2)
    k_star = errors.positive_int("k_star", k_star)
    if k_star > d:
        raise errors.ParameterError(f"k_star={k_star!r} is not allowed: k_star must be <= d = {d} (orthogonal teacher rows)")
    teacher_norm = errors.nonnegative("teacher_norm", teacher_norm)
    s = _spectrum(spectrum)
    if k_star == 1:
        T = np.full((1, d), teacher_norm / np.sqrt(d))
    else:
        q, _ = np.linalg.qr(np.random.default_rng(errors.seed_sequence(seed)).normal(size=(d, k_star)))
        T = teacher_norm * q.T
    out = gaussian_mixture(np.zeros((1, d)), [s.eigenvalues(d, 1)[0]], teacher=T, name=f"teacher_student_{type(s).__name__}")
    return GaussianMixture(out.means, out.eigenvalues, out.probs, out.teacher, out.name, {"spectrum": repr(s)})


def multiclass_mixture(n_classes: int, *, d: int = 500, mean_norm: float = 1.0, spectrum="identity",
                       seed: int = 0) -> GaussianMixture:
    """``n_classes`` equiprobable classes with random orthogonal means of norm ``mean_norm``
    (drawn from ``seed``, an int or a ``numpy.random.Generator``, see :func:`dmft.errors.seed_value`)."""
    seed = errors.seed_value(seed)
    C = errors.positive_int("n_classes", n_classes, minimum=2)
    d = errors.positive_int("d", d, minimum=C)
    mean_norm = errors.nonnegative("mean_norm", mean_norm)
    s = _spectrum(spectrum)
    q, _ = np.linalg.qr(np.random.default_rng(errors.seed_sequence(seed)).normal(size=(d, C)))
    out = gaussian_mixture(mean_norm * q.T, list(s.eigenvalues(d, C)), name=f"multiclass_{C}")
    return GaussianMixture(out.means, out.eigenvalues, out.probs, None, out.name,
                           {"spectrum": repr(s), "mean_norm": mean_norm, "seed": seed})


# ------------------------------------------------------------------ spectral groups
@dataclass(frozen=True)
class Binned:
    """Group coordinates into bins of ``log(lam)`` (``n_bins`` per class, zeros kept apart).

    The ODE cost is then independent of ``d``. Each group's eigenvalue is its members'
    mean, so ``Tr K`` is exact; the error comes from the spread of eigenvalues inside a bin
    (measured in docs/onepass.md).
    """

    n_bins: int = 64

    def __post_init__(self):
        errors.positive_int("n_bins", self.n_bins)


@dataclass(frozen=True, eq=False)
class Groups:
    """index: (d,) group of each coordinate; eigenvalues: (G, C); sizes: (G,); names;
    n_bins: the bins per class of binned groups, 0 for exact ones.

    data_outer: (G, R, R) ``sum_{i in g} v_i v_i^T`` for ``v_i = [x*_i; mu_{1,i} .. mu_{C,i}]``
    (``R = k_star + C``), the rows of ``w_i`` that do not move during training.
    """

    index: np.ndarray
    eigenvalues: np.ndarray
    sizes: np.ndarray
    names: tuple
    mode: str
    data_outer: np.ndarray
    n_bins: int = 0

    def sum_outer(self, W: np.ndarray) -> np.ndarray:
        """``P_g = sum_{i in g} w_i w_i^T`` for columns ``w_i`` of ``W`` (D, d) -> (G, D, D)."""
        return _kernels_groups.sum_outer(self.index, len(self.sizes), tuple(np.ascontiguousarray(W, dtype=float)))


def _row_groups(code: np.ndarray) -> np.ndarray:
    """Index of each row's distinct value (rows sorted lexicographically), O(d log d) with 1-d sorts."""
    key = np.zeros(code.shape[0], dtype=np.int64)
    for col in code.T:
        _, inv = np.unique(col, return_inverse=True)
        key = key * (inv.max() + 1) + inv.ravel()
        _, key = np.unique(key, return_inverse=True)  # keep the key small
    return key.ravel()


def _exact_index(lam: np.ndarray, cap: int):
    """Group of each coordinate by its eigenvalue tuple, groups in lexicographic order of the tuples.

    lam: (C, d). Returns the (d,) index, or None if there are more than ``cap`` distinct
    tuples (found as soon as the ``cap + 1``-th appears: O(C cap) work for a spectrum
    with distinct eigenvalues, one O(C d) hash pass otherwise). Past a few thousand
    groups the table leaves the cache and :func:`_row_groups`'s sorts are faster.
    """
    bits = np.ascontiguousarray(lam).view(np.int64)
    index, G, first = _kernels_groups.distinct_rows(bits, cap, (2 * cap + 1).bit_length())
    if G > cap:
        return None
    rank = np.empty(G, np.int64)
    rank[np.lexsort(lam[::-1, first])] = np.arange(G)  # lexsort's last key is the primary one
    return rank[index]


def _bin_table(bits: np.ndarray, n_bins: int):
    """Bins of ``log(lam)`` for :func:`_kernels_groups.bin_index`; ``bits`` (C, d) is ``lam`` viewed as int64.

    A positive eigenvalue is in bin ``min(floor((log(lam) - lo) / width), n_bins - 1) + 1``
    with ``lo, hi`` the smallest and largest positive ``log(lam)`` and ``width = (hi - lo)
    / n_bins`` (zeros are bin 0). That is monotone in ``lam``, so it is fixed by the
    smallest eigenvalue of each bin ``2..n_bins`` (the edges), and binning takes no
    logarithm per coordinate. The edges are found by bisection with the same ``np.log``
    and arithmetic, so each eigenvalue gets exactly the bin of the formula. Everything is
    done on the bit patterns, which positive doubles order like their values; an edge of
    an empty top bin is left just above the largest eigenvalue.

    Returns ``(edges, table, base, shift)``: edges (n_bins,) int64, the ``n_bins - 1``
    edges then a sentinel; ``table[k]`` (n_cells,) = number of edges ``<= base + (k <<
    shift)``, cells of ``2^shift`` patterns from ``base`` (the smallest positive
    eigenvalue). 2 to 8 cells per bin: a cell spans at most about one bin.
    """
    base, top = _kernels_groups.positive_range(bits)
    if top == 0:  # no positive eigenvalue: every code is 0, the table is unused
        return np.full(n_bins, np.iinfo(np.int64).max), np.zeros(1, np.int64), 0, 0
    lo, hi = np.log(np.array([base, top]).view(np.float64))
    width = max(hi - lo, 1e-300) / n_bins
    j = np.arange(1, n_bins)
    below = np.full(n_bins - 1, base)  # bin 1, below every edge
    above = np.full(n_bins - 1, top + 1)  # the next double above the largest eigenvalue
    while np.any(above - below > 1):
        mid = below + (above - below) // 2  # (below + above) // 2 could overflow
        up = (np.log(mid.view(np.float64)) - lo) / width >= j
        above = np.where(up, mid, above)
        below = np.where(up, below, mid)
    edges = np.append(above, np.iinfo(np.int64).max)
    shift = max(int(top - base).bit_length() - (4 * n_bins).bit_length(), 0)
    cells = base + (np.arange(((top - base) >> shift) + 1, dtype=np.int64) << shift)
    return edges, np.searchsorted(edges, cells, side="right"), base, shift


AUTO_MAX_GROUPS = 4096  # exact below: the ODE cost is linear in the groups (docs/onepass.md)


def make_groups(data: GaussianMixture, groups="auto") -> Groups:
    """Spectral groups of ``data``: ``"exact"``, ``Binned(n)`` or ``"auto"``.

    Exact: one group per distinct eigenvalue tuple ``(lam^(1), .., lam^(C))`` (the ODE
    of each coordinate depends on nothing else). Auto: exact if that gives at most
    ``AUTO_MAX_GROUPS`` groups, else ``Binned(64)``; the count stops at the first tuple
    past the limit, so auto costs what the mode it picks costs. Groups are numbered in
    lexicographic order of their eigenvalue (exact) or bin (binned) tuples. Exact costs
    one O(C d) hash pass up to ``AUTO_MAX_GROUPS`` groups and O(C d log d) sorts above;
    binned O(C d), no sorting and no logarithm per coordinate.
    """
    lam = data.eigenvalues  # (C, d)
    index = None
    if groups == "auto":
        index = _exact_index(lam, AUTO_MAX_GROUPS)
        groups = "exact" if index is not None else Binned()
    if groups == "exact":
        if index is None:
            index = _exact_index(lam, AUTO_MAX_GROUPS)
        if index is None:
            index = _row_groups(lam.T)
        G = index.max() + 1
        mode = "exact"
    elif isinstance(groups, Binned):
        bits = np.ascontiguousarray(lam).view(np.int64)
        index, G = _kernels_groups.bin_index(bits, *_bin_table(bits, groups.n_bins))
        mode = f"binned({groups.n_bins})"
    else:
        raise errors.ParameterError(f"groups={groups!r} is not allowed: groups must be 'auto', 'exact' or Binned(n_bins)")
    # the kernel takes the rows as a tuple of one array type: stacking makes teacher and mean rows one
    fixed = data.means if data.teacher is None else np.vstack([data.teacher, data.means])
    sizes, uniq, data_outer = _kernels_groups.group_sums(index, G, tuple(lam), tuple(fixed))
    uniq /= sizes[:, None]  # mean eigenvalue: exact groups are constant, bins keep Tr K exact
    if np.all(np.isin(uniq, (0.0, 1.0))):
        names = tuple("I" + "".join(str(int(v)) for v in row) for row in uniq)
    else:
        names = tuple(f"g{j}" for j in range(len(uniq)))
    return Groups(index, uniq, sizes, names, mode, data_outer, 0 if mode == "exact" else groups.n_bins)
