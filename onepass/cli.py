"""Command line: ``onepass run`` puts the one-pass theory next to a finite-d simulation."""
from __future__ import annotations

import argparse
import sys
import time

from dmft import errors, models, output, plotting
from dmft.cli import output_folder

from . import data as _data
from .compare import compare


def _spectrum(name: str, alpha: float, beta: float):
    if name == "power_law":
        return _data.PowerLaw(alpha, beta)
    return name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onepass", description=__doc__)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="theory vs simulation for one-pass SGD")
    run.add_argument("--model", default="logistic", help="built-in model name (default: logistic)")
    run.add_argument("--data", default="binary", choices=["binary", "teacher"],
                     help="binary Gaussian mixture with hard labels, or teacher-student (soft labels)")
    run.add_argument("--spectrum", default="zero_one", choices=sorted(_data.SPECTRA), help="covariance spectrum")
    run.add_argument("--alpha", type=float, default=1.2, help="power-law eigenvalue exponent")
    run.add_argument("--beta", type=float, default=0.2, help="power-law mean exponent")
    run.add_argument("--d", type=int, default=1000, help="dimension")
    run.add_argument("--mean-norm", type=float, default=1.0, help="|mu|")
    run.add_argument("--lr", type=float, default=0.5, help="learning rate gamma")
    run.add_argument("--t-max", type=float, default=20.0, help="final time (steps/d)")
    run.add_argument("--n-time", type=int, default=41, help="output times")
    run.add_argument("--n-seeds", type=int, default=8, help="simulation seeds")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--hsgd", action="store_true", help="also run homogenized SGD")
    run.add_argument("--out", default="results", help="output folder")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--on-divergence", default="raise", choices=["raise", "truncate"],
                     help="on a divergence: stop with exit status 3 (raise), or keep the output times before it "
                          "(truncate)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["run"] + list(argv or []))
    try:
        out = output_folder(args.out)
        model = models.get(args.model)
        spectrum = _spectrum(args.spectrum, args.alpha, args.beta)
        if args.data == "binary":
            data = _data.binary_mixture(spectrum, d=args.d, mean_norm=args.mean_norm)
        else:
            data = _data.teacher_student(spectrum, d=args.d)
        t0 = time.perf_counter()
        sources = ("theory", "simulation", "hsgd") if args.hsgd else ("theory", "simulation")
        ds = compare(model, data, lr=args.lr, t_max=args.t_max, n_time=args.n_time, sources=sources,
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
    fig = plotting.compare(ds, names)
    fig.savefig(out / "onepass.png", dpi=120)
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
