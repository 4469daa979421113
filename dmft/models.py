"""Model definitions shared by ``onepass`` and ``dmft`` (THEORY.md section 1).

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
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit

from . import errors

# inline="always": the kernels call these once per sample and event; a call between
# separately compiled numba functions costs ~25 ns (Huber-on-tanh gradient: 55 -> 29 ns)
_JIT = dict(cache=True, fastmath=False, inline="always")


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
    out[:] = 0.0


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
    @njit
    def grad(r, y, p, out):
        for j in range(r.size):
            h = 6e-6 * max(1.0, abs(r[j]))
            rp = r.copy()
            rm = r.copy()
            rp[j] += h
            rm[j] -= h
            out[j] = (loss(rp, y, p) - loss(rm, y, p)) / (2.0 * h)

    return grad


def _fd_hess(grad):
    @njit
    def hess(r, y, p, out):
        k = r.size
        gp = np.empty(k)
        gm = np.empty(k)
        for j in range(k):
            h = 6e-6 * max(1.0, abs(r[j]))
            rp = r.copy()
            rm = r.copy()
            rp[j] += h
            rm[j] -= h
            grad(rp, y, p, gp)
            grad(rm, y, p, gm)
            for a in range(k):
                out[a, j] = (gp[a] - gm[a]) / (2.0 * h)

    return hess


def custom(
    loss: Callable,
    *,
    teacher: Callable | None = None,
    grad: Callable | None = None,
    hess: Callable | None = None,
    k: int = 1,
    k_star: int = 1,
    label_dim: int = 1,
    noise_dim: int = 0,
    class_labels: Callable | None = None,
    smooth: bool = True,
    name: str = "custom",
) -> Model:
    """A model from plain functions (numba-compilable numpy code).

    ``loss(r, y) -> float``, ``grad(r, y) -> (k,)``, ``hess(r, y) -> (k, k)``,
    ``teacher(r_star, eps) -> (label_dim,)``; ``r``, ``y``, ``r_star``, ``eps`` are 1-d
    float arrays. Missing derivatives are taken by central finite differences
    (relative step 6e-6, error ~1e-10 in ``grad`` and ~1e-5 in ``hess``).
    """
    for arg, fn in (("loss", loss), ("teacher", teacher), ("grad", grad), ("hess", hess)):
        if fn is not None and not callable(fn):
            raise errors.ParameterError(f"{arg}={fn!r} is not allowed: {arg} must be a function")
    k = errors.positive_int("k", k)
    k_star = errors.positive_int("k_star", k_star, minimum=0)
    label_dim = errors.positive_int("label_dim", label_dim)
    noise_dim = errors.positive_int("noise_dim", noise_dim, minimum=0)
    user_loss = njit(loss)

    @njit
    def loss3(r, y, p):
        return user_loss(r, y)

    if grad is None:
        grad4 = _fd_grad(loss3)
    else:
        user_grad = njit(grad)

        @njit
        def grad4(r, y, p, out):
            out[:] = user_grad(r, y)

    if hess is None:
        hess4 = _fd_hess(grad4)
    else:
        user_hess = njit(hess)

        @njit
        def hess4(r, y, p, out):
            out[:, :] = user_hess(r, y)

    if teacher is None:
        teacher4 = _no_teacher
    else:
        user_teacher = njit(teacher)

        @njit
        def teacher4(r_star, eps, p, out):
            out[:] = user_teacher(r_star, eps)

    return Model(
        name, k, k_star, label_dim, noise_dim, loss3, grad4, hess4, teacher4,
        smooth=smooth, class_labels=class_labels,
    )


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
