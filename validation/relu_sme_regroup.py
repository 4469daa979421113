"""ReLU unit, multi-pass SME: does the finite-path bias at the narrow kink width depend on the
paths per replica?

Each replica of a solve closes the DMFT on its own paths, so noise in a replica's kernels
that entered its closure squared would bias it like ``1 / (paths per replica)``. Here the
same paths are solved as 8, 4 and 2 replicas: with ``sampling='mc'`` the inputs of a path do
not depend on how the paths are grouped, so only the grouping changes. The zoo's ``relu``
entry (``models.relu(1)``, ``delta = 2``, ``lr = 0.5``, batch 1, ``init_std = 1``,
``t_max = 4``, 21 output times) at the narrow width alone (``kink_bandwidth = 0.1``, no width
extrapolation, no step check), 65536 paths, on several seeds; the differences between
groupings are paired per seed. Writes ``relu_sme_regroup.nc`` (dims ``seed``, ``replicas``,
``time``) under ``--out`` and prints, at ``t_max``, the mean over seeds per grouping and the
paired differences against 8 replicas (docs/dmft_theory.md, "Finite-path bias at the narrow
width").

``python validation/relu_sme_regroup.py [--quick]``
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import dmft
from dmft import models, output

try:
    from validation import _common
except ImportError:  # run as a script from validation/
    import _common

SETTING = dict(delta=2.0, batch=1.0, lr=0.5, init_std=1.0, dynamics="sme", kink_bandwidth=0.1,
               kink_extrapolate=False, check_dt=False, sampling="mc")
REPLICAS = (8, 4, 2)
VARIABLES = ("overlap", "test_loss", "tr_norm")


def _curves(ds) -> dict:
    return {"overlap": ds.overlap.values[:, 0, 0], "test_loss": ds.test_loss.values,
            "tr_norm": np.einsum("taa->t", ds.norm.values)}


def paired(x: np.ndarray, y: np.ndarray):
    """Mean and standard error over seeds of ``x - y`` (seeds, ...)."""
    d = x - y
    return d.mean(0), d.std(0, ddof=1) / np.sqrt(len(d))


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    seeds = range(args.seed, args.seed + (2 if args.quick else 16))
    size = dict(t_max=1.0, n_time=6, n_paths=1024) if args.quick else dict(t_max=4.0, n_time=21, n_paths=65536)
    runs = {v: [] for v in VARIABLES}
    for s in seeds:
        per = {v: [] for v in VARIABLES}
        for r in REPLICAS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DiracResponseWarning: the noise-driven response
                ds = dmft.solve(models.relu(1), n_replicas=r, seed=s, progress=not args.no_progress,
                                **SETTING, **size)
            for v, x in _curves(ds).items():
                per[v].append(x)
        for v in VARIABLES:
            runs[v].append(per[v])
    out = xr.Dataset({v: (("seed", "replicas", "time"), np.array(runs[v])) for v in VARIABLES},
                     coords={"seed": list(seeds), "replicas": list(REPLICAS), "time": ds.time.values})
    out.attrs.update(model="relu", **{k: str(x) for k, x in {**SETTING, **size}.items()})
    rows = []
    for v in VARIABLES:
        x = out[v].values[:, :, -1]
        row = {"variable": v}
        for i, r in enumerate(REPLICAS):
            row[f"{r} replicas"] = f"{x[:, i].mean():.4f}({x[:, i].std(ddof=1) / np.sqrt(len(x)) * 1e4:.0f})"
        for i, r in enumerate(REPLICAS[1:], 1):
            m, se = paired(x[:, 0], x[:, i])
            row[f"{REPLICAS[0]} - {r}"] = f"{m:+.4f}({se * 1e4:.0f})"
        rows.append(row)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    output.save(out, folder / "relu_sme_regroup.nc")
    header = list(rows[0])
    print(f"| {' | '.join(header)} |\n|{'---|' * len(header)}")
    for r in rows:
        print("| " + " | ".join(str(r[h]) for h in header) + " |")
    print(f"values at t = {out.time.values[-1]:g} over {len(out.seed)} seeds; "
          f"wrote {folder / 'relu_sme_regroup.nc'} in {time.perf_counter() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
