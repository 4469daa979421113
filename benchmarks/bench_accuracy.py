"""Time to 1% total error: the DMFT vs finite-d simulation (Huber-on-tanh, SGD, SME, GF).

The DMFT gives the ``d -> inf`` test loss. A simulation at dimension ``d`` with ``s`` seeds
has total error ``|bias(d)| + SE``: the finite-size bias ``a/d`` is measured by a ``d``
sweep (weighted fit of the seed means to ``L_inf + a/d``), the per-seed spread
``sigma(d) = sigma_1 / sqrt(d)`` and the cost per seed are measured at each ``d``. The
simulation's time to 1% is ``min_d cost(d) * s(d)`` with ``s(d)`` the fewest seeds giving
``|a|/d + sigma(d)/sqrt(s) <= 1% L`` at every checked time (and, since the fitted ``a`` is
only bounded, again with ``|a| + 2 SE(a)`` in place of ``|a|``) (``d`` beyond the sweep uses the
fitted ``sigma`` and the cost model ``c0 + c2 d^2``, one step being ``O(n d)``; marked ``*``).
The DMFT's time to 1% (default ``sampling="qmc"``, default ``dt``) is sized the same way:
its standard error at ``REF_PATHS`` scales like ``1/sqrt(paths)`` to the fewest paths with
SE <= 1% at every checked time, and that solve is timed (its ``dt`` error is below the
Monte-Carlo error and not counted: docs/performance.md gives the GF ratio with it); its SE
and its distance to the extrapolated ``L_inf``, in combined standard errors, are printed.

Writes ``.results/accuracy.json`` next to this script. ~4 min on the 2-core machine.
"""
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import optimize

import dmft
from dmft import models

from _util import table

MODEL = models.huber_tanh(noise_std=0.3, threshold=0.5)
KW = dict(delta=2.0, lr=2.0, batch=1.0, t_max=4.0, n_time=5, progress=False)
SOLVE = {**KW, "check_dt": False}  # the solver alone: no step check
CHECK = [1, 2, 4]  # indices of the output times 1, 2, 4 (of 0, 1, 2, 3, 4)
TARGET = 0.01
MIN_SEEDS = 4  # fewer seeds give no usable standard error
SEEDS = {125: 96, 250: 64, 500: 32, 1000: 16}
REF_PATHS = {"sgd": 32768, "sme": 8192, "gf": 4096}  # the DMFT's SE is measured here, then scaled
REF_SEEDS = (1, 2, 3, 4, 5, 6)  # 6 x 8 replicas: the pooled SE is known to ~11% (paths to ~22%)
TIMED_SEEDS = (11, 12)  # the sized solve is timed on fresh seeds, best of these


def sweep(dynamics):
    rows = {}
    for d, s in SEEDS.items():
        dmft.simulate(MODEL, dynamics=dynamics, d=d, n_seeds=1, seed=99, **KW)  # compile / warm
        t0 = time.perf_counter()
        ds = dmft.simulate(MODEL, dynamics=dynamics, d=d, n_seeds=s, seed=1, **KW)
        cost = (time.perf_counter() - t0) / s
        loss = ds.test_loss.values[:, CHECK]  # (seed, time)
        rows[d] = dict(cost=cost, mean=loss.mean(0), sd=loss.std(0, ddof=1), seeds=s)
    return rows


def fit(rows):
    """Weighted least squares of the seed means on ``L_inf + a/d`` per checked time."""
    d = np.array(list(rows))
    mean = np.array([rows[x]["mean"] for x in d])  # (n_d, n_t)
    se = np.array([rows[x]["sd"] / math.sqrt(rows[x]["seeds"]) for x in d])
    L, a, seL, sea = [], [], [], []
    for j in range(mean.shape[1]):
        X = np.stack([np.ones_like(d, dtype=float), 1.0 / d], axis=1) / se[:, j, None]
        beta, *_ = np.linalg.lstsq(X, mean[:, j] / se[:, j], rcond=None)
        cov = np.linalg.inv(X.T @ X)
        L.append(beta[0])
        a.append(beta[1])
        seL.append(math.sqrt(cov[0, 0]))
        sea.append(math.sqrt(cov[1, 1]))
    # per-seed spread ~ sigma_1 / sqrt(d): one constant per time from all d
    sig1 = np.mean([rows[x]["sd"] * math.sqrt(x) for x in d], axis=0)
    return np.array(L), np.array(a), np.array(seL), np.array(sea), sig1


def sim_time_to_target(rows, L, bias, sig1):
    """Cheapest ``(seconds, d, seeds, extrapolated)`` with ``bias/d + SE <= 1% L``; ``bias`` per time."""
    d_meas = np.array(sorted(rows), dtype=float)
    cost_meas = np.array([rows[int(d)]["cost"] for d in d_meas])
    # one step of any of the three simulators costs O(n d) = O(delta d^2) per unit time:
    # cost(d) = c0 + c2 d^2 (non-negative least squares on the measured d)
    c0, c2 = optimize.nnls(np.stack([np.ones_like(d_meas), d_meas**2], axis=1), cost_meas)[0]
    best = None
    for d in [*rows, 2000, 4000, 8000]:  # d = 8000: X is n x d = 1 GB
        cost = rows[d]["cost"] if d in rows else c0 + c2 * d**2
        room = TARGET * np.abs(L) - bias / d
        if np.any(room <= 0):
            continue
        seeds = max(MIN_SEEDS, int(np.max(np.ceil((sig1 / math.sqrt(d) / room) ** 2))))
        t = seeds * cost
        if best is None or t < best[0]:
            best = (t, d, seeds, d not in rows)
    return best, (c0, c2)


def dmft_time_to_target(dynamics, L, seL):
    """The DMFT's paths are sized like the simulation's seeds: its relative standard error at
    ``REF_PATHS`` (worst checked time, pooled over ``REF_SEEDS`` solves) falls like
    ``1/sqrt(paths)``, which gives the fewest paths with SE <= 1%; that solve is timed (best
    over ``TIMED_SEEDS``) and its own SE reported."""
    dmft.solve(MODEL, dynamics=dynamics, n_paths=256, seed=0, **SOLVE)  # compile
    P0 = REF_PATHS[dynamics]
    ref = [dmft.solve(MODEL, dynamics=dynamics, n_paths=P0, seed=s, **SOLVE) for s in REF_SEEDS]
    # pooled: the mean of the squared SEs (one SE from 8 replicas is itself uncertain by ~27%)
    rel0 = float(np.max(np.sqrt(np.mean([(ds.test_loss_sem.values[CHECK] / np.abs(ds.test_loss.values[CHECK]))**2
                                         for ds in ref], axis=0))))
    # solve rounds the paths up to a multiple of n_replicas x tangent_stride (8 x 2 = 16)
    P = int(math.ceil(P0 * (rel0 / TARGET) ** 2 / 16) * 16)
    runs = []
    for seed in TIMED_SEEDS:
        t0 = time.perf_counter()
        ds = dmft.solve(MODEL, dynamics=dynamics, n_paths=P, seed=seed, **SOLVE)
        t = time.perf_counter() - t0
        v, se = ds.test_loss.values[CHECK], ds.test_loss_sem.values[CHECK]
        runs.append(dict(seconds=t, rel_se=float(np.max(se / np.abs(v))),
                         z_vs_Linf=float(np.max(np.abs(v - L) / np.hypot(se, seL))), test_loss=v.tolist()))
    best = min(runs, key=lambda r: r["seconds"])
    return dict(ref_paths=P0, ref_rel_se=rel0, paths=P, seconds=best["seconds"], runs=runs)


def main():
    dmft.solve(MODEL, dynamics="sgd", n_paths=256, seed=0, **SOLVE)  # compile
    report = {}
    summary = []
    for dyn in ("sgd", "sme", "gf"):
        rows = sweep(dyn)
        L, a, seL, sea, sig1 = fit(rows)
        best, (c0, c2) = sim_time_to_target(rows, L, np.abs(a), sig1)
        # the fitted a is consistent with 0 but only bounded: |a| + 2 SE(a) is what a user
        # who ran this sweep could rely on
        safe, _ = sim_time_to_target(rows, L, np.abs(a) + 2 * sea, sig1)
        chosen = dmft_time_to_target(dyn, L, seL)
        print(f"\n## {dyn.upper()}: d sweep (test loss at t = 1, 2, 4; seed means +- SE)\n")
        print(table(["d", "seeds", "s/seed", "t = 1", "t = 2", "t = 4"],
                    [(d, r["seeds"], f"{r['cost']:.2f}",
                      *(f"{m:.4f} +- {s / math.sqrt(r['seeds']):.4f}" for m, s in zip(r["mean"], r["sd"])))
                     for d, r in rows.items()]))
        print(f"\nfit L_inf + a/d: L_inf = {np.round(L, 4)} +- {np.round(seL, 4)}, a = {np.round(a, 3)} +- {np.round(sea, 3)}"
              f" (relative bias at d = 1000: {np.round(np.abs(a) / 1000 / L * 100, 2)}%), "
              f"per-seed sd = {np.round(sig1, 3)}/sqrt(d), cost per seed {c0:.2f} s + {c2:.3g} s d^2")
        print(f"\nDMFT: max relative SE {100 * chosen['ref_rel_se']:.2f}% at {chosen['ref_paths']} paths "
              f"(pooled over {len(REF_SEEDS)} seeds) -> {chosen['paths']} paths for 1%:\n")
        print(table(["seed", "seconds", "max SE [%]", "max |DMFT - L_inf| / SE"],
                    [(s, f"{r['seconds']:.2f}", f"{100 * r['rel_se']:.2f}", f"{r['z_vs_Linf']:.1f}")
                     for s, r in zip(TIMED_SEEDS, chosen["runs"])]))
        t_sim, d_best, s_best, extrap = best
        t_dmft = chosen["seconds"]
        summary.append((dyn.upper(), f"{t_dmft:.2g} ({chosen['paths']} paths)",
                        f"{t_sim:.2g}{'*' if extrap else ''} (d = {d_best}, {s_best} seeds)", f"{t_sim / t_dmft:.2g}x",
                        f"{safe[0]:.2g}{'*' if safe[3] else ''} (d = {safe[1]}, {safe[2]} seeds)",
                        f"{safe[0] / t_dmft:.2g}x"))
        report[dyn] = dict(
            sweep={str(d): {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for d, r in rows.items()},
            L_inf=L.tolist(), L_inf_se=seL.tolist(), a=a.tolist(), a_se=sea.tolist(), sigma_1=sig1.tolist(),
            cost_model=[c0, c2], dmft=chosen, sim_best=dict(seconds=t_sim, d=d_best, seeds=s_best, extrapolated=extrap),
            sim_best_bias_bound=dict(seconds=safe[0], d=safe[1], seeds=safe[2], extrapolated=safe[3]))
    print("\n## Time to 1% total error (test loss at t = 1, 2, 4)\n")
    print(table(["dynamics", "DMFT [s]", "simulation, bias |a| [s]", "ratio", "simulation, bias |a| + 2 SE(a) [s]",
                 "ratio"], summary))
    out = Path(__file__).with_name(".results") / "accuracy.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
