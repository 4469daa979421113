"""Validation gallery: one script in quick mode (fast), everything in quick mode (slow)."""
import importlib
import sys
from pathlib import Path

import pytest

from dmft import output

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def test_one_script_quick(tmp_path, capsys):
    mod = importlib.import_module("validation.onepass_adagrad")
    rows = mod.main(["--quick", "--no-progress", "--out", str(tmp_path)])
    assert (tmp_path / "onepass_adagrad.png").exists() and (tmp_path / "onepass_adagrad.md").exists()
    ds = output.load(tmp_path / "onepass_adagrad.nc")
    assert list(ds.source.values) == ["theory", "simulation", "hsgd"]
    closed = [r for r in rows if r["source"] == "closed form"][0]
    assert closed["max_abs"] < 1e-5
    assert "| case | vs | variable |" in capsys.readouterr().out


def test_zoo_quick_entry(tmp_path):
    """One zoo entry in quick mode: the table and the per-run files are written, and the
    DMFT gradient flow on squared loss at ``delta = 1`` follows the simulation (d = 200,
    3 seeds: within 5 SE and 10% on the test loss)."""
    zoo = importlib.import_module("validation.zoo")
    rows = zoo.main(["--quick", "--no-progress", "--out", str(tmp_path), "--only", "squared_delta_1",
                     "--dynamics", "gf"])
    assert (tmp_path / "zoo.md").exists()
    assert output.load(tmp_path / "zoo" / "squared_delta_1_multipass.nc").attrs["delta"] == 1.0
    table = output.load(tmp_path / "zoo.nc")
    assert set(table.variable.values) == {"test_loss", "train_loss", "norm", "overlap"}
    test_loss = [r for r in rows if r["variable"] == "test_loss"][0]
    assert test_loss["case"] == "squared_delta_1 / multi-pass gf"
    assert test_loss["max_z"] < 5 and test_loss["rel"] < 0.1, test_loss


@pytest.mark.slow
def test_run_all_quick(tmp_path):
    run_all = importlib.import_module("validation.run_all")
    assert run_all.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.md").exists()
    for name in run_all.SCRIPTS:
        assert (tmp_path / f"{name}.png").exists()
