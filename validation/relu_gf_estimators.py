"""ReLU unit, multi-pass GF: the kink's two response estimators against the simulation.

``models.relu(1)``, ``delta = 2``, ``lr = 0.5``, batch 1, ``init_std = 1``, ``t_max = 2``, 6
output times. The simulation (RK4 at the zoo's fixed step ``lr dt = 0.005``) at ``d = 2000``
and ``4000``: 128 and 64 seeds, in blocks of 64 (seeds from 1000 and 2000) and 32 (from 3000
and 4000). Per seed the initial overlap ``m0`` and ``q0 - 1`` are control variates (both of
mean 0: ``w0`` is drawn independently of the teacher, with ``E q0 = init_std^2``), and the
means are fitted by ``x(d) = x_inf + b / d``. The theory: ``dmft.solve`` with
``kink_response="boundary"`` (GF's default with one kink) and ``"smoothed"`` (extrapolated in
its width), seeds 0-3, 65536 paths, without the step check; their spread over the seeds is
their SE. Prints each estimator's largest ``|theory - x|`` in combined SE against ``d = 4000``
and ``d -> inf`` per variable, and writes ``relu_gf_estimators.nc`` under ``--out``
(docs/dmft_theory.md, "Kinks").

``python validation/relu_gf_estimators.py [--quick]``
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import dmft
from dmft import models

try:
    from validation import _common
    from validation.relu_sme_finite_size import VARIABLES, _curves, controlled_mean, extrapolate, save
except ImportError:  # run as a script from validation/
    import _common
    from relu_sme_finite_size import VARIABLES, _curves, controlled_mean, extrapolate, save

SETTING = dict(delta=2.0, batch=1.0, lr=0.5, init_std=1.0, dynamics="gf")
SIM_DT = 0.005 / SETTING["lr"]  # validation/zoo.py: LR_DT / lr
SIZES = ((2000, (1000, 2000), 64), (4000, (3000, 4000), 32))  # d, first seed of each block, seeds per block
QUICK_SIZES = ((100, (1000,), 4), (200, (2000,), 4))
ESTIMATORS = ("boundary", "smoothed")


def _simulation(d, blocks, per_block, t_size, progress):
    """The controlled means and SEs ``{variable: (mean, se)}`` over the blocks' seeds at ``d``."""
    runs = [_curves(dmft.simulate(models.relu(1), d=d, n_seeds=per_block, seed=s, dt=SIM_DT, progress=progress,
                                  max_runtime_s=None, **SETTING, **t_size)) for s in blocks]
    curves = {v: np.concatenate([r[v] for r in runs]) for v in VARIABLES}
    controls = np.column_stack([curves["overlap"][:, 0], curves["norm"][:, 0] - SETTING["init_std"] ** 2])
    return {v: controlled_mean(curves[v], controls) for v in VARIABLES}


def _theory(response, n_seeds, t_size, n_paths, progress):
    runs = []
    for s in range(n_seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the smoothed response's DiracResponseWarning
            runs.append(_curves(dmft.solve(models.relu(1), kink_response=response, n_paths=n_paths, seed=s,
                                           check_dt=False, progress=progress, **SETTING, **t_size)))
    return {v: (np.mean([r[v] for r in runs], 0), np.std([r[v] for r in runs], 0, ddof=1) / np.sqrt(n_seeds))
            for v in VARIABLES}


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    sizes = QUICK_SIZES if args.quick else SIZES
    t_size = dict(t_max=0.8, n_time=3) if args.quick else dict(t_max=2.0, n_time=6)
    progress = not args.no_progress
    sims = [_simulation(d, blocks, per, t_size, progress) for d, blocks, per in sizes]
    theory = {e: _theory(e, 2 if args.quick else 4, t_size, 4096 if args.quick else 65536, progress)
              for e in ESTIMATORS}
    d_list = [d for d, _, _ in sizes]
    ds = xr.Dataset(coords={"time": np.linspace(0.0, t_size["t_max"], t_size["n_time"]), "d": d_list,
                            "estimator": list(ESTIMATORS)})
    rows = []
    for v in VARIABLES:
        means, sems = np.array([s[v][0] for s in sims]), np.array([s[v][1] for s in sims])
        x_inf, se_inf = extrapolate(d_list, means, sems)
        ds[v + "_simulation"] = (("d", "time"), means, {"long_name": f"{v}, seeds' mean (control variates)"})
        ds[v + "_simulation_sem"] = (("d", "time"), sems)
        ds[v + "_extrapolated"] = (("time",), x_inf, {"long_name": f"{v}, simulation fitted to x_inf + b / d"})
        ds[v + "_extrapolated_sem"] = (("time",), se_inf)
        ds[v + "_theory"] = (("estimator", "time"), [theory[e][v][0] for e in ESTIMATORS])
        ds[v + "_theory_sem"] = (("estimator", "time"), [theory[e][v][1] for e in ESTIMATORS])
        for e in ESTIMATORS:
            th, th_se = theory[e][v]
            z = {name: np.abs(th - x)[1:] / np.hypot(th_se, s)[1:]
                 for name, x, s in ((f"d = {d_list[-1]}", means[-1], sems[-1]), ("d -> inf", x_inf, se_inf))}
            rows.append({"variable": v, "estimator": e, "theory at t_max": _common.value(th[-1], th_se[-1]),
                         f"d = {d_list[-1]}": _common.value(means[-1, -1], sems[-1, -1]),
                         "d -> inf": _common.value(x_inf[-1], se_inf[-1]),
                         **{f"max z vs {name}": float(x.max()) for name, x in z.items()}})
    save(ds, rows, Path(args.out) / "relu_gf_estimators.nc", sizes, SETTING, SIM_DT, t0)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
