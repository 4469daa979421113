"""Notebook-friendliness: ``dmft.plotting`` is reachable from ``import dmft`` and leaves the
matplotlib backend alone (figures show inline); one switch for every progress bar; no
TqdmWarning without ipywidgets; ``import dmft`` is cheap."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dmft
import onepass
from dmft import _progress, models

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MPLBACKEND", "SGD_DYNAMICS_PROGRESS", "TQDM_DISABLE")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")]))
    environment.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=600)


#: a stand-in for matplotlib-inline (used when it is installed): Agg canvases, and a
#: ``show`` that reports each open figure as the notebook would display it
_FAKE_INLINE = '''
import json
from matplotlib._pylab_helpers import Gcf
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas

def show(block=None):
    shown = []
    for manager in Gcf.get_all_fig_managers():
        fig = manager.canvas.figure
        fig.canvas.draw()
        shown.append({"lines": sum(len(ax.lines) for ax in fig.axes), "pixels": fig.canvas.get_width_height()})
    print("SHOWN " + json.dumps(shown))
    Gcf.destroy_all()
'''

#: notebook cells: import, a figure from a Dataset (no computation), plt.show
_CELLS = '''
import matplotlib
before = matplotlib.get_backend()
import dmft                                   # cell 1
fig = dmft.plotting.compare(ds)               # cell 2 (dmft.plotting reached from import dmft)
import matplotlib.pyplot as plt
print("BACKENDS", before, matplotlib.get_backend(), type(fig.canvas).__module__)
plt.show()                                    # the inline backend displays the figure
'''

_DATASET = '''
import numpy as np, xarray as xr
t = np.linspace(0, 1, 5)
ds = xr.Dataset({"test_loss": (("source", "time"), np.vstack([np.exp(-t), np.exp(-t) + 0.01])),
                 "test_loss_sem": (("source", "time"), np.full((2, 5), 0.01))},
                coords={"source": ["theory", "simulation"], "time": t})
'''


def test_a_figure_shows_inline_after_import_dmft_plotting(tmp_path):
    if importlib.util.find_spec("matplotlib_inline") is not None:
        backend = "module://matplotlib_inline.backend_inline"
    else:
        (tmp_path / "fake_inline.py").write_text(_FAKE_INLINE)
        backend = "module://fake_inline"
    done = _run(_DATASET + _CELLS, tmp_path, MPLBACKEND=backend)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    before, after, canvas = next(l for l in lines if l.startswith("BACKENDS")).split()[1:]
    assert before == after == backend and canvas.endswith("backend_agg")
    if backend == "module://fake_inline":
        shown = json.loads(next(l for l in lines if l.startswith("SHOWN"))[6:])
        assert len(shown) == 1 and shown[0]["lines"] == 2 and min(shown[0]["pixels"]) > 100


def test_importing_plotting_keeps_a_chosen_backend(tmp_path):
    # the user picked svg before importing the library (Agg would be a switch)
    done = _run("import matplotlib; matplotlib.use('svg'); import dmft.plotting; print(matplotlib.get_backend())",
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"


def test_import_dmft_is_cheap(tmp_path):
    # numba, scipy, xarray, matplotlib and dask load when a function needs them, not at import
    heavy = ["numba", "scipy", "xarray", "matplotlib", "dask", "tqdm"]
    done = _run(f"import sys, dmft, onepass, dmft.multipass.cli, onepass.cli; print([m for m in {heavy!r} if m in sys.modules])",
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_submodule_import_keeps_the_functions(tmp_path):
    # the modules behind the public functions imported first (dmft.sweep is also a module), then
    # the packages' functions
    done = _run("import dmft.sweep, dmft.multipass._solve, dmft.multipass._compare, onepass._simulate, inspect; "
                "print(all(inspect.isfunction(f) for f in (dmft.solve, dmft.simulate, dmft.compare, dmft.sweep, "
                "onepass.simulate, onepass.compare, onepass.solve)))", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


# ---------------------------------------------------------------- progress bars
_NOTEBOOK_WITHOUT_IPYWIDGETS = '''
import sys, types, warnings
# what tqdm.auto sees in a Jupyter kernel: ipykernel's shell module and IPython's get_ipython
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: types.SimpleNamespace()
sys.modules["IPython"] = ipython
warnings.simplefilter("always")  # printed to stderr, as Jupyter shows it
'''


@pytest.mark.skipif(importlib.util.find_spec("ipywidgets") is not None, reason="ipywidgets installed: no warning")
def test_no_tqdm_warning_in_a_notebook_without_ipywidgets(tmp_path):
    # the set-up does make tqdm.auto warn (else this test could not fail) ...
    done = _run(_NOTEBOOK_WITHOUT_IPYWIDGETS + "import tqdm.auto", tmp_path)
    assert done.returncode == 0 and "TqdmWarning" in done.stderr
    # ... but importing the library and drawing a bar does not
    done = _run(_NOTEBOOK_WITHOUT_IPYWIDGETS + '''
import dmft, onepass
from dmft._progress import progress_bar, enabled
assert enabled()  # a notebook: bars on
with progress_bar(True, total=2, desc="cell") as bar:
    bar.update(2)
print("ok")
''', tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok" and "cell" in done.stderr and "Warning" not in done.stderr


_ONEPASS_SOLVE = ("import onepass; "
                  "onepass.solve('linear_regression', onepass.data.teacher_student('identity', d=20), t_max=0.5, "
                  "n_time=3)")


def test_no_bars_into_a_pipe_unless_switched_on(tmp_path):
    quiet = _run(_ONEPASS_SOLVE, tmp_path)  # stderr is a pipe: neither a terminal nor a notebook
    assert quiet.returncode == 0, quiet.stderr
    assert "onepass.solve" not in quiet.stderr
    loud = _run(_ONEPASS_SOLVE, tmp_path, SGD_DYNAMICS_PROGRESS="1")  # forced on: the bar goes to the log
    assert loud.returncode == 0 and "onepass.solve" in loud.stderr


@pytest.fixture
def switch(monkeypatch):
    """The switch and its environment variables reset around a test."""
    for name in ("SGD_DYNAMICS_PROGRESS", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    yield
    dmft.set_progress(None)


def test_switch_precedence(switch, monkeypatch):
    monkeypatch.setattr(_progress, "_interactive", lambda: True)  # a terminal
    assert _progress.enabled() and not _progress.enabled(False)
    monkeypatch.setenv("SGD_DYNAMICS_PROGRESS", "0")
    assert not _progress.enabled()
    dmft.set_progress(True)  # the function beats the environment variable
    assert _progress.enabled()
    monkeypatch.setenv("TQDM_DISABLE", "1")  # ... and TQDM_DISABLE beats both
    assert not _progress.enabled()
    monkeypatch.setattr(_progress, "_interactive", lambda: False)
    monkeypatch.delenv("TQDM_DISABLE")
    dmft.set_progress(None)
    monkeypatch.setenv("SGD_DYNAMICS_PROGRESS", "on")
    assert _progress.enabled()
    monkeypatch.delenv("SGD_DYNAMICS_PROGRESS")
    assert not _progress.enabled()
    assert onepass.set_progress is dmft.set_progress


def test_bad_switch_values_are_refused(switch, monkeypatch):
    with pytest.raises(dmft.ParameterError, match="enabled"):
        dmft.set_progress("yes")
    monkeypatch.setenv("SGD_DYNAMICS_PROGRESS", "maybe")
    with pytest.raises(dmft.ParameterError, match="SGD_DYNAMICS_PROGRESS"):
        _progress.enabled()


LIN = models.linear_regression(0.5)
_TEACHER = onepass.data.teacher_student("identity", d=20)
#: each entry point on a tiny problem, and the name its bar shows
_ENTRY_POINTS = {
    "dmft.solve": lambda: dmft.solve(LIN, dynamics="gf", lr=0.5, t_max=0.2, n_time=2, n_paths=16),
    "dmft.simulate": lambda: dmft.simulate(LIN, dynamics="gf", lr=0.5, t_max=0.2, n_time=2, d=10, n_seeds=1),
    "dmft.compare": lambda: dmft.compare(LIN, dynamics="gf", lr=0.5, t_max=0.2, n_time=2, d=10, n_seeds=2,
                                         n_paths=16),
    "dmft.sweep": lambda: dmft.sweep(dmft.solve, {"lr": [0.5]}, fixed=dict(model=LIN, dynamics="gf", t_max=0.2,
                                                                          n_time=2, n_paths=16)),
    "onepass.solve": lambda: onepass.solve(LIN, _TEACHER, t_max=0.5, n_time=2),
    "onepass.simulate": lambda: onepass.simulate(LIN, _TEACHER, t_max=0.5, n_time=2, n_seeds=1, n_test=10),
    "onepass.compare": lambda: onepass.compare(LIN, _TEACHER, t_max=0.5, n_time=2, n_seeds=2, n_test=10),
}


@pytest.mark.parametrize("name", list(_ENTRY_POINTS))
def test_every_entry_point_follows_the_switch(name, switch, capsys):
    dmft.set_progress(True)
    _ENTRY_POINTS[name]()
    assert name in capsys.readouterr().err
    dmft.set_progress(False)
    _ENTRY_POINTS[name]()
    assert capsys.readouterr().err == ""
