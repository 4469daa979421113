"""Wall time of the default ``dmft.solve`` of every zoo entry (``validation/zoo.py``).

The zoo's multi-pass settings in full mode (``delta = 2`` unless the entry says otherwise,
``batch = 1``, ``t_max = 4``, 21 output times), default ``dt``, ``n_paths`` and step check,
after a compiling call; one solve per entry and dynamics. The target of the validation
(issue 19) is 30 s on 2 cores.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import dmft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from validation.zoo import ZOO  # noqa: E402
from _util import table  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated zoo entries")
    parser.add_argument("--dynamics", default="sgd,sme,gf")
    args = parser.parse_args(argv)
    only = {n for n in args.only.split(",") if n}
    rows = []
    for entry in ZOO:
        if only and entry.name not in only:
            continue
        kw = {"delta": 2.0, "batch": 1.0, **entry.multipass}
        for dynamics in args.dynamics.split(","):
            model = entry.model()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dmft.solve(model, dynamics=dynamics, t_max=0.4, n_time=3, n_paths=1024, progress=False,
                           check_dt=False, **kw)
                t0 = time.perf_counter()
                try:
                    ds = dmft.solve(model, dynamics=dynamics, t_max=4.0, n_time=21, progress=False, **kw)
                    paths, dt = ds.attrs["n_paths"], f"{ds.attrs['dt']:.3g}"
                except dmft.errors.DivergenceError as e:  # the step check's refusal is a result too
                    paths, dt = "refused", f"{e.cause} at t = {e.time:.3g}"
                seconds = time.perf_counter() - t0
            rows.append((entry.name, dynamics, paths, dt, f"{seconds:.1f}", "yes" if seconds <= 30 else "no"))
            print(*rows[-1], flush=True, file=sys.stderr)
    print(table(("entry", "dynamics", "n_paths", "dt", "solve [s]", "<= 30 s"), rows))


if __name__ == "__main__":
    main()
