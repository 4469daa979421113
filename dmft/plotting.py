"""One-call figures of theory against simulation, labelled from the variables' attrs.

Axis labels are the ``label`` attrs (matplotlib mathtext, from
:data:`dmft.output.LABELS`; ``long_name [units]`` where there is none), the time axis
says what one unit of ``t`` is in each package (multi-pass: epochs / ``kappa_bar``;
one-pass: SGD steps / ``d``), and titles are built from the Dataset's attrs. Figures are
drawn with the current matplotlib backend (importing this module does not change it), so
they show inline in a notebook, and in the style :data:`STYLE` applied to the figure
only: matplotlib's global ``rcParams`` are left as they were.
"""
from __future__ import annotations

import contextlib
import numbers
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from . import _stats, errors

__all__ = ["compare", "sweep", "theory_vs_simulation", "axis_label", "figure_title", "paper_style", "STYLE"]

#: rcParams in force while a figure of this module is drawn (:func:`paper_style`);
#: pass ``style={...}`` to a plotting function to change some of them
STYLE = {
    "font.size": 9.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 9.0,
    "legend.fontsize": 7.5,
    "legend.title_fontsize": 7.5,
    "legend.frameon": False,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "mathtext.fontset": "cm",
    "lines.linewidth": 1.6,
}

#: line style of each source along ``source``
_SOURCE_STYLE = {"theory": dict(ls="-", lw=2.0), "simulation": dict(ls="--", lw=1.3, marker="o", ms=2.5),
                 "hsgd": dict(ls=":", lw=1.8)}
_SOURCE_NAMES = {"theory": "theory", "simulation": "simulation", "hsgd": "homogenized SGD"}
_DYNAMICS_NAMES = {"sgd": "SGD", "sme": "SME", "gf": "GF"}
#: the symbol of each input parameter in titles and legends, by package
_SYMBOLS = {
    "multipass": {"delta": r"\delta", "lr": r"\bar\eta", "batch": r"\bar\kappa", "ridge": r"\lambda", "d": "d"},
    "onepass": {"lr": r"\gamma", "d": "d"},
}
_TITLE_KEYS = ("delta", "lr", "batch", "ridge", "d")
_PARAMETER_WORDS = {"delta": "samples per dimension", "lr": "learning rate", "batch": "batch scale",
                    "ridge": "ridge", "d": "dimension"}
#: dims that index the entries of a matrix- or group-valued variable (figures show the first entry)
_ENTRY_DIMS = ("student", "student2", "teacher", "class", "group")
_XSCALES = ("linear", "log", "symlog")


def _package(ds) -> str | None:
    """``'multipass'`` or ``'onepass'`` from the ``time`` coordinate's units, else None."""
    from .output import TIME_AXES

    units = ds["time"].attrs.get("units") if "time" in ds.coords else None
    return next((name for name, axis in TIME_AXES.items() if axis["units"] == units), None)


@contextlib.contextmanager
def paper_style(overrides: dict | None = None):
    """Context manager in which matplotlib draws in :data:`STYLE` (updated with ``overrides``).

    The figures of this module are drawn in it; wrap your own ``plt.subplots`` in it to
    match them (``with dmft.plotting.paper_style(): fig, axes = plt.subplots(2, 2)``). The
    rcParams it sets are restored on exit, and only those: a backend loaded meanwhile
    keeps the settings it made (Jupyter's inline backend switches interactive mode on when
    the first figure loads it; ``matplotlib.rc_context`` would undo that, and the later
    figures of the session would not show).
    """
    style = {**STYLE, **(overrides or {})}
    saved = {key: matplotlib.rcParams[key] for key in style}
    matplotlib.rcParams.update(style)
    try:
        yield
    finally:
        matplotlib.rcParams.update(saved)


def _scale(name: str, value: str) -> str:
    return errors.choice(name, value, _XSCALES)


def _scalar(da, keep=("time", "seed")):
    """The first entry of a matrix- or group-valued variable (along every dim but ``keep``),
    and whether it had more than one."""
    extra = [d for d in da.dims if d not in keep]
    several = any(da.sizes[d] > 1 for d in extra)
    for dim in extra:
        da = da.isel({dim: 0})
    return da, several


def axis_label(da, name: str | None = None) -> str:
    """Axis label of a variable or coordinate from its attrs.

    The ``label`` attr (mathtext) if there is one, else ``long_name [units]`` (units
    ``'1'`` are left out), else ``name``.
    """
    attrs = da.attrs
    if attrs.get("label"):
        return str(attrs["label"])
    units = attrs.get("units", "")
    text = str(attrs.get("long_name", name if name is not None else da.name))
    return text + (f" [{units}]" if units and units != "1" and len(units) < 20 else "")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, numbers.Real) else str(value)


def figure_title(ds) -> str:
    """Figure title from a Dataset's attrs, e.g. ``huber_tanh: δ = 2, η̄ = 2, κ̄ = 1, d = 400, 8 seeds``.

    Parameters that are dims of ``ds`` (swept) are left out; a learning-rate schedule
    shows by name; a zero ridge is left out.
    """
    attrs, package = ds.attrs, _package(ds)
    symbols = _SYMBOLS.get(package, {})
    head = str(attrs.get("model", ""))
    if attrs.get("data", "None") != "None":  # 'None': the default isotropic teacher-student data
        head += f" on {attrs['data']}"
    parts = []
    for key in _TITLE_KEYS:
        if key not in attrs or key in ds.dims or (key == "ridge" and attrs[key] == 0):
            continue
        value = attrs[key]
        symbol = symbols.get(key, key)
        constant = re.fullmatch(r"Constant\(lr=([^)]+)\)", str(value))  # a number given as lr (one-pass)
        if constant:
            value = float(constant.group(1))
        if isinstance(value, numbers.Real):
            parts.append(f"${symbol} = {_number(value)}$")
        else:  # a schedule or a callable, by its repr
            parts.append(f"${symbol}_t$: {value}")
    if "n_seeds" in attrs and "simulation" in np.atleast_1d(ds.coords.get("source", [])):
        parts.append(f"{attrs['n_seeds']} seeds")
    return (head + ": " if head and parts else head) + ", ".join(parts)


def _panels(n: int, ax, *, width: float = 3.6, height: float = 2.9):
    """Figure and a row of ``n`` axes, or the caller's axes and their figure."""
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
        return fig, axes[0]
    axes = np.atleast_1d(ax).ravel()
    if len(axes) < n:
        raise errors.ParameterError(f"ax={len(axes)} axes is not allowed: the figure has {n} panels, "
                                    f"ax must hold at least {n} axes")
    return axes[0].figure, axes


def _positive_times(xs, xscale: str):
    """On a log axis, the indices of positive times (t = 0 has no place there)."""
    return np.flatnonzero(xs > 0) if xscale == "log" else np.arange(len(xs))


def theory_vs_simulation(theory, simulation=None, variables=("risk",), *, label="theory", ax=None,
                         xscale: str = "linear", yscale: str = "linear", style: dict | None = None):
    """Plot ``variables`` of ``theory`` as lines and ``simulation`` as mean +- 2 SEM bands.

    Parameters
    ----------
    theory : xarray.Dataset
        With a ``time`` dim.
    simulation : xarray.Dataset, optional
        With a ``seed`` dim.
    variables : sequence of str
        One panel each; matrix-valued variables show their first entry.
    label : str
        Legend entry of the theory line.
    ax : matplotlib Axes or array of Axes, optional
    xscale, yscale : {'linear', 'log', 'symlog'}
        Axis scales (``xscale='log'`` for long times; ``t = 0`` is left out there).
    style : dict, optional
        rcParams over :data:`STYLE` while drawing.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xscale, yscale = _scale("xscale", xscale), _scale("yscale", yscale)
    with paper_style(style):
        fig, axes = _panels(len(variables), ax)
        for a, name in zip(axes, variables):
            th, several = _scalar(theory[name])
            keep = _positive_times(th.time.values, xscale)
            a.plot(th.time.values[keep], th.values[keep], color="C0", lw=2, label=label)
            if simulation is not None and name in simulation:
                sim, _ = _scalar(simulation[name])
                n = sim.sizes.get("seed", 1)
                mean = sim.mean("seed") if "seed" in sim.dims else sim
                sem = _stats.sem_over(sim, "seed") if n > 1 else 0 * mean
                t, m, s = mean.time.values[keep], mean.values[keep], sem.values[keep]
                a.fill_between(t, m - 2 * s, m + 2 * s, color="C1", alpha=0.35, lw=0)
                a.plot(t, m, color="C1", ls="--", label=f"simulation ({n} seeds, ±2 SEM)")
            a.set_xlabel(axis_label(theory["time"], "time"))
            a.set_ylabel(axis_label(theory[name], name) + (" (first entry)" if several else ""))
            a.set_xscale(xscale)
            a.set_yscale(yscale)
        axes[0].legend()
        if ax is None:
            fig.tight_layout()
    return fig


def _display(dim: str, value, ds) -> str:
    """Legend text of one value along ``dim``."""
    value = value.item() if hasattr(value, "item") else value
    if dim == "dynamics":
        return _DYNAMICS_NAMES.get(str(value), str(value))
    if dim == "source":
        text = _SOURCE_NAMES.get(str(value), str(value))
        if value == "theory" and _package(ds):
            text += " (DMFT)" if _package(ds) == "multipass" else " (ODE)"
        if value in ("simulation", "hsgd") and "d" in ds.attrs and "d" not in ds.dims:
            text += f", $d = {_number(ds.attrs['d'])}$"
        return text
    symbol = _SYMBOLS.get(_package(ds), {}).get(dim)
    if symbol and isinstance(value, numbers.Real):
        return f"${symbol} = {_number(value)}$"
    return f"{dim} = {_number(value)}" if isinstance(value, numbers.Real) else str(value)


def _legend(ax, colours: dict, styles: dict, title: str | None = None, outside: bool = False):
    """One legend entry per colour (solid lines) and one per line style (grey); ``outside``:
    to the right of ``ax``."""
    handles = [Line2D([], [], color=c, lw=2.0, label=t) for t, c in colours.items()]
    handles += [Line2D([], [], color="0.35", label=t, **kw) for t, kw in styles.items()]
    where = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0) if outside else {}
    return ax.legend(handles=handles, title=title, **where)


def compare(ds, variables=None, *, ax=None, sem_width: float = 2.0, x: str = "time", hue: str = "dynamics",
            xscale: str = "linear", yscale: str = "linear", title: bool = True, style: dict | None = None):
    """One-call figure of a :func:`dmft.compare` / :func:`onepass.compare` Dataset.

    One panel per variable. With a ``hue`` dim (``dynamics`` by default), colour = its
    value and line style = source (theory solid, simulation dashed with markers,
    homogenized SGD dotted), and the legend has one entry per value and one per source;
    without one, colour = source.
    Every source with a ``name_sem`` variable gets a shaded band of ``+- sem_width``
    standard errors (simulation: over seeds; DMFT: over replicas). Matrix-valued variables
    show their first entry. Axis labels come from the attrs (:func:`axis_label`), the title
    from the Dataset's attrs (:func:`figure_title`).

    Parameters
    ----------
    ds : xarray.Dataset
        With a ``source`` dim (and optionally ``dynamics``) and a ``time`` dim.
    variables : sequence of str, optional
        Default: the first of ``test_loss``/``risk`` and ``train_loss``/``alignment``
        present, plus ``overlap``.
    ax : matplotlib Axes or array of Axes, optional
        One per variable; without it a new figure is made.
    sem_width : float
        Half-width of the bands in standard errors.
    x : str
        Coordinate on the horizontal axis (``'time'`` or ``'epoch'``).
    hue : str
        Dim whose values are told apart by colour, e.g. a dim along which you
        concatenated several runs (``xarray.concat``).
    xscale, yscale : {'linear', 'log', 'symlog'}
        Axis scales (``xscale='log'`` with a log-spaced ``times=`` grid for long times;
        ``t = 0`` is left out there).
    title : bool
        Give a figure of its own (no ``ax``) the title :func:`figure_title`.
    style : dict, optional
        rcParams over :data:`STYLE` while drawing.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xscale, yscale = _scale("xscale", xscale), _scale("yscale", yscale)
    if variables is None:
        variables = [v for v in ("test_loss", "train_loss", "risk", "alignment", "overlap") if v in ds][:3]
    variables = list(variables)
    if hue in ("source", x):
        raise errors.ParameterError(f"hue={hue!r} is not allowed: hue must be a dim other than source and x")
    dyns = list(ds[hue].values) if hue in ds.dims else [None]
    sources = list(ds["source"].values) if "source" in ds.dims else [None]
    colour_by_dynamics = dyns != [None]
    colours, styles = {}, {}
    with paper_style(style):
        fig, axes = _panels(len(variables), ax)
        for a, name in zip(axes, variables):
            for i, dyn in enumerate(dyns):
                for j, src in enumerate(sources):
                    sel = {k: v for k, v in ((hue, dyn), ("source", src)) if v is not None}
                    da, several = _scalar(ds[name].sel(sel))
                    color = f"C{i}" if colour_by_dynamics else f"C{j}"
                    kw = dict(_SOURCE_STYLE.get(str(src), dict(ls="-.", lw=1.4)))
                    xs = da[x].values if x in da.coords else da["time"].values
                    keep = _positive_times(xs, xscale)
                    a.plot(xs[keep], da.values[keep], color=color, **kw)
                    if name + "_sem" in ds:
                        sem = _scalar(ds[name + "_sem"].sel(sel))[0].values[keep]
                        if np.any(sem > 0):
                            a.fill_between(xs[keep], da.values[keep] - sem_width * sem,
                                           da.values[keep] + sem_width * sem, color=color,
                                           alpha=0.25 if src != "theory" else 0.12, lw=0)
                    if colour_by_dynamics:
                        colours[_display(hue, dyn, ds)] = color
                        if len(sources) > 1 or src is not None:
                            styles[_display("source", src, ds)] = kw
                    else:
                        colours[_display("source", src, ds) if src is not None else name] = color
            a.set_xlabel(axis_label(ds[x] if x in ds.coords else ds["time"], x))
            a.set_ylabel(axis_label(ds[name], name) + (" (first entry)" if several else ""))
            a.set_xscale(xscale)
            a.set_yscale(yscale)
        _legend(axes[0], colours, styles, title=f"bands: ±{sem_width:g} SEM")
        if ax is None:  # a figure of our own: title from the inputs
            text = figure_title(ds) if title else ""
            if text:
                fig.suptitle(text)
            fig.tight_layout()
    return fig


def _swept(ds, variable: str) -> list:
    """The dims of a :func:`dmft.sweep` Dataset that are sweep parameters, in grid order."""
    if "status" in ds:
        return list(ds["status"].dims)
    fixed = {"time", "time2", "source", "dynamics", "seed", *_ENTRY_DIMS}
    return [d for d in ds[variable].dims if d not in fixed]


def sweep(ds, variable: str = "test_loss", *, x: str | None = None, hue=None, col: str | None = "dynamics",
          time: int = -1, xscale: str = "linear", yscale: str = "linear", sem_width: float = 2.0, ax=None,
          title: bool = True, style: dict | None = None):
    """A :func:`dmft.sweep` result at one time against a swept parameter.

    ``variable`` at ``time`` (an index along ``time``; default the last) against the swept
    parameter ``x``, one colour per value of the other swept parameters (``hue``) with one
    legend entry per value, one line style per source (theory solid, simulation dashed,
    homogenized SGD dotted; error bars ``+- sem_width`` standard errors) and one panel
    per value of ``col``. Failed points are gaps.

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep result: the swept parameters are its leading dims (those of ``status``).
    variable : str
        Matrix-valued variables show their first entry.
    x : str, optional
        Swept parameter on the horizontal axis; default the first with more than one value.
    hue : str or sequence of str, optional
        Swept parameters told apart by colour (one colour per combination of their
        values); default every other swept parameter with more than one value.
    col : str or None
        Dim with one panel per value (default ``dynamics``, when there is one).
    time : int
        Index along ``time`` (``-1``: the final time).
    xscale, yscale : {'linear', 'log', 'symlog'}
    sem_width : float
        Half-width of the error bars in standard errors.
    ax : matplotlib Axes or array of Axes, optional
        One per value of ``col``.
    title : bool
        Give a figure of its own (no ``ax``) the title :func:`figure_title` and the time shown.
    style : dict, optional
        rcParams over :data:`STYLE` while drawing.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xscale, yscale = _scale("xscale", xscale), _scale("yscale", yscale)
    if variable not in ds:
        raise errors.ParameterError(f"variable={variable!r} is not allowed: it is not in the Dataset "
                                    f"(variables: {', '.join(map(str, ds.data_vars))})")
    swept = _swept(ds, variable)
    several = [d for d in swept if ds.sizes[d] > 1]
    if x is None:
        x = (several or swept or [None])[0]
    if x not in swept:
        raise errors.ParameterError(f"x={x!r} is not allowed: x must be one of the swept parameters {swept}")
    hue = [d for d in several if d != x] if hue is None else [hue] if isinstance(hue, str) else list(hue)
    for h in hue:
        if h not in swept or h == x:
            raise errors.ParameterError(f"hue={h!r} is not allowed: hue must be swept parameters other than x "
                                        f"({[d for d in swept if d != x]})")
    rest = [d for d in several if d != x and d not in hue]
    if rest:
        raise errors.ParameterError(f"the swept parameters {rest} have several values and are neither x nor hue: "
                                    "give them as hue or select one value with ds.sel(...)")
    da = ds[variable].isel(time=time) if "time" in ds[variable].dims else ds[variable]
    sem = ds[variable + "_sem"].isel(time=time) if variable + "_sem" in ds and "time" in da.coords else None
    cols = list(ds[col].values) if col is not None and col in da.dims else [None]
    sources = list(ds["source"].values) if "source" in da.dims else [None]
    combos = list(np.ndindex(*[ds.sizes[h] for h in hue]))
    colours, styles = {}, {}
    with paper_style(style):
        fig, axes = _panels(len(cols), ax, width=3.8, height=3.0)
        if ax is None:  # room for the legend on the right
            fig.set_size_inches(fig.get_figwidth() + 1.8, fig.get_figheight())
        for a, c in zip(axes, cols):
            for k, combo in enumerate(combos):
                color = f"C{k % 10}"
                hue_sel = {h: i for h, i in zip(hue, combo)}
                text = ", ".join(_display(h, ds[h].values[i], ds) for h, i in hue_sel.items()) or str(variable)
                colours[text] = color
                for src in sources:
                    sel = {k2: v for k2, v in ((col, c), ("source", src)) if v is not None}
                    y, entry = _scalar(da.isel(hue_sel).sel(sel), keep=(x,))
                    kw = dict(_SOURCE_STYLE.get(str(src), dict(ls="-.", lw=1.4)))
                    kw.setdefault("marker", "o")
                    kw["ms"] = 4
                    yerr = None
                    if sem is not None:
                        e = _scalar(sem.isel(hue_sel).sel(sel), keep=(x,))[0].values
                        yerr = sem_width * e if np.any(e > 0) else None
                    a.errorbar(ds[x].values, y.values, yerr=yerr, color=color, capsize=2, **kw)
                    if src is not None and len(sources) > 1:
                        styles[_display("source", src, ds)] = {k2: kw[k2] for k2 in ("ls", "marker")}
            a.set_xlabel(_parameter_label(ds, x))
            a.set_ylabel(axis_label(ds[variable], variable) + (" (first entry)" if entry else ""))
            if c is not None:
                a.set_title(_display(col, c, ds))
            a.set_xscale(xscale)
            a.set_yscale(yscale)
        _legend(axes[len(cols) - 1], colours, styles, outside=True)
        if ax is None:
            if title:
                t = ds["time"].values[time] if "time" in ds.coords else None
                when = f"at $t = {_number(float(t))}$" if t is not None else ""
                head = figure_title(ds)
                fig.suptitle((head + "; " if head else "") + when)
            fig.tight_layout()
    return fig


def _parameter_label(ds, name: str) -> str:
    """Axis label of a swept parameter: its words and symbol, or its attrs."""
    symbol = _SYMBOLS.get(_package(ds), {}).get(name)
    if symbol and name in _PARAMETER_WORDS:
        return f"{_PARAMETER_WORDS[name]} ${symbol}$"
    return axis_label(ds[name], name)
