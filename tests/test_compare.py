"""dmft.compare / onepass.compare: Dataset structure, round trip, plotting, argument errors."""
import numpy as np
import pytest
import xarray as xr

import dmft
import onepass
from dmft import output, plotting

TINY = dict(t_max=0.5, d=40, n_seeds=2, n_paths=64, n_time=3, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return dmft.compare("linear_regression", lr=0.5, dynamics=("gf", "sgd"), **TINY)


def test_compare_dims_variables_attrs(tiny):
    ds = tiny
    assert list(ds.dynamics.values) == ["gf", "sgd"]
    assert list(ds.source.values) == ["theory", "simulation"]
    assert ds.test_loss.dims == ("dynamics", "source", "time")
    assert ds.norm.dims == ("dynamics", "source", "time", "student", "student2")
    assert ds.overlap.dims == ("dynamics", "source", "time", "student", "teacher")
    assert ds.runtime_s.dims == ("dynamics", "source")
    for name in ("test_loss", "train_loss", "norm", "overlap"):
        assert name + "_sem" in ds
        assert ds[name].attrs["long_name"] and "units" in ds[name].attrs
        assert np.isfinite(ds[name]).all() and (ds[name + "_sem"] >= 0).all()
    np.testing.assert_allclose(ds.time, np.linspace(0, 0.5, 3))
    assert "epoch" in ds.coords
    for key in ("model", "delta", "lr", "batch", "t_max", "d", "n_seeds", "n_paths", "seed", "library_version"):
        assert key in ds.attrs
    assert ds.attrs["lr"] == 0.5 and ds.attrs["model"] == "linear_regression"
    # initial losses agree between theory and simulation only up to sampling; both start at theta = 0
    assert float(ds.overlap.isel(time=0).max()) == 0.0


def test_compare_netcdf_round_trip_and_plot(tiny, tmp_path):
    path = output.save(tiny, tmp_path / "c.nc")
    xr.testing.assert_identical(output.load(path), tiny)
    fig = plotting.compare(tiny)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_ylabel() == tiny.test_loss.attrs["label"] == output.LABELS["test_loss"]
    assert len(fig.axes[0].collections) >= 2  # shaded SEM bands


def test_compare_theory_only():
    ds = dmft.compare("linear_regression", lr=0.5, dynamics="gf", simulate=False, **TINY)
    assert list(ds.source.values) == ["theory"] and list(ds.dynamics.values) == ["gf"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(dynamics="adam"), "dynamics='adam'"),
    (dict(dynamics=()), "dynamics=()"),
    (dict(dynamics=("gf", "gf")), "must not repeat"),
    (dict(lr=-1), "lr=-1"),
    (dict(d=1), "d=1"),
    (dict(model="nope"), "model='nope'"),
])
def test_compare_bad_arguments(kwargs, message):
    kw = {**TINY, "dynamics": "gf", **kwargs}
    model = kw.pop("model", "linear_regression")
    with pytest.raises(dmft.ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dmft.compare(model, **kw)


def test_onepass_compare_three_sources(tmp_path):
    data = onepass.data.binary_mixture("identity", d=100)
    ds = onepass.compare("logistic", data, lr=0.5, t_max=1.0, n_time=3,
                         sources=("theory", "simulation", "hsgd"), n_seeds=2, progress=False)
    assert list(ds.source.values) == ["theory", "simulation", "hsgd"]
    assert ds.risk.dims == ("source", "time")
    assert float(abs(ds.risk_sem.sel(source="theory")).max()) == 0.0
    assert (ds.risk_sem.sel(source="simulation") > 0).any()
    assert ds.attrs["n_seeds"] == 2 and "library_version" in ds.attrs
    xr.testing.assert_identical(output.load(output.save(ds, tmp_path / "o.nc")), ds)
    assert len(plotting.compare(ds, ["risk", "alignment"]).axes) == 2
    with pytest.raises(dmft.ParameterError, match="sources='exact'"):
        onepass.compare("logistic", data, sources=("exact",), progress=False)
