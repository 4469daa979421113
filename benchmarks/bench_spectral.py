"""DMFT cost on anisotropic data: a G-group spectrum against the isotropic solve.

Huber-on-tanh (noise_std 0.3, threshold 0.5), delta = 2, lr = 2, batch = 1, t_max = 4,
21 output times, default grid and paths of each dynamics, no step check. Data: the
power law ``lam_i ∝ (i/d)^1.5`` (``Tr K/d = 1``), teacher ``x*_i^2 ∝ (i/d)^-0.5``,
``d = 1000``, ``onepass.Binned(G)`` groups; the same grid and paths as the isotropic
solve. cProfile splits the spectral solve into the groups' parameter-side kernels and
the rest (docs/performance.md, "Anisotropic data").
"""
import cProfile
import pstats
import sys

import numpy as np

import dmft
from dmft import models
from onepass import data as D

from _util import best_time, table

MODEL = models.huber_tanh(noise_std=0.3, threshold=0.5)
KW = dict(delta=2.0, lr=2.0, batch=1.0, t_max=4.0, n_time=21, progress=False, seed=0, check_dt=False)
PARAMETER_SIDE = {"row", "row_products", "kernel_row", "row_sums", "teacher_row", "_finish"}


def power_law(d=1000, alpha=1.5, beta=-0.5):
    u = np.arange(1, d + 1) / d
    xs = u ** (beta / 2)
    return D.gaussian_mixture(np.zeros((1, d)), [u**alpha / np.mean(u**alpha)],
                              teacher=(xs / np.linalg.norm(xs))[None], name="power_law")


def profiled(fn):
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    param = sum(v[2] for (_, _, name), v in stats.stats.items() if name in PARAMETER_SIDE)
    return stats.total_tt, param


def main(groups=(1, 16, 64)):
    data = power_law()
    for dynamics in ("gf", "sgd"):
        dmft.solve(MODEL, dynamics=dynamics, **{**KW, "t_max": 0.4, "n_time": 3}, data=data, groups=D.Binned(2))
        iso = best_time(lambda: dmft.solve(MODEL, dynamics=dynamics, **KW), 1)
        rows = [("isotropic", f"{iso:.2f}", "1.00", "")]
        for G in groups:
            total, param = profiled(lambda: dmft.solve(MODEL, dynamics=dynamics, **KW, data=data, groups=D.Binned(G)))
            rows.append((f"{G} groups", f"{total:.2f}", f"{total / iso:.2f}", f"{param:.2f} ({param / total:.0%})"))
        print(f"\n{dynamics.upper()} (default dt and n_paths), power law d = 1000\n")
        print(table(["solve", "time [s]", "/ isotropic", "groups' parameter side [s]"], rows))


if __name__ == "__main__":
    main(tuple(int(g) for g in sys.argv[1:]) or (1, 16, 64))
