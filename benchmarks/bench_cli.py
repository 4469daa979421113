"""Start-up of the command line: ``dmft --help`` against a bare interpreter and against the
import of the computing modules (what ``--help`` cost when it imported them), in one run.

Each command runs in a fresh process (best of ``REPEAT`` wall times), with this checkout's
packages first on the path.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

from _util import table

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 7

#: what the console scripts run (``dmft = dmft.multipass.cli:main``, ``onepass = onepass.cli:main``)
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "dmft --help": ["-c", "import sys; from dmft.multipass.cli import main; sys.exit(main())", "--help"],
    "dmft compare --help": ["-c", "import sys; from dmft.multipass.cli import main; sys.exit(main())", "compare",
                            "--help"],
    "dmft --version": ["-c", "import sys; from dmft.multipass.cli import main; sys.exit(main())", "--version"],
    "onepass run --help": ["-c", "import sys; from onepass.cli import main; sys.exit(main())", "run", "--help"],
    "import the computing modules": ["-c", "import dmft.multipass._compare, dmft.sweep, dmft.plotting, "
                                           "onepass._compare"],
}


def wall_time(args) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    best = float("inf")
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    times = {name: wall_time(args) for name, args in COMMANDS.items()}
    base, help_time = times["python -c pass"], times["dmft --help"]
    rows = [(name, f"{t:.3f}", f"{t / base:.1f}", f"{t / help_time:.1f}") for name, t in times.items()]
    print(table(["command", f"wall [s], best of {REPEAT}", "/ bare python", "/ dmft --help"], rows))


if __name__ == "__main__":
    main()
