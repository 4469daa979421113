"""Shared pieces of the validation scripts: arguments, error tables, writing netCDF + PNG."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dmft import output

RESULTS = Path(__file__).resolve().parent / "results"


def parse(description: str, argv=None, extra=None) -> argparse.Namespace:
    """The scripts' common options; ``extra(parser)`` adds a script's own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not a validation)")
    p.add_argument("--out", default=str(RESULTS), help="output folder (default: validation/results)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


#: differences below this fraction of a curve's largest value are not counted in SE units
DIFF_FLOOR = 1e-6


def null_max_z(n: int, dof: float, level: float = 0.05) -> float:
    """The largest ``|diff| / SE`` of ``n`` independent comparisons that noise alone exceeds
    with probability ``level`` (Sidak), each a Student t with ``dof`` degrees of freedom: the
    standard errors are estimates themselves (8 seeds' SE is uncertain by 27%), so over 21
    output times and several entries a max of 3 is no sign of an error by itself. Comparisons
    of one curve at neighbouring times are correlated, which makes the true quantile smaller:
    this is the lenient side of the yardstick."""
    from scipy import stats

    if n < 1 or not np.isfinite(dof) or dof <= 0:
        return float("nan")
    return float(stats.t.ppf(1 - (1 - (1 - level) ** (1 / n)) / 2, dof))


def _dof(ds, source: str) -> float:
    """Degrees of freedom of ``source``'s standard errors: the DMFT's replicas less one for
    ``'theory'`` (``dmft.compare``'s ``solve_options``, default 8; a one-pass ODE has no SE
    and so no weight in the combination), a simulation's seeds less one otherwise."""
    import json

    if source != "theory":
        return float(ds.attrs.get("n_seeds", np.nan)) - 1
    options = json.loads(ds.attrs.get("solve_options", "{}") or "{}")
    return float(options.get("n_replicas", 8)) - 1


def error_rows(ds, variables, *, case: str, reference: str = "theory", select=None) -> list[dict]:
    """Theory-vs-simulation errors of a ``source``-stacked Dataset, one row per (source, variable).

    ``max_abs``: max over time (and entries) of ``|x_source - x_reference|``; ``rel``: that
    divided by ``max |x_reference|``; ``max_z``: max of ``|diff| / sqrt(sem_ref^2 + sem^2)``
    over the times where the standard errors are above round-off (``1e-12 max |x_reference|``)
    and the difference above ``DIFF_FLOOR max |x_reference|`` (NaN if there are none);
    ``null_z``: :func:`null_max_z` for those ``n_compared`` comparisons, with the median over
    them of the Welch-Satterthwaite degrees of freedom of the combined SE.
    """
    rows = []
    ds = ds.sel(select or {})
    for src in ds.source.values:
        if src == reference:
            continue
        for v in variables:
            if v not in ds:
                continue
            ref, x = ds[v].sel(source=reference), ds[v].sel(source=src)
            diff = abs(x - ref)
            se = np.hypot(ds[v + "_sem"].sel(source=reference), ds[v + "_sem"].sel(source=src))
            scale = float(abs(ref).max())
            # an SE at round-off (a deterministic start: 4e-17) is no yardstick, and nor is a
            # difference far below what a figure shows (two curves converging to 0 at
            # slightly different exponential rates: 2e-9 apart with SEs of 2e-10)
            compared = (se > 1e-12 * scale) & (diff > DIFF_FLOOR * scale)
            z = (diff / se.where(compared)).max()
            s_ref, s_src = ds[v + "_sem"].sel(source=reference) ** 2, ds[v + "_sem"].sel(source=src) ** 2
            with np.errstate(invalid="ignore", divide="ignore"):
                welch = (s_ref + s_src) ** 2 / (s_ref**2 / _dof(ds, reference) + s_src**2 / _dof(ds, str(src)))
            n = int(compared.sum())
            rows.append(dict(case=case, source=str(src), variable=v, max_abs=float(diff.max()),
                             rel=float(diff.max()) / scale if scale > 0 else np.nan,
                             max_z=float(z) if np.isfinite(z) else np.nan, n_compared=n,
                             null_z=null_max_z(n, float(welch.where(compared).median())) if n else np.nan))
    return rows


def value(x: float, se: float, sign: bool = False) -> str:
    """``x(se)`` with the standard error in units of the last of four decimals (``sign``: ``+x``)."""
    return f"{x:{'+' if sign else ''}.4f}({se * 1e4:.0f})"


def paired(x: np.ndarray, y: np.ndarray):
    """Mean and standard error over seeds (the first axis) of ``x - y``."""
    d = x - y
    return d.mean(0), d.std(0, ddof=1) / np.sqrt(len(d))


def print_rows(rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys) as a markdown table; floats with two decimals."""
    header = list(rows[0])
    print(f"| {' | '.join(header)} |\n|{'---|' * len(header)}")
    for r in rows:
        print("| " + " | ".join(f"{r[h]:.2f}" if isinstance(r[h], float) else str(r[h]) for h in header) + " |")


def print_table(title: str, rows: list[dict], file=None) -> str:
    lines = [f"### {title}", "", "| case | vs | variable | max abs error | relative | max abs error / SE | "
             "noise's 5% max (comparisons) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['source']} | {r['variable']} | {r['max_abs']:.2e} | {r['rel']:.2e} | "
                     f"{r['max_z']:.2f} | {r.get('null_z', np.nan):.2f} ({r.get('n_compared', '-')}) |")
    text = "\n".join(lines) + "\n"
    print(text, file=file or sys.stdout)  # looked up now: sys.stdout may have been replaced since import
    return text


def finish(name: str, ds, fig, rows, args, t0: float, title: str) -> list[dict]:
    """Write ``name.nc``, ``name.png`` and ``name.md`` (the table) under ``args.out``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds.attrs["validation_quick"] = int(args.quick)
    output.save(ds, out / f"{name}.nc")
    fig.savefig(out / f"{name}.png", dpi=110)
    text = print_table(title + (" (quick mode)" if args.quick else ""), rows)
    (out / f"{name}.md").write_text(text + f"\nruntime {time.perf_counter() - t0:.0f} s\n")
    print(f"wrote {out / name}.nc, .png, .md in {time.perf_counter() - t0:.0f} s")
    return rows
