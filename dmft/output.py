"""The one place that builds output Datasets: dims, coordinates, units, attrs, netCDF I/O.

Every variable the library writes is registered in :data:`VARIABLES` with its
``long_name`` and ``units``, so plots label themselves and theory and simulation
Datasets line up variable by variable.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import xarray as xr

from . import _config, errors

__all__ = ["VARIABLES", "LABELS", "TIME_AXES", "describe", "build", "save", "load"]

#: name -> (long_name, units)
VARIABLES = {
    # shared
    "time": ("time", "steps/d (one-pass) or steps kappa/(kappa_bar n) (multi-pass)"),
    "time2": ("earlier time s", "same as time"),
    "epoch": ("epochs", "passes over the data"),
    "risk": ("population risk E f", "1"),
    "risk_se": ("standard error of one run's held-out risk estimate", "1"),
    "train_loss": ("training loss per sample", "1"),
    "test_loss": ("population (test) loss", "1"),
    "norm": ("student Gram matrix X X^T", "1"),
    "overlap": ("teacher overlap X X*^T", "1"),
    "distance": ("squared distance |X - X*|^2", "1"),
    "mean_overlap": ("class-mean overlaps X mu_c", "1"),
    "alignment": ("alignment m/sqrt(V) with mu_1", "1"),
    "group_mean_overlap": ("group-resolved mean overlap m_g", "1"),
    "group_norm": ("group-resolved norm v_g", "1"),
    "fisher_trace": ("Fisher trace sum_c p_c tr E[grad f grad f^T]", "1"),
    "lr": ("learning rate gamma_t", "1"),
    "lr_threshold": ("stability threshold 2A/((Tr K/d) I)", "1"),
    "correlation": ("correlation kernel C_theta(t, s)", "1"),
    "response": ("response kernel R_theta(t, s)", "1"),
    # comparisons and sweeps (dmft.compare, dmft.sweep)
    "runtime_s": ("wall-clock runtime", "s"),
    "delta": ("samples per dimension n/d", "1"),
    "batch": ("batch scale kappa_bar", "1"),
    "status": ("sweep point status (ok, truncated, diverged, failed)", "1"),
    "diverged_at": ("time at which a sweep point diverged (NaN: it did not)", "same as time"),
    "divergence_cause": ("cause of a sweep point's divergence (learning_rate, time_step, model, data)", "1"),
    "error": ("error message of a failed sweep point", "1"),
    "point_seed": ("seed passed to the sweep point", "1"),
}


#: name -> axis label of figures, with matplotlib mathtext (``dmft.plotting``); a variable
#: without one is labelled ``long_name [units]``
LABELS = {
    "time2": r"earlier time $s$",
    "epoch": "epochs",
    "risk": r"population risk $\mathbb{E}\,f$",
    "risk_se": r"standard error of the held-out risk",
    "train_loss": r"training loss $L_{\mathrm{train}}(t)$",
    "test_loss": r"test loss $L_{\mathrm{test}}(t)$",
    "norm": r"student Gram matrix $XX^\top$",
    "overlap": r"teacher overlap $XX_\star^\top$",
    "distance": r"squared distance $\|X - X_\star\|^2$",
    "mean_overlap": r"class-mean overlap $X\mu_c$",
    "alignment": r"alignment $m/\sqrt{V}$",
    "group_mean_overlap": r"group mean overlap $m_g$",
    "group_norm": r"group norm $v_g$",
    "fisher_trace": r"Fisher trace $\sum_c p_c\,\mathrm{tr}\,\mathbb{E}[\nabla f\,\nabla f^\top]$",
    "lr": r"learning rate $\gamma_t$",
    "lr_threshold": r"stability threshold of $\gamma_t$",
    "correlation": r"correlation $C_\theta(t, s)$",
    "response": r"response $R_\theta(t, s)$",
    "runtime_s": "wall-clock run time [s]",
    "delta": r"samples per dimension $\delta = n/d$",
    "batch": r"batch scale $\bar\kappa$",
}

#: the ``time`` coordinate of each package (what one unit of ``t`` is); :func:`build`'s ``time_axis``
TIME_AXES = {
    "multipass": {"long_name": "time t: SGD step x kappa/(kappa_bar n), one epoch is t = 1/kappa_bar",
                  "units": "epochs/kappa_bar", "label": r"time $t$ (epochs$\,/\,\bar\kappa$)"},
    "onepass": {"long_name": "time t: SGD steps/d", "units": "steps/d", "label": r"time $t$ (steps$\,/\,d$)"},
}


def describe(name: str) -> dict:
    """``{'long_name', 'units'}`` for a registered variable (``*_sem`` inherits), and
    ``'label'`` (figure axis label with mathtext) where :data:`LABELS` has one."""
    base = name[:-4] if name.endswith("_sem") else name
    if base not in VARIABLES:
        raise KeyError(f"variable {name!r} is not registered in dmft.output.VARIABLES")
    long_name, units = VARIABLES[base]
    label = LABELS.get(base)
    if name.endswith("_sem"):
        long_name = "standard error of " + long_name
        label = None if label is None else "standard error of " + label
    return {"long_name": long_name, "units": units, **({} if label is None else {"label": label})}


def _attr_value(v):
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if v is None:
        return "None"
    if isinstance(v, (int, float, str, np.integer, np.floating)):
        return v
    if dataclasses.is_dataclass(v):
        return repr(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        a = np.asarray(v)
        if a.dtype.kind in "if" and a.ndim == 1:
            # netCDF reads a length-1 attribute back as a scalar: store it as one
            return a[0].item() if a.size == 1 else a
        if a.dtype.kind in "if":
            return json.dumps(a.tolist())
        return json.dumps([str(x) for x in np.ravel(a)])
    if isinstance(v, dict):
        return json.dumps({str(a): str(b) for a, b in v.items()})
    return repr(v)


def clean_attrs(attrs: dict) -> dict:
    """Attributes converted to netCDF-storable values (numbers, strings, 1-d arrays)."""
    return {str(k): _attr_value(v) for k, v in attrs.items()}


def build(variables: dict, coords: dict, attrs: dict, *, time_axis: str | None = None) -> xr.Dataset:
    """Dataset from ``{name: (dims, values)}``, coordinates and input parameters.

    Each variable (and each coordinate that is registered) gets ``long_name`` and
    ``units`` (and ``label``, see :data:`LABELS`); ``time_axis`` (``'multipass'`` or
    ``'onepass'``) gives the ``time`` coordinate the attrs of :data:`TIME_AXES`; ``attrs``
    are cleaned for netCDF and get the library version.
    """
    from . import __version__

    data_vars = {}
    for name, (dims, values) in variables.items():
        data_vars[name] = xr.Variable(dims, np.asarray(values), attrs=describe(name))
    ds = xr.Dataset(data_vars, coords=coords)
    for c in ds.coords:
        base = str(c)
        if base in VARIABLES or base + "_sem" in VARIABLES:
            ds[c].attrs.update(describe(base))
    if time_axis is not None and "time" in ds.coords:
        ds["time"].attrs.update(TIME_AXES[time_axis])
    ds.attrs.update(clean_attrs({**attrs, "library_version": __version__}))
    return ds


def save(ds: xr.Dataset, path) -> Path:
    """Write ``ds`` to netCDF4 (h5netcdf engine); :func:`load` reads it back identically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def load(path) -> xr.Dataset:
    """The Dataset :func:`save` wrote to ``path``, read into memory (the file is closed)."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def check_finite(name: str, time: np.ndarray, values: np.ndarray, *, limit: float = _config.BLOWUP_NORM,
                 threshold: float | None = None, cause: str = "learning_rate") -> None:
    """Raise :class:`~dmft.errors.DivergenceError` at the first time ``values`` blows up.

    ``values`` has time as its first axis; blow-up means non-finite or ``|x| > limit``;
    ``cause`` is the error's :attr:`~dmft.errors.DivergenceError.cause`.
    """
    v = np.abs(np.asarray(values, dtype=float)).reshape(len(time), -1)
    bad = ~np.isfinite(v).all(axis=1) | (np.nan_to_num(v, nan=np.inf).max(axis=1) > limit)
    if bad.any():
        i = int(np.argmax(bad))
        t = float(time[i])
        msg = f"{name} diverged at time {t:.4g}"
        if threshold is not None:
            msg += f"; the stability threshold of the learning rate there is {threshold:.4g}"
        raise errors.DivergenceError(msg, t, threshold, cause)
