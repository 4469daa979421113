"""The dense drivers' tangents and the kink pair on two cores (issue 19).

1. ``chunked_tangents`` (one row ``j`` of the backward recursion over a replica's tangent
   paths) at the solver's block size against one block of all paths, for ``k = 1, 2`` and
   rows ``j = 100 .. 400``: the ratio of wall times in one run (best of 5).
2. The default ``dmft.solve`` of the zoo's ReLU entries (``relu(1)``, ``relu(2)``,
   ``delta = 2``, ``lr = 0.5``, ``init_std = 1``, ``t_max = 4``, 21 output times, with the
   step check), SME and GF: the kink extrapolation's solve at twice the width after the
   solve on one thread (``dmft._config.COMPANION_THREAD = False``) against beside it on a
   second thread, alternated, ``--repeat`` times each.
"""
import argparse
import time

import numpy as np

import dmft
from dmft import _config, models
from dmft.multipass._kernels_solve import chunked_tangents
from _util import best_time, table


def kernel_rows():
    rows = []
    for k, j, M in ((1, 100, 8192), (2, 100, 8192), (1, 400, 4096), (2, 200, 4096)):
        rng = np.random.default_rng(0)
        N = j + 1
        Rm = 0.5 * rng.standard_normal((N, N, k, k))
        paths = (rng.standard_normal((N, M)), 0.3 + 0.1 * rng.standard_normal((N, M)),
                 0.3 * rng.standard_normal((N, k, k, M)), rng.standard_normal((k, k, M)),
                 np.zeros((0, k, k, 0)), np.zeros((k, k, 0)))  # no boundary terms' seeds
        paths = tuple(x.astype(np.float32) for x in paths)  # stored so by the solver
        paths += ((np.zeros(0), np.zeros(0), np.zeros((0, k, k, 0), np.float32),
                   np.zeros((k, k, 0), np.float32)),)  # no signed noise
        out, out0 = np.empty((N, k, k)), np.empty((k, k))
        chunk = max(32, _config.TANGENT_CHUNK_PATHS // k)
        chunked_tangents(Rm, j, 0.1, paths, chunk, out, out0)  # compile
        whole = best_time(lambda: chunked_tangents(Rm, j, 0.1, paths, M, out, out0), 5)
        blocks = best_time(lambda: chunked_tangents(Rm, j, 0.1, paths, chunk, out, out0), 5)
        rows.append((k, j, M, chunk, f"{whole * 1e3:.1f}", f"{blocks * 1e3:.1f}", f"{whole / blocks:.2f}"))
    return table(("k", "row j", "paths", "block", "one block [ms]", "blocks [ms]", "ratio"), rows)


def solve_rows(repeat: int):
    rows = []
    for k in (1, 2):
        for dynamics in ("sme", "gf"):
            kw = dict(dynamics=dynamics, delta=2.0, lr=0.5, init_std=1.0, t_max=4.0, n_time=21, progress=False)
            dmft.solve(models.relu(k), **{**kw, "t_max": 0.4, "n_time": 3, "n_paths": 2048})  # compile
            times = {False: [], True: []}
            for _ in range(repeat):
                for threaded in (False, True):
                    _config.COMPANION_THREAD = threaded
                    t0 = time.perf_counter()
                    dmft.solve(models.relu(k), **kw)
                    times[threaded].append(time.perf_counter() - t0)
            _config.COMPANION_THREAD = True
            one, two = np.median(times[False]), np.median(times[True])
            rows.append((f"relu({k})", dynamics, f"{one:.1f}", f"{two:.1f}", f"{one / two:.2f}"))
    return table(("model", "dynamics", "one thread [s]", "companion thread [s]", "ratio"), rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--kernel-only", action="store_true")
    args = parser.parse_args()
    print(kernel_rows())
    if not args.kernel_only:
        print()
        print(solve_rows(args.repeat))
