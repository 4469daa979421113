"""The progress bars of every entry point (``dmft.solve/simulate/compare/sweep``,
``onepass.solve/simulate/compare``), behind one switch.

A bar is shown when the call's ``progress`` is true and the switch allows it:

* :func:`set_progress` ``(True)`` / ``(False)`` for this process, else
* the environment variable ``SGD_DYNAMICS_PROGRESS`` (``0``/``false``/``off`` or
  ``1``/``true``/``on``), else
* automatic: on when standard error is a terminal or the process is a Jupyter kernel.

``TQDM_DISABLE`` (set to anything but ``0``/``false``/``off``) hides every bar, whatever
the switch. Bars come from ``tqdm.auto`` (widgets in a notebook with ipywidgets, text
otherwise), imported at the first bar.
"""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["set_progress", "progress_bar", "ENVIRONMENT_VARIABLE"]

#: the environment variable of the switch
ENVIRONMENT_VARIABLE = "SGD_DYNAMICS_PROGRESS"

_OFF, _ON = ("0", "false", "off", "no"), ("1", "true", "on", "yes")
_switch: bool | None = None  # set_progress's value; None: the environment decides


def set_progress(enabled: bool | None) -> None:
    """Show (``True``) or hide (``False``) every progress bar of the library in this process.

    ``None`` restores the default: ``SGD_DYNAMICS_PROGRESS`` if set, else bars only when
    standard error is a terminal or the process is a Jupyter kernel. A call's own
    ``progress=False`` still hides its bar, and ``TQDM_DISABLE`` hides all of them.
    """
    global _switch
    if enabled is not None and not isinstance(enabled, bool):
        from .errors import ParameterError

        raise ParameterError(f"enabled={enabled!r} is not allowed: enabled must be True, False or None")
    _switch = enabled


def _flag(name: str):
    """``True``/``False`` for an environment variable that says so, ``None`` if unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in _OFF:
        return False
    if value in _ON:
        return True
    from .errors import ParameterError

    raise ParameterError(f"{name}={value!r} is not allowed: {name} must be one of " + ", ".join(_OFF + _ON))


def _interactive() -> bool:
    """Standard error is a terminal, or this process is a Jupyter kernel (tqdm.auto's test)."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stream
        pass
    return "ipykernel.zmqshell" in sys.modules


def enabled(progress: bool = True) -> bool:
    """Whether a call with ``progress`` shows a bar under the current switch."""
    if not progress:
        return False
    tqdm_disable = os.environ.get("TQDM_DISABLE", "").strip().lower()
    if tqdm_disable and tqdm_disable not in _OFF:
        return False
    if _switch is not None:
        return _switch
    environment = _flag(ENVIRONMENT_VARIABLE)
    return _interactive() if environment is None else environment


def progress_bar(progress: bool = True, iterable=None, **options):
    """A ``tqdm.auto`` bar (disabled when :func:`enabled` says no) over ``iterable`` or with ``total``.

    ``options`` go to tqdm (``total``, ``desc``, ``unit``, ``leave``, ...).
    """
    show = enabled(progress)
    if not show:  # the plain class, whose import does not warn: no filters to swap (a thread may run this)
        from tqdm import tqdm

        return tqdm(iterable, disable=True, **options)
    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        # a notebook without ipywidgets: tqdm.auto warns once and falls back to text bars
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm(iterable, disable=not show, **options)
