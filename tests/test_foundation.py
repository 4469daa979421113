"""Shared foundation: models, the Gaussian-expectation engine, Dataset building, checks."""
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st
from scipy import integrate

from dmft import errors, expectation, models, output


def _quad1(f):
    val, _ = integrate.quad(lambda z: f(z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), -40, 40,
                            epsabs=1e-13, epsrel=1e-13, limit=400)
    return val


def test_linear_regression_moments_closed_form():
    m = models.linear_regression(noise_std=0.5)
    mean = np.array([0.1, 0.2])
    cov = np.array([[1.0, 0.3], [0.3, 0.8]])
    mo = expectation.gaussian_moments(m, mean, cov)
    # E (r - r* - s eps)^2 / 2 = (Var(r - r*) + (Er - Er*)^2 + s^2)/2
    expected = 0.5 * (1.0 + 0.8 - 0.6 + 0.01 + 0.25)
    assert mo.loss == pytest.approx(expected, abs=1e-12)
    assert mo.grad[0] == pytest.approx(-0.1, abs=1e-12)
    assert mo.hess[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert mo.hess_star[0, 0] == pytest.approx(-1.0, abs=1e-10)
    assert mo.fisher[0, 0] == pytest.approx(2 * expected, abs=1e-12)


@pytest.mark.parametrize("k, label", [(1, None), (2, None), (2, [0.3, -1.0])])
def test_squared_loss_closed_form_equals_quadrature(k, label):
    m = models.linear_regression(noise_std=0.4, k=k)
    rng = np.random.default_rng(k)
    D = k if label is not None else 2 * k
    A = rng.normal(size=(D, D))
    cov, mean = A @ A.T / D + 0.1 * np.eye(D), rng.normal(size=D)
    exact = expectation.gaussian_moments(m, mean, cov, label=label)
    quad = expectation.gaussian_moments(m, mean, cov, label=label, rule=expectation.GaussHermite(6))
    for a, b in zip(exact, quad):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mu,var,y", [(0.3, 2.0, 1.0), (-1.0, 0.5, 0.0), (4.0, 9.0, 1.0)])
def test_logistic_gauss_hermite_accuracy(mu, var, y):
    mo = expectation.gaussian_moments(models.logistic(), [mu], [[var]], label=[y])
    s = np.sqrt(var)
    loss = _quad1(lambda z: np.logaddexp(0, mu + s * z) - y * (mu + s * z))
    grad = _quad1(lambda z: 1 / (1 + np.exp(-(mu + s * z))) - y)
    # 48 Gauss-Hermite points: the poles of the sigmoid at r = i pi limit the rate at large var
    assert mo.loss == pytest.approx(loss, abs=1e-7)
    assert mo.grad[0] == pytest.approx(grad, abs=1e-7)


def test_phase_retrieval_stein_hessian():
    # (|r| - |r*|)^2 with unit variances and correlation rho: closed form
    rho = 0.5
    mo = expectation.gaussian_moments(models.phase_retrieval(), [0, 0], [[1, rho], [rho, 1]],
                                      rule=expectation.GaussHermite(160))
    e_abs = 2 / np.pi * (np.sqrt(1 - rho**2) + rho * np.arcsin(rho))
    # kinks of |r| and |r*| off the grid axes: Gauss-Hermite at 160 points is ~3e-3 off
    assert mo.loss == pytest.approx(2 - 2 * e_abs, abs=4e-3)
    # E d2/dr2 = 2 - 4 E[|r*| delta(r)] = 2 - 4 phi(0) E[|r*| | r=0]
    e_cond = np.sqrt(1 - rho**2) * np.sqrt(2 / np.pi)
    assert mo.hess[0, 0] == pytest.approx(2 - 4 * e_cond / np.sqrt(2 * np.pi), abs=5e-3)


def test_huber_hessian_by_stein_is_accurate():
    m = models.huber_tanh(noise_std=0.3, threshold=0.5)
    cov = np.array([[1.3, 0.4], [0.4, 1.0]])
    ref = expectation.gaussian_moments(m, np.zeros(2), cov, rule=expectation.QuasiMonteCarlo(2**18))
    mo = expectation.gaussian_moments(m, np.zeros(2), cov)
    assert mo.loss == pytest.approx(ref.loss, abs=1e-4)
    assert mo.hess[0, 0] == pytest.approx(ref.hess[0, 0], abs=3e-4)
    assert mo.hess_star[0, 0] == pytest.approx(ref.hess_star[0, 0], abs=3e-4)


def test_qmc_agrees_with_gauss_hermite():
    m = models.huber_tanh(noise_std=0.3, threshold=0.5, k=2)
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 4))
    cov = A @ A.T / 4 + 0.1 * np.eye(4)
    gh = expectation.gaussian_moments(m, np.zeros(4), cov, rule=expectation.GaussHermite(8))
    qmc = expectation.gaussian_moments(m, np.zeros(4), cov, rule=expectation.QuasiMonteCarlo(2**15))
    big = expectation.gaussian_moments(m, np.zeros(4), cov, rule=expectation.QuasiMonteCarlo(2**18, seed=3))
    # 5 integration dims with a kinked loss: QMC(2^15) is ~1e-5 off, GH(8)^5 ~3e-3
    assert qmc.loss == pytest.approx(big.loss, rel=1e-4)
    assert gh.loss == pytest.approx(big.loss, rel=5e-3)
    np.testing.assert_allclose(qmc.fisher, big.fisher, rtol=4e-3, atol=1e-6)  # measured 1.7e-3


def test_softmax_symmetric_point():
    m = models.softmax_cross_entropy(4)
    mo = expectation.gaussian_moments(m, np.zeros(4), np.zeros((4, 4)), label=np.eye(4)[0])
    assert mo.loss == pytest.approx(np.log(4), abs=1e-12)
    np.testing.assert_allclose(mo.grad, [0.25 - 1, 0.25, 0.25, 0.25], atol=1e-12)


def test_custom_model_matches_builtin():
    def loss(r, y):
        return 0.5 * (r[0] - y[0]) ** 2

    def teacher(rs, eps):
        return np.array([rs[0] + 0.5 * eps[0]])

    c = models.custom(loss, teacher=teacher, noise_dim=1)
    b = models.linear_regression(0.5)
    cov = np.array([[1.0, 0.3], [0.3, 0.8]])
    mc = expectation.gaussian_moments(c, [0.1, 0.2], cov)
    mb = expectation.gaussian_moments(b, [0.1, 0.2], cov)
    assert mc.loss == pytest.approx(mb.loss, abs=1e-12)
    assert mc.grad[0] == pytest.approx(mb.grad[0], abs=1e-8)
    assert mc.hess[0, 0] == pytest.approx(1.0, abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.floats(-800, 800))
def test_stable_functions_at_large_arguments(x):
    lg = models.logistic()
    r, y, p = np.array([x]), np.array([1.0]), lg.param_array
    assert np.isfinite(lg.loss(r, y, p))
    g, h = np.empty(1), np.empty((1, 1))
    lg.grad(r, y, p, g)
    lg.hess(r, y, p, h)
    assert np.isfinite(g).all() and 0 <= h[0, 0] <= 0.25
    ht = models.huber_tanh()
    hh = np.empty((1, 1))
    ht.hess(r, np.array([0.0]), ht.param_array, hh)
    assert np.isfinite(hh).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=3, max_size=3), st.permutations(range(3)))
def test_softmax_relabelling_symmetry(r, perm):
    m = models.softmax_cross_entropy(3)
    r = np.array(r)
    y = np.eye(3)[0]
    perm = np.array(perm)
    assert m.loss(r, y, m.param_array) == pytest.approx(m.loss(r[perm], y[perm], m.param_array), abs=1e-9)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: models.linear_regression(noise_std=-1), "noise_std"),
        (lambda: models.huber_tanh(threshold=0), "threshold"),
        (lambda: models.softmax_cross_entropy(1), "n_classes"),
        (lambda: models.get("nonsense"), "model"),
        (lambda: expectation.QuasiMonteCarlo(1000), "n_points"),
        (lambda: models.logistic().labels_for_classes(3), "n_classes"),
        (lambda: models.custom(3), "loss"),
        (lambda: expectation.gaussian_moments(models.logistic(), [np.nan], [[1.0]], label=[1.0]), "mean"),
        (lambda: expectation.gaussian_moments(models.logistic(), [0.0], [[np.inf]], label=[1.0]), "cov"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(errors.ParameterError, match=name):
        call()


def test_dataset_round_trip(tmp_path):
    ds = output.build(
        {"risk": (("time",), np.linspace(1, 0, 5)), "group_norm": (("time", "group"), np.ones((5, 2)))},
        coords={"time": np.linspace(0, 1, 5), "group": ["I00", "I01"]},
        attrs={"lr": 0.5, "flag": True, "probs": (0.5, 0.5), "one": np.array([2.0]), "model": models.logistic()},
    )
    assert ds.risk.attrs["units"] == "1" and "long_name" in ds.risk.attrs
    back = output.load(output.save(ds, tmp_path / "x.nc"))
    xr.testing.assert_identical(ds, back)


def test_check_finite_reports_time():
    t = np.linspace(0, 1, 11)
    v = np.where(t > 0.55, np.inf, 1.0)
    with pytest.raises(errors.DivergenceError, match="0.6") as e:
        output.check_finite("risk", t, v, threshold=0.7)
    assert e.value.time == pytest.approx(0.6)


def test_specialised_kernels_are_cached_on_disk_and_reused():
    from dmft import _jit
    from dmft._kernels_expectation import weighted_moments

    m = models.logistic()
    a = _jit.specialise(weighted_moments, loss=m.loss, grad=m.grad, hess=m.hess, teacher=m.teacher)
    b = _jit.specialise(weighted_moments, loss=m.loss, grad=m.grad, hess=m.hess, teacher=m.teacher)
    assert a is b
    generated = list(_jit.cache_dir().glob("sgd_dynamics_kernel_weighted_moments_*.py"))
    # the built-in model's functions are imported by name (a custom model's from its
    # generated module in the same folder)
    assert any("from dmft.models import _logistic" in p.read_text() for p in generated)
    # a closure (custom model) cannot be imported by name: uncached, still correct
    c = models.custom(lambda r, y: 0.5 * (r[0] - y[0]) ** 2, teacher=None)
    assert _jit._importable(c.loss) is None


def _sum_first(x, out):
    """Template for the test below: ``out[0] = sum of the first K entries of x``."""
    acc = 0.0
    for a in range(K):  # noqa: F821 (bound by specialise)
        acc += x[a]
    out[0] = acc


def test_specialise_binds_integer_constants():
    # integers are compiled in as constants (sample_cell's student dimension K): each value
    # is its own kernel, cached on disk, and a custom model's closure takes the uncached path
    from dmft import _jit

    x = np.arange(1.0, 6.0)
    out = np.zeros(1)
    two, three = (_jit.specialise(_sum_first, K=v) for v in (2, 3))
    assert two is not three and _jit.specialise(_sum_first, K=2) is two
    two(x, out)
    assert out[0] == 3.0
    three(x, out)
    assert out[0] == 6.0
    assert any("K = 3" in p.read_text() for p in _jit.cache_dir().glob("sgd_dynamics_kernel__sum_first_*.py"))
    c = models.custom(lambda r, y: 0.5 * (r[0] - y[0]) ** 2, teacher=None)
    uncached = _jit.specialise(_sum_first, K=4, unused=c.loss)
    uncached(x, out)
    assert out[0] == 10.0


def _ratio(x, out):
    """Template for the test below: ``out[0] = x[0] / x[1] + K``."""
    out[0] = x[0] / x[1] + K  # noqa: F821 (bound by specialise)


def test_specialise_error_model_and_threads(tmp_path, monkeypatch):
    # onepass.simulate's seeds on threads ask for the same kernel at once: one compile, one
    # file, no race on the temporary file; error_model="numpy" is a separate kernel
    from concurrent.futures import ThreadPoolExecutor

    from dmft import _jit

    monkeypatch.setenv("SGD_DYNAMICS_CACHE", str(tmp_path))
    with ThreadPoolExecutor(4) as pool:
        kernels = list(pool.map(lambda _: _jit.specialise(_ratio, error_model="numpy", K=7), range(8)))
    assert all(k is kernels[0] for k in kernels)
    assert len(list(tmp_path.glob("sgd_dynamics_kernel__ratio_*.py"))) == 1
    out = np.zeros(1)
    kernels[0](np.array([1.0, 0.0]), out)
    assert out[0] == np.inf
    checked = _jit.specialise(_ratio, K=7)
    assert checked is not kernels[0]
    with pytest.raises(ZeroDivisionError):
        checked(np.array([1.0, 0.0]), out)
