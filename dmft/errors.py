"""Errors raised by the library and the argument checks every entry point shares."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


class ParameterError(ValueError):
    """An argument is outside its allowed range; the message names it, its value and the range."""


class DivergenceError(FloatingPointError):
    """A trajectory blew up. ``time`` is the first time at which it was non-finite or too large."""

    def __init__(self, message: str, time: float, threshold: float | None = None):
        super().__init__(message)
        self.time = time
        self.threshold = threshold


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ParameterError(f"{name}={value!r} is not allowed: {name} must be {allowed}")


def positive(name: str, value, *, allow_inf: bool = False) -> float:
    """Return ``float(value)`` if it is a finite (or, when allowed, infinite) number > 0."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        _fail(name, value, "a positive number")
    if not (x > 0) or math.isnan(x) or (math.isinf(x) and not allow_inf):
        _fail(name, value, "a positive finite number" if not allow_inf else "a positive number")
    return x


def nonnegative(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        _fail(name, value, "a non-negative number")
    if not (x >= 0) or math.isinf(x):
        _fail(name, value, "a finite number >= 0")
    return x


def in_range(name: str, value, low: float, high: float, *, closed_high: bool = False) -> float:
    """Check ``low <= value < high`` (or ``<= high`` with ``closed_high``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        _fail(name, value, f"a number in [{low}, {high}{']' if closed_high else ')'}")
    ok = low <= x <= high if closed_high else low <= x < high
    if not ok:
        _fail(name, value, f"in [{low}, {high}{']' if closed_high else ')'}")
    return x


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, float) and value.is_integer()):
            _fail(name, value, f"an integer >= {minimum}")
    if int(value) < minimum:
        _fail(name, value, f"an integer >= {minimum}")
    return int(value)


def choice(name: str, value, allowed) -> Any:
    if value not in allowed:
        _fail(name, value, "one of " + ", ".join(repr(a) for a in allowed))
    return value


def finite_array(name: str, value, *, shape: tuple | None = None, nonnegative: bool = False) -> np.ndarray:
    """``np.asarray(value, float)`` checked for finiteness, shape and (optionally) sign."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        _fail(name, "<array>", "an array of real numbers")
    if shape is not None and a.shape != shape:
        raise ParameterError(f"{name} has shape {a.shape}; expected {shape}")
    if not np.all(np.isfinite(a)):
        bad = a[~np.isfinite(a)].ravel()[0]
        _fail(name, f"<array containing {bad}>", "finite everywhere")
    if nonnegative and np.any(a < 0):
        _fail(name, f"<array with minimum {a.min():.3g}>", "non-negative everywhere")
    return a


def seed_sequence(seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        _fail("seed", seed, "a non-negative integer")
    return np.random.SeedSequence(int(seed))
