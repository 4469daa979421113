"""``times=`` (issue 24): output times off the uniform grid in dmft.solve, dmft.simulate and
dmft.compare. The solver interpolates its grid values quadratically in time (bilinearly on two
times); grid times are returned exactly as with ``n_time``."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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


@settings(max_examples=200, deadline=None)
@given(N=st.integers(1, 40), dt=st.floats(0.01, 1.0), u=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12),
       coef=st.tuples(st.floats(-3, 3), st.floats(-3, 3), st.floats(-3, 3)))
def test_interpolation_is_exact_for_quadratics_and_keeps_grid_times(N, dt, u, coef):
    """Three-point Lagrange weights: rows sum to 1, quadratics (linear functions for the
    two-time weights) are reproduced to round-off, grid times get weight exactly 1."""
    from dmft.multipass._solve import _interpolation

    times = np.unique(np.r_[np.asarray(u) * N * dt, dt * np.arange(0, N + 1, max(1, N // 3))])
    steps, W, W1 = _interpolation(times, dt, N)
    grid = steps * dt
    quad = np.polynomial.Polynomial(coef)
    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(W1.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(W1 @ (coef[0] + coef[1] * grid), coef[0] + coef[1] * times, atol=1e-9)
    if N >= 2:
        np.testing.assert_allclose(W @ quad(grid), quad(times), atol=1e-9 * (1 + (N * dt) ** 2))
    on = np.isclose(times / dt, np.round(times / dt), rtol=0, atol=1e-10)
    for Wx in (W, W1):
        assert np.all(np.isin(Wx[on], [0.0, 1.0])) and np.all(Wx[on].max(1) == 1.0)


def test_solve_at_times_is_the_quadratic_interpolation_of_the_grid_solve():
    # same grid and seed as an n_time solve: off-grid one-time outputs are the three-point
    # interpolation of its grid values (to round-off), including below the first step
    kw = dict(delta=2.0, lr=0.5, dynamics="gf", dt=0.1, n_paths=512, seed=1, progress=False, check_dt=False)
    grid = dmft.solve(SQ, t_max=1.0, n_time=11, **kw)
    times = np.array([0.025, 0.05, 0.15, 0.37, 0.96])
    at = dmft.solve(SQ, times=times, t_max=1.0, **kw)
    g = grid.time.values
    for var in ("train_loss", "norm", "overlap"):
        x = grid[var].values.reshape(len(g), -1)[:, 0]
        a = np.clip(np.rint(times / 0.1).astype(int) - 1, 0, len(g) - 3)
        u = times / 0.1 - a
        ref = ((u - 1) * (u - 2) / 2 * x[a] - u * (u - 2) * x[a + 1] + u * (u - 1) / 2 * x[a + 2])
        np.testing.assert_allclose(at[var].values.reshape(len(times), -1)[:, 0], ref, rtol=1e-10, err_msg=var)


@settings(max_examples=200, deadline=None)
@given(N=st.integers(9, 40), dt=st.floats(0.01, 1.0), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3),
       u=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12),
       coef=st.lists(st.floats(-3, 3), min_size=9, max_size=9))
def test_interpolation_does_not_reach_across_a_schedule_jump(N, dt, cuts, u, coef):
    """With a schedule's ``jumps`` (kinks of the curves; pieces of at least 3 steps), the
    quadratic rule reproduces continuous piecewise quadratics and the linear rule continuous
    piecewise linear functions with their kinks at the jumps (the default stencils across a
    kink err by O(dt)); rows still sum to 1 and grid times keep weight exactly 1, also at a
    jump time and a jump on a grid point."""
    from dmft.multipass._solve import _interpolation

    # jumps at least 3 steps from each other and from 0 and N: every piece has 3 grid points
    J = np.sort(3 + np.asarray(cuts) * (N - 6))
    if np.any(np.diff(J) < 3):
        J = J[:1]
    J[0] = np.round(J[0]) if cuts[0] < 0.3 else J[0]  # sometimes a jump on a grid point
    jumps = J * dt
    times = np.unique(np.r_[np.asarray(u) * N * dt, jumps, dt * np.arange(0, N + 1, max(1, N // 3))])
    steps, W, W1 = _interpolation(times, dt, N, jumps)
    grid = steps * dt
    a, b, c = coef[:3]

    def kinked(t, quadratic=True):
        out = a + b * t + (c * t**2 if quadratic else 0.0)
        for j, s, e in zip(jumps, coef[3::2], coef[4::2]):
            out = out + s * np.maximum(t - j, 0.0) + (e * np.maximum(t - j, 0.0) ** 2 if quadratic else 0.0)
        return out

    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(W1.sum(1), 1.0, atol=1e-12)
    scale = 1 + (N * dt) ** 2
    np.testing.assert_allclose(W @ kinked(grid), kinked(times), atol=1e-9 * scale)
    np.testing.assert_allclose(W1 @ kinked(grid, False), kinked(times, False), atol=1e-9 * scale)
    on = np.isclose(times / dt, np.round(times / dt), rtol=0, atol=1e-10)
    for Wx in (W, W1):
        assert np.all(np.isin(Wx[on], [0.0, 1.0])) and np.all(Wx[on].max(1) == 1.0)
    # no jump: the rows of the times whose stencils cross none are the plain rule's
    steps0, W0, W10 = _interpolation(times, dt, N)
    far = np.all(np.abs(times[:, None] / dt - J[None, :]) > 2.5, axis=1)
    for Wx, Wy in ((W, W0), (W1, W10)):
        Wfull = np.zeros((len(times), N + 1))
        Wfull[:, steps] = Wx
        Wplain = np.zeros((len(times), N + 1))
        Wplain[:, steps0] = Wy
        np.testing.assert_array_equal(Wfull[far], Wplain[far])
