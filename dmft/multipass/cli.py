"""Command line: ``dmft compare`` (SGD, SME, GF: theory vs simulation) and ``dmft sweep``.

``dmft`` with no arguments runs ``dmft compare`` on its built-in defaults (Huber loss on a
tanh teacher, ``delta = 2``, ``lr = 2``, ``batch = 1``, ``t_max = 4``) and writes
``results/compare.nc`` and ``results/compare.png``.

Exit codes: 0 success, 1 no point of a sweep succeeded (the points' errors are printed),
2 bad argument (the message names it), 3 divergence.
"""
from __future__ import annotations

import argparse
import re
import sys
import time

from .. import __version__
from .._cli import MODEL_HELP, HelpFormatter, file_backend, model_argument, output_folder, save_figure

# numpy, numba, scipy, xarray and matplotlib are imported by the commands, not here:
# ``dmft --help`` and ``dmft --version`` stay fast

#: ``dmft compare`` defaults: the README's main job
DEFAULTS = dict(model="huber-tanh", delta=2.0, lr=2.0, batch=1.0, t_max=4.0, dynamics="sgd,sme,gf", d=400,
                n_seeds=8, n_paths=None, n_time=41, ridge=0.0, seed=0)


def _floats(text: str) -> list:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _add_problem(p, sweepable: bool):
    kind = _floats if sweepable else float
    more = " (comma-separated values are swept)" if sweepable else ""
    p.add_argument("--model", default=DEFAULTS["model"], help=MODEL_HELP)
    p.add_argument("--delta", type=kind, default=DEFAULTS["delta"], help=f"samples per dimension n/d{more}")
    p.add_argument("--lr", type=kind, default=DEFAULTS["lr"], help=f"learning-rate scale eta_bar{more}")
    p.add_argument("--batch", type=kind, default=DEFAULTS["batch"], help=f"batch scale kappa_bar{more}")
    p.add_argument("--t-max", type=float, default=DEFAULTS["t_max"],
                   help="horizon; time t = SGD steps x batch size/(batch scale x n), one epoch is t = 1/batch scale")
    p.add_argument("--dynamics", default=DEFAULTS["dynamics"], help="comma-separated subset of sgd,sme,gf")
    p.add_argument("--d", type=int, default=DEFAULTS["d"], help="simulation dimension")
    p.add_argument("--n-seeds", type=int, default=DEFAULTS["n_seeds"], help="simulation data sets")
    p.add_argument("--n-paths", type=int, default=DEFAULTS["n_paths"], help="DMFT Monte Carlo paths (default: dmft.solve's per dynamics)")
    p.add_argument("--n-time", type=int, default=DEFAULTS["n_time"], help="output times")
    p.add_argument("--ridge", type=float, default=DEFAULTS["ridge"], help="ridge penalty lambda")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed")
    p.add_argument("--no-simulation", action="store_true", help="theory only")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--on-divergence", default="raise", choices=["raise", "truncate"],
                   help="on a divergence: stop with exit status 3 (raise), or keep the output times before it "
                        "(truncate)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dmft", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (sgd-dynamics) {__version__}")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("compare", help="SGD, SME and GF side by side, theory vs simulation (the default)",
                       formatter_class=HelpFormatter)
    _add_problem(c, sweepable=False)
    c.add_argument("--out", default="results", help="output folder for compare.nc and compare.png")
    c.add_argument("--stretch", type=float, default=None, metavar="T_FINE",
                   help="theory on a stretched time grid for long horizons: steps of dt up to T_FINE, then growing "
                        "with t (dmft.grids.Stretched(T_FINE)); default: uniform up to --t-max 8, "
                        "dmft.grids.Stretched() beyond")
    s = sub.add_parser("sweep", help="dmft compare over a grid of delta x lr x batch (resumable)",
                       formatter_class=HelpFormatter)
    _add_problem(s, sweepable=True)
    s.add_argument("--out", default="results/sweep", help="output folder (points/, sweep.nc, sweep.png)")
    s.add_argument("--scheduler", default=None,
                   help="dask scheduler address, or 'local' for a local cluster (default: serial)")
    s.add_argument("--no-resume", action="store_true", help="recompute points already written under --out")
    return p


def _common(args) -> dict:
    return dict(model=model_argument(args.model), t_max=args.t_max,
                dynamics=tuple(x.strip() for x in args.dynamics.split(",") if x.strip()),
                simulate=not args.no_simulation, d=args.d, n_seeds=args.n_seeds, n_paths=args.n_paths,
                n_time=args.n_time, ridge=args.ridge, on_divergence=args.on_divergence)


#: ``--scheduler``: 'local' or a dask scheduler address with a protocol or a port
_ADDRESS = re.compile(r"^(local|[a-z][a-z0-9+.-]*://\S+|[^\s:/]+:\d+)$")


def _scheduler(value):
    from .. import errors

    if value is not None and not _ADDRESS.match(value):
        raise errors.ParameterError(
            f"--scheduler={value!r} is not allowed: give 'local' or a dask scheduler address such as "
            "tcp://host:8786 or host:8786")
    return value


def _run_compare(args) -> int:
    import numpy as np

    from .. import grids, output, plotting
    from ._compare import compare

    out = output_folder(args.out)
    t0 = time.perf_counter()
    options = None if args.stretch is None else {"time_grid": grids.Stretched(args.stretch)}
    ds = compare(delta=args.delta, lr=args.lr, batch=args.batch, seed=args.seed, progress=not args.no_progress,
                 solve_options=options, **_common(args))
    if ds.attrs.get("truncated"):
        print(f"dmft compare: diverged at t = {ds.attrs['diverged_at']:.4g} (cause: "
              f"{ds.attrs['divergence_cause']}); the outputs stop before it")
    output.save(ds, out / "compare.nc")
    file_backend()
    save_figure(plotting.compare(ds), out / "compare.png")
    print(f"dmft compare: {time.perf_counter() - t0:.1f} s")
    if "simulation" in ds.source.values:
        print("max over time of |theory - simulation| test loss, in units of the combined standard error:")
        for dyn in ds.dynamics.values:
            th, sim = ds.test_loss.sel(dynamics=dyn, source="theory"), ds.test_loss.sel(dynamics=dyn,
                                                                                        source="simulation")
            se = np.hypot(ds.test_loss_sem.sel(dynamics=dyn, source="theory"),
                          ds.test_loss_sem.sel(dynamics=dyn, source="simulation"))
            diff = abs(th - sim)
            z = float((diff / se.where(se > 0)).max())
            print(f"  {dyn:4s} max |diff| = {float(diff.max()):.3e}  max |diff|/SE = {z:.2f}  "
                  f"final test loss theory {float(th[-1]):.4f}, simulation {float(sim[-1]):.4f}")
    print(f"wrote {out / 'compare.nc'} and {out / 'compare.png'}")
    return 0


def _run_sweep(args) -> int:
    import numpy as np

    from .. import plotting
    from ..sweep import sweep
    from ._compare import compare

    grid = {k: v for k, v in (("delta", args.delta), ("lr", args.lr), ("batch", args.batch))}
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    out = output_folder(args.out)
    client = _scheduler(args.scheduler)
    fixed = _common(args)
    on_divergence = fixed.pop("on_divergence")
    t0 = time.perf_counter()
    ds = sweep(compare, grid, fixed=fixed, seed=args.seed, out=out, client=client, resume=not args.no_resume,
               progress=not args.no_progress, on_divergence=on_divergence)
    n_bad = int((ds.status != "ok").sum())
    print(f"dmft sweep: {ds.status.size} points ({n_bad} not ok) in {time.perf_counter() - t0:.1f} s")
    for idx in zip(*np.nonzero(ds.status.values != "ok")):
        print("  " + ", ".join(f"{k}={ds[k].values[i]}" for k, i in zip(grid, idx)) + ": "
              + str(ds.error.values[idx]))
    if "test_loss" not in ds:
        print("no point succeeded: no figure")
        return 1
    file_backend()
    fig = plotting.sweep(ds, "test_loss")  # final test loss against the first swept parameter
    try:
        save_figure(fig, out / "sweep.png")
    except OSError as e:  # a finished sweep in a read-only folder
        print(f"could not write {out / 'sweep.png'}: {e}")
        return 0
    print(f"wrote {out / 'sweep.nc'} and {out / 'sweep.png'}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``dmft`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["compare"] + argv
    args = parser.parse_args(argv)
    from .. import errors

    try:
        if args.command == "sweep":
            return _run_sweep(args)
        return _run_compare(args)
    except (errors.ParameterError, errors.DivergenceError) as e:
        return errors.exit_status("dmft", e)


if __name__ == "__main__":
    sys.exit(main())
