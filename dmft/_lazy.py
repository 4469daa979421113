"""Package attributes loaded on first use, so that ``import dmft`` (and ``dmft --help``)
does not import numba, scipy, xarray or matplotlib until a function needs them."""
from __future__ import annotations

import importlib
import sys
import types


class _Package(types.ModuleType):
    """A package whose function attributes keep their value when a same-named submodule loads.

    The import system sets ``dmft.solve = <module dmft.solve>`` when that submodule is
    first imported (by anyone); here that assignment stores the submodule's function
    instead, so ``dmft.solve`` is always the function (as with eager ``from .solve import solve``).
    """

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}" \
                and name in self.__dict__.get("_SHADOWED", ()):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __reduce__(self):
        # by reference, as cloudpickle sends plain modules (a dask worker imports its own copy)
        return importlib.import_module, (self.__name__,)


def install(package: str, attributes: dict) -> tuple:
    """Make ``package`` load ``attributes`` on first access; returns its ``__getattr__`` and ``__dir__``.

    ``attributes``: ``{name: (module, attribute)}``, the object ``module.attribute``, or
    ``{name: (module, None)}``, the module itself.
    """
    module = sys.modules[package]

    def __getattr__(name):
        if name not in attributes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where, attribute = attributes[name]
        value = importlib.import_module(where)
        if attribute is not None:
            value = getattr(value, attribute)
        module.__dict__[name] = value
        return value

    def __dir__():
        return sorted(set(module.__dict__) | set(attributes))

    module._SHADOWED = frozenset(name for name, (where, attribute) in attributes.items()
                                 if where == f"{package}.{name}" and attribute == name)
    module.__class__ = _Package
    return __getattr__, __dir__
