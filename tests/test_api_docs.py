"""docs/api.md documents every public object, under its public name, with a docstring in
which no Sphinx role is left (docs/_griffe_roles.py turns them into links). The rendered
site is checked for roles by .ci/run after ``mkdocs build``."""
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

import dmft
import dmft.multipass
import onepass

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()
#: ``::: target`` and its indented option lines
DIRECTIVE = re.compile(r"^::: (\S+)\n((?:    .*\n)*)", re.M)
ENTRIES = {m.group(1): m.group(2) for m in DIRECTIVE.finditer(API)}
PACKAGES = {"dmft": dmft, "dmft.multipass": dmft.multipass, "onepass": onepass}
#: modules whose every ``__all__`` member the reference shows (a ``::: module`` entry renders ``__all__``)
PUBLIC_MODULES = ["dmft.models", "dmft.data", "dmft.schedules", "dmft.grids", "dmft.expectation", "dmft.output",
                  "dmft.errors", "dmft.plotting", "dmft.diagnostics", "dmft.testing"]


def _canonical(obj) -> str:
    return obj.__name__ if inspect.ismodule(obj) else f"{obj.__module__}.{obj.__qualname__}"


def _documented() -> set:
    """Canonical paths of everything api.md renders."""
    paths = set()
    for target in ENTRIES:
        paths.add(target)
        try:
            module = importlib.import_module(target)
        except ImportError:  # a function or a class
            continue
        paths.update(f"{target}.{name}" for name in module.__all__)
    return paths


def _public_objects():
    """(public name, canonical path) of every name of the packages' and public modules' ``__all__``."""
    for package_name, package in PACKAGES.items():
        for name in package.__all__:
            if name != "__version__":
                yield f"{package_name}.{name}", _canonical(getattr(package, name))
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            canonical = _canonical(obj) if inspect.isclass(obj) or inspect.isfunction(obj) else f"{module_name}.{name}"
            yield f"{module_name}.{name}", canonical
    for name in importlib.import_module("dmft.sweep").__all__:
        yield f"dmft.sweep.{name}", f"dmft.sweep.{name}"


PUBLIC = dict(_public_objects())


def test_the_reference_has_entries():
    assert len(ENTRIES) >= 15 and len(PUBLIC) >= 80


@pytest.mark.parametrize("public", sorted(PUBLIC))
def test_every_public_object_is_documented(public):
    assert PUBLIC[public] in _documented(), f"{public} ({PUBLIC[public]}) is not in docs/api.md"


def test_lazily_loaded_functions_are_headed_by_their_public_name():
    # ``::: dmft.multipass._solve.solve`` would be headed by that internal path; the entry names it dmft.solve
    names = {}  # target -> its public names (dmft.set_progress is also onepass.set_progress)
    for package_name, package in PACKAGES.items():
        for name, (module, attribute) in package._PUBLIC.items():
            if attribute is not None:
                names.setdefault(f"{module}.{attribute}", set()).add(f"{package_name}.{name}")
    headed = [target for target in names if target in ENTRIES]
    assert len(headed) >= 7
    for target in headed:
        heading = re.search(r"heading: (\S+)\n", ENTRIES[target])
        assert heading and heading.group(1) in names[target], target


def test_every_documented_object_has_a_docstring_without_roles():
    griffe = pytest.importorskip("griffe")  # the docs extra
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from _griffe_roles import ROLE, SphinxRoles
    finally:
        sys.path.pop(0)
    loader = griffe.GriffeLoader(search_paths=[str(ROOT)], extensions=griffe.load_extensions(SphinxRoles()))
    for package in PACKAGES:
        loader.load(package)
    loader.resolve_aliases()
    seen = 0
    for path in sorted(set(PUBLIC.values())):
        obj = loader.modules_collection.get_member(path)
        assert obj.docstring is not None and obj.docstring.value.strip(), f"{path} has no docstring"
        for member in [obj, *(m for m in obj.members.values() if not m.is_alias)]:
            if member.docstring is not None:
                assert not ROLE.search(member.docstring.value), f"a Sphinx role is left in {member.path}"
                seen += ":`" in member.docstring.value
    # roles were there to convert (the source keeps them), and they became links
    assert seen == 0
    assert '<autoref identifier="dmft.multipass._solve.solve" optional><code>dmft.solve</code></autoref>' in \
        loader.modules_collection.get_member("dmft.multipass._compare.compare").docstring.value
