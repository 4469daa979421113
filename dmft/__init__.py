"""Exact high-dimensional dynamics of multi-pass SGD, SME and gradient flow (DMFT).

Submodules and functions load on first use (``import dmft`` is cheap; numba, scipy,
xarray and matplotlib are imported by the first function that needs them).
"""
__version__ = "0.1.0"

import typing as _typing  # noqa: E402

from ._lazy import install as _install  # noqa: E402

if _typing.TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from . import diagnostics, errors, expectation, models, output, plotting, testing
    from ._progress import set_progress
    from .compare import compare
    from .errors import DivergenceError, ParameterError
    from .models import Model
    from .simulate import simulate
    from .solve import solve
    from .sweep import sweep

#: public name -> (module, attribute); ``None``: the module itself
_PUBLIC = {
    "solve": ("dmft.solve", "solve"),
    "simulate": ("dmft.simulate", "simulate"),
    "compare": ("dmft.compare", "compare"),
    "sweep": ("dmft.sweep", "sweep"),
    "set_progress": ("dmft._progress", "set_progress"),
    "Model": ("dmft.models", "Model"),
    "ParameterError": ("dmft.errors", "ParameterError"),
    "DivergenceError": ("dmft.errors", "DivergenceError"),
    **{name: (f"dmft.{name}", None)
       for name in ("models", "expectation", "output", "errors", "plotting", "diagnostics", "testing")},
}

__all__ = [*_PUBLIC, "__version__"]
__getattr__, __dir__ = _install(__name__, _PUBLIC)
