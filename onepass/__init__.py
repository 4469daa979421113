"""Exact dynamics of one-pass (online) SGD on Gaussian mixtures, with simulators.

``onepass.solve`` integrates the deterministic-equivalent ODEs (docs/onepass.md);
``onepass.simulate`` runs finite-d SGD or homogenized SGD with the same outputs;
``onepass.compare`` puts them side by side. Submodules load on first use.
"""
import typing as _typing

from dmft import __version__
from dmft._lazy import install as _install

if _typing.TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from dmft import models
    from dmft._progress import set_progress

    from . import data, schedules
    from .compare import compare
    from .data import Binned
    from .schedules import AdaGradNorm, Constant, TimeDependent
    from .simulate import simulate
    from .theory import solve

#: public name -> (module, attribute); ``None``: the module itself
_PUBLIC = {
    "solve": ("onepass.theory", "solve"),
    "simulate": ("onepass.simulate", "simulate"),
    "compare": ("onepass.compare", "compare"),
    "set_progress": ("dmft._progress", "set_progress"),
    "AdaGradNorm": ("onepass.schedules", "AdaGradNorm"),
    "Constant": ("onepass.schedules", "Constant"),
    "TimeDependent": ("onepass.schedules", "TimeDependent"),
    "Binned": ("onepass.data", "Binned"),
    "data": ("onepass.data", None),
    "schedules": ("onepass.schedules", None),
    "models": ("dmft.models", None),  # the model definitions shared with dmft
}

__all__ = [*_PUBLIC, "__version__"]
__getattr__, __dir__ = _install(__name__, _PUBLIC)
