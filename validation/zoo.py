"""Model zoo: every built-in model family, theory against an independent simulation.

Twelve entries (model and setting). Multi-pass: :func:`dmft.compare`, the DMFT against
finite-``d`` SGD, SME and GF on a fixed data set (``delta = n/d``, batch 1; the test
loss of the simulation is measured on a held-out set). One-pass, where the model has a
teacher-student setting: :func:`onepass.compare`, the exact ODE against one-pass SGD
(identity covariance, ``k_star`` orthonormal teacher rows). The table lists, per entry,
regime and variable, the largest gap over the output times in units of the combined
standard error and relative to the largest theory value.

Models with a kinked student (ReLU units, phase retrieval's ``|r|``, the smooth hinge,
Huber) run the GF simulation with fixed-step RK4 (``lr dt = 0.005``; the adaptive
integrator stalls on the kinks) and start from ``init_std = 1`` where a zero start does
not move (ReLU, committees, phase retrieval). Where ``l'`` jumps (ReLU units, ``|r|``) the
DMFT smooths the kink and extrapolates the smoothing width to zero (docs/dmft_theory.md,
"Kinks"); the one-pass ODE uses the full Gaussian Hessian (Stein's identity).

``python validation/zoo.py [--quick] [--only name,...] [--dynamics gf,sgd]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import dmft
import onepass
from dmft import errors, models, output, plotting

try:
    from validation import _common
except ImportError:  # run as a script from validation/
    import _common

MULTIPASS_VARIABLES = ("test_loss", "train_loss", "norm", "overlap")
ONEPASS_VARIABLES = ("risk", "norm", "overlap")


@dataclass(frozen=True)
class Entry:
    """A zoo entry: ``model()`` and its settings. ``multipass``: keywords of
    :func:`dmft.compare` besides the sizes (``init_std`` goes to solver and simulator);
    ``onepass``: ``{'lr', 'start'}`` with ``start`` in ``'zero'``, ``'random'`` (rows of
    norm ~1) or ``'warm'`` (overlap 0.5 with the teacher), or None."""

    name: str
    model: Callable[[], models.Model]
    multipass: dict = field(default_factory=dict)
    onepass: dict | None = None
    #: multi-pass simulation seeds instead of the size's (cheap entries whose 8-seed standard
    #: error is itself too noisy to judge a gap by)
    n_seeds: int | None = None


ZOO = (
    Entry("logistic", lambda: models.logistic(), dict(lr=1.0), dict(lr=0.5, start="zero")),
    Entry("smooth_hinge", lambda: models.smooth_hinge(), dict(lr=0.5), dict(lr=0.5, start="zero")),
    Entry("relu", lambda: models.relu(1), dict(lr=0.5, init_std=1.0), dict(lr=0.5, start="random"), n_seeds=16),
    Entry("relu_committee", lambda: models.relu(2), dict(lr=0.5, init_std=1.0), dict(lr=0.5, start="random")),
    Entry("tanh_committee", lambda: models.committee("tanh", 2), dict(lr=1.0, init_std=1.0),
          dict(lr=1.0, start="random")),
    Entry("erf_committee", lambda: models.committee("erf", 2), dict(lr=1.0, init_std=1.0),
          dict(lr=1.0, start="random")),
    Entry("phase_retrieval", lambda: models.phase_retrieval(), dict(lr=0.2, init_std=1.0),
          dict(lr=0.1, start="warm")),
    Entry("softmax", lambda: models.softmax_cross_entropy(3), dict(lr=0.5), dict(lr=0.5, start="zero")),
    Entry("huber_tanh_ridge", lambda: models.huber_tanh(), dict(lr=2.0, ridge=0.1)),
    Entry("squared_delta_0.5", lambda: models.linear_regression(0.5), dict(lr=0.5, delta=0.5), n_seeds=32),
    Entry("squared_delta_1", lambda: models.linear_regression(0.5), dict(lr=0.5, delta=1.0), n_seeds=32),
    Entry("label_noise", lambda: models.logistic(0.5), dict(lr=1.0), dict(lr=0.5, start="zero")),
)
NAMES = tuple(e.name for e in ZOO)

SIZES = {
    "quick": dict(multipass=dict(t_max=2.0, n_time=11, d=200, n_seeds=3, n_paths=2048),
                  onepass=dict(d=200, n_seeds=3, t_max=3.0, n_time=11)),
    "full": dict(multipass=dict(t_max=4.0, n_time=21, d=1000, n_seeds=8, n_paths=None),
                 onepass=dict(d=1000, n_seeds=8, t_max=10.0, n_time=21)),
}


def start(kind: str, model, data, seed: int):
    """Initial student rows ``(k, d)`` for one-pass runs, or None for the zero start."""
    if kind == "zero":
        return None
    rng = np.random.default_rng(seed)
    d = data.d
    if kind == "random":
        return rng.standard_normal((model.k, d)) / np.sqrt(d)
    w = data.teacher[0] / np.linalg.norm(data.teacher[0])
    z = rng.standard_normal(d)
    z -= (z @ w) * w
    return (0.5 * w + np.sqrt(0.75) * z / np.linalg.norm(z))[None, :]


#: ``lr dt`` of the simulations' fixed steps: dmft.simulate's default SME step, and the RK4
#: gradient flow of kinked models here
LR_DT = 0.005
#: the SME simulation runs at this fraction of that step: Euler-Maruyama's weak error, first
#: order, moved ``q`` by 1-1.6% at the full step on softmax (more than 8 seeds' SE); a quarter
#: of it is below their SE
SME_STEP = 0.25


def run_multipass(entry: Entry, size: dict, dynamics, seed: int, progress: bool) -> xr.Dataset | None:
    """:func:`dmft.compare` per dynamics (the SME simulated at ``SME_STEP`` of the step),
    joined; a dynamics whose solve is refused (``DivergenceError``: e.g. a step the check
    finds unresolved) is left out and its message kept in ``attrs['refused']``; None when
    every one is refused."""
    model = entry.model()
    kw = {"delta": 2.0, "batch": 1.0, **entry.multipass}
    if entry.n_seeds and size["n_seeds"] >= 8:  # the quick size keeps its few seeds
        size = {**size, "n_seeds": entry.n_seeds}
    init = {"init_std": kw.pop("init_std")} if "init_std" in kw else {}
    sim = dict(init)
    if not model.smooth:  # fixed-step RK4 for GF
        sim["dt"] = LR_DT / kw["lr"]
    parts, refused = [], {}
    for dyn in dynamics:
        opts = {**sim, "dt": SME_STEP * LR_DT / kw["lr"]} if dyn == "sme" else sim
        try:
            parts.append(dmft.compare(model, dynamics=(dyn,), seed=seed, progress=progress, solve_options=init,
                                      simulate_options=opts, **kw, **size))
        except errors.DivergenceError as e:
            refused[dyn] = str(e)
            print(f"{entry.name} / multi-pass {dyn}: refused: {e}", flush=True)
    if not parts:
        return None
    ds = parts[0] if len(parts) == 1 else _join_dynamics(parts, [d for d in dynamics if d not in refused])
    ds.attrs["refused"] = json.dumps(refused)
    return ds


def _join_dynamics(parts, order) -> xr.Dataset:
    """One comparison Dataset from per-dynamics ones: attrs of the first, and the SME part's
    simulator options in ``attrs['sme_simulate_options']``."""
    ds = xr.concat(parts, dim="dynamics", combine_attrs="override").sel(dynamics=order)
    for part in parts:
        if "sme" in part.dynamics.values:
            ds.attrs["sme_simulate_options"] = part.attrs["simulate_options"]
    return ds


def run_onepass(entry: Entry, size: dict, seed: int, progress: bool) -> xr.Dataset:
    model = entry.model()
    size = dict(size)
    data = onepass.data.teacher_student("identity", d=size.pop("d"), k_star=model.k_star, seed=seed)
    X0 = start(entry.onepass["start"], model, data, seed)
    return onepass.compare(model, data, lr=entry.onepass["lr"], X0=X0, seed=seed, progress=progress, **size)


def rows_of(ds, entry: Entry, regime: str) -> list[dict]:
    if regime == "onepass":
        return _common.error_rows(ds, ONEPASS_VARIABLES, case=f"{entry.name} / one-pass SGD")
    rows = []
    for dyn in ds.dynamics.values:
        rows += _common.error_rows(ds, MULTIPASS_VARIABLES, case=f"{entry.name} / multi-pass {dyn}",
                                   select={"dynamics": dyn})
    for dyn in json.loads(ds.attrs.get("refused", "{}")):  # a refused solve is a row too, without numbers
        rows.append(dict(case=f"{entry.name} / multi-pass {dyn}", source="simulation", variable="refused",
                         max_abs=np.nan, rel=np.nan, max_z=np.nan, n_compared=0, null_z=np.nan))
    return rows


def table(rows: list[dict]) -> xr.Dataset:
    """The error table as a Dataset over ``(row,)`` with ``case``/``variable`` coordinates."""
    return xr.Dataset(
        {"max_abs": ("row", [r["max_abs"] for r in rows], {"long_name": "max over time of |theory - simulation|"}),
         "rel": ("row", [r["rel"] for r in rows], {"long_name": "max_abs / max |theory|"}),
         "max_z": ("row", [r["max_z"] for r in rows],
                   {"long_name": "max over time of |theory - simulation| / combined SE"}),
         "null_z": ("row", [r["null_z"] for r in rows],
                    {"long_name": "max |diff| / SE that noise alone exceeds with probability 5% "
                                  "(validation._common.null_max_z)"}),
         "n_compared": ("row", [r["n_compared"] for r in rows], {"long_name": "comparisons in max_z"})},
        coords={"case": ("row", [r["case"] for r in rows]), "variable": ("row", [r["variable"] for r in rows])})


def figure(results: dict):
    """One panel per (entry, regime): the test loss (multi-pass) or the risk (one-pass)."""
    n = len(results)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for a, ((name, regime), ds) in zip(axes.flat, results.items()):
        plotting.compare(ds, ["risk" if regime == "onepass" else "test_loss"], ax=np.array([a]))
        a.set_title(f"{name}, {regime}", fontsize=9)
        a.legend(fontsize=5)
    for a in list(axes.flat)[n:]:
        a.set_visible(False)
    fig.tight_layout()
    return fig


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--only", default="", help="comma-separated entries: " + ", ".join(NAMES))
    pre.add_argument("--dynamics", default="sgd,sme,gf", help="multi-pass dynamics (comma-separated)")
    pre.add_argument("--regimes", default="multipass,onepass", help="multipass and/or onepass")
    extra, rest = pre.parse_known_args(argv)
    args = _common.parse(__doc__, rest)
    only = [n for n in extra.only.split(",") if n]
    unknown = set(only) - set(NAMES)
    if unknown:
        raise SystemExit(f"--only: unknown entries {sorted(unknown)}; choose from {', '.join(NAMES)}")
    entries = [e for e in ZOO if not only or e.name in only]
    dynamics = tuple(d for d in extra.dynamics.split(",") if d)
    regimes = [r for r in extra.regimes.split(",") if r]
    size = SIZES["quick" if args.quick else "full"]
    t0 = time.perf_counter()
    out = Path(args.out) / "zoo"
    out.mkdir(parents=True, exist_ok=True)
    results, rows = {}, []
    for entry in entries:
        for regime in regimes:
            if regime == "onepass" and entry.onepass is None:
                continue
            t1 = time.perf_counter()
            if regime == "multipass":
                ds = run_multipass(entry, size["multipass"], dynamics, args.seed, not args.no_progress)
                if ds is None:
                    continue
            else:
                ds = run_onepass(entry, size["onepass"], args.seed, not args.no_progress)
            output.save(ds, out / f"{entry.name}_{regime}.nc")
            results[entry.name, regime] = ds
            new = rows_of(ds, entry, regime)
            rows += new
            print(f"{entry.name} / {regime}: {time.perf_counter() - t1:.0f} s; max |diff|/SE "
                  + ", ".join(f"{r['variable']} {r['max_z']:.1f}" for r in new), flush=True)
    return _common.finish("zoo", table(rows), figure(results), rows, args, t0,
                          "Model zoo: theory vs simulation (per entry, regime and variable)")


if __name__ == "__main__":
    main(sys.argv[1:])
