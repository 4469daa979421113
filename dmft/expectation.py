"""One Gaussian-expectation engine for everything (docs/expectation.md).

Expectations of the loss and its derivatives over ``(r, r_star)`` jointly Gaussian with
given mean and covariance (and independent standard Gaussian label noise ``eps``, or a
fixed hard label). Rules:

* :class:`Trapezoid`: tensor trapezoid ("sinc") rule with the normal density as weight,
  exponentially convergent for integrands analytic in a strip (tanh, sigmoid, erf); the
  default up to 3 integration dimensions.
* :class:`GaussHermite`: tensor Gauss-Hermite grid, exact for polynomials of degree
  ``< 2 n`` per dimension, slow for tanh-like integrands.
* :class:`QuasiMonteCarlo`: fixed scrambled Sobol points mapped through the normal
  quantile (error ~ ``log(N)^D / N`` for smooth integrands); the default above 3 dims
  (32768 points in 4-5 dims, 8192 above).

A tensor grid converges slowly across a jump or a kink that cuts it obliquely (a sign
teacher's step at ``r* = 0`` seen in whitened coordinates: 11% at 20 points per
dimension, 5% at 80). A model therefore declares the hyperplanes on which its loss, its
gradient or its teacher is not smooth (:attr:`dmft.models.Model.kinks`); the engine
rotates the integration variables so that those hyperplanes are coordinate planes,
integrates the split coordinates piecewise between the crossings, with Gauss rules of the
normal density restricted to each piece (nested, one coordinate per independent
hyperplane normal), and the remaining coordinates with the smooth rule.

All rules use *fixed* points (the piecewise nodes move smoothly with the crossings), so
the moments are smooth functions of the mean and covariance and ODE solvers see a smooth
right-hand side.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from . import errors
from ._jit import specialise
from ._kernels_expectation import weighted_moments

__all__ = ["gaussian_moments", "Moments", "default_rule", "Trapezoid", "GaussHermite", "QuasiMonteCarlo"]

#: Gauss-Hermite points per coordinate by integration dimension: smooth models, and models
#: with kinks off the declared planes (Huber's kink is a curved surface), which converge slowly
_GH_POINTS = {0: 1, 1: 96, 2: 32, 3: 20, 4: 12, 5: 8}
_GH_POINTS_NONSMOOTH = {0: 1, 1: 96, 2: 48, 3: 32, 4: 16, 5: 10}
#: trapezoid step by integration dimension (smooth models; non-smooth ones divide it by 1.5)
_TRAPEZOID_STEP = {1: 0.25, 2: 0.4, 3: 0.55, 4: 0.7, 5: 0.8}
#: Gauss points per piece of a split coordinate, by the number of split coordinates
_PIECE_POINTS = {1: 10, 2: 6, 3: 5, 4: 4}
#: split coordinates are integrated on [-_CUT, _CUT] (the Gaussian tail beyond is 2e-17)
_CUT = 8.5
#: Gauss-Legendre points of the discrete measure an n-point piece rule is built from,
#: max(48, 4 n): the nodes then agree with those from 128 points to 1e-11 (n <= 15)
_PIECE_DISCRETE = (48, 4)
#: a plane nearly parallel to a split coordinate's plane (steepness w below _STEEP[1]) puts
#: breaks at its centre and at centre +- g w for g in _GRADES; they merge into the
#: coordinate's own crossing as w rises from _STEEP[0] to _STEEP[1]
_GRADES = (1.0, 4.0)
_STEEP = (1.0, 2.0)


class _Rule:
    """Shared by the tensor rules: per-piece Gauss rules of the normal density for split coordinates."""

    points_per_piece: int | None
    scale: float

    def piece_points(self, n_split: int) -> int:
        return int(np.ceil(self.scale * (self.points_per_piece or _PIECE_POINTS.get(n_split, 6))))


@dataclass(frozen=True)
class GaussHermite(_Rule):
    """Tensor Gauss-Hermite rule with ``points_per_dim`` points per smooth coordinate and
    ``points_per_piece`` Gauss points per piece of a split coordinate, both
    multiplied by ``scale``; ``None`` picks 96/32/20/12/8 points for 1-5 integration
    dimensions (96/48/32/16/10 with ``smooth=False``) and 10/6/5/4 per piece for 1-4
    split coordinates. Exact for polynomials of degree ``< 2 n``; slow (sub-exponential)
    for integrands with complex poles near the real axis, such as tanh."""

    points_per_dim: int | None = None
    points_per_piece: int | None = None
    scale: float = 1.0
    smooth: bool = True

    def __post_init__(self):
        if self.points_per_dim is not None:
            errors.positive_int("points_per_dim", self.points_per_dim)
        if self.points_per_piece is not None:
            errors.positive_int("points_per_piece", self.points_per_piece)
        errors.positive("scale", self.scale)

    def nodes(self, dim: int, total: int | None = None):
        """Points (N, dim) and weights (N,) in ``dim`` coordinates of a ``total``-dim integral."""
        table = _GH_POINTS if self.smooth else _GH_POINTS_NONSMOOTH
        n = int(np.ceil(self.scale * (self.points_per_dim or table.get(total or dim, 6))))
        return _tensor(("gh", n), dim)

    def refined(self) -> "GaussHermite":
        """The rule with 1.5x the points in every coordinate (error estimates)."""
        return GaussHermite(self.points_per_dim, self.points_per_piece, 1.5 * self.scale, self.smooth)


@dataclass(frozen=True)
class Trapezoid(_Rule):
    """Tensor trapezoid ("sinc") rule: nodes ``j step`` on ``[-cut, cut]`` with weights
    ``exp(-x^2/2)`` normalised. For integrands analytic in a strip ``|Im u| < a`` the error
    is ``O(exp(-2 pi a / step))``: exponential where Gauss-Hermite is not (tanh at unit
    variance: 3e-9 at step 0.5 against 2e-2 for Gauss-Hermite 8^4). ``step=None`` picks
    0.2/0.3/0.45 for 1-3 integration dimensions, divided by ``scale``;
    ``points_per_piece`` as for :class:`GaussHermite`."""

    step: float | None = None
    cut: float = 8.0
    points_per_piece: int | None = None
    scale: float = 1.0

    def __post_init__(self):
        if self.step is not None:
            errors.positive("step", self.step)
        errors.positive("cut", self.cut)
        errors.positive("scale", self.scale)

    def nodes(self, dim: int, total: int | None = None):
        h = (self.step or _TRAPEZOID_STEP.get(total or dim, 0.6)) / self.scale
        return _tensor(("trapezoid", float(h), float(self.cut)), dim)

    def refined(self) -> "Trapezoid":
        """Steps divided by 1.5 and 1.5x the points per piece (error estimates)."""
        return Trapezoid(self.step, self.cut, self.points_per_piece, 1.5 * self.scale)


@dataclass(frozen=True)
class QuasiMonteCarlo:
    """Scrambled Sobol rule with ``n_points`` (a power of 2) fixed points from ``seed``."""

    n_points: int = 8192
    seed: int = 0

    def __post_init__(self):
        # a Generator stands for the integer drawn from it (errors.seed_value): rules are hashable
        seed = errors.seed_value(self.seed)
        if isinstance(seed, np.random.SeedSequence):
            errors._fail("seed", seed, "a non-negative integer or a numpy.random.Generator")
        object.__setattr__(self, "seed", seed)
        n = errors.positive_int("n_points", self.n_points, minimum=2)
        if n & (n - 1):
            raise errors.ParameterError(f"n_points={n!r} is not allowed: n_points must be a power of 2")

    def nodes(self, dim: int, total: int | None = None):
        return _sobol_normal(dim, self.n_points, self.seed)

    def refined(self) -> "QuasiMonteCarlo":
        """4x the points and another scrambling (error estimates)."""
        return QuasiMonteCarlo(4 * self.n_points, self.seed + 1)


RULES = (Trapezoid, GaussHermite, QuasiMonteCarlo)


@functools.lru_cache(maxsize=64)
def _tensor(kind: tuple, dim: int):
    """Tensor product of a 1-d rule ``kind`` (``('gh', n)`` or ``('trapezoid', step, cut)``)."""
    if dim == 0:
        return np.zeros((1, 0)), np.ones(1)
    if kind[0] == "gh":
        x, w = np.polynomial.hermite_e.hermegauss(kind[1])
    else:
        _, h, cut = kind
        x = h * np.arange(-np.floor(cut / h), np.floor(cut / h) + 1)
        w = np.exp(-0.5 * x * x)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    pts = np.stack([g.ravel() for g in grids], axis=1)
    wts = np.prod(np.stack(np.meshgrid(*([w] * dim), indexing="ij")).reshape(dim, -1), axis=0)
    keep = wts > 1e-17 * wts.max()  # the grid's corners (|u|^2 > 78) weigh nothing
    pts, wts = pts[keep], wts[keep] / wts[keep].sum()
    pts.setflags(write=False)
    wts.setflags(write=False)
    return pts, wts


@functools.lru_cache(maxsize=16)
def _gauss_legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


@functools.lru_cache(maxsize=64)
def _sobol_normal(dim: int, n: int, seed: int):
    from scipy import special, stats  # imported here: scipy.stats is slow to import

    if dim == 0:
        return np.zeros((1, 0)), np.ones(1)
    u = stats.qmc.Sobol(dim, scramble=True, seed=seed).random(n)
    pts = special.ndtri(np.clip(u, 1e-300, 1 - 1e-16))
    # Centre and whiten the finite point set so first and second moments are exact.
    pts = pts - pts.mean(axis=0)
    cov = pts.T @ pts / n
    pts = pts @ np.linalg.inv(np.linalg.cholesky(cov)).T
    wts = np.full(n, 1.0 / n)
    pts.setflags(write=False)
    wts.setflags(write=False)
    return pts, wts


def default_rule(dim: int, smooth: bool = True, n_planes: int = 0):
    """The trapezoid rule up to 3 integration dimensions (steps 2/3 as long for non-smooth
    models), and up to 5 when the model's ``n_planes`` kink planes leave at most 2 smooth
    coordinates (a ReLU committee: the split coordinates need the tensor rule);
    quasi-Monte Carlo otherwise: 32768 points in 4-5 dimensions (2e-5 on a tanh committee
    with label noise), 65536 in 5 dimensions for non-smooth models (Huber-on-tanh ``k = 2``:
    up to 7e-5 against 1.7e-4 with 32768), 8192 above (the many-class ODEs call it per
    class)."""
    if dim <= 3 or (dim <= 5 and dim - n_planes <= 2):
        return Trapezoid(scale=1.0 if smooth else 1.5)
    if dim > 5:
        return QuasiMonteCarlo(8192)
    return QuasiMonteCarlo(65536 if dim == 5 and not smooth else 32768)


class Moments(NamedTuple):
    """Gaussian expectations of the loss and its ``r``-derivatives.

    loss: ``E l``; grad: ``E dl/dr`` (k,); hess: ``E d2l/dr2`` (k, k);
    hess_star: ``E d2l/dr dr_star`` (k, k_star) by Stein's identity; fisher:
    ``E (dl/dr)(dl/dr)^T`` (k, k); error: estimated absolute error of ``loss`` (the
    difference from a refined rule; 0 for a closed form; NaN when not estimated).
    """

    loss: float
    grad: np.ndarray
    hess: np.ndarray
    hess_star: np.ndarray
    fisher: np.ndarray
    error: float = float("nan")


def _cov_factor(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``cov + jitter I``.

    The factor must be a smooth function of ``cov`` so that ODE solvers see a smooth
    right-hand side: a square root built from eigenvectors jumps where eigenvalues are
    degenerate (e.g. symmetric classes at ``X0 = 0``; DOP853 then needed 3718 instead of
    82 evaluations on the 15-class case). Cholesky is smooth on positive-definite matrices;
    the jitter (1e-14 of the trace) makes it so at singular ``cov`` too. Putting ``r``
    first also aligns the grid with kinks in ``r``.
    """
    n = cov.shape[0]
    c = 0.5 * (cov + cov.T)
    jitter = 1e-14 * max(float(np.trace(c)), 1e-300)
    try:
        return np.linalg.cholesky(c + jitter * np.eye(n))
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(c)
        if w[0] < -1e-3 * max(1.0, w[-1]):
            raise errors.ParameterError(
                f"cov has smallest eigenvalue {w[0]:.3g}; a covariance must be positive semi-definite") from None
        # round-off or ODE error (a state slightly outside the cone): clip and retry
        return np.linalg.cholesky((v * np.clip(w, 0, None)) @ v.T + 2 * jitter * np.eye(n) + 1e-300 * np.eye(n))


def gaussian_moments(model, mean, cov, *, label=None, rule=None, error: bool = False) -> Moments:
    """Moments of ``model`` over ``z = (r, r_star) ~ N(mean, cov)``.

    Parameters
    ----------
    model : dmft.models.Model
    mean : (k + k_star,) array, or (k,) with a fixed ``label``
    cov : (D, D) array, positive semi-definite, ``D = len(mean)``
    label : (label_dim,) array or None
        A fixed (hard) label; if None the label is ``teacher(r_star, eps)`` and the noise
        ``eps ~ N(0, I_noise_dim)`` is integrated too.
    rule : Trapezoid | GaussHermite | QuasiMonteCarlo | None
        Default: the model's closed form if it has one; otherwise :func:`default_rule`
        (trapezoid up to 3 integration dimensions, quasi-Monte Carlo above). The tensor
        rules split coordinates across the model's declared kinks; quasi-Monte Carlo
        does not (its error is ``O(N^-1/2)`` at worst across a jump).
    error : bool
        Also estimate the absolute error of ``loss`` by a refined rule (``Moments.error``).
        The refined result is returned (its error is smaller than the estimate).

    Returns
    -------
    Moments

    Notes
    -----
    ``hess_star`` uses Stein's identity (no teacher derivative):
    ``H* = (E[g (r* - E r*)^T] - H Cov(r, r*)) Cov(r*, r*)^+``. For non-smooth models
    (Hessian with jumps or Dirac terms) the Hessian itself is taken from the gradient,
    ``[H, H*] = E[g (z - E z)^T] Cov(z)^-1``, which converges much faster under
    quadrature (Huber-on-tanh: 1e-4 against 8e-2 for the direct Hessian);
    where ``Cov(z)`` is singular the direct Hessian is used.

    Examples
    --------
    The squared loss has ``E l = (q - 2 m + rho + noise_std^2) / 2`` over
    ``(r, r*) ~ N(0, [[q, m], [m, rho]])``; the logistic loss on the sign teacher
    ``y = 1[r* > 0]`` has ``E d2l/dr dr* = -p_{r*}(0) = -1/sqrt(2 pi)``, found by Stein's
    identity without differentiating the teacher:

    >>> import numpy as np
    >>> from dmft import models
    >>> from dmft.expectation import gaussian_moments
    >>> cov = [[1.0, 0.5], [0.5, 1.0]]
    >>> float(gaussian_moments(models.linear_regression(noise_std=0.5), np.zeros(2), cov).loss)
    0.625
    >>> m = gaussian_moments(models.logistic(), np.zeros(2), cov)
    >>> round(float(m.hess_star[0, 0]), 6)
    -0.398942
    """
    mean, cov, label, use_label = _check(model, mean, cov, label, rule)
    if model.closed_form is not None and rule is None:
        m = model.closed_form(mean, cov, label, model.param_array)
        if m is not None:
            return m._replace(error=0.0) if error else m
    if rule is None:
        dim = len(mean) + (0 if use_label else model.noise_dim)
        rule = default_rule(dim, model.smooth, len(_planes(model, len(mean), use_label)))
    if not error:
        return _moments(model, mean, cov, label, rule)
    coarse = _moments(model, mean, cov, label, rule)
    fine = _moments(model, mean, cov, label, rule.refined())
    return fine._replace(error=abs(fine.loss - coarse.loss))


#: largest relative asymmetry ``max|cov - cov^T| / max|cov|`` accepted (round-off of a sum of outer products)
_ASYMMETRY_TOL = 1e-9


@njit(cache=True, nogil=True)
def _asymmetry_and_definite(c):
    """``(max|c - c^T| / max|c|, True if (c + c^T)/2 + 1e-14 tr I has a Cholesky factor)``:
    the covariance check of :func:`gaussian_moments` without numpy's per-call overhead
    (it runs on every right-hand side of the one-pass ODE)."""
    n = c.shape[0]
    scale, asym, tr = 0.0, 0.0, 0.0
    for i in range(n):
        tr += c[i, i]
        for j in range(n):
            scale = max(scale, abs(c[i, j]))
            asym = max(asym, abs(c[i, j] - c[j, i]))
    jitter = 1e-14 * max(tr, 1e-300)
    L = np.zeros((n, n))
    for j in range(n):
        s = c[j, j] + jitter
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if not s > 0.0:
            return asym / max(scale, 1e-300), False
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, n):
            t = 0.5 * (c[i, j] + c[j, i])
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / L[j, j]
    return asym / max(scale, 1e-300), True


def _check_cov(cov: np.ndarray) -> None:
    """``cov`` symmetric (to round-off) and positive semi-definite (to the tolerance of
    :func:`_cov_factor`), or a ParameterError naming it."""
    asym, definite = _asymmetry_and_definite(cov)
    if asym > _ASYMMETRY_TOL:
        raise errors.ParameterError(
            f"cov={cov.tolist()!r} is not allowed: cov must be symmetric (max|cov - cov^T| is {asym:.3g} of "
            "max|cov|)")
    if not definite:
        w = np.linalg.eigvalsh(0.5 * (cov + cov.T))
        if w[0] < -1e-3 * max(1.0, w[-1]):
            raise errors.ParameterError(
                f"cov={cov.tolist()!r} is not allowed: cov must be positive semi-definite (smallest eigenvalue "
                f"{w[0]:.3g})")


def _check_rule(rule) -> None:
    if rule is not None and not (callable(getattr(rule, "nodes", None)) and callable(getattr(rule, "refined", None))):
        raise errors.ParameterError(
            f"rule={rule!r} is not allowed: rule must be None or a rule object such as "
            + ", ".join(f"{r.__name__}()" for r in RULES))


def _check(model, mean, cov, label, rule=None):
    k = model.k
    _check_rule(rule)
    mean = errors.finite_array("mean", np.atleast_1d(mean))
    cov = errors.finite_array("cov", np.atleast_2d(cov))
    D = mean.shape[0]
    use_label = label is not None
    if use_label:
        label = errors.finite_array("label", np.atleast_1d(label))
        if label.shape != (model.label_dim,):
            raise errors.ParameterError(
                f"label has shape {label.shape}; expected (label_dim,) = ({model.label_dim},) for model {model.name!r}")
    # With a hard label the teacher is absent and z may be r alone.
    if D not in (k, k + model.k_star) or (D == k and not use_label and model.k_star):
        raise errors.ParameterError(
            f"mean has length {D}; expected k + k_star = {k + model.k_star}"
            + (f" (or k = {k} with a fixed label)" if model.k_star else "")
        )
    if cov.shape != (D, D):
        raise errors.ParameterError(f"cov has shape {cov.shape}; expected {(D, D)}")
    _check_cov(cov)
    return mean, cov, label, use_label


def _moments(model, mean, cov, label, rule) -> Moments:
    k = model.k
    D = len(mean)
    ks = D - k
    use_label = label is not None
    Z, EPS, wts = _points(model, mean, cov, use_label, rule)
    lab = np.asarray(label, dtype=float) if use_label else np.zeros(model.label_dim)
    kernel = specialise(weighted_moments, loss=model.loss, grad=model.grad, hess=model.hess, teacher=model.teacher)
    El, Eg, EH, EI, EgZ = kernel(model.param_array, Z, EPS, lab, use_label, wts, k, ks, True)
    cross = EgZ - np.outer(Eg, mean)  # E[g (z - Ez)^T]
    if not model.smooth and _well_conditioned(cov):
        full = np.linalg.solve(cov, cross.T).T
        EH, Hs = full[:, :k], full[:, k:]
    elif ks:
        Hs = (cross[:, k:] - EH @ cov[:k, k:]) @ np.linalg.pinv(cov[k:, k:])
    else:
        Hs = np.zeros((k, 0))
    return Moments(float(El), Eg, EH, Hs, EI)


def _planes(model, D: int, use_label: bool) -> np.ndarray:
    """The model's kink hyperplanes ``a . w = b`` over ``w = (z, eps)`` as rows ``(a, b)``,
    restricted to the variables integrated here (a plane through the teacher's inputs is
    dropped with a hard label: the teacher is not evaluated)."""
    planes = model.kink_planes()
    n_w = D + (0 if use_label else model.noise_dim)
    if not len(planes):
        return np.zeros((0, n_w + 1))
    k, ks = model.k, model.k_star
    full = k + ks + model.noise_dim
    a, b = planes[:, :full], planes[:, full:]
    keep = np.ones(len(a), bool)
    cols = list(range(D))
    if not use_label:
        cols += list(range(k + ks, full))
    else:
        keep &= ~np.any(a[:, D:] != 0, axis=1)
    return np.hstack([a[keep][:, cols], b[keep]])


def _points(model, mean, cov, use_label, rule):
    """Quadrature points ``Z`` (N, D) of ``z``, ``EPS`` (N, noise_dim) and weights (N,)."""
    D = len(mean)
    noise_dim = 0 if use_label else model.noise_dim
    n_w = D + noise_dim
    L = np.zeros((n_w, n_w))
    L[:D, :D] = _cov_factor(cov)
    L[D:, D:] = np.eye(noise_dim)
    mean_w = np.concatenate([mean, np.zeros(noise_dim)])
    planes = _planes(model, D, use_label)
    if len(planes) and isinstance(rule, _Rule):
        U, wts = _split_nodes(L, mean_w, planes, rule)
    else:
        U, wts = rule.nodes(n_w)
    W = mean_w + U @ L.T
    return np.ascontiguousarray(W[:, :D]), np.ascontiguousarray(W[:, D:]), np.ascontiguousarray(wts)


def _split_basis(L, mean_w, planes):
    """Orthonormal basis ``Q`` (n_w, n_w) of the whitened coordinates ``u`` (``w = mean_w +
    L u``) whose first ``R`` columns span the planes' normals, and the planes in the new
    coordinates ``v = Q^T u``: coefficients ``C`` (m, R), right-hand sides ``beta`` (m,) and
    the level of each plane (its last non-zero coefficient: the coordinate it splits)."""
    n_w = L.shape[0]
    normals = planes[:, :-1] @ L  # (m, n_w): a^T L
    beta = planes[:, -1] - planes[:, :-1] @ mean_w
    size = np.linalg.norm(normals, axis=1)
    live = size > 1e-12 * max(1.0, float(np.abs(L).max()))
    normals, beta = normals[live], beta[live]
    basis = []
    for nrm in normals:  # Gram-Schmidt: a new coordinate for each independent normal
        r = nrm - sum((nrm @ q) * q for q in basis)
        if np.linalg.norm(r) > 1e-9 * np.linalg.norm(nrm):
            basis.append(r / np.linalg.norm(r))
    R = len(basis)
    B = np.column_stack(basis) if R else np.zeros((n_w, 0))
    Q = np.linalg.qr(np.hstack([B, np.eye(n_w)]))[0]
    Q[:, :R] = B  # the same span; fixes the signs
    C = normals @ Q[:, :R]
    C[np.abs(C) < 1e-12 * np.maximum(np.abs(C).max(axis=1, keepdims=True), 1e-300)] = 0.0
    level = np.array([np.nonzero(c)[0].max() for c in C], dtype=int) if len(C) else np.zeros(0, int)
    return Q, C, beta, level


def _split_nodes(L, mean_w, planes, rule):
    """Whitened points ``u`` (N, n_w) and weights: nested per-piece Gauss rules of the normal
    density in the split coordinates (pieces between the planes' crossings and the breaks of
    :func:`_steep_breaks`), the rule's tensor grid in the others."""
    n_w = L.shape[0]
    Q, C, beta, level = _split_basis(L, mean_w, planes)
    R = C.shape[1]
    if R == 0:
        return rule.nodes(n_w)
    n = rule.piece_points(R)
    V = np.zeros((1, 0))
    wts = np.ones(1)
    for j in range(R):
        rows = level == j
        cross = (beta[rows] - V @ C[rows, :j].T) / C[rows, j]  # (N, m_j)
        ends = np.broadcast_to(np.array([-_CUT, _CUT]), (len(V), 2))
        edges = np.concatenate([ends, cross, _steep_breaks(C, beta, level, j, V, cross[:, 0])], axis=1)
        edges = np.sort(np.clip(edges, -_CUT, _CUT), axis=1)
        lo, hi = edges[:, :-1], edges[:, 1:]
        parent, piece = np.nonzero(hi > lo)  # empty pieces (merged breaks) carry no weight
        t, wt = _normal_piece_rule(lo[parent, piece], hi[parent, piece], n)  # (pieces, n)
        parent = np.repeat(parent, n)
        V = np.concatenate([V[parent], t.reshape(-1, 1)], axis=1)
        wts = wts[parent] * wt.reshape(-1)
        nz = wts > 0
        V, wts = V[nz], wts[nz]
    wts = wts / wts.sum()  # the tails beyond the cut (2e-17) and rounding
    pts_s, wts_s = rule.nodes(n_w - R, n_w)
    U = np.concatenate([np.repeat(V, len(wts_s), axis=0), np.tile(pts_s, (len(V), 1))], axis=1) @ Q.T
    return U, np.repeat(wts, len(wts_s)) * np.tile(wts_s, len(wts))


def _steep_breaks(C, beta, level, j, V, own):
    """Extra breaks of split coordinate ``j``, (N, m (1 + 2 len(_GRADES))), for the m planes
    of deeper levels.

    Integrating a deeper plane ``i`` out over the inner coordinates leaves a function of
    ``v_j`` that changes over a width ``w_i = |C_i,>j| / |C_ij|`` around the centre
    ``(beta_i - C_i,<j . v_<j) / C_ij`` (where the plane crosses the inner coordinates'
    origin). Nearly parallel planes (``w_i`` small: a student aligned with its teacher) make
    it a boundary layer that a few Gauss points per piece cannot resolve: breaks at the
    centre and at ``centre +- g w_i`` do. They merge into the coordinate's own crossing
    ``own`` (N,) as ``w_i`` rises over ``_STEEP``, so the nodes move continuously."""
    deep = np.flatnonzero(level > j)
    if not len(deep):
        return np.zeros((len(V), 0))
    Ci = C[deep]
    cij = Ci[:, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.linalg.norm(Ci[:, j + 1:], axis=1) / np.abs(cij)
        centre = (beta[deep] - V @ Ci[:, :j].T) / cij  # (N, m)
    x = np.clip((w - _STEEP[0]) / (_STEEP[1] - _STEEP[0]), 0.0, 1.0)
    pull = x * x * (3.0 - 2.0 * x)  # smoothstep: 0 below _STEEP[0], 1 above _STEEP[1]
    offsets = np.array((0.0,) + tuple(g * s for g in _GRADES for s in (-1.0, 1.0)))
    with np.errstate(invalid="ignore"):
        b = centre[..., None] + (w[:, None] * offsets)  # (N, m, 1 + 2 len(_GRADES))
        b = np.where((pull < 1.0)[:, None], b + pull[:, None] * (own[:, None, None] - b), own[:, None, None])
    return b.reshape(len(V), -1)


def _normal_piece_rule(lo, hi, n: int):
    """``n``-point Gauss rules (nodes, weights), each (K, n), of the standard normal density
    restricted to the intervals ``[lo, hi]`` (K,): exact for polynomials of degree
    ``< 2 n`` times the density on the piece (up to the discretisation). Built by the
    Stieltjes procedure and Golub-Welsch from Gauss-Legendre points of each piece
    (``_PIECE_DISCRETE``), so the nodes move smoothly with the ends. Empty pieces get
    zero weights."""
    x, w = _gauss_legendre(max(_PIECE_DISCRETE[0], _PIECE_DISCRETE[1] * n))
    half = 0.5 * (hi - lo)
    t = (0.5 * (hi + lo))[:, None] + half[:, None] * x  # (K, M)
    wt = half[:, None] * w * np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)
    mass = wt.sum(axis=1)
    live = mass > 1e-300
    wt = np.where(live[:, None], wt / np.where(live, mass, 1.0)[:, None], 1.0 / len(x))
    K = len(lo)
    alpha = np.zeros((K, n))
    off = np.zeros((K, max(n - 1, 0)))
    p_prev, p = np.zeros_like(t), np.ones_like(t)
    for i in range(n):  # orthonormal polynomials of the discrete measure (Stieltjes)
        alpha[:, i] = np.sum(wt * t * p * p, axis=1)
        q = (t - alpha[:, i:i + 1]) * p - (off[:, i - 1:i] * p_prev if i else 0.0)
        if i + 1 < n:
            off[:, i] = np.sqrt(np.maximum(np.sum(wt * q * q, axis=1), 1e-300))
            p_prev, p = p, q / off[:, i:i + 1]
    J = np.zeros((K, n, n))
    d = np.arange(n)
    J[:, d, d] = alpha
    J[:, d[:-1], d[1:]] = off
    J[:, d[1:], d[:-1]] = off
    nodes, vec = np.linalg.eigh(J)  # Golub-Welsch
    return nodes, np.where(live[:, None], mass[:, None] * vec[:, 0, :] ** 2, 0.0)


def _well_conditioned(cov: np.ndarray) -> bool:
    w = np.linalg.eigvalsh(cov)
    return w[0] > 1e-8 * max(1.0, w[-1])
