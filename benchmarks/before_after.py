"""Every public entry on fixed seeds at small sizes, against numbers stored before a refactor.

A layout change (modules moved, imports redirected) must not change a single number. This
script runs each public entry of ``dmft`` and ``onepass`` (the solvers, simulators,
comparisons, sweeps, diagnostics, the Gaussian expectation engine, the invariant checks,
the figures' data and both command lines) through public names only, so the same script
runs on the tree before and after the change:

    python benchmarks/before_after.py --write   # on the commit before the change
    python benchmarks/before_after.py           # after it: compare, print a table

Values are stored in ``before_after_reference.json`` (full ``repr`` precision). The check
passes when every stored array is reproduced to ``RTOL`` relative (``ATOL`` absolute near
zero): the kernels are recompiled from moved modules, and the same source on the same CPU
gives the same bits; the tolerances only allow for round-off. Runtimes are not compared.
The reference belongs to one commit: a change that is meant to alter numbers needs a new
``--write`` on its parent first.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tree this script belongs to, not an installed copy

import dmft  # noqa: E402
import onepass  # noqa: E402
from dmft import models  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "before_after_reference.json"
#: round-off allowance: identical source gives identical bits, so any real change is far larger
RTOL, ATOL = 1e-12, 1e-14
#: variables that measure the machine, not the mathematics
UNCOMPARED = ("runtime_s", "sweep_runtime_s")

LIN = models.linear_regression(noise_std=0.5)
HUBER = models.huber_tanh(noise_std=0.3, threshold=0.5)
SMALL_SOLVE = dict(delta=2.0, lr=0.5, batch=1.0, t_max=1.0, n_time=5, progress=False)


def _script(name: str):
    """The console script ``name`` as this tree's pyproject.toml declares it (module:function)."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"][name]
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def _linear_sgd_moments():
    """``linear_sgd_moments``: a name of ``dmft.multipass``, formerly of the module ``dmft.simulate``."""
    try:
        return importlib.import_module("dmft.multipass").linear_sgd_moments
    except ImportError:
        return importlib.import_module("dmft.simulate").linear_sgd_moments


def _cli_output(script: str, argv: list, filename: str):
    from dmft import output

    with tempfile.TemporaryDirectory() as tmp:
        code = _script(script)([*argv, "--out", tmp])
        assert code == 0, (script, argv, code)
        return output.load(Path(tmp) / filename).load()


def _sweep():
    with tempfile.TemporaryDirectory() as tmp:
        return dmft.sweep(dmft.compare, {"lr": [0.25, 0.5]}, out=tmp, progress=False, seed=3,
                          fixed=dict(model=LIN, dynamics="gf", d=40, n_seeds=2, n_paths=256, t_max=0.5,
                                     n_time=3)).load()


def _moments():
    out = {}
    for name in ("linear_regression", "logistic", "huber_tanh", "relu", "phase_retrieval"):
        m = models.get(name)
        dim = m.k + m.k_star
        mean = np.linspace(0.1, 0.3, dim)
        cov = 0.5 * np.eye(dim) + 0.2
        moments = dmft.expectation.gaussian_moments(m, mean, cov)
        out.update({f"{name}.{k}": np.asarray(v, float) for k, v in moments._asdict().items()
                    if v is not None})
    return out


def _figure_data():
    """The plotted curves of ``dmft.plotting.compare`` (x and y of every line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = dmft.compare(LIN, dynamics="gf", d=40, n_seeds=2, n_paths=256, t_max=0.5, n_time=3, seed=1,
                      progress=False)
    fig = dmft.plotting.compare(ds)
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    out = {f"line{i}.{xy}": np.asarray(getattr(line, f"get_{xy}data")(), float)
           for i, line in enumerate(lines) for xy in ("x", "y")}
    plt.close(fig)
    return out


def _binary(spectrum, d=200):
    return onepass.data.binary_mixture(spectrum, d=d)


#: name -> a function of no arguments returning an xarray.Dataset or a dict of arrays
ENTRIES = {
    "dmft.solve sgd huber_tanh": lambda: dmft.solve(HUBER, dynamics="sgd", n_paths=1024, seed=1, **SMALL_SOLVE),
    "dmft.solve sme linear": lambda: dmft.solve(LIN, dynamics="sme", n_paths=1024, seed=2, **SMALL_SOLVE),
    "dmft.solve gf huber_tanh ridge": lambda: dmft.solve(HUBER, dynamics="gf", n_paths=512, ridge=0.1, seed=3,
                                                        **SMALL_SOLVE),
    "dmft.solve sgd mc times": lambda: dmft.solve(LIN, dynamics="sgd", n_paths=512, sampling="mc", seed=4,
                                                  times=[0.0, 0.1, 0.3, 1.0], delta=2.0, lr=0.5, progress=False),
    "dmft.solve gf logistic": lambda: dmft.solve("logistic", dynamics="gf", n_paths=512, seed=5, **SMALL_SOLVE),
    # a learning rate that is not a power of two (c = lr / batch rounds) with k = 2, kinks
    # without the extrapolation, and spectral data: where a re-compiled sum would show
    "dmft.solve gf committee k2 lr 0.7": lambda: dmft.solve(
        models.committee("tanh", 2), dynamics="gf", n_paths=512, seed=6, init_std=1.0,
        **{**SMALL_SOLVE, "lr": 0.7}),
    "dmft.solve sme relu kinks lr 0.7": lambda: dmft.solve(
        models.relu(1), dynamics="sme", n_paths=1024, seed=7, init_std=1.0, kink_extrapolate=False,
        **{**SMALL_SOLVE, "lr": 0.7}),
    "dmft.solve sgd power law lr 0.7": lambda: dmft.solve(
        LIN, dynamics="sgd", n_paths=1024, seed=8, data=dmft.data.teacher_student("power_law", d=100),
        groups=dmft.data.Binned(4), **{**SMALL_SOLVE, "lr": 0.7}),
    "dmft.simulate sgd": lambda: dmft.simulate(HUBER, dynamics="sgd", d=100, n_seeds=2, seed=1, **SMALL_SOLVE),
    "dmft.simulate sgd without_replacement alpha": lambda: dmft.simulate(
        LIN, dynamics="sgd", sampling="without_replacement", alpha=0.3, d=100, n_seeds=2, seed=2, **SMALL_SOLVE),
    "dmft.simulate sgd bernoulli": lambda: dmft.simulate(LIN, dynamics="sgd", sampling="bernoulli", d=100,
                                                         n_seeds=2, seed=3, **SMALL_SOLVE),
    "dmft.simulate sme": lambda: dmft.simulate(LIN, dynamics="sme", d=100, n_seeds=2, seed=4, **SMALL_SOLVE),
    "dmft.simulate gf": lambda: dmft.simulate(HUBER, dynamics="gf", d=100, n_seeds=2, seed=5, **SMALL_SOLVE),
    "linear_sgd_moments": lambda: _linear_sgd_moments()(LIN, d=30, n_seeds=2, seed=6, delta=2.0, lr=0.5,
                                                        t_max=1.0, n_time=5, progress=False),
    "dmft.compare": lambda: dmft.compare(LIN, dynamics=("sgd", "gf"), d=60, n_seeds=2, n_paths=512, t_max=0.5,
                                         n_time=3, seed=7, progress=False),
    "dmft.sweep": _sweep,
    "dmft.diagnostics.convergence_check": lambda: dmft.diagnostics.convergence_check(
        LIN, dynamics="gf", n_paths=256, dt=0.1, seed=8, **SMALL_SOLVE),
    "dmft.diagnostics.quadrature_error": lambda: {
        k: np.asarray(v, float) for k, v in dmft.diagnostics.quadrature_error(
            HUBER, np.array([0.1, 0.2]), np.array([[1.0, 0.3], [0.3, 0.8]])).items() if not isinstance(v, str)},
    "dmft.expectation.gaussian_moments": _moments,
    "dmft.testing.check_moments_finite": lambda: {
        k: np.asarray(v, float) for k, v in dmft.testing.check_moments_finite(
            models.logistic(), np.array([0.2]), np.array([[0.7]]), label=np.ones(1))._asdict().items()
        if v is not None},
    "dmft.plotting.compare": _figure_data,
    "onepass.solve logistic zero_one": lambda: onepass.solve("logistic", _binary("zero_one"), lr=0.5, t_max=4.0,
                                                             n_time=5, progress=False),
    "onepass.solve power law binned adagrad": lambda: onepass.solve(
        "linear_regression", onepass.data.teacher_student(onepass.data.PowerLaw(1.2, 0.2), d=400, seed=1),
        lr=onepass.AdaGradNorm(lr=0.5, b0=1.0), groups=onepass.Binned(16), t_max=4.0, n_time=5, progress=False),
    "onepass.simulate sgd": lambda: onepass.simulate("logistic", _binary("identity"), lr=0.5, t_max=2.0, n_time=5,
                                                     n_seeds=2, seed=2, workers=1, progress=False),
    "onepass.simulate hsgd": lambda: onepass.simulate("logistic", _binary("identity"), lr=0.5, t_max=2.0,
                                                      n_time=5, n_seeds=2, seed=3, dynamics="hsgd", dt=0.05,
                                                      workers=1, progress=False),
    "onepass.compare": lambda: onepass.compare(models.softmax_cross_entropy(3),
                                               onepass.data.multiclass_mixture(3, d=150, mean_norm=2.0), lr=0.5,
                                               t_max=2.0, n_time=4, n_seeds=2, seed=4, progress=False),
    "dmft cli compare": lambda: _cli_output("dmft", ["compare", "--model", "linear_regression", "--lr", "0.5",
                                                     "--t-max", "0.5", "--d", "40", "--n-seeds", "2", "--n-paths",
                                                     "64", "--n-time", "3", "--dynamics", "gf,sgd",
                                                     "--no-progress"], "compare.nc"),
    "dmft cli sweep": lambda: _cli_output("dmft", ["sweep", "--model", "linear_regression", "--lr", "0.25,0.5",
                                                   "--t-max", "0.5", "--d", "40", "--n-seeds", "2", "--n-paths",
                                                   "64", "--n-time", "3", "--dynamics", "gf", "--no-progress"],
                                          "sweep.nc"),
    "onepass cli run": lambda: _cli_output("onepass", ["run", "--spectrum", "identity", "--d", "200", "--t-max", "2",
                                                       "--n-time", "5", "--n-seeds", "2", "--no-progress"],
                                           "onepass.nc"),
}


def _arrays(result) -> dict:
    """Name -> values (floats as float arrays, strings as lists) of an entry's result."""
    if isinstance(result, dict):
        return {k: np.asarray(v) for k, v in result.items()}
    out = {}
    for name in sorted({*result.data_vars, *result.coords}):
        if name in UNCOMPARED:
            continue
        values = np.asarray(result[name].values)
        out[name] = values.astype(float) if values.dtype.kind in "biuf" else values.astype(str)
    return out


def _plain(values: np.ndarray):
    if values.dtype.kind == "f":
        return {"shape": list(values.shape), "float": [repr(float(x)) for x in values.ravel()]}
    return {"shape": list(values.shape), "str": [str(x) for x in values.ravel()]}


def _from_plain(stored: dict) -> np.ndarray:
    if "float" in stored:
        return np.array([float(x) for x in stored["float"]]).reshape(stored["shape"])
    return np.array(stored["str"], dtype=object).reshape(stored["shape"])


def _difference(ref: np.ndarray, new: np.ndarray):
    """(max abs difference, max relative difference, identical?) of two arrays of one shape."""
    if ref.shape != new.shape:
        return math.inf, math.inf, False
    if ref.dtype == object or new.dtype.kind in "UO":
        same = bool(np.all(ref.astype(str) == new.astype(str)))
        return (0.0, 0.0, True) if same else (math.inf, math.inf, False)
    both_nan = np.isnan(ref) & np.isnan(new)
    diff = np.where(both_nan, 0.0, np.abs(ref - new))
    if not np.all(np.isfinite(diff)):
        return math.inf, math.inf, False
    scale = np.maximum(np.abs(ref), ATOL / RTOL)
    return float(diff.max(initial=0.0)), float((diff / scale).max(initial=0.0)), bool(np.all(diff == 0))


def run(names) -> dict:
    results = {}
    for name in names:
        print(f"running {name}", file=sys.stderr, flush=True)
        results[name] = _arrays(ENTRIES[name]())
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help=f"store the numbers in {REFERENCE.name} (the 'before')")
    p.add_argument("--only", nargs="*", default=None, help="entries to run (default: all)")
    args = p.parse_args(argv)
    names = args.only or list(ENTRIES)
    results = run(names)
    if args.write:
        REFERENCE.write_text(json.dumps({n: {k: _plain(v) for k, v in r.items()} for n, r in results.items()},
                                        indent=0, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE} ({sum(len(r) for r in results.values())} arrays, {len(results)} entries)")
        return 0
    stored = json.loads(REFERENCE.read_text())
    rows, failed = [], 0
    for name in names:
        ref = {k: _from_plain(v) for k, v in stored[name].items()}
        new = results[name]
        missing = sorted(set(ref) ^ set(new))
        worst_abs = worst_rel = 0.0
        identical = not missing
        for key in sorted(set(ref) & set(new)):
            a, r, same = _difference(ref[key], new[key])
            worst_abs, worst_rel, identical = max(worst_abs, a), max(worst_rel, r), identical and same
        ok = not missing and worst_rel <= RTOL
        failed += not ok
        rows.append(f"| {name} | {len(ref)} | {'yes' if identical else 'no'} | {worst_abs:.1e} | {worst_rel:.1e} | "
                    f"{'ok' if ok else 'DIFFERENT'}{' (arrays added or missing: ' + ', '.join(missing) + ')' if missing else ''} |")
    print("| entry | arrays | bit-identical | max abs diff | max rel diff | status |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(names) - failed} of {len(names)} entries reproduce the stored numbers (rtol {RTOL:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
