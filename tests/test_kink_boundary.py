"""``kink_response="boundary"`` (GF's default where it is built, ``"auto"``): GF's response at a
kink from the kinked paths with their crossings' saltation plus the boundary terms of ghost
pairs; ``kink_response="signed_noise"`` (SME's default where it is built): the noise of a force
that flips its sign across its kink, through ``s(r) l'(r)`` (docs/dmft_theory.md, "Kinks")."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dmft
from dmft import errors, models, testing

RELU_GF = dict(dynamics="gf", delta=2.0, lr=0.5, init_std=1.0, check_dt=False, progress=False)


def _absolute():
    """``|r - y|``: its force points into its kink from both sides (a sliding kink)."""
    return models.custom(lambda r, y: abs(r[0] - y[0]), teacher=lambda r_star, eps: np.array([r_star[0]]),
                         smooth=False, kinks=[[1.0, -1.0, 0.0]], name="absolute")


@pytest.mark.parametrize("change, named", [
    (dict(dynamics="sme"), "dynamics='sme'"),
    (dict(model=models.relu(2)), "k = 2"),
    (dict(model=models.huber_tanh()), "0 kink plane"),
    (dict(data=dmft.data.teacher_student("power_law", d=100)), "data="),
    (dict(kink_bandwidth=0.0), "kink_bandwidth=0.0"),
    (dict(kink_response="ghosts"), "kink_response"),
])
def test_boundary_refuses_what_it_is_not_built_for(change, named):
    kw = {"model": models.relu(1), **RELU_GF, "t_max": 0.4, "n_time": 3, "n_paths": 64, "kink_response": "boundary",
          **change}
    with pytest.raises(errors.ParameterError, match="kink_response") as info:
        dmft.solve(kw.pop("model"), **kw)
    assert named in str(info.value)


def test_the_boundary_kernel_integrates_to_one_without_a_first_moment():
    # a touch's density estimate (one-sided data at the plane) is O(hb^2) only with these two
    # moments; the constants rounded to 5.504 and 4.392 had a mass of 1 - 1.5e-4
    from scipy import integrate, stats

    from dmft.multipass import _kernels_solve as _k

    kernel = lambda u: stats.norm.pdf(u) * _k._boundary_factor.py_func(u)  # noqa: E731
    mass, err0 = integrate.quad(kernel, 0, np.inf, epsabs=1e-13)
    first, err1 = integrate.quad(lambda u: u * kernel(u), 0, np.inf, epsabs=1e-13)
    assert abs(mass - 1) < 1e-11 + err0 and abs(first) < 1e-11 + err1, (mass, first)


def test_boundary_refuses_a_sliding_kink():
    """An absolute loss pulls the path into its kink from both sides, where the kinked GF path
    chatters across it: no boundary term applies, and the smoothed response takes it."""
    with pytest.raises(errors.ParameterError, match="sliding kink"):
        dmft.solve(_absolute(), **{**RELU_GF, "t_max": 0.4, "n_time": 3, "n_paths": 64}, kink_response="boundary")


def test_auto_takes_the_boundary_terms_where_they_are_built():
    """``kink_response="auto"`` (default): the boundary terms for GF with one kink in ``r``, the
    smoothing for SME, ``k = 2``, and a sliding kink (which ``"boundary"`` refuses)."""
    small = {**RELU_GF, "t_max": 0.4, "n_time": 3, "n_paths": 256}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.DiracResponseWarning)
        used = {name: dmft.solve(model, **{**small, **kw}).attrs["kink_response"] for name, model, kw in (
            ("relu gf", models.relu(1), {}), ("phase retrieval gf", models.phase_retrieval(), {"lr": 0.2}),
            ("relu sme", models.relu(1), {"dynamics": "sme", "kink_extrapolate": False}),
            ("relu committee gf", models.relu(2), {"kink_extrapolate": False}),
            ("absolute gf", _absolute(), {"kink_extrapolate": False}),
            ("phase retrieval sme", models.phase_retrieval(), {"lr": 0.2, "dynamics": "sme", "kink_extrapolate": False}),
            ("absolute sme", _absolute(), {"dynamics": "sme", "kink_extrapolate": False}),
            ("phase retrieval sgd", models.phase_retrieval(), {"lr": 0.2, "dynamics": "sgd", "kink_extrapolate": False}))}
    assert used == {"relu gf": "boundary", "phase retrieval gf": "boundary", "relu sme": "smoothed",
                    "relu committee gf": "smoothed", "absolute gf": "smoothed", "phase retrieval sme": "signed_noise",
                    "absolute sme": "signed_noise", "phase retrieval sgd": "smoothed"}


def _odd_tanh_grad(r, y):
    t = np.tanh(r[0])
    return np.array([2.0 * t * (1.0 - t * t) * (t * t - y[0]) + 1e-3 * np.sign(r[0])])


def _odd_tanh():
    """``l = (tanh(r)^2 - y)^2 / 2 + 1e-3 |r|``, ``y = tanh(r*)^2``: ``l'`` flips its sign at ``r = 0``
    with a jump of ``2e-3`` (the smoothing of its Dirac part costs nothing), and ``s l'' =
    sign(r) l''`` there is far from ``l''``."""
    return models.custom(lambda r, y: 0.5 * (np.tanh(r[0]) ** 2 - y[0]) ** 2 + 1e-3 * abs(r[0]), grad=_odd_tanh_grad,
                         teacher=lambda r_star, eps: np.array([np.tanh(r_star[0]) ** 2]), smooth=False,
                         kinks=[[1.0, 0.0, 0.0]], name="odd_tanh")


def test_signed_noise_has_the_law_of_the_smoothed_noise():
    """Where the smoothed noise is harmless (a jump of ``2e-3``), the signed noise is another
    estimator of one law: the same curves within their standard errors. SME's noise matters
    here (``norm`` at ``t = 1.2``: 0.933 against GF's 0.887); with the noise's tangents
    taking ``l''`` instead of ``s l''`` the signed ``norm`` was 1.20 against the smoothed 0.94."""
    kw = dict(dynamics="sme", delta=2.0, lr=1.0, init_std=1.0, t_max=1.2, n_time=4, n_paths=16384, seed=1,
              kink_extrapolate=False, check_dt=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.DiracResponseWarning)
        signed = dmft.solve(_odd_tanh(), **kw)
        smoothed = dmft.solve(_odd_tanh(), kink_response="smoothed", **kw)
    assert signed.attrs["kink_response"] == "signed_noise"
    testing.assert_agree(signed, smoothed, variables=("test_loss", "norm", "overlap"), z_max=3.5)


@pytest.mark.parametrize("change, named", [
    (dict(dynamics="gf"), "dynamics='gf'"),
    (dict(dynamics="sgd"), "dynamics='sgd'"),
    (dict(model=models.relu(1)), "does not flip its sign"),
    (dict(model=models.huber_tanh()), "0 kink plane"),
    (dict(kink_bandwidth=0.0), "kink_bandwidth=0.0"),
])
def test_signed_noise_refuses_what_it_is_not_built_for(change, named):
    """A ReLU unit's force is 0 on one side of its kink and not on the other: no sign makes it continuous."""
    kw = {"model": models.phase_retrieval(), "dynamics": "sme", "delta": 2.0, "lr": 0.2, "init_std": 1.0,
          "t_max": 0.4, "n_time": 3, "n_paths": 64, "progress": False, "kink_response": "signed_noise", **change}
    with pytest.raises(errors.ParameterError, match="kink_response") as info:
        dmft.solve(kw.pop("model"), **kw)
    assert named in str(info.value)


def test_phase_retrieval_sme_signed_noise_against_the_simulation_early():
    """Phase retrieval's SME to ``t = 0.8`` against the simulation (``d = 1000``, 16 seeds,
    held-out test set, the zoo's quarter step; each seed's initial norm as a control variate),
    and the signed noise's standard errors against the smoothed noise's on the same inputs (the
    noise's law is the same; measured at ``t = 0.2, 0.4, 0.6, 0.8``: 0.46, 0.75, 0.52, 0.48 of them
    in the test loss, 0.46, 0.74, 0.51, 0.46 in ``norm``; their root mean squares 0.52 and 0.49)."""
    setting = dict(delta=2.0, lr=0.2, init_std=1.0, dynamics="sme", t_max=0.8, n_time=5, progress=False)
    kw = dict(setting, n_paths=8192, seed=3, check_dt=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.DiracResponseWarning)
        signed = dmft.solve(models.phase_retrieval(), **kw)  # the default for SME
        smoothed = dmft.solve(models.phase_retrieval(), kink_response="smoothed", **kw)
    assert signed.attrs["kink_response"] == "signed_noise"
    sim = dmft.simulate(models.phase_retrieval(), d=1000, n_seeds=16, seed=0, dt=0.00625, batch=1.0,
                        max_runtime_s=3600, **setting)
    _assert_follows(signed, sim)
    for variable in ("test_loss", "norm"):
        sx, so = (x[variable + "_sem"].values.ravel()[1:] for x in (signed, smoothed))
        ratio = np.sqrt(np.mean(sx ** 2) / np.mean(so ** 2))
        assert ratio < 0.75, (variable, ratio)


@settings(max_examples=25, deadline=None)
@given(j=st.integers(0, 13), n_paths=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_seeded_tangents_carry_each_seed_back_through_the_path(j, n_paths, seed):
    """With seeds (the boundary terms' responses of the force at event ``j`` to ``r`` at their
    touches ``l``), the backward recursion returns ``g'_j psi_ji + sum_{i <= l < j} seed_l psi_li``
    per path, against numpy's inverse of the forward system (``k = 1``, the boundary terms')."""
    from dmft.multipass._kernels_solve import chunked_tangents, dense_tangents

    rng = np.random.default_rng(seed)
    N, c, k = j + 1, 0.7, 1
    Rm = 0.5 * rng.standard_normal((N, N, k, k))
    dzT = rng.standard_normal((N, n_paths))
    hzT = 0.3 + 0.1 * rng.standard_normal((N, n_paths))
    gpT = rng.standard_normal((N, k, k, n_paths))
    gp0T = rng.standard_normal((k, k, n_paths))
    seed_l = rng.standard_normal((N, k, k, n_paths))
    Y, Acc = np.empty((N, k, k, n_paths)), np.empty((N, k, k, n_paths))
    out, out0 = np.empty((N, k, k)), np.empty((k, k))
    no_split = (np.zeros(0), np.zeros(0), np.zeros((0, k, k, 0)), np.zeros((k, k, 0)))
    dense_tangents(Rm, j, c, hzT, dzT, gpT, gp0T, Y, Acc, out, out0, seed_l, no_split)
    expected, expected0 = np.zeros((N, k, k)), np.zeros((k, k))
    for m in range(n_paths):
        T = np.zeros((N, N))
        for l in range(N):
            for i in range(l):
                T[l, i] = c * dzT[i, m] * Rm[l, i, 0, 0] * gpT[i, 0, 0, m] + (
                    c * hzT[l, m] * gpT[i, 0, 0, m] if l == i + 1 else 0.0)
        psi = np.linalg.inv(np.eye(N) - T)
        row = gpT[j, 0, 0, m] * psi[j] + sum(seed_l[l, 0, 0, m] * psi[l] for l in range(j))
        expected[:, 0, 0] += row
        expected0[0, 0] += row[0] * c * hzT[0, m] * gp0T[0, 0, m]
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out0, expected0, rtol=1e-10, atol=1e-12)
    # the solver's entry, in single precision, adds the starts' seeds to the kick at t_0
    f4 = np.float32
    start = rng.standard_normal((k, k, n_paths))
    chunked, chunked0 = np.empty((N, k, k)), np.empty((k, k))
    inputs = tuple(x.astype(f4) for x in (dzT, hzT, gpT, gp0T, seed_l, start)) + (
        tuple(x.astype(f4) for x in no_split),)
    chunked_tangents(Rm, j, c, inputs, 2, chunked, chunked0)
    scale = 1 + np.abs(expected).max()
    np.testing.assert_allclose(chunked, expected, atol=1e-4 * scale)
    np.testing.assert_allclose(chunked0[0, 0], expected0[0, 0] + start.sum(), atol=1e-4 * (scale + np.abs(start).sum()))


def test_relu_gf_boundary_agrees_with_the_smoothed_response():
    """Two estimators of the Dirac part of a ReLU unit's response, both exact in their limits:
    the boundary terms (no smoothing, no extrapolation) and the smoothing extrapolated in its
    width (validated against the simulation in the model zoo, docs/gallery.md). Measured at
    most 1.3 (test loss) and 1.8 (``norm``) combined standard errors at ``t <= 2``; the overlap
    is 1.1-1.5% lower with the boundary terms (6.9 standard errors of the two solves; the
    unextrapolated smoothing is 1-3% above both), a systematic difference of the estimators
    that the simulation decides for the boundary terms (``d = 2000`` and ``4000``, 128 and 64
    seeds with control variates: the boundary terms' overlap within 0.41 SE of ``d = 4000`` and
    1.44 SE of ``d -> inf``, the smoothed one 2.2-3.0 SE above; validation/relu_gf_estimators.py)."""
    kw = dict(RELU_GF, t_max=2.0, n_time=6, n_paths=32768, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.DiracResponseWarning)
        smoothed = dmft.solve(models.relu(1), kink_response="smoothed", **kw)
    boundary = dmft.solve(models.relu(1), **kw)  # the default for GF with one kink
    assert boundary.attrs["response_estimator"] == "pathwise+boundary_terms"
    testing.assert_agree(boundary, smoothed, variables=("test_loss", "norm", "overlap"), z_max=4.0,
                         rtol={"overlap": 0.02})


def test_a_noise_driven_smoothed_gf_refusal_names_the_boundary_terms():
    """Phase retrieval's smoothed GF response turns noise-driven (docs/dmft_theory.md, "Where the
    noise wins"); the refusal points to the estimator without those tails, which the same
    solve takes (measured: refused at t = 1.2 with 8192 paths)."""
    kw = dict(dynamics="gf", delta=2.0, lr=0.2, init_std=1.0, t_max=2.0, n_time=11, n_paths=8192, progress=False,
              seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.DiracResponseWarning)
        with pytest.raises(errors.DivergenceError, match="kink_response='boundary'") as info:
            dmft.solve(models.phase_retrieval(), kink_response="smoothed", **kw)
    assert info.value.cause == "n_paths"
    boundary = dmft.solve(models.phase_retrieval(), **kw)  # the default
    assert np.isfinite(boundary.test_loss.values).all()


def _control_variate_means(sim, variable):
    """Per output time, the seeds' mean of ``variable`` regressed on their initial ``norm`` (whose
    mean is ``init_std^2 = 1``): the intercept and its standard error (seed, time)."""
    x = sim.norm.isel(time=0).values.reshape(sim.sizes["seed"]) - 1.0
    A = np.column_stack([np.ones_like(x), x])
    y = sim[variable].values.reshape(sim.sizes["seed"], sim.sizes["time"])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    resid = y - A @ coef
    cov = np.linalg.inv(A.T @ A)[0, 0]
    return coef[0], np.sqrt(cov * (resid ** 2).sum(0) / (len(x) - 2))


def _assert_follows(theory, sim, z_max=3.5):
    """The test loss and ``norm`` of ``theory`` within ``z_max`` combined standard errors of the
    simulation's control-variate means (:func:`_control_variate_means`) after ``t = 0``."""
    for variable in ("test_loss", "norm"):
        mean, se = _control_variate_means(sim, variable)
        x, sx = theory[variable].values.ravel(), theory[variable + "_sem"].values.ravel()
        z = np.abs(x - mean)[1:] / np.hypot(sx, se)[1:]
        assert z.max() < z_max, (variable, z.round(2))


@pytest.mark.slow
def test_phase_retrieval_gf_boundary_against_the_simulation():
    """Phase retrieval's GF, whose smoothed response turns noise-driven after ``t ~ 0.8`` (that
    solve is refused), follows the simulation (``d = 1000``, 16 seeds, held-out test
    set; each seed's initial norm as a control variate) to ``t = 4`` with the boundary terms:
    measured at most 1.2 (test loss) and 2.9 (``norm``, at ``t = 0.8``) combined standard errors."""
    setting = dict(delta=2.0, lr=0.2, init_std=1.0, dynamics="gf", t_max=4.0, n_time=21, progress=False)
    theory = dmft.solve(models.phase_retrieval(), kink_response="boundary", check_dt=False, seed=0, **setting)
    sim = dmft.simulate(models.phase_retrieval(), d=1000, n_seeds=16, seed=0, dt=0.025, batch=1.0,
                        max_runtime_s=3600, **setting)
    _assert_follows(theory, sim)
