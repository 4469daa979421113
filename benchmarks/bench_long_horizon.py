"""Where the time of a long-horizon ``dmft.solve`` goes (issue 24).

Huber-on-tanh, ``lr = 2``, ``batch = 1``, 4096 paths, default ``dt``; SGD and GF at
``t_max = 4, 8, 16``. Wall time per phase of the step loop (timers wrapped around the
parameter side ``_ParamSide.row``, the factor rows ``_kernels_solve.chol_rows`` and the
sample side ``sample_cell``; the rest is everything else) and the scaling exponent of each
phase in the number of grid steps ``N`` (least squares of ``log time`` on ``log N``).
``--profile`` also prints the top cProfile entries of the largest solve. ``--threads``
instead times solves on 1 and 2 numba threads back to back (``numba.set_num_threads``),
``--repeat`` times each, and prints the ratios per phase. The grid is uniform;
``--stretched T_FINE MAX_RATIO`` solves on ``dmft.grids.Stretched(T_FINE, MAX_RATIO)``
(``--replicas`` of them) and adds the largest test-loss standard error relative to the test
loss over the output times after 0.
"""
import argparse
import cProfile
import pstats
import time

import numba
import numpy as np

import dmft
from dmft import _config
from dmft.multipass import _kernels_solve
from dmft.multipass import _solve as solve_mod
from _util import accumulate_time, table
PHASES = ("param_side", "chol_rows", "sample_cell", "rest")


class Timers:
    def __init__(self):
        self.t = dict.fromkeys(PHASES, 0.0)

    def wrap(self, name, fn):
        return accumulate_time(self.t, name, fn)


def timed_solve(dynamics, t_max, n_paths, seed=0, **kw):  # n_paths None: the default
    timers = Timers()
    row, spec = solve_mod._ParamSide.row, solve_mod.specialise
    chol, cholp = _kernels_solve.chol_rows, _kernels_solve.chol_rows_parallel

    def specialise(template, **kw):
        kernel = spec(template, **kw)
        sample_side = template in (_kernels_solve.sample_cell_poisson, _kernels_solve.sample_cell_dense)
        return timers.wrap("sample_cell", kernel) if sample_side else kernel

    solve_mod._ParamSide.row = timers.wrap("param_side", row)
    _kernels_solve.chol_rows = timers.wrap("chol_rows", chol)
    _kernels_solve.chol_rows_parallel = timers.wrap("chol_rows", cholp)
    solve_mod.specialise = specialise
    try:
        t0 = time.perf_counter()
        ds = dmft.solve(dmft.models.huber_tanh(), lr=2.0, batch=1.0, dynamics=dynamics, t_max=t_max,
                        n_paths=n_paths, seed=seed, progress=False, check_dt=False, max_runtime_s=None, **kw)
        total = time.perf_counter() - t0
    finally:
        solve_mod._ParamSide.row, solve_mod.specialise = row, spec
        _kernels_solve.chol_rows, _kernels_solve.chol_rows_parallel = chol, cholp
    timers.t["rest"] = total - sum(v for key, v in timers.t.items() if key != "rest")
    # after "rest": the largest relative SE of the test loss is not a phase
    return ds.attrs["n_steps"], total, {**timers.t, "rel_se": float((ds.test_loss_sem / ds.test_loss).values[1:].max())}


def exponent(ns, ts):
    return float(np.polyfit(np.log(ns), np.log(np.maximum(ts, 1e-9)), 1)[0])


def threads(cases, repeat):
    _config.PARALLEL = True
    rows = []
    for dyn, T, paths in cases:
        timed_solve(dyn, 1.0, 64)
        ratios = {p: [] for p in ("total", *PHASES)}
        for _ in range(repeat):
            t = {}
            for nt in (1, 2):  # back to back
                numba.set_num_threads(nt)
                _, total, per = timed_solve(dyn, T, paths)
                t[nt] = {"total": total, **per}
            for p in ratios:
                ratios[p].append(t[1][p] / max(t[2][p], 1e-9))
            print(dyn, T, paths, {p: round(v[-1], 2) for p, v in ratios.items()}, round(t[1]["total"], 2), flush=True)
        rows.append([dyn.upper(), f"{T:g}", paths or "default"]
                    + [f"{min(v):.2f}-{max(v):.2f}" for v in ratios.values()])
    print(table(["dynamics", "t_max", "paths", "total", *PHASES], rows))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=4096)
    ap.add_argument("--t-max", type=float, nargs="+", default=[4, 8, 16])
    ap.add_argument("--dynamics", nargs="+", default=["sgd", "gf"])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--threads", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stretched", type=float, nargs=2, default=None, metavar=("T_FINE", "MAX_RATIO"))
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--tangent-stride", type=int, default=None)
    ap.add_argument("--max-memory-gb", type=float, default=4.0)
    args = ap.parse_args()
    # the uniform grid unless --stretched (dmft.solve's default stretches beyond t_max = 8)
    kw = {"n_replicas": args.replicas, "tangent_stride": args.tangent_stride, "max_memory_gb": args.max_memory_gb,
          "time_grid": dmft.grids.Stretched(*args.stretched) if args.stretched else dmft.grids.Uniform()}
    if args.threads:
        threads([("sgd", 4.0, None), ("sgd", 8.0, args.paths), ("gf", 8.0, args.paths)], args.repeat)
        return
    for dyn in args.dynamics:
        timed_solve(dyn, 1.0, 64)  # compile / load the kernels
        rows, ns, per = [], [], {p: [] for p in PHASES}
        for T in args.t_max:
            N, total, t = timed_solve(dyn, T, args.paths, **kw)
            ns.append(N)
            for p in PHASES:
                per[p].append(t[p])
            rows.append([f"{T:g}", N, f"{total:.2f}"] + [f"{t[p]:.2f} ({t[p] / total:.0%})" for p in PHASES]
                        + [f"{t['rel_se']:.2%}"])
            print(dyn, T, N, f"{total:.2f}", {p: round(t[p], 2) for p in PHASES}, f"SE {t['rel_se']:.2%}", flush=True)
        tot = [sum(per[p][i] for p in PHASES) for i in range(len(ns))]
        rows.append(["exponent in N", "", f"{exponent(ns, tot):.2f}"] + [f"{exponent(ns, per[p]):.2f}" for p in PHASES]
                    + [""])
        print(f"\n{dyn.upper()}, {args.paths} paths, {kw}\n")
        print(table(["t_max", "N", "total [s]", "parameter side", "chol_rows", "sample_cell", "rest",
                     "largest SE / test loss"], rows))
        if args.profile:
            pr = cProfile.Profile()
            pr.enable()
            timed_solve(dyn, args.t_max[-1], args.paths)
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
