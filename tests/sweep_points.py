"""A cheap deterministic sweep point and a fork server, for tests/test_sweep_safety.py.

Imported as the top-level module ``sweep_points`` both by pytest (``tests/`` is on
``sys.path``) and by the fork server's subprocess, so :func:`point` has the same
identity (``sweep_points.point``) in every process that shares a sweep folder.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import dmft
from dmft import output

# Per-process knobs, deliberately not arguments of ``point`` (a point's identity is its arguments):
#: file to which every call appends a line "pid a b"
LOG = None
#: {(a, b): seconds} extra sleep at those points
SLOW = {}
#: calls left before ``point`` raises KeyboardInterrupt (None: no limit)
BUDGET = None


def point(a, b, seed, scale=1.0, t_max=1.0, sleep=0.0, weights=None):
    """``risk(t) = scale a mean(weights) exp(-t) + 0.01 N(0, 1)`` at 5 times in ``[0, t_max]``,
    coordinate ``epoch = t b`` (``b`` plays the batch scale); ``b = 0`` fails (ValueError)."""
    global BUDGET
    if BUDGET is not None:
        if BUDGET == 0:
            raise KeyboardInterrupt
        BUDGET -= 1
    if LOG is not None:
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()} {a!r} {b!r}\n")
    time.sleep(sleep + SLOW.get((a, b), 0.0))
    if b == 0:
        raise ValueError("b = 0 has no epochs")
    t = np.linspace(0.0, t_max, 5)
    w = 1.0 if weights is None else float(np.mean(weights))
    risk = scale * a * w * np.exp(-t) + 0.01 * np.random.default_rng(seed).standard_normal(5)
    return output.build({"risk": (("time",), risk)}, {"time": t, "epoch": ("time", t * b)},
                        {"a": a, "b": b, "scale": scale, "t_max": t_max})


def calls(log) -> list:
    """``[(pid, a, b)]`` of the calls logged in ``log`` (empty if there is none)."""
    try:
        lines = Path(log).read_text().split("\n")
    except FileNotFoundError:
        return []
    return [(int(p), float(a), float(b)) for p, a, b in (line.split() for line in lines if line)]


def run(out, grid, seed=0, fixed=None, resume=True, result=None, log=None, slow=(), uid=None):
    """One ``dmft.sweep`` of :func:`point` into ``out``; writes the Dataset to ``<result>.nc``
    and ``{"error": message of a ParameterError or None}`` to ``<result>.json``."""
    global LOG, SLOW
    if uid is not None:
        os.setgid(uid)
        os.setgroups([])
        os.setuid(uid)
    LOG, SLOW = log, {tuple(k): v for k, v in slow}
    try:
        ds, error = dmft.sweep(point, grid, fixed=fixed, seed=seed, out=out, resume=resume, progress=False), None
    except dmft.ParameterError as e:
        ds, error = None, str(e)
    if result is not None:
        if ds is not None:
            output.save(ds, result + ".nc")
        with open(result + ".json", "w") as f:
            json.dump({"error": error}, f)


def serve():
    """Fork server: print "ready", then for each JSON line on stdin either fork a child that
    runs :func:`run` with it (print the child's pid) or, for ``{"wait": pid}``, print that
    child's exit code (negative: killed by that signal). Importing dmft once here makes a
    sweep process cost a fork instead of a new interpreter."""
    with tempfile.TemporaryDirectory() as tmp:  # import the netCDF backend here, not in every child
        output.load(output.save(output.build({}, {"time": [0.0]}, {}), Path(tmp) / "warm.nc"))
    # and dmft.sweep and its progress bars (loaded on first use): a child running as another
    # user may not be able to read the interpreter's files
    importlib.import_module("dmft.sweep")
    importlib.import_module("dmft._progress").progress_bar(False, total=1).close()
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if "wait" in job:
            print(os.waitstatus_to_exitcode(os.waitpid(job["wait"], 0)[1]), flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run(**job)
                code = 0
            except BaseException:  # noqa: BLE001  (reported on stderr, exit code 1)
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)
