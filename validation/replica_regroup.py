"""Does a solve's finite-path bias follow the paths per replica? The same paths, regrouped.

Each replica of a solve closes the DMFT on its own paths, so noise in a replica's kernels
that entered its closure nonlinearly would bias it like ``1 / (paths per replica)``. Here the
same paths are solved as 8, 4 and 2 replicas: with ``sampling='mc'`` the inputs of a path do
not depend on how the paths are grouped, so only the grouping changes; the differences
between groupings are paired per seed. Two cases (``--case``):

* ``relu_sme`` (default): the zoo's ``relu`` entry (``models.relu(1)``, ``delta = 2``,
  ``lr = 0.5``, batch 1, ``init_std = 1``, ``t_max = 4``, 21 output times), SME at the narrow
  width alone (``kink_bandwidth = 0.1``, no width extrapolation, no step check), 65536 paths,
  16 seeds (docs/dmft_theory.md, "Finite-path bias at the narrow width");
* ``huber_sgd_long``: Huber-on-tanh (``noise_std = 0.3``, ``threshold = 0.5``), ``delta = 2``,
  ``lr = 2``, batch 1, SGD to ``t_max = 32`` (17 output times), 4096 paths, 8 seeds
  (docs/performance.md, "Long horizons").

Writes ``<case>_regroup.nc`` (dims ``seed``, ``replicas``, ``time``) under ``--out`` and
prints, at ``t_max``, the mean over seeds per grouping and the paired differences against 8
replicas.

``python validation/replica_regroup.py [--case relu_sme|huber_sgd_long] [--quick]``
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

#: per case: the model, the solve's arguments, the full (t_max, n_time, n_paths, seeds) and the quick ones
CASES = {
    "relu_sme": (lambda: models.relu(1),
                 dict(delta=2.0, batch=1.0, lr=0.5, init_std=1.0, dynamics="sme", kink_bandwidth=0.1,
                      kink_extrapolate=False, check_dt=False, sampling="mc"),
                 (4.0, 21, 65536, 16), (1.0, 6, 1024, 2)),
    "huber_sgd_long": (lambda: models.huber_tanh(noise_std=0.3, threshold=0.5),
                       dict(delta=2.0, batch=1.0, lr=2.0, dynamics="sgd", sampling="mc"),
                       (32.0, 17, 4096, 8), (1.0, 3, 512, 2)),
}
REPLICAS = (8, 4, 2)
VARIABLES = ("overlap", "test_loss", "tr_norm")


def _curves(ds) -> dict:
    return {"overlap": ds.overlap.values[:, 0, 0], "test_loss": ds.test_loss.values,
            "tr_norm": np.einsum("taa->t", ds.norm.values)}


def main(argv=None):
    args = _common.parse(__doc__, argv, lambda p: p.add_argument("--case", choices=sorted(CASES), default="relu_sme"))
    t0 = time.perf_counter()
    case = args.case
    model, setting, full, quick = CASES[case]
    t_max, n_time, n_paths, n_seeds = quick if args.quick else full
    seeds = range(args.seed, args.seed + n_seeds)
    size = dict(t_max=t_max, n_time=n_time, n_paths=n_paths)
    runs = {v: [] for v in VARIABLES}
    for s in seeds:
        per = {v: [] for v in VARIABLES}
        for r in REPLICAS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DiracResponseWarning: the noise-driven response
                ds = dmft.solve(model(), n_replicas=r, seed=s, progress=not args.no_progress, **setting, **size)
            for v, x in _curves(ds).items():
                per[v].append(x)
        for v in VARIABLES:
            runs[v].append(per[v])
    out = xr.Dataset({v: (("seed", "replicas", "time"), np.array(runs[v])) for v in VARIABLES},
                     coords={"seed": list(seeds), "replicas": list(REPLICAS), "time": ds.time.values})
    out.attrs.update(case=case, **{k: str(x) for k, x in {**setting, **size}.items()})
    rows = []
    for v in VARIABLES:
        x = out[v].values[:, :, -1]
        row = {"variable": v}
        for i, r in enumerate(REPLICAS):
            row[f"{r} replicas"] = _common.value(x[:, i].mean(), x[:, i].std(ddof=1) / np.sqrt(len(x)))
        for i, r in enumerate(REPLICAS[1:], 1):
            row[f"{REPLICAS[0]} - {r}"] = _common.value(*_common.paired(x[:, 0], x[:, i]), sign=True)
        rows.append(row)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    output.save(out, folder / f"{case}_regroup.nc")
    _common.print_rows(rows)
    print(f"values at t = {out.time.values[-1]:g} over {len(out.seed)} seeds; "
          f"wrote {folder / f'{case}_regroup.nc'} in {time.perf_counter() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
