"""The README's main job: ``onepass run``."""
import numpy as np

from dmft import output
from onepass import cli


def test_run_writes_netcdf_and_figure(tmp_path, capsys):
    code = cli.main(["run", "--spectrum", "identity", "--d", "200", "--t-max", "2", "--n-time", "5",
                     "--n-seeds", "2", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    ds = output.load(tmp_path / "onepass.nc")
    assert list(ds.source.values) == ["theory", "simulation"]
    assert np.isfinite(ds.risk).all() and ds.risk.sel(source="theory")[0] > ds.risk.sel(source="theory")[-1]
    assert (tmp_path / "onepass.png").stat().st_size > 10_000
    assert "max |risk theory - simulation mean|" in capsys.readouterr().out


def test_bad_argument_exits_2_with_message(tmp_path, capsys):
    code = cli.main(["run", "--lr", "-1", "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "lr=-1.0" in capsys.readouterr().err


def test_divergence_exits_3(tmp_path, capsys):
    code = cli.main(["run", "--model", "linear_regression", "--data", "teacher", "--spectrum", "identity",
                     "--d", "50", "--lr", "3", "--t-max", "50", "--n-seeds", "1", "--out", str(tmp_path),
                     "--no-progress"])
    assert code == 3
    assert "diverged" in capsys.readouterr().err
