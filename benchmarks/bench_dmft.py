"""DMFT solver cost: the Poisson (SGD) sample side is sparse.

Huber-on-tanh (noise_std 0.3, threshold 0.5), delta = 2, lr = 2, batch = 1, t_max = 8:
SGD vs SME on the same grid (800 steps) and paths; SGD cost vs the number of grid steps,
split by cProfile into the per-path sample side (sparse: ~ n_t * jumps, not n_t^2) and
the parameter side (independent of the number of paths).
"""
import cProfile
import pstats

import dmft
from dmft import models

from _util import best_time, table

MODEL = models.huber_tanh(noise_std=0.3, threshold=0.5)
KW = dict(delta=2.0, lr=2.0, batch=1.0, t_max=8.0, progress=False, seed=0,
          check_dt=False)  # the solver alone: no step check


def run(dynamics, n_steps, n_paths):
    return dmft.solve(MODEL, dynamics=dynamics, dt=KW["t_max"] / n_steps, n_time=201, n_paths=n_paths,
                      **{k: v for k, v in KW.items()})


PARAMETER_SIDE = {"row", "chol_rows", "row_products", "finish_row", "row_sums"}  # solve._ParamSide.row and its kernels
SAMPLE_SIDE = {"sample_cell_poisson", "sample_cell_dense", "shared_response", "grid_field", "train_losses"}


def profile(n_steps, n_paths):
    """Wall time and the self time of the parameter side and of the per-path sample side."""
    prof = cProfile.Profile()
    prof.enable()
    run("sgd", n_steps, n_paths)
    prof.disable()
    stats = pstats.Stats(prof)
    own = {"param": 0.0, "sample": 0.0}
    for (_, _, name), v in stats.stats.items():
        if name in PARAMETER_SIDE:
            own["param"] += v[2]
        elif name in SAMPLE_SIDE:
            own["sample"] += v[2]
    return stats.total_tt, own["param"], own["sample"]


def main(compare_sme=True):
    run("sgd", 200, 256)  # compile
    if compare_sme:
        # SME tangents cost O(N^3) per path: few paths, every path carries tangents in both
        few = dict(n_paths=128)
        t_sgd = best_time(lambda: dmft.solve(MODEL, dynamics="sgd", dt=0.01, tangent_stride=1, **few, **KW), 1)
        t_sme = best_time(lambda: dmft.solve(MODEL, dynamics="sme", dt=0.01, tangent_stride=1, **few, **KW), 1)
        print(f"800 steps, 128 paths: SGD {t_sgd:.1f} s, SME {t_sme:.1f} s, SME/SGD = {t_sme / t_sgd:.0f}x\n")
    for n_paths in (2048, 32768):
        rows = []
        base = None
        for n_steps in (200, 400, 800, 1600):
            total, param, sample = profile(n_steps, n_paths)
            base = base or (total, param, sample)
            rows.append((n_steps, f"{total:.2f}", f"{param:.2f} ({param / total:.0%})",
                         f"{sample:.2f} ({sample / total:.0%})", f"{sample / base[2]:.2f}", f"{n_steps / 200:.0f}",
                         f"{param / base[1]:.1f}"))
        print(f"\nSGD solve vs grid steps, {n_paths} paths (t_max = 8, ~8 jumps per path; cProfile self times)\n")
        print(table(["n_t", "total [s]", "parameter side [s]", "sample side [s]", "sample ratio", "linear",
                     "parameter ratio"], rows))


if __name__ == "__main__":
    import sys

    main(compare_sme="--no-sme" not in sys.argv)
