"""Exact dynamics of one-pass (online) SGD on Gaussian mixtures, with simulators.

``onepass.solve`` integrates the deterministic-equivalent ODEs (THEORY.md section 2);
``onepass.simulate`` runs finite-d SGD or homogenized SGD with the same outputs.
"""
from dmft import models  # noqa: F401  (shared model definitions)

from . import data
from .data import Binned
from .schedules import AdaGradNorm, Constant, TimeDependent
from .simulate import simulate
from .theory import solve

__all__ = ["solve", "simulate", "data", "models", "AdaGradNorm", "Constant", "TimeDependent", "Binned"]
from .compare import compare  # noqa: E402
