"""One-call figures of theory against simulation, labelled from ``long_name``/``units``.

Figures are drawn with the current matplotlib backend (importing this module does not
change it), so they show inline in a notebook.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _scalar(da):
    """Reduce matrix-valued variables (k x k etc.) to their trace / first entry for plotting."""
    extra = [d for d in da.dims if d not in ("time", "seed")]
    for dim in extra:
        da = da.isel({dim: 0})
    return da


def _panels(n: int, ax):
    """Figure and a row of ``n`` axes, or the caller's axes and their figure."""
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 3.5), squeeze=False)
        return fig, axes[0]
    axes = np.atleast_1d(ax)
    return axes[0].figure, axes


def theory_vs_simulation(theory, simulation=None, variables=("risk",), *, label="theory", ax=None):
    """Plot ``variables`` of ``theory`` as lines and ``simulation`` as mean +- 2 SEM bands.

    ``simulation`` has a ``seed`` dim. Returns the matplotlib Figure.
    """
    fig, axes = _panels(len(variables), ax)
    for a, name in zip(axes, variables):
        th = _scalar(theory[name])
        a.plot(th.time, th, color="C0", lw=2, label=label)
        if simulation is not None and name in simulation:
            sim = _scalar(simulation[name])
            n = sim.sizes.get("seed", 1)
            mean = sim.mean("seed") if "seed" in sim.dims else sim
            sem = sim.std("seed", ddof=1) / np.sqrt(n) if n > 1 else 0 * mean
            a.fill_between(mean.time, mean - 2 * sem, mean + 2 * sem, color="C1", alpha=0.35, lw=0)
            a.plot(mean.time, mean, color="C1", ls="--", label=f"simulation ({n} seeds, ±2 SEM)")
        attrs = theory[name].attrs
        a.set_xlabel(f"time [{theory.time.attrs.get('units', '')}]" if len(theory.time.attrs.get('units', '')) < 20 else "time")
        units = attrs.get("units", "")
        a.set_ylabel(attrs.get("long_name", name) + (f" [{units}]" if units and units != "1" else ""))
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


_SOURCE_STYLE = {"theory": dict(ls="-", lw=2.0), "simulation": dict(ls="--", lw=1.4, marker="o", ms=2.5),
                 "hsgd": dict(ls=":", lw=1.8)}


def _label(da, name):
    attrs = da.attrs
    units = attrs.get("units", "")
    return attrs.get("long_name", name) + (f" [{units}]" if units and units != "1" else "")


def compare(ds, variables=None, *, ax=None, sem_width: float = 2.0, x: str = "time"):
    """One-call figure of a :func:`dmft.compare` / :func:`onepass.compare` Dataset.

    One panel per variable. With a ``dynamics`` dim, colour = dynamics and line style =
    source (theory solid, simulation dashed with markers, HSGD dotted); without one,
    colour = source. Every source with a ``name_sem`` variable gets a shaded band of
    ``+- sem_width`` standard errors (simulation: over seeds; DMFT: over replicas).
    Matrix-valued variables show their first entry. Axis labels come from the
    ``long_name``/``units`` attrs.

    Parameters
    ----------
    ds : xarray.Dataset
        With a ``source`` dim (and optionally ``dynamics``) and a ``time`` dim.
    variables : sequence of str, optional
        Default: the first of ``test_loss``/``risk`` and ``train_loss``/``alignment``
        present, plus ``overlap``.
    ax : matplotlib Axes or array of Axes, optional
    sem_width : float
        Half-width of the bands in standard errors.
    x : str
        Coordinate on the horizontal axis (``'time'`` or ``'epoch'``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if variables is None:
        variables = [v for v in ("test_loss", "train_loss", "risk", "alignment", "overlap") if v in ds][:3]
    variables = list(variables)
    fig, axes = _panels(len(variables), ax)
    dyns = list(ds["dynamics"].values) if "dynamics" in ds.dims else [None]
    sources = list(ds["source"].values) if "source" in ds.dims else [None]
    for a, name in zip(axes, variables):
        for i, dyn in enumerate(dyns):
            for j, src in enumerate(sources):
                sel = {}
                if dyn is not None:
                    sel["dynamics"] = dyn
                if src is not None:
                    sel["source"] = src
                da = _scalar(ds[name].sel(sel))
                color = f"C{i}" if dyn is not None else f"C{j}"
                style = dict(_SOURCE_STYLE.get(str(src), dict(ls="-.", lw=1.4)))
                label = " ".join(str(s) for s in (dyn, src) if s is not None)
                xs = da[x].values if x in da.coords else da["time"].values
                a.plot(xs, da.values, color=color, label=label, **style)
                if name + "_sem" in ds:
                    sem = _scalar(ds[name + "_sem"].sel(sel)).values
                    if np.any(sem > 0):
                        a.fill_between(xs, da.values - sem_width * sem, da.values + sem_width * sem,
                                       color=color, alpha=0.25 if src != "theory" else 0.12, lw=0)
        xc = ds[x] if x in ds.coords else ds["time"]
        xunits = xc.attrs.get("units", "")
        a.set_xlabel(f"{x} [{xunits}]" if xunits and len(xunits) < 20 else x)
        a.set_ylabel(_label(ds[name], name))
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title=f"bands: ±{sem_width:g} SEM", title_fontsize=7)
    if ax is None:  # a figure of our own: title from the inputs
        title = ", ".join(f"{k}={ds.attrs[k]}" for k in ("model", "delta", "lr", "batch") if k in ds.attrs)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
    return fig
