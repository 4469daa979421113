"""Phase retrieval, multi-pass GF: the DMFT's noise-driven Dirac term against the simulation.

The zoo's setting (``delta = 2``, ``lr = 0.2``, ``init_std = 1``, ``t_max = 4``, 21 output
times): ``dmft.simulate`` (``d = 1000``, 16 seeds, RK4 at ``lr dt = 0.005``) against
``dmft.solve`` without its step check at the default grid, at ``dt = 0.02``, with
``kink_bandwidth = 0.2`` and with ``kink_bandwidth = 0.2`` and 262144 paths. Every solve
follows the simulation to ``t ~ 0.8`` and turns noise-driven after; the finer grid is the
noisier (docs/dmft_theory.md, "Where the noise wins"), which is why the default solve is
refused with cause ``n_paths``. Writes ``phase_retrieval_dmft_noise.png`` and ``.nc`` (the
simulation) under ``--out``.

``python validation/phase_retrieval_dmft_noise.py [--quick]``
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import dmft
from dmft import models, output

try:
    from validation import _common
except ImportError:  # run as a script from validation/
    import _common

SETTING = dict(delta=2.0, batch=1.0, lr=0.2, init_std=1.0, dynamics="gf")
SOLVES = (("dt = 0.04 (default)", {}), ("dt = 0.02", dict(dt=0.02)), ("h = 0.2", dict(kink_bandwidth=0.2)),
          ("h = 0.2, 262144 paths", dict(kink_bandwidth=0.2, n_paths=262144)))


def _trace(x):
    return x.diagonal(axis1=-2, axis2=-1).sum(-1)


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    size = dict(t_max=2.0, n_time=11) if args.quick else dict(t_max=4.0, n_time=21)
    sim = dmft.simulate(models.phase_retrieval(), d=200 if args.quick else 1000, n_seeds=3 if args.quick else 16,
                        seed=args.seed, dt=0.005 / SETTING["lr"], progress=not args.no_progress, **SETTING, **size)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    t = sim.time.values
    for a, x in zip(ax, (sim.test_loss.values, _trace(sim.norm.values))):
        m, se = x.mean(0), x.std(0, ddof=1) / np.sqrt(x.shape[0])
        a.plot(t, m, "k-", lw=2, label=f"simulation d = {sim.attrs['d']}, {x.shape[0]} seeds")
        a.fill_between(t, m - 2 * se, m + 2 * se, color="k", alpha=0.15)
    for name, extra in SOLVES:
        if args.quick:
            extra = {**extra, "n_paths": 8192}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the noise warning is the point of the figure
            ds = dmft.solve(models.phase_retrieval(), check_dt=False, seed=args.seed, progress=not args.no_progress,
                            **SETTING, **size, **extra)
        for a, y, se in ((ax[0], ds.test_loss.values, ds.test_loss_sem.values),
                         (ax[1], _trace(ds.norm.values), np.sqrt(_trace(ds.norm_sem.values ** 2)))):
            line, = a.plot(ds.time, y, label=f"DMFT {name}")
            a.fill_between(ds.time, y - 2 * se, y + 2 * se, color=line.get_color(), alpha=0.15)
    ax[0].set_ylim(0.5, 0.8)
    ax[1].set_ylim(0.3, 1.3)
    ax[0].set_title("phase retrieval GF: test loss (+-2 SE)")
    ax[1].set_title("tr norm (+-2 SE)")
    for a in ax:
        a.set_xlabel("t")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    output.save(sim, out / "phase_retrieval_dmft_noise.nc")
    fig.savefig(out / "phase_retrieval_dmft_noise.png", dpi=110)
    print(f"wrote {out / 'phase_retrieval_dmft_noise'}.nc, .png in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
