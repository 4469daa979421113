"""One-pass SGD: exact ODE, finite-d SGD and homogenized SGD side by side in one Dataset."""
from __future__ import annotations

import time as _time

import numpy as np
import xarray as xr

from dmft import errors, output
from dmft._progress import progress_bar
from dmft._stack import common_prefix, stack_sources

from ._simulate import simulate as _simulate
from .theory import solve as _solve

__all__ = ["compare", "SOURCES"]

#: the curves :func:`compare` can put side by side
SOURCES = ("theory", "simulation", "hsgd")

_VARIABLES = ("risk", "alignment", "norm", "overlap", "distance", "mean_overlap", "group_norm",
              "group_mean_overlap", "fisher_trace", "lr", "lr_threshold")


def compare(model, data, *, lr=0.5, t_max: float = 20.0, n_time: int = 41, times=None,
            sources=("theory", "simulation"),
            n_seeds: int = 8, seed: int = 0, hsgd_dt: float = 0.01, X0=None, groups="auto",
            n_test: int = 10_000, progress: bool = True, on_divergence: str = "raise") -> xr.Dataset:
    """One-pass theory (:func:`onepass.solve`) against SGD and homogenized SGD (:func:`onepass.simulate`).

    Parameters
    ----------
    model : dmft.models.Model or str
    data : onepass.data.GaussianMixture
        E.g. ``onepass.data.binary_mixture('zero_one', d=1000)``; simulations run at its ``d``.
    lr : float, callable or schedule
        Learning rate ``gamma`` (``onepass.AdaGradNorm(...)`` etc.).
    t_max, n_time : output grid ``linspace(0, t_max, n_time)`` in units of ``t = steps/d``.
    times : 1-d increasing array, optional
        Output times instead of that grid (e.g. ``numpy.geomspace`` for log-time plots).
    sources : sequence of {'theory', 'simulation', 'hsgd'}
        Which curves, in this order along ``source``: the exact ODE, finite-d one-pass
        SGD, and homogenized SGD (Euler-Maruyama with step ``hsgd_dt``).
    n_seeds : int
        Independent runs of each simulator; curves are their mean.
    seed : int, numpy.random.Generator or numpy.random.SeedSequence
        SGD uses ``SeedSequence(seed).spawn(2)[0]``, HSGD the other stream. A
        ``numpy.random.Generator`` stands for the integer ``int(seed.integers(2**63))``
        drawn from it (``attrs['seed']``).
    X0, groups : as in :func:`onepass.solve`.
    n_test : int
        Held-out samples per seed on which the simulators measure the risk
        (:func:`onepass.simulate`).
    progress : bool
        Show a bar over sources (if the switch :func:`dmft.set_progress` allows it).
    on_divergence : {'raise', 'truncate'}
        Passed to every source; with ``'truncate'`` all curves are cut to the output times
        before the earliest divergence (``attrs['truncated'] = 1``, ``attrs['diverged_at']``,
        ``attrs['divergence_cause']``).

    Returns
    -------
    xarray.Dataset
        Dim ``source`` in front of the variables of :func:`onepass.solve` that every source
        returns (``risk``, ``norm``, ``mean_overlap``, ``alignment`` for binary data, ...),
        each with ``*_sem`` (0 for the theory, ``std/sqrt(n_seeds)`` for simulations), and
        ``runtime_s`` (source). Every input in ``attrs``.

    Examples
    --------
    >>> import onepass
    >>> data = onepass.data.teacher_student(d=100)
    >>> ds = onepass.compare("linear_regression", data, lr=1.0, t_max=1.0, n_time=3, n_seeds=2,
    ...                      n_test=1000, progress=False)
    >>> ds.risk.dims, ds.source.values.tolist()
    (('source', 'time'), ['theory', 'simulation'])
    """
    if isinstance(sources, str):
        sources = (sources,)
    sources = tuple(sources)
    if not sources or len(set(sources)) != len(sources):
        raise errors.ParameterError(f"sources={sources!r} is not allowed: sources must be distinct names from "
                                    + ", ".join(repr(s) for s in SOURCES))
    for s in sources:
        errors.choice("sources", s, SOURCES)
    n_seeds = errors.positive_int("n_seeds", n_seeds, minimum=1)
    n_test = errors.positive_int("n_test", n_test, minimum=2)
    seed = errors.seed_value(seed)
    sgd_ss, hsgd_ss = errors.seed_sequence(seed).spawn(2)
    on_divergence = errors.on_divergence(on_divergence)
    common = dict(lr=lr, t_max=t_max, n_time=n_time, times=times, X0=X0, groups=groups, on_divergence=on_divergence)
    results, runtimes = {}, []
    with progress_bar(progress, sources, desc="onepass.compare", unit="run") as bar:
        for src in bar:
            bar.set_postfix_str(src)
            t0 = _time.perf_counter()
            if src == "theory":
                results[src] = _solve(model, data, progress=False, **common)
            elif src == "simulation":
                results[src] = _simulate(model, data, n_seeds=n_seeds, seed=sgd_ss, dynamics="sgd",
                                         n_test=n_test, progress=False, **common)
            else:
                results[src] = _simulate(model, data, n_seeds=n_seeds, seed=hsgd_ss, dynamics="hsgd",
                                         dt=hsgd_dt, n_test=n_test, progress=False, **common)
            runtimes.append(_time.perf_counter() - t0)
    (results,), truncation = common_prefix([results])
    ds = stack_sources(results, _VARIABLES)
    first = results[sources[0]]
    keep = [c for c in first.coords if c not in ds.coords and set(first[c].dims) <= set(ds.dims)]
    ds = ds.assign_coords({c: first[c] for c in keep})
    ds["runtime_s"] = (("source",), np.asarray(runtimes), output.describe("runtime_s"))
    attrs = {k: v for k, v in first.attrs.items() if k not in ("source", "dynamics", "n_seeds", "seed", "dt",
                                                                 "library_version", "truncated", "diverged_at",
                                                                 "divergence_cause", "memory_gb",
                                                                 "runtime_estimate_s")}
    attrs.update(sources=list(sources), n_seeds=n_seeds, seed=seed, hsgd_dt=hsgd_dt, n_test=n_test,
                 on_divergence=on_divergence,
                 **truncation,
                 sem_method="theory: 0 (deterministic ODE); simulation, hsgd: std(ddof=1)/sqrt(n_seeds)")
    from dmft import __version__

    ds.attrs = output.clean_attrs({**attrs, "library_version": __version__})
    return ds
