"""One-pass zero-one model: group-resolved mean overlaps ``m_jk`` (ODE vs SGD vs HSGD).

Two classes with covariance eigenvalues ``lam^(1) = j``, ``lam^(2) = k`` on the
coordinate groups ``I_jk`` (docs/onepass.md, "Data"); ``group_mean_overlap`` is
``m_g = sum_{i in g} x_i mu_{c,i}`` for each group and class.
"""
import sys
import time

import matplotlib.pyplot as plt
import numpy as np

import onepass

try:
    from validation import _common
except ImportError:
    import _common


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    d, n_seeds, t_max = (200, 2, 5.0) if args.quick else (1000, 8, 20.0)
    data = onepass.data.binary_mixture("zero_one", d=d)
    ds = onepass.compare("logistic", data, lr=0.5, t_max=t_max, n_time=41, n_seeds=n_seeds, seed=args.seed,
                         sources=("theory", "simulation", "hsgd"), progress=not args.no_progress)
    rows = []
    m = ds.group_mean_overlap.isel(student=0, **{"class": 0})
    sem = ds.group_mean_overlap_sem.isel(student=0, **{"class": 0})
    groups = [str(g) for g in ds.group.values]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.2), squeeze=False, sharey=True)
    for a, g in zip(axes[0], groups):
        sub = ds.sel(group=g).isel(student=0, **{"class": 0})
        sub = sub.assign(group_mean_overlap=sub.group_mean_overlap, group_mean_overlap_sem=sub.group_mean_overlap_sem)
        rows += _common.error_rows(sub, ["group_mean_overlap"], case=f"group {g}")
        for j, src in enumerate(ds.source.values):
            y, s = m.sel(group=g, source=src), sem.sel(group=g, source=src)
            a.plot(ds.time, y, color=f"C{j}", ls=["-", "--", ":"][j], label=str(src))
            if np.any(s > 0):
                a.fill_between(ds.time, y - 2 * s, y + 2 * s, color=f"C{j}", alpha=0.25, lw=0)
        a.set_title(f"group {g} ({int(ds.group_size.sel(group=g))} coords)", fontsize=9)
        a.set_xlabel("time")
        a.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ds.group_mean_overlap.attrs.get("long_name", "m_g") + " (class 0)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _common.finish("onepass_group_overlaps", ds, fig, rows, args, t0, "Zero-one group overlaps m_jk")


if __name__ == "__main__":
    main(sys.argv[1:])
