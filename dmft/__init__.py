"""Exact high-dimensional dynamics of multi-pass SGD, SME and gradient flow (DMFT)."""
__version__ = "0.1.0"

from . import errors, expectation, models, output  # noqa: E402
from .errors import DivergenceError, ParameterError  # noqa: E402
from .models import Model  # noqa: E402
from .simulate import simulate  # noqa: E402
from .solve import solve  # noqa: E402

__all__ = [
    "Model", "ParameterError", "DivergenceError", "models", "expectation", "output", "errors",
    "simulate", "solve",
]
from .compare import compare  # noqa: E402
from .sweep import sweep  # noqa: E402
from . import diagnostics  # noqa: E402,F401
