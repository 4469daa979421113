"""Model definitions shared by ``onepass`` and ``dmft`` (docs/models.md).

A model is a per-sample loss ``l(r, y)`` of the student pre-activations ``r in R^k``,
its first and second derivatives in ``r``, and a teacher ``y = sigma_star(r_star, eps)``
of the teacher pre-activations ``r_star in R^k_star`` and standard Gaussian label noise
``eps in R^noise_dim``. Labels are vectors ``y in R^label_dim``.

Every function is a numba ``njit`` function with the out-parameter signatures

* ``loss(r, y, params) -> float``
* ``grad(r, y, params, out)``       writes ``dl/dr``, shape ``(k,)``
* ``hess(r, y, params, out)``       writes ``d2l/dr2``, shape ``(k, k)``
* ``teacher(r_star, eps, params, out)`` writes ``y``, shape ``(label_dim,)``

so that simulators and the expectation engine can call them inside compiled loops.
``params`` is a float array holding the model's numbers (noise level, threshold, ...).
Build your own with :func:`custom` from plain Python/numpy functions.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit

from . import _config, errors

__all__ = ["Model", "get", "custom", "linear_regression", "logistic", "softmax_cross_entropy", "huber_tanh",
           "phase_retrieval", "smooth_hinge", "relu", "committee"]

# inline="always": the kernels call these once per sample and event, and a call between
# separately compiled numba functions costs more than these small functions (docs/performance.md)
_JIT = dict(cache=True, fastmath=_config.MODEL_FASTMATH, inline="always")


#: A jump of ``l'`` across a kink plane (:meth:`Model.gradient_jumps`) above this is a Dirac
#: part of ``l''``; below it, a C1 kink (Huber, a smoothed hinge) measured through round-off.
GRADIENT_JUMP_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class Model:
    """A loss, its derivatives in ``r`` and a teacher; see the module docstring.

    ``smooth=False`` declares that ``hess`` jumps (Huber) or misses Dirac terms (phase
    retrieval), so Gaussian expectations of the Hessian are taken by Stein's identity
    from ``grad`` (see :func:`dmft.expectation.gaussian_moments`).
    ``class_labels(C)`` gives the ``(C, label_dim)`` label vectors of hard-label
    classification with ``C`` classes (class ``c`` has label row ``c``).
    ``closed_form(mean, cov, label, params)``, optional, returns the Gaussian moments
    exactly (a :class:`dmft.expectation.Moments`), or None where it has no formula; the
    expectation engine skips quadrature when it gets moments, unless a rule is asked for.
    ``kinks(params)``, optional, returns the hyperplanes on which the loss, its gradient
    or the teacher is not smooth, as rows ``(a, b)`` of an ``(m, k + k_star + noise_dim + 1)``
    array meaning ``a . (r, r_star, eps) = b``; the expectation engine integrates across
    them piecewise (a sign teacher ``1[r* + s eps > 0]`` has the row ``(0, 1, s, 0)``).
    """

    name: str
    k: int
    k_star: int
    label_dim: int
    noise_dim: int
    loss: Callable
    grad: Callable
    hess: Callable
    teacher: Callable
    params: tuple = ()
    param_names: tuple = ()
    smooth: bool = True
    class_labels: Callable | None = None
    description: str = ""
    closed_form: Callable | None = None
    kinks: Callable | None = None

    def kink_planes(self) -> np.ndarray:
        """``kinks(params)`` as an ``(m, k + k_star + noise_dim + 1)`` float array."""
        width = self.k + self.k_star + self.noise_dim + 1
        if self.kinks is None:
            return np.zeros((0, width))
        planes = np.atleast_2d(np.asarray(self.kinks(self.param_array), dtype=float))
        if planes.size == 0:
            return np.zeros((0, width))
        if planes.ndim != 2 or planes.shape[1] != width or not np.isfinite(planes).all():
            raise errors.ParameterError(
                f"kinks of model {self.name!r} returned an array of shape {planes.shape}; expected "
                f"finite rows (a, b) of length k + k_star + noise_dim + 1 = {width}")
        return planes

    def gradient_jumps(self, n_points: int = 8, seed: int = 0) -> np.ndarray:
        """Per row of :meth:`kink_planes`, the largest jump of ``grad`` across the plane:
        ``|l'(w + h a_r) - l'(w - h a_r)|`` (``h = 1e-7``) at ``n_points`` random points ``w``
        of the plane, with the label ``teacher(r*, eps)`` of the point; 0 for planes that do
        not involve ``r``. Non-zero means ``l''`` has a Dirac part on the plane (ReLU,
        ``|r|``), which pathwise tangents of the DMFT response cannot see (``dmft.solve``
        smooths it instead); a C1 kink (Huber, a smoothed hinge) gives ~0."""
        planes = self.kink_planes()
        rng = np.random.default_rng(seed)
        jumps = np.zeros(len(planes))
        for i, row in enumerate(planes):
            if np.any(row[:self.k]):
                for gp, gm, _ in self.gradients_across(row, n_points, rng):
                    jumps[i] = max(jumps[i], float(np.abs(gp - gm).max()))
        return jumps

    def gradients_across(self, plane, n_points: int, rng: np.random.Generator):
        """``(l'(w + h u), l'(w - h u), u)`` at ``n_points`` random points ``w`` of the kink plane
        ``plane`` (a row of :meth:`kink_planes` that involves ``r``), ``u`` its unit normal in ``r``
        and ``h = 1e-7``, with the label ``teacher(r*, eps)`` of the point."""
        k, ks, nd = self.k, self.k_star, self.noise_dim
        a, b = plane[:-1], plane[-1]
        unit = a[:k] / np.linalg.norm(a[:k])
        p = self.param_array
        y, gp, gm = np.empty(self.label_dim), np.empty(k), np.empty(k)
        for _ in range(n_points):
            w = rng.standard_normal(k + ks + nd)
            w += (b - a @ w) / (a @ a) * a  # onto the plane
            self.teacher(w[k:k + ks], w[k + ks:], p, y)
            self.grad(w[:k] + 1e-7 * unit, y, p, gp)
            self.grad(w[:k] - 1e-7 * unit, y, p, gm)
            yield gp, gm, unit

    def gradient_jump(self, n_points: int = 8, seed: int = 0) -> float:
        """The largest of :meth:`gradient_jumps` (0 without kinks)."""
        return float(self.gradient_jumps(n_points, seed).max(initial=0.0))

    def undeclared_jumps(self, n_lines: int = 16, n_points: int = 64, seed: int = 0) -> list:
        """Jumps of ``grad`` in ``r`` and of the teacher in ``(r*, eps)`` off the declared kinks.

        Scans ``n_lines`` random lines through standard-normal points ``x = (r, r*, eps)``
        (for ``grad``: along ``r`` with the line's label ``y = teacher(r*, eps)``; for the
        teacher: along ``(r*, eps)``) on ``n_points`` points of ``[-4, 4]``. The two
        places of each line with the largest second difference are bisected toward the
        larger increment down to a width of ``1e-4``, where a jump keeps its size and a
        smooth function's increment has shrunk (:func:`_line_jump`). Returns
        ``(what, x, size)`` per jump off every declared plane (``|a . x - b|`` above
        ``1e-3 |a|``), ``what`` being ``'grad'`` or ``'teacher'``; at most one per line.
        """
        k, ks, nd = self.k, self.k_star, self.noise_dim
        p, planes = self.param_array, self.kink_planes()
        rng = np.random.default_rng(seed)
        y, g = np.empty(self.label_dim), np.empty(k)

        def grad_at(x, y):
            self.grad(x[:k], y, p, g)
            return g.copy()

        def teacher_at(x):
            self.teacher(x[k:k + ks], x[k + ks:], p, y)
            return y.copy()

        found, taught = [], self.teacher is not _no_teacher
        if not taught:  # hard labels only: grad is scanned at standard-normal labels
            teacher_at = lambda x: rng.standard_normal(self.label_dim)  # noqa: E731
        scans = [("grad", slice(0, k))] + ([("teacher", slice(k, k + ks + nd))] if taught and ks + nd else [])
        for what, part in scans:
            for _ in range(n_lines):
                x0 = rng.standard_normal(k + ks + nd)
                u = np.zeros_like(x0)
                u[part] = rng.standard_normal(part.stop - part.start)
                u /= np.linalg.norm(u)
                f = teacher_at if what == "teacher" else functools.partial(grad_at, y=teacher_at(x0))
                jump = _line_jump(f, x0, u, n_points)
                if jump is not None and not _on_planes(jump[0], planes):
                    found.append((what, jump[0], jump[1]))
        return found

    @property
    def param_array(self) -> np.ndarray:
        return np.asarray(self.params, dtype=float)

    def attrs(self) -> dict:
        """Model description as netCDF-safe attributes."""
        out = {"model": self.name, "k": self.k, "k_star": self.k_star}
        for n, v in zip(self.param_names, self.params):
            out[f"model_{n}"] = float(v)
        return out

    def labels_for_classes(self, n_classes: int) -> np.ndarray:
        if self.class_labels is None:
            raise errors.ParameterError(
                f"model={self.name!r} has no hard labels; use a teacher (soft labels) instead"
            )
        return np.asarray(self.class_labels(n_classes), dtype=float)

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}={v:g}" for n, v in zip(self.param_names, self.params))
        return f"Model({self.name}, k={self.k}, k_star={self.k_star}{', ' + ps if ps else ''})"


# ---------------------------------------------------------------- numerics helpers
@njit(**_JIT)
def _log1pexp(x):
    """log(1 + e^x) without overflow."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(**_JIT)
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(**_JIT)
def _tanh_sech2(x):
    """``(tanh x, 1 - tanh(x)^2)`` from one exponential, both to a few ulps (relative), small
    or large ``|x|``: with ``e = exp(-2|x|)``, ``tanh|x| = (1 - e)/(1 + e)`` and
    ``sech^2 x = 4 e / (1 + e)^2``; below ``|x| = 1/2``, where ``1 - e`` would cancel,
    ``e - 1 = expm1(-2|x|)`` instead. Half the transcendental calls of ``tanh`` and ``exp``
    separately: Huber-on-tanh's gradient and Hessian run once per path and event."""
    a = abs(x)
    if a < 0.5:
        em = math.expm1(-2.0 * a)
        e = 1.0 + em
        t = -em / (2.0 + em)
    else:
        e = math.exp(-2.0 * a)
        t = (1.0 - e) / (1.0 + e)
    return (t if x >= 0.0 else -t), 4.0 * e / ((1.0 + e) * (1.0 + e))


@njit(**_JIT)
def _no_teacher(r_star, eps, p, out):
    # the teacher of custom(..., teacher=None): a label asked of it is an error, never zero
    raise errors.ParameterError(
        "teacher=None: this model has no teacher (dmft.models.custom(..., teacher=None)) and takes hard "
        "labels only (class_labels, or label= in dmft.expectation.gaussian_moments); build it with "
        "teacher=fn, fn(r_star, eps) -> y, for teacher-student data, dmft.solve and dmft.simulate")


# ---------------------------------------------------------------- linear regression
@njit(**_JIT)
def _sq_loss(r, y, p):
    s = 0.0
    for j in range(r.size):
        s += (r[j] - y[j]) ** 2
    return 0.5 * s


@njit(**_JIT)
def _sq_grad(r, y, p, out):
    for j in range(r.size):
        out[j] = r[j] - y[j]


@njit(**_JIT)
def _sq_hess(r, y, p, out):
    out[:, :] = 0.0
    for j in range(r.size):
        out[j, j] = 1.0


@njit(**_JIT)
def _linear_teacher(r_star, eps, p, out):
    for j in range(out.size):
        out[j] = r_star[j] + p[0] * eps[j]


def _sq_closed_form(mean, cov, label, params):
    """Exact moments of ``|r - y|^2/2``: with ``e = r - r*`` (or ``r - label``) Gaussian."""
    from .expectation import Moments

    k = len(mean) if label is not None else len(mean) // 2
    if label is not None:
        e_mean, e_cov, noise = mean - np.asarray(label, float), cov, 0.0
    else:
        T = np.hstack([np.eye(k), -np.eye(k)])
        e_mean, e_cov, noise = T @ mean, T @ cov @ T.T, params[0] ** 2
    second = e_cov + np.outer(e_mean, e_mean) + noise * np.eye(k)
    return Moments(0.5 * float(np.trace(second)), e_mean, np.eye(k),
                   -np.eye(k) if label is None else np.zeros((k, len(mean) - k)), second)


def linear_regression(noise_std: float = 0.5, k: int = 1) -> Model:
    """Squared loss ``l = |r - y|^2 / 2`` with teacher ``y = r_star + noise_std * eps``.

    ``k`` student and teacher directions (``k = k_star``), labels in ``R^k``.
    """
    noise_std = errors.nonnegative("noise_std", noise_std)
    k = errors.positive_int("k", k)
    return Model(
        "linear_regression", k, k, k, k, _sq_loss, _sq_grad, _sq_hess, _linear_teacher,
        params=(noise_std,), param_names=("noise_std",),
        description="l = |r - y|^2/2, y = r* + noise_std eps", closed_form=_sq_closed_form,
    )


# ---------------------------------------------------------------- logistic (binary)
@njit(**_JIT)
def _logistic_loss(r, y, p):
    return _log1pexp(r[0]) - y[0] * r[0]


@njit(**_JIT)
def _logistic_grad(r, y, p, out):
    out[0] = _sigmoid(r[0]) - y[0]


@njit(**_JIT)
def _logistic_hess(r, y, p, out):
    s = _sigmoid(r[0])
    out[0, 0] = s * (1.0 - s)


@njit(**_JIT)
def _sign_teacher(r_star, eps, p, out):
    out[0] = 1.0 if r_star[0] + p[0] * eps[0] > 0 else 0.0


def _sign_teacher_kink(p):
    """The sign teacher's label jumps on ``r* + noise_std eps = 0`` (``k = k* = 1``)."""
    return [[0.0, 1.0, p[0], 0.0]]


def _binary_labels(n_classes: int) -> np.ndarray:
    if n_classes != 2:
        raise errors.ParameterError(
            f"n_classes={n_classes!r} is not allowed: logistic regression needs exactly 2 classes"
        )
    return np.array([[1.0], [0.0]])


def logistic(noise_std: float = 0.0) -> Model:
    """Binary logistic loss ``l = log(1 + e^r) - y r`` with labels ``y in {0, 1}``.

    Hard labels: class 0 has ``y = 1``, class 1 has ``y = 0``. Teacher (soft labels):
    ``y = 1[r_star + noise_std * eps > 0]``.
    """
    noise_std = errors.nonnegative("noise_std", noise_std)
    return Model(
        "logistic", 1, 1, 1, 1, _logistic_loss, _logistic_grad, _logistic_hess, _sign_teacher,
        params=(noise_std,), param_names=("noise_std",), class_labels=_binary_labels,
        description="l = log(1+e^r) - y r, y in {0,1}", kinks=_sign_teacher_kink,
    )


# ---------------------------------------------------------------- softmax cross-entropy
@njit(**_JIT)
def _logsumexp(r):
    m = r.max()
    s = 0.0
    for j in range(r.size):
        s += math.exp(r[j] - m)
    return m + math.log(s)


@njit(**_JIT)
def _softmax_into(r, out):
    lse = _logsumexp(r)
    for j in range(r.size):
        out[j] = math.exp(r[j] - lse)


@njit(**_JIT)
def _ce_loss(r, y, p):
    lse = _logsumexp(r)
    s = 0.0
    for j in range(r.size):
        s += y[j] * (lse - r[j])
    return s


@njit(**_JIT)
def _ce_grad(r, y, p, out):
    _softmax_into(r, out)
    tot = 0.0
    for j in range(r.size):
        tot += y[j]
    for j in range(r.size):
        out[j] = tot * out[j] - y[j]


@njit(**_JIT)
def _ce_hess(r, y, p, out):
    q = np.empty(r.size)
    _softmax_into(r, q)
    tot = 0.0
    for j in range(r.size):
        tot += y[j]
    for a in range(r.size):
        for b in range(r.size):
            out[a, b] = -tot * q[a] * q[b]
        out[a, a] += tot * q[a]


@njit(**_JIT)
def _softmax_teacher(r_star, eps, p, out):
    _softmax_into(r_star, out)


def softmax_cross_entropy(n_classes: int = 3) -> Model:
    """Multi-class cross-entropy ``l = sum_j y_j (logsumexp(r) - r_j)``, ``k = n_classes``.

    Hard labels are one-hot rows; the teacher gives soft labels ``y = softmax(r_star)``.
    """
    n = errors.positive_int("n_classes", n_classes, minimum=2)

    def labels(n_c: int) -> np.ndarray:
        if n_c != n:
            raise errors.ParameterError(
                f"n_classes={n_c!r} is not allowed: this softmax model has {n} classes"
            )
        return np.eye(n)

    return Model(
        "softmax_cross_entropy", n, n, n, 0, _ce_loss, _ce_grad, _ce_hess, _softmax_teacher,
        params=(float(n),), param_names=("n_classes",), class_labels=labels,
        description="l = logsumexp(r) - y.r, y one-hot or softmax(r*)",
    )


# ---------------------------------------------------------------- Huber on tanh
@njit(**_JIT)
def _mean_tanh(r):
    s = 0.0
    for j in range(r.size):
        s += math.tanh(r[j])
    return s / r.size


@njit(**_JIT)
def _huber_loss(r, y, p):
    u = _mean_tanh(r) - y[0]
    h = p[1]
    if abs(u) <= h:
        return 0.5 * u * u
    return h * (abs(u) - 0.5 * h)


@njit(**_JIT)
def _huber_grad(r, y, p, out):
    k = r.size
    s = 0.0
    for j in range(k):
        t, sj = _tanh_sech2(r[j])
        s += t
        out[j] = sj
    u = s / k - y[0]
    du = min(max(u, -p[1]), p[1])
    for j in range(k):
        out[j] *= du / k


@njit(**_JIT)
def _huber_hess(r, y, p, out):
    k = r.size
    s = 0.0
    for a in range(k):
        s += _tanh_sech2(r[a])[0]
    u = s / k - y[0]
    h = p[1]
    du = min(max(u, -h), h)
    ddu = 1.0 if abs(u) <= h else 0.0
    for a in range(k):
        ta, sa = _tanh_sech2(r[a])
        for b in range(k):
            sb = sa if b == a else _tanh_sech2(r[b])[1]
            out[a, b] = ddu * sa * sb / (k * k)
        out[a, a] += du * (-2.0 * ta * sa) / k


@njit(**_JIT)
def _tanh_teacher(r_star, eps, p, out):
    out[0] = _mean_tanh(r_star) + p[0] * eps[0]


def huber_tanh(noise_std: float = 0.3, threshold: float = 0.5, k: int = 1) -> Model:
    """Huber loss (``threshold``) on a tanh student: ``l = huber(mean_j tanh(r_j) - y)``.

    Teacher ``y = mean_j tanh(r_star_j) + noise_std * eps`` with ``k_star = k``.
    """
    noise_std = errors.nonnegative("noise_std", noise_std)
    threshold = errors.positive("threshold", threshold)
    k = errors.positive_int("k", k)
    return Model(
        "huber_tanh", k, k, 1, 1, _huber_loss, _huber_grad, _huber_hess, _tanh_teacher,
        params=(noise_std, threshold), param_names=("noise_std", "threshold"), smooth=False,
        description="l = huber(mean tanh(r) - y), y = mean tanh(r*) + noise_std eps",
    )


# ---------------------------------------------------------------- phase retrieval
@njit(**_JIT)
def _pr_loss(r, y, p):
    return (abs(r[0]) - y[0]) ** 2


@njit(**_JIT)
def _pr_grad(r, y, p, out):
    s = 1.0 if r[0] > 0 else (-1.0 if r[0] < 0 else 0.0)
    out[0] = 2.0 * (abs(r[0]) - y[0]) * s


@njit(**_JIT)
def _pr_hess(r, y, p, out):
    out[0, 0] = 2.0


@njit(**_JIT)
def _pr_teacher(r_star, eps, p, out):
    out[0] = abs(r_star[0]) + p[0] * eps[0]


def phase_retrieval(noise_std: float = 0.0) -> Model:
    """Phase retrieval ``l = (|r| - y)^2`` with ``y = |r_star| + noise_std * eps``.

    The Hessian has a Dirac term at ``r = 0`` (``-4 y delta(r)``), so the model is
    declared non-smooth and Gaussian Hessian expectations use Stein's identity.
    """
    noise_std = errors.nonnegative("noise_std", noise_std)
    return Model(
        "phase_retrieval", 1, 1, 1, 1, _pr_loss, _pr_grad, _pr_hess, _pr_teacher,
        params=(noise_std,), param_names=("noise_std",), smooth=False,
        description="l = (|r| - y)^2, y = |r*| + noise_std eps",
        kinks=lambda p: [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
    )


# ---------------------------------------------------------------- smooth hinge
@njit(**_JIT)
def _smooth_hinge_loss(r, y, p):
    u = y[0] * r[0]
    if u >= 1.0:
        return 0.0
    if u <= 0.0:
        return 0.5 - u
    return 0.5 * (1.0 - u) ** 2


@njit(**_JIT)
def _smooth_hinge_grad(r, y, p, out):
    u = y[0] * r[0]
    out[0] = y[0] * (0.0 if u >= 1.0 else (-1.0 if u <= 0.0 else u - 1.0))


@njit(**_JIT)
def _smooth_hinge_hess(r, y, p, out):
    u = y[0] * r[0]
    out[0, 0] = y[0] * y[0] if 0.0 < u < 1.0 else 0.0


@njit(**_JIT)
def _pm_sign_teacher(r_star, eps, p, out):
    out[0] = 1.0 if r_star[0] + (p[0] * eps[0] if eps.size else 0.0) > 0 else -1.0


def _smooth_hinge_kinks(noise_dim, p):
    """The Hessian jumps at margins ``y r = 0, 1``, i.e. on ``r = 0`` and ``r = y = +-1``;
    the label jumps on ``r* + noise_std eps = 0``. Columns ``(r, r*, eps[:noise_dim], b)``."""
    planes = [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]
    if noise_dim:
        planes = [row[:2] + [p[0] if row[1] else 0.0] + row[2:] for row in planes]
    return planes


def _pm_labels(n_classes: int) -> np.ndarray:
    if n_classes != 2:
        raise errors.ParameterError(
            f"n_classes={n_classes!r} is not allowed: the smooth hinge needs exactly 2 classes"
        )
    return np.array([[1.0], [-1.0]])


def smooth_hinge(noise_std: float = 0.0) -> Model:
    """Quadratically smoothed hinge loss on labels ``y in {-1, +1}``.

    With the margin ``u = y r``: ``l = 1/2 - u`` for ``u <= 0``, ``(1 - u)^2 / 2`` for
    ``0 < u < 1`` and ``0`` for ``u >= 1`` (C1; ``d2l/dr2 = 1[0 < u < 1]`` jumps at
    ``r = 0`` and ``r = y``). Teacher ``y = sign(r_star + noise_std * eps)``; hard labels:
    class 0 has ``y = +1``, class 1 has ``y = -1``.

    Declared kinks (:attr:`Model.kinks`): the Hessian's jumps ``r = 0``, ``r = 1``,
    ``r = -1`` (each of the last two is a kink for one label only) and the teacher's jump
    ``r* + noise_std eps = 0``. ``smooth=False``: Hessian expectations by Stein's identity
    from the continuous gradient. Without label noise (``noise_std = 0``) the model has
    ``noise_dim = 0``.
    """
    noise_std = errors.nonnegative("noise_std", noise_std)
    noise_dim = int(noise_std > 0)
    return Model(
        "smooth_hinge", 1, 1, 1, noise_dim, _smooth_hinge_loss, _smooth_hinge_grad, _smooth_hinge_hess,
        _pm_sign_teacher, params=(noise_std,), param_names=("noise_std",), smooth=False, class_labels=_pm_labels,
        description="l = smooth_hinge(y r), y = sign(r* + noise_std eps) in {-1,1}",
        kinks=functools.partial(_smooth_hinge_kinks, noise_dim),
    )


# ---------------------------------------------------------------- committees (squared loss)
@njit(**_JIT)
def _relu_mean(r):
    s = 0.0
    for j in range(r.size):
        s += max(r[j], 0.0)
    return s / r.size


@njit(**_JIT)
def _relu_loss(r, y, p):
    return 0.5 * (_relu_mean(r) - y[0]) ** 2


@njit(**_JIT)
def _relu_grad(r, y, p, out):
    e = (_relu_mean(r) - y[0]) / r.size
    for j in range(r.size):
        out[j] = e if r[j] > 0.0 else 0.0


@njit(**_JIT)
def _relu_hess(r, y, p, out):
    k = r.size
    for a in range(k):
        for b in range(k):
            out[a, b] = 1.0 / (k * k) if (r[a] > 0.0 and r[b] > 0.0) else 0.0


@njit(**_JIT)
def _relu_teacher(r_star, eps, p, out):
    out[0] = _relu_mean(r_star) + (p[0] * eps[0] if eps.size else 0.0)


def _relu_kinks(k, noise_dim, p):
    """``r_j = 0`` and ``r*_j = 0`` for every unit (columns ``r, r*, eps``)."""
    planes = np.zeros((2 * k, 2 * k + noise_dim + 1))
    planes[np.arange(2 * k), np.arange(2 * k)] = 1.0
    return planes


def relu(k: int = 1, noise_std: float = 0.0) -> Model:
    """Squared loss on a ReLU committee: ``l = (mean_j relu(r_j) - y)^2 / 2``.

    Teacher ``y = mean_j relu(r_star_j) + noise_std * eps`` with ``k_star = k`` (fixed
    readouts ``1/k``); labels in ``R``. The gradient ``(u - y) 1[r_j > 0] / k``
    (``u = mean_j relu(r_j)``) jumps on ``r_j = 0``, so the Hessian has the Dirac terms
    ``(u - y) delta(r_j) / k`` that ``hess`` (``1[r_a > 0] 1[r_b > 0] / k^2``) leaves out:
    ``smooth=False``, Gaussian Hessian expectations by Stein's identity from ``grad``.
    Declared kinks: ``r_j = 0`` and ``r*_j = 0`` for ``j = 1..k``. Without label noise
    (``noise_std = 0``) the model has ``noise_dim = 0``: no noise variable to integrate.
    """
    k = errors.positive_int("k", k)
    noise_std = errors.nonnegative("noise_std", noise_std)
    noise_dim = int(noise_std > 0)
    return Model(
        "relu", k, k, 1, noise_dim, _relu_loss, _relu_grad, _relu_hess, _relu_teacher,
        params=(noise_std,), param_names=("noise_std",), smooth=False,
        description="l = (mean relu(r) - y)^2/2, y = mean relu(r*) + noise_std eps",
        kinks=functools.partial(_relu_kinks, k, noise_dim),
    )


@njit(**_JIT)
def _erf_act(x):
    """``erf(x / sqrt 2)``, its first and second derivatives."""
    d = math.sqrt(2.0 / math.pi) * math.exp(-0.5 * x * x)
    return math.erf(x / math.sqrt(2.0)), d, -x * d


@njit(**_JIT)
def _tanh_act(x):
    """``tanh x``, its first and second derivatives."""
    t, s = _tanh_sech2(x)
    return t, s, -2.0 * t * s


@njit(**_JIT)
def _erf_mean(r):
    s = 0.0
    for j in range(r.size):
        s += _erf_act(r[j])[0]
    return s / r.size


@njit(**_JIT)
def _erf_committee_loss(r, y, p):
    return 0.5 * (_erf_mean(r) - y[0]) ** 2


@njit(**_JIT)
def _erf_committee_grad(r, y, p, out):
    k = r.size
    s = 0.0
    for j in range(k):
        a, da, _ = _erf_act(r[j])
        s += a
        out[j] = da
    e = (s / k - y[0]) / k
    for j in range(k):
        out[j] *= e


@njit(**_JIT)
def _erf_committee_hess(r, y, p, out):
    k = r.size
    e = (_erf_mean(r) - y[0]) / k
    for a in range(k):
        _, da, dda = _erf_act(r[a])
        for b in range(k):
            out[a, b] = da * _erf_act(r[b])[1] / (k * k)
        out[a, a] += e * dda


@njit(**_JIT)
def _erf_committee_teacher(r_star, eps, p, out):
    out[0] = _erf_mean(r_star) + (p[0] * eps[0] if eps.size else 0.0)


# The tanh committee repeats the erf committee's functions with another activation: a
# factory would return closures, which dmft._jit cannot import by name, so their kernels
# would recompile in every process instead of loading from the disk cache.
@njit(**_JIT)
def _tanh_committee_teacher(r_star, eps, p, out):
    out[0] = _mean_tanh(r_star) + (p[0] * eps[0] if eps.size else 0.0)


@njit(**_JIT)
def _tanh_committee_loss(r, y, p):
    return 0.5 * (_mean_tanh(r) - y[0]) ** 2


@njit(**_JIT)
def _tanh_committee_grad(r, y, p, out):
    k = r.size
    s = 0.0
    for j in range(k):
        a, da, _ = _tanh_act(r[j])
        s += a
        out[j] = da
    e = (s / k - y[0]) / k
    for j in range(k):
        out[j] *= e


@njit(**_JIT)
def _tanh_committee_hess(r, y, p, out):
    k = r.size
    e = (_mean_tanh(r) - y[0]) / k
    for a in range(k):
        _, da, dda = _tanh_act(r[a])
        for b in range(k):
            out[a, b] = da * _tanh_act(r[b])[1] / (k * k)
        out[a, a] += e * dda


def _erf_pair_means(cov):
    """``E g(z_c) g(z_d)`` for ``z ~ N(0, cov)``, ``g(x) = erf(x / sqrt 2)``:
    ``(2/pi) arcsin(cov_cd / sqrt((1 + cov_cc)(1 + cov_dd)))``."""
    s = np.sqrt(1.0 + np.diag(cov))
    return 2.0 / np.pi * np.arcsin(np.clip(cov / np.outer(s, s), -1.0, 1.0))


def _erf_committee_closed_form(mean, cov, label, params):
    """Exact moments of the erf committee at zero mean with its teacher (None otherwise).

    With ``w = (1, .., 1, -1, .., -1) / k`` over ``z = (r, r*)`` and ``G = E g(z) g(z)^T``
    (:func:`_erf_pair_means`): ``E l = (w^T G w + s^2) / 2``; ``E dl/dr = 0`` (odd
    integrand). The Hessians over ``z`` by Price's theorem, ``E d2l/dz_a dz_b =
    dE l/dcov_ab`` (off the diagonal, ``cov_ab = cov_ba`` moved together) and
    ``2 dE l/dcov_aa``, from the derivatives of ``G``. Fisher: ``g'(x) = sqrt(2/pi)
    exp(-x^2/2)``, so ``E[F(z) g'(z_a) g'(z_b)] = (2/pi) det(I + cov P)^(-1/2) E'[F]``
    with ``P = e_a e_a^T + e_b e_b^T`` and ``E'`` over ``N(0, cov - cov P (I + cov P)^-1 cov)``.
    """
    from .expectation import Moments

    if label is not None or np.any(mean != 0):
        return None
    D = len(mean)
    k = D // 2
    s2 = params[0] ** 2
    w = np.concatenate([np.ones(k), -np.ones(k)]) / k
    d = np.diag(cov)
    S = np.outer(1.0 + d, 1.0 + d)
    # dG_cd/dcov_cd (c != d) and dG_cd/dcov_cc (c != d, c the row), dG_cc/dcov_cc
    root = np.sqrt(np.maximum(S - cov * cov, 1e-300))
    d_off = 2.0 / np.pi / root
    d_row = -2.0 / np.pi * 0.5 * cov / ((1.0 + d)[:, None] * root)
    d_diag = 2.0 / np.pi / ((1.0 + d) * np.sqrt(1.0 + 2.0 * d))
    W = np.outer(w, w)
    Hz = W * d_off
    np.fill_diagonal(Hz, w * w * d_diag + 2.0 * np.sum(np.where(np.eye(D, dtype=bool), 0.0, W * d_row), axis=1))
    fisher = np.empty((k, k))
    for a in range(k):
        for b in range(a, k):
            P = np.zeros((D, D))
            P[a, a] += 1.0
            P[b, b] += 1.0
            M = np.eye(D) + cov @ P
            shrunk = cov - cov @ P @ np.linalg.solve(M, cov)
            fac = 2.0 / np.pi / np.sqrt(np.linalg.det(M))
            fisher[a, b] = fisher[b, a] = w[a] * w[b] * fac * (w @ _erf_pair_means(shrunk) @ w + s2)
    loss = 0.5 * (w @ _erf_pair_means(cov) @ w + s2)
    return Moments(float(loss), np.zeros(k), Hz[:k, :k].copy(), Hz[:k, k:].copy(), fisher)


_COMMITTEES = {
    "erf": (_erf_committee_loss, _erf_committee_grad, _erf_committee_hess, _erf_committee_teacher, "erf(r/sqrt2)"),
    "tanh": (_tanh_committee_loss, _tanh_committee_grad, _tanh_committee_hess, _tanh_committee_teacher, "tanh(r)"),
}


def committee(activation: str = "erf", k: int = 2, noise_std: float = 0.0) -> Model:
    """Squared loss on a soft committee: ``l = (mean_j g(r_j) - y)^2 / 2``.

    ``activation``: ``'erf'`` for ``g(x) = erf(x / sqrt 2)`` or ``'tanh'`` for
    ``g = tanh``. Teacher ``y = mean_j g(r_star_j) + noise_std * eps`` with
    ``k_star = k`` (fixed readouts ``1/k``); labels in ``R``. Smooth (no kinks). Without
    label noise (``noise_std = 0``) the model has ``noise_dim = 0``. The erf committee
    has closed-form moments at zero mean with its teacher (the teacher-student and DMFT
    settings); elsewhere, and for tanh, the moments are integrated.
    """
    activation = errors.choice("activation", activation, tuple(_COMMITTEES))
    k = errors.positive_int("k", k)
    noise_std = errors.nonnegative("noise_std", noise_std)
    loss, grad, hess, teacher, g = _COMMITTEES[activation]
    return Model(
        f"committee_{activation}", k, k, 1, int(noise_std > 0), loss, grad, hess, teacher,
        params=(noise_std,), param_names=("noise_std",),
        closed_form=_erf_committee_closed_form if activation == "erf" else None,
        description=f"l = (mean g(r) - y)^2/2, y = mean g(r*) + noise_std eps, g = {g}",
    )


# ---------------------------------------------------------------- user models
def _fd_grad(loss):
    """Central-difference ``grad(r, y, p, out)`` of ``loss(r, y, p)`` (``_CACHED_FD_GRAD``)."""
    return _from_template(_CACHED_FD_GRAD, "grad4", loss3=loss)


def _fd_hess(grad):
    """Central-difference ``hess(r, y, p, out)`` of ``grad(r, y, p, out)`` (``_CACHED_FD_HESS``)."""
    return _from_template(_CACHED_FD_HESS, "hess4", grad4=grad)


def _from_template(template: str, name: str, **functions):
    """The uncached ``njit`` function ``name`` of ``template`` (the generated modules' source,
    :func:`_cached_model_functions`) with ``functions`` as its globals."""
    namespace = {"np": np, "njit": njit, "_CACHE": False, **functions}
    exec(compile(template, f"<dmft.models {name}>", "exec"), namespace)
    return namespace[name]


class _Required:
    """Default of ``custom(teacher=...)``: the argument must be given (a function or None)."""

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED = _Required()
_COMPILED: dict = {}  # (function, bound-checked) -> its njit dispatcher
_MODEL_FUNCTIONS: dict = {}  # (user functions, with params) -> (loss, grad, hess, teacher) compiled
_FD_STEP = 6e-6  # relative step of the derivative checks, ~ eps^(1/3) for central differences
_FD_FLOOR = 1e-6  # tolerance floor of the derivative checks, relative to 1 + |derivative|
_N_CHECK_POINTS = 2
_CHECK_SEED = 0  # the check points are fixed: a model passes or fails its checks the same way every time


def _jit(fn, *, boundscheck: bool = False):
    """The ``njit`` dispatcher of ``fn`` (a function or a dispatcher), one per function and
    bound check: a model built again from the same functions (other ``params``) reuses the
    compiled functions and so the kernels compiled for them."""
    fn = getattr(fn, "py_func", fn)
    key = (fn, boundscheck)
    if key not in _COMPILED:
        _COMPILED[key] = njit(boundscheck=True)(fn) if boundscheck else njit(fn)
    return _COMPILED[key]


def _with_params(fn, with_params: bool):
    """``fn`` compiled behind a closure ``f(a, b, p)`` (which passes ``p`` on only with
    ``params``): a closure is never looked up by module and name when kernels are
    specialised (:mod:`dmft._jit`), whatever module the user's function comes from."""
    user = _jit(fn)
    if with_params:
        @njit
        def f(a, b, p):
            return user(a, b, p)
    else:
        @njit
        def f(a, b, p):
            return user(a, b)

    return f


def _model_functions(loss, grad, hess, teacher, with_params: bool):
    """``(loss, grad, hess, teacher)`` in the signatures of the module docstring, compiled
    once per tuple of user functions."""
    key = (loss, grad, hess, teacher, with_params)
    if key in _MODEL_FUNCTIONS:
        return _MODEL_FUNCTIONS[key]
    cached = _cached_model_functions(loss, grad, hess, teacher, with_params)
    if cached is not None:
        _MODEL_FUNCTIONS[key] = cached
        return cached
    loss3 = _with_params(loss, with_params)
    if grad is None:
        grad4 = _fd_grad(loss3)
    else:
        grad3 = _with_params(grad, with_params)

        @njit
        def grad4(r, y, p, out):
            # element loops: numba compiles ``out[:] = ...`` (broadcasting) much more slowly
            g = grad3(r, y, p)
            for a in range(out.size):
                out[a] = g[a]

    if hess is None:
        hess4 = _fd_hess(grad4)
    else:
        hess3 = _with_params(hess, with_params)

        @njit
        def hess4(r, y, p, out):
            H = hess3(r, y, p)
            for a in range(out.shape[0]):
                for b in range(out.shape[1]):
                    out[a, b] = H[a, b]

    if teacher is None:
        teacher4 = _no_teacher
    else:
        teacher3 = _with_params(teacher, with_params)

        @njit
        def teacher4(r_star, eps, p, out):
            y = teacher3(r_star, eps, p)
            for a in range(out.size):
                out[a] = y[a]

    _MODEL_FUNCTIONS[key] = loss3, grad4, hess4, teacher4
    return _MODEL_FUNCTIONS[key]


def _origin(fn):
    """``(module, name)`` under which ``fn`` (a plain function) is importable, or None (a
    script's ``__main__``, a closure, a lambda)."""
    import importlib

    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if module in (None, "__main__") or not name.isidentifier():
        return None
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return (module, name) if getattr(found, "py_func", found) is fn else None


def _cached_model_functions(loss, grad, hess, teacher, with_params: bool):
    """``_model_functions`` as module-level functions of a generated module in the kernel
    cache (:func:`dmft._jit.load_module`), so that they and the kernels specialised on them
    are compiled once and then loaded from numba's disk cache in every process. ``None``
    when a user function cannot be imported by module and name."""
    import hashlib
    import importlib
    import inspect

    from . import _jit as jit

    user = {"loss": loss, "grad": grad, "hess": hess, "teacher": teacher}
    origins = {n: _origin(fn) for n, fn in user.items() if fn is not None}
    if any(o is None for o in origins.values()):
        return None
    p = ", p" if with_params else ""
    lines = ["import numpy as np", "from numba import njit", "_CACHE = True"]
    lines += [f"from {m} import {a} as _user_{n}" for n, (m, a) in origins.items()]
    lines += [f"_{n} = njit(cache=True)(getattr(_user_{n}, 'py_func', _user_{n}))" for n in origins]
    if teacher is None:
        lines.append("from dmft.models import _no_teacher as teacher4")
    lines.append(_CACHED_TEMPLATE.format(p=p))
    lines.append(_CACHED_GRAD.format(p=p) if grad is not None else _CACHED_FD_GRAD)
    lines.append(_CACHED_HESS.format(p=p) if hess is not None else _CACHED_FD_HESS)
    if teacher is not None:
        lines.append(_CACHED_TEACHER.format(p=p))
    code = "# generated by dmft.models.custom; do not edit\n" + "\n".join(lines) + "\n"
    # the user's modules are part of the key: numba does not notice when a callee changes
    sources = "".join(inspect.getsource(importlib.import_module(m)) for m in sorted({m for m, _ in origins.values()}))
    digest = hashlib.sha1((code + sources).encode()).hexdigest()[:16]
    module = jit.load_module(f"sgd_dynamics_model_{digest}", code)
    return module.loss3, module.grad4, module.hess4, module.teacher4


_CACHED_TEMPLATE = """
@njit(cache=True)
def loss3(r, y, p):
    return _loss(r, y{p})
"""
_CACHED_GRAD = """
@njit(cache=True)
def grad4(r, y, p, out):
    g = _grad(r, y{p})
    for a in range(out.size):
        out[a] = g[a]
"""
_CACHED_FD_GRAD = """
@njit(cache=_CACHE)
def grad4(r, y, p, out):
    for j in range(r.size):
        h = 6e-6 * max(1.0, abs(r[j]))
        rp = r.copy()
        rm = r.copy()
        rp[j] += h
        rm[j] -= h
        out[j] = (loss3(rp, y, p) - loss3(rm, y, p)) / (2.0 * h)
"""
_CACHED_HESS = """
@njit(cache=True)
def hess4(r, y, p, out):
    H = _hess(r, y{p})
    for a in range(out.shape[0]):
        for b in range(out.shape[1]):
            out[a, b] = H[a, b]
"""
_CACHED_FD_HESS = """
@njit(cache=_CACHE)
def hess4(r, y, p, out):
    k = r.size
    gp = np.empty(k)
    gm = np.empty(k)
    for j in range(k):
        h = 6e-6 * max(1.0, abs(r[j]))
        rp = r.copy()
        rm = r.copy()
        rp[j] += h
        rm[j] -= h
        grad4(rp, y, p, gp)
        grad4(rm, y, p, gm)
        for a in range(k):
            out[a, j] = (gp[a] - gm[a]) / (2.0 * h)
"""
_CACHED_TEACHER = """
@njit(cache=True)
def teacher4(r_star, eps, p, out):
    y = _teacher(r_star, eps{p})
    for a in range(out.size):
        out[a] = y[a]
"""


def _custom_params(params) -> tuple[tuple, tuple]:
    """``(names, values)`` of ``custom(params=...)``: identifiers and finite numbers."""
    if params is None:
        return (), ()
    if not isinstance(params, dict):
        errors._fail("params", params, "a dict {name: number} or None")
    for n, v in params.items():
        if not (isinstance(n, str) and n.isidentifier()):
            errors._fail("params", params, f"a dict whose keys are identifiers (not {n!r})")
        x = errors._real(f"params[{n!r}]", v, "a finite number")
        if not math.isfinite(x):
            errors._fail(f"params[{n!r}]", v, "a finite number")
    return tuple(params), tuple(float(v) for v in params.values())


def _label(arg: str, fn) -> str:
    return f"{arg}={getattr(fn, '__name__', repr(fn))}"


def _check_arity(arg: str, fn, names: tuple, with_params: bool) -> None:
    """The user's function takes ``names`` (plus ``p`` with ``params``) positionally."""
    import inspect

    names = names + (("p",) if with_params else ())
    try:
        sig = inspect.signature(getattr(fn, "py_func", fn))
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*names)
    except TypeError:
        how = ("because params is given" if with_params
               else "without params (give params={...} for a third argument p)")
        raise errors.ParameterError(
            f"{_label(arg, fn)} is not allowed: {arg} must take the arguments ({', '.join(names)}) "
            f"{how}; it takes {sig}") from None


def _numba_message(error: Exception) -> str:
    """numba's first informative line of a compile error, and where in the user's code."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Failed in nopython mode pipeline", "During:"))]
    msg = type(error).__name__
    if lines:
        first = lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")
        msg += f": {first}"
    where = re.search(r'^File "(.+)", line (\d+):$', text, flags=re.M)
    return msg + (f" ({where[1]}, line {where[2]})" if where else "")


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return f"the number {value!r}"
    return f"a {type(value).__name__} ({value!r})"


def _call_checked(arg: str, fn, inputs: dict, p, shape: tuple, shape_text: str) -> np.ndarray:
    """``fn(*inputs, [p])`` compiled with bound checks, as a float array of ``shape``.

    ``ParameterError`` naming ``arg`` if numba cannot compile ``fn``, if it raises (the
    user's message), or if it returns another shape, a non-real or a non-finite value.
    """
    import numba

    args = tuple(inputs.values()) + (() if p is None else (p,))
    where = "at " + ", ".join(f"{n}={np.array2string(v, precision=4)}" for n, v in inputs.items())
    try:
        f = _jit(fn, boundscheck=True)
        f.compile(tuple(numba.typeof(a) for a in args))
    except Exception as e:
        raise errors.ParameterError(
            f"{_label(arg, fn)} is not allowed: numba cannot compile it for float64 arrays: "
            f"{_numba_message(e)}") from e
    try:
        out = f(*args)
    except Exception as e:
        shapes = ", ".join(f"{n}: {v.shape}" for n, v in inputs.items())
        raise errors.ParameterError(
            f"{_label(arg, fn)} raised {type(e).__name__}: {e} ({where}, of shapes {shapes})") from e
    if shape == ():
        real = isinstance(out, (int, float, np.integer, np.floating)) and not isinstance(out, (bool, np.bool_))
    else:
        real = isinstance(out, np.ndarray) and out.shape == shape and out.dtype.kind in "iuf"
    if not real:
        raise errors.ParameterError(
            f"{_label(arg, fn)} is not allowed: it returned {_describe(out)} {where}; "
            f"{arg} must return {shape_text}")
    out = np.asarray(out, dtype=float)
    if not np.isfinite(out).all():
        raise errors.ParameterError(
            f"{_label(arg, fn)} is not allowed: it returned {np.array2string(out)} {where}; "
            f"{arg} must be finite")
    return out


def _central_difference(f, r: np.ndarray, step: float) -> np.ndarray:
    """``D[..., j] = (f(r + h_j e_j) - f(r - h_j e_j)) / (2 h_j)``, ``h_j = step max(1, |r_j|)``."""
    cols = []
    for j in range(r.size):
        h = step * max(1.0, abs(r[j]))
        rp, rm = r.copy(), r.copy()
        rp[j] += h
        rm[j] -= h
        cols.append((np.asarray(f(rp), dtype=float) - np.asarray(f(rm), dtype=float)) / (2.0 * h))
    return np.stack(cols, axis=-1)


def _warn_if_off(arg: str, fn, of: str, value: np.ndarray, f, r: np.ndarray, where: str) -> bool:
    """Warn (and return True) if ``value``, the user's derivative of ``f`` at ``r``, is off its
    central difference.

    The difference's own error is estimated from the difference at twice the step (its
    truncation error ``O(h^2)`` quadruples) plus rounding ``eps |f| / h``; the warning
    fires beyond 10 times that, or ``_FD_FLOOR (1 + |value|)`` when both are smaller.
    """
    import warnings

    d1 = _central_difference(f, r, _FD_STEP)
    d2 = _central_difference(f, r, 2.0 * _FD_STEP)
    rounding = np.finfo(float).eps * np.abs(np.asarray(f(r), dtype=float)).max() / _FD_STEP
    tol = 10.0 * (np.abs(d1 - d2).max() + rounding) + _FD_FLOOR * (1.0 + np.abs(value).max())
    off = np.abs(value - d1).max()
    if off > tol:
        warnings.warn(
            f"{_label(arg, fn)} differs from the central finite difference of {of} {where}: "
            f"{arg} = {np.array2string(value, precision=6)}, finite difference = "
            f"{np.array2string(d1, precision=6)} (off by {off:.3g} > tolerance {tol:.3g}). "
            f"A wrong derivative gives wrong curves: fix {arg} or leave it out (then finite "
            f"differences are used)", errors.DerivativeMismatchWarning, stacklevel=4)
    return off > tol


def _check_model(loss, grad, hess, teacher, dims: dict, p) -> None:
    """Call the user's functions at ``_N_CHECK_POINTS`` fixed standard-normal points and
    compare the derivatives given with finite differences (one warning per function); see
    :func:`custom` (Raises, Warns)."""
    k = dims["k"]
    with_p = () if p is None else (p,)
    rng = np.random.default_rng(_CHECK_SEED)
    warned = set()
    for _ in range(_N_CHECK_POINTS):
        r, r_star, eps, y = (rng.standard_normal(dims[n]) for n in ("k", "k_star", "noise_dim", "label_dim"))
        if teacher is not None:
            y = _call_checked("teacher", teacher, {"r_star": r_star, "eps": eps}, p, (dims["label_dim"],),
                              f"a float array of shape (label_dim,) = ({dims['label_dim']},)")
        at = {"r": r, "y": y}
        where = f"at r={np.array2string(r, precision=4)}, y={np.array2string(y, precision=4)}"
        _call_checked("loss", loss, at, p, (), "a real number")
        derivatives = []  # (arg, function, of, its value, the function it differentiates)
        if grad is not None:
            g = _call_checked("grad", grad, at, p, (k,), f"a float array of shape (k,) = ({k},)")
            l_check = _jit(loss, boundscheck=True)
            derivatives.append(("grad", grad, "loss", g, lambda x: l_check(x, y, *with_p)))
        if hess is not None:
            H = _call_checked("hess", hess, at, p, (k, k), f"a float array of shape (k, k) = ({k}, {k})")
            if grad is not None:
                g_check = _jit(grad, boundscheck=True)
                derivatives.append(("hess", hess, "grad", H, lambda x: g_check(x, y, *with_p)))
        for arg, fn, of, value, f in derivatives:
            if arg not in warned and _warn_if_off(arg, fn, of, value, f, r, where):
                warned.add(arg)


def custom(
    loss: Callable,
    *,
    teacher: Callable | None = _REQUIRED,
    grad: Callable | None = None,
    hess: Callable | None = None,
    k: int = 1,
    k_star: int = 1,
    label_dim: int = 1,
    noise_dim: int = 0,
    params: dict | None = None,
    class_labels: Callable | None = None,
    smooth: bool = True,
    kinks=None,
    name: str = "custom",
) -> Model:
    """A model from plain Python/numpy functions, compiled by numba and checked at once.

    Parameters
    ----------
    loss : function
        ``loss(r, y) -> float``: the per-sample loss of the student pre-activations
        ``r`` (shape ``(k,)``) and the label ``y`` (shape ``(label_dim,)``).
    teacher : function or None
        Required. ``teacher(r_star, eps) -> y`` of shape ``(label_dim,)`` from the teacher
        pre-activations ``r_star`` (shape ``(k_star,)``) and standard Gaussian label noise
        ``eps`` (shape ``(noise_dim,)``). ``None`` builds a model for hard labels only
        (``class_labels``, or ``label=`` in :func:`dmft.expectation.gaussian_moments`):
        every computation that needs a teacher (teacher-student data, :func:`dmft.solve`,
        :func:`dmft.simulate`) then raises ``ParameterError`` when it asks for a label.
    grad, hess : function, optional
        ``grad(r, y) -> (k,)`` and ``hess(r, y) -> (k, k)``, the first and second
        derivatives of ``loss`` in ``r``. Missing ones are taken by central finite
        differences (relative step 6e-6, error ~1e-10 in ``grad`` and ~1e-5 in ``hess``).
    k, k_star, label_dim, noise_dim : int
        Dimensions of ``r`` (>= 1), ``r_star`` (>= 0), ``y`` (>= 1) and ``eps`` (>= 0).
    params : dict, optional
        Named numbers of the model, e.g. ``{"noise": 0.3, "margin": 1.0}``. With
        ``params`` every function takes a third argument ``p``, a float array of the
        values in the order of ``params``: ``loss(r, y, p)``, ``grad(r, y, p)``,
        ``hess(r, y, p)``, ``teacher(r_star, eps, p)``. They become
        :attr:`Model.params` / :attr:`Model.param_names` and so ``model_<name>``
        attributes of the outputs. A model built again from the same functions with other
        values reuses the compiled functions and kernels.
    class_labels : function, optional
        ``class_labels(C) -> (C, label_dim)`` label rows of hard-label data with ``C`` classes.
    smooth : bool
        ``False`` if ``hess`` jumps or misses Dirac terms (Gaussian expectations of the
        Hessian then use Stein's identity; see :class:`Model`).
    kinks : array-like or function, optional
        The hyperplanes ``a . (r, r_star, eps) = b`` on which the loss, its gradient or the
        teacher is not smooth, as rows ``(a, b)`` of length ``k + k_star + noise_dim + 1``,
        or a function ``kinks(p)`` of the parameter array returning them. The expectation
        engine integrates across them piecewise (docs/expectation.md): a sign teacher or a
        hinge without them converges slowly (1e-2 instead of 1e-7). Where ``grad`` jumps
        across a plane that involves ``r`` (a ReLU unit), :func:`dmft.solve` smooths the
        kink for its response (docs/dmft_theory.md, "Kinks"); undeclared, such a kink
        leaves the multi-pass response without its Dirac part (ReLU: 10-20% off).
    name : str
        The model's name in outputs.

    Returns
    -------
    Model
        ``loss``, ``grad``, ``hess`` and ``teacher`` in the library's signatures (module
        docstring).

    Raises
    ------
    ParameterError
        Naming the argument (``loss``, ``grad``, ``hess``, ``teacher``, ``params``, ...)
        when ``teacher`` is not given, a function does not take its arguments, numba
        cannot compile it (numba's first message line), it raises (the function's own
        message), or it returns another shape than ``()``, ``(k,)``, ``(k, k)``,
        ``(label_dim,)`` or a non-finite value. Each function is called, compiled with
        bound checks, at two fixed standard-normal points ``r``, ``r_star``, ``eps``
        with ``y = teacher(r_star, eps)`` (standard normal without a teacher).

    Warns
    -----
    dmft.errors.DerivativeMismatchWarning
        If ``grad`` differs at those points from the central finite difference of
        ``loss``, or ``hess`` from that of ``grad`` (when both are given), by more than
        the difference's own error (or 1e-6 (1 + |derivative|)): a wrong derivative
        gives wrong curves.

    Notes
    -----
    The compiled functions are disk-cached (loaded, not compiled, in the next process, and
    so are the solver's kernels for them) when the user functions can be imported by
    module and name, i.e. live in a module rather than a script's ``__main__`` or a
    notebook.

    Examples
    --------
    Squared loss with a noisy linear teacher whose noise level is a parameter:

    >>> import numpy as np
    >>> from dmft import models
    >>> def loss(r, y, p):
    ...     return 0.5 * (r[0] - y[0]) ** 2
    >>> def grad(r, y, p):
    ...     return np.array([r[0] - y[0]])
    >>> def teacher(r_star, eps, p):
    ...     return np.array([r_star[0] + p[0] * eps[0]])
    >>> m = models.custom(loss, grad=grad, teacher=teacher, noise_dim=1,
    ...                   params={"noise_std": 0.3}, name="squared")
    >>> m
    Model(squared, k=1, k_star=1, noise_std=0.3)
    >>> m.attrs()["model_noise_std"]
    0.3

    Mistakes are reported at once, naming the argument:

    >>> models.custom(loss, grad=grad, teacher=teacher, k=2, noise_dim=1,
    ...               params={"noise_std": 0.3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dmft.errors.ParameterError: grad=grad is not allowed: it returned an array of shape (1,) ... (k,) = (2,)
    """
    for arg, fn in (("loss", loss), ("teacher", teacher), ("grad", grad), ("hess", hess),
                    ("class_labels", class_labels)):
        if fn is not None and fn is not _REQUIRED and not callable(fn):
            raise errors.ParameterError(f"{arg}={fn!r} is not allowed: {arg} must be a function")
    if teacher is _REQUIRED:
        raise errors.ParameterError(
            "teacher is required: give teacher=fn with fn(r_star, eps) -> y of shape (label_dim,) "
            "for teacher-student data, or teacher=None for a model used with hard labels only "
            "(class_labels, or label= in dmft.expectation.gaussian_moments); computations that "
            "need a teacher refuse such a model")
    dims = {
        "k": errors.positive_int("k", k),
        "k_star": errors.positive_int("k_star", k_star, minimum=0),
        "label_dim": errors.positive_int("label_dim", label_dim),
        "noise_dim": errors.positive_int("noise_dim", noise_dim, minimum=0),
    }
    names, values = _custom_params(params)
    with_params = params is not None
    p = np.asarray(values, dtype=float) if with_params else None
    for arg, fn, inputs in (("loss", loss, ("r", "y")), ("grad", grad, ("r", "y")), ("hess", hess, ("r", "y")),
                            ("teacher", teacher, ("r_star", "eps"))):
        if fn is not None:
            _check_arity(arg, fn, inputs, with_params)
    _check_model(loss, grad, hess, teacher, dims, p)
    loss3, grad4, hess4, teacher4 = _model_functions(
        *(None if fn is None else getattr(fn, "py_func", fn) for fn in (loss, grad, hess, teacher)),
        with_params)
    model = Model(
        name, dims["k"], dims["k_star"], dims["label_dim"], dims["noise_dim"], loss3, grad4, hess4, teacher4,
        params=values, param_names=names, smooth=smooth, class_labels=class_labels,
        kinks=_custom_kinks(kinks),
    )
    model.kink_planes()  # shape and finiteness checked now, not inside a solver
    _warn_undeclared_jumps(model)
    return model


def _warn_undeclared_jumps(model) -> None:
    """:class:`~dmft.errors.UndeclaredKinkWarning` for the first jump
    :meth:`Model.undeclared_jumps` finds."""
    jumps = model.undeclared_jumps()
    if not jumps:
        return
    what, x, size = jumps[0]
    k, ks = model.k, model.k_star
    where = (f"r={np.array2string(x[:k], precision=4)}, r_star={np.array2string(x[k:k + ks], precision=4)}, "
             f"eps={np.array2string(x[k + ks:], precision=4)}")
    consequence = ("the multi-pass response (dmft.solve) misses the Dirac part of l'' there (a ReLU unit: "
                   "10-20% off)" if what == "grad" else "Gaussian expectations across it converge slowly")
    warnings.warn(
        f"models.custom: {what} of model {model.name!r} jumps by {size:.3g} at {where}, on no declared kink "
        f"({len(jumps)} jump(s) found on line scans): {consequence}; pass kinks= with the plane "
        "a . (r, r_star, eps) = b through it", errors.UndeclaredKinkWarning, stacklevel=3)


def _line_jump(f, x0, u, n_points: int, width: float = 1e-4):
    """``(x, |f(x+) - f(x-)|)`` of the largest jump of ``f`` on the line ``x0 + s u``,
    ``s`` in ``[-4, 4]``, or None (see :meth:`Model.undeclared_jumps`). The candidate
    interval is halved toward the half whose increment departs most from the neighbouring
    intervals' slope; a jump is such a departure over ``width`` above ``1e-4 (1 + max |f|)``
    and above 100 times the steepest mean slope of the interval and its neighbours times
    ``width``: a smooth function's departure shrinks with the interval (a smooth step is
    taken for a jump only if it is 100 times steeper than its mean over the grid spacing
    0.127, i.e. narrower than ~1e-3). A jump ``J`` on a slope ``s`` is found for
    ``J > 0.011 s``. Resolving ``width`` rather than 0 also finds the jumps of
    finite-difference gradients (ramps of width ``1.2e-5``)."""
    s = np.linspace(-4.0, 4.0, n_points)
    F = np.array([f(x0 + t * u) for t in s])
    steps = np.diff(F, axis=0)
    # an interval's step against its neighbours' mean: O(h^2) where smooth, the jump where not
    around = np.concatenate([steps[1:2], 0.5 * (steps[:-2] + steps[2:]), steps[-2:-1]])
    odd = np.abs(steps - around).max(axis=1)
    best = None
    for j in np.argsort(odd)[::-1][:2]:
        slope = around[j] / (s[1] - s[0])  # the neighbours' slope, taken off every increment
        lo, hi, f_lo, f_hi = s[j], s[j + 1], F[j], F[j + 1]
        while hi - lo > width:
            mid = 0.5 * (lo + hi)
            f_mid = f(x0 + mid * u)
            if np.abs(f_mid - f_lo - slope * (mid - lo)).max() >= np.abs(f_hi - f_mid - slope * (hi - mid)).max():
                hi, f_hi = mid, f_mid
            else:
                lo, f_lo = mid, f_mid
        size = float(np.abs(f_hi - f_lo - slope * (hi - lo)).max())
        # the steepest of the interval and its neighbours: their signed mean can cancel
        steep = np.abs(steps[max(j - 1, 0):j + 2]).max() / (s[1] - s[0])
        if size > max(1e-4 * (1.0 + np.abs(F).max()), 100 * (hi - lo) * steep) and (
                best is None or size > best[1]):
            best = (x0 + 0.5 * (lo + hi) * u, size)
    return best


def _on_planes(x, planes, tol: float = 1e-3) -> bool:
    """Whether ``x`` lies on one of the planes ``a . x = b`` (rows ``(a, b)``)."""
    return any(abs(row[:-1] @ x - row[-1]) <= tol * max(np.linalg.norm(row[:-1]), 1e-300) for row in planes)


def _custom_kinks(kinks):
    """``kinks`` as a function of the parameter array (rows given directly are constant)."""
    if kinks is None or callable(kinks):
        return kinks
    rows = np.array(kinks, dtype=float)
    return lambda p: rows


_BY_NAME = {
    "linear_regression": linear_regression,
    "linear-regression": linear_regression,
    "logistic": logistic,
    "softmax_cross_entropy": softmax_cross_entropy,
    "softmax": softmax_cross_entropy,
    "huber_tanh": huber_tanh,
    "huber-tanh": huber_tanh,
    "phase_retrieval": phase_retrieval,
    "phase-retrieval": phase_retrieval,
    "smooth_hinge": smooth_hinge,
    "smooth-hinge": smooth_hinge,
    "relu": relu,
    "committee": committee,
}


def get(model, **params) -> Model:
    """A :class:`Model` from a model or a built-in name (``'huber-tanh'``, ...)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str) and model in _BY_NAME:
        return _BY_NAME[model](**params)
    raise errors.ParameterError(
        f"model={model!r} is not allowed: model must be a dmft.models.Model or one of "
        + ", ".join(sorted(k for k in _BY_NAME if "-" not in k))
    )
