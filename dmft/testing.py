"""Hypothesis strategies and invariant checks for property-testing models and runs.

Researchers can property-test their own model definitions (:func:`dmft.models.custom`)
against the invariants the library relies on, with the strategies the library's own
tests use (``docs/testing.md`` has a worked example)::

    from hypothesis import given
    from dmft import testing

    @given(testing.gaussians(dim=2))
    def test_my_model(mean_cov):
        mean, cov = mean_cov
        testing.check_stein(my_model, mean, cov)

``hypothesis`` is imported only when a strategy is built, so ``import dmft.testing``
works without it (the invariant checks ``check_*`` need numpy only). This module is not
imported by ``import dmft``.

Strategies
----------
models, spectra, eigenvalues, covariances, gaussians, gaussian_mixtures,
onepass_parameters, dmft_parameters, invalid_values

Invariant checks (raise ``AssertionError`` with the numbers on failure)
-----------------------------------------------------------------------
check_gradient, check_hessian, check_closed_form, check_stein, check_moments_finite

Theory against simulation
-------------------------
assert_agree, ROUNDOFF
"""
from __future__ import annotations

import math

import numpy as np

from . import expectation as _expectation
from . import models as _models

__all__ = [
    "models", "spectra", "eigenvalues", "covariances", "gaussians", "gaussian_mixtures",
    "onepass_parameters", "dmft_parameters", "invalid_values",
    "check_gradient", "check_hessian", "check_closed_form", "check_stein", "check_moments_finite",
    "assert_agree", "ROUNDOFF",
]

#: built-in model names :func:`models` draws from
MODEL_NAMES = ("linear_regression", "logistic", "softmax_cross_entropy", "huber_tanh", "phase_retrieval",
               "smooth_hinge", "relu", "committee")


def _st():
    try:
        from hypothesis import strategies as st
    except ImportError as e:  # pragma: no cover
        raise ImportError("dmft.testing strategies need hypothesis: pip install hypothesis") from e
    return st


def _floats(lo, hi):
    return _st().floats(lo, hi, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------- models
def models(names=MODEL_NAMES, *, max_k: int = 2):
    """Built-in models with random valid parameters (noise levels, thresholds, ``k``).

    ``names`` restricts the families; ``max_k`` bounds ``k`` for the families that take it.
    """
    st = _st()
    names = tuple(names)
    unknown = set(names) - set(MODEL_NAMES)
    if unknown:
        raise ValueError(f"names={sorted(unknown)!r} is not allowed: names must be among {MODEL_NAMES}")
    ks = st.integers(1, max(1, max_k))
    noise = _floats(0.0, 1.0)
    builders = {
        "linear_regression": st.builds(_models.linear_regression, noise, ks),
        "logistic": st.builds(_models.logistic, noise),
        "softmax_cross_entropy": st.builds(_models.softmax_cross_entropy, st.integers(2, max(2, max_k + 1))),
        "huber_tanh": st.builds(_models.huber_tanh, noise, _floats(0.05, 2.0), ks),
        "phase_retrieval": st.builds(_models.phase_retrieval, noise),
        "smooth_hinge": st.builds(_models.smooth_hinge, noise),
        "relu": st.builds(_models.relu, ks, noise),
        "committee": st.builds(_models.committee, st.sampled_from(("erf", "tanh")), ks, noise),
    }
    return st.one_of(*[builders[n] for n in names])


# ---------------------------------------------------------------- spectra and data
def spectra():
    """``onepass.data`` spectra: ``Identity()``, ``ZeroOne(fractions)``, ``PowerLaw(alpha, beta)``.

    ``ZeroOne`` defines two classes: use it with :func:`onepass.data.binary_mixture`.
    """
    st = _st()
    from . import data as _data

    fractions = st.lists(_floats(0.05, 1.0), min_size=4, max_size=4).map(
        lambda f: tuple(float(x) for x in np.asarray(f) / np.sum(f)))
    return st.one_of(
        st.just(_data.Identity()),
        fractions.map(_data.ZeroOne),
        st.builds(_data.PowerLaw, _floats(0.0, 3.0), _floats(0.0, 2.0)),
    )


def eigenvalues(d: int, *, max_value: float = 3.0, allow_zero: bool = True):
    """Arrays of ``d`` non-negative finite eigenvalues (not all zero)."""
    st = _st()
    lo = 0.0 if allow_zero else 1e-3
    return st.lists(_floats(lo, max_value), min_size=d, max_size=d).map(
        lambda a: np.where(np.asarray(a) < 1e-6, 0.0, np.asarray(a))).filter(lambda a: a.max() > 1e-3)


def covariances(dim: int, *, max_condition: float = 1e4, scale: float = 1.0):
    """Symmetric positive-definite ``(dim, dim)`` matrices with condition number ``<= max_condition``.

    Built as ``Q diag(w) Q^T`` with a random orthogonal ``Q`` and eigenvalues ``w`` in
    ``scale * [1/sqrt(max_condition), sqrt(max_condition)]``.
    """
    st = _st()
    c = math.sqrt(max_condition)

    def build(args):
        w, seed = args
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        m = (q * (scale * np.asarray(w))) @ q.T
        return 0.5 * (m + m.T)

    w = st.lists(_floats(1.0 / c, c), min_size=dim, max_size=dim)
    return st.tuples(w, st.integers(0, 2**32 - 1)).map(build)


def gaussians(dim: int, *, max_mean: float = 2.0, max_condition: float = 1e3):
    """``(mean, cov)`` pairs of a ``dim``-dimensional Gaussian."""
    st = _st()
    mean = st.lists(_floats(-max_mean, max_mean), min_size=dim, max_size=dim).map(np.array)
    return st.tuples(mean, covariances(dim, max_condition=max_condition))


def gaussian_mixtures(d: int = 8, *, n_classes=(1, 3), teacher: bool | None = None, k_star: int = 1,
                      max_mean_norm: float = 2.0):
    """:class:`onepass.data.GaussianMixture` with ``d`` coordinates.

    ``n_classes`` an int or an inclusive ``(min, max)`` range; random class probabilities
    (bounded away from 0), non-negative eigenvalues, means of norm ``<= max_mean_norm``.
    ``teacher=True`` adds ``k_star`` random teacher rows of norm 1 (soft labels), ``False``
    gives hard-label data, ``None`` either.
    """
    st = _st()
    from . import data as _data

    lo, hi = (n_classes, n_classes) if isinstance(n_classes, int) else n_classes

    @st.composite
    def build(draw):
        C = draw(st.integers(lo, hi))
        probs = np.asarray(draw(st.lists(_floats(0.1, 1.0), min_size=C, max_size=C)))
        probs = probs / probs.sum()
        means = np.asarray(draw(st.lists(st.lists(_floats(-1.0, 1.0), min_size=d, max_size=d),
                                         min_size=C, max_size=C)))
        means[np.abs(means) < 1e-6] = 0.0  # no subnormal clutter
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        means = means / np.maximum(norms, 1.0) * draw(_floats(0.0, max_mean_norm))
        lam = [draw(eigenvalues(d)) for _ in range(C)]
        has_teacher = draw(st.booleans()) if teacher is None else teacher
        T = None
        if has_teacher:
            T = np.asarray(draw(st.lists(st.lists(_floats(-1.0, 1.0), min_size=d, max_size=d),
                                         min_size=k_star, max_size=k_star)))
            T[np.abs(T) < 1e-6] = 0.0
            T = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-3)
        return _data.gaussian_mixture(means, lam, probs=probs, teacher=T)

    return build()


# ---------------------------------------------------------------- parameter sets
def onepass_parameters(*, max_lr: float = 1.0, max_t: float = 2.0):
    """Keyword sets ``{lr, t_max, n_time}`` accepted by :func:`onepass.solve`/``simulate``."""
    st = _st()
    return st.fixed_dictionaries({
        "lr": _floats(0.05, max_lr), "t_max": _floats(0.1, max_t), "n_time": st.integers(2, 6)})


def dmft_parameters(dynamics=("sgd", "sme", "gf"), *, max_lr: float = 1.0, max_t: float = 1.0):
    """Keyword sets ``{dynamics, delta, lr, batch, t_max, n_time, ridge, init_std}`` accepted
    by :func:`dmft.simulate` and :func:`dmft.solve` (add ``d``/``n_paths`` as needed)."""
    st = _st()
    dyn = st.sampled_from(tuple([dynamics] if isinstance(dynamics, str) else dynamics))
    return st.fixed_dictionaries({
        "dynamics": dyn, "delta": _floats(0.5, 4.0), "lr": _floats(0.05, max_lr),
        "batch": _floats(0.5, 4.0), "t_max": _floats(0.1, max_t), "n_time": st.integers(2, 5),
        "ridge": _floats(0.0, 1.0), "init_std": _floats(0.0, 1.0)})


#: invalid values per kind of argument (what :func:`invalid_values` draws from)
_INVALID = {
    "positive": (0, -1, -0.5, math.nan, math.inf, -math.inf, "1", True),
    "nonnegative": (-1e-3, -1, math.nan, math.inf, "0"),
    "positive_int": (0, -1, 1.5, math.nan, "2", True),
    "alpha": (-0.1, 1.0, 1.5, math.nan),
    "dynamics": ("adam", "", "SGDD", None, 3),
    "seed": (-1, 1.5, "0", None),
}


def invalid_values(kind: str):
    """Values every entry point must reject for an argument of ``kind``
    (``'positive'``, ``'nonnegative'``, ``'positive_int'``, ``'alpha'``, ``'dynamics'``, ``'seed'``)."""
    if kind not in _INVALID:
        raise ValueError(f"kind={kind!r} is not allowed: kind must be one of {sorted(_INVALID)}")
    return _st().sampled_from(_INVALID[kind])


# ---------------------------------------------------------------- invariant checks
def _call_grad(model, r, y):
    g = np.empty(model.k)
    model.grad(np.asarray(r, float), np.asarray(y, float), model.param_array, g)
    return g


def _call_hess(model, r, y):
    h = np.empty((model.k, model.k))
    model.hess(np.asarray(r, float), np.asarray(y, float), model.param_array, h)
    return h


def check_gradient(model, r, y, *, step: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7) -> np.ndarray:
    """``model.grad`` equals the central finite difference of ``model.loss`` at ``(r, y)``."""
    r = np.asarray(r, float)
    y = np.asarray(y, float)
    p = model.param_array
    fd = np.empty(model.k)
    for j in range(model.k):
        h = step * max(1.0, abs(r[j]))
        rp, rm = r.copy(), r.copy()
        rp[j] += h
        rm[j] -= h
        fd[j] = (model.loss(rp, y, p) - model.loss(rm, y, p)) / (2 * h)
    g = _call_grad(model, r, y)
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol, err_msg=f"{model!r}: grad vs finite difference at r={r}")
    return g


def check_hessian(model, r, y, *, step: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-6) -> np.ndarray:
    """``model.hess`` equals the central finite difference of ``model.grad`` (smooth points only)."""
    r = np.asarray(r, float)
    fd = np.empty((model.k, model.k))
    for j in range(model.k):
        h = step * max(1.0, abs(r[j]))
        rp, rm = r.copy(), r.copy()
        rp[j] += h
        rm[j] -= h
        fd[:, j] = (_call_grad(model, rp, y) - _call_grad(model, rm, y)) / (2 * h)
    H = _call_hess(model, r, y)
    np.testing.assert_allclose(H, fd, rtol=rtol, atol=atol, err_msg=f"{model!r}: hess vs finite difference at r={r}")
    return H


def check_moments_finite(model, mean, cov, *, label=None, rule=None):
    """Gaussian moments are finite and the Fisher matrix is symmetric positive semi-definite."""
    m = _expectation.gaussian_moments(model, mean, cov, label=label, rule=rule)
    for name, v in m._asdict().items():
        if name == "error":  # NaN: not estimated unless asked for
            continue
        assert np.all(np.isfinite(v)), f"{model!r}: moment {name} is not finite: {v}"
    F = np.atleast_2d(m.fisher)
    np.testing.assert_allclose(F, F.T, atol=1e-10, err_msg="fisher not symmetric")
    assert np.linalg.eigvalsh(0.5 * (F + F.T)).min() >= -1e-9 * max(1.0, np.abs(F).max()), "fisher not PSD"
    return m


def check_closed_form(model, mean, cov, *, label=None, rule=None, rtol: float = 1e-6, atol: float = 1e-8):
    """A model's closed-form moments equal the quadrature ones (no-op where it has no closed form)."""
    if model.closed_form is None or model.closed_form(mean, cov, label, model.param_array) is None:
        return None
    exact = _expectation.gaussian_moments(model, mean, cov, label=label)
    quad = _expectation.gaussian_moments(model, mean, cov, label=label,
                                         rule=rule or _expectation.GaussHermite())
    for name in exact._fields[:-1]:  # not the error estimate
        np.testing.assert_allclose(np.asarray(getattr(exact, name)), np.asarray(getattr(quad, name)),
                                   rtol=rtol, atol=atol, err_msg=f"{model!r}: closed form vs quadrature ({name})")
    return exact


def check_stein(model, mean, cov, *, rule=None, rtol: float | None = None, atol: float = 1e-5):
    """Stein's identity: ``E[l''] = E[l' (r - E r)^T] Cov(r)^-1`` for a fixed label
    (``y`` = the model's first class label, or zeros) — checks that ``hess`` is the
    derivative of ``grad`` on average, the identity the non-smooth path of the
    expectation engine relies on. ``mean``/``cov`` are over ``r`` (length ``k``).
    ``rtol`` defaults to 1e-3, or 3e-2 for non-smooth models (``model.smooth=False``),
    whose direct Hessian converges slowly under quadrature (kinks, Dirac terms).
    """
    if rtol is None:
        rtol = 1e-3 if model.smooth else 3e-2
    mean = np.asarray(mean, float)
    cov = np.asarray(cov, float)
    label = model.labels_for_classes(2)[0] if model.class_labels is not None and model.k == 1 \
        else np.zeros(model.label_dim)
    if model.class_labels is not None and model.k > 1:
        label = model.labels_for_classes(model.k)[0]
    rule = rule or _expectation.GaussHermite()
    pts, wts = rule.nodes(model.k)
    L = np.linalg.cholesky(cov)
    Z = mean + pts @ L.T
    p = model.param_array
    Eg = np.zeros(model.k)
    EH = np.zeros((model.k, model.k))
    cross = np.zeros((model.k, model.k))
    g = np.empty(model.k)
    h = np.empty((model.k, model.k))
    for z, w in zip(Z, wts):
        model.grad(z, label, p, g)
        model.hess(z, label, p, h)
        Eg += w * g
        EH += w * h
        cross += w * np.outer(g, z - mean)
    stein = np.linalg.solve(cov, cross.T).T
    np.testing.assert_allclose(EH, stein, rtol=rtol, atol=atol,
                               err_msg=f"{model!r}: E[hess] vs Stein E[grad (r - Er)] Cov^-1")
    return EH


# ---------------------------------------------------------------- theory against simulation
#: relative difference below which :func:`assert_agree` counts two values as equal (round-off)
ROUNDOFF = 1e-12


def assert_agree(theory, simulation, *, variables, z_max: float = 4.0, rtol=0.0, atol=0.0, times=None,
                 sem_dim: str = "seed") -> dict:
    """Assert that two runs give the same curves within ``z_max`` combined standard errors.

    At every compared entry of each variable ``v`` (every output time, and every entry of
    the variable's other dims), with ``x`` the value in ``theory``, ``y`` the value in
    ``simulation`` and ``s_x``, ``s_y`` their standard errors::

        |x - y| <= z_max sqrt(s_x^2 + s_y^2) + rtol |y| + atol

    or ``x`` and ``y`` agree to round-off (:data:`ROUNDOFF` relative: two exact values, such as
    a deterministic start, computed two ways). A Dataset with a ``sem_dim`` dim (independent seeds) stands for its mean over it, with
    the standard error ``std(ddof=1)/sqrt(n)``; otherwise ``v_sem`` is its standard error
    (DMFT replicas, one ``source`` of :func:`dmft.compare`), or 0 without one (an ODE
    solution, a closed form). ``rtol`` and ``atol`` allow for known systematic errors
    (finite ``d``, the time step, quadrature), each a number or ``{variable: number}``.

    Parameters
    ----------
    theory, simulation : xarray.Dataset
        The two runs, on the same output times (or with ``times`` near output times of both).
    variables : str or sequence of str
        Variables present in both (names of :data:`dmft.output.VARIABLES`).
    z_max : float
        Allowed ``|x - y|`` in combined standard errors: 4 is exceeded by chance with
        probability 6e-5 per comparison of Gaussian estimates.
    rtol, atol : float or dict
        Allowances relative to ``|y|`` and absolute.
    times : sequence of float, optional
        Compare at the output times nearest to these (default: every output time).
    sem_dim : str
        The dim of independent repetitions.

    Returns
    -------
    dict
        ``{variable: max |x - y| / sqrt(s_x^2 + s_y^2)}`` over the compared entries
        (``inf`` where both standard errors are 0 and the values differ).

    Raises
    ------
    AssertionError
        Naming, for each variable out of tolerance, its worst entry: the coordinates, both
        values with their standard errors, ``|x - y|`` in standard errors and the tolerance;
        also when a value is not finite or a standard error is unknown (a single seed).
    ValueError
        A variable missing from a run, or runs on different output times.

    Examples
    --------
    >>> import xarray as xr
    >>> from dmft import testing
    >>> theory = xr.Dataset({"risk": ("time", [1.0, 0.5]), "risk_sem": ("time", [0.0, 0.01])},
    ...                     coords={"time": [0.0, 1.0]})
    >>> simulation = xr.Dataset({"risk": (("seed", "time"), [[1.0, 0.52], [1.0, 0.50]])},
    ...                         coords={"time": [0.0, 1.0]})
    >>> z = testing.assert_agree(theory, simulation, variables="risk")
    >>> round(z["risk"], 4)  # |0.5 - 0.51| / sqrt(0.01^2 + 0.01^2)
    0.7071
    """
    variables = (variables,) if isinstance(variables, str) else tuple(variables)
    x_all, y_all = (_reduced(ds, variables, sem_dim, times, name)
                    for ds, name in ((theory, "theory"), (simulation, "simulation")))
    if "time" in x_all.dims and not np.allclose(x_all.time, y_all.time, rtol=1e-9, atol=1e-12):
        raise ValueError(f"theory and simulation are on different output times: {x_all.time.values} and "
                         f"{y_all.time.values}")
    ratios, failures = {}, []
    for v in variables:
        dims = x_all[v].dims
        x, sx, y, sy = (ds[name].transpose(*dims).values
                        for ds, name in ((x_all, v), (x_all, v + "_sem"), (y_all, v), (y_all, v + "_sem")))
        se, diff = np.sqrt(sx ** 2 + sy ** 2), np.abs(x - y)
        diff = np.where(diff <= ROUNDOFF * np.maximum(np.abs(x), np.abs(y)), 0.0, diff)
        tol = z_max * se + _allowance(rtol, v) * np.abs(y) + _allowance(atol, v)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.inf))
        ratios[v] = float(np.max(z)) if z.size else 0.0
        excess = np.nan_to_num(diff - tol, nan=np.inf)  # an unknown SE or a non-finite value fails
        if np.any(excess > 0):
            i = np.unravel_index(int(np.argmax(excess)), excess.shape)
            at = ", ".join(f"{d}={_label(x_all[d].values[k]) if d in x_all.coords else k}" for d, k in zip(dims, i))
            failures.append(f"  {v} at {at or 'its only entry'}: theory {x[i]:.6g} +- {sx[i]:.2g}, simulation "
                            f"{y[i]:.6g} +- {sy[i]:.2g}; |diff| {diff[i]:.3g} = {z[i]:.2f} SE > tolerance "
                            f"{tol[i]:.3g}{'' if np.isfinite(tol[i]) else ' (a standard error is unknown: one seed?)'}"
                            f" ({int((excess > 0).sum())} of {excess.size} entries out of tolerance)")
    if failures:
        raise AssertionError(
            f"theory and simulation disagree beyond {z_max:g} combined SE + rtol |simulation| + atol "
            f"(rtol={rtol!r}, atol={atol!r}):\n" + "\n".join(failures)
            + "\nmax |diff|/SE per variable: " + ", ".join(f"{v} {r:.2f}" for v, r in ratios.items()))
    return ratios


def _label(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float, np.number)) else str(value)


def _allowance(value, variable: str) -> float:
    return float(value.get(variable, 0.0) if isinstance(value, dict) else value)


def _reduced(ds, variables, sem_dim, times, name):
    """``ds`` with ``variables`` and their ``*_sem`` only, seeds reduced (:func:`dmft._stack.stack_sources`),
    at the output times nearest to ``times``."""
    from ._stack import stack_sources  # xarray: imported by the first comparison

    missing = [v for v in variables if v not in ds]
    if missing:
        raise ValueError(f"{name} has no {missing}: it has {sorted(ds.data_vars)}")
    out = stack_sources({name: ds}, variables, sem_dim=sem_dim).isel(source=0, drop=True)
    if times is not None:
        out = out.sel(time=list(times), method="nearest")
    return out
