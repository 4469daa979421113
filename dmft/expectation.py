"""One Gaussian-expectation engine for everything (THEORY.md sections 2 and 3).

Expectations of the loss and its derivatives over ``(r, r_star)`` jointly Gaussian with
given mean and covariance (and independent standard Gaussian label noise ``eps``, or a
fixed hard label). Rules:

* :class:`GaussHermite`: tensor Gauss-Hermite grid, exact for polynomials of degree
  ``< 2 n`` per dimension; the default up to 4 integration dimensions.
* :class:`QuasiMonteCarlo`: fixed scrambled Sobol points mapped through the normal
  quantile (error ~ ``log(N)^D / N`` for smooth integrands); the default above that.

Both use *fixed* points, so the moments are smooth functions of the mean and covariance
and ODE solvers see a smooth right-hand side.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from . import errors
from ._jit import specialise
from ._kernels_expectation import weighted_moments


@dataclass(frozen=True)
class GaussHermite:
    """Tensor Gauss-Hermite rule; ``points_per_dim=None`` picks 96/32/20/10 points for 1-4 dims."""

    points_per_dim: int | None = None

    def __post_init__(self):
        if self.points_per_dim is not None:
            errors.positive_int("points_per_dim", self.points_per_dim)

    def nodes(self, dim: int):
        n = self.points_per_dim or {0: 1, 1: 96, 2: 32, 3: 20, 4: 10}.get(dim, 6)
        return _gauss_hermite(dim, n)


@dataclass(frozen=True)
class QuasiMonteCarlo:
    """Scrambled Sobol rule with ``n_points`` (a power of 2) fixed points from ``seed``."""

    n_points: int = 8192
    seed: int = 0

    def __post_init__(self):
        n = errors.positive_int("n_points", self.n_points, minimum=2)
        if n & (n - 1):
            raise errors.ParameterError(f"n_points={n!r} is not allowed: n_points must be a power of 2")

    def nodes(self, dim: int):
        return _sobol_normal(dim, self.n_points, self.seed)


@functools.lru_cache(maxsize=64)
def _gauss_hermite(dim: int, n: int):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    if dim == 0:
        return np.zeros((1, 0)), np.ones(1)
    pts = np.array(list(itertools.product(x, repeat=dim)))
    wts = np.prod(np.array(list(itertools.product(w, repeat=dim))), axis=1)
    pts.setflags(write=False)
    wts.setflags(write=False)
    return pts, wts


@functools.lru_cache(maxsize=64)
def _sobol_normal(dim: int, n: int, seed: int):
    from scipy import special, stats  # imported here: scipy.stats costs ~1 s at import

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


def default_rule(dim: int, smooth: bool = True):
    """Gauss-Hermite up to 3 dims (4 for smooth models), quasi-Monte Carlo above."""
    return GaussHermite() if dim <= 3 or (dim == 4 and smooth) else QuasiMonteCarlo()


class Moments(NamedTuple):
    """Gaussian expectations of the loss and its ``r``-derivatives.

    loss: ``E l``; grad: ``E dl/dr`` (k,); hess: ``E d2l/dr2`` (k, k);
    hess_star: ``E d2l/dr dr_star`` (k, k_star) by Stein's identity; fisher:
    ``E (dl/dr)(dl/dr)^T`` (k, k).
    """

    loss: float
    grad: np.ndarray
    hess: np.ndarray
    hess_star: np.ndarray
    fisher: np.ndarray


def _cov_factor(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``cov + jitter I``.

    The factor must be a smooth function of ``cov`` so that ODE solvers see a smooth
    right-hand side: a square root built from eigenvectors jumps where eigenvalues are
    degenerate (e.g. symmetric classes at ``X0 = 0``; DOP853 then needed 3718 instead of
    82 evaluations on the 15-class case). Cholesky is smooth on positive-definite matrices;
    the jitter (1e-14 of the trace) makes it so at singular ``cov`` too. Putting ``r``
    first also aligns the grid with kinks in ``r`` (Huber: 1e-4 instead of 3e-4 error).
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


def gaussian_moments(model, mean, cov, *, label=None, rule=None) -> Moments:
    """Moments of ``model`` over ``z = (r, r_star) ~ N(mean, cov)``.

    Parameters
    ----------
    model : dmft.models.Model
    mean : (k + k_star,) array, or (k,) with a fixed ``label``
    cov : (D, D) array, positive semi-definite, ``D = len(mean)``
    label : (label_dim,) array or None
        A fixed (hard) label; if None the label is ``teacher(r_star, eps)`` and the noise
        ``eps ~ N(0, I_noise_dim)`` is integrated too.
    rule : GaussHermite | QuasiMonteCarlo | None
        Default: the model's closed form if it has one; otherwise Gauss-Hermite up to 3
        integration dimensions (4 for smooth models), quasi-Monte Carlo above.

    ``hess_star`` uses Stein's identity (no teacher derivative):
    ``H* = (E[g (r* - E r*)^T] - H Cov(r, r*)) Cov(r*, r*)^+``. For non-smooth models
    (Hessian with jumps or Dirac terms) the Hessian itself is taken from the gradient,
    ``[H, H*] = E[g (z - E z)^T] Cov(z)^-1``, which converges much faster under
    quadrature (Huber-on-tanh: 1e-4 against 8e-2 for the direct Hessian);
    where ``Cov(z)`` is singular the direct Hessian is used.
    """
    k = model.k
    mean = errors.finite_array("mean", np.atleast_1d(mean))
    cov = errors.finite_array("cov", np.atleast_2d(cov))
    D = mean.shape[0]
    use_label = label is not None
    # With a hard label the teacher is absent and z may be r alone.
    if D not in (k, k + model.k_star) or (D == k and not use_label and model.k_star):
        raise errors.ParameterError(
            f"mean has length {D}; expected k + k_star = {k + model.k_star}"
            + (f" (or k = {k} with a fixed label)" if model.k_star else "")
        )
    if cov.shape != (D, D):
        raise errors.ParameterError(f"cov has shape {cov.shape}; expected {(D, D)}")
    ks = D - k
    if model.closed_form is not None and rule is None:
        return model.closed_form(mean, cov, label, model.param_array)
    noise_dim = 0 if use_label else model.noise_dim
    dim = D + noise_dim
    pts, wts = (rule or default_rule(dim, model.smooth)).nodes(dim)
    Z = mean + pts[:, :D] @ _cov_factor(cov).T
    EPS = np.ascontiguousarray(pts[:, D:]) if noise_dim else np.zeros((len(wts), 0))
    lab = np.asarray(label, dtype=float) if use_label else np.zeros(model.label_dim)
    kernel = specialise(weighted_moments, loss=model.loss, grad=model.grad, hess=model.hess, teacher=model.teacher)
    El, Eg, EH, EI, EgZ = kernel(model.param_array, np.ascontiguousarray(Z), EPS, lab, use_label, wts, k, ks, True)
    cross = EgZ - np.outer(Eg, mean)  # E[g (z - Ez)^T]
    if not model.smooth and _well_conditioned(cov):
        full = np.linalg.solve(cov, cross.T).T
        EH, Hs = full[:, :k], full[:, k:]
    elif ks:
        Hs = (cross[:, k:] - EH @ cov[:k, k:]) @ np.linalg.pinv(cov[k:, k:])
    else:
        Hs = np.zeros((k, 0))
    return Moments(float(El), Eg, EH, Hs, EI)


def _well_conditioned(cov: np.ndarray) -> bool:
    w = np.linalg.eigvalsh(cov)
    return w[0] > 1e-8 * max(1.0, w[-1])
