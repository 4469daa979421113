"""Parameter sweeps: one Dataset over a grid, serial or on a dask cluster, resumable.

:func:`sweep` calls a function that returns an :class:`xarray.Dataset` (for example
:func:`dmft.compare`, :func:`dmft.solve`, :func:`onepass.compare`) at every point of a
parameter grid and stacks the results along one dim per grid parameter.

- **Seeds.** Every point gets its own integer seed :func:`point_seed` ``(seed, point)``
  (stored as ``point_seed``), a function of the root seed and the point's own values, so
  every point has an independent stream and the result depends neither on the execution
  order, the backend, resuming, nor on the other values of the grid.
- **Failures.** A point that raises is recorded, not fatal: ``status`` is ``'ok'``,
  ``'diverged'`` (:class:`~dmft.errors.DivergenceError`), ``'truncated'`` (with
  ``on_divergence='truncate'``: the output times before the divergence) or ``'failed'``
  (any other ``Exception``) and ``error`` holds the message; ``diverged_at`` and
  ``divergence_cause`` the divergence's time and cause. The variables of a point that
  diverged or failed are absent, and a truncated point's after its divergence; in the
  stacked Dataset they are masked with the netCDF fill value (NaN for floats), and those
  are the only fill values: ``ds.where(ds.status == 'ok')`` is a no-op on the values.
  ``KeyboardInterrupt`` stops the sweep.
- **Incremental output and resume.** With ``out``, every finished point (``ok`` and
  failed alike) is written at once to ``out/points/point_<key>.nc``, ``key`` a SHA-256 of
  the point's identity: the function's ``module.qualname``, ``fixed``, the point's grid
  values and its seed (numbers, strings, lists and dicts as values, arrays by their
  bytes, dataclasses by their fields, functions by ``module.qualname``, other objects by
  ``repr``). The file stores that identity, the library version and a SHA-256 of its own
  content. Running a sweep again with the same ``out`` reuses every stored point whose
  identity is one of the grid's, so grids can grow, shrink or be reordered; only the
  missing points are computed (``retry_failed=True`` also recomputes failed points).
  A file that cannot be read, fails its content hash or holds another point (copied or
  renamed) is named in a :class:`CorruptPointWarning` and computed again; a point stored
  by another library version is refused (:class:`~dmft.errors.ParameterError`) before
  any computation. ``out/sweep.json`` describes the sweep and ``out/sweep.nc`` holds the
  stacked result. Every file is written under a unique temporary name and renamed into
  place (:func:`os.replace`), so a killed process never leaves a partial file behind a
  final name.
- **Concurrent processes.** Processes may share ``out``: a point is computed only by the
  process that created its claim ``points/point_<key>.lock`` (``O_CREAT | O_EXCL``; it
  records the owner's host, pid and process start time). A process computes the points
  nobody claimed, then waits for the others' points and loads them. A claim is stale,
  and taken over, when its owner runs on this host and has exited (a pid that now
  belongs to another process does not count); a claim from another host is honoured
  until its file is deleted.
- **Parallel.** ``client`` is a :class:`distributed.Client`, a scheduler address
  (``'tcp://host:8786'``) or ``'local'`` (a :class:`distributed.LocalCluster` on this
  machine, closed afterwards). Points are submitted as independent tasks; results are
  written by the calling process as they arrive. Needs the ``distributed`` extra.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import os
import re
import socket
import sys
import time as _time
import uuid
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import xarray as xr

from . import _config, errors, output
from ._progress import progress_bar

__all__ = ["sweep", "point_seed", "CorruptPointWarning"]

#: seconds between two looks at points claimed by another process
_POLL_S = 0.1
#: a claim file still empty or unreadable after this long lost its owner while being written
_CLAIM_WRITE_S = 10.0
#: statuses of the points that have values (a truncated point's stop at its divergence)
_WITH_VALUES = ("ok", "truncated")
#: attributes a point file carries besides the function's own
_POINT_ATTRS = ("sweep_status", "sweep_error", "sweep_runtime_s", "sweep_point_seed", "sweep_params",
                "sweep_write_id", "sweep_content_hash")


class CorruptPointWarning(UserWarning):
    """A stored sweep point cannot be used (unreadable, wrong content hash, another point's
    file); the message names the file, and the point is computed again."""


def _json(obj) -> str:
    """Canonical JSON (sorted keys, numpy scalars and arrays as Python values)."""
    def plain(x):
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
        return str(x)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=plain)


def _version() -> str:
    from . import __version__

    return __version__


def _digest(obj) -> str:
    return hashlib.sha256(_json(obj).encode()).hexdigest()


def _name(obj) -> str:
    """``module.qualname`` of a function or class, or of the class of a callable instance."""
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(named, '__module__', '?')}.{named.__qualname__}"


def _canonical(value):
    """JSON-able identity of a parameter value.

    Numbers, strings, ``None``, lists/tuples and dicts stand for themselves; arrays for
    their dtype, shape and the SHA-256 of their bytes (``repr`` abbreviates large arrays);
    dataclasses (models) for their type and fields; ``functools.partial`` for its
    function and arguments; functions and classes for ``module.qualname`` (not their
    code); any other object for its ``repr``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return _canonical(value.item())
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return {"array": [_canonical(v) for v in value.ravel().tolist()], "shape": list(value.shape)}
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
                "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": _name(type(value)),
                "fields": {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, functools.partial):
        return {"partial": _canonical(value.func), "args": _canonical(value.args),
                "keywords": _canonical(value.keywords)}
    if callable(value):
        return {"callable": _name(value)}
    return {"repr": repr(value)}


def point_seed(seed, point: dict) -> int:
    """Independent integer seed of the grid point ``point`` (``{name: value}``).

    ``SeedSequence([seed, h]).generate_state(1)[0]`` with ``h`` the first 128 bits of the
    SHA-256 of the point's canonical JSON (keys sorted): it depends on the point's own
    values only, not on the other values of the grid or the order of its keys. ``seed`` is
    an int or a :class:`numpy.random.SeedSequence` ``s``, which stands for
    ``SeedSequence([*s.entropy, h], spawn_key=s.spawn_key, pool_size=s.pool_size)``, so
    ``SeedSequence(1)`` gives the numbers of ``1`` (as ``numpy.random.default_rng`` does).
    """
    h = int(_digest(_canonical(dict(point)))[:32], 16)
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence([*_entropy(seed), h], spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    else:
        ss = np.random.SeedSequence([int(seed), h])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _entropy(ss: np.random.SeedSequence) -> list:
    e = ss.entropy
    return [int(x) for x in e] if isinstance(e, (list, tuple, np.ndarray)) else [int(e)]


def _seed_record(seed):
    """The root seed as JSON: an int, or a SeedSequence's entropy, spawn key and pool size
    (a SeedSequence of one int entropy, no spawn key and the default pool is that int)."""
    if not isinstance(seed, np.random.SeedSequence):
        return int(seed)
    entropy = _entropy(seed)
    if len(entropy) == 1 and not seed.spawn_key and seed.pool_size == np.random.SeedSequence().pool_size:
        return entropy[0]
    return {"entropy": entropy, "spawn_key": [int(x) for x in seed.spawn_key], "pool_size": int(seed.pool_size)}


def _value_kind(value):
    """``'number'``, ``'string'`` or ``'boolean'`` for the grid values numpy would merge, else None."""
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, (str, np.str_)):
        return "string"
    return None


def _check_grid(grid) -> dict:
    if not isinstance(grid, dict) or not grid:
        raise errors.ParameterError(f"grid={grid!r} is not allowed: grid must be a non-empty dict "
                                    "{parameter name: sequence of values}")
    out = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise errors.ParameterError(f"grid key {name!r} is not allowed: keys must be parameter names")
        if isinstance(values, (list, tuple)):
            kinds = {_value_kind(v) for v in values} - {None}
            if len(kinds) > 1:  # numpy would turn [0.5, 'x'] into strings, [True, 0.5] into numbers
                raise errors.ParameterError(
                    f"grid[{name!r}]={list(values)!r} is not allowed: the values of one parameter must not mix "
                    f"{' and '.join(kind + 's' for kind in sorted(kinds))}; sweep them separately")
        try:
            vals = list(np.atleast_1d(np.asarray(values)).tolist()) if not isinstance(values, str) else [values]
        except ValueError:  # values of different shapes (arrays, lists): each is one value
            vals = list(values)
        if not vals:
            raise errors.ParameterError(f"grid[{name!r}]=[] is not allowed: give at least one value")
        if len(set(map(repr, vals))) != len(vals):
            raise errors.ParameterError(f"grid[{name!r}]={vals!r} is not allowed: values must be distinct")
        out[name] = vals
    return out


def _in_dask_worker() -> bool:
    """Whether this runs on a dask worker (of a cluster :func:`sweep` was given or started)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _run_point(function, kwargs):
    """Run one point; returns ``(status, error, Dataset or None, runtime_s)``.

    ``'ok'``; ``'truncated'`` (the function returned the times before a divergence,
    ``attrs['truncated']``); ``'diverged'`` (a :class:`~dmft.errors.DivergenceError`: a
    Dataset holding only its ``diverged_at`` and ``divergence_cause`` attrs); ``'failed'``.
    """
    t0 = _time.perf_counter()
    # a cluster runs a point per core: a solve's own threads would oversubscribe them
    one_thread = _config.SOLVE_THREADS_HERE.set(1) if _in_dask_worker() else None
    try:
        ds = function(**kwargs)
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"the sweep function returned {type(ds).__name__}, not an xarray.Dataset")
        if ds.attrs.get("truncated"):
            return ("truncated", f"DivergenceError at time {ds.attrs.get('diverged_at')} (cause "
                    f"{ds.attrs.get('divergence_cause')}): the output stops before it", ds, _time.perf_counter() - t0)
        return "ok", "", ds, _time.perf_counter() - t0
    except errors.DivergenceError as e:
        return ("diverged", f"DivergenceError: {e}",
                xr.Dataset(attrs={"diverged_at": float(e.time), "divergence_cause": e.cause}), _time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001  (recorded, not fatal, by design)
        return "failed", f"{type(e).__name__}: {e}", None, _time.perf_counter() - t0
    finally:
        if one_thread is not None:
            _config.SOLVE_THREADS_HERE.reset(one_thread)


def _content_hash(ds: xr.Dataset) -> str:
    """SHA-256 of a Dataset's variables (names, dims, dtypes, shapes, values, attrs) and attrs."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        values = np.asarray(var.values)
        h.update(_json([name, list(var.dims), values.dtype.str, list(values.shape), var.attrs]).encode())
        h.update(_json(values.ravel().tolist()).encode() if values.dtype.kind == "O"
                 else np.ascontiguousarray(values).tobytes())
    h.update(_json(ds.attrs).encode())
    return h.hexdigest()


def _unique_temporary(path: Path) -> Path:
    """A fresh hidden name next to ``path``: concurrent writers never share a temporary file."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _replace_with(path: Path, write) -> None:
    """``write(tmp)`` to a unique temporary file, then rename it onto ``path`` (atomic)."""
    tmp = _unique_temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _can_write(folder: Path) -> bool:
    probe = _unique_temporary(folder / "write-test")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError:
        return False
    _unlink(probe)
    return True


def _proc_stat(pid: int):
    """``(state, start time in clock ticks)`` of a process from ``/proc`` (Linux), else None."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _owner() -> dict:
    stat = _proc_stat(os.getpid())
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": None if stat is None else stat[1],
            "token": uuid.uuid4().hex}


def _alive(pid: int, start) -> bool:
    """Does process ``pid`` of this host, started at ``start`` (clock ticks, or None), still run?"""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    stat = _proc_stat(pid)
    if stat is not None:  # a zombie has exited; another start time means the pid was reused
        return stat[0] != "Z" and (start is None or stat[1] == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _read_claim(path: Path):
    """The owner recorded in a claim file; ``{}`` while it is unreadable, None when absent."""
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}


class _Claim:
    """This process's claim on one point: its lock file, released (deleted) when done."""

    def __init__(self, path: Path, token: str):
        self.path, self.token = path, token

    def release(self) -> None:
        if (_read_claim(self.path) or {}).get("token") == self.token:
            _unlink(self.path)


def _is_file(path: Path) -> bool:
    try:
        return path.exists() and not path.is_dir()
    except OSError:  # in a folder this process cannot search: found not writable later
        return False


class _Folder:
    """``out``: point files named by the key of their identity, their claims, sweep.json, sweep.nc."""

    def __init__(self, out, resume: bool):
        self.out, self.resume = Path(out), resume
        if _is_file(self.out):
            raise errors.ParameterError(f"out={str(out)!r} is not allowed: it is an existing file; out must "
                                        "be a folder (created if missing)")
        self.points = self.out / "points"
        try:
            self.points.mkdir(parents=True, exist_ok=True)
            self.writable = _can_write(self.out) and _can_write(self.points)
        except OSError:
            self.writable = False
        self.rejected = set()  # write ids of stored points to compute again
        self._skipped = {}  # path -> (inode, mtime, size) of a file already found unusable
        self._warned = set()

    def path(self, key: str) -> Path:
        return self.points / f"point_{key[:32]}.nc"

    def load(self, key: str, identity: dict):
        """``((status, error, ds or None, runtime_s), write_id)`` of a usable stored point, else None."""
        path = self.path(key)
        try:
            st = path.stat()
        except OSError:  # absent, or in a folder this process cannot search
            return None
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._skipped.get(path) == signature:
            return None
        problem, stored = _read_point(path, key, identity)
        if problem is None:
            stored, write_id, version = stored
            if version != _version():
                if self.resume:
                    raise errors.ParameterError(
                        f"out={str(self.out)!r} is not allowed: its point {path.name} was computed with "
                        f"sgd-dynamics {version}, this is {_version()}; resume=False recomputes every point, "
                        "or use another folder")
            elif write_id not in self.rejected:
                return stored, write_id
        self._skipped[path] = signature
        if problem is not None:
            warnings.warn(f"sweep point file {path} {problem}; the point is computed again",
                          CorruptPointWarning, stacklevel=4)
        return None

    def reuse(self, key: str, identity: dict):
        """The result of a usable stored point, else None."""
        stored = self.load(key, identity)
        return None if stored is None else stored[0]

    def write(self, key: str, identity: dict, result, seed: int):
        """Store a computed point; returns ``(status, error, ds, runtime_s)`` as read back."""
        status, error, ds, runtime = result
        ds = xr.Dataset() if ds is None else ds.copy()
        ds.attrs = {**ds.attrs, "sweep_status": status, "sweep_error": error, "sweep_runtime_s": float(runtime),
                    "sweep_point_seed": int(seed),
                    "sweep_params": _json({**identity, "library_version": _version()}),
                    "sweep_write_id": uuid.uuid4().hex}
        path = self.path(key)
        written = []

        def write(tmp):
            import h5netcdf

            output.save(ds, tmp)
            written.append(output.load(tmp))  # the Dataset as any reader will see it
            with h5netcdf.File(tmp, "a") as f:
                f.attrs["sweep_content_hash"] = _content_hash(written[0])
        _replace_with(path, write)
        back = written[0]
        back.attrs = {k: v for k, v in back.attrs.items() if k not in _POINT_ATTRS}
        return status, error, (None if status == "failed" else back), float(runtime)

    def claim(self, key: str):
        """A :class:`_Claim` on point ``key``, or None while another live process holds it."""
        path = self.points / f"point_{key[:32]}.lock"
        for _ in range(8):  # each retry follows the removal of a stale claim
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = _read_claim(path)
                if holder is None:
                    continue
                if not _stale(path, holder):
                    self._note_foreign(path, holder)
                    return None
                _break(path, holder)
                continue
            owner = _owner()
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(owner))
            return _Claim(path, owner["token"])
        return None

    def _note_foreign(self, path: Path, holder: dict) -> None:
        if holder and holder.get("host") != socket.gethostname() and path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"sweep point claimed by pid {holder['pid']} on host {holder.get('host')!r} "
                          f"({path}): waiting for it; delete that file if the process no longer runs",
                          stacklevel=5)

    def tidy(self) -> None:
        """Remove the claims of exited processes and the temporary point files they left."""
        for path in self.points.glob("point_*.lock"):
            holder = _read_claim(path)
            if holder is not None and _stale(path, holder):
                _break(path, holder)
        for tmp in self.points.glob(".point_*.nc.*.tmp"):
            if not (self.points / (tmp.name[1:].split(".nc.")[0] + ".lock")).exists():
                _unlink(tmp)


def _stale(path: Path, holder: dict) -> bool:
    """Has the owner of a claim exited? Unknown (False) for an owner on another host."""
    if not holder:  # being written, or its owner died while writing it
        try:
            return _time.time() - path.stat().st_mtime > _CLAIM_WRITE_S
        except FileNotFoundError:
            return False
    return holder.get("host") == socket.gethostname() and not _alive(holder["pid"], holder.get("start"))


def _break(path: Path, holder: dict) -> None:
    """Remove a stale claim, unless a new one replaced it since it was read."""
    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # removed by another process
        return
    if _read_claim(aside) != holder:  # a fresh claim: put it back
        try:
            os.link(aside, path)
        except OSError:
            pass
    _unlink(aside)


def _read_point(path: Path, key: str, identity: dict):
    """``(problem, None)`` or ``(None, ((status, error, ds or None, runtime_s), write_id, version))``."""
    try:
        ds = output.load(path)
    except Exception as e:  # noqa: BLE001  (any reader error of a truncated or damaged file)
        return f"cannot be read ({type(e).__name__}: {e})", None
    a = dict(ds.attrs)
    try:
        stored_hash = str(a.pop("sweep_content_hash"))
        ds.attrs = a
        params = json.loads(str(a["sweep_params"]))
        write_id = str(a["sweep_write_id"])
        status, error, runtime = str(a["sweep_status"]), str(a["sweep_error"]), float(a["sweep_runtime_s"])
    except (KeyError, ValueError, TypeError) as e:
        return f"is not a sweep point file (missing or bad attribute: {e})", None
    if _content_hash(ds) != stored_hash:
        return "does not match its content hash (damaged)", None
    version = params.pop("library_version", None)
    if _digest(params) != key:
        differ = sorted(k for k in identity if _json(params.get(k)) != _json(identity[k]))
        return (f"holds another point ({', '.join(f'{k}={v!r}' for k, v in params.get('point', {}).items())}; "
                f"it differs in {differ})"), None
    ds.attrs = {k: v for k, v in a.items() if k not in _POINT_ATTRS}
    return None, ((status, error, None if status == "failed" else ds, runtime), write_id, version)


def _seed_attr(seed):
    """``sweep_seed``: the root seed as a netCDF attribute (JSON when it is no int64)."""
    record = _seed_record(seed)
    return record if isinstance(record, int) and record < 2**63 else json.dumps(record)


def _manifest(function, grid, fixed, seed) -> dict:
    return {"format": 2, "function": _canonical(function), "fixed": _canonical(fixed), "seed": _seed_record(seed),
            "grid": _canonical(grid), "library_version": _version()}


def _check_manifest(folder: _Folder, manifest: dict) -> None:
    """Refuse to resume in a folder whose sweep.json has another function, ``fixed`` or seed."""
    path = folder.out / "sweep.json"
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        stored = e
    if not isinstance(stored, dict):
        warnings.warn(f"sweep file {path} cannot be read ({stored}); every stored point is checked against "
                      "its own parameters", CorruptPointWarning, stacklevel=3)
        return
    differ = sorted(k for k in ("format", "function", "fixed", "seed") if _json(stored.get(k)) != _json(manifest[k]))
    if differ:
        raise errors.ParameterError(
            f"out={str(folder.out)!r} holds a different sweep (sweep.json differs in {differ}): use another "
            "folder or resume=False")


#: a dask scheduler address: with a protocol (``tcp://host:8786``) or a port (``host:8786``)
_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://\S+|[^\s:/]+:\d+)$")


def _check_client(client) -> None:
    """Refuse a ``client`` that is no Client, ``'local'`` or scheduler address, before any work."""
    if client is None or client == "local" or (isinstance(client, str) and _ADDRESS.match(client)):
        return
    if not isinstance(client, str):
        try:
            import distributed
        except ImportError:  # pragma: no cover - depends on the environment
            distributed = None
        if distributed is not None and isinstance(client, distributed.Client):
            return
    raise errors.ParameterError(f"client={client!r} is not allowed: client must be None, a distributed.Client, "
                                "'local' or a dask scheduler address such as 'tcp://host:8786' or 'host:8786'")


def _open_client(client):
    """``(client, close)``: a distributed Client from a Client, an address or ``'local'``."""
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise errors.ParameterError(
            f"client={client!r} is not allowed without dask.distributed: "
            "pip install 'sgd-dynamics[distributed]'") from e
    if isinstance(client, distributed.Client):
        return client, lambda: None
    if client == "local":
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
        c = distributed.Client(cluster)

        def close():
            c.close()
            cluster.close()
        return c, close
    if isinstance(client, str):
        try:
            c = distributed.Client(client)
        except (OSError, ValueError, TimeoutError) as e:
            raise errors.ParameterError(
                f"client={client!r} is not allowed: no dask scheduler answers at that address ({type(e).__name__}: "
                f"{e}); start the scheduler there, or pass client=None (serial) or 'local'") from None
        return c, c.close
    raise errors.ParameterError(f"client={client!r} is not allowed: client must be None, a "
                                "distributed.Client, a scheduler address or 'local'")


def _without_swept_dims(result, grid):
    """A result with a length-1 dim named like a grid key (``dynamics='gf'`` of
    :func:`dmft.compare`) loses that dim; the grid coordinate takes its place."""
    st, err, ds, rt = result
    if st not in _WITH_VALUES:
        return result
    for k in grid:
        if k in ds.dims:
            if ds.sizes[k] != 1:
                return ("failed", f"the result has a dim {k!r} of size {ds.sizes[k]} that is also swept", None, rt)
            ds = ds.isel({k: 0}, drop=True)
        elif k in ds.coords:
            ds = ds.drop_vars(k)
    return st, err, ds, rt


def _mismatch(template: xr.Dataset, ds: xr.Dataset, grid) -> str | None:
    """Why point ``ds`` does not stack with ``template`` (the first successful point), or None."""
    for name, var in template.data_vars.items():
        if name not in grid and (name not in ds.data_vars or ds[name].dims != var.dims
                                 or ds[name].shape != var.shape):
            return f"variable {name!r} missing or of another shape than at the first successful point"
    for name, coord in template.coords.items():
        if name in grid:
            continue
        if name not in ds.coords or ds[name].dims != coord.dims or ds[name].shape != coord.shape:
            return f"coordinate {name!r} missing or of another shape than at the first successful point"
        if name in template.dims and not ds[name].variable.equals(coord.variable):
            return (f"coordinate {name!r} differs from that of the first successful point (the stacked "
                    f"Dataset has one {name!r} axis): sweep it in separate sweeps")
    return None


def _stacked(name, var, good, results, grid) -> tuple:
    """``(dims, values, attrs)`` of ``name`` over the grid, filled at the points not in ``good``."""
    shape = tuple(len(v) for v in grid.values())
    kind = var.dtype.kind
    fill = np.nan if kind in "fc" else ("" if kind in "USO" else np.nan)
    dtype = var.dtype if kind in "fcUSO" else np.float64
    if kind in "US":
        dtype = object
    arr = np.full((int(np.prod(shape)),) + var.shape, fill, dtype=dtype)
    for i in good:
        arr[i] = results[i][2][name].values
    return tuple(grid) + var.dims, arr.reshape(shape + var.shape), dict(var.attrs)


def _padded(ds: xr.Dataset, template: xr.Dataset) -> xr.Dataset:
    """A truncated point on the template's axes: each index coordinate that is a prefix of
    the template's (to 1e-12, relative) is extended to it, the values NaN beyond; a non-index
    coordinate equal to the template's where it is defined becomes the template's."""
    for dim in list(ds.dims):
        if dim not in ds.coords or dim not in template.coords:
            continue
        mine, full = ds[dim].values, template[dim].values
        if (mine.ndim == full.ndim == 1 and mine.size < full.size and mine.dtype.kind in "fi"
                and full.dtype.kind in "fi" and np.allclose(mine, full[:mine.size], rtol=1e-12, atol=0)):
            ds = ds.assign_coords({dim: (dim, full[:mine.size], ds[dim].attrs)}).reindex({dim: full})
    for name, c in template.coords.items():
        if name in template.dims or name not in ds.coords or ds[name].dims != c.dims:
            continue
        mine, full = ds[name].values, c.values
        if mine.dtype.kind == "f" and full.dtype.kind == "f" and mine.shape == full.shape:
            known = np.isfinite(mine)
            if np.allclose(mine[known], full[known], rtol=1e-12, atol=0):
                ds = ds.assign_coords({name: c.variable})
    return ds


def _template_index(results, with_values) -> int:
    """The point the others are stacked like: the first ``'ok'`` one, else the truncated one
    with the longest axes."""
    full = [i for i in with_values if results[i][0] == "ok"]
    if full:
        return full[0]
    return max(with_values, key=lambda i: sum(results[i][2].sizes.values()))


def _stack(grid, results, meta_attrs):
    """Stack ``{index: (status, error, ds, runtime)}`` into one Dataset over the grid.

    Non-index coordinates equal at every successful point are kept as they are; those
    that differ (``epoch = t batch`` when ``batch`` is swept) are stacked like the
    variables (xarray's ``concat(coords='different')``). A truncated point's values are
    NaN after its divergence (:func:`_padded`).
    """
    shape = tuple(len(v) for v in grid.values())
    dims = tuple(grid)
    n = int(np.prod(shape))
    results = {i: _without_swept_dims(r, grid) for i, r in results.items()}
    status = np.array([results[i][0] for i in range(n)], dtype=object)
    error = np.array([results[i][1] for i in range(n)], dtype=object)
    runtime = np.array([results[i][3] for i in range(n)], dtype=float)
    seeds = np.asarray(meta_attrs["_seeds"], dtype=np.int64)
    ok = [i for i in range(n) if status[i] in _WITH_VALUES]
    first = _template_index(results, ok) if ok else None
    template = results[first][2] if ok else None
    for i in ok:
        if status[i] == "truncated":
            results[i] = (*results[i][:2], _padded(results[i][2], template), results[i][3])
    for i in ok:
        problem = None if i == first else _mismatch(template, results[i][2], grid)
        if problem is not None:
            status[i], error[i] = "failed", problem
    good = [i for i in ok if status[i] in _WITH_VALUES]
    data_vars, coords = {}, {}
    if template is not None:
        for name, var in template.data_vars.items():
            if name not in grid:  # e.g. onepass's lr(t) when sweeping lr: the grid coordinate wins
                data_vars[name] = _stacked(name, var, good, results, grid)
        for name, c in template.coords.items():
            if name in dims:
                continue
            same = name in template.dims or all(results[i][2][name].variable.equals(c.variable) for i in good)
            coords[name] = c.variable if same else _stacked(name, c.variable, good, results, grid)
    for k, vals in grid.items():
        coords[k] = xr.Variable((k,), np.asarray(vals), output.describe(k) if k in output.VARIABLES else
                                {"long_name": k, "units": "1"})
    data_vars["status"] = (dims, status.astype(str).reshape(shape), output.describe("status"))
    data_vars["error"] = (dims, error.astype(str).reshape(shape), output.describe("error"))
    data_vars["runtime_s"] = (dims, runtime.reshape(shape), output.describe("runtime_s"))
    data_vars["point_seed"] = (dims, seeds.reshape(shape), output.describe("point_seed"))
    attrs_of = [{} if results[i][2] is None else results[i][2].attrs for i in range(n)]
    data_vars["diverged_at"] = (dims, np.array([float(a.get("diverged_at", np.nan)) for a in attrs_of]).reshape(shape),
                                output.describe("diverged_at"))
    data_vars["divergence_cause"] = (dims, np.array([str(a.get("divergence_cause", "")) for a in attrs_of],
                                                    dtype=object).astype(str).reshape(shape),
                                     output.describe("divergence_cause"))
    ds = xr.Dataset(data_vars, coords=coords)
    attrs = {} if template is None else {k: v for k, v in template.attrs.items() if k not in grid and k not in (
        "seed", "runtime_s", "truncated", "diverged_at", "divergence_cause")}
    attrs.update({k: v for k, v in meta_attrs.items() if not k.startswith("_")})
    attrs["sweep_n_failed"] = int(np.sum((status != "ok") & (status != "truncated")))
    attrs["sweep_n_truncated"] = int(np.sum(status == "truncated"))
    ds.attrs = output.clean_attrs(attrs)
    return ds


class _Serial:
    """Runs a started point at once, in this process."""

    capacity = 1

    def __init__(self, run):
        self._run, self._done = run, []

    def start(self, i):
        self._done.append((i, self._run(i)))

    def finished(self):
        done, self._done = self._done, []
        return done

    def close(self):
        pass


class _Dask:
    """Runs started points as dask.distributed tasks, at most ``capacity`` at a time."""

    def __init__(self, client, function, kwargs_of):
        self._client, self.close = _open_client(client)
        import distributed

        self._wait = distributed.wait
        self.capacity = 2 * max(1, sum(self._client.nthreads().values()))
        self._function, self._kwargs_of, self._futures = function, kwargs_of, {}

    def start(self, i):
        kw = self._kwargs_of(i)
        fut = self._client.submit(_run_point, self._function, kw, pure=False,
                                  key=f"sweep-point-{i}-{kw['seed']}-{_time.time_ns()}")
        self._futures[fut] = i

    def finished(self):
        if not self._futures:
            return []
        done, _ = self._wait(list(self._futures), return_when="FIRST_COMPLETED")
        out = []
        for fut in done:
            i = self._futures.pop(fut)
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001  (a worker died, pickling failed, ...)
                r = ("failed", f"{type(e).__name__}: {e}", None, 0.0)
            out.append((i, r))
        return out


class _Unclaimed:
    """The claim of a sweep without ``out``: nothing to share."""

    @staticmethod
    def release():
        pass


def _compute(todo, backend, claim, reuse, record) -> None:
    """Compute the points ``todo`` on ``backend``, each under this process's claim.

    ``claim(i)`` returns a claim, or None while another process holds point ``i``;
    ``reuse(i)`` returns a result stored meanwhile (or None); ``record(i, result,
    computed)``. Points claimed elsewhere are done last: once they are stored they are
    reused, and if their claim goes stale they are claimed and computed here.
    """
    pending, blocked, running = deque(todo), [], {}
    try:
        while pending or blocked or running:
            while pending and len(running) < backend.capacity:
                i = pending.popleft()
                claimed = claim(i)
                if claimed is None:
                    blocked.append(i)
                    continue
                stored = reuse(i)  # stored by another process since the folder was read
                if stored is not None:
                    claimed.release()
                    record(i, stored, False)
                    continue
                running[i] = claimed
                backend.start(i)
            for i, r in backend.finished():
                record(i, r, True)
                running.pop(i).release()
            if blocked and not pending and not running:
                _time.sleep(_POLL_S)
                for i in blocked:
                    stored = reuse(i)
                    if stored is not None:
                        record(i, stored, False)
                    else:
                        pending.append(i)
                blocked = []
    finally:
        for claimed in running.values():
            claimed.release()


def sweep(
    function,
    grid: dict,
    *,
    fixed: dict | None = None,
    seed: int = 0,
    out=None,
    client=None,
    resume: bool = True,
    retry_failed: bool = False,
    progress: bool = True,
    on_divergence: str = "raise",
) -> xr.Dataset:
    """Run ``function(**fixed, **point, seed=...)`` on every point of ``grid`` and stack the results.

    Parameters
    ----------
    function : callable returning xarray.Dataset
        E.g. :func:`dmft.compare`, :func:`dmft.solve`, or a module-level function of yours
        (it must be importable by the dask workers). It receives every grid parameter and
        every ``fixed`` one as keywords, plus ``seed`` (an int, independent per point) and
        ``progress=False`` if it takes a ``progress`` argument. Stored points are matched
        by its ``module.qualname``, not its code: after changing the code, pass
        ``resume=False`` or use another ``out``.
    grid : dict of {name: sequence}
        Parameter values; the result has one dim per key, in this order, with the values
        as coordinates (e.g. ``{'lr': [0.5, 1, 2], 'batch': [1, 4], 'delta': [1, 2]}``).
        ``1`` and ``1.0`` are different values (the function receives either).
    fixed : dict, optional
        Keyword arguments shared by all points.
    seed : int, numpy.random.Generator or numpy.random.SeedSequence
        Root seed; the point ``p`` (``{name: value}``) gets :func:`point_seed` ``(seed, p)``
        (``SeedSequence(s)`` gives the numbers of ``s``). A Generator stands for the integer
        ``int(seed.integers(2**63))`` drawn from it (``attrs['sweep_seed']``).
    out : path, optional
        Folder for incremental output (``points/point_<key>.nc``, ``sweep.json``) and the
        stacked ``sweep.nc`` (see the module docstring). If it (or its ``points/``) is not
        writable, the stored points are loaded and nothing is written; a
        :class:`~dmft.errors.ParameterError` naming ``out`` is raised before any
        computation if some point is missing.
    client : None, distributed.Client, str
        ``None`` runs serially in this process; otherwise dask.distributed (a Client, a
        scheduler address ``'tcp://host:8786'`` or ``'host:8786'``, or ``'local'`` for a
        LocalCluster with 2 single-threaded workers). An address of another form is refused
        before anything is done, one where no scheduler answers (within dask's connect
        timeout, ``distributed.comm.timeouts.connect``) before any point is computed:
        :class:`~dmft.errors.ParameterError` naming ``client``.
    resume : bool
        Reuse the points stored under ``out`` whose parameters are those of a grid point
        (``fixed``, ``seed`` and the function must be those of the stored ``sweep.json``;
        the grid may differ). ``False`` recomputes every point (points written meanwhile
        by a concurrent process are used).
    retry_failed : bool
        When resuming, recompute points whose stored status is not ``'ok'``.
    progress : bool
        Show a bar over points (if the switch :func:`dmft.set_progress` allows it).
    on_divergence : {'raise', 'truncate'}
        Passed to ``function`` at every point when it takes an ``on_divergence`` argument
        (every library entry point does), as part of the points' identity like ``fixed``.
        Either way a divergence never stops the sweep: with ``'raise'`` the point's
        :class:`~dmft.errors.DivergenceError` is recorded (status ``'diverged'``, no
        values); with ``'truncate'`` the point keeps its output times before the divergence
        (status ``'truncated'``, its values NaN after ``diverged_at``). ``diverged_at`` and
        ``divergence_cause`` are recorded for both. ``'truncate'`` with a function that has no
        ``on_divergence`` argument is refused.

    Returns
    -------
    xarray.Dataset
        The function's variables with the grid dims in front (masked with NaN/'' at points
        that did not succeed), plus ``status``, ``error`` (str), ``runtime_s`` (s) and
        ``point_seed``, ``diverged_at`` (NaN where none) and ``divergence_cause`` (str)
        over the grid. Non-index coordinates that differ between points
        (``epoch = t batch`` when ``batch`` is swept) get the grid dims too; a point whose
        index coordinate (e.g. ``time``) differs from the first successful point's is
        ``'failed'``. ``attrs``: the function's attrs minus the swept ones,
        ``sweep_grid``, ``sweep_fixed``, ``sweep_seed``, ``sweep_function``,
        ``sweep_n_failed`` (failed or diverged), ``sweep_n_truncated``.

    Examples
    --------
    >>> import dmft
    >>> ds = dmft.sweep(dmft.compare, {"lr": [0.25, 0.5]}, fixed=dict(
    ...     model="linear_regression", dynamics="gf", t_max=0.5, d=50, n_seeds=2, n_paths=64,
    ...     n_time=3), progress=False)
    >>> ds.test_loss.dims
    ('lr', 'dynamics', 'source', 'time')
    """
    if not callable(function):
        raise errors.ParameterError(f"function={function!r} is not allowed: function must be callable")
    grid = _check_grid(grid)
    fixed = dict(fixed or {})
    clash = (set(fixed) & set(grid)) | ({"seed", "on_divergence"} & (set(fixed) | set(grid)))
    if clash:
        raise errors.ParameterError(f"grid/fixed key(s) {sorted(clash)} are not allowed: a parameter is "
                                    "either swept or fixed, and 'seed' and 'on_divergence' are set by "
                                    "sweep(seed=..., on_divergence=...)")
    seed = errors.seed_value(seed)
    on_divergence = errors.on_divergence(on_divergence)
    _check_client(client)
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_progress = "progress" in parameters
    if "on_divergence" in parameters:
        fixed["on_divergence"] = on_divergence
    elif on_divergence != "raise":
        raise errors.ParameterError(f"on_divergence={on_divergence!r} is not allowed: {_name(function)} takes no "
                                    "on_divergence argument")
    names = list(grid)
    points = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
    seeds = [point_seed(seed, p) for p in points]
    shared = {"function": _canonical(function), "fixed": _canonical(fixed)}
    identities = [{**shared, "point": _canonical(p), "point_seed": s} for p, s in zip(points, seeds)]
    keys = [_digest(identity) for identity in identities]

    def kwargs_of(i):
        kw = {**fixed, **points[i], "seed": seeds[i]}
        if takes_progress and "progress" not in kw:
            kw["progress"] = False
        return kw

    results, folder = {}, None
    if out is not None:
        folder = _Folder(out, resume)
        manifest = _manifest(function, grid, fixed, seed)
        if resume:
            _check_manifest(folder, manifest)
        for i in range(len(points)):
            stored = folder.load(keys[i], identities[i])
            if stored is None:
                continue
            if resume and (stored[0][0] == "ok" or not retry_failed):
                results[i] = stored[0]
            else:
                folder.rejected.add(stored[1])
    todo = [i for i in range(len(points)) if i not in results]
    if folder is not None and not folder.writable and todo:
        raise errors.ParameterError(
            f"out={str(out)!r} is not allowed: the folder or its points/ is not writable and {len(todo)} of "
            f"{len(points)} points are not stored in it; make it writable or use another folder")
    if folder is not None and folder.writable:
        _replace_with(folder.out / "sweep.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))

    with progress_bar(progress, total=len(points), initial=len(points) - len(todo), desc="dmft.sweep",
                      unit="point") as bar:
        def run(i):
            bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in points[i].items()))
            return _run_point(function, kwargs_of(i))

        def record(i, r, computed):
            if computed and folder is not None:
                r = folder.write(keys[i], identities[i], r, seeds[i])
            results[i] = r
            bar.update()

        if todo:
            backend = _Serial(run) if client is None else _Dask(client, function, kwargs_of)
            try:
                _compute(todo, backend,
                         claim=(lambda i: _Unclaimed) if folder is None else (lambda i: folder.claim(keys[i])),
                         reuse=(lambda i: None) if folder is None else (lambda i: folder.reuse(keys[i], identities[i])),
                         record=record)
            finally:
                backend.close()
    meta = {"sweep_grid": json.dumps(grid), "sweep_fixed": json.dumps({k: repr(v) for k, v in fixed.items()}),
            "sweep_seed": _seed_attr(seed), "sweep_function": _name(function), "_seeds": seeds}
    ds = _stack(grid, results, meta)
    if folder is not None and folder.writable:
        _replace_with(folder.out / "sweep.nc", lambda tmp: output.save(ds, tmp))
        folder.tidy()
    return ds
