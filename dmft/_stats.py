"""Standard errors: one definition for every one the library reports.

The standard error of a mean over independent draws (DMFT replicas, simulation seeds,
held-out samples) is ``std(ddof=1) / sqrt(n)``: :func:`sem` for arrays, :func:`nansem` over
the finite draws only, :func:`sem_over` for a DataArray dimension.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["sem", "nansem", "sem_over"]


def sem(x, axis: int = 0):
    """``std(x, ddof=1) / sqrt(n)`` along ``axis`` (``n`` draws on that axis)."""
    x = np.asarray(x)
    return x.std(axis, ddof=1) / math.sqrt(x.shape[axis])


def nansem(x, axis: int = 0):
    """:func:`sem` over the finite entries along ``axis`` (NaN where fewer than two)."""
    x = np.asarray(x)
    count = np.sum(np.isfinite(x), axis=axis)
    return np.nanstd(x, axis=axis, ddof=1) / np.sqrt(count)


def sem_over(da, dim: str):
    """:func:`sem` of a DataArray over its dimension ``dim`` (at least two draws: what one
    draw's standard error stands for is the caller's choice)."""
    return da.std(dim, ddof=1) / np.sqrt(da.sizes[dim])
