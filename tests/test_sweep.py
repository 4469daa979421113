"""dmft.sweep: grid Dataset structure, per-point seeds, recorded failures, resume, dask."""
import json

import numpy as np
import pytest
import xarray as xr

import dmft
from dmft import output
from dmft.sweep import point_seed

CALLS = []


def toy(a, b, seed, scale=1.0, progress=True):
    """Cheap stand-in for dmft.compare: a Dataset on time, failing at chosen points."""
    CALLS.append((a, b))
    if a == 3.0 and b == "bad":
        raise dmft.DivergenceError("toy diverged at time 1", 1.0)
    if a == 2.0 and b == "bad":
        raise ValueError("toy failed")
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 4)
    return output.build({"risk": (("time",), scale * a * np.exp(-t) + 0.01 * rng.standard_normal(4)),
                         "norm": (("time", "student", "student2"), np.ones((4, 1, 1)))},
                        {"time": t}, {"a": a, "b": b, "seed": seed, "scale": scale})


class Interrupt:
    """``toy`` that raises KeyboardInterrupt on its ``after``-th call (a killed run)."""

    def __init__(self, after):
        self.n, self.after = 0, after

    def __call__(self, **kw):
        self.n += 1
        if self.n > self.after:
            raise KeyboardInterrupt
        return toy(**kw)


GRID = {"a": [1.0, 2.0, 3.0], "b": ["good", "bad"]}


def test_sweep_structure_status_and_seeds():
    ds = dmft.sweep(toy, GRID, fixed={"scale": 2.0}, seed=5, progress=False)
    assert ds.risk.dims == ("a", "b", "time") and ds.norm.dims == ("a", "b", "time", "student", "student2")
    assert list(ds.a.values) == [1.0, 2.0, 3.0] and list(ds.b.values) == ["good", "bad"]
    assert ds.status.dims == ("a", "b") and ds.error.dims == ("a", "b")
    status = ds.status.values
    assert status[0, 1] == "ok" and status[1, 1] == "failed" and status[2, 1] == "diverged"
    assert "ValueError: toy failed" in str(ds.error.values[1, 1])
    assert "DivergenceError" in str(ds.error.values[2, 1]) and ds.error.values[0, 0] == ""
    ok = ds.status == "ok"
    assert np.isfinite(ds.risk.where(ok)).sum() == 4 * int(ok.sum())  # values exactly where status is ok
    assert ds.risk.sel(a=2.0, b="bad").isnull().all()
    assert ds.attrs["sweep_n_failed"] == 2 and ds.attrs["scale"] == 2.0 and "a" not in ds.attrs
    seeds = ds.point_seed.values.ravel()
    assert len(set(seeds)) == seeds.size and seeds[3] == point_seed(5, {"a": 2.0, "b": "bad"})
    # same seed: same numbers; point seeds depend on the point's values, not on the other points
    again = dmft.sweep(toy, GRID, fixed={"scale": 2.0}, seed=5, progress=False)
    xr.testing.assert_identical(ds.drop_vars("runtime_s"), again.drop_vars("runtime_s"))


def test_sweep_bad_arguments(tmp_path):
    with pytest.raises(dmft.ParameterError, match="grid="):
        dmft.sweep(toy, {}, progress=False)
    with pytest.raises(dmft.ParameterError, match="either swept or fixed"):
        dmft.sweep(toy, GRID, fixed={"a": 1.0}, progress=False)
    with pytest.raises(dmft.ParameterError, match="distinct"):
        dmft.sweep(toy, {"a": [1.0, 1.0], "b": ["good"]}, progress=False)
    with pytest.raises(dmft.ParameterError, match="client="):
        dmft.sweep(toy, GRID, client=3, progress=False)


def test_sweep_resume_after_interruption(tmp_path):
    full = dmft.sweep(toy, GRID, seed=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        dmft.sweep(Interrupt(after=4), GRID, seed=1, out=tmp_path, progress=False)
    assert len(list((tmp_path / "points").glob("*.nc"))) == 4 and not (tmp_path / "sweep.nc").exists()
    json.loads((tmp_path / "sweep.json").read_text())
    CALLS.clear()
    resumed = dmft.sweep(Interrupt(after=100), GRID, seed=1, out=tmp_path, progress=False)
    assert CALLS == [(3.0, "good"), (3.0, "bad")]  # only the two missing points ran
    xr.testing.assert_equal(resumed.drop_vars("runtime_s"), full.drop_vars("runtime_s"))
    xr.testing.assert_identical(output.load(tmp_path / "sweep.nc"), resumed)
    # failed points are kept unless retry_failed
    CALLS.clear()
    dmft.sweep(Interrupt(after=100), GRID, seed=1, out=tmp_path, progress=False)
    assert CALLS == []
    dmft.sweep(Interrupt(after=100), GRID, seed=1, out=tmp_path, retry_failed=True, progress=False)
    assert sorted(CALLS) == [(2.0, "bad"), (3.0, "bad")]
    with pytest.raises(dmft.ParameterError, match="different sweep"):
        dmft.sweep(Interrupt(after=100), GRID, seed=2, out=tmp_path, progress=False)
    with pytest.raises(dmft.ParameterError, match="different sweep"):
        dmft.sweep(toy, GRID, seed=1, out=tmp_path, progress=False)


def test_sweep_dask_local_cluster_matches_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = dmft.sweep(toy, GRID, seed=3, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        par = dmft.sweep(toy, GRID, seed=3, client=client, out=tmp_path, progress=False)
        CALLS.clear()
        again = dmft.sweep(toy, GRID, seed=3, client=client, out=tmp_path, progress=False)
    xr.testing.assert_identical(par.drop_vars("runtime_s"), serial.drop_vars("runtime_s"))
    assert CALLS == [] and len(list((tmp_path / "points").glob("*.nc"))) == 6  # every point stored once
    xr.testing.assert_identical(again, par)


def solve_threads_here(a, seed, progress=True):
    """The solve threads a point's solves may take, as ``risk`` (-1: ``_config.SOLVE_THREADS``)."""
    from dmft import _config

    here = _config.SOLVE_THREADS_HERE.get()
    return output.build({"risk": (("time",), np.full(2, -1.0 if here is None else here))}, {"time": [0.0, 1.0]},
                        {"a": a, "seed": seed})


def test_sweep_on_dask_workers_runs_each_points_solves_on_one_thread():
    """A cluster runs a point per worker thread: a solve's own threads would oversubscribe the
    cores, so points on dask workers solve on one thread; serial points keep the default."""
    distributed = pytest.importorskip("distributed")
    grid = {"a": [1.0, 2.0]}
    assert set(dmft.sweep(solve_threads_here, grid, progress=False).risk.values.ravel()) == {-1}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        on_workers = dmft.sweep(solve_threads_here, grid, client=client, progress=False)
    assert set(on_workers.risk.values.ravel()) == {1}
    from dmft import _config
    assert _config.SOLVE_THREADS_HERE.get() is None


def test_sweep_of_dmft_compare(tmp_path):
    """Sweeping ``dynamics`` replaces compare's own length-1 ``dynamics`` dim; a bad value fails alone."""
    ds = dmft.sweep(dmft.compare, {"lr": [0.25, 0.5], "dynamics": ["gf", "bogus"]},
                    fixed=dict(model="linear_regression", t_max=0.5, d=40, n_seeds=2, n_paths=64, n_time=3),
                    out=tmp_path, progress=False)
    assert ds.test_loss.dims == ("lr", "dynamics", "source", "time")
    assert list(ds.status.sel(dynamics="gf").values) == ["ok", "ok"]
    assert list(ds.status.sel(dynamics="bogus").values) == ["failed", "failed"]
    assert "dynamics='bogus'" in str(ds.error.values[0, 1])
    assert ds.lr.attrs["long_name"]
    xr.testing.assert_identical(output.load(tmp_path / "sweep.nc"), ds)


def test_sweep_on_divergence_records_or_truncates(tmp_path):
    """A diverging point never stops the sweep: with 'raise' it is 'diverged' with no values,
    with 'truncate' it keeps the times before its divergence (NaN after); both record the time
    and cause that the function itself reports. One-pass SGD on the linear model diverges at
    lr = 4 (> the stability threshold 2) and not at lr = 0.5."""
    import onepass
    from onepass import data as D

    fixed = dict(model=dmft.models.linear_regression(0.5), data=D.teacher_student("identity", d=10), t_max=10.0,
                 n_time=11, n_seeds=2)
    grid = {"lr": [0.5, 4.0]}
    raised = dmft.sweep(onepass.simulate, grid, fixed=fixed, seed=2, progress=False)
    assert list(raised.status.values) == ["ok", "diverged"]
    with pytest.raises(dmft.DivergenceError) as info:
        onepass.simulate(lr=4.0, seed=int(raised.point_seed[1]), progress=False, **fixed)
    assert float(raised.diverged_at[1]) == info.value.time and str(raised.divergence_cause.values[1]) == "learning_rate"
    assert raised.risk.sel(lr=4.0).isnull().all() and np.isnan(float(raised.diverged_at[0]))

    cut = dmft.sweep(onepass.simulate, grid, fixed=fixed, seed=2, out=tmp_path, progress=False,
                     on_divergence="truncate")
    assert list(cut.status.values) == ["ok", "truncated"] and cut.attrs["sweep_n_truncated"] == 1
    alone = onepass.simulate(lr=4.0, seed=int(cut.point_seed[1]), progress=False, on_divergence="truncate", **fixed)
    kept = cut.risk.sel(lr=4.0).sel(time=alone.time)
    np.testing.assert_array_equal(kept.values, alone.risk.values)  # the function's own numbers
    assert cut.risk.sel(lr=4.0).where(cut.time > alone.time[-1], drop=True).isnull().all()
    assert float(cut.diverged_at[1]) == alone.attrs["diverged_at"] == info.value.time
    xr.testing.assert_equal(cut.sel(lr=0.5).drop_vars("runtime_s"), raised.sel(lr=0.5).drop_vars("runtime_s"))
    # stored and reloaded as it was; another policy is another sweep
    xr.testing.assert_identical(dmft.sweep(onepass.simulate, grid, fixed=fixed, seed=2, out=tmp_path,
                                           progress=False, on_divergence="truncate"), cut)
    with pytest.raises(dmft.ParameterError, match="different sweep"):
        dmft.sweep(onepass.simulate, grid, fixed=fixed, seed=2, out=tmp_path, progress=False)


def diverging_toy(a, seed, on_divergence="raise"):
    """``a exp(-t)`` on five times of [0, 1]; ``a = 2`` diverges at 0.6 (cause time_step). Truncated,
    it re-solves on its first three times, which come out an ulp away from the full grid's
    (as a solve on a shorter horizon does)."""
    if a == 2.0 and on_divergence == "raise":
        raise dmft.DivergenceError("toy diverged at time 0.6", 0.6, cause="time_step")
    t = np.linspace(0, 1, 5) if a != 2.0 else np.arange(3) * (0.5 / 2) * (1 + 2**-52)
    ds = output.build({"risk": (("time",), a * np.exp(-t))}, {"time": t, "epoch": ("time", 2 * t)}, {"a": a})
    if a == 2.0:
        ds.attrs.update(truncated=1, diverged_at=0.6, divergence_cause="time_step")
    return ds


def test_sweep_truncated_point_on_a_shorter_grid_is_padded():
    ds = dmft.sweep(diverging_toy, {"a": [2.0, 1.0]}, progress=False, on_divergence="truncate")
    assert list(ds.status.values) == ["truncated", "ok"] and list(ds.divergence_cause.values) == ["time_step", ""]
    t = np.linspace(0, 1, 5)
    np.testing.assert_array_equal(ds.time.values, t)  # the full point's grid, although the truncated one came first
    np.testing.assert_allclose(ds.risk.sel(a=2.0).values[:3], 2 * np.exp(-t[:3]), rtol=1e-15)
    assert np.isnan(ds.risk.sel(a=2.0).values[3:]).all()
    assert ds.epoch.dims == ("time",)  # equal where defined: one coordinate, not one per point
