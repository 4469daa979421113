"""``times=`` (issue 24): output times off the uniform grid in dmft.solve, dmft.simulate and
dmft.compare. The solver interpolates its grid values linearly in time (bilinearly on two
times); grid times are returned exactly as with ``n_time``."""
import numpy as np
import pytest

import dmft
from dmft import models
from tests.reference_multipass import marchenko_pastur_gf

SQ = models.linear_regression(noise_std=0.5)
Z = 4.0


@pytest.mark.parametrize("dynamics", ["gf", "sgd"])
def test_solve_at_times_equals_the_n_time_solve_at_shared_grid_times(dynamics):
    # the same grid (N = t_max / dt steps either way) and seed: the grid values are the same
    # numbers, and an output time on the grid has interpolation weight exactly 1
    kw = dict(delta=2.0, lr=0.5, dynamics=dynamics, dt=0.04 if dynamics == "gf" else 0.05, n_paths=512,
              seed=1, progress=False)
    grid = dmft.solve(SQ, t_max=2.0, n_time=6, **kw)
    times = np.array([0.0, 0.13, 0.4, 0.77, 0.8, 1.2, 1.5, 1.6, 1.913, 2.0])
    at = dmft.solve(SQ, times=times, **kw)
    assert at.attrs["n_steps"] == grid.attrs["n_steps"]
    np.testing.assert_array_equal(at.time.values, times)
    shared = grid.time.values
    for var in ("test_loss", "train_loss", "norm", "overlap", "correlation", "response", "test_loss_sem"):
        x = at[var].sel(time=shared, method="nearest", tolerance=1e-12)
        if "time2" in x.dims:
            x = x.sel(time2=shared, method="nearest", tolerance=1e-12)
        np.testing.assert_allclose(x.values, grid[var].values, rtol=1e-12, atol=1e-14, err_msg=var)


def test_solve_interpolation_error_off_the_grid_is_within_the_scheme_error():
    # GF on least squares against the exact Marchenko-Pastur curve, at times half-way and
    # elsewhere between grid points of a coarse grid (dt = 0.1). Linear interpolation errs by
    # at most dt^2 max|x''| / 8 (x = 2 test loss; |x''| <= 6.6 on [0, 2], from the reference
    # by finite differences): 0.008, the order of the scheme's own O(dt^2) error. The
    # allowance of the grid test (1%: O(dt^2) grid error and the O(1/n_paths) bias of noisy
    # kernels) plus this bound must hold; taking the nearest grid value instead errs by up
    # to dt |x'| / 2 ~ 0.1 at t = 0.05.
    dt, lr, delta, noise = 0.1, 0.5, 2.0, 0.25
    times = np.array([0.05, 0.15, 0.33, 0.77, 1.45, 1.99])
    ds = dmft.solve(SQ, delta=delta, lr=lr, dynamics="gf", times=times, t_max=2.0, dt=dt, n_paths=4096,
                    seed=1, progress=False)
    h = 1e-3
    curv = max(abs(marchenko_pastur_gf(delta, noise, lr, t + h) - 2 * marchenko_pastur_gf(delta, noise, lr, t)
                   + marchenko_pastur_gf(delta, noise, lr, t - h)) / h**2 for t in np.r_[h, np.linspace(0.05, 2, 12)])
    assert curv < 6.6
    for t, tl, sem in zip(times, ds.test_loss.values, ds.test_loss_sem.values):
        ref = marchenko_pastur_gf(delta, noise, lr, t)
        tol = Z * 2 * sem + 0.01 * ref + dt**2 * curv / 8
        assert abs(2 * tl - ref) <= tol, (t, 2 * tl, ref, sem, tol)


@pytest.mark.parametrize("dynamics", ["sgd", "gf"])
def test_simulate_at_times_equals_simulate_on_a_grid_containing_them(dynamics):
    # times that are grid points of linspace(0, 2, 9) exactly (multiples of 1/4); GF with a
    # fixed RK4 step that divides them
    kw = dict(d=40, lr=0.5, dynamics=dynamics, n_seeds=2, seed=3, progress=False, dt=0.125)
    times = np.array([0.0, 0.25, 1.5, 2.0])
    at = dmft.simulate(SQ, times=times, **kw)
    grid = dmft.simulate(SQ, t_max=2.0, n_time=9, **kw).sel(time=times)
    for var in ("test_loss", "train_loss", "norm", "overlap"):
        np.testing.assert_allclose(at[var].values, grid[var].values, rtol=1e-12, atol=1e-14, err_msg=var)


def test_compare_takes_times():
    times = np.array([0.0, 0.1, 0.35, 1.0])
    kw = dict(lr=0.5, dynamics="gf", seed=2, progress=False)
    ds = dmft.compare(SQ, times=times, d=60, n_seeds=2, n_paths=256, **kw)
    np.testing.assert_array_equal(ds.time.values, times)
    theory = dmft.solve(SQ, times=times, n_paths=256, **kw)
    sim = dmft.simulate(SQ, times=times, d=60, n_seeds=2, **kw)
    np.testing.assert_allclose(ds.test_loss.sel(dynamics="gf", source="theory").values, theory.test_loss.values,
                               rtol=1e-12)
    np.testing.assert_allclose(ds.test_loss.sel(dynamics="gf", source="simulation").values,
                               sim.test_loss.mean("seed").values, rtol=1e-12)
