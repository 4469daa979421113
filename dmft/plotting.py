"""One-call figures of theory against simulation, labelled from ``long_name``/``units``."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _scalar(da):
    """Reduce matrix-valued variables (k x k etc.) to their trace / first entry for plotting."""
    extra = [d for d in da.dims if d not in ("time", "seed")]
    for dim in extra:
        da = da.isel({dim: 0})
    return da


def theory_vs_simulation(theory, simulation=None, variables=("risk",), *, label="theory", ax=None):
    """Plot ``variables`` of ``theory`` as lines and ``simulation`` as mean +- 2 SEM bands.

    ``simulation`` has a ``seed`` dim. Returns the matplotlib Figure.
    """
    if ax is None:
        fig, axes = plt.subplots(1, len(variables), figsize=(4.2 * len(variables), 3.4), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(ax)
        fig = axes[0].figure
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
