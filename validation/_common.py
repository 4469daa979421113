"""Shared pieces of the validation scripts: arguments, error tables, writing netCDF + PNG."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dmft import output

RESULTS = Path(__file__).resolve().parent / "results"


def parse(description: str, argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not a validation)")
    p.add_argument("--out", default=str(RESULTS), help="output folder (default: validation/results)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


#: differences below this fraction of a curve's largest value are not counted in SE units
DIFF_FLOOR = 1e-6


def error_rows(ds, variables, *, case: str, reference: str = "theory", select=None) -> list[dict]:
    """Theory-vs-simulation errors of a ``source``-stacked Dataset, one row per (source, variable).

    ``max_abs``: max over time (and entries) of ``|x_source - x_reference|``; ``rel``: that
    divided by ``max |x_reference|``; ``max_z``: max of ``|diff| / sqrt(sem_ref^2 + sem^2)``
    over the times where the standard errors are above round-off (``1e-12 max |x_reference|``)
    and the difference above ``DIFF_FLOOR max |x_reference|`` (NaN if there are none).
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
            z = (diff / se.where((se > 1e-12 * scale) & (diff > DIFF_FLOOR * scale))).max()
            rows.append(dict(case=case, source=str(src), variable=v, max_abs=float(diff.max()),
                             rel=float(diff.max()) / scale if scale > 0 else np.nan,
                             max_z=float(z) if np.isfinite(z) else np.nan))
    return rows


def print_table(title: str, rows: list[dict], file=None) -> str:
    lines = [f"### {title}", "", "| case | vs | variable | max abs error | relative | max abs error / SE |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['source']} | {r['variable']} | {r['max_abs']:.2e} | {r['rel']:.2e} | "
                     f"{r['max_z']:.2f} |")
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
