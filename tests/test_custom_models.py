"""``dmft.models.custom``: user models fail early with named errors, take parameters and
give the built-in models' numbers.

The user functions are module-level so that ``custom`` compiles each once per session
(it keeps one numba dispatcher per function): most tests then cost milliseconds.
"""
import doctest
import pathlib
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import integrate, stats

import dmft
from dmft import errors, expectation, models


# ---------------------------------------------------------------- user functions
def sq_loss(r, y, p):
    return 0.5 * (r[0] - y[0]) ** 2


def sq_grad(r, y, p):
    return np.array([r[0] - y[0]])


def sq_hess(r, y, p):
    return np.ones((1, 1))


def noisy_teacher(r_star, eps, p):
    return np.array([r_star[0] + p[0] * eps[0]])


def squared(noise_std, **kw):
    return models.custom(sq_loss, grad=sq_grad, hess=sq_hess, teacher=noisy_teacher, noise_dim=1,
                         params={"noise_std": noise_std}, name="custom_squared", **kw)


def half_r2(r, y):
    return 0.5 * r[0] * r[0]


def unknown_numpy_function(r, y):
    return np.no_such_function(r[0])


def raises_value_error(r, y):
    if r[0] < 100.0:
        raise ValueError("the margin must be positive")
    return 0.0


def reads_past_the_end(r, y):
    return r[0] * r[1]


def returns_nan(r, y):
    return np.nan * r[0]


def grad_twice_too_large(r, y):
    return 2.0 * r


def grad_right(r, y):
    return r.copy()


def hess_twice_too_large(r, y):
    return 2.0 * np.eye(r.size)


def grad_of_length(r, y, p):
    return np.zeros(int(p[0]))


def teacher_of_length(r_star, eps, p):
    return np.zeros(int(p[1]))


def zero_loss(r, y, p):
    return 0.0


@pytest.fixture(scope="module")
def squared_03():
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.DerivativeMismatchWarning)  # right derivatives: no warning
        return squared(0.3)


# ---------------------------------------------------------------- the teacher
def test_missing_teacher_is_an_error():
    with pytest.raises(errors.ParameterError, match=r"teacher is required: give teacher=fn .* or teacher=None"):
        models.custom(half_r2)


def test_teacherless_model_is_refused_where_a_teacher_is_needed():
    m = models.custom(sq_loss, grad=sq_grad, hess=sq_hess, teacher=None, params={"noise_std": 0.3})
    with pytest.raises(errors.ParameterError, match="teacher=None: this model has no teacher"):
        m.teacher(np.zeros(1), np.zeros(0), m.param_array, np.empty(1))
    with pytest.raises(errors.ParameterError, match="teacher=None: this model has no teacher"):
        dmft.simulate(m, lr=0.5, d=20, t_max=0.5, n_time=3, n_seeds=1, progress=False)


@pytest.mark.slow  # compiles the expectation and DMFT kernels for one more model
def test_teacherless_model_takes_hard_labels_and_is_refused_by_the_theory():
    m = models.custom(sq_loss, grad=sq_grad, hess=sq_hess, teacher=None, params={"noise_std": 0.3})
    # hard label: E (r - y)^2 / 2 = (var + (mean - y)^2) / 2 exactly; Gauss-Hermite (96 points)
    # integrates the quadratic to rounding (~1e-15)
    mo = expectation.gaussian_moments(m, [0.1], [[0.7]], label=[0.5])
    assert mo.loss == pytest.approx(0.5 * (0.7 + 0.4 ** 2), abs=1e-12)
    assert mo.grad[0] == pytest.approx(0.1 - 0.5, abs=1e-12)
    with pytest.raises(errors.ParameterError, match="teacher=None: this model has no teacher"):
        expectation.gaussian_moments(m, [0.1, 0.0], np.eye(2))
    with pytest.raises(errors.ParameterError, match="teacher=None: this model has no teacher"):
        dmft.solve(m, lr=0.5, t_max=0.5, n_time=3)


# ---------------------------------------------------------------- failures at construction
@pytest.mark.parametrize("kwargs, match", [
    (dict(loss=unknown_numpy_function),
     r"loss=unknown_numpy_function is not allowed: numba cannot compile it .*no attribute 'no_such_function'"),
    (dict(loss=raises_value_error), r"loss=raises_value_error raised ValueError: the margin must be positive"),
    (dict(loss=half_r2, grad=raises_value_error), r"grad=raises_value_error raised ValueError: the margin must"),
    (dict(loss=reads_past_the_end), r"loss=reads_past_the_end raised IndexError: .* of shapes r: \(1,\), y: \(1,\)"),
    (dict(loss=returns_nan), r"loss=returns_nan is not allowed: it returned nan at r=.*; loss must be finite"),
    (dict(loss=grad_right), r"loss=grad_right is not allowed: it returned an array of shape \(1,\) .*"
                            r"loss must return a real number"),
    (dict(loss=half_r2, k=2, grad=lambda r, y: np.zeros(3)),
     r"grad=<lambda> is not allowed: it returned an array of shape \(3,\) .* shape \(k,\) = \(2,\)"),
    (dict(loss=half_r2, hess=lambda r, y: np.ones(1)),
     r"hess=<lambda> is not allowed: it returned an array of shape \(1,\) .* shape \(k, k\) = \(1, 1\)"),
    (dict(loss=half_r2, teacher=lambda r_star, eps: (r_star[0],)),
     r"teacher=<lambda> is not allowed: it returned a tuple .* shape \(label_dim,\) = \(1,\)"),
    (dict(loss=half_r2, teacher=lambda r_star, eps: np.full(1, np.inf)),
     r"teacher=<lambda> is not allowed: it returned \[-?inf\] at r_star=.*; teacher must be finite"),
    (dict(loss=sq_loss), r"loss=sq_loss is not allowed: loss must take the arguments \(r, y\) without params"),
    (dict(loss=half_r2, params={"a": 1.0}), r"loss=half_r2 .* arguments \(r, y, p\) because params is given"),
    (dict(loss=sq_loss, params={"a": np.nan}), r"params\['a'\]=nan is not allowed: .* a finite number"),
    (dict(loss=sq_loss, params={"2a": 1.0}), r"params=.* dict whose keys are identifiers \(not .2a.\)"),
    (dict(loss=sq_loss, params=[1.0]), r"params=\[1.0\] is not allowed: params must be a dict"),
])
def test_bad_function_is_named_with_the_reason(kwargs, match):
    kwargs = {"teacher": None, **kwargs}
    with pytest.raises(errors.ParameterError, match=match):
        models.custom(kwargs.pop("loss"), **kwargs)


def test_wrong_derivatives_warn_and_right_ones_do_not():
    with pytest.warns(errors.DerivativeMismatchWarning,
                      match=r"grad=grad_twice_too_large differs from the central finite difference of loss"):
        models.custom(half_r2, grad=grad_twice_too_large, teacher=None)
    with pytest.warns(errors.DerivativeMismatchWarning,
                      match=r"hess=hess_twice_too_large differs from the central finite difference of grad"):
        models.custom(half_r2, grad=grad_right, hess=hess_twice_too_large, teacher=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.DerivativeMismatchWarning)
        models.custom(half_r2, grad=grad_right, hess=lambda r, y: np.eye(r.size), teacher=None)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 3), label_dim=st.integers(1, 3), n_grad=st.integers(0, 4), n_label=st.integers(0, 4))
def test_output_shapes_are_checked(k, label_dim, n_grad, n_label):
    """grad must return (k,) and teacher (label_dim,): any other length is refused, naming
    the function (teacher first: its labels feed the loss), and the right lengths pass."""
    def build():
        return models.custom(zero_loss, grad=grad_of_length, teacher=teacher_of_length, k=k,
                             label_dim=label_dim, params={"n_grad": n_grad, "n_label": n_label})

    if n_label != label_dim:
        with pytest.raises(errors.ParameterError,
                           match=rf"teacher=teacher_of_length .* shape \({n_label},\) .* = \({label_dim},\)"):
            build()
    elif n_grad != k:
        with pytest.raises(errors.ParameterError,
                           match=rf"grad=grad_of_length .* shape \({n_grad},\) .* = \({k},\)"):
            build()
    else:
        m = build()
        assert (m.k, m.label_dim, m.params) == (k, label_dim, (float(n_grad), float(n_label)))


# ---------------------------------------------------------------- parameters
def test_parameters_reach_the_functions_and_the_attributes(squared_03):
    """Same functions, other parameter values: the compiled functions are reused and the
    values reach them (E l = (Var(r - r*) + (E r - E r*)^2 + noise_std^2) / 2 exactly)."""
    m5 = squared(0.5)
    assert m5.loss is squared_03.loss and m5.teacher is squared_03.teacher
    assert squared_03.param_names == ("noise_std",) and squared_03.attrs()["model_noise_std"] == 0.3
    mean, cov = np.array([0.1, 0.2]), np.array([[1.0, 0.3], [0.3, 0.8]])
    rule = expectation.GaussHermite()
    for m, s in ((squared_03, 0.3), (m5, 0.5)):
        # Gauss-Hermite is exact for the quadratic up to rounding (~1e-15)
        expected = 0.5 * (1.0 + 0.8 - 0.6 + 0.1 ** 2 + s ** 2)
        assert expectation.gaussian_moments(m, mean, cov, rule=rule).loss == pytest.approx(expected, abs=1e-12)


def test_parametrised_model_matches_the_builtin_moments(squared_03):
    """Through the same quadrature rule the custom and built-in squared losses see the same
    points: their moments agree to rounding."""
    builtin = models.linear_regression(0.3)
    mean, cov = np.array([0.1, 0.2]), np.array([[1.0, 0.3], [0.3, 0.8]])
    rule = expectation.GaussHermite()
    mc = expectation.gaussian_moments(squared_03, mean, cov, rule=rule)
    mb = expectation.gaussian_moments(builtin, mean, cov, rule=rule)
    for a, b in zip(mc, mb):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_parametrised_model_matches_the_builtin_simulation(squared_03):
    """Same seed, same data and steps: the finite-d SGD of the custom model is the built-in's."""
    run = dict(lr=0.5, d=100, t_max=1.0, n_time=5, n_seeds=1, seed=3, progress=False)
    dc = dmft.simulate(squared_03, **run)
    db = dmft.simulate(models.linear_regression(0.3), **run)
    # the trajectories are the same up to rounding; test_loss is the built-in's closed form against
    # the custom model's Gauss-Hermite quadrature of a quadratic (measured 1.5e-14 apart)
    for v in ("train_loss", "test_loss", "norm", "overlap"):
        np.testing.assert_allclose(dc[v].values, db[v].values, rtol=1e-12, atol=1e-14, err_msg=v)
    assert dc.attrs["model"] == "custom_squared" and dc.attrs["model_noise_std"] == 0.3


def test_compiled_functions_are_accepted():
    from numba import njit

    m = models.custom(njit(half_r2), grad=njit(grad_right), teacher=None)
    g = np.empty(1)
    m.grad(np.array([0.7]), np.array([0.0]), m.param_array, g)
    assert g[0] == 0.7


def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in finder.find(models.custom, "custom", globs={}):
        runner.run(t)
    assert runner.failures == 0 and runner.tries > 0


def test_docs_example_runs_and_matches_quadrature():
    """docs/models.md's squared hinge: E l over (r, r*) ~ N(0, [[1, .5], [.5, 1]]) with
    y = sign(r* + 0.3 eps) reduces to a 1-d integral over r, P(y = 1 | r) =
    Phi(0.5 r / sqrt(0.75 + 0.09)), done by adaptive quadrature (error < 1e-12)."""
    text = (pathlib.Path(__file__).parent.parent / "docs" / "models.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    ns = {}
    exec(compile(code[0], "docs/models.md", "exec"), ns)

    def integrand(r):
        up = stats.norm.cdf(0.5 * r / np.sqrt(0.84))
        return stats.norm.pdf(r) * (up * 0.5 * max(0.0, 1.0 - r) ** 2 + (1.0 - up) * 0.5 * max(0.0, 1.0 + r) ** 2)

    reference, _ = integrate.quad(integrand, -40, 40, points=[-1.0, 1.0], epsabs=1e-13, epsrel=1e-13, limit=400)
    # the declared kinks are integrated piecewise (Gauss-Legendre pieces: ~1e-12 here)
    assert ns["moments"].loss == pytest.approx(reference, abs=1e-9)
    # E l' = 0 by the symmetry (r, r*, eps, y) -> -(r, r*, eps, y), which the rule keeps
    assert abs(ns["moments"].grad[0]) < 1e-12
    assert ns["hinge"].attrs()["model_margin"] == 1.0


def test_kinks_of_the_wrong_width_are_refused_at_construction():
    """``kinks`` rows must have length k + k_star + noise_dim + 1 (here 3): named at once."""
    def loss(r, y):
        return 0.5 * (r[0] - y[0]) ** 2

    def teacher(r_star, eps):
        return np.array([r_star[0]])

    with pytest.raises(errors.ParameterError, match="kinks"):
        models.custom(loss, teacher=teacher, kinks=[[1.0, 0.0]])


# ---------------------------------------------------------------- kinks of a user's ReLU committee
def relu2_loss(r, y):
    return 0.5 * (0.5 * (max(r[0], 0.0) + max(r[1], 0.0)) - y[0]) ** 2


def relu2_grad(r, y):
    e = 0.5 * (0.5 * (max(r[0], 0.0) + max(r[1], 0.0)) - y[0])
    return np.array([e if r[0] > 0 else 0.0, e if r[1] > 0 else 0.0])


def relu2_hess(r, y):
    a = 1.0 if r[0] > 0 else 0.0
    b = 1.0 if r[1] > 0 else 0.0
    return 0.25 * np.array([[a, a * b], [a * b, b]])


def relu2_teacher(r_star, eps):
    return np.array([0.5 * (max(r_star[0], 0.0) + max(r_star[1], 0.0))])


def test_custom_relu_committee_with_kinks_matches_the_builtin():
    """The issue's case: a two-unit ReLU committee written by the user (GF, delta = 3,
    init_std = 1), whose norm was 26-33% low without the Dirac part of l''. With its kinks
    declared it gets the kink smoothing and the built-in ``relu(2)``'s numbers (the same
    functions: equal to rounding)."""
    planes = np.zeros((4, 5))
    planes[np.arange(4), np.arange(4)] = 1.0  # r_1, r_2, r*_1, r*_2 = 0
    user = models.custom(relu2_loss, grad=relu2_grad, hess=relu2_hess, teacher=relu2_teacher, k=2, k_star=2,
                         smooth=False, kinks=planes, name="relu2")
    kw = dict(delta=3.0, lr=0.5, dynamics="gf", t_max=1.0, n_time=5, init_std=1.0, n_paths=1024, seed=4,
              check_dt=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = dmft.solve(user, **kw)
        ref = dmft.solve(models.relu(2), **kw)
    assert got.attrs["response_estimator"] == "pathwise+smoothed_dirac"
    np.testing.assert_allclose(got.norm.values, ref.norm.values, rtol=1e-9)
    np.testing.assert_allclose(got.test_loss.values, ref.test_loss.values, rtol=1e-9)


_USER_MODULE = '''
import numpy as np

def loss(r, y, p):
    return 0.5 * (r[0] - y[0]) ** 2

def teacher(r_star, eps, p):
    return np.array([r_star[0] + p[0] * eps[0]])
'''

_CHILD = '''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import user_model
from dmft import models
m = models.custom(user_model.loss, teacher=user_model.teacher, noise_dim=1, params={"noise": 0.3})
r, y, out, H = np.array([0.3]), np.array([0.1]), np.empty(1), np.empty((1, 1))
m.grad(r, y, m.param_array, out)
m.hess(r, y, m.param_array, H)
m.teacher(np.array([0.2]), np.array([0.5]), m.param_array, out)
stats = [f.stats for f in (m.loss, m.grad, m.hess, m.teacher)]
print(json.dumps({"hits": sum(sum(s.cache_hits.values()) for s in stats),
                  "misses": sum(sum(s.cache_misses.values()) for s in stats), "grad": float(H[0, 0])}))
'''


def test_custom_model_functions_are_disk_cached(tmp_path):
    """A model from importable user functions is compiled once: a second process loads its
    functions (here with finite-difference ``grad`` and ``hess``) from the disk cache, as
    the kernels specialised on them (:mod:`dmft._jit`)."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "user_model.py").write_text(_USER_MODULE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "SGD_DYNAMICS_CACHE": str(tmp_path / "kernels")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], env=env, check=True,
                                      capture_output=True, text=True).stdout) for _ in range(2)]
    assert runs[0]["misses"] > 0 and runs[1]["misses"] == 0 and runs[1]["hits"] >= 3, runs
    assert abs(runs[1]["grad"] - 1.0) < 1e-5  # the finite-difference Hessian of the squared loss


# ---------------------------------------------------------------- undeclared kinks


def _relu_grad(r, y):
    return np.array([(max(r[0], 0.0) - y[0]) * (1.0 if r[0] > 0.0 else 0.0)])


def _relu_loss(r, y):
    return 0.5 * (max(r[0], 0.0) - y[0]) ** 2


def _relu_teacher(r_star, eps):
    return np.array([max(r_star[0], 0.0)])


def _step_teacher(r_star, eps):
    return np.array([1.0 if r_star[0] > 0.3 else 0.0])


def _logistic_loss(r, y):
    return np.log1p(np.exp(r[0])) - y[0] * r[0]


@pytest.mark.parametrize("given_grad", [True, False], ids=["grad", "finite-difference grad"])
def test_a_relu_without_its_kinks_warns_and_with_them_does_not(given_grad):
    """The ReLU's gradient jumps at ``r = 0``; undeclared, the multi-pass response misses the
    Dirac part of ``l''`` there, so construction warns, naming ``grad`` and the place.
    The finite-difference gradient (a ramp of width 1.2e-5) is found as well."""
    grad = _relu_grad if given_grad else None
    with pytest.warns(errors.UndeclaredKinkWarning, match=r"grad of model 'relu1' jumps by .* at r=\[") as rec:
        models.custom(_relu_loss, grad=grad, teacher=_relu_teacher, smooth=False, name="relu1")
    r = float(re.search(r"at r=\[\s*([-0-9.e+]+)\]", str(rec[0].message)).group(1))
    assert abs(r) < 1e-4  # located within the bisection width
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.UndeclaredKinkWarning)
        models.custom(_relu_loss, grad=grad, teacher=_relu_teacher, smooth=False, kinks=[[1.0, 0.0, 0.0]])


def test_a_step_teacher_without_its_kink_warns():
    with pytest.warns(errors.UndeclaredKinkWarning, match=r"teacher of model 'step' jumps by 1 .* r_star=\[0\.3\]"):
        models.custom(_logistic_loss, teacher=_step_teacher, name="step")
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.UndeclaredKinkWarning)
        models.custom(_logistic_loss, teacher=_step_teacher, kinks=[[0.0, 1.0, 0.3]])


@pytest.mark.parametrize("name", ["linear_regression", "logistic", "huber_tanh", "phase_retrieval", "smooth_hinge",
                                  "relu", "committee", "softmax"])
def test_builtin_models_declare_every_jump(name):
    """Every jump of a built-in model's ``grad`` or teacher lies on one of its declared kinks
    (the smooth hinge's and Huber's C1 kinks have no jump and need none)."""
    assert models.get(name).undeclared_jumps() == []


@settings(max_examples=60, deadline=None)
@given(c=st.floats(-2.0, 2.0), jump=st.floats(0.05, 5.0), slope=st.floats(-3.0, 3.0), x0=st.floats(-1.0, 1.0))
def test_line_scan_finds_a_jump_on_a_sloped_line(c, jump, slope, x0):
    """A jump of size >= 0.05 on top of a linear ramp of slope <= 3 is found, at ``c``
    within the bisection width, and its size within the ramp's rise over that width."""
    f = lambda x: np.array([slope * x[0] + (jump if x[0] > c else 0.0)])  # noqa: E731
    found = models._line_jump(f, np.array([x0]), np.array([1.0]), 64)
    assert found is not None
    assert abs(found[0][0] - c) <= 1e-4
    assert abs(found[1] - jump) <= abs(slope) * 1e-4 + 1e-12


@settings(max_examples=60, deadline=None)
@given(beta=st.floats(0.5, 50.0), a=st.floats(-3.0, 3.0), b=st.floats(-2.0, 2.0), x0=st.floats(-1.0, 1.0))
def test_line_scan_finds_no_jump_in_smooth_functions(beta, a, b, x0):
    """Steep but smooth: a softplus gradient (a sigmoid of slope up to 12.5) plus a tanh."""
    f = lambda x: np.array([1 / (1 + np.exp(-beta * x[0])) + np.tanh(a * x[0] + b)])  # noqa: E731
    assert models._line_jump(f, np.array([x0]), np.array([1.0]), 64) is None
