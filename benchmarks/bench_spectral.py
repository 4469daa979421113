"""DMFT cost on anisotropic data: a G-group spectrum against the isotropic solve.

Huber-on-tanh (noise_std 0.3, threshold 0.5), delta = 2, lr = 2, batch = 1, t_max = 4,
21 output times, default grid and paths of each dynamics, no step check. Data: the
power law ``lam_i ∝ (i/d)^1.5`` (``Tr K/d = 1``), teacher ``x*_i^2 ∝ (i/d)^-0.5``,
``d = 1000``, ``onepass.Binned(G)`` groups; the same grid and paths as the isotropic
solve. A timer around ``_SpectralParamSide.row`` gives the spectral parameter side's share
(docs/performance.md, "Anisotropic data"). ``python bench_spectral.py 16 64 --threads 1
--repeat 2``: the group counts, ``dmft._config.SOLVE_THREADS`` (default 2) and the best of
how many solves each.
"""
import argparse
import importlib
import time

import numpy as np

import dmft
from dmft import _config, models
from onepass import data as D

from _util import accumulate_time, table

MODEL = models.huber_tanh(noise_std=0.3, threshold=0.5)
KW = dict(delta=2.0, lr=2.0, batch=1.0, t_max=4.0, n_time=21, progress=False, seed=0, check_dt=False)
solve_mod = importlib.import_module("dmft.multipass._solve")


def power_law(d=1000, alpha=1.5, beta=-0.5):
    u = np.arange(1, d + 1) / d
    xs = u ** (beta / 2)
    return D.gaussian_mixture(np.zeros((1, d)), [u**alpha / np.mean(u**alpha)],
                              teacher=(xs / np.linalg.norm(xs))[None], name="power_law")


def timed(fn):
    """Wall time of ``fn()`` and the time spent in ``_SpectralParamSide.row``."""
    row = solve_mod._SpectralParamSide.row
    spent = {"row": 0.0}
    solve_mod._SpectralParamSide.row = accumulate_time(spent, "row", row)
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0, spent["row"]
    finally:
        solve_mod._SpectralParamSide.row = row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", type=int, nargs="*", default=[1, 16, 64])
    ap.add_argument("--dynamics", nargs="+", default=["gf", "sme", "sgd"])
    ap.add_argument("--threads", type=int, default=_config.SOLVE_THREADS, help="dmft._config.SOLVE_THREADS")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all solves; the best of each")
    args = ap.parse_args(argv)
    _config.SOLVE_THREADS = args.threads
    data = power_law()
    for dynamics in args.dynamics:
        dmft.solve(MODEL, dynamics=dynamics, **{**KW, "t_max": 0.4, "n_time": 3}, data=data, groups=D.Binned(2))
        solves = {"isotropic": lambda: dmft.solve(MODEL, dynamics=dynamics, **KW)}
        for G in args.groups:
            solves[f"{G} groups"] = lambda G=G: dmft.solve(MODEL, dynamics=dynamics, **KW, data=data,
                                                           groups=D.Binned(G))
        best = dict.fromkeys(solves, (float("inf"), 0.0))
        for _ in range(args.repeat):  # rounds, so that a change of the machine's load hits every solve
            for name, fn in solves.items():
                best[name] = min(best[name], timed(fn))
        iso = best["isotropic"][0]
        rows = [(name, f"{total:.2f}", f"{total / iso:.2f}", f"{param:.2f} ({param / total:.0%})" if param else "")
                for name, (total, param) in best.items()]
        print(f"\n{dynamics.upper()} (default dt and n_paths), power law d = 1000, {args.threads} thread(s), "
              f"best of {args.repeat}\n")
        print(table(["solve", "time [s]", "/ isotropic", "spectral parameter side [s]"], rows), flush=True)


if __name__ == "__main__":
    main()
