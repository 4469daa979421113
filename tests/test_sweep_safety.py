"""dmft.sweep with ``out``: killed processes, stale, damaged or foreign point files, concurrent
processes, read-only folders, growing grids, per-point coordinates.

The point function is ``sweep_points.point`` (cheap, deterministic given its seed). Every
result is compared with a sweep of the same grid computed in memory without ``out``, or with
``point`` called directly, bit for bit (``runtime_s`` aside). Processes that share a folder
are forked by one server subprocess (``sweep_points.serve``), which imports dmft once.
"""
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import dmft
import sweep_points as sp
from dmft import output
from dmft.multipass import cli
from dmft.sweep import CorruptPointWarning, point_seed

ROOT = Path(__file__).resolve().parents[1]
GRID = {"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 4.0]}  # b = 0: three failed points
ALL = {(a, b) for a in GRID["a"] for b in GRID["b"]}


def assert_same(ds, ref):
    """Identical Datasets and bit-identical floats, wall-clock runtimes aside."""
    ds, ref = ds.drop_vars("runtime_s"), ref.drop_vars("runtime_s")
    xr.testing.assert_identical(ds, ref)
    for name, var in ref.variables.items():
        if var.dtype.kind == "f":
            assert ds[name].values.tobytes() == var.values.tobytes(), name


def point_files(out):
    return sorted((Path(out) / "points").glob("point_*.nc"))


def called(log):
    return sorted((a, b) for _, a, b in sp.calls(log))


class ForkServer:
    """``sweep_points.serve`` in a subprocess: forks one child per sweep run."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        self.proc = subprocess.Popen([sys.executable, "-c", "import sweep_points; sweep_points.serve()"],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buffer, self.running = b"", set()
        assert self._line(120) == "ready"

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError(f"no answer from the fork server in {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise EOFError("the fork server exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _send(self, job):
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()

    def start(self, **job) -> int:
        """Fork a child running ``sweep_points.run(**job)``; returns its pid."""
        self._send(job)
        pid = int(self._line(30))
        self.running.add(pid)
        return pid

    def wait(self, pid, timeout=60) -> int:
        """Exit code of child ``pid`` (``-9`` after SIGKILL)."""
        self._send({"wait": pid})
        code = int(self._line(timeout))
        self.running.discard(pid)
        return code

    def close(self):
        """End the server and any child a failed test left running (not reaped: pids not reused)."""
        for pid in self.running:
            os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def server():
    s = ForkServer()
    yield s
    s.close()


@pytest.fixture
def log(tmp_path, monkeypatch):
    """Calls of ``sweep_points.point`` made in this process, in a file."""
    path = tmp_path / "calls.log"
    monkeypatch.setattr(sp, "LOG", str(path))
    return path


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_sweep(tmp_path, server, log):
    fixed = {"sleep": 0.03}
    reference = dmft.sweep(sp.point, GRID, fixed=fixed, seed=7, progress=False)
    start = time.monotonic()  # the duration of a whole sweep in a child sets the kill times
    assert server.wait(server.start(out=str(tmp_path / "timing"), grid=GRID, fixed=fixed, seed=7)) == 0
    duration = time.monotonic() - start
    out = tmp_path / "out"
    rng = random.Random(11)
    stored, codes = [], []
    for _ in range(4):
        pid = server.start(out=str(out), grid=GRID, fixed=fixed, seed=7)
        time.sleep(rng.uniform(0.05, 0.8) * duration)
        os.kill(pid, signal.SIGKILL)
        codes.append(server.wait(pid))
        stored.append(len(point_files(out)))
    assert -signal.SIGKILL in codes
    assert any(0 < k < len(ALL) for k in stored), stored  # at least one kill in the middle of the sweep
    log.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptPointWarning)  # no kill left a damaged file under a final name
        resumed = dmft.sweep(sp.point, GRID, fixed=fixed, seed=7, out=out, progress=False)
    assert len(sp.calls(log)) == len(ALL) - stored[-1]  # only the points not stored yet were computed
    assert_same(resumed, reference)
    assert_same(output.load(out / "sweep.nc"), reference)
    assert not list((out / "points").glob("*.lock")) and not list((out / "points").glob(".point_*.tmp"))


def test_points_of_another_sweep_are_never_mixed_in(tmp_path, log, monkeypatch):
    """The report: a finished scale-2 sweep, a scale-1 sweep with resume=False interrupted
    after 4 points, then resumed: the result is the scale-1 sweep, with 5 points computed."""
    dmft.sweep(sp.point, GRID, fixed={"scale": 2.0}, seed=7, out=tmp_path, progress=False)
    monkeypatch.setattr(sp, "BUDGET", 4)
    with pytest.raises(KeyboardInterrupt):
        dmft.sweep(sp.point, GRID, fixed={"scale": 1.0}, seed=7, out=tmp_path, resume=False, progress=False)
    monkeypatch.setattr(sp, "BUDGET", None)
    log.unlink()
    ds = dmft.sweep(sp.point, GRID, fixed={"scale": 1.0}, seed=7, out=tmp_path, progress=False)
    assert len(called(log)) == len(ALL) - 4
    assert_same(ds, dmft.sweep(sp.point, GRID, fixed={"scale": 1.0}, seed=7, progress=False))
    # independent of the machinery: risk = a exp(-t) up to the 0.01-sd noise (6 sd), not 2 a exp(-t)
    assert float(abs(ds.risk.sel(b=[1.0, 4.0]) - ds.a * np.exp(-ds.time)).max()) < 0.06
    with pytest.raises(dmft.ParameterError, match="different sweep.*fixed"):
        dmft.sweep(sp.point, GRID, fixed={"scale": 2.0}, seed=7, out=tmp_path, progress=False)


def test_damaged_point_files_are_named_and_recomputed(tmp_path, log):
    reference = dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False)
    ok_files = [f for f in point_files(tmp_path) if output.load(f).attrs["sweep_status"] == "ok"]
    truncated, altered, empty = ok_files[:3]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with h5py.File(altered, "r+") as f:  # a valid netCDF file whose numbers changed
        f["risk"][0] += 1.0
    empty.write_bytes(b"")
    (tmp_path / "sweep.json").write_text("{truncated")
    log.unlink()
    with pytest.warns(CorruptPointWarning) as record:
        ds = dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False)
    messages = "\n".join(str(w.message) for w in record)
    for path, why in ((truncated, "cannot be read"), (altered, "content hash"), (empty, "cannot be read"),
                      (tmp_path / "sweep.json", "cannot be read")):
        assert re.search(re.escape(str(path)) + ".*" + why, messages), messages
    assert len(called(log)) == 3
    assert_same(ds, reference)
    log.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptPointWarning)
        assert_same(dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False), reference)
    assert called(log) == []


def test_a_point_file_copied_onto_another_point_is_detected(tmp_path, log):
    reference = dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False)
    source, target = point_files(tmp_path)[:2]
    shutil.copyfile(source, target)
    log.unlink()
    with pytest.warns(CorruptPointWarning, match=re.escape(str(target)) + ".*holds another point"):
        ds = dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False)
    assert len(called(log)) == 1
    assert_same(ds, reference)


def test_two_processes_on_one_folder_compute_every_point_once(tmp_path, server):
    fixed = {"sleep": 0.08}
    reference = dmft.sweep(sp.point, GRID, fixed=fixed, seed=7, progress=False)
    for trial in range(2):
        out, log = tmp_path / f"out{trial}", tmp_path / f"calls{trial}.log"
        pids = [server.start(out=str(out), grid=GRID, fixed=fixed, seed=7, log=str(log),
                             result=str(tmp_path / f"result{trial}{k}")) for k in range(2)]
        assert [server.wait(pid) for pid in pids] == [0, 0]
        calls = sp.calls(log)
        assert sorted((a, b) for _, a, b in calls) == sorted(ALL)  # every point computed exactly once
        assert {pid for pid, _, _ in calls} == set(pids)  # by both processes
        for k in range(2):
            assert_same(output.load(tmp_path / f"result{trial}{k}.nc"), reference)


def test_the_claim_of_a_killed_process_is_taken_over(tmp_path, server):
    """A holds point (1, 1) (sleeping in it); B computes the rest, waits for A's point while A
    lives, and computes it once A is killed."""
    reference = dmft.sweep(sp.point, GRID, seed=7, progress=False)
    out, log = str(tmp_path / "out"), str(tmp_path / "calls.log")
    a = server.start(out=out, grid=GRID, seed=7, log=log, slow=[[[1.0, 1.0], 300.0]])
    deadline = time.monotonic() + 60
    while (a, 1.0, 1.0) not in sp.calls(log):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    b = server.start(out=out, grid=GRID, seed=7, log=log, result=str(tmp_path / "b"))
    while len([c for c in sp.calls(log) if c[0] == b]) < len(ALL) - 2:  # all but A's two points
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert (b, 1.0, 1.0) not in sp.calls(log)  # B waits while A lives
    os.kill(a, signal.SIGKILL)
    assert server.wait(a) == -signal.SIGKILL
    assert server.wait(b) == 0
    assert sorted((x, y) for p, x, y in sp.calls(log) if p == b) == sorted(ALL - {(1.0, 0.0)})
    assert_same(output.load(tmp_path / "b.nc"), reference)


@pytest.fixture
def shared_dir():
    """A folder under the system temporary directory that an unprivileged user can traverse
    (pytest's tmp_path is private to its owner)."""
    base = Path(tempfile.mkdtemp())
    base.chmod(0o755)
    yield base
    for path in [base, *base.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o777 if path.is_dir() else 0o666)
    shutil.rmtree(base)


def read_only(path):
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def test_read_only_folders(shared_dir, server):
    """A finished sweep in a read-only folder loads; a sweep that would compute is refused
    (naming ``out``) before calling the function; the same with only points/ read-only.
    Root ignores file modes, so the sweeps run in a child process as user ``nobody`` then."""
    out, scratch = shared_dir / "out", shared_dir / "scratch"
    reference = dmft.sweep(sp.point, GRID, seed=7, out=out, progress=False)
    scratch.mkdir()
    scratch.chmod(0o777)
    uid = 65534 if os.geteuid() == 0 else None
    log = str(scratch / "calls.log")
    read_only(out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def sweep_in_child(name, grid):
        pid = server.start(out=str(out), grid=grid, seed=7, log=log, result=str(scratch / name), uid=uid)
        assert server.wait(pid) == 0
        return json.loads((scratch / f"{name}.json").read_text())["error"]

    assert sweep_in_child("finished", GRID) is None
    assert_same(output.load(scratch / "finished.nc"), reference)
    grown = {"a": [*GRID["a"], 4.0], "b": GRID["b"]}
    error = sweep_in_child("grown", grown)
    assert f"out={str(out)!r}" in error and "not writable" in error and "3 of 12 points" in error
    out.chmod(0o777)  # the folder is writable, its points/ is not
    error = sweep_in_child("points", grown)
    assert f"out={str(out)!r}" in error and "not writable" in error
    assert sp.calls(log) == []  # nothing was computed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nor written


def test_out_naming_a_file_is_refused_before_any_computation(tmp_path, log):
    (tmp_path / "results.nc").write_text("")
    with pytest.raises(dmft.ParameterError, match="out=.*results.nc.*existing file"):
        dmft.sweep(sp.point, GRID, seed=7, out=tmp_path / "results.nc", progress=False)
    assert called(log) == []


def test_a_growing_grid_reuses_the_finished_points(tmp_path, log):
    small = {"a": [1.0, 2.0], "b": [1.0, 4.0]}
    dmft.sweep(sp.point, small, seed=7, out=tmp_path, progress=False)
    grown = {"a": [0.5, 1.0, 2.0, 3.0], "b": [1.0, 2.0, 4.0]}
    log.unlink()
    ds = dmft.sweep(sp.point, grown, seed=7, out=tmp_path, progress=False)
    known = {(a, b) for a in small["a"] for b in small["b"]}
    assert called(log) == sorted({(a, b) for a in grown["a"] for b in grown["b"]} - known)
    assert_same(ds, dmft.sweep(sp.point, grown, seed=7, progress=False))
    # a point's numbers are those of a direct call with its seed
    direct = sp.point(a=3.0, b=2.0, seed=point_seed(7, {"a": 3.0, "b": 2.0}))
    assert ds.risk.sel(a=3.0, b=2.0).values.tobytes() == direct.risk.values.tobytes()
    log.unlink()
    shrunk = dmft.sweep(sp.point, {"b": [4.0, 1.0], "a": [3.0, 0.5]}, seed=7, out=tmp_path, progress=False)
    assert called(log) == []  # reordered and shrunk: all points reused
    xr.testing.assert_identical(shrunk.risk, ds.risk.sel(b=[4.0, 1.0], a=[3.0, 0.5]).transpose("b", "a", "time"))


def test_fixed_arrays_are_identified_by_all_their_values(tmp_path):
    """``repr`` of a 2000-element array elides its middle; the stored identity does not."""
    weights = np.ones(2000)
    dmft.sweep(sp.point, {"a": [1.0]}, fixed={"b": 1.0, "weights": weights}, seed=7, out=tmp_path, progress=False)
    changed = weights.copy()
    changed[1000] = 3001.0  # mean 2.5
    assert repr(changed) == repr(weights)
    with pytest.raises(dmft.ParameterError, match="different sweep.*fixed"):
        dmft.sweep(sp.point, {"a": [1.0]}, fixed={"b": 1.0, "weights": changed}, seed=7, out=tmp_path,
                   progress=False)
    ds = dmft.sweep(sp.point, {"a": [1.0]}, fixed={"b": 1.0, "weights": changed}, seed=7, out=tmp_path,
                    resume=False, progress=False)
    np.testing.assert_allclose(ds.risk.sel(a=1.0).values[0], 2.5, atol=0.06)  # 2.5 + 0.01-sd noise


def test_points_of_another_library_version_are_refused(tmp_path, log, monkeypatch):
    dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False)
    monkeypatch.setattr(dmft, "__version__", "0.0.1")
    log.unlink()
    with pytest.raises(dmft.ParameterError, match=r"out=.*computed with sgd-dynamics 0\.1\.0, this is 0\.0\.1"):
        dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, progress=False)
    assert called(log) == []
    dmft.sweep(sp.point, GRID, seed=7, out=tmp_path, resume=False, progress=False)
    assert called(log) == sorted(ALL)


def test_per_point_coordinates():
    """``epoch = t b`` differs between points when ``b`` is swept: stacked, not copied from
    the first point; equal at every point: kept. A point whose ``time`` axis differs fails."""
    ds = dmft.sweep(sp.point, {"a": [1.0, 2.0], "b": [1.0, 4.0]}, seed=7, progress=False)
    assert ds.epoch.dims == ("a", "b", "time")
    for b in (1.0, 4.0):
        np.testing.assert_array_equal(ds.epoch.sel(a=2.0, b=b), b * np.linspace(0.0, 1.0, 5))
    kept = dmft.sweep(sp.point, {"a": [1.0, 2.0]}, fixed={"b": 4.0}, seed=7, progress=False)
    assert kept.epoch.dims == ("time",)
    times = dmft.sweep(sp.point, {"t_max": [1.0, 2.0]}, fixed={"a": 1.0, "b": 1.0}, seed=7, progress=False)
    assert list(times.status.values) == ["ok", "failed"]
    assert "coordinate 'time' differs" in str(times.error.values[1])
    assert times.risk.sel(t_max=2.0).isnull().all()


def test_epoch_of_a_dmft_solve_sweep_over_batch():
    fixed = dict(model="linear_regression", dynamics="gf", lr=0.5, t_max=0.5, n_time=3, n_paths=64)
    ds = dmft.sweep(dmft.solve, {"batch": [1.0, 2.0]}, fixed=fixed, progress=False)
    direct = dmft.solve(batch=2.0, seed=int(ds.point_seed.sel(batch=2.0)), progress=False, **fixed)
    np.testing.assert_array_equal(ds.epoch.sel(batch=2.0), direct.epoch)
    np.testing.assert_array_equal(ds.epoch.sel(batch=2.0), 2.0 * ds.time)  # one epoch is t = 1/batch


def test_cli_sweep_with_every_point_failed_lists_the_errors(tmp_path, capsys):
    # a delta that every point refuses (the command line checks --model itself, not delta)
    code = cli.main(["sweep", "--delta", "-1", "--lr", "0.5,1", "--dynamics", "gf", "--no-simulation",
                     "--t-max", "0.5", "--n-time", "3", "--no-progress", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "2 points (2 not ok)" in printed
    assert len(re.findall(r"lr=0\.5.*delta=-1\.0|lr=1\.0.*delta=-1\.0", printed)) == 2, printed
