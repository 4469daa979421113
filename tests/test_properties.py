"""Property-based tests (hypothesis) of the library's invariants, with the strategies
exported in :mod:`dmft.testing`. Examples are kept small (fast suite)."""
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

import dmft
import onepass
from dmft import diagnostics, errors, expectation, models, output, testing
from onepass import data as D

#: no shrinking: keeps the fast suite's worst case bounded (failing examples are still printed)
FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                phases=[Phase.explicit, Phase.reuse, Phase.generate])
LIN = models.linear_regression(0.5)


# ---------------------------------------------------------------- model invariants
@FAST
@given(model=testing.models(), r=st.lists(testing._floats(-3, 3), min_size=3, max_size=3),
       y=testing._floats(-1, 1))
def test_gradient_is_the_derivative_of_the_loss(model, r, y):
    r = np.asarray(r[:model.k])
    lab = np.zeros(model.label_dim)
    lab[0] = y
    if model.name in ("phase_retrieval", "relu"):
        assume(np.min(np.abs(r)) > 1e-3)  # kinks at r_j = 0
    if model.name == "huber_tanh":  # kink where |mean tanh(r) - y| = threshold
        assume(abs(abs(np.mean(np.tanh(r)) - y) - model.params[1]) > 1e-3)
    testing.check_gradient(model, r, lab)
    if model.smooth or model.name == "huber_tanh":  # Huber: smooth away from its kink (assumed above)
        testing.check_hessian(model, r, lab)


@pytest.fixture(scope="module")
def tanh_sech2():
    """``models._tanh_sech2``, compiled before hypothesis times the examples (its deadline)."""
    models._tanh_sech2(0.5)
    return models._tanh_sech2


@given(x=st.floats(-350, 350))  # beyond, sech^2 < 1e-304 runs into the subnormals
@example(x=0.5).via("branch edge")
@example(x=1e-300).via("tiny")
def test_tanh_and_sech2_from_one_exponential(tanh_sech2, x):
    """``models._tanh_sech2`` (Huber-on-tanh's gradient and Hessian) against extended-precision
    ``tanh`` and ``1 / cosh^2``: a few ulps, relative, small or large ``|x|``."""
    t, s2 = tanh_sech2(x)
    xl = np.longdouble(x)
    assert t == pytest.approx(float(np.tanh(xl)), rel=5e-16, abs=0)
    assert s2 == pytest.approx(float(1 / np.cosh(xl) ** 2), rel=1e-15, abs=0)
    assert (-t, s2) == tanh_sech2(-x)


@FAST
@given(model=testing.models(["linear_regression", "logistic", "softmax_cross_entropy"]), data=st.data())
def test_stein_identity_for_smooth_models(model, data):
    mean, cov = data.draw(testing.gaussians(model.k, max_mean=1.0, max_condition=10.0))
    testing.check_stein(model, mean, cov)


@FAST
@given(k=st.integers(1, 2), noise=testing._floats(0, 1), data=st.data())
def test_closed_form_equals_quadrature(k, noise, data):
    model = models.linear_regression(noise, k)
    mean, cov = data.draw(testing.gaussians(2 * k, max_condition=100.0))
    testing.check_closed_form(model, mean, cov)
    testing.check_moments_finite(model, mean, cov, rule=expectation.GaussHermite())


@FAST
@given(data=st.data(), perm=st.permutations([0, 1, 2]))
def test_softmax_relabelling_symmetry(data, perm):
    """Permuting the classes permutes grad and fisher and leaves the loss unchanged (to the
    quadrature error: the Cholesky factor, hence the grid, is not permutation-equivariant)."""
    model = models.softmax_cross_entropy(3)
    mean, cov = data.draw(testing.gaussians(3, max_mean=1.5, max_condition=10.0))
    label = np.eye(3)[data.draw(st.integers(0, 2))]
    P = np.eye(3)[list(perm)]
    a = expectation.gaussian_moments(model, mean, cov, label=label)
    b = expectation.gaussian_moments(model, P @ mean, P @ cov @ P.T, label=P @ label)
    # measured over 500 draws x 5 permutations: mismatch up to 1.1e-7 (relative, loss),
    # 1.0e-6 (grad), 2.5e-6 (fisher), the 20-point rule's error (vs 48 points: 7e-7, 1.6e-6) on each side
    assert b.loss == pytest.approx(a.loss, rel=1e-6, abs=1e-8)
    np.testing.assert_allclose(b.grad, P @ a.grad, atol=5e-6)
    np.testing.assert_allclose(b.fisher, P @ a.fisher @ P.T, atol=5e-6)


@FAST
@given(data=st.data())
def test_quadrature_error_is_small_for_smooth_models(data):
    mean, cov = data.draw(testing.gaussians(2, max_mean=1.0, max_condition=10.0))
    assert diagnostics.quadrature_error(LIN, mean, cov)["max"] < 1e-9  # against the closed form
    # hard label: the integrand is smooth in r (a teacher sign would not be, in r*)
    err = diagnostics.quadrature_error(models.logistic(0.0), mean[:1], cov[:1, :1], label=np.ones(1))
    assert err["max"] < 1e-8 and err["reference"].startswith("Trapezoid")


# ---------------------------------------------------------------- onepass
@FAST
@given(data=testing.gaussian_mixtures(d=6, n_classes=1, teacher=True), lr=testing._floats(0.1, 1.0))
def test_onepass_teacher_sign_symmetry(data, lr):
    """X* -> -X*: the student learns the flipped teacher; risk, norm and the overlap with the
    (flipped) teacher are unchanged (linear regression, X0 = 0)."""
    flip = D.gaussian_mixture(data.means, list(data.eigenvalues), probs=data.probs, teacher=-data.teacher)
    a = onepass.solve(LIN, data, lr=lr, t_max=1.0, n_time=3)
    b = onepass.solve(LIN, flip, lr=lr, t_max=1.0, n_time=3)
    np.testing.assert_allclose(b.risk, a.risk, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(b.norm, a.norm, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(b.overlap, a.overlap, rtol=1e-6, atol=1e-10)


@FAST
@given(values=st.lists(st.sampled_from([0.0, 0.25, 1.0, 3.0]), min_size=8, max_size=8),
       lr=testing._floats(0.1, 0.8))
def test_onepass_exact_and_binned_groups_agree(values, lr):
    """With few well-separated distinct eigenvalues every bin holds one value: the binned
    ODE is the exact one."""
    lam = np.asarray(values)
    assume(lam.max() > 0)
    data = D.gaussian_mixture(np.zeros((1, 8)), [lam], teacher=np.full((1, 8), 8 ** -0.5))
    a = onepass.solve(LIN, data, lr=lr, t_max=1.0, n_time=3, groups="exact")
    b = onepass.solve(LIN, data, lr=lr, t_max=1.0, n_time=3, groups=D.Binned(16))
    np.testing.assert_allclose(b.risk, a.risk, rtol=1e-9)


@FAST
@given(data=testing.gaussian_mixtures(d=5, n_classes=1, teacher=True), seed=st.integers(0, 2**16))
def test_onepass_coordinate_permutation_invariance(data, seed):
    perm = np.random.default_rng(seed).permutation(data.d)
    pdata = D.gaussian_mixture(data.means[:, perm], list(data.eigenvalues[:, perm]), probs=data.probs,
                               teacher=data.teacher[:, perm])
    a = onepass.solve(LIN, data, lr=0.5, t_max=1.0, n_time=3)
    b = onepass.solve(LIN, pdata, lr=0.5, t_max=1.0, n_time=3)
    np.testing.assert_allclose(b.risk, a.risk, rtol=1e-7)


@FAST
@given(data=testing.gaussian_mixtures(d=4, n_classes=(1, 2), teacher=True), params=testing.onepass_parameters())
def test_netcdf_round_trip_onepass(tmp_path_factory, data, params):
    ds = onepass.solve(LIN, data, **params)
    path = output.save(ds, tmp_path_factory.mktemp("nc") / "out.nc")
    back = output.load(path)
    xr.testing.assert_equal(back, ds)  # values, coordinates and variable attrs
    for v in ds.variables:
        assert back[v].attrs == ds[v].attrs
    # dataset attrs: length-1 array attrs come back as scalars (netCDF); compare values
    assert set(back.attrs) == set(ds.attrs)
    for key, val in ds.attrs.items():
        if isinstance(val, str):
            assert back.attrs[key] == val, key
        else:
            np.testing.assert_array_equal(np.ravel(back.attrs[key]), np.ravel(val), err_msg=key)
    diagnostics.sanity_check(ds)


# ---------------------------------------------------------------- multi-pass
@settings(max_examples=6, deadline=None)
@given(c=testing._floats(0.1, 1.0), b=testing._floats(0.5, 1.45), seed=st.integers(0, 100))
def test_sgd_time_rescaling_with_batch(c, b, seed):
    """At ``alpha = 0`` and ``kappa = round(batch) = 1`` the step sequence depends only on
    ``c = lr/batch``: curves at fixed ``c`` coincide as functions of the epoch ``t batch``."""
    kw = dict(d=10, delta=2.0, n_seeds=1, seed=seed, progress=False)
    epochs = np.array([0.0, 0.5, 1.0, 2.0])
    a = dmft.simulate(LIN, lr=c, batch=1.0, times=epochs, **kw)
    r = dmft.simulate(LIN, lr=c * b, batch=b, times=epochs / b, **kw)
    np.testing.assert_allclose(r.train_loss.values, a.train_loss.values, rtol=1e-12)
    np.testing.assert_allclose(r.epoch.values, a.epoch.values, rtol=1e-12)


@settings(max_examples=3, deadline=None)
@given(s=st.sampled_from([0.5, 2.0, 4.0]), ridge=testing._floats(0, 0.5))
def test_gradient_flow_time_rescaling_dmft(s, ridge):
    """GF depends on ``lr t`` only: ``(lr, t, dt) -> (s lr, t/s, dt/s)`` gives the same DMFT."""
    kw = dict(dynamics="gf", n_time=3, n_paths=64, n_replicas=4, progress=False, seed=1, ridge=ridge)
    a = dmft.solve(LIN, lr=0.5, t_max=1.0, dt=0.1, **kw)
    b = dmft.solve(LIN, lr=0.5 * s, t_max=1.0 / s, dt=0.1 / s, **kw)
    np.testing.assert_allclose(b.test_loss.values, a.test_loss.values, rtol=1e-9)
    np.testing.assert_allclose(b.norm.values, a.norm.values, rtol=1e-9, atol=1e-14)


@pytest.mark.validation
@settings(max_examples=4, deadline=None)
@given(lr=testing._floats(0.2, 0.9), batch=testing._floats(0.8, 2.0), delta=testing._floats(1.0, 3.0),
       noise=testing._floats(0.0, 0.8), k=st.sampled_from([1, 2]))
@example(lr=0.5, batch=1.0, delta=2.0, noise=0.5, k=2)
def test_sgd_equals_sme_for_the_linear_model(lr, batch, delta, noise, k):
    """docs/dmft_theory.md, section 7: for the squared loss SGD and SME give the same test loss and norm
    (k = 2 with a random start exercises the k x k terms of SME's averaged dz^2)."""
    model = models.linear_regression(noise, k=k)
    # 16 replicas, so that the replica standard error is itself accurate enough for a 5 SE
    # bound: over 40 seeds (lr 0.5, batch 1.84, delta 1, noise 0, k 2) SGD's SE of the norm
    # fell to 0.29 of the seed spread with 8 replicas (chi^2_7: 0.42 at the 1% quantile),
    # to 0.51 with 16 (chi^2_15: 0.59)
    kw = dict(lr=lr, batch=batch, delta=delta, t_max=1.0, dt=0.05, n_time=3, n_paths=4096, n_replicas=16,
              init_std=0.5 if k == 2 else 0.0, progress=False)
    a = dmft.solve(model, dynamics="sgd", **kw)
    b = dmft.solve(model, dynamics="sme", **kw, seed=7)
    testing.assert_agree(b, a, variables=("test_loss", "norm"), z_max=5.0, rtol=0.02, atol=1e-12)


@settings(max_examples=4, deadline=None)
@given(params=testing.dmft_parameters(max_lr=0.8, max_t=0.5), seed=st.integers(0, 10))
def test_netcdf_round_trip_and_sanity_of_simulations(tmp_path_factory, params, seed):
    ds = dmft.simulate(LIN, d=12, n_seeds=2, seed=seed, progress=False, **params)
    diagnostics.sanity_check(ds)
    path = output.save(ds, tmp_path_factory.mktemp("nc") / "sim.nc")
    back = output.load(path)
    xr.testing.assert_equal(back, ds)
    assert set(back.attrs) == set(ds.attrs)
    again = dmft.simulate(LIN, d=12, n_seeds=2, seed=seed, progress=False, **params)
    xr.testing.assert_equal(again.drop_attrs() if hasattr(again, "drop_attrs") else again, 
                            ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds)


# ---------------------------------------------------------------- diagnostics
def test_convergence_check_reports_z_scores():
    ds = diagnostics.convergence_check(LIN, dynamics="gf", delta=2.0, lr=0.5, t_max=0.4, dt=0.1, n_time=3,
                                       n_paths=64, n_replicas=4, variables=("test_loss", "norm"))
    assert list(ds.refinement.values) == ["n_paths", "dt"]
    assert ds.attrs["n_paths_refined"] == 2 * ds.attrs["base_n_paths"]
    assert ds.attrs["dt_refined"] == pytest.approx(ds.attrs["base_dt"] / 2)
    assert ds.test_loss_z.dims == ("refinement", "time")
    assert np.isfinite(ds.attrs["max_abs_z_n_paths"]) and ds.attrs["max_abs_z_n_paths"] < 6


def test_convergence_check_doubles_the_kink_bandwidth_of_a_kinked_solve():
    """``refine=('kink_bandwidth',)`` reruns with twice the width; the curves move by the
    smoothing's change (not zero: the two extrapolations differ) and the attrs name both."""
    ds = diagnostics.convergence_check(models.relu(1), refine=("kink_bandwidth",), dynamics="gf", delta=2.0,
                                       lr=0.5, init_std=1.0, t_max=0.4, n_time=3, n_paths=512, n_replicas=4,
                                       kink_bandwidth=0.15, check_dt=False, variables=("test_loss", "norm"),
                                       kink_response="smoothed")
    assert list(ds.refinement.values) == ["kink_bandwidth"]
    assert ds.attrs["kink_bandwidth_refined"] == pytest.approx(0.3)
    assert float(np.abs(ds.norm_difference.isel(time=slice(1, None))).max()) > 0
    assert np.isfinite(ds.attrs["max_abs_z_kink_bandwidth"])


@pytest.mark.parametrize("model, width", [(models.huber_tanh(), None), (models.relu(1), 0.0)])
def test_convergence_check_refuses_a_kink_refinement_without_a_smoothed_kink(model, width):
    def never(*args, **kwargs):
        raise AssertionError("solved before the arguments were checked")

    kw = {} if width is None else {"kink_bandwidth": width}
    with pytest.raises(errors.ParameterError, match=r"refine=\('kink_bandwidth',\) is not allowed"):
        diagnostics.convergence_check(model, refine=("kink_bandwidth",), solve=never, **kw)


def test_sanity_check_flags_increasing_gf_energy():
    t = np.linspace(0, 1, 4)
    ds = xr.Dataset({"train_loss": ("time", [1.0, 0.5, 0.7, 0.2])}, coords={"time": t},
                    attrs={"dynamics": "gf", "ridge": 0.0, "delta": 2.0})
    res = diagnostics.sanity_check(ds, raise_on_failure=False)
    assert res["gf_energy_nonincreasing"] is False and res["finite"]
    with pytest.raises(AssertionError, match="gf_energy"):
        diagnostics.sanity_check(ds)
    bad = ds.assign(train_loss=("time", [1.0, np.nan, 0.1, 0.0]))
    assert not diagnostics.sanity_check(bad, raise_on_failure=False)["finite"]


@FAST
@given(spectrum=testing.spectra(), d=st.integers(4, 40), n_bins=st.integers(1, 8))
def test_spectra_give_valid_data_and_binning_keeps_the_trace(spectrum, d, n_bins):
    ts = D.binary_mixture(spectrum, d=d)
    lam = ts.eigenvalues
    assert lam.shape == (2, d) and np.all(np.isfinite(lam)) and np.all(lam >= 0)
    np.testing.assert_allclose(np.linalg.norm(ts.means, axis=1), 1.0)
    for groups in ("exact", D.Binned(n_bins)):
        g = D.make_groups(ts, groups)
        assert g.sizes.sum() == d
        np.testing.assert_allclose((g.sizes[:, None] * g.eigenvalues).sum(0), lam.sum(1), rtol=1e-12)


def _numpy_binned_groups(lam, n_bins):
    """Plain numpy reference of ``Binned(n_bins)`` for eigenvalues ``lam`` (C, d): the bin
    formula on every eigenvalue, groups in lexicographic order of the code rows."""
    pos = lam > 0
    logl = np.log(np.where(pos, lam, 1.0))
    lo, hi = (logl[pos].min(), logl[pos].max()) if pos.any() else (0.0, 0.0)
    width = max(hi - lo, 1e-300) / n_bins
    with np.errstate(invalid="ignore"):  # casts of the zeros' (discarded) codes may overflow
        code = np.where(pos, np.minimum(((logl - lo) / width).astype(np.int64), n_bins - 1) + 1, 0)
    return np.unique(code.T, axis=0, return_inverse=True)[1].ravel()


def _bincount_outer(index, W):
    """``sum_{i in g} w_i w_i^T`` (G, D, D) with one ``np.bincount`` per entry."""
    G = index.max() + 1
    return np.moveaxis(np.array([[np.bincount(index, weights=a * b, minlength=G) for b in W] for a in W]), -1, 0)


#: eigenvalues on a power-of-ten grid (bin edges fall on them), zeros and arbitrary values
_GRID_OR_ANY = st.one_of(st.sampled_from([0.0, 1e-8, 1e-3, 0.01, 0.1, 1.0, 10.0, 1e3]), testing._floats(0.0, 1e3))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(1, 30), n_classes=st.integers(1, 3), k_star=st.integers(0, 2), n_bins=st.integers(1, 10),
       data=st.data())
def test_group_kernels_equal_plain_numpy(d, n_classes, k_star, n_bins, data):
    """The numba group kernels give the numpy formula's groups and bincount's sums, to the last bit."""
    row = st.lists(testing._floats(-1.0, 1.0), min_size=d, max_size=d)
    lam = np.array([data.draw(st.lists(_GRID_OR_ANY, min_size=d, max_size=d)) for _ in range(n_classes)])
    means = np.array([data.draw(row) for _ in range(n_classes)])
    teacher = np.array([data.draw(row) for _ in range(k_star)]) if k_star else None
    mix = D.gaussian_mixture(means, list(lam), teacher=teacher)
    fixed = means if teacher is None else np.vstack([teacher, means])
    W = np.vstack([data.draw(row), fixed])  # a student row on top
    for groups in ("exact", D.Binned(n_bins)):
        g = D.make_groups(mix, groups)
        if groups != "exact":
            np.testing.assert_array_equal(g.index, _numpy_binned_groups(lam, n_bins))
        else:  # distinct eigenvalue rows, numbered in lexicographic order
            np.testing.assert_array_equal(g.index, np.unique(lam.T, axis=0, return_inverse=True)[1].ravel())
            np.testing.assert_array_equal(g.index, D.make_groups(mix, "auto").index)
        sizes = np.bincount(g.index)
        np.testing.assert_array_equal(g.sizes, sizes)
        sums = np.stack([np.bincount(g.index, weights=row) for row in lam], axis=1)
        np.testing.assert_array_equal(g.eigenvalues, sums / sizes[:, None])
        np.testing.assert_array_equal(g.data_outer, _bincount_outer(g.index, fixed))
        np.testing.assert_array_equal(g.sum_outer(W), _bincount_outer(g.index, W))
