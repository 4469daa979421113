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


@pytest.mark.slow
def test_run_all_quick(tmp_path):
    run_all = importlib.import_module("validation.run_all")
    assert run_all.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.md").exists()
    for name in run_all.SCRIPTS:
        assert (tmp_path / f"{name}.png").exists()
