"""The multi-pass DMFT method: the solver, the finite-d simulators and their comparison.

Built on the shared core (:mod:`dmft.models`, :mod:`dmft.expectation`, :mod:`dmft.output`,
...); nothing in the core imports it. Its modules are private; the public functions are
``dmft.solve``, ``dmft.simulate`` and ``dmft.compare`` (the same objects as
``dmft.multipass.solve``, ...) and :func:`linear_sgd_moments`, the exact sampling-noise
moments of SGD on the linear model (a reference for the simulator), and the solver's drivers
:class:`Poisson`, :class:`Gaussian`, :class:`Deterministic` (``dmft.solve(..., driver=...)``). ``dmft.multipass.cli``
is the ``dmft`` command. Names load on first use.
"""
import typing as _typing

from .._lazy import install as _install

if _typing.TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from ._compare import compare
    from ._simulate import linear_sgd_moments, simulate
    from ._solve import Deterministic, Gaussian, Poisson, solve

#: public name -> (module, attribute)
_PUBLIC = {
    "solve": ("dmft.multipass._solve", "solve"),
    "simulate": ("dmft.multipass._simulate", "simulate"),
    "compare": ("dmft.multipass._compare", "compare"),
    "linear_sgd_moments": ("dmft.multipass._simulate", "linear_sgd_moments"),
    "Poisson": ("dmft.multipass._solve", "Poisson"),
    "Gaussian": ("dmft.multipass._solve", "Gaussian"),
    "Deterministic": ("dmft.multipass._solve", "Deterministic"),
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = _install(__name__, _PUBLIC)
