"""Command line: ``onepass run`` puts the one-pass theory next to a finite-d simulation.

Exit codes: 0 success, 2 bad argument (the message names it), 3 divergence.
"""
from __future__ import annotations

import argparse
import sys
import time

from dmft import __version__
from dmft._cli import (MODEL_HELP, HelpFormatter, file_backend, import_function, model_argument, output_folder,
                      save_figure)

# numpy, numba, scipy, xarray and matplotlib are imported by the command, not here:
# ``onepass --help`` stays fast

#: ``onepass.data.SPECTRA``, listed without importing it
SPECTRUM_NAMES = ("identity", "power_law", "zero_one")

#: ``--spectrum`` default per ``--data``: the zero-one spectrum needs two classes
DEFAULT_SPECTRUM = {"binary": "zero_one", "teacher": "identity"}

#: ``--schedule`` names (``onepass.schedules``); anything with a ':' is a function of time
SCHEDULES = ("constant", "adagrad")


def _spectrum(args):
    from dmft import data as _data
    from dmft import errors

    name = args.spectrum or DEFAULT_SPECTRUM[args.data]
    if name == "zero_one" and args.data == "teacher":
        raise errors.ParameterError("--spectrum='zero_one' is not allowed with --data teacher: the zero-one "
                                    "spectrum has two classes; use identity or power_law")
    if name == "power_law":
        return _data.PowerLaw(args.alpha, args.beta)
    return name


def _schedule(args):
    """``--schedule`` with ``--lr`` (and ``--b0``): a float, ``AdaGradNorm`` or ``TimeDependent``."""
    from dmft import errors
    from dmft.schedules import AdaGradNorm, TimeDependent

    if args.schedule == "constant":
        return args.lr
    if args.schedule == "adagrad":
        return AdaGradNorm(lr=args.lr, b0=args.b0)
    if ":" not in args.schedule:
        raise errors.ParameterError(f"--schedule={args.schedule!r} is not allowed: give one of "
                                    f"{', '.join(SCHEDULES)} or module:function (a function of time t)")
    return TimeDependent(import_function("--schedule", args.schedule))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onepass", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (sgd-dynamics) {__version__}")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="theory vs simulation for one-pass SGD (the default)",
                         formatter_class=HelpFormatter)
    run.add_argument("--model", default="logistic", help=MODEL_HELP)
    run.add_argument("--data", default="binary", choices=["binary", "teacher"],
                     help="binary Gaussian mixture with hard labels, or teacher-student (soft labels)")
    run.add_argument("--spectrum", default=None, choices=SPECTRUM_NAMES,
                     help="covariance spectrum (default: zero_one with --data binary, identity with --data teacher)")
    run.add_argument("--alpha", type=float, default=1.2, help="power-law eigenvalue exponent")
    run.add_argument("--beta", type=float, default=0.2, help="power-law mean exponent")
    run.add_argument("--d", type=int, default=1000, help="dimension")
    run.add_argument("--mean-norm", type=float, default=1.0, help="|mu| (--data binary)")
    run.add_argument("--lr", type=float, default=0.5, help="learning rate gamma (AdaGrad-Norm: its numerator)")
    run.add_argument("--schedule", default="constant",
                     help="learning-rate schedule: constant (gamma = lr), adagrad (AdaGrad-Norm, "
                          "gamma = lr/sqrt(b0^2 + accumulated squared gradient norms)), or module:function, "
                          "a function t -> gamma of time t = steps/d in an importable module")
    run.add_argument("--b0", type=float, default=1.0, help="AdaGrad-Norm's b0 (--schedule adagrad)")
    run.add_argument("--t-max", type=float, default=20.0, help="final time t = steps/d")
    run.add_argument("--n-time", type=int, default=41, help="output times")
    run.add_argument("--n-seeds", type=int, default=8, help="simulation seeds")
    run.add_argument("--seed", type=int, default=0, help="seed")
    run.add_argument("--hsgd", action="store_true", help="also run homogenized SGD")
    run.add_argument("--out", default="results", help="output folder for onepass.nc and onepass.png")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--on-divergence", default="raise", choices=["raise", "truncate"],
                     help="on a divergence: stop with exit status 3 (raise), or keep the output times before it "
                          "(truncate)")
    return p


def main(argv=None) -> int:
    """Entry point of the ``onepass`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["run"] + argv
    args = build_parser().parse_args(argv)
    from dmft import data as _data
    from dmft import errors, output, plotting

    from ._compare import compare

    try:
        out = output_folder(args.out)
        model = model_argument(args.model)
        spectrum = _spectrum(args)
        lr = _schedule(args)
        if args.data == "binary":
            data = _data.binary_mixture(spectrum, d=args.d, mean_norm=args.mean_norm)
        else:
            data = _data.teacher_student(spectrum, d=args.d)
        t0 = time.perf_counter()
        sources = ("theory", "simulation", "hsgd") if args.hsgd else ("theory", "simulation")
        ds = compare(model, data, lr=lr, t_max=args.t_max, n_time=args.n_time, sources=sources,
                     n_seeds=args.n_seeds, seed=args.seed, progress=not args.no_progress,
                     on_divergence=args.on_divergence)
        t1 = time.perf_counter()
    except (errors.ParameterError, errors.DivergenceError) as e:
        return errors.exit_status("onepass", e)
    if ds.attrs.get("truncated"):
        print(f"onepass run: diverged at t = {ds.attrs['diverged_at']:.4g} (cause: {ds.attrs['divergence_cause']}); "
              "the outputs stop before it")
    output.save(ds, out / "onepass.nc")
    names = [v for v in ("risk", "alignment", "lr_threshold") if v in ds]
    file_backend()
    save_figure(plotting.compare(ds, names), out / "onepass.png")
    rt = dict(zip(ds.source.values, ds.runtime_s.values))
    print(f"theory {rt['theory']:.1f} s, simulation ({args.n_seeds} seeds, d={args.d}) {rt['simulation']:.1f} s; "
          + (f"hsgd {rt['hsgd']:.1f} s; " if args.hsgd else "") + f"total {t1 - t0:.1f} s")
    for src in ds.source.values[1:]:
        err = abs(ds.risk.sel(source="theory") - ds.risk.sel(source=src)).max()
        print(f"max |risk theory - {src} mean| = {float(err):.2e}")
    print(f"wrote {out / 'onepass.nc'} and {out / 'onepass.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
