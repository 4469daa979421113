"""Every Python block of README.md and docs/*.md runs as written, on its own, in a fresh
process in an empty folder, and states its run time; every docstring example runs (doctest)."""
import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: the first line of a block: ``# about 10 s on two cores`` (or ``... 2 min ...``)
STATED = re.compile(r"\A#[^\n]*?\babout (\d+(?:\.\d+)?) (s|min)\b")
#: blocks stated to run longer than this are marked slow (a fast test takes seconds)
FAST_LIMIT_S = 15.0


def _blocks():
    for path in DOCUMENTS:
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            code = match.group(1)
            stated = STATED.match(code)
            seconds = None if stated is None else float(stated.group(1)) * (60 if stated.group(2) == "min" else 1)
            slow = seconds is not None and seconds > FAST_LIMIT_S
            yield pytest.param(code, seconds, id=f"{path.relative_to(ROOT)}[{i}]",
                               marks=[pytest.mark.slow] if slow else [])


def _environment(**extra) -> dict:
    """This interpreter's environment with the worktree's packages first, no display."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "SGD_DYNAMICS_PROGRESS": "0", **extra}


def test_the_documents_have_python_blocks():
    # the README's two examples and the quick start's: a broken pattern must not pass by finding none
    assert sum(1 for _ in _blocks()) >= 8


@pytest.mark.parametrize("code, seconds", list(_blocks()))
def test_python_block_runs_on_its_own(code, seconds, tmp_path):
    assert seconds is not None, "the block's first line must state its run time ('# about 10 s on two cores')"
    script = tmp_path / "block.py"  # a file, so that dask's workers can import it again
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_environment(), capture_output=True,
                          text=True, timeout=max(600, 20 * seconds))
    assert done.returncode == 0, done.stderr[-4000:]


#: the main public entries, each of which must show an example in its docstring
MAIN_ENTRIES = ("dmft.solve", "dmft.simulate", "dmft.compare", "dmft.sweep", "onepass.solve", "onepass.simulate",
                "onepass.compare", "dmft.models.custom", "dmft.expectation.gaussian_moments")


def _modules_with_examples():
    """``(module name, path)`` of every module of the packages (sub-packages too) with a ``>>>``."""
    for package in ("dmft", "onepass"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text():
                parts = path.relative_to(ROOT).with_suffix("").parts
                yield pytest.param(".".join(parts[:-1] if parts[-1] == "__init__" else parts), path,
                                   id=".".join(parts))


def test_docstring_examples_are_found():
    assert len(list(_modules_with_examples())) >= 9


@pytest.mark.parametrize("entry", MAIN_ENTRIES)
def test_main_entries_have_examples(entry):
    module, _, name = entry.rpartition(".")
    doc = getattr(importlib.import_module(module), name).__doc__ or ""
    assert "Examples\n    --------" in doc and ">>> " in doc, f"{entry} has no Examples section"


@pytest.mark.parametrize("name, path", list(_modules_with_examples()))
def test_docstring_examples_run(name, path):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    # every '>>>' line of the file is an example the finder reached (none hides in an object
    # doctest does not look into, e.g. a function defined under another module's name)
    prompts = len(re.findall(r"^\s*>>>", path.read_text(), re.M))
    assert sum(len(t.examples) for t in tests) == prompts, f"{name}: {prompts} '>>>' lines, not all collected"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted == prompts
