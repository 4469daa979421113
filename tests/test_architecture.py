"""The shape of the code (docs/architecture.md): every module imports on its own, and imports
go one way -- the shared core (``dmft`` outside ``dmft.multipass``) imports neither method,
the two methods (``dmft.multipass``, ``onepass``) do not import each other, and no module
imports, directly or through others, a module that imports it back.

The direction is read from the source (``ast``): every ``import`` statement counts, at module
level or inside a function, except the block ``if TYPE_CHECKING:`` (what type checkers see,
never executed). The package's lazy registries name the method's modules as strings
(``"dmft.multipass._solve"``): loaded on first use, they are not imports of the core. The
fresh-process checks confirm at run time what the source says. The tests have a shape too:
each is of one kind (tests/conftest.py), and every comparison of two runs is a validation test.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dmft", "onepass")
#: the layers: a module belongs to the first whose prefix it has
LAYERS = (("dmft.multipass", "multipass"), ("dmft", "core"), ("onepass", "onepass"))
#: layer -> the layers it must not import
FORBIDDEN = {"core": {"multipass", "onepass"}, "multipass": {"onepass"}, "onepass": {"multipass"}}
#: what the fresh processes load before forking one child per module (see _import_each)
THIRD_PARTY = ("numpy", "numba", "scipy.special", "scipy.stats", "scipy.stats.qmc", "scipy.integrate", "xarray",
               "matplotlib", "matplotlib.pyplot", "tqdm", "tqdm.auto")


# ---------------------------------------------------------------- the source's imports
def module_names(root: Path = ROOT) -> dict:
    """``{module name: path}`` of every module of the packages, sub-packages included."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer(module: str) -> str | None:
    for prefix, name in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return name
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, known: set) -> set:
    """The project modules ``module`` imports (``from P import x`` counts ``P.x`` when that is
    a module, else ``P``); third-party modules are left out."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:  # ``import a.b.c``: the deepest project module named
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> dict:
    """``{module: set of project modules it imports}``, without a module's own parent
    packages (the import system runs those first in any case)."""
    modules = module_names(root)
    graph = {}
    for name, path in modules.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = imports_of(name, path, set(modules)) - ancestors - {name}
    return graph


def layer_violations(graph: dict) -> list:
    return sorted(f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, targets in graph.items() for b in targets
                  if layer(b) in FORBIDDEN.get(layer(a), ()))


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


# ---------------------------------------------------------------- the checks on synthetic graphs
def test_the_checks_find_what_they_look_for(tmp_path):
    for rel, text in {
        "dmft/__init__.py": "import typing\nif typing.TYPE_CHECKING:\n    from .multipass import solve\n",
        "dmft/a.py": "def f():\n    from onepass import b\n",             # core -> method, inside a function
        "dmft/c.py": "from . import d\n", "dmft/d.py": "from .c import x\n",   # a cycle
        "dmft/multipass/__init__.py": "", "dmft/multipass/e.py": "from ..a import f\nimport onepass.b\n",
        "onepass/__init__.py": "", "onepass/b.py": "from dmft.multipass import e\nimport numpy\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["dmft"] == set()  # the TYPE_CHECKING block is no import
    assert graph["dmft.multipass.e"] == {"dmft.a", "onepass.b"} and graph["onepass.b"] == {"dmft.multipass.e"}
    assert layer_violations(graph) == [
        "dmft.a (core) imports onepass.b (onepass)",
        "dmft.multipass.e (multipass) imports onepass.b (onepass)",
        "onepass.b (onepass) imports dmft.multipass.e (multipass)"]
    assert cycles(graph) == [["dmft.a", "dmft.multipass.e", "onepass.b"], ["dmft.c", "dmft.d"]]


# ---------------------------------------------------------------- the repository's imports
GRAPH = import_graph()


def test_every_module_has_a_layer():
    assert len(GRAPH) >= 30
    assert all(layer(m) for m in GRAPH)
    # the layers are all populated: a renamed folder would otherwise empty a rule silently
    assert {layer(m) for m in GRAPH} == {"core", "multipass", "onepass"}


def test_imports_go_from_the_methods_to_the_core():
    assert layer_violations(GRAPH) == []
    # the methods do build on the core (the graph is read, not empty)
    assert "dmft.models" in GRAPH["dmft.multipass._solve"] and "dmft.data" in GRAPH["onepass.theory"]


def test_no_import_cycles():
    assert cycles(GRAPH) == []


# ---------------------------------------------------------------- each module alone, at run time
_IMPORT_EACH = r"""
import importlib, json, os, sys, traceback
for lib in sys.argv[1].split(","):
    importlib.import_module(lib)
assert not [m for m in sys.modules if m.split(".")[0] in ("dmft", "onepass")], "a library imported the project"
report = {}
for name in sys.argv[2:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: this one module, then what it pulled in
        os.close(r)
        try:
            importlib.import_module(name)
            text = json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("dmft", "onepass")))
        except BaseException:
            text = "FAILED " + traceback.format_exc()
        with os.fdopen(w, "w") as out:
            out.write(text)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as inp:
        text = inp.read()
    os.waitpid(pid, 0)
    report[name] = text if text.startswith("FAILED") else json.loads(text)
print(json.dumps(report))
"""


def _import_each(names, preload=THIRD_PARTY) -> dict:
    """``{module: sorted project modules loaded by importing it alone, or 'FAILED <traceback>'}``.

    One fresh interpreter loads the third-party libraries ``preload``, then forks a child
    per module: each child starts with no project module loaded and imports one. (What a
    shared preload can hide -- a module using a library's submodule it does not import --
    the slow test below checks with one interpreter per module.)
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, ",".join(preload), *names], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child per module")
def test_every_module_imports_alone_and_the_core_loads_no_method():
    report = _import_each(sorted(GRAPH))
    failed = {name: text for name, text in report.items() if isinstance(text, str)}
    assert not failed, "\n\n".join(f"{name}:\n{text}" for name, text in failed.items())
    assert set(report) == set(GRAPH)
    for name, loaded in report.items():
        if layer(name) == "core":
            assert not [m for m in loaded if layer(m) in FORBIDDEN["core"]], (name, loaded)
    assert "dmft.multipass._solve" in report["dmft.multipass._compare"]  # the children do report their imports


@pytest.mark.slow
def test_every_module_imports_alone_in_its_own_interpreter():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    failed = {}
    for name in sorted(GRAPH):
        done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        if done.returncode:
            failed[name] = done.stderr[-2000:]
    assert not failed, "\n\n".join(f"{name}:\n{text}" for name, text in failed.items())


# ---------------------------------------------------------------- the tests' kinds
def _mark(decorator) -> str | None:
    """``kind`` of a decorator ``@pytest.mark.kind``, else None."""
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark":
        return node.attr
    return None


def _test_functions():
    """``(file name, test name, its own kind marks, whether it compares two runs)`` of every test."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                calls = {getattr(c.func, "id", getattr(c.func, "attr", None)) for c in ast.walk(node)
                         if isinstance(c, ast.Call)}
                yield path.name, node.name, {_mark(d) for d in node.decorator_list} - {None}, \
                    bool(calls & {"assert_agree", "_agree"})


def test_every_test_file_has_a_kind_and_comparisons_are_validation():
    from conftest import FILE_KIND, KINDS

    tests = list(_test_functions())
    assert {name for name, *_ in tests} == set(FILE_KIND)  # no file without a kind, no stale entry
    comparing = []
    for file, name, marks, compares in tests:
        kinds = marks & set(KINDS) or {FILE_KIND[file]}
        assert len(kinds) == 1, (file, name, kinds)
        if compares and file != "test_assert_agree.py":  # that file tests the harness itself
            comparing.append(name)
            assert kinds == {"validation"}, f"{file}::{name} compares two runs: mark it validation"
    assert len(comparing) >= 15


# ---------------------------------------------------------------- one configuration module
def config_violations(root: Path = ROOT) -> list:
    """``(file, line, what)`` for every numba fastmath flag not spelled through
    ``dmft._config`` (``fastmath=True``/``False``, a literal set or tuple) and every numeric
    literal at or above 1e8 (a blow-up limit's size) outside ``dmft/_config.py``."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "_config.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.keyword) and node.arg == "fastmath" and isinstance(
                        node.value, (ast.Constant, ast.Set, ast.Tuple, ast.Dict)):
                    found.append((path.relative_to(root).as_posix(), node.value.lineno, "fastmath literal"))
                if isinstance(node, ast.Constant) and isinstance(node.value, float) and abs(node.value) >= 1e8:
                    found.append((path.relative_to(root).as_posix(), node.lineno, f"literal {node.value:g}"))
    return found


def test_config_check_finds_what_it_looks_for(tmp_path):
    pkg = tmp_path / "dmft"
    pkg.mkdir()
    (pkg / "a.py").write_text("from numba import njit\n@njit(fastmath=True)\ndef f(x):\n    return x\nLIMIT = 1e10\n")
    (pkg / "_config.py").write_text("BLOWUP_NORM = 1e12\n")
    assert sorted(w for _, _, w in config_violations(tmp_path)) == ["fastmath literal", "literal 1e+10"]


def test_thresholds_and_numba_flags_come_from_one_module():
    assert config_violations() == []
