"""Command-line pieces shared by the ``dmft`` and ``onepass`` commands: the ``--model``
and ``--out`` arguments, importing ``module:function`` options, help formatting and
writing figures.

numpy, numba, scipy, xarray and matplotlib are imported by the functions that need them,
not here: ``--help`` and ``--version`` stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

#: the built-in model names (``dmft.models.get``), listed in ``--help``
MODEL_NAMES = ("committee", "huber_tanh", "linear_regression", "logistic", "phase_retrieval", "relu",
               "smooth_hinge", "softmax_cross_entropy")

#: ``--model`` help: the choices (shared by ``dmft`` and ``onepass``)
MODEL_HELP = ("built-in model (" + ", ".join(MODEL_NAMES) + "; '-' for '_' also works), or "
              "module:function, a function of no arguments in an importable module (or a .py file "
              "in the current folder) that returns a dmft.models.Model")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends each option's default to its help
    (unless the help states it, or the default is None or an unset flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is None \
                or action.default is False or action.default == argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


def import_function(option: str, spec: str):
    """The function ``module:function`` of an option; the current folder is searched first
    for ``module`` (as with ``python -m``), so a ``.py`` file next to the command works.
    Raises ParameterError naming the option."""
    from . import errors

    module_name, _, function_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as e:
        raise errors.ParameterError(f"{option}={spec!r} is not allowed: cannot import {function_name!r} from "
                                    f"{module_name!r} ({e})") from None
    if not callable(function):
        raise errors.ParameterError(f"{option}={spec!r} is not allowed: {spec} is not a function")
    return function


def model_argument(spec: str):
    """``--model``: a built-in name (returned as it is), or the model returned by
    ``module:function`` called with no arguments (a function returning a
    :class:`dmft.models.Model`, e.g. built by ``dmft.models.custom``)."""
    from . import errors, models

    if ":" not in spec:
        if spec not in models._BY_NAME:
            raise errors.ParameterError(f"--model={spec!r} is not allowed: give one of {', '.join(MODEL_NAMES)} "
                                        "or module:function")
        return spec
    model = import_function("--model", spec)()
    if not isinstance(model, models.Model):
        raise errors.ParameterError(f"--model={spec!r} is not allowed: {spec}() returned {type(model).__name__}; "
                                    "it must return a dmft.models.Model (e.g. from dmft.models.custom)")
    return model


def file_backend() -> None:
    """Agg for matplotlib when there is no display to draw on (the commands only write files);
    otherwise, or with ``MPLBACKEND`` set, the user's backend is kept."""
    if "MPLBACKEND" in os.environ or not sys.platform.startswith("linux"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        import matplotlib

        matplotlib.use("Agg")


def save_figure(fig, path) -> None:
    """Write ``fig`` as a PNG and close it."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def output_folder(out: str) -> Path:
    """``--out`` as a writable folder (created), checked before any computation."""
    from . import errors

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise errors.ParameterError(f"--out={out!r} is not allowed: it names an existing file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise errors.ParameterError(f"--out={out!r} is not allowed: the folder cannot be created ({e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.ParameterError(f"--out={out!r} is not allowed: the folder is not writable")
    return path
