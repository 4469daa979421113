"""The README's main job: ``onepass run``."""
import sys

import numpy as np
import pytest

from dmft import _cli as shared_cli
from dmft import output
from onepass import cli, data


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


SMALL = ["--d", "100", "--t-max", "2", "--n-time", "5", "--n-seeds", "2", "--no-progress"]


def test_version(capsys):
    import dmft

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"onepass (sgd-dynamics) {dmft.__version__}"


def test_help_shows_defaults_models_spectra_schedules(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.5)" in text and "(default: logistic)" in text and "(default: constant)" in text
    for name in (*shared_cli.MODEL_NAMES, *cli.SCHEDULES, "module:function"):
        assert name in text
    assert ".md" not in text  # the wheel ships no documents


def test_spectrum_names_are_the_data_modules():
    assert list(cli.SPECTRUM_NAMES) == sorted(data.SPECTRA)


def test_teacher_data_runs_with_the_default_spectrum(tmp_path):
    assert cli.main(["run", "--data", "teacher", "--model", "linear_regression", *SMALL, "--out", str(tmp_path)]) == 0
    ds = output.load(tmp_path / "onepass.nc")
    assert ds.attrs["data"] == "teacher_student_Identity"


def test_teacher_data_with_the_two_class_spectrum_exits_2(tmp_path, capsys):
    code = cli.main(["run", "--data", "teacher", "--spectrum", "zero_one", *SMALL, "--out", str(tmp_path)])
    assert code == 2 and "--spectrum='zero_one'" in capsys.readouterr().err


def test_adagrad_schedule(tmp_path):
    # AdaGrad-Norm: gamma_t = lr / sqrt(b0^2 + acc(t)), so gamma_0 = lr / b0 and gamma falls
    argv = ["run", "--schedule", "adagrad", "--lr", "0.8", "--b0", "2", *SMALL, "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    lr = output.load(tmp_path / "onepass.nc").lr.sel(source="theory").values
    assert lr[0] == pytest.approx(0.4, rel=1e-12) and np.all(np.diff(lr) < 0)


def test_time_dependent_schedule_from_module_function(tmp_path, monkeypatch):
    (tmp_path / "cli_schedule_decay.py").write_text("def decay(t):\n    return 0.5 / (1.0 + t)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(sys.path))
    try:
        assert cli.main(["run", "--schedule", "cli_schedule_decay:decay", *SMALL, "--out", str(tmp_path)]) == 0
    finally:
        sys.modules.pop("cli_schedule_decay", None)
    ds = output.load(tmp_path / "onepass.nc")
    np.testing.assert_allclose(ds.lr.sel(source="theory"), 0.5 / (1.0 + ds.time), rtol=1e-12)


def test_unknown_schedule_exits_2(tmp_path, capsys):
    assert cli.main(["run", "--schedule", "cosine", *SMALL, "--out", str(tmp_path)]) == 2
    assert "--schedule='cosine'" in capsys.readouterr().err
