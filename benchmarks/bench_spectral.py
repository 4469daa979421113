"""DMFT cost on anisotropic data: a G-group spectrum against the isotropic solve.

Huber-on-tanh (noise_std 0.3, threshold 0.5), delta = 2, lr = 2, batch = 1, t_max = 4,
21 output times, default grid and paths of each dynamics, no step check. Data: the
power law ``lam_i ∝ (i/d)^1.5`` (``Tr K/d = 1``), teacher ``x*_i^2 ∝ (i/d)^-0.5``,
``d = 1000``, ``onepass.Binned(G)`` groups; the same grid and paths as the isotropic
solve. A timer around ``_SpectralParamSide.row`` gives the spectral parameter side's share
(docs/performance.md, "Anisotropic data").
"""
import importlib
import sys
import time

import numpy as np

import dmft
from dmft import models
from onepass import data as D

from _util import accumulate_time, best_time, table

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


def main(groups=(1, 16, 64)):
    data = power_law()
    for dynamics in ("gf", "sme", "sgd"):
        dmft.solve(MODEL, dynamics=dynamics, **{**KW, "t_max": 0.4, "n_time": 3}, data=data, groups=D.Binned(2))
        iso = best_time(lambda: dmft.solve(MODEL, dynamics=dynamics, **KW), 1)
        rows = [("isotropic", f"{iso:.2f}", "1.00", "")]
        for G in groups:
            total, param = timed(lambda: dmft.solve(MODEL, dynamics=dynamics, **KW, data=data, groups=D.Binned(G)))
            rows.append((f"{G} groups", f"{total:.2f}", f"{total / iso:.2f}", f"{param:.2f} ({param / total:.0%})"))
        print(f"\n{dynamics.upper()} (default dt and n_paths), power law d = 1000\n")
        print(table(["solve", "time [s]", "/ isotropic", "spectral parameter side [s]"], rows))


if __name__ == "__main__":
    main(tuple(int(g) for g in sys.argv[1:]) or (1, 16, 64))
