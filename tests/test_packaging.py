"""Packaging: licence file, citation, metadata, one version, type marker, complete ``__all__``."""
import importlib
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import dmft
import dmft.multipass
import onepass

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_licence_file_is_the_licence_of_the_metadata():
    project = _pyproject()["project"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]


def test_citation_file():
    text = (ROOT / "CITATION.cff").read_text()
    for key in ("cff-version:", "title:", "authors:", "license: MIT", "type: software"):
        assert key in text
    assert "version:" not in text.replace("cff-version:", "")  # the version has one source


def test_one_source_for_the_version():
    pyproject = _pyproject()
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dmft.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", dmft.__version__)
    assert onepass.__version__ == dmft.__version__
    # no other file states it
    for path in [*ROOT.glob("dmft/**/*.py"), *ROOT.glob("onepass/*.py")]:
        if path.name != "__init__.py" or path.parent.name != "dmft":
            assert f'"{dmft.__version__}"' not in path.read_text(), path


def test_classifiers_and_scripts():
    project = _pyproject()["project"]
    assert "Typing :: Typed" in project["classifiers"]
    assert any(c.startswith("Intended Audience :: Science/Research") for c in project["classifiers"])
    assert project["scripts"] == {"onepass": "onepass.cli:main", "dmft": "dmft.multipass.cli:main"}


def test_every_package_folder_is_installed():
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("*/**/__init__.py")
               if p.parts[len(ROOT.parts)] in ("dmft", "onepass")}
    assert folders == set(_pyproject()["tool"]["setuptools"]["packages"])


@pytest.mark.parametrize("package", ["dmft", "onepass"])
def test_type_marker_ships(package):
    assert (ROOT / package / "py.typed").exists()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"][package]


#: modules reachable as package attributes that are not part of the API (the DMFT method's
#: subpackage is reached through its functions, ``dmft.solve``, ...)
_NOT_API = {"dmft": {"multipass"}, "dmft.multipass": {"cli"}, "onepass": {"cli", "theory"}}


@pytest.mark.parametrize("package", [dmft, dmft.multipass, onepass], ids=lambda p: p.__name__)
def test_all_is_complete(package):
    name = package.__name__
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{name}.{info.name}")  # every submodule loaded: all attributes set
    public = {n for n in vars(package) if not n.startswith("_")} - _NOT_API[name]
    assert public <= set(package.__all__)
    namespace = {}
    exec(f"from {name} import *", namespace)
    assert set(package.__all__) <= set(namespace) | {"__version__"}
    assert dmft.plotting.compare is importlib.import_module("dmft.plotting").compare
