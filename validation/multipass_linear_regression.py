"""Multi-pass linear regression (squared loss): SGD, SME and GF, DMFT vs simulation.

Also checks the DMFT gradient-flow test loss against the Marchenko-Pastur closed form of
docs/dmft_theory.md, section 7 (``delta = 2``, ``sigma^2 = 0.25``, ``lr = 0.5``): half of
``1.25, 0.718905, 0.557932, 0.460761, 0.434460`` at ``t = 0, 0.5, 1, 2, 5``.
"""
import sys
import time

import dmft
from dmft import plotting

try:
    from validation import _common
except ImportError:  # run as a script from validation/
    import _common

EXACT_GF = {0.0: 1.25 / 2, 0.5: 0.718905 / 2, 1.0: 0.557932 / 2, 2.0: 0.460761 / 2, 5.0: 0.434460 / 2}


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    size = (dict(t_max=2.0, n_time=21, d=200, n_seeds=4, n_paths=1024) if args.quick else
            dict(t_max=5.0, n_time=51, d=1000, n_seeds=16, n_paths=8192))
    ds = dmft.compare("linear_regression", delta=2.0, lr=0.5, batch=1.0, dynamics=("sgd", "sme", "gf"),
                      seed=args.seed, progress=not args.no_progress, **size)
    rows = []
    for dyn in ds.dynamics.values:
        rows += _common.error_rows(ds, ["test_loss", "train_loss", "overlap"], case=str(dyn),
                                   select={"dynamics": dyn})
    gf = ds.test_loss.sel(dynamics="gf", source="theory")
    gf_sem = ds.test_loss_sem.sel(dynamics="gf", source="theory")
    diffs = [(abs(float(gf.sel(time=t, method="nearest")) - v), float(gf_sem.sel(time=t, method="nearest")))
             for t, v in EXACT_GF.items() if 0 < t <= size["t_max"]]
    err = max(d for d, _ in diffs)
    rows.append(dict(case="gf theory", source="closed form", variable="test_loss", max_abs=err,
                     rel=err / EXACT_GF[0.0], max_z=max(d / s for d, s in diffs if s > 0)))
    fig = plotting.compare(ds, ["test_loss", "train_loss", "overlap"])
    return _common.finish("multipass_linear_regression", ds, fig, rows, args, t0,
                          "Multi-pass linear regression: DMFT vs simulation")


if __name__ == "__main__":
    main(sys.argv[1:])
