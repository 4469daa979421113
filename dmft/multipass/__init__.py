"""The multi-pass DMFT method: the solver, the finite-d simulators and their comparison.

Built on the shared core (:mod:`dmft.models`, :mod:`dmft.expectation`, :mod:`dmft.output`,
...); nothing in the core imports it. Its modules are private; the public functions are
``dmft.solve``, ``dmft.simulate`` and ``dmft.compare`` (the same objects as
``dmft.multipass.solve``, ...) and :func:`linear_sgd_moments`, the exact sampling-noise
moments of SGD on the linear model (a reference for the simulator). ``dmft.multipass.cli``
is the ``dmft`` command. Names load on first use.
"""
import typing as _typing

from .._lazy import install as _install

if _typing.TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from ._compare import compare
    from ._simulate import linear_sgd_moments, simulate
    from ._solve import solve

#: public name -> (module, attribute)
_PUBLIC = {
    "solve": ("dmft.multipass._solve", "solve"),
    "simulate": ("dmft.multipass._simulate", "simulate"),
    "compare": ("dmft.multipass._compare", "compare"),
    "linear_sgd_moments": ("dmft.multipass._simulate", "linear_sgd_moments"),
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = _install(__name__, _PUBLIC)
