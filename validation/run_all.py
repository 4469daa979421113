"""Regenerate the whole validation gallery: every script, netCDF + PNG + error table.

``python validation/run_all.py [--quick] [--out DIR]``; writes ``DIR/summary.md`` with all
tables (``docs/gallery.md`` shows the figures of a full run). ``--only name,...`` runs a
subset. A failing script is reported and the others still run; the exit status is the
number of failures.
"""
import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SCRIPTS = ["multipass_linear_regression", "multipass_huber_tanh", "onepass_risk", "onepass_group_overlaps",
           "onepass_many_classes", "onepass_adagrad", "phase_retrieval", "data_reuse", "zoo"]


TITLES = {
    "multipass_linear_regression": "Multi-pass linear regression: SGD, SME, GF",
    "multipass_huber_tanh": "Huber loss on a tanh teacher: SGD vs SME vs GF",
    "onepass_risk": "One-pass risk and alignment: identity, zero-one, mild and extreme power law",
    "onepass_group_overlaps": "One-pass zero-one model: group overlaps m_jk",
    "onepass_many_classes": "One-pass softmax, C = 15 classes at d = 500",
    "onepass_adagrad": "One-pass AdaGrad-Norm learning rate",
    "phase_retrieval": "Phase retrieval: random vs warm start, d log d vs d samples",
    "data_reuse": "Data reuse: multi-pass SGD and GF on power-law data, several delta, against one-pass",
    "zoo": "Model zoo: every model family, theory vs simulation",
}


def write_gallery(out: Path, names, *, quick: bool, docs: Path | None = None):
    """Copy ``out/<name>.png`` to ``docs/gallery/`` and rewrite the sections of ``docs/gallery.md``
    of the scripts in ``names`` with their tables; every other section of the page is kept."""
    import shutil

    docs = docs or Path(__file__).resolve().parent.parent / "docs"
    (docs / "gallery").mkdir(exist_ok=True)
    lines = ["# Validation gallery", "",
             "Each figure is written by one script in `validation/` (`python validation/<name>.py`, or",
             "`python validation/run_all.py --gallery` for all of them, which regenerates this page).",
             "Each table lists, per case and curve, the largest gap to the theory over time: absolute,",
             "relative to the largest theory value, and in units of the combined standard error",
             "(`sqrt(sem_theory^2 + sem_simulation^2)`; the theory's standard error is that of the DMFT",
             "Monte Carlo replicas, 0 for the one-pass ODE), counted where the difference exceeds 1e-6",
             "of the curve's largest value (two curves decaying to 0 at slightly different rates differ",
             "by 1e-9 with SEs of 1e-10 late in a run). Finite-`d` simulations differ from the",
             "`d -> infinity` theory by `O(1/sqrt(d))` fluctuations and `O(1/d)` biases, so the ratio to",
             "the standard error grows with the number of seeds at fixed `d`. The simulations' test",
             "losses (multi-pass) and risks (one-pass) are measured on held-out sets of fresh samples,",
             "not through the theory's Gaussian integrals.", ""]
    if quick:
        lines += ["!!! note", "    Generated in `--quick` mode (small sizes): a smoke run, not a validation.", ""]
    fresh = {}
    for n in names:
        if not (out / f"{n}.png").exists():
            continue
        shutil.copy(out / f"{n}.png", docs / "gallery" / f"{n}.png")
        doc = importlib.import_module(f"validation.{n}").__doc__ or ""
        md = (out / f"{n}.md").read_text() if (out / f"{n}.md").exists() else ""
        table = md.split("\n", 2)[-1]
        section = [f"## {TITLES.get(n, n)}", "", doc.strip(), "", f"Script: `validation/{n}.py`", ""]
        if "(quick mode)" in md and not quick:
            section += ["!!! note", "    This figure is from a `--quick` run (small sizes).", ""]
        fresh[n] = section + [f"![{n}](gallery/{n}.png)", "", table.strip(), ""]
    kept = _sections(docs / "gallery.md")
    for n in SCRIPTS:
        old = kept.pop(f"## {TITLES.get(n, n)}", [])
        lines += fresh.get(n, old)
    for section in kept.values():  # hand-written sections, and scripts not run this time, stay as they were
        lines += section
    (docs / "gallery.md").write_text("\n".join(lines) + "\n")


def _sections(page: Path) -> dict:
    """The ``## `` sections of an existing gallery page, header -> lines, in page order."""
    sections, current = {}, None
    for line in page.read_text().splitlines() if page.exists() else []:
        if line.startswith("## "):
            current = sections.setdefault(line, [])
        if current is not None:
            current.append(line)
    return sections


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", default="", help="comma-separated script names")
    p.add_argument("--gallery", action="store_true",
                   help="also copy the figures to docs/gallery/ and rewrite docs/gallery.md from the tables")
    args, rest = p.parse_known_args(argv)
    names = [n for n in args.only.split(",") if n] or SCRIPTS
    from validation import _common

    opts = _common.parse("", rest)
    failures, t_all = [], time.perf_counter()
    for name in names:
        print(f"=== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"validation.{name}").main(rest)
        except Exception:  # noqa: BLE001  (reported, the gallery goes on)
            traceback.print_exc()
            failures.append(name)
        print(f"=== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    out = Path(opts.out)
    tables = [(out / f"{n}.md").read_text() for n in names if (out / f"{n}.md").exists()]
    (out / "summary.md").write_text("\n".join(tables))
    if args.gallery:
        write_gallery(out, names, quick=opts.quick)
    print(f"all done in {time.perf_counter() - t_all:.0f} s; failures: {failures or 'none'}; "
          f"tables in {out / 'summary.md'}")
    return len(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
