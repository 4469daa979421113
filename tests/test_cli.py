"""``dmft`` command line: outputs, exit codes (0 ok, 2 bad argument, 3 divergence), messages."""
import numpy as np
import pytest

from dmft import _cli, models, output
from dmft.multipass import cli

TINY = ["--model", "linear_regression", "--lr", "0.5", "--t-max", "0.5", "--d", "40", "--n-seeds", "2",
        "--n-paths", "64", "--n-time", "3", "--no-progress"]


def test_compare_writes_netcdf_and_figure(tmp_path, capsys):
    code = cli.main(["compare", *TINY, "--dynamics", "gf,sgd", "--out", str(tmp_path)])
    assert code == 0
    ds = output.load(tmp_path / "compare.nc")
    assert list(ds.dynamics.values) == ["gf", "sgd"] and list(ds.source.values) == ["theory", "simulation"]
    assert np.isfinite(ds.test_loss).all()
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "max |diff|/SE" in out and "compare.png" in out


def test_no_subcommand_means_compare(tmp_path):
    assert cli.main([*TINY, "--dynamics", "gf", "--no-simulation", "--out", str(tmp_path)]) == 0
    assert list(output.load(tmp_path / "compare.nc").source.values) == ["theory"]


def test_defaults_are_the_readme_job():
    args = cli.build_parser().parse_args(["compare"])
    assert (args.model, args.delta, args.lr, args.batch, args.t_max) == ("huber-tanh", 2.0, 2.0, 1.0, 4.0)
    assert args.out == "results"


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "lr=-1.0"),
    (["--dynamics", "adam"], "dynamics='adam'"),
    (["--model", "nope"], "model='nope'"),
    (["--n-seeds", "0"], "n_seeds=0"),
])
def test_bad_argument_exits_2_with_message(argv, message, tmp_path, capsys):
    code = cli.main(["compare", *TINY, "--dynamics", "gf", *argv, "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("dmft: error:") and message in err


def test_unparsable_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", "--lr", "fast"])
    assert e.value.code == 2 and "--lr" in capsys.readouterr().err


def test_divergence_exits_3(tmp_path, capsys):
    code = cli.main(["compare", *TINY, "--lr", "40", "--t-max", "2", "--dynamics", "sgd", "--no-simulation",
                     "--out", str(tmp_path)])
    assert code == 3
    err = capsys.readouterr().err
    assert "dmft: diverged:" in err and "(cause: learning rate)" in err


def test_on_divergence_truncate_on_both_subcommands(tmp_path, capsys):
    """``--on-divergence truncate``: compare keeps the times before the blow-up (exit 0); sweep passes
    the policy to every point (a truncated point is listed with its divergence, not fatal)."""
    argv = [*TINY, "--lr", "8", "--t-max", "2", "--n-time", "41", "--dynamics", "sgd", "--no-simulation",
            "--on-divergence", "truncate"]
    assert cli.main(["compare", *argv, "--out", str(tmp_path / "c")]) == 0
    assert "diverged at t = " in capsys.readouterr().out
    assert cli.main(["sweep", *argv, "--out", str(tmp_path / "s")]) == 0
    ds = output.load(tmp_path / "s" / "sweep.nc")
    assert ds.status.values.ravel().tolist() == ["truncated"] and np.isfinite(ds.diverged_at).all()
    assert "1 points (1 not ok)" in capsys.readouterr().out


def test_sweep_command_resumes(tmp_path, capsys):
    argv = ["sweep", *TINY, "--dynamics", "gf", "--no-simulation", "--lr", "0.25,0.5", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    ds = output.load(tmp_path / "sweep.nc")
    assert ds.test_loss.dims == ("delta", "lr", "batch", "dynamics", "source", "time")
    assert (tmp_path / "sweep.png").exists()
    assert cli.main(argv) == 0  # second run: everything loaded from points/
    assert "2 points (0 not ok)" in capsys.readouterr().out


# ---------------------------------------------------------------- help, version, models
def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def test_version(capsys):
    import dmft

    assert _help(["--version"], capsys).strip() == f"dmft (sgd-dynamics) {dmft.__version__}"


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_help_shows_every_default_and_no_unshipped_document(command, capsys):
    text = " ".join(_help([command, "--help"], capsys).split())  # argparse wraps lines
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
            assert f"(default: {action.default})" in text, action.dest
    for name in _cli.MODEL_NAMES:
        assert name in text
    assert "module:function" in text
    assert ".md" not in text  # the wheel ships no documents


def test_model_names_cover_the_built_in_models():
    # every built-in model function has a listed name, and every listed name is built in
    assert {models._BY_NAME[n] for n in _cli.MODEL_NAMES} == set(models._BY_NAME.values())


_MY_MODELS = '''
from dmft import models


def quiet_teacher():  # built-in functions: no compilation in the test
    return models.linear_regression(noise_std=0.25)


def not_a_model():
    return 3
'''


@pytest.fixture
def my_models(tmp_path, monkeypatch):
    """``cli_models_<id>.py`` in the current folder (its name unique to this test)."""
    name = f"cli_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(_MY_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # the command adds the folder
    yield name
    __import__("sys").modules.pop(name, None)


def test_a_custom_model_from_module_function(my_models, tmp_path):
    out = tmp_path / "out"
    argv = ["compare", *TINY, "--model", f"{my_models}:quiet_teacher", "--dynamics", "gf", "--no-simulation"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    attrs = output.load(out / "compare.nc").attrs
    assert attrs["model"] == "linear_regression" and attrs["model_noise_std"] == 0.25  # not the default 0.5


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:f", "cannot import"),
    ("{mod}:missing", "cannot import"),
    ("{mod}:not_a_model", "returned int"),
])
def test_a_bad_custom_model_exits_2(spec, message, my_models, tmp_path, capsys):
    code = cli.main(["compare", *TINY, "--model", spec.format(mod=my_models), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--model=" in err and message in err


def test_compare_on_a_stretched_grid(tmp_path, capsys):
    argv = ["compare", *TINY, "--t-max", "2", "--stretch", "0.5", "--dynamics", "gf", "--no-simulation",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    ds = output.load(tmp_path / "compare.nc")
    np.testing.assert_allclose(ds.time.values, [0.0, 1.0, 2.0])
    assert "Stretched(t_fine=0.5" in str(ds.attrs) + str({v: ds[v].attrs for v in ds.data_vars})
    assert cli.main(["compare", *TINY, "--stretch", "-1", "--no-simulation", "--out", str(tmp_path)]) == 2
    assert "t_fine=-1.0" in capsys.readouterr().err
