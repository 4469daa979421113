"""ReLU unit, multi-pass SME: the DMFT against the simulation's finite-size trend.

The zoo's ``relu`` entry (``models.relu(1)``, ``delta = 2``, ``lr = 0.5``, batch 1,
``init_std = 1``, ``t_max = 4``, 21 output times; the SME simulated by Euler-Maruyama at the
zoo's step ``0.25 * 0.005 / lr``) at ``d = 500, 1000, 2000`` (128, 128 and 48 seeds), against
the default ``dmft.solve`` on 8 seeds (without its step check, which leaves the default's
numbers as they are; the solves warn that the response is noise-driven).

Per seed, the initial overlap ``m0 = w0 . w* / d`` is a control variate: its mean is 0
exactly (``w0`` is drawn independently of the teacher), so ``x(t) - beta(t) m0`` (``beta`` the
seeds' least-squares slope) has the mean of ``x(t)`` and a smaller spread. The means at the
three sizes are fitted by ``x(d) = x_inf + b / d`` (weighted least squares), and ``x_inf``
is compared with the theory at every output time, in combined standard errors. Writes
``relu_sme_finite_size.nc`` (the extrapolated curves, the per-size means and the theory)
under ``--out`` and prints the table (docs/gallery.md, model zoo).

``--step-check`` instead checks the simulation's own step, which a diffusion coefficient that
jumps at the kink could make converge slowly: ``d = 1000``, 32 seeds (seed 500) at the zoo's
step and at a quarter of it, the same data sets; prints the differences at ``t_max`` paired
per seed.

``python validation/relu_sme_finite_size.py [--quick] [--step-check]``
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

SETTING = dict(delta=2.0, batch=1.0, lr=0.5, init_std=1.0, dynamics="sme")
SIM_DT = 0.25 * 0.005 / SETTING["lr"]  # validation/zoo.py: SME_STEP * LR_DT / lr
SIZES = ((500, 128), (1000, 128), (2000, 48))
QUICK_SIZES = ((100, 4), (200, 4))
VARIABLES = ("test_loss", "norm", "overlap")


def _curves(ds) -> dict:
    """``{variable: array}`` of a ``k = k_star = 1`` run: (seeds, time) for a simulation, (time,)
    for a solve (the trailing student/teacher axes of length 1 dropped)."""
    return {v: ds[v].values.reshape(*ds[v].shape[:ds[v].dims.index("time") + 1]) for v in VARIABLES}


def controlled_mean(x: np.ndarray, m0: np.ndarray):
    """Mean and standard error over seeds of ``x`` (seeds, T) with the control variates
    ``m0`` (seeds,) or (seeds, c), whose expectations are 0: ``x - m0 beta`` per time, ``beta``
    the least-squares slopes of ``x`` on ``m0``. A degree of freedom is spent on each slope."""
    m = m0.reshape(len(m0), -1)
    n, c = m.shape
    dm = m - m.mean(0)
    beta = np.linalg.lstsq(dm, x - x.mean(0), rcond=None)[0]
    y = x - m @ beta
    return y.mean(0), y.std(0, ddof=1 + c) / np.sqrt(n)


def extrapolate(sizes, means: np.ndarray, sems: np.ndarray):
    """``x_inf`` and its standard error per time from ``x(d) = x_inf + b / d``, weighted least
    squares over the sizes (``means``, ``sems``: (sizes, T)); with two sizes the exact line."""
    X = np.column_stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, float)])
    out, se = np.empty(means.shape[1]), np.empty(means.shape[1])
    for t in range(means.shape[1]):
        s = sems[:, t]
        w = 1.0 / s**2 if np.all(s > 0) else np.ones(len(s))  # no spread (a fixed start): equal weights
        cov = np.linalg.inv(X.T @ (w[:, None] * X))
        out[t] = (cov @ X.T @ (w * means[:, t]))[0]
        se[t] = np.sqrt(cov[0, 0]) if np.all(s > 0) else 0.0
    return out, se


def _simulations(sizes, t_size, seed, progress):
    means, sems = {v: [] for v in VARIABLES}, {v: [] for v in VARIABLES}
    for i, (d, n_seeds) in enumerate(sizes):
        sim = dmft.simulate(models.relu(1), d=d, n_seeds=n_seeds, seed=seed + 100 * (i + 1), dt=SIM_DT,
                            progress=progress, max_runtime_s=None, **SETTING, **t_size)
        curves = _curves(sim)
        m0 = curves["overlap"][:, 0]
        for v in VARIABLES:
            m, se = controlled_mean(curves[v], m0)
            means[v].append(m)
            sems[v].append(se)
    return sim.time.values, {v: np.array(means[v]) for v in VARIABLES}, {v: np.array(sems[v]) for v in VARIABLES}


def _theory(n_seeds, t_size, extra, progress):
    """The default solve on ``n_seeds`` seeds: the seeds' mean and its SE (from their spread)."""
    runs = []
    for s in range(n_seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DiracResponseWarning: the noise-driven response
            runs.append(_curves(dmft.solve(models.relu(1), check_dt=False, seed=s, progress=progress,
                                           **SETTING, **t_size, **extra)))
    return {v: (np.mean([r[v] for r in runs], 0), np.std([r[v] for r in runs], 0, ddof=1) / np.sqrt(n_seeds))
            for v in VARIABLES}


def step_check(d, n_seeds, t_size, progress) -> dict:
    """``{variable: (mean, SE)}`` over seeds of the simulation at the zoo's step minus at a
    quarter of it, at ``t_max`` (the same data sets, teacher and start per seed)."""
    runs = [_curves(dmft.simulate(models.relu(1), d=d, n_seeds=n_seeds, seed=500, dt=dt, progress=progress,
                                  max_runtime_s=None, check_dt=False, **SETTING, **t_size))
            for dt in (SIM_DT, SIM_DT / 4)]
    out = {}
    for v in VARIABLES:
        out[v] = tuple(float(x) for x in _common.paired(runs[0][v][:, -1], runs[1][v][:, -1]))
        print(f"{v}: step {SIM_DT:g} minus {SIM_DT / 4:g} at t = {t_size['t_max']:g}: {_common.value(*out[v])}")
    return out


def main(argv=None):
    args = _common.parse(__doc__, argv, lambda p: p.add_argument("--step-check", action="store_true"))
    t0 = time.perf_counter()
    if args.step_check:
        return step_check(*((100, 4, dict(t_max=1.0, n_time=6)) if args.quick else (1000, 32, dict(t_max=4.0, n_time=5))),
                          not args.no_progress)
    sizes = QUICK_SIZES if args.quick else SIZES
    t_size = dict(t_max=1.0, n_time=6) if args.quick else dict(t_max=4.0, n_time=21)
    times, means, sems = _simulations(sizes, t_size, args.seed, not args.no_progress)
    theory = _theory(2 if args.quick else 8, t_size, dict(n_paths=4096) if args.quick else {}, not args.no_progress)
    d_list = [d for d, _ in sizes]
    ds = xr.Dataset(coords={"time": times, "d": d_list})
    rows = []
    for v in VARIABLES:
        x_inf, se_inf = extrapolate(d_list, means[v], sems[v])
        th, th_se = theory[v]
        comb = np.hypot(se_inf, th_se)
        live = comb > 1e-12 * np.abs(th).max()
        z = np.abs(th - x_inf)[live] / comb[live]
        ds[v + "_simulation"] = (("d", "time"), means[v], {"long_name": f"{v}, seeds' mean (control variate m0)"})
        ds[v + "_simulation_sem"] = (("d", "time"), sems[v])
        ds[v + "_extrapolated"] = (("time",), x_inf, {"long_name": f"{v}, simulation fitted to x_inf + b / d"})
        ds[v + "_extrapolated_sem"] = (("time",), se_inf)
        ds[v + "_theory"] = (("time",), th, {"long_name": f"{v}, default dmft.solve, seeds' mean"})
        ds[v + "_theory_sem"] = (("time",), th_se)
        rows.append({"variable": v, **{f"d = {d}": _common.value(m, se) for d, m, se in
                                      zip(d_list, means[v][:, -1], sems[v][:, -1])},
                     "d -> inf": _common.value(x_inf[-1], se_inf[-1]), "theory": _common.value(th[-1], th_se[-1]),
                     "max z over t": float(z.max()) if z.size else float("nan")})
    save(ds, rows, Path(args.out) / "relu_sme_finite_size.nc", sizes, SETTING, SIM_DT, t0, f"values at t = {times[-1]:g}; ")
    return rows


def save(ds, rows, path: Path, sizes, setting: dict, sim_dt: float, t0: float, note: str = ""):
    """Write a ReLU script's Dataset (with its setting in ``attrs``) to ``path`` and print its rows."""
    ds.attrs.update(model="relu", sizes=str(sizes), sim_dt=sim_dt, **{k: str(x) for k, x in setting.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    output.save(ds, path)
    _common.print_rows(rows)
    print(f"{note}wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
