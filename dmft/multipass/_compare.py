"""SGD, SME and GF side by side, theory against simulation, in one Dataset.

:func:`compare` runs :func:`dmft.solve` (the DMFT) and, optionally, :func:`dmft.simulate`
(finite ``d``) for each dynamics on the same parameters and stacks the results along
two named dims, ``dynamics`` and ``source``; :func:`dmft.plotting.compare` draws it.
"""
from __future__ import annotations

import time as _time

import numpy as np
import xarray as xr

from .. import errors, output
from .. import models as _models
from .. import schedules as _schedules
from .._progress import progress_bar
from .._stack import common_prefix, shared_time, stack_sources
from . import _spectral
from ._simulate import simulate as _simulate
from ._solve import DRIVERS
from ._solve import solve as _solve

__all__ = ["compare", "COMPARED_VARIABLES"]

#: variables that both the DMFT and the simulator return, in the order they are plotted
COMPARED_VARIABLES = ("test_loss", "train_loss", "norm", "overlap", "mean_overlap")


def compare(
    model="huber_tanh",
    *,
    delta: float = 2.0,
    lr: float = 2.0,
    batch: float = 1.0,
    t_max: float | None = None,
    dynamics=("sgd", "sme", "gf"),
    simulate: bool = True,
    d: int | None = None,
    n_seeds: int = 8,
    n_paths: int | None = None,
    n_time: int | None = None,
    times=None,
    ridge: float = 0.0,
    data=None,
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
        Loss and teacher (``'huber-tanh'``, ``'linear_regression'``, ...; docs/models.md).
    delta : float
        Samples per dimension ``n/d``.
    lr : float, schedule or function of time
        Learning-rate scale ``eta_bar``: a positive number or a schedule of time of
        :mod:`dmft.schedules`, for the solves and the simulations alike (:func:`dmft.solve`);
        ``attrs['lr']`` is the number or the schedule's ``repr``.
    batch : float
        Batch scale ``kappa_bar``; time ``t`` counts ``steps kappa/(kappa_bar n)``, one epoch
        is ``t = 1/batch``.
    t_max : float
        Horizon in units of ``t`` (default 4, or the last of ``times``).
    dynamics : str or sequence of {'sgd', 'sme', 'gf'}
        Which dynamics to run, in this order along the ``dynamics`` dim.
    simulate : bool
        Also run :func:`dmft.simulate`; ``False`` gives ``source = ['theory']`` only.
    d : int or None
        Simulation dimension (``n = round(delta d)``; default 400, or the data's ``d``).
    n_seeds : int
        Simulation data sets; the simulation curve is their mean.
    n_paths : int or None
        DMFT Monte Carlo paths (``None``: the solver's default per dynamics, 131072 for SGD
        and 8192 for SME/GF).
    n_time : int
        Output times ``linspace(0, t_max, n_time)`` shared by theory and simulation (default 41).
    times : array or None
        Output times instead of ``n_time`` (exclusive with it; 1-d, strictly increasing, in
        ``[0, t_max]``), e.g. log-spaced: the simulation records at them, the DMFT
        interpolates its uniform grid to them (quadratic in time, :func:`dmft.solve`).
    ridge : float
        Ridge penalty ``lam >= 0``.
    data : dmft.data.GaussianMixture or None
        Anisotropic teacher-student data (one class, zero mean, e.g.
        ``dmft.data.teacher_student('power_law', d=1000)``, docs/dmft_anisotropic.md) or a
        hard-label mixture with diagonal class covariances of equal trace (e.g.
        ``dmft.data.binary_mixture('zero_one', d=1000)``, docs/dmft_mixture.md; compared also on
        ``mean_overlap``) for the solve and the simulation alike; ``None``: isotropic inputs and a
        random teacher.
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
    schedule = _spectral.check_lr(lr)
    lr = schedule.lr if isinstance(schedule, _schedules.Constant) else schedule
    batch = errors.positive("batch", batch)
    given_times = times is not None
    times, t_max, n_time = errors.output_times(times, n_time, t_max, n_time_default=41, t_max_default=4.0)
    ridge = errors.nonnegative("ridge", ridge)
    if data is not None:
        _spectral.solver_mixture(data, model)
    d = _spectral.dimension(data, d, 400)
    if simulate:
        d = errors.positive_int("d", d, minimum=2)
        n_seeds = errors.positive_int("n_seeds", n_seeds, minimum=1)
    if n_paths is not None:
        n_paths = errors.positive_int("n_paths", n_paths, minimum=2)
    seed = errors.seed_value(seed)
    on_divergence = errors.on_divergence(on_divergence)
    solve_options = dict(solve_options or {})
    simulate_options = dict(simulate_options or {})
    common = dict(delta=delta, lr=lr, batch=batch, t_max=t_max, ridge=ridge, seed=seed, progress=False,
                  on_divergence=on_divergence, **({} if data is None else {"data": data}), **({"times": times} if given_times else {"n_time": n_time}))
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
    attrs = {**model.attrs(), "delta": delta, "lr": lr if isinstance(schedule, _schedules.Constant) else repr(schedule),
             "batch": batch, "t_max": t_max,
             "dynamics": list(dynamics), "simulate": bool(simulate), "d": d if simulate else "None",
             "n_seeds": n_seeds if simulate else "None", "n_paths": "None" if n_paths is None else n_paths,
             "n_time": n_time, "ridge": ridge, "seed": seed,
             "solve_options": solve_options, "simulate_options": simulate_options,
             "sem_method": "theory: DMFT replica standard error; simulation: std(ddof=1)/sqrt(n_seeds)",
             "on_divergence": on_divergence, **truncation}
    attrs = {"data": "None"} | ({} if data is None else data.attrs()) | attrs
    from .. import __version__

    ds.attrs.update(output.clean_attrs({**attrs, "library_version": __version__}))
    return ds
