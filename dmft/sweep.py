"""Parameter sweeps: one Dataset over a grid, serial or on a dask cluster, resumable.

:func:`sweep` calls a function that returns an :class:`xarray.Dataset` (for example
:func:`dmft.compare`, :func:`dmft.solve`, :func:`onepass.compare`) at every point of a
parameter grid and stacks the results along one dim per grid parameter.

- **Seeds.** Point ``i`` (flat C-order index into the grid) gets its own integer seed
  ``SeedSequence([seed, i]).generate_state(1)[0]`` (stored as ``point_seed``), so every
  point has an independent stream and the result does not depend on the execution order,
  the backend or on resuming.
- **Failures.** A point that raises is recorded, not fatal: ``status`` is ``'ok'``,
  ``'diverged'`` (:class:`~dmft.errors.DivergenceError`) or ``'failed'`` (any other
  ``Exception``) and ``error`` holds the message. The variables of a point that did not
  succeed are absent; in the stacked Dataset they are masked with the netCDF fill value
  (NaN for floats), and those are the only fill values: ``ds.where(ds.status == 'ok')``
  is a no-op on the values. ``KeyboardInterrupt`` stops the sweep.
- **Incremental output and resume.** With ``out``, every finished point is written at
  once to ``out/points/point_<i>.nc`` (``ok`` and failed points alike), the grid to
  ``out/sweep.json``, and the stacked result to ``out/sweep.nc``. Running the same sweep
  again with the same ``out`` loads the written points and computes only the missing
  ones (``retry_failed=True`` also recomputes failed points).
- **Parallel.** ``client`` is a :class:`distributed.Client`, a scheduler address
  (``'tcp://host:8786'``) or ``'local'`` (a :class:`distributed.LocalCluster` on this
  machine, closed afterwards). Points are submitted as independent tasks; results are
  written by the calling process as they arrive. Needs the ``distributed`` extra.
"""
from __future__ import annotations

import inspect
import itertools
import json
import time as _time
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from . import errors, output

__all__ = ["sweep", "point_seed"]


def point_seed(seed: int, index: int) -> int:
    """Independent integer seed of grid point ``index``: ``SeedSequence([seed, index])``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def _check_grid(grid) -> dict:
    if not isinstance(grid, dict) or not grid:
        raise errors.ParameterError(f"grid={grid!r} is not allowed: grid must be a non-empty dict "
                                    "{parameter name: sequence of values}")
    out = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise errors.ParameterError(f"grid key {name!r} is not allowed: keys must be parameter names")
        vals = list(np.atleast_1d(np.asarray(values)).tolist()) if not isinstance(values, str) else [values]
        if not vals:
            raise errors.ParameterError(f"grid[{name!r}]=[] is not allowed: give at least one value")
        if len(set(map(repr, vals))) != len(vals):
            raise errors.ParameterError(f"grid[{name!r}]={vals!r} is not allowed: values must be distinct")
        out[name] = vals
    return out


def _run_point(function, kwargs):
    """Run one point; returns ``(status, error, Dataset or None, runtime_s)``."""
    t0 = _time.perf_counter()
    try:
        ds = function(**kwargs)
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"the sweep function returned {type(ds).__name__}, not an xarray.Dataset")
        return "ok", "", ds, _time.perf_counter() - t0
    except errors.DivergenceError as e:
        return "diverged", f"DivergenceError: {e}", None, _time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001  (recorded, not fatal, by design)
        return "failed", f"{type(e).__name__}: {e}", None, _time.perf_counter() - t0


def _point_path(out: Path, index: int) -> Path:
    return out / "points" / f"point_{index:06d}.nc"


def _write_point(out: Path, index: int, status: str, error: str, ds, runtime: float, pseed: int):
    if ds is None:
        ds = xr.Dataset()
    else:
        ds = ds.copy()
    ds.attrs = {**ds.attrs, "sweep_status": status, "sweep_error": error, "sweep_runtime_s": float(runtime),
                "sweep_point_seed": int(pseed), "sweep_index": int(index)}
    path = _point_path(out, index)
    tmp = path.with_suffix(".tmp")
    output.save(ds, tmp)
    tmp.replace(path)  # atomic: an interrupted write never looks finished


def _read_point(out: Path, index: int):
    ds = output.load(_point_path(out, index))
    a = ds.attrs
    status, error = str(a.pop("sweep_status")), str(a.pop("sweep_error"))
    runtime = float(a.pop("sweep_runtime_s"))
    a.pop("sweep_point_seed", None)
    a.pop("sweep_index", None)
    return status, error, (ds if status == "ok" else None), runtime


def _manifest(function, grid, fixed, seed) -> dict:
    name = getattr(function, "__module__", "?") + "." + getattr(function, "__qualname__", type(function).__qualname__)
    return {"function": name, "grid": {k: [repr(v) for v in vals] for k, vals in grid.items()},
            "fixed": {k: repr(v) for k, v in sorted(fixed.items())}, "seed": int(seed)}


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
        c = distributed.Client(client)
        return c, c.close
    raise errors.ParameterError(f"client={client!r} is not allowed: client must be None, a "
                                "distributed.Client, a scheduler address or 'local'")


def _without_swept_dims(result, grid):
    """A result with a length-1 dim named like a grid key (``dynamics='gf'`` of
    :func:`dmft.compare`) loses that dim; the grid coordinate takes its place."""
    st, err, ds, rt = result
    if st != "ok":
        return result
    for k in grid:
        if k in ds.dims:
            if ds.sizes[k] != 1:
                return ("failed", f"the result has a dim {k!r} of size {ds.sizes[k]} that is also swept", None, rt)
            ds = ds.isel({k: 0}, drop=True)
        elif k in ds.coords:
            ds = ds.drop_vars(k)
    return st, err, ds, rt


def _stack(grid, results, meta_attrs):
    """Stack ``{index: (status, error, ds, runtime)}`` into one Dataset over the grid."""
    shape = tuple(len(v) for v in grid.values())
    dims = tuple(grid)
    n = int(np.prod(shape))
    status = np.empty(n, dtype=object)
    error = np.empty(n, dtype=object)
    runtime = np.zeros(n)
    seeds = np.zeros(n, dtype=np.int64)
    template = None
    results = {i: _without_swept_dims(r, grid) for i, r in results.items()}
    for i in range(n):
        st, err, ds, rt = results[i]
        if st == "ok" and template is None:
            template = ds
        status[i], error[i], runtime[i] = st, err, rt
        seeds[i] = meta_attrs["_seeds"][i]
    data_vars, coords = {}, {}
    if template is not None:
        for name, var in template.data_vars.items():
            if name in grid:  # e.g. onepass's lr(t) when sweeping lr: the grid coordinate wins
                continue
            kind = var.dtype.kind
            fill = np.nan if kind in "fc" else ("" if kind in "USO" else np.nan)
            dtype = var.dtype if kind in "fcUSO" else np.float64
            if kind in "US":
                dtype = object
            arr = np.full((n,) + var.shape, fill, dtype=dtype)
            for i in range(n):
                st, err, ds, _ = results[i]
                if st != "ok":
                    continue
                if name not in ds or ds[name].shape != var.shape or ds[name].dims != var.dims:
                    status[i] = "failed"
                    error[i] = (f"variable {name!r} missing or of another shape than at the first "
                                "successful point")
                    continue
                arr[i] = ds[name].values
            data_vars[name] = (dims + var.dims, arr.reshape(shape + var.shape), dict(var.attrs))
        for name, c in template.coords.items():
            if name not in dims:
                coords[name] = c.variable
        # points re-marked as failed above lose their values
        bad = np.array([status[i] != "ok" and results[i][0] == "ok" for i in range(n)])
        if bad.any():
            for name, (vdims, arr, attrs) in data_vars.items():
                flat = arr.reshape((n,) + arr.shape[len(shape):])
                flat[bad] = np.nan if arr.dtype.kind in "fc" else ""
    for k, vals in grid.items():
        coords[k] = xr.Variable((k,), np.asarray(vals), output.describe(k) if k in output.VARIABLES else
                                {"long_name": k, "units": "1"})
    data_vars["status"] = (dims, status.astype(str).reshape(shape), output.describe("status"))
    data_vars["error"] = (dims, error.astype(str).reshape(shape), output.describe("error"))
    data_vars["runtime_s"] = (dims, runtime.reshape(shape), output.describe("runtime_s"))
    data_vars["point_seed"] = (dims, seeds.reshape(shape), output.describe("point_seed"))
    ds = xr.Dataset(data_vars, coords=coords)
    attrs = {} if template is None else {k: v for k, v in template.attrs.items()
                                         if k not in grid and k not in ("seed", "runtime_s")}
    attrs.update({k: v for k, v in meta_attrs.items() if not k.startswith("_")})
    attrs["sweep_n_failed"] = int(np.sum(status != "ok"))
    ds.attrs = output.clean_attrs(attrs)
    return ds


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
) -> xr.Dataset:
    """Run ``function(**fixed, **point, seed=...)`` on every point of ``grid`` and stack the results.

    Parameters
    ----------
    function : callable returning xarray.Dataset
        E.g. :func:`dmft.compare`, :func:`dmft.solve`, or a module-level function of yours
        (it must be importable by the dask workers). It receives every grid parameter and
        every ``fixed`` one as keywords, plus ``seed`` (an int, independent per point) and
        ``progress=False`` if it takes a ``progress`` argument.
    grid : dict of {name: sequence}
        Parameter values; the result has one dim per key, in this order, with the values
        as coordinates (e.g. ``{'lr': [0.5, 1, 2], 'batch': [1, 4], 'delta': [1, 2]}``).
    fixed : dict, optional
        Keyword arguments shared by all points.
    seed : int
        Root seed; point ``i`` (flat C-order index) gets :func:`point_seed` ``(seed, i)``.
    out : path, optional
        Folder for incremental output (``points/point_<i>.nc``, ``sweep.json``) and the
        stacked ``sweep.nc``.
    client : None, distributed.Client, str
        ``None`` runs serially in this process; otherwise dask.distributed (a Client, a
        scheduler address or ``'local'`` for a LocalCluster with 2 single-threaded workers).
    resume : bool
        Reuse points already written under ``out`` (the grid, ``fixed``, ``seed`` and the
        function must be those of the stored ``sweep.json``). ``False`` recomputes all.
    retry_failed : bool
        When resuming, recompute points whose stored status is not ``'ok'``.
    progress : bool
        tqdm bar over points.

    Returns
    -------
    xarray.Dataset
        The function's variables with the grid dims in front (masked with NaN/'' at points
        that did not succeed), plus ``status``, ``error`` (str), ``runtime_s`` (s) and
        ``point_seed`` over the grid. ``attrs``: the function's attrs minus the swept
        ones, ``sweep_grid``, ``sweep_fixed``, ``sweep_seed``, ``sweep_function``,
        ``sweep_n_failed``.

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
    clash = (set(fixed) & set(grid)) | ({"seed"} & (set(fixed) | set(grid)))
    if clash:
        raise errors.ParameterError(f"grid/fixed key(s) {sorted(clash)} are not allowed: a parameter is "
                                    "either swept or fixed, and 'seed' is set per point by sweep(seed=...)")
    errors.seed_sequence(seed)
    try:
        takes_progress = "progress" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_progress = False
    names = list(grid)
    points = list(itertools.product(*grid.values()))
    seeds = [point_seed(seed, i) for i in range(len(points))]

    def kwargs_of(i):
        kw = {**fixed, **dict(zip(names, points[i])), "seed": seeds[i]}
        if takes_progress and "progress" not in kw:
            kw["progress"] = False
        return kw

    manifest = _manifest(function, grid, fixed, seed)
    results = {}
    if out is not None:
        out = Path(out)
        (out / "points").mkdir(parents=True, exist_ok=True)
        mpath = out / "sweep.json"
        if mpath.exists() and resume:
            stored = json.loads(mpath.read_text())
            if stored != manifest:
                raise errors.ParameterError(
                    f"out={str(out)!r} holds a different sweep (sweep.json differs in "
                    f"{sorted(k for k in manifest if stored.get(k) != manifest[k])}): use another folder "
                    "or resume=False")
            for i in range(len(points)):
                if _point_path(out, i).exists():
                    r = _read_point(out, i)
                    if r[0] == "ok" or not retry_failed:
                        results[i] = r
        mpath.write_text(json.dumps(manifest, indent=1))
    todo = [i for i in range(len(points)) if i not in results]

    def record(i, r):
        results[i] = r
        if out is not None:
            _write_point(out, i, r[0], r[1], r[2], r[3], seeds[i])

    with tqdm(total=len(points), initial=len(points) - len(todo), disable=not progress, desc="dmft.sweep",
              unit="point") as bar:
        if client is None:
            for i in todo:
                bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in zip(names, points[i])))
                record(i, _run_point(function, kwargs_of(i)))
                bar.update()
        elif todo:
            import distributed

            c, close = _open_client(client)
            try:
                futures = {c.submit(_run_point, function, kwargs_of(i), pure=False, key=f"sweep-point-{i}-"
                                    f"{seeds[i]}-{_time.time_ns()}"): i for i in todo}
                for fut in distributed.as_completed(futures):
                    i = futures[fut]
                    try:
                        r = fut.result()
                    except Exception as e:  # noqa: BLE001  (a worker died, pickling failed, ...)
                        r = ("failed", f"{type(e).__name__}: {e}", None, 0.0)
                    record(i, r)
                    bar.update()
            finally:
                close()
    meta = {"sweep_grid": json.dumps(grid), "sweep_fixed": json.dumps({k: repr(v) for k, v in fixed.items()}),
            "sweep_seed": int(seed), "sweep_function": manifest["function"], "_seeds": seeds}
    ds = _stack(grid, results, meta)
    if out is not None:
        output.save(ds, out / "sweep.nc")
    return ds
