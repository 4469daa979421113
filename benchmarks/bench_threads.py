"""One thread against two on the default solves (issue 24, ``dmft._config.SOLVE_THREADS``).

Huber-on-tanh (``noise_std = 0.3``, ``threshold = 0.5``), ``delta = 2``, ``lr = 2``,
``batch = 1``, ``t_max = 4`` for SGD, SME and GF (their default paths, grids and step check),
and ``dmft.solve(huber_tanh())`` on every default. Each repetition runs the one-thread and
the two-thread solve back to back, alternating which goes first, after a compiling call; the
outputs must be equal bit for bit. Prints per solve the median and minimum wall times, the
ratios time(1 thread) / time(2 threads), and the CPU time of the two-thread solve over its
wall time (2: both cores were had; 1: the second core was busy with other work), with the
load average before and after (the machine may be shared).

Where the serial time goes, independently of the load: the phases that run on the parts'
threads (:data:`THREADED`) are timed in one one-thread solve; their share ``p`` of its time
gives Amdahl's bound ``1 / (1 - p / 2)`` on the ratio on two idle cores (``--phases``).

    PYTHONPATH=. python benchmarks/bench_threads.py --repeat 3 --phases
"""
import argparse
import os
import statistics
import time

import numpy as np

import dmft
from dmft import _config, models
from dmft.multipass import _kernels_solve, _solve
from _util import accumulate_time, table

HUBER = models.huber_tanh(noise_std=0.3, threshold=0.5)
SOLVES = {
    "sgd": lambda: dmft.solve(HUBER, delta=2, lr=2, batch=1, t_max=4, dynamics="sgd", progress=False),
    "sme": lambda: dmft.solve(HUBER, delta=2, lr=2, batch=1, t_max=4, dynamics="sme", progress=False),
    "gf": lambda: dmft.solve(HUBER, delta=2, lr=2, batch=1, t_max=4, dynamics="gf", progress=False),
    "defaults": lambda: dmft.solve(models.huber_tanh(), progress=False),
}
#: CPU time over wall time of a two-thread solve that had both cores to itself
BOTH_CORES = 1.7
#: the functions of dmft.multipass._solve that run on the parts' threads (none calls another;
#: a step check's solve calls them again, and is counted in them)
THREADED = ("_normals", "_integrate_parts", "_test_losses", "_test_loss_error")


def timed(fn, threads):
    _config.SOLVE_THREADS = threads
    t0, c0 = time.perf_counter(), time.process_time()
    ds = fn()
    wall = time.perf_counter() - t0
    return wall, ds, (time.process_time() - c0) / wall


def same(a, b):
    return all(np.array_equal(a[v].values, b[v].values, equal_nan=True) for v in a.data_vars)


#: the compiled kernels (nogil) that the parts call, besides the model-specialised ones
KERNELS = ("chol_rows", "chol_append", "row_products", "finish_row", "kernel_row", "row_sums", "shared_response",
           "grid_field")


def phases(fn):
    """``(time of a one-thread solve, {phase: its time})`` for the :data:`THREADED` phases, and
    ``"kernels"``: the time in compiled kernels (which release the GIL) inside ``_integrate_parts``;
    the rest of that phase is numpy and Python between them, which holds the GIL (mostly)."""
    spent = dict.fromkeys((*THREADED, "kernels"), 0.0)
    saved = {name: getattr(_solve, name) for name in THREADED}
    saved_kernels = {name: getattr(_kernels_solve, name) for name in KERNELS}
    specialise = _solve.specialise

    def wrap(name, f):
        return accumulate_time(spent, name, f)

    for name, f in saved.items():
        setattr(_solve, name, wrap(name, f))
    for name, f in saved_kernels.items():
        setattr(_kernels_solve, name, wrap("kernels", f))
    _solve.specialise = lambda template, **kw: wrap("kernels", specialise(template, **kw))
    try:
        total, _, _ = timed(fn, 1)
    finally:
        for name, f in saved.items():
            setattr(_solve, name, f)
        for name, f in saved_kernels.items():
            setattr(_kernels_solve, name, f)
        _solve.specialise = specialise
    return total, spent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--solves", nargs="+", default=list(SOLVES))
    ap.add_argument("--phases", action="store_true")
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows, bounds = [], []
    for name in args.solves:
        fn = SOLVES[name]
        timed(fn, 1)  # compile and load the kernels
        times, cpu = {1: [], 2: []}, []
        for r in range(args.repeat):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            out = {}
            for threads in order:
                t, out[threads], used = timed(fn, threads)
                times[threads].append(t)
                if threads == 2:
                    cpu.append(used)
            assert same(out[1], out[2]), f"{name}: two threads changed the numbers"
            print(name, {k: round(v[-1], 2) for k, v in times.items()}, f"CPU/wall {cpu[-1]:.2f}",
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
        ratios = [a / b for a, b in zip(times[1], times[2])]
        # repetitions whose two-thread solve had both cores (the other agents' runs come and go)
        free = [r for r, used in zip(ratios, cpu) if used >= BOTH_CORES]
        rows.append([name, f"{statistics.median(times[1]):.2f} ({min(times[1]):.2f})",
                     f"{statistics.median(times[2]):.2f} ({min(times[2]):.2f})",
                     f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}",
                     f"{min(cpu):.2f}-{max(cpu):.2f}",
                     f"{statistics.median(free):.2f} ({len(free)} of {len(ratios)})" if free else f"- (0 of {len(ratios)})"])
        if args.phases:
            total, spent = phases(fn)
            threaded = sum(spent[k] for k in THREADED)
            p = threaded / total
            glue = spent["_integrate_parts"] - spent["kernels"]
            print(name, f"one thread {total:.2f} s:", {k: round(v, 2) for k, v in spent.items()}, flush=True)
            bounds.append([name, f"{total:.2f}"] + [f"{spent[k]:.2f}" for k in THREADED]
                          + [f"{glue:.2f} ({glue / spent['_integrate_parts']:.0%})", f"{total - threaded:.2f}",
                             f"{p:.0%}", f"{1 / (1 - p / 2):.2f}"])
    _config.SOLVE_THREADS = 2
    print(f"\nload average {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after; {os.cpu_count()} cores\n")
    print(table(["solve", "1 thread: median (min) [s]", "2 threads: median (min) [s]", "ratio (median)",
                 "ratio range", "2 threads: CPU / wall", f"ratio with both cores (CPU / wall >= {BOTH_CORES})"],
                rows))
    if bounds:
        print()
        print(table(["solve", "1 thread [s]", *THREADED, "GIL glue in _integrate_parts", "serial rest",
                     "threaded share p", "bound 1/(1-p/2)"], bounds))


if __name__ == "__main__":
    main()
