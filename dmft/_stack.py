"""Theory and simulation side by side: one Dataset stacked along ``source``.

Shared by :func:`dmft.compare` and :func:`onepass.compare`: :func:`stack_sources` reduces
simulation seeds to a mean and its standard error and stacks the sources,
:func:`shared_time` aligns their output times, :func:`common_prefix` cuts truncated runs
to the output times they all have.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import _stats, errors, output

__all__ = ["stack_sources", "shared_time", "common_prefix"]


def shared_time(parts, names):
    """Give every Dataset in ``parts`` the ``time``/``epoch`` of the first (equal up to round-off)."""
    ref = parts[0]
    out = [ref]
    for name, part in zip(names[1:], parts[1:]):
        if "time" in part.dims:
            if part.sizes["time"] != ref.sizes["time"] or not np.allclose(part.time, ref.time, rtol=1e-9,
                                                                          atol=1e-12):
                raise errors.ParameterError(f"{name!r} has output times that differ from {names[0]!r}'s")
            part = part.assign_coords({c: ref[c] for c in ("time", "epoch") if c in ref.coords and c in part.coords})
        out.append(part)
    return out


def common_prefix(runs: list) -> tuple:
    """``on_divergence='truncate'``: cut every Dataset in the dicts ``runs`` to the output
    times all of them have (a truncated run keeps those before its divergence). Returns the
    cut dicts and the attrs of the earliest divergence (``{}`` if none was truncated)."""
    parts = [ds for r in runs for ds in r.values()]
    n = min(ds.sizes["time"] for ds in parts)
    cut = [{k: ds.isel({dim: slice(n) for dim in ("time", "time2") if dim in ds.dims}) for k, ds in r.items()}
           for r in runs]
    hit = [ds.attrs for ds in parts if ds.attrs.get("truncated")]
    if not hit:
        return cut, {}
    first = min(hit, key=lambda a: float(a["diverged_at"]))
    return cut, {"truncated": 1, "diverged_at": float(first["diverged_at"]),
                 "divergence_cause": str(first.get("divergence_cause", "learning_rate"))}


def stack_sources(results: dict, variables, *, sem_dim: str = "seed") -> xr.Dataset:
    """Stack ``{source: Dataset}`` along a new ``source`` dim, with ``*_sem`` for every variable.

    A Dataset with a ``sem_dim`` dim (simulation seeds) is reduced to its mean over it,
    and ``name_sem = std(ddof=1)/sqrt(n)`` over it (NaN for one seed). A Dataset that already has ``name_sem``
    keeps it (DMFT replicas); otherwise the standard error is 0 (deterministic theory).
    Only ``variables`` present in every source are kept.
    """
    names = [v for v in variables if all(v in ds for ds in results.values())]
    parts = []
    for src, ds in results.items():
        out = {}
        for v in names:
            da = ds[v]
            if sem_dim in da.dims:
                n = da.sizes[sem_dim]
                mean = da.mean(sem_dim, keep_attrs=True)
                # one seed has no spread: its standard error is unknown, not 0
                sem = _stats.sem_over(da, sem_dim) if n > 1 else xr.full_like(mean, np.nan)
            else:
                mean = da
                sem = ds[v + "_sem"] if v + "_sem" in ds else xr.zeros_like(da)
            out[v] = mean.drop_vars([c for c in mean.coords if c not in mean.dims and c != "epoch"])
            out[v + "_sem"] = sem.drop_vars([c for c in sem.coords if c not in sem.dims and c != "epoch"])
            out[v + "_sem"].attrs = output.describe(v + "_sem")
            out[v].attrs = dict(ds[v].attrs)
        parts.append(xr.Dataset(out))
    parts = shared_time(parts, list(results))
    stacked = xr.concat(parts, dim=xr.Variable("source", list(results)), coords="minimal",
                        compat="override", join="exact", combine_attrs="override")
    stacked.attrs = {}
    stacked["source"].attrs.update(long_name="where the curve comes from", units="1")
    return stacked
