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
