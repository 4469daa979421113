"""One-pass binary logistic regression: risk and alignment for four covariance spectra.

Identity, zero-one (two classes, eigenvalues in {0, 1}), mild power law
``PowerLaw(alpha=1.2, beta=1.0)`` and extreme power law ``PowerLaw(1.2, 0.2)``
(docs/onepass.md, "Data"). Exact ODE vs finite-d SGD (mean of seeds).
"""
import sys
import time

import matplotlib.pyplot as plt
import xarray as xr

import onepass
from dmft import plotting

try:
    from validation import _common
except ImportError:
    import _common

CASES = {"identity": "identity", "zero_one": "zero_one", "power law mild": onepass.data.PowerLaw(1.2, 1.0),
         "power law extreme": onepass.data.PowerLaw(1.2, 0.2)}


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    d, n_seeds, t_max = (200, 2, 5.0) if args.quick else (1000, 8, 20.0)
    fig, axes = plt.subplots(2, len(CASES), figsize=(3.6 * len(CASES), 6.4), squeeze=False)
    parts, rows = [], []
    for j, (case, spectrum) in enumerate(CASES.items()):
        data = onepass.data.binary_mixture(spectrum, d=d)
        ds = onepass.compare("logistic", data, lr=0.5, t_max=t_max, n_time=41, n_seeds=n_seeds, seed=args.seed,
                             progress=not args.no_progress)
        rows += _common.error_rows(ds, ["risk", "alignment"], case=case)
        plotting.compare(ds, ["risk", "alignment"], ax=axes[:, j])
        axes[0, j].set_title(case, fontsize=9)
        parts.append(ds[["risk", "risk_sem", "alignment", "alignment_sem", "runtime_s"]])
    fig.suptitle(f"one-pass logistic regression, d = {d}, lr = 0.5, {n_seeds} seeds", fontsize=9)
    fig.tight_layout()
    ds = xr.concat(parts, dim=xr.Variable("case", list(CASES)), combine_attrs="drop_conflicts")
    return _common.finish("onepass_risk", ds, fig, rows, args, t0, "One-pass risk and alignment, four spectra")


if __name__ == "__main__":
    main(sys.argv[1:])
