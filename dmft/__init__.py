"""Exact high-dimensional dynamics of multi-pass SGD, SME and gradient flow (DMFT).

The package is the shared core (models, data descriptions, schedules, the Gaussian
expectation engine, the output schema, errors, sweeps, plotting, testing helpers) and
holds the DMFT method in :mod:`dmft.multipass`; ``onepass`` is the one-pass method built
on the same core (docs/architecture.md). ``dmft.solve``, ``dmft.simulate`` and
``dmft.compare`` are the DMFT method's functions.

Submodules and functions load on first use (``import dmft`` is cheap; numba, scipy,
xarray and matplotlib are imported by the first function that needs them).
"""
__version__ = "0.1.0"

import typing as _typing  # noqa: E402

from ._lazy import install as _install  # noqa: E402

if _typing.TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from . import data, diagnostics, errors, expectation, grids, models, output, plotting, schedules, testing
    from ._progress import set_progress
    from .errors import DivergenceError, ParameterError
    from .models import Model
    from .multipass import compare, simulate, solve
    from .sweep import sweep

#: public name -> (module, attribute); ``None``: the module itself. The DMFT method's entries
#: are names only: the core does not import :mod:`dmft.multipass` until they are used.
_PUBLIC = {
    "solve": ("dmft.multipass._solve", "solve"),
    "simulate": ("dmft.multipass._simulate", "simulate"),
    "compare": ("dmft.multipass._compare", "compare"),
    "sweep": ("dmft.sweep", "sweep"),
    "set_progress": ("dmft._progress", "set_progress"),
    "Model": ("dmft.models", "Model"),
    "ParameterError": ("dmft.errors", "ParameterError"),
    "DivergenceError": ("dmft.errors", "DivergenceError"),
    **{name: (f"dmft.{name}", None)
       for name in ("models", "data", "schedules", "grids", "expectation", "output", "errors", "plotting",
                    "diagnostics", "testing")},
}

__all__ = [*_PUBLIC, "__version__"]
__getattr__, __dir__ = _install(__name__, _PUBLIC)
