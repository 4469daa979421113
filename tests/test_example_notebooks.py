"""The example notebooks of docs/notebooks/ run from top to bottom in a Jupyter kernel
(nbclient, the inline matplotlib backend) in an empty folder: every code cell runs without
error and the figures appear as PNG outputs. The committed notebooks carry the outputs of
such a run (the docs site shows them); ``python tests/test_example_notebooks.py``
re-executes them and writes the outputs back.
"""
import os
import sys
import tempfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
#: figures each notebook draws (one PNG output each)
FIGURES = {"sgd_sme_gf": 2, "custom_model": 1, "onepass_power_law": 1, "sweep_dask": 1}


def execute(path: Path, cwd: Path):
    """The notebook at ``path`` executed in a fresh kernel whose working folder is ``cwd``."""
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "MPLBACKEND")}
    # the kernel inherits this environment: the worktree's packages first, and no MPLBACKEND,
    # so that the kernel picks its inline backend as in Jupyter
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ.pop("MPLBACKEND", None)
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _pngs(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in _code_cells(nb) for out in c.outputs)


def test_every_notebook_is_listed():
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws_its_figures(path, tmp_path):
    nb = execute(path, tmp_path)
    cells = _code_cells(nb)
    # nbclient raises CellExecutionError on an error; in addition each cell ran, in order
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    assert not [out for c in cells for out in c.outputs if out.output_type == "error"]
    assert _pngs(nb) == FIGURES[path.stem]
    # bars are off: nothing on stderr (warnings, carriage-return bars)
    assert not [out.text for c in cells for out in c.outputs if out.get("name") == "stderr"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_carries_its_outputs(path):
    # the docs site renders the committed notebooks as they are (no execution at build time)
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    assert all(c.execution_count is not None for c in cells), "run python tests/test_example_notebooks.py"
    assert _pngs(nb) == FIGURES[path.stem]


if __name__ == "__main__":  # refresh the committed outputs (files the notebooks write go to a temporary folder)
    for notebook in sys.argv[1:] or NOTEBOOKS:
        notebook = Path(notebook)
        with tempfile.TemporaryDirectory() as folder:
            executed = execute(notebook, Path(folder))
        for cell in _code_cells(executed):
            cell.metadata.pop("execution", None)
        nbformat.write(executed, notebook)
        print("executed", notebook)
