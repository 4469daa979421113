"""DMFT solver cost: the Poisson (SGD) sample side is sparse.

Huber-on-tanh (noise_std 0.3, threshold 0.5), delta = 2, lr = 2, batch = 1, t_max = 8:
SGD vs SME on the same grid (800 steps) and paths; SGD cost vs the number of grid steps
(sparse: ~ n_t * jumps, not n_t^2); share of the parameter side in a cProfile run.
"""
import cProfile
import pstats

import dmft
from dmft import models

from _util import best_time, table

MODEL = models.huber_tanh(noise_std=0.3, threshold=0.5)
KW = dict(delta=2.0, lr=2.0, batch=1.0, t_max=8.0, progress=False, seed=0)


def run(dynamics, n_steps, n_paths):
    return dmft.solve(MODEL, dynamics=dynamics, dt=KW["t_max"] / n_steps, n_time=201, n_paths=n_paths,
                      **{k: v for k, v in KW.items()})


def main(compare_sme=True):
    n_paths = 2048
    run("sgd", 200, 256)  # compile
    if compare_sme:
        # SME tangents cost O(N^3) per path: few paths, every path carries tangents in both
        few = dict(n_paths=128)
        t_sgd = best_time(lambda: dmft.solve(MODEL, dynamics="sgd", dt=0.01, tangent_stride=1, **few, **KW), 1)
        t_sme = best_time(lambda: dmft.solve(MODEL, dynamics="sme", dt=0.01, tangent_stride=1, **few, **KW), 1)
        print(f"800 steps, 128 paths: SGD {t_sgd:.1f} s, SME {t_sme:.1f} s, SME/SGD = {t_sme / t_sgd:.0f}x\n")
    rows = []
    base = None
    for n_steps in (200, 400, 800, 1600):
        t = best_time(lambda: run("sgd", n_steps, n_paths), 1)
        base = base or t
        rows.append((n_steps, f"{t:.2f}", f"{t / base:.2f}", f"{(n_steps / 200):.0f}", f"{(n_steps / 200) ** 2:.0f}"))
    print("SGD solve time vs grid steps (t_max = 8, ~8 jumps per path)\n")
    print(table(["n_t", "seconds", "ratio", "linear", "quadratic"], rows))
    prof = cProfile.Profile()
    prof.enable()
    run("sgd", 800, n_paths)
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    # cumulative time of the parameter side's row update (method of dmft.solve._ParamSide)
    param = max((v[3] for k, v in stats.stats.items() if k[0].endswith("solve.py") and k[2] == "row"), default=0.0)
    print(f"\nparameter side (_ParamSide.row): {param:.2f} s of {total:.2f} s profiled ({param / total:.0%})")


if __name__ == "__main__":
    import sys

    main(compare_sme="--no-sme" not in sys.argv)
