"""SGD, SME and GF side by side, theory against simulation, in one Dataset.

:func:`compare` runs :func:`dmft.solve` (the DMFT) and, optionally, :func:`dmft.simulate`
(finite ``d``) for each dynamics on the same parameters and stacks the results along
two named dims, ``dynamics`` and ``source``; :func:`dmft.plotting.compare` draws it.
"""
from __future__ import annotations

import time as _time

import numpy as np
import xarray as xr

from . import errors, output
from . import models as _models
from ._progress import progress_bar
from .simulate import simulate as _simulate
from .solve import DRIVERS
from .solve import solve as _solve

__all__ = ["compare", "stack_sources", "shared_time", "common_prefix", "COMPARED_VARIABLES"]

#: variables that both the DMFT and the simulator return, in the order they are plotted
COMPARED_VARIABLES = ("test_loss", "train_loss", "norm", "overlap")


def shared_time(parts, names):
    """Give every Dataset in ``parts`` the ``time``/``epoch`` of the first (equal up to round-off)."""
    ref = parts[0]
    out = [ref]
    for name, part in zip(names[1:], parts[1:]):
        if "time" in part.dims:
            if part.sizes["time"] != ref.sizes["time"] or not np.allclose(part.time, ref.time, rtol=1e-9,
                                                                          atol=1e-12):
                raise errors.ParameterError(f"{name!r} has output times that differ from {names[0]!r}'s")
            part = part.assign_coords({c: ref[c] for c in ("time", "epoch") if c in ref.coords and c in part.coords})
        out.append(part)
    return out


def common_prefix(runs: list) -> tuple:
    """``on_divergence='truncate'``: cut every Dataset in the dicts ``runs`` to the output
    times all of them have (a truncated run keeps those before its divergence). Returns the
    cut dicts and the attrs of the earliest divergence (``{}`` if none was truncated)."""
    parts = [ds for r in runs for ds in r.values()]
    n = min(ds.sizes["time"] for ds in parts)
    cut = [{k: ds.isel({dim: slice(n) for dim in ("time", "time2") if dim in ds.dims}) for k, ds in r.items()}
           for r in runs]
    hit = [ds.attrs for ds in parts if ds.attrs.get("truncated")]
    if not hit:
        return cut, {}
    first = min(hit, key=lambda a: float(a["diverged_at"]))
    return cut, {"truncated": 1, "diverged_at": float(first["diverged_at"]),
                 "divergence_cause": str(first.get("divergence_cause", "learning_rate"))}


def stack_sources(results: dict, variables, *, sem_dim: str = "seed") -> xr.Dataset:
    """Stack ``{source: Dataset}`` along a new ``source`` dim, with ``*_sem`` for every variable.

    A Dataset with a ``sem_dim`` dim (simulation seeds) is reduced to its mean over it,
    and ``name_sem = std(ddof=1)/sqrt(n)`` over it (NaN for one seed). A Dataset that already has ``name_sem``
    keeps it (DMFT replicas); otherwise the standard error is 0 (deterministic theory).
    Only ``variables`` present in every source are kept. Shared by :mod:`dmft.compare` and
    :mod:`onepass.compare`.
    """
    names = [v for v in variables if all(v in ds for ds in results.values())]
    parts = []
    for src, ds in results.items():
        out = {}
        for v in names:
            da = ds[v]
            if sem_dim in da.dims:
                n = da.sizes[sem_dim]
                mean = da.mean(sem_dim, keep_attrs=True)
                # one seed has no spread: its standard error is unknown, not 0
                sem = (da.std(sem_dim, ddof=1) / np.sqrt(n)) if n > 1 else xr.full_like(mean, np.nan)
            else:
                mean = da
                sem = ds[v + "_sem"] if v + "_sem" in ds else xr.zeros_like(da)
            out[v] = mean.drop_vars([c for c in mean.coords if c not in mean.dims and c != "epoch"])
            out[v + "_sem"] = sem.drop_vars([c for c in sem.coords if c not in sem.dims and c != "epoch"])
            out[v + "_sem"].attrs = output.describe(v + "_sem")
            out[v].attrs = dict(ds[v].attrs)
        parts.append(xr.Dataset(out))
    parts = shared_time(parts, list(results))
    stacked = xr.concat(parts, dim=xr.Variable("source", list(results)), coords="minimal",
                        compat="override", join="exact", combine_attrs="override")
    stacked.attrs = {}
    stacked["source"].attrs.update(long_name="where the curve comes from", units="1")
    return stacked


def compare(
    model="huber_tanh",
    *,
    delta: float = 2.0,
    lr: float = 2.0,
    batch: float = 1.0,
    t_max: float = 4.0,
    dynamics=("sgd", "sme", "gf"),
    simulate: bool = True,
    d: int = 400,
    n_seeds: int = 8,
    n_paths: int | None = None,
    n_time: int = 41,
    ridge: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    solve_options: dict | None = None,
    simulate_options: dict | None = None,
    on_divergence: str = "raise",
) -> xr.Dataset:
    r"""Theory (DMFT) and finite-``d`` simulation of SGD, SME and GF on one set of parameters.

    Parameters
    ----------
    model : dmft.models.Model or str
        Loss and teacher (``'huber-tanh'``, ``'linear_regression'``, ...; see :mod:`dmft.models`).
    delta : float
        Samples per dimension ``n/d``.
    lr : float
        Learning-rate scale ``eta_bar``.
    batch : float
        Batch scale ``kappa_bar``; time ``t`` counts ``steps kappa/(kappa_bar n)``, one epoch
        is ``t = 1/batch``.
    t_max : float
        Horizon in units of ``t``.
    dynamics : str or sequence of {'sgd', 'sme', 'gf'}
        Which dynamics to run, in this order along the ``dynamics`` dim.
    simulate : bool
        Also run :func:`dmft.simulate`; ``False`` gives ``source = ['theory']`` only.
    d : int
        Simulation dimension (``n = round(delta d)``).
    n_seeds : int
        Simulation data sets; the simulation curve is their mean.
    n_paths : int or None
        DMFT Monte Carlo paths (``None``: the solver's default per dynamics, 131072 for SGD
        and 8192 for SME/GF, about 4-5 s each on 2 cores for Huber-on-tanh).
    n_time : int
        Output times ``linspace(0, t_max, n_time)`` shared by theory and simulation.
    ridge : float
        Ridge penalty ``lam >= 0``.
    seed : int, numpy.random.Generator or numpy.random.SeedSequence
        Seed of the DMFT paths and the simulation data; SGD, SME and GF simulations see
        the same data sets. A ``numpy.random.Generator`` stands for the integer
        ``int(seed.integers(2**63))`` drawn from it (``attrs['seed']``).
    progress : bool
        Show a bar over the ``len(dynamics) * (1 + simulate)`` runs (if the switch
        :func:`dmft.set_progress` allows it).
    solve_options, simulate_options : dict
        Extra keyword arguments for :func:`dmft.solve` / :func:`dmft.simulate`
        (e.g. ``{'dt': 0.01}``, ``{'max_memory_gb': 8}``).
    on_divergence : {'raise', 'truncate'}
        Passed to every solve and simulation; with ``'truncate'`` all curves are cut to the
        output times before the earliest divergence (``attrs['truncated'] = 1``,
        ``attrs['diverged_at']``, ``attrs['divergence_cause']``).

    Returns
    -------
    xarray.Dataset
        Dims ``dynamics`` (the requested ones), ``source`` (``'theory'``,
        ``'simulation'``), ``time`` and the student/teacher dims. Variables
        ``test_loss``, ``train_loss`` (dynamics, source, time), ``norm`` (..., student,
        student2), ``overlap`` (..., student, teacher), each with ``*_sem``: the DMFT
        replica standard error for the theory, ``std/sqrt(n_seeds)`` over seeds for the
        simulation. ``runtime_s`` (dynamics, source). Coordinate ``epoch = t batch``.
        Every input in ``attrs``.

    Raises
    ------
    dmft.errors.ParameterError
        An argument out of range (the message names it).
    dmft.errors.DivergenceError
        A theory or simulation trajectory blew up (``.time``, ``.cause``; see
        :func:`dmft.solve` and :func:`dmft.simulate`).

    Examples
    --------
    >>> import dmft
    >>> ds = dmft.compare("linear_regression", lr=0.5, t_max=1.0, dynamics="gf", d=100,
    ...                   n_seeds=2, n_paths=256, n_time=5, progress=False)
    >>> ds.test_loss.dims
    ('dynamics', 'source', 'time')
    """
    model = _models.get(model)
    if isinstance(dynamics, str):
        dynamics = (dynamics,)
    dynamics = tuple(dynamics)
    if not dynamics:
        raise errors.ParameterError("dynamics=() is not allowed: dynamics must name at least one of "
                                    + ", ".join(repr(k) for k in DRIVERS))
    for dyn in dynamics:
        errors.choice("dynamics", dyn, tuple(DRIVERS))
    if len(set(dynamics)) != len(dynamics):
        raise errors.ParameterError(f"dynamics={dynamics!r} is not allowed: dynamics must not repeat")
    delta = errors.positive("delta", delta)
    lr = errors.positive("lr", lr)
    batch = errors.positive("batch", batch)
    t_max = errors.positive("t_max", t_max)
    n_time = errors.positive_int("n_time", n_time, minimum=2)
    ridge = errors.nonnegative("ridge", ridge)
    if simulate:
        d = errors.positive_int("d", d, minimum=2)
        n_seeds = errors.positive_int("n_seeds", n_seeds, minimum=1)
    if n_paths is not None:
        n_paths = errors.positive_int("n_paths", n_paths, minimum=2)
    seed = errors.seed_value(seed)
    on_divergence = errors.on_divergence(on_divergence)
    solve_options = dict(solve_options or {})
    simulate_options = dict(simulate_options or {})
    common = dict(delta=delta, lr=lr, batch=batch, t_max=t_max, n_time=n_time, ridge=ridge, seed=seed,
                  progress=False, on_divergence=on_divergence)
    sources = ("theory", "simulation") if simulate else ("theory",)
    all_results, runtimes = [], np.zeros((len(dynamics), len(sources)))
    with progress_bar(progress, total=len(dynamics) * len(sources), desc="dmft.compare", unit="run") as bar:
        for i, dyn in enumerate(dynamics):
            results = {}
            bar.set_postfix_str(f"{dyn} theory")
            t0 = _time.perf_counter()
            results["theory"] = _solve(model, dynamics=dyn, n_paths=n_paths, **common, **solve_options)
            runtimes[i, 0] = _time.perf_counter() - t0
            bar.update()
            if simulate:
                bar.set_postfix_str(f"{dyn} simulation")
                t0 = _time.perf_counter()
                results["simulation"] = _simulate(model, dynamics=dyn, d=d, n_seeds=n_seeds, **common,
                                                  **simulate_options)
                runtimes[i, 1] = _time.perf_counter() - t0
                bar.update()
            all_results.append(results)
    all_results, truncation = common_prefix(all_results)
    per_dyn = shared_time([stack_sources(r, COMPARED_VARIABLES) for r in all_results], list(dynamics))
    ds = xr.concat(per_dyn, dim=xr.Variable("dynamics", list(dynamics)), coords="minimal",
                   compat="override", join="exact", combine_attrs="override")
    ds.attrs = {}
    ds["dynamics"].attrs.update(long_name="dynamics (sgd: Poisson, sme: diffusion, gf: gradient flow)",
                                units="1")
    ds["runtime_s"] = (("dynamics", "source"), runtimes, output.describe("runtime_s"))
    attrs = {**model.attrs(), "delta": delta, "lr": lr, "batch": batch, "t_max": t_max,
             "dynamics": list(dynamics), "simulate": bool(simulate), "d": d if simulate else "None",
             "n_seeds": n_seeds if simulate else "None", "n_paths": "None" if n_paths is None else n_paths,
             "n_time": n_time, "ridge": ridge, "seed": seed,
             "solve_options": solve_options, "simulate_options": simulate_options,
             "sem_method": "theory: DMFT replica standard error; simulation: std(ddof=1)/sqrt(n_seeds)",
             "on_divergence": on_divergence, **truncation}
    from . import __version__

    ds.attrs.update(output.clean_attrs({**attrs, "library_version": __version__}))
    return ds
