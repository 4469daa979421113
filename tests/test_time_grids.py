"""Stretched time grids (issue 24): the time change ``t = tau(u)`` and the solves on it.

The map is checked against its own definition by independent means (a numerical derivative,
scipy quadrature of the cell means); the solver on a stretched grid against the exact
``d -> inf`` moments of least squares (tests/reference_squared_loss.py), whose late times lie
where the grid's steps are ``max_ratio`` times the first.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import integrate, stats

import dmft
from dmft import errors, grids, models, schedules
from dmft.multipass import _solve

from reference_squared_loss import moments

NOISE_VAR = 0.25
SQ = models.linear_regression(noise_std=NOISE_VAR ** 0.5)
STRETCHED = st.builds(grids.Stretched, t_fine=st.floats(0.05, 20.0), max_ratio=st.floats(1.0, 64.0))


@settings(max_examples=60, deadline=None)
@given(grid=STRETCHED, x=st.floats(0.0, 1.0))
def test_stretched_map_round_trips_and_its_speed_is_its_derivative(grid, x):
    u = x * 4 * grid.t_fine * (1 + math.log(grid.max_ratio))
    assert float(grid.u(grid.t(u))) == pytest.approx(u, rel=1e-12, abs=1e-12)
    h = 1e-6 * grid.t_fine
    numeric = (float(grid.t(u + h)) - float(grid.t(max(u - h, 0.0)))) / (u + h - max(u - h, 0.0))
    assert float(grid.speed(u)) == pytest.approx(numeric, rel=1e-4)
    assert 1.0 <= float(grid.speed(u)) <= grid.max_ratio
    assert float(grid.t(u)) >= u * (1 - 1e-14)  # the steps only grow (tau(u) >= u up to rounding)


@settings(max_examples=30, deadline=None)
@given(grid=STRETCHED)
def test_stretched_map_is_continuous_and_increasing(grid):
    u = np.linspace(0.0, 3 * grid.t_fine * (1 + math.log(grid.max_ratio)), 2001)
    t = grid.t(u)
    assert np.all(np.diff(t) > 0)
    for k in grid.kinks():  # tau and tau' continuous at the kinks
        eps = 1e-9 * k
        assert 0 < float(grid.t(k + eps)) - float(grid.t(k - eps)) <= 2.01 * eps * grid.max_ratio
        assert float(grid.speed(k + eps)) == pytest.approx(float(grid.speed(k - eps)), rel=1e-6)


def test_uniform_grid_is_the_identity():
    u = np.array([0.0, 0.3, 7.0])
    g = grids.Uniform()
    np.testing.assert_array_equal(g.t(u), u)
    np.testing.assert_array_equal(g.u(u), u)
    np.testing.assert_array_equal(g.speed(u), 1.0)


@pytest.mark.parametrize("kw, name", [(dict(t_fine=0.0), "t_fine"), (dict(t_fine=-1.0), "t_fine"),
                                      (dict(max_ratio=0.5), "max_ratio"), (dict(max_ratio=math.inf), "max_ratio"),
                                      (dict(max_ratio=math.nan), "max_ratio")])
def test_bad_stretched_grids_are_refused(kw, name):
    with pytest.raises(errors.ParameterError, match=name):
        grids.Stretched(**kw)


def test_solve_refuses_an_unknown_time_grid_before_any_work():
    with pytest.raises(errors.ParameterError, match="time_grid"):
        dmft.solve(SQ, time_grid="log", t_max=1.0, n_paths=64, progress=False)


@pytest.mark.parametrize("schedule", [schedules.Constant(0.5), schedules.StepDecay(2.0, 0.5, 1.3),
                                      schedules.Cosine(1.0, 20.0, 0.1)])
@pytest.mark.parametrize("power", [1, 2])
def test_cell_means_on_a_stretched_grid_match_quadrature(schedule, power):
    """The mean over each cell of ``u`` of ``lr(tau(u))^p tau'(u)``: the drift (p = 1) and the
    noise variance (p = 2) over the cell in training time, against scipy ``quad`` with the
    jumps and kinks as break points."""
    grid = grids.Stretched(t_fine=0.7, max_ratio=5.0)
    edges = np.linspace(0.0, 4.0, 23)
    got = schedules.cell_means(schedule, edges, power=power, time_grid=grid)

    def f(u):
        return float(schedule.rates(np.array([float(grid.t(u))]))[0]) ** power * float(grid.speed(u))

    cuts = np.r_[grid.kinks(), grid.u(schedules.jump_times(schedule, float(grid.t(edges[-1]))))]
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        inside = [c for c in cuts if a < c < b]
        ref = integrate.quad(f, a, b, points=inside or None, epsabs=1e-13, epsrel=1e-12)[0] / (b - a)
        assert got[i] == pytest.approx(ref, rel=1e-10), (i, a, b)


def test_sgd_events_on_a_stretched_grid_are_poisson_in_training_time():
    """Placed on the grid of ``u``, the events mapped back by ``tau`` are a Poisson process of
    the driver's rate on ``[0, t_max]``: counts with mean and variance ``rate t_max``, times
    uniform (Kolmogorov-Smirnov), each in the cell of its ``u``."""
    grid, dt, N, rate = grids.Stretched(1.0, 4.0), 0.05, 200, 1.5
    t_max = float(grid.t(N * dt))
    counts, cell, lam, dz = _solve.Poisson(rate).events(np.random.default_rng(3), 4000, N, dt, time_grid=grid)
    assert counts.mean() == pytest.approx(rate * t_max, abs=4 * math.sqrt(rate * t_max / 4000))
    assert counts.var() == pytest.approx(rate * t_max, rel=0.1)
    valid = cell > 0
    u = (cell[valid] - 1 + lam[valid]) * dt
    assert np.all((u > 0) & (u <= N * dt + 1e-12))
    assert stats.kstest(grid.t(u) / t_max, "uniform").pvalue > 1e-3
    assert np.all(dz[valid] == 1.0)


#: each solve against the exact moments: within Z of its own standard error (8 replicas, 7
#: degrees of freedom) plus the grid's error, measured with 4 seeds of 32768 paths on
#: Stretched(1, 8) (SGD, up to t = 16: at most 0.6% in norm, test and training loss, within
#: 2.4 of the seeds' SE; uniform dt = 0.16: at most 0.4%)
Z, GRID_REL = 4.0, 0.01


@pytest.mark.parametrize("dynamics, t_fine, times", [
    ("sgd", 1.0, [0.5, 2.0, 8.0, 16.0]),
    ("gf", 1.0, [0.5, 2.0, 8.0, 16.0]),
    ("sme", 0.5, [0.5, 2.0, 4.0, 8.0]),
])
def test_stretched_grid_matches_exact_least_squares_moments_at_late_times(dynamics, t_fine, times):
    """The time change is exact: on a grid whose late steps are 8 times the first (``tau'``
    multiplies the drift, the noise variance and, for SGD, the events' rate in ``u``), the
    solve follows the exact moments. Without the time change in the events (SGD events at
    rate ``batch`` in ``u``) the curves at ``t = 16`` would be those of ``t`` below 3."""
    grid = grids.Stretched(t_fine=t_fine, max_ratio=8.0)
    ds = dmft.solve(SQ, delta=2.0, lr=0.5, dynamics=dynamics, times=times, time_grid=grid, n_paths=16384, seed=2,
                    check_dt=False, progress=False)
    assert ds.attrs["max_step"] == pytest.approx(8 * ds.attrs["dt"])
    assert ds.attrs["n_steps"] < 0.4 * times[-1] / ds.attrs["dt"]
    ref = moments(np.array(times), delta=2.0, lr=0.5, noise_var=NOISE_VAR,
                  dynamics="gf" if dynamics == "gf" else "sme")
    for v in ("norm", "test_loss", "train_loss"):
        x, se = np.ravel(ds[v].values), np.ravel(ds[v + "_sem"].values)
        bad = np.abs(x - ref[v]) > Z * se + GRID_REL * np.abs(ref[v])
        assert not bad.any(), (v, np.array(times)[bad], x[bad], ref[v][bad], se[bad])


def test_stretched_grid_records_itself_and_round_trips():
    ds = dmft.solve(SQ, lr=0.5, dynamics="gf", t_max=6.0, n_time=7, time_grid=grids.Stretched(1.0, 4.0),
                    n_paths=256, seed=0, check_dt=False, progress=False)
    assert ds.attrs["time_grid"] == "Stretched(t_fine=1.0, max_ratio=4.0)"
    np.testing.assert_allclose(ds.time.values, np.linspace(0, 6, 7))
    assert ds.attrs["max_step"] == pytest.approx(4 * ds.attrs["dt"])


@pytest.mark.slow
def test_slow_stretched_grid_bias_is_small_against_one_solves_standard_error():
    """The grid's bias on its coarse late cells, measured over 12 seeds against the exact
    moments (least squares, SGD, ``Stretched(1, 8)``: steps of 8 ``dt`` from ``t = 8``, 16384
    paths): the mean relative error at ``t = 16, 24, 32`` is within a third of one solve's
    standard error, up to 3 standard errors of that mean (the bound a bias of a full SE
    would exceed)."""
    times = np.array([16.0, 24.0, 32.0])
    ref = moments(times, delta=2.0, lr=0.5, noise_var=NOISE_VAR, dynamics="sme")
    errs, sems = {v: [] for v in ("norm", "test_loss")}, {v: [] for v in ("norm", "test_loss")}
    for seed in range(12):
        ds = dmft.solve(SQ, delta=2.0, lr=0.5, dynamics="sgd", times=times, n_paths=16384, seed=seed,
                        time_grid=grids.Stretched(1.0, 8.0), progress=False)
        for v in errs:
            errs[v].append(np.ravel(ds[v].values) - ref[v])
            sems[v].append(np.ravel(ds[v + "_sem"].values))
    for v in errs:
        e, s = np.array(errs[v]), np.array(sems[v]).mean(0)
        mean, se_mean = e.mean(0), e.std(0, ddof=1) / np.sqrt(len(e))
        assert np.all(np.abs(mean) <= s / 3 + 3 * se_mean), (v, mean, se_mean, s)


@pytest.mark.parametrize("dynamics, lr, ratio", [("sgd", 2.0, 8.0), ("gf", 2.0, 4.0), ("sme", 1.0, 4.0)])
def test_default_max_ratio_is_the_drivers_largest_accurate_step(dynamics, lr, ratio):
    """``max_ratio=None``: ``lr max_step`` = 0.32 for SGD (events at exact times), 0.16 for
    the explicit cells of SME and GF; the map alone refuses to guess."""
    ds = dmft.solve(models.huber_tanh(), lr=lr, dynamics=dynamics, t_max=12.0, n_time=4, n_paths=64,
                    time_grid=grids.Stretched(1.0), check_dt=False, progress=False)
    assert ds.attrs["max_step"] == pytest.approx(ratio * ds.attrs["dt"])
    assert ds.attrs["time_grid"].startswith("Stretched(t_fine=1.0, max_ratio=")
    with pytest.raises(errors.ParameterError, match="max_ratio"):
        grids.Stretched(1.0).t(2.0)


def test_stretched_grid_on_anisotropic_data_matches_the_closed_form():
    """The spectral parameter side on a stretched grid (the default ``max_ratio`` from the
    largest rate ``lr lam_max``, through the normalisation ``Tr K/d = 0.4``): GF on least squares
    against the two-resolvent closed form on the same groups (tests/reference_multipass.py) at
    ``t`` up to 16, within 4 SE plus the grid's 2e-3 of tests/test_anisotropic.py."""
    import reference_multipass as ref
    from dmft.multipass import _spectral
    from onepass import data as D

    data = ref.power_law_unnormalised(300)
    groups = D.Binned(8)
    times = [0.5, 2.0, 8.0, 16.0]
    ds = dmft.solve(SQ, dynamics="gf", lr=1.0, times=times, n_paths=4096, seed=1, data=data, groups=groups,
                    init_std=0.5, time_grid=grids.Stretched(1.0), check_dt=False, progress=False)
    assert ds.attrs["n_steps"] < 0.5 * times[-1] / ds.attrs["dt"]
    spec = _spectral.Groups.of(data, groups)
    cf, _ = ref.anisotropic_gf(spec.weights, spec.eigenvalues, spec.teacher_power[:, 0, 0], delta=2.0, lr=1.0,
                               noise_var=NOISE_VAR, times=np.array(times), init_var=0.25)
    err, se = 2 * ds.test_loss.values, 2 * ds.test_loss_sem.values
    assert np.all(np.abs(err - cf) <= 4 * se + 2e-3 * cf), (err, cf, se)


def test_long_uniform_solves_point_to_the_stretched_grid():
    """A uniform solve past twice the stretched grid's ``t_fine`` that would be refused for its
    run time (or warned about) names ``time_grid=dmft.grids.Stretched()``; a stretched one does
    not, nor a uniform one whose ``dt`` is already the largest accurate step."""
    kw = dict(lr=2.0, dynamics="gf", t_max=32.0, n_paths=4096, max_runtime_s=1.0, progress=False)
    with pytest.raises(errors.ParameterError, match=r"time_grid=dmft.grids.Stretched\(\)"):
        dmft.solve(models.huber_tanh(), time_grid=grids.Uniform(), **kw)
    for options in (dict(time_grid=grids.Stretched()), {}, dict(time_grid=grids.Uniform(), dt=0.08)):
        with pytest.raises(errors.ParameterError, match="max_runtime_s") as e:
            dmft.solve(models.huber_tanh(), **options, **kw)
        assert "time_grid" not in str(e.value), options


@pytest.mark.parametrize("dynamics, lr, dt, t_max, grid", [
    ("sgd", 2.0, None, 8.0, "Uniform()"),
    ("sgd", 2.0, None, 12.0, "Stretched(t_fine=4.0, max_ratio=8.0)"),
    ("gf", 2.0, None, 12.0, "Stretched(t_fine=4.0, max_ratio=4.0)"),
    ("sme", 0.5, 0.02, 12.0, "Stretched(t_fine=4.0, max_ratio=16.0)"),
    ("gf", 2.0, 0.08, 12.0, "Uniform()"),  # lr dt is already the largest accurate step
])
def test_default_grid_stretches_beyond_t_max_8(dynamics, lr, dt, t_max, grid):
    """``time_grid=None``: uniform up to ``t_max = 8``, ``Stretched()`` beyond with the driver's
    ``max_ratio``; ``attrs['time_grid']`` names the grid used and equals the explicit one bit
    for bit."""
    kw = dict(lr=lr, dynamics=dynamics, dt=dt, t_max=t_max, n_time=4, n_paths=64, check_dt=False, progress=False)
    ds = dmft.solve(models.huber_tanh(), **kw)
    assert ds.attrs["time_grid"] == grid
    explicit = dmft.solve(models.huber_tanh(), time_grid=eval("grids." + grid), **kw)
    for v in ("test_loss", "norm", "overlap"):
        np.testing.assert_array_equal(ds[v].values, explicit[v].values)


@pytest.mark.parametrize("t_max, stride", [(4.0, 2), (8.0, 2), (12.0, 1)])
def test_gf_takes_every_paths_tangents_beyond_t_max_8(t_max, stride):
    """GF's tangents' noise grows with ``t`` (at ``t = 32`` every 2nd path of 4096 left the test
    loss 12.6% high with a 13% SE, every path 3% with 4.9%; docs/dmft_theory.md, "Tangent
    subsampling"): every path carries them beyond ``t_max = 8``; an explicit stride stays."""
    kw = dict(lr=0.5, dynamics="gf", t_max=t_max, n_time=3, n_paths=64, check_dt=False, progress=False)
    assert dmft.solve(SQ, **kw).attrs["tangent_stride"] == stride
    assert dmft.solve(SQ, tangent_stride=4, **kw).attrs["tangent_stride"] == 4
