"""One-pass AdaGrad-Norm learning rate: ODE vs SGD vs HSGD, and the reference numbers.

Least squares, ``K = I``, ``sigma = 0``, ``gamma = 1``, ``b0 = 1``: risk
``0.188224, 0.0736976, 0.00472399`` at ``t = 1, 2, 5``; ``gamma_t -> 0.700176``
(docs/onepass.md, "Reference values the tests use").
"""
import sys
import time

import onepass
from dmft import models, plotting

try:
    from validation import _common
except ImportError:
    import _common

EXACT = {1.0: 0.188224, 2.0: 0.0736976, 5.0: 0.00472399}


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    d, n_seeds = (200, 2) if args.quick else (1000, 8)
    data = onepass.data.teacher_student("identity", d=d)
    ds = onepass.compare(models.linear_regression(0.0), data, lr=onepass.AdaGradNorm(1.0, 1.0), t_max=5.0,
                         n_time=51, sources=("theory", "simulation", "hsgd"), n_seeds=n_seeds, seed=args.seed,
                         progress=not args.no_progress)
    rows = _common.error_rows(ds, ["risk", "lr"] if "lr" in ds else ["risk"], case=f"AdaGrad-Norm, d={d}")
    risk = ds.risk.sel(source="theory")
    err = max(abs(float(risk.sel(time=t, method="nearest")) - v) for t, v in EXACT.items())
    rows.append(dict(case="AdaGrad-Norm", source="closed form", variable="risk", max_abs=err,
                     rel=err / EXACT[1.0], max_z=float("nan")))
    fig = plotting.compare(ds, ["risk", "lr"])
    return _common.finish("onepass_adagrad", ds, fig, rows, args, t0, "One-pass AdaGrad-Norm")


if __name__ == "__main__":
    main(sys.argv[1:])
