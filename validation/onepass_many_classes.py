"""One-pass softmax regression with ``C = 15`` classes at ``d = 500``: ODE vs SGD.

``k = C = 15`` student rows, 15 equiprobable classes with orthogonal means of norm 1
(quasi-Monte Carlo expectations in 15 dimensions).
"""
import sys
import time

import onepass
from dmft import models, plotting

try:
    from validation import _common
except ImportError:
    import _common


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    C, d = 15, 500
    n_seeds, t_max = (2, 1.0) if args.quick else (8, 5.0)
    data = onepass.data.multiclass_mixture(C, d=d)
    ds = onepass.compare(models.softmax_cross_entropy(C), data, lr=0.5, t_max=t_max, n_time=21, n_seeds=n_seeds,
                         seed=args.seed, progress=not args.no_progress)
    rows = _common.error_rows(ds, ["risk", "fisher_trace"], case=f"C={C}, d={d}")
    fig = plotting.compare(ds, [v for v in ("risk", "fisher_trace") if v in ds])
    return _common.finish("onepass_many_classes", ds, fig, rows, args, t0, f"Softmax, C = {C}, d = {d}")


if __name__ == "__main__":
    main(sys.argv[1:])
