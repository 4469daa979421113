"""The bad-input catalogue: every public entry point rejects every bad argument we know of
with a ``ParameterError`` that names the argument (and its value), before any computation.

One row per bad input: ``(entry point, keyword arguments, argument name, text of the value)``.
Each entry point has a base call in :data:`ENTRY_POINTS` that works as given; a row
overrides some of its keywords. To catalogue a new entry point, add it to ``ENTRY_POINTS``
and give it rows: :func:`test_every_public_entry_point_is_catalogued` fails until then.
Rows that run out of memory or time are caught by the resource guards before any work, so
every row is fast.
"""
import importlib
import inspect
import math
import warnings

import numpy as np
import pytest

import dmft
import onepass
from dmft import errors, models
from dmft import expectation as E
from dmft.multipass import cli, linear_sgd_moments
from onepass import cli as onepass_cli
from onepass import data as D

LIN = models.linear_regression(0.5)
TS = D.teacher_student("identity", d=10)
TWO = [[0.0, 0.0], [1.0, 1.0]]
SIM = dict(d=10, t_max=0.1, n_time=2, n_seeds=1, progress=False)
SOLVE = dict(t_max=0.2, dt=0.1, n_time=3, n_paths=16, n_replicas=2, progress=False)
ONE = dict(t_max=0.1, n_time=2)


def _toy(lr, seed):  # a sweep function
    return dmft.simulate(LIN, lr=lr, seed=seed, **SIM)


#: entry point -> a call with good defaults that a row's keywords override
ENTRY_POINTS = {
    "dmft.simulate": lambda **kw: dmft.simulate(**{"model": LIN, **SIM, **kw}),
    "dmft.solve": lambda **kw: dmft.solve(**{"model": LIN, **SOLVE, **kw}),
    "dmft.compare": lambda **kw: dmft.compare(**{"model": LIN, "dynamics": "gf", "d": 10, "n_seeds": 1,
                                                 "n_paths": 16, "n_time": 3, "t_max": 0.2, "progress": False, **kw}),
    "dmft.sweep": lambda **kw: dmft.sweep(**{"function": _toy, "grid": {"lr": [0.5]}, "progress": False, **kw}),
    "dmft.set_progress": lambda **kw: dmft.set_progress(**{"enabled": None, **kw}),  # None: the default switch
    "onepass.set_progress": lambda **kw: onepass.set_progress(**{"enabled": None, **kw}),
    "linear_sgd_moments": lambda **kw: linear_sgd_moments(**{"d": 5, "t_max": 0.1, "n_time": 2,
                                                            "progress": False, **kw}),
    "onepass.solve": lambda **kw: onepass.solve(**{"model": LIN, "data": TS, **ONE, **kw}),
    "onepass.simulate": lambda **kw: onepass.simulate(**{"model": LIN, "data": TS, "n_seeds": 1, "progress": False,
                                                         **ONE, **kw}),
    "onepass.compare": lambda **kw: onepass.compare(**{"model": LIN, "data": TS, "n_seeds": 1, "progress": False,
                                                       **ONE, **kw}),
    "gaussian_moments": lambda **kw: E.gaussian_moments(**{"model": LIN, "mean": np.zeros(2), "cov": np.eye(2), **kw}),
    "gaussian_mixture": lambda **kw: D.gaussian_mixture(**{"means": TWO, "covariances": [1, 1], **kw}),
    "binary_mixture": lambda **kw: D.binary_mixture(**kw),
    "teacher_student": lambda **kw: D.teacher_student(**kw),
    "multiclass_mixture": lambda **kw: D.multiclass_mixture(**{"n_classes": 3, **kw}),
    "PowerLaw": lambda **kw: D.PowerLaw(**kw),
    "ZeroOne": lambda **kw: D.ZeroOne(**kw),
    "Binned": lambda **kw: D.Binned(**kw),
    "Constant": lambda **kw: onepass.Constant(**kw),
    "AdaGradNorm": lambda **kw: onepass.AdaGradNorm(**kw),
    "TimeDependent": lambda **kw: onepass.TimeDependent(**kw),
    "StepDecay": lambda **kw: onepass.StepDecay(**kw),
    "Cosine": lambda **kw: onepass.Cosine(**kw),
    "linear_regression": lambda **kw: models.linear_regression(**kw),
    "huber_tanh": lambda **kw: models.huber_tanh(**kw),
    "softmax_cross_entropy": lambda **kw: models.softmax_cross_entropy(**kw),
    "models.get": lambda **kw: models.get(**kw),
    "custom": lambda **kw: models.custom(**{"loss": lambda r, y: 0.5 * r[0] ** 2,
                                           "teacher": lambda rs, eps: rs.copy(), **kw}),
    "GaussHermite": lambda **kw: E.GaussHermite(**kw),
    "QuasiMonteCarlo": lambda **kw: E.QuasiMonteCarlo(**kw),
}

#: (entry point, keywords, argument the message names, text of the value in the message)
CASES = [
    # dmft.simulate
    *[("dmft.simulate", {name: bad}, name, repr(bad)) for name, bad in [
        ("lr", 0), ("lr", -1), ("lr", math.nan), ("lr", math.inf), ("batch", 0), ("delta", -1), ("d", 0),
        ("d", 2.5), ("t_max", 0), ("dt", 0), ("dt", -0.1), ("alpha", 1.0), ("alpha", -0.1), ("n_seeds", 0),
        ("dynamics", "adam"), ("seed", -1), ("sampling", "x"), ("ridge", -1), ("init_std", math.nan),
        ("n_time", 1), ("on_divergence", "ignore"), ("max_memory_gb", 0), ("max_runtime_s", -1.0)]],
    ("dmft.simulate", {"model": "nonexistent"}, "model", "nonexistent"),
    ("dmft.simulate", {"dynamics": "sme", "check_dt": "yes"}, "check_dt", "'yes'"),
    ("dmft.simulate", {"init_std": 1e200}, "init_std", "1e+200"),  # was "diverged; lower the learning rate"
    ("dmft.simulate", {"batch": 1e300}, "batch", "1e+300"),  # was numpy's "Maximum allowed dimension exceeded"
    ("dmft.simulate", {"d": 10**7}, "d", "10000000"),  # was a raw MemoryError
    ("dmft.simulate", {"d": 30000}, "d", "30000"),  # tried to allocate 14 GB
    ("dmft.simulate", {"d": 1000, "t_max": 1e9}, "t_max", "1000000000.0"),  # ran for minutes without an estimate
    ("dmft.simulate", {"lr": onepass.AdaGradNorm()}, "lr", "AdaGradNorm"),  # the one-pass gradient norm's only
    ("dmft.simulate", {"lr": lambda t: 1.0 - 20 * t}, "lr(t=", "0.05"),  # a rate that reaches 0 by t_max
    ("dmft.simulate", {"data": D.binary_mixture(d=10)}, "data", "binary_Identity"),  # no class labels for LIN
    # the multi-pass DMFT takes hard-label binary mixtures whose class covariances have equal traces
    *[(entry, {"model": models.logistic(), "data": bad}, "data", name) for entry in ("dmft.solve", "dmft.compare")
      for bad, name in [(D.binary_mixture(D.ZeroOne((0.25, 0.25, 0.4, 0.1)), d=12), "binary_ZeroOne"),
                        (D.gaussian_mixture(TWO, [1, 1], teacher=[[1.0, 0.0]]), "gaussian_mixture")]],
    ("dmft.solve", {"model": models.softmax_cross_entropy(3),
                    "data": D.gaussian_mixture(np.eye(3), [1.0, 1.0, 2.0], name="traces_1_1_2")}, "data",
     "traces_1_1_2"),
    ("dmft.solve", {"data": D.binary_mixture(d=10)}, "data", "binary_Identity"),  # no class labels for LIN
    # one class with zero mean is teacher-student data: it needs a teacher and a covariance
    *[(entry, {"data": bad}, "data", bad.name) for entry in ("dmft.solve", "dmft.compare")
      for bad in (D.gaussian_mixture(np.zeros((1, 10)), [1.0], name="no_teacher"),
                  D.gaussian_mixture(np.zeros((1, 10)), [np.zeros(10)], teacher=np.ones((1, 10)) / np.sqrt(10),
                                     name="zero_covariance"))],
    ("dmft.compare", {"lr": onepass.AdaGradNorm()}, "lr", "AdaGradNorm"),  # no accumulated gradient norm
    ("dmft.solve", {"lr": onepass.AdaGradNorm()}, "lr", "AdaGradNorm"),
    ("dmft.solve", {"lr": lambda t: 1.0 - 20 * t}, "lr(t=", "0.05"),  # a rate that reaches 0 by t_max
    ("dmft.compare", {"lr": onepass.TimeDependent(lambda t: math.nan)}, "lr(t=", "nan"),
    # output times (issue 24): not increasing, negative, beyond t_max, and together with n_time
    *[(entry, {"n_time": None, **kw}, name, value) for entry in ("dmft.simulate", "dmft.solve", "dmft.compare")
      for kw, name, value in [({"times": [0.0, 0.2, 0.1]}, "times", "increasing"),
                              ({"times": [0.0, 0.1, 0.1]}, "times", "increasing"),
                              ({"times": [-0.1, 0.1]}, "times", "-0.1"),
                              ({"times": [0.0, 0.5], "t_max": 0.2}, "times", "0.5"),
                              ({"times": [[0.0, 0.1]]}, "times", "(1, 2)"),
                              ({"times": [0.0, 0.1], "n_time": 3}, "n_time", "3")]],
    # dmft.solve
    *[("dmft.solve", {name: bad}, name, repr(bad)) for name, bad in [
        ("lr", 0), ("lr", math.nan), ("batch", -1), ("delta", 0), ("t_max", -1), ("dt", 0), ("n_paths", 1),
        ("n_replicas", 1), ("dynamics", "adam"), ("seed", -3), ("n_time", 0), ("ridge", -0.1),
        ("sampling", "sobol"), ("corrector", -1), ("on_divergence", "ignore"), ("max_memory_gb", -1),
        ("max_runtime_s", 0)]],
    ("dmft.solve", {"model": "nonexistent"}, "model", "nonexistent"),
    ("dmft.solve", {"dynamics": "sme", "check_dt": "yes"}, "check_dt", "'yes'"),
    ("dmft.solve", {"batch": 1e300}, "batch", "1e+300"),  # was an OverflowError
    ("dmft.solve", {"init_std": 1e200}, "init_std", "1e+200"),  # was an OverflowError
    ("dmft.solve", {"n_time": 10**6}, "n_time", "1000000"),  # was blamed on n_paths
    ("dmft.solve", {"t_max": 1e9}, "t_max", "1000000000.0"),
    ("dmft.solve", {"n_paths": 10**9}, "n_paths", "1000000000"),
    ("dmft.solve", {"dynamics": "gf", "t_max": 320.0, "dt": 0.04, "n_time": 2, "n_paths": 8192,
                    "max_memory_gb": 1000}, "t_max", "320.0"),  # fits the memory allowed, not the default hour
    # dmft.compare and dmft.sweep
    ("dmft.compare", {"dynamics": ()}, "dynamics", "()"),
    ("dmft.compare", {"dynamics": ("gf", "gf")}, "dynamics", "'gf'"),
    ("dmft.compare", {"n_seeds": 0}, "n_seeds", "0"),
    ("dmft.compare", {"on_divergence": "ignore"}, "on_divergence", "ignore"),
    ("dmft.sweep", {"function": 3}, "function", "3"),
    ("dmft.sweep", {"grid": {}}, "grid", "{}"),
    ("dmft.sweep", {"grid": {"lr": [0.5, 0.5]}}, "grid['lr']", "0.5"),
    ("dmft.sweep", {"grid": {"lr": [0.5]}, "fixed": {"seed": 1}}, "seed", "seed"),
    ("dmft.sweep", {"grid": {"lr": [0.5, "x"]}}, "grid['lr']", "'x'"),  # 0.5 was passed as the string '0.5'
    ("dmft.sweep", {"grid": {"lr": [True, 0.5]}}, "grid['lr']", "True"),  # True was passed as 1.0
    ("dmft.sweep", {"client": "bogus"}, "client", "bogus"),  # dask's "missing port number"
    ("dmft.sweep", {"client": 3}, "client", "3"),
    ("dmft.sweep", {"on_divergence": "ignore"}, "on_divergence", "ignore"),
    ("dmft.sweep", {"function": lambda lr, seed: None, "on_divergence": "truncate"}, "on_divergence", "truncate"),
    ("dmft.sweep", {"fixed": {"on_divergence": "truncate"}}, "fixed", "['on_divergence']"),
    ("dmft.set_progress", {"enabled": "yes"}, "enabled", "yes"),
    ("onepass.set_progress", {"enabled": 2}, "enabled", "2"),
    ("linear_sgd_moments", {"model": models.logistic()}, "model", "logistic"),
    ("linear_sgd_moments", {"d": 0}, "d", "0"),
    # onepass
    *[("onepass.solve", {name: bad}, name, repr(bad)) for name, bad in [
        ("lr", 0), ("lr", -2), ("lr", math.nan), ("t_max", 0), ("n_time", 1), ("rtol", 0), ("groups", "weird"),
        ("on_divergence", "ignore"), ("max_memory_gb", 0), ("max_runtime_s", -5)]],
    ("onepass.solve", {"data": "data"}, "data", "data"),
    ("onepass.solve", {"X0": np.zeros((2, 3))}, "X0", "(2, 3)"),
    ("onepass.solve", {"rule": "gh"}, "rule", "'gh'"),  # was an AttributeError
    ("onepass.solve", {"t_max": 1e9, "n_time": 3}, "t_max", "1000000000.0"),  # ran for minutes without an estimate
    ("onepass.solve", {"lr": lambda t: -1.0}, "lr", "-1.0"),
    *[("onepass.simulate", {name: bad}, name, repr(bad)) for name, bad in [
        ("n_seeds", 0), ("dynamics", "adam"), ("seed", -1), ("lr", 0), ("workers", 0), ("n_test", 1),
        ("on_divergence", "ignore"), ("max_memory_gb", 0), ("max_runtime_s", 0)]],
    ("onepass.simulate", {"dynamics": "hsgd", "dt": 0}, "dt", "0"),
    ("onepass.simulate", {"dynamics": "hsgd", "check_dt": "yes"}, "check_dt", "'yes'"),
    ("onepass.simulate", {"data": D.teacher_student("identity", d=1000), "t_max": 1e9, "n_time": 3}, "t_max",
     "1000000000.0"),  # ran for minutes without an estimate
    ("onepass.simulate", {"data": D.teacher_student("identity", d=10**5), "n_time": 10**4}, "n_time", "10000"),
    ("onepass.simulate", {"rule": "gh"}, "rule", "'gh'"),
    ("onepass.compare", {"sources": ("theory", "theory")}, "sources", "'theory'"),
    ("onepass.compare", {"sources": ("exact",)}, "sources", "exact"),
    ("onepass.compare", {"on_divergence": "ignore"}, "on_divergence", "ignore"),
    # Gaussian expectations
    ("gaussian_moments", {"mean": np.zeros(3)}, "mean", "3"),
    ("gaussian_moments", {"cov": np.eye(3)}, "cov", "(3, 3)"),
    ("gaussian_moments", {"cov": -np.eye(2), "rule": E.GaussHermite()}, "cov", "-1"),
    ("gaussian_moments", {"cov": -np.eye(2)}, "cov", "-1"),  # the closed form returned a loss of -0.875
    ("gaussian_moments", {"cov": np.array([[1.0, 0.5], [0.0, 1.0]])}, "cov", "symmetric"),  # was symmetrised
    ("gaussian_moments", {"mean": np.array([0.0, np.nan])}, "mean", "nan"),
    ("gaussian_moments", {"rule": "gh"}, "rule", "'gh'"),  # was an AttributeError
    ("gaussian_moments", {"model": models.logistic(), "mean": np.zeros(1), "cov": np.eye(1), "label": np.zeros(5)},
     "label", "(5,)"),  # was accepted
    ("GaussHermite", {"points_per_dim": 0}, "points_per_dim", "0"),
    ("QuasiMonteCarlo", {"n_points": 100}, "n_points", "100"),
    # data
    ("gaussian_mixture", {"probs": [0.5, 0.6]}, "probs", "0.6"),
    ("gaussian_mixture", {"probs": [0.5, 0.5, 0.0]}, "probs", "(3,)"),
    ("gaussian_mixture", {"probs": [1.5, -0.5]}, "probs", "-0.5"),
    ("gaussian_mixture", {"covariances": [[1, -1], [1, 1]]}, "covariances", "-1"),
    ("gaussian_mixture", {"covariances": [[1, np.nan], [1, 1]]}, "covariances", "nan"),
    ("gaussian_mixture", {"covariances": [1]}, "covariances", "1"),
    ("gaussian_mixture", {"covariances": [[1, 1, 1], [1, 1, 1]]}, "covariances[0]", "(3,)"),
    ("gaussian_mixture", {"means": [[0, 0]], "covariances": [1], "teacher": [[1, 2, 3]]}, "teacher", "(1, 3)"),
    ("gaussian_mixture", {"means": [[0, np.inf]], "covariances": [1]}, "means", "inf"),
    ("gaussian_mixture", {"means": np.zeros((2, 0))}, "means", "(2, 0)"),  # d = 0 was accepted
    ("gaussian_mixture", {"means": [[0.0, 0.0], [1.0]]}, "means", "rectangular"),  # numpy's "inhomogeneous shape"
    ("binary_mixture", {"d": 1}, "d", "1"),
    ("binary_mixture", {"mean_norm": -1}, "mean_norm", "-1"),
    ("binary_mixture", {"spectrum": "foo"}, "spectrum", "foo"),
    ("teacher_student", {"k_star": 0}, "k_star", "0"),
    ("teacher_student", {"d": 5, "k_star": 6}, "k_star", "6"),
    ("teacher_student", {"teacher_norm": math.nan}, "teacher_norm", "nan"),
    ("multiclass_mixture", {"n_classes": 1}, "n_classes", "1"),
    ("multiclass_mixture", {"mean_norm": -1}, "mean_norm", "-1"),
    ("PowerLaw", {"alpha": -1, "beta": 0}, "alpha", "-1"),
    ("ZeroOne", {"fractions": (0.5, 0.5, 0.5, 0)}, "fractions", "0.5"),
    ("Binned", {"n_bins": 0}, "n_bins", "0"),
    ("Constant", {"lr": 0}, "lr", "0"),
    ("AdaGradNorm", {"lr": 1, "b0": -1}, "b0", "-1"),
    ("TimeDependent", {"fn": 3.0}, "fn", "3.0"),
    ("StepDecay", {"factor": 1.5}, "factor", "1.5"),
    ("StepDecay", {"every": 0}, "every", "0"),
    ("Cosine", {"t_max": -1}, "t_max", "-1"),
    ("Cosine", {"lr": 1, "lr_min": 2}, "lr_min", "2"),
    # models
    ("linear_regression", {"noise_std": -1}, "noise_std", "-1"),
    ("huber_tanh", {"threshold": 0}, "threshold", "0"),
    ("softmax_cross_entropy", {"n_classes": 1}, "n_classes", "1"),
    ("models.get", {"model": "foo"}, "model", "foo"),
    ("custom", {"teacher": None, "k": 0}, "k", "0"),
    ("custom", {"loss": lambda r, y: np.zeros(3)}, "loss", "(3,)"),
    ("custom", {"grad": lambda r, y: np.zeros(2)}, "grad", "(2,)"),
    ("custom", {"teacher": lambda rs, eps: np.zeros(3)}, "teacher", "(3,)"),
]


@pytest.mark.parametrize("entry,kwargs,name,value", CASES,
                         ids=[f"{e}-{n}={v}"[:80] for e, _, n, v in CASES])
def test_bad_input_is_rejected_with_name_and_value(entry, kwargs, name, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(errors.ParameterError) as info:
            ENTRY_POINTS[entry](**kwargs)
    msg = str(info.value)
    assert name in msg and value in msg, msg
    assert isinstance(info.value, ValueError)


def test_every_entry_point_runs_with_its_defaults():
    """The base calls are good input: a row fails for its own keywords, not the base's."""
    slow = {"dmft.compare", "onepass.compare", "dmft.sweep", "dmft.solve"}  # exercised elsewhere at this size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry, call in ENTRY_POINTS.items():
            if entry in ("TimeDependent", "StepDecay", "Cosine", "models.get", "ZeroOne", "Binned", "Constant",
                         "AdaGradNorm", "PowerLaw",
                         "linear_regression", "huber_tanh", "softmax_cross_entropy", "GaussHermite",
                         "QuasiMonteCarlo", "binary_mixture", "teacher_student", "multiclass_mixture"):
                continue  # constructors: their defaults are used throughout the suite
            if entry not in slow:
                call()


def test_every_public_entry_point_is_catalogued():
    """A new public function of ``dmft`` or ``onepass`` needs rows here."""
    public = {f"{mod.__name__}.{name}" for mod in (dmft, onepass) for name, obj in vars(mod).items()
              if inspect.isfunction(obj) and not name.startswith("_")}
    assert public <= set(ENTRY_POINTS), sorted(public - set(ENTRY_POINTS))
    covered = {entry for entry, *_ in CASES}
    assert set(ENTRY_POINTS) <= covered, sorted(set(ENTRY_POINTS) - covered)


# ---------------------------------------------------------------- command lines
def _no_computation(*args, **kwargs):
    raise AssertionError("the computation started before the bad argument was reported")


@pytest.mark.parametrize("argv,name", [
    (["compare", "--lr", "0"], "lr"),
    (["compare", "--dynamics", "adam"], "dynamics"),
    (["compare", "--out", "{file}"], "--out"),  # failed only after the whole computation
    (["sweep", "--out", "{file}"], "--out"),
    (["sweep", "--scheduler", "bogus", "--out", "{dir}"], "--scheduler"),  # printed a traceback
])
def test_dmft_command_line_rejects_bad_arguments_before_computing(argv, name, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = [a.format(file=afile, dir=tmp_path / "out") for a in argv]
    if name.startswith("--"):  # checked by the command line itself, before compare or sweep runs
        # the command imports its functions when it runs: replace them where it finds them
        monkeypatch.setattr(importlib.import_module("dmft.multipass._compare"), "compare", _no_computation)
        monkeypatch.setattr(importlib.import_module("dmft.sweep"), "sweep", _no_computation)
    assert cli.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert name in err and "error" in err and "Traceback" not in err


def test_onepass_command_line_rejects_an_output_file_before_computing(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    monkeypatch.setattr(importlib.import_module("onepass._compare"), "compare", _no_computation)
    assert onepass_cli.main(["run", "--out", str(afile), "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


# ---------------------------------------------------------------- not an error: an unknown standard error
def test_one_simulation_seed_has_an_unknown_standard_error():
    """One seed has no spread: its standard error is NaN (it was reported as 0)."""
    ds = dmft.compare(LIN, dynamics="gf", lr=0.5, t_max=0.2, n_time=2, d=20, n_seeds=1, n_paths=16, progress=False)
    assert np.isnan(ds.test_loss_sem.sel(source="simulation")).all()
    assert np.isfinite(ds.test_loss_sem.sel(source="theory")).all()
    ds = onepass.compare(LIN, TS, n_seeds=1, progress=False, **ONE)
    assert np.isnan(ds.risk_sem.sel(source="simulation")).all()


# ---------------------------------------------------------------- sweep seeds and schedulers
def test_sweep_seed_sequence_is_used_as_numpy_does():
    """``seed=SeedSequence(1)`` passed the check and then raised a TypeError; it now gives the
    numbers of ``seed=1`` (as ``numpy.random.default_rng`` does), a spawned child others."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = dmft.sweep(_toy, {"lr": [0.5]}, seed=1, progress=False)
        ss = dmft.sweep(_toy, {"lr": [0.5]}, seed=np.random.SeedSequence(1), progress=False)
        child = dmft.sweep(_toy, {"lr": [0.5]}, seed=np.random.SeedSequence(1).spawn(1)[0], progress=False)
    assert ss.point_seed.values.tolist() == one.point_seed.values.tolist()
    np.testing.assert_array_equal(ss.test_loss.values, one.test_loss.values)
    assert ss.attrs["sweep_seed"] == 1 and child.point_seed.values[0] != one.point_seed.values[0]
    assert '"spawn_key": [0]' in child.attrs["sweep_seed"]


def test_sweep_unreachable_scheduler_is_named_before_any_point(tmp_path):
    """A scheduler address where nothing answers gave dask's raw OSError."""
    pytest.importorskip("distributed")
    import dask
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(errors.ParameterError, match="client='tcp://127.0.0.1:1'.*scheduler"):
            dmft.sweep(_no_computation, {"lr": [0.5]}, client="tcp://127.0.0.1:1", out=tmp_path, progress=False)
    assert not list((tmp_path / "points").glob("*.nc"))
