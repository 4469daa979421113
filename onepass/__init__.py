"""Exact dynamics of one-pass (online) SGD on Gaussian mixtures, with simulators.

``onepass.solve`` integrates the deterministic-equivalent ODEs (docs/onepass.md);
``onepass.simulate`` runs finite-d SGD or homogenized SGD with the same outputs;
``onepass.compare`` puts them side by side. Submodules load on first use.
"""
import typing as _typing

from dmft import __version__
from dmft._lazy import install as _install

if _typing.TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from dmft import data, models, schedules
    from dmft._progress import set_progress
    from dmft.data import Binned
    from dmft.schedules import AdaGradNorm, Constant, Cosine, StepDecay, TimeDependent

    from ._compare import compare
    from ._simulate import simulate
    from .theory import solve

#: public name -> (module, attribute); ``None``: the module itself
_PUBLIC = {
    "solve": ("onepass.theory", "solve"),
    "simulate": ("onepass._simulate", "simulate"),
    "compare": ("onepass._compare", "compare"),
    "set_progress": ("dmft._progress", "set_progress"),
    # the shared core's models, data descriptions and schedules
    "AdaGradNorm": ("dmft.schedules", "AdaGradNorm"),
    "Constant": ("dmft.schedules", "Constant"),
    "TimeDependent": ("dmft.schedules", "TimeDependent"),
    "StepDecay": ("dmft.schedules", "StepDecay"),
    "Cosine": ("dmft.schedules", "Cosine"),
    "Binned": ("dmft.data", "Binned"),
    "data": ("dmft.data", None),
    "schedules": ("dmft.schedules", None),
    "models": ("dmft.models", None),
}

__all__ = [*_PUBLIC, "__version__"]
__getattr__, __dir__ = _install(__name__, _PUBLIC)
