"""The repository is self-contained: no text file (code, docstrings, docs, README, validation,
benchmarks, tests, configuration) refers to documents outside it, such as the background notes
or the numbered "seed" documents the project started from. The equations live in docs/."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: directories that hold caches, environments or build output, not shipped text
SKIPPED_DIRS = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".kcache", ".numba_cache", ".venv", "venv",
                "site", "results", ".results", "build", "dist"}
#: a reference to the outside documents: the notes file, the numbered documents, their folder.
#: Spelt with character classes so that this file, which is scanned too, does not match itself.
OUTSIDE = re.compile(r"\bTHEOR[Y]\b|\bseeds?[ _/-]?0[0-9]{2}\b|\bseed[ ]documents?\b|shared/see[d]")


def _text_files():
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if not path.is_file() or any(p in SKIPPED_DIRS or p.endswith(".egg-info") for p in rel.parts[:-1]):
            continue
        data = path.read_bytes()
        if b"\0" not in data:  # binary files (figures) carry no prose
            yield rel, data.decode("utf-8", errors="replace")


def test_the_pattern_finds_outside_references():
    # built from pieces, so that this file does not contain what it looks for
    for text in ("see " "THEO" "RY.md section 3", "(" "seed" " 002)", "seeds" " 003, 004", "shared/" "seed" "s/000_x.txt",
                 "the " "seed" " documents"):
        assert OUTSIDE.search(text), text
    for text in ("the theory", "Theory and conventions", "n_seeds=10", "seed 0, 1", "seeds 1-6", "seed=11",
                 "SeedSequence(seed).spawn(n_seeds)", "docs/dmft_theory.md"):
        assert not OUTSIDE.search(text), text


def test_no_text_file_refers_to_documents_outside_the_repository():
    files = dict(_text_files())
    # the scan reaches every kind of shipped text, this file included
    for rel in ("README.md", "pyproject.toml", "mkdocs.yml", "docs/dmft_theory.md", "dmft/multipass/_solve.py",
                "onepass/theory.py", "validation/run_all.py", "benchmarks/bench_dmft.py", "tests/test_self_contained.py"):
        assert Path(rel) in files, rel
    found = [f"{rel}:{i}: {line.strip()}" for rel, text in files.items()
             for i, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "references to documents outside the repository:\n" + "\n".join(found)
