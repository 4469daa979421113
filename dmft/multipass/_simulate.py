"""Finite-d multi-pass simulators: SGD, SME and gradient flow (docs/simulate.md).

Brute-force simulations on one fixed data set per seed, the judge of the DMFT solver
(:func:`dmft.solve`). Conventions (those of docs/dmft_theory.md, section 1):

* data: ``n = round(delta d)`` rows ``x_i ~ N(0, I_d/d)``, teacher ``theta* in R^{d x k_star}``
  with i.i.d. ``N(0, 1)`` entries (``rho = theta*^T theta*/d ~ I``; the realised ``rho``
  is used for the test loss), labels ``y_i = teacher(theta*^T x_i, eps_i)`` with standard
  Gaussian ``eps_i in R^noise_dim``, initialisation ``theta_0`` with i.i.d.
  ``N(0, init_std^2)`` entries, empirical risk ``R = sum_i l(theta^T x_i, y_i) + (lam/2)|theta|^2``;
* SGD: batch ``kappa = max(1, round(kappa_bar n^alpha))``, per-sample step
  ``c = eta_bar/kappa_bar``, ``eta = c kappa`` (``= eta_bar n^alpha`` up to the rounding
  of ``kappa``), update ``theta <- theta - c sum_{i in batch} x_i l'_i - (eta/n) lam theta``,
  time per step ``h = kappa/(kappa_bar n)``, so one epoch is ``t = 1/kappa_bar``;
* SME: ``d theta = -eta_bar grad R dt + (eta_bar/sqrt(kappa_bar)) sum_i x_i l'_i dB_i``,
  Euler-Maruyama (weak order 1 in ``dt``);
* GF: ``d theta/dt = -eta_bar grad R`` (adaptive Dormand-Prince 5(4) with rtol 1e-7, or classical RK4
  with a fixed ``dt``);
* ``data=``: Gaussian-mixture inputs and a fixed teacher or hard class labels
  (:mod:`dmft.multipass._spectral`); a learning-rate schedule makes ``eta_bar`` a function of ``t``.
"""
from __future__ import annotations

import gc
import math

import numpy as np
from scipy import integrate

from . import _kernels_simulate as _k
from . import _spectral
from .._brownian import BridgeNormals
from .. import _stats
from .._config import BLOWUP_NORM, MODERATE_FIELD as _MODERATE_FIELD
from .._jit import specialise
from .._progress import progress_bar
from .. import errors, expectation, output, schedules
from .. import models as _models

DYNAMICS = ("sgd", "sme", "gf")
SAMPLING = ("with_replacement", "without_replacement", "bernoulli")

#: at most this many sample indices are drawn per kernel call (bounds memory)
_MAX_INDICES = 1 << 20
#: seconds per multiply-add of the simulators' kernels (one core; docs/performance.md)
_SECONDS_PER_MAC = 1e-9
#: default SME step: ``dt = _SME_DT_LR / lr`` (``eta_bar dt = 0.005``, weak error ~0.6%/t)
_SME_DT_LR = 0.005
#: a fixed step is checked against ``dt / 2`` (:func:`_step_error`) where it may bias the
#: outputs: SME where Euler-Maruyama moves a sample's mean-square contraction rate
#: ``lr l'' (2 - c l'')`` by more than this fraction, ``lr dt l'' / (2 - c l'')`` (``l''`` the mean
#: curvature at ``theta_0``; the squared loss at ``c = 1``: ``lr dt > 0.05``); RK4 gradient flow
#: where ``lr dt lambda_max`` is above this (the stiffest mode's factor per step is then 2% off)
_SME_CHECKED_RATE_BIAS, _RK4_CHECKED_STIFFNESS = 0.05, 1.0
#: tolerances of the adaptive gradient-flow integrator
_GF_RTOL, _GF_ATOL = 1e-7, 1e-9


def simulate(
    model,
    *,
    delta: float = 2.0,
    lr: float = 2.0,
    batch: float = 1.0,
    dynamics: str = "sgd",
    t_max: float | None = None,
    d: int | None = None,
    alpha: float = 0.0,
    n_seeds: int = 10,
    seed=0,
    ridge: float = 0.0,
    init_std: float = 0.0,
    sampling: str = "with_replacement",
    n_time: int | None = None,
    times=None,
    dt: float | None = None,
    check_dt: bool | None = None,
    n_test: int = 10_000,
    progress: bool = True,
    on_divergence: str = "raise",
    max_memory_gb: float = 4.0,
    max_runtime_s: float | None = 3600.0,
    data=None,
):
    """Simulate multi-pass SGD, SME or gradient flow at finite ``d`` on ``n_seeds`` data sets.

    Parameters
    ----------
    model : dmft.models.Model or str
        The loss and teacher (a built-in name goes through :func:`dmft.models.get`).
    delta : float
        Samples per dimension; ``n = round(delta * d)``.
    lr : float, schedule or function of time
        Learning-rate scale ``eta_bar``: a positive number, or a schedule of
        :mod:`dmft.schedules` (``Constant``, ``TimeDependent``, ``StepDecay``, ``Cosine``;
        a function ``t -> lr`` stands for ``TimeDependent``) giving ``eta_bar(t)``: SGD's step
        ``s`` (at ``t = s h``) takes ``c = lr(t)/batch``; SME and GF use ``lr(t)`` in drift and
        noise (a fixed step from ``t`` takes ``lr(t)``; RK4 evaluates it at its stages), and the
        integrators end a step (adaptive: restart) at each jump of ``StepDecay``. ``Constant(x)``
        gives the same numbers as ``x``. ``AdaGradNorm`` is for ``onepass`` only (ParameterError).
        The step checks and estimates below use the largest rate on ``[0, t_max]``.
    batch : float
        Batch scale ``kappa_bar``; the SGD batch is ``kappa = max(1, round(kappa_bar n^alpha))``.
        For SME it sets the noise level ``eta_bar/sqrt(kappa_bar)``; GF ignores it.
    dynamics : {'sgd', 'sme', 'gf'}
    t_max : float
        Final time; default 4, or the last of ``times``.
    d : int
        Dimension (default 1000; with ``data``, the data's ``d``, which a given ``d`` must equal).
    alpha : float in [0, 1)
        Batch exponent (SGD only): ``kappa = kappa_bar n^alpha``, ``eta = eta_bar n^alpha``.
    n_seeds : int
        Independent data sets (and sampling noise), stacked along dim ``seed``.
    seed : int, numpy.random.Generator or numpy.random.SeedSequence
        Seed ``s`` gives streams ``SeedSequence(s).spawn(n_seeds)``; each spawns a data
        stream, a sampling stream and a held-out test stream, so SGD, SME and GF with the
        same seed see the same data and test sets. A ``numpy.random.Generator`` stands for
        the integer ``int(seed.integers(2**63))`` drawn from it (``attrs['seed']``). Same arguments and seed give
        bit-identical output on one machine (across CPUs: the tolerance in
        docs/reliability.md, "Reproducibility").
    ridge : float
        Ridge ``lam >= 0``.
    init_std : float
        Standard deviation of the entries of ``theta_0``.
    sampling : {'with_replacement', 'without_replacement', 'bernoulli'}
        SGD batches: ``kappa`` i.i.d. uniform indices; consecutive slices of a stream of
        independent random permutations (shuffled epochs; if ``kappa`` does not divide
        ``n`` a batch may straddle two epochs); or every sample independently with
        probability ``kappa/n`` (random batch size, mean ``kappa``; needs ``kappa <= n``).
    n_time : int
        Number of output times, ``linspace(0, t_max, n_time)`` (default 101).
    times : array or None
        Output times instead (1-d, strictly increasing, in ``[0, t_max]``; e.g. log-spaced),
        exclusive with ``n_time``; the observables are recorded at exactly these times.
        SGD observables at ``t`` are interpolated linearly between the states after
        ``floor(t/h)`` and ``floor(t/h) + 1`` steps (exact when ``t/h`` is an integer).
    dt : float or None
        SME: largest Euler-Maruyama step (default ``0.005/lr``; the weak error is
        ``O(lr dt)``, see docs/simulate.md). GF: fixed RK4 step; ``None`` uses an
        adaptive Dormand-Prince 5(4) integrator (rtol 1e-7; the 8th-order
        DOP853 stalls on the kinks of Huber-type losses). Ignored by SGD.
    check_dt : bool or None
        SME and RK4 gradient flow: whether the fixed step's bias is checked. Each seed is run
        again with every step halved, on the same data and (SME) the same Brownian path
        (each normal ``u`` of a step becomes ``(u + v)/sqrt(2)``, ``(u - v)/sqrt(2)`` with a
        fresh ``v``), and the Richardson estimate of the run's step error,
        ``|x(dt) - x(dt/2)| / (1 - 2^-p)`` (``p`` 1 for Euler-Maruyama, 4 for RK4), of the
        test loss (relative to it) and ``tr q`` (to its largest value) decides: above
        :data:`~dmft.errors.STEP_BIAS_LIMIT` (10%) at an output time, or a divergence of the
        halved run, raises :class:`~dmft.errors.DivergenceError` (cause ``'time_step'``, that
        time, and a step that would bring the estimate to 5%). Default (``None``): where the
        step may bias the outputs, SME where Euler-Maruyama moves a sample's mean-square
        contraction rate ``lr l'' (2 - c l'')`` by more than 5%, i.e. ``lr dt l'' / (2 - c l'')
        > 0.05`` (``l''`` the mean curvature at ``theta_0``; the squared loss at ``c = 1``:
        ``lr dt > 0.05``), and RK4 where ``lr dt lambda_max > 1``; the check costs twice the
        run. ``True``: every fixed step. ``False``: none.
    n_test : int
        Size of each seed's held-out test set: ``n_test`` fresh samples from the training
        inputs' law (``x ~ N(0, I_d/d)``, or the data's mixture) with teacher labels (fresh label
        noise) or the class labels, drawn once per seed and used at every output time. Memory
        ``8 n_test d`` bytes.
    progress : bool
        Show a progress bar over seeds (if the switch :func:`dmft.set_progress` allows it).
    on_divergence : {'raise', 'truncate'}
        What to do when a trajectory blows up: raise :class:`~dmft.errors.DivergenceError`
        (default), or return the output times before the earliest blow-up over the seeds,
        with ``attrs['diverged_at']`` the blow-up time, ``attrs['divergence_cause']``
        (``attrs['truncated'] = 1``).
    max_memory_gb, max_runtime_s : float
        Refuse (ParameterError, before any work) a run whose estimated peak memory or run
        time exceeds these (``max_runtime_s=None``: no time limit). The estimates are in
        ``attrs['memory_gb']`` and ``attrs['runtime_estimate_s']`` (docs/reliability.md).
    data : dmft.data.GaussianMixture or None
        A Gaussian mixture of :mod:`dmft.data` (the same module as ``onepass.data``), in
        ``onepass``'s units: sample ``i`` has class ``c_i ~ probs`` and input
        ``x_i = (mu_c + K_c^{1/2} xi_i) / sqrt(d)`` (``K_c = diag(lam^(c))``; the columns of
        standard normal inputs scaled by ``sqrt(lam_i^(c)/d)``, then shifted by ``mu_c/sqrt(d)``;
        training and held-out alike), so ``theta^T x = X a`` for ``onepass``'s sample ``a`` and
        student ``X = theta^T/sqrt(d)``. With teacher rows ``x*`` the teacher is fixed,
        ``theta* = sqrt(d) x*^T`` (``r* = x* a`` as in ``onepass``; one class with zero mean is
        the teacher-student data of docs/dmft_anisotropic.md, e.g.
        :func:`dmft.data.teacher_student`); without, sample ``i`` has the hard label
        ``model.labels_for_classes(C)[c_i]`` (e.g. :func:`dmft.data.binary_mixture` with
        ``logistic``: ``y = 1`` for class 0, ``0`` for class 1). Memory ``O(n d)``. ``None``:
        isotropic inputs and an i.i.d. ``N(0, 1)`` teacher, as described above.

    Returns
    -------
    xarray.Dataset
        ``train_loss`` (seed, time): mean over the ``n`` samples of ``l``;
        ``test_loss`` (seed, time): mean of ``l`` over the seed's held-out test set (an
        unbiased estimate of the population loss that does not go through the theory's
        Gaussian integrals), with ``test_loss_sem`` (seed, time) its standard error
        ``std(l)/sqrt(n_test)`` over the test set;
        ``norm`` = ``q = theta^T theta/d`` (seed, time, student, student2);
        ``overlap`` = ``m = theta^T theta*/d`` (seed, time, student, teacher; not with hard
        labels); with mixture data (more than one class or a non-zero mean) ``mean_overlap`` =
        ``theta^T mu_c / sqrt(d)`` (seed, time, student, class), ``onepass``'s ``X mu_c``;
        coordinate ``epoch = t kappa_bar`` on ``time``; every input in ``attrs`` (a schedule
        as its ``repr``; ``step_size`` and ``eta`` at ``t = 0``).

    Raises
    ------
    dmft.errors.ParameterError
        An argument out of range (the message names it).
    dmft.errors.DivergenceError
        A trajectory blew up (``tr q > 1e12`` or non-finite); ``.time`` is the first
        output time at which it did (unless ``on_divergence='truncate'``). ``.cause``:
        ``'data'`` (the teacher's labels are not finite), ``'model'`` (a loss or gradient
        not finite at a finite, moderate state; or adaptive gradient flow itself running
        away, a loss unbounded below), ``'time_step'`` (SME or RK4 gradient flow: a run with
        ``dt / 2`` does not blow up by then; RK4 gradient flow whose objective increases; a
        step that is unstable at ``theta_0`` or, see ``check_dt``, biased), else
        ``'learning_rate'``.

    Examples
    --------
    >>> import dmft
    >>> ds = dmft.simulate("linear_regression", dynamics="gf", lr=0.5, d=200, t_max=1.0,
    ...                    n_time=3, n_seeds=2, progress=False)
    >>> ds.test_loss.dims
    ('seed', 'time')
    """
    model = _models.get(model)
    delta = errors.positive("delta", delta)
    schedule = _learning_rate(lr)
    batch = errors.positive("batch", batch)
    dynamics = errors.choice("dynamics", dynamics, DYNAMICS)
    mix = None
    if data is not None:
        mix = _spectral.check_simulation_data(data, model)
    d = errors.positive_int("d", _spectral.dimension(data, d, 1000))
    alpha = errors.in_range("alpha", alpha, 0.0, 1.0)
    n_seeds = errors.positive_int("n_seeds", n_seeds)
    seed = errors.seed_value(seed)
    root = errors.seed_sequence(seed)
    ridge = errors.nonnegative("ridge", ridge)
    init_std = errors.init_std(init_std, model.k, BLOWUP_NORM)
    sampling = errors.choice("sampling", sampling, SAMPLING)
    n_test = errors.positive_int("n_test", n_test, minimum=2)
    on_divergence = errors.on_divergence(on_divergence)
    max_memory_gb = errors.positive("max_memory_gb", max_memory_gb)
    if max_runtime_s is not None:
        max_runtime_s = errors.positive("max_runtime_s", max_runtime_s)
    if dt is not None:
        dt = errors.positive("dt", dt)
    check_dt = errors.choice("check_dt", check_dt, (None, True, False))
    times, t_max, n_time = errors.output_times(times, n_time, t_max, n_time_default=101, t_max_default=4.0)
    lr = schedules.peak_rate(schedule, times, t_max)
    n = int(round(delta * d))
    if n < 1:
        raise errors.ParameterError(f"delta={delta!r} is not allowed: n = round(delta d) must be >= 1 (d={d})")
    kappa = max(1, int(round(batch * n**alpha)))
    if dynamics == "sgd" and sampling == "bernoulli" and kappa > n:
        raise errors.ParameterError(
            f"batch={batch!r} is not allowed: with sampling='bernoulli' the batch "
            f"kappa = round(batch n^alpha) = {kappa} must be <= n = {n}"
        )
    c = lr / batch  # the largest per-sample step; a schedule's steps are lr(t)/batch
    h = kappa / (batch * n)
    if dynamics == "sme" and dt is None:
        dt = _SME_DT_LR / lr
    # largest eigenvalue of X^T X per unit curvature: the Marchenko-Pastur edge, times lam_max for data
    edge = (1 + math.sqrt(n / d)) ** 2 if mix is None else mix.edge(n)
    labels = None if mix is None else mix.labels
    mem, mem_culprit = _memory_estimate(model, dynamics, n, d, kappa, n_test, n_time, sampling)
    checked = dt is not None and dynamics != "sgd" and check_dt is not False and (
        check_dt or _step_may_bias(dynamics, lr, c, dt, _start_curvature(model, init_std, labels), edge))
    runtime, time_culprit = _runtime_estimate(model, dynamics, n, d, n_test, n_time, n_seeds, batch, t_max, dt, lr,
                                              kappa, edge, checked)
    _check_resources(mem, mem_culprit, max_memory_gb, runtime, time_culprit, max_runtime_s,
                     dict(d=d, n_test=n_test, batch=batch, t_max=t_max, n_seeds=n_seeds, dt=dt, delta=delta,
                          n_time=n_time))

    cfg = dict(model=model, n=n, d=d, lr=lr, schedule=schedule, jumps=schedules.jump_times(schedule, float(times[-1])),
               batch=batch, h=h, kappa=kappa, ridge=ridge, init_std=init_std, sampling=sampling, dt=dt, times=times,
               split=1)
    run = {"sgd": _run_sgd, "sme": _run_sme, "gf": _run_gf}[dynamics]
    means = None if mix is None or mix.is_teacher_student else mix.means

    k = model.k
    ks = model.k_star if mix is None or mix.teacher is not None else 0
    train = np.empty((n_seeds, n_time))
    test = np.empty((n_seeds, n_time))
    test_sem = np.empty((n_seeds, n_time))
    norm = np.empty((n_seeds, n_time, k, k))
    overlap = np.empty((n_seeds, n_time, k, ks))
    mean_overlap = np.empty((n_seeds, n_time, k, 0 if means is None else means.shape[0]))
    rhos = np.empty((n_seeds, ks, ks))
    first = None  # the earliest DivergenceError over the seeds
    half_test, half_tr = np.full((n_seeds, n_time), np.nan), np.full((n_seeds, n_time), np.nan)
    for s, child in enumerate(_progress(root.spawn(n_seeds), progress, dynamics)):
        data_ss, sample_ss, test_ss = child.spawn(3)
        X, Y, theta_star, theta = _dataset(model, n, d, init_std, np.random.default_rng(data_ss), mix)
        held_out = _test_set(model, n_test, theta_star, np.random.default_rng(test_ss), mix)
        _check_labels(model, Y, held_out[1], s)
        theta0 = theta.copy()
        checked = False
        if dt is not None and dynamics != "sgd":
            edge_s = (1 + math.sqrt(n / d)) ** 2 if mix is None else _top_eigenvalue(X)
            curv = _check_step_stability(model, X, Y, theta0, lr, dt, dynamics, s, edge_s)
            checked = check_dt is not False and (check_dt or _step_may_bias(dynamics, lr, c, dt, curv, edge_s))
        rec = _Recorder(model, X, Y, theta_star, held_out, n_time, means)
        with np.errstate(all="ignore"):
            run(cfg, X, Y, theta, np.random.default_rng(sample_ss), rec)
        try:
            rec.check(times, s)
            if dynamics == "gf" and dt is not None:
                _check_gf_energy(rec, times, ridge, delta, dt, lr, s)
            if checked:
                half = _halved_run(cfg, dynamics, run, rec, X, Y, theta0, sample_ss, s)
                half_test[s], half_tr[s] = half.test, np.trace(half.norm, axis1=1, axis2=2)
        except errors.DivergenceError as e:
            e = _classify(e, cfg, dynamics, rec, X, Y, theta0, run, np.random.default_rng(sample_ss), s)
            if on_divergence == "raise":
                raise e from None
            first = e if first is None or e.time < first.time else first
        train[s], test[s], test_sem[s] = rec.train, rec.test, rec.test_sem
        norm[s], overlap[s], mean_overlap[s] = rec.norm, rec.overlap, rec.mean_overlap
        rhos[s] = theta_star.T @ theta_star / d
        del X, Y, held_out, rec  # the next seed's data sets take their place
        if dynamics == "gf" and dt is None:
            gc.collect()  # scipy's integrator holds the data in a reference cycle
    err = errors.step_bias(f"dmft.simulate(dynamics={dynamics!r})", dt, 1 if dynamics == "sme" else 4, times,
                           [("test loss", test, half_test, False), ("tr q", np.trace(norm, axis1=2, axis2=3), half_tr,
                                                                     True)])
    if err is not None:
        if on_divergence == "raise":
            raise err
        first = err if first is None or err.time < first.time else first

    seed_attr = seed if isinstance(seed, (int, np.integer)) else repr(root.entropy)
    c0 = schedule(0.0, 0.0) / batch
    attrs = {
        **model.attrs(), "delta": delta, "lr": lr if isinstance(schedule, schedules.Constant) else repr(schedule),
        "batch": batch, "dynamics": dynamics,
        "alpha": alpha, "d": d, "n": n, "kappa": kappa, "eta": c0 * kappa, "step_size": c0,
        "step_time": h, "n_seeds": n_seeds, "seed": seed_attr, "ridge": ridge,
        "init_std": init_std, "sampling": sampling,
        "dt": "adaptive" if (dynamics == "gf" and dt is None) else dt,
        "t_max": t_max, "n_time": n_time,
        "teacher_prior": _teacher_prior(mix),
        "method": _METHOD[dynamics], "rho": rhos.tolist(), "on_divergence": on_divergence,
        "n_test": n_test, "test_loss_method": "mean loss on n_test held-out samples per seed",
        "memory_gb": mem / 2**30, "runtime_estimate_s": runtime,
    }
    if ks == 0:  # hard labels: no teacher
        del attrs["rho"]
    if data is not None:
        attrs.update({key: v for key, v in data.attrs().items() if key not in attrs})
    if first is not None:
        keep = times < first.time
        if not keep.any():
            raise first
        times, train, test, test_sem, norm, overlap, mean_overlap = (
            times[keep], train[:, keep], test[:, keep], test_sem[:, keep], norm[:, keep], overlap[:, keep],
            mean_overlap[:, keep])
        attrs.update(truncated=1, diverged_at=float(first.time), divergence_cause=first.cause,
                     n_time=int(keep.sum()))
    ds = _dataset_of_runs(train, test, norm, overlap if ks else None, times, batch, attrs)
    ds["test_loss_sem"] = (("seed", "time"), test_sem, output.describe("test_loss_sem"))
    if means is not None:
        ds["mean_overlap"] = (("seed", "time", "student", "class"), mean_overlap, output.describe("mean_overlap"))
    return ds


def _teacher_prior(mix) -> str:
    if mix is None:
        return "N(0, 1) (rho = 1)"
    if mix.teacher is None:
        return "none: hard labels, model.labels_for_classes(C)[c] for a sample of class c"
    return "fixed: theta* = sqrt(d) data.teacher^T"


_METHOD = {
    "sgd": "mini-batch SGD on a fixed data set",
    "sme": "stochastic modified equation, Euler-Maruyama with one Brownian motion per sample",
    "gf": "gradient flow, Dormand-Prince RK45 (adaptive, rtol 1e-7) or RK4 (fixed dt)",
}


def _dataset_of_runs(train, test, norm, overlap, times, batch, attrs):
    """The simulators' Dataset: losses (seed, time), ``q``, ``m`` with the student/teacher dims
    (no ``m`` if ``overlap`` is None: hard labels)."""
    teacher = {} if overlap is None else {"overlap": (("seed", "time", "student", "teacher"), overlap)}
    return output.build(
        {
            "train_loss": (("seed", "time"), train),
            "test_loss": (("seed", "time"), test),
            "norm": (("seed", "time", "student", "student2"), norm),
            **teacher,
        },
        {"seed": np.arange(train.shape[0]), "time": times, "epoch": ("time", times * batch)},
        attrs,
        time_axis="multipass",
    )


def _progress(it, progress: bool, dynamics: str):
    return progress_bar(progress, it, desc=f"dmft.simulate({dynamics})", unit="seed")


# ---------------------------------------------------------------- learning rate
def _learning_rate(lr):
    """The schedule ``lr`` stands for (a number: :class:`dmft.schedules.Constant`; a function of
    time: ``TimeDependent``), else ParameterError naming ``lr``."""
    if isinstance(lr, schedules.AdaGradNorm):
        raise errors.ParameterError(
            f"lr={lr!r} is not allowed: dmft.simulate takes a positive number or a schedule of time (Constant, "
            "TimeDependent, StepDecay, Cosine of dmft.schedules, or a function t -> lr); AdaGradNorm is for onepass")
    return schedules.as_schedule(lr)


# ---------------------------------------------------------------- divergence and resources
def _check_labels(model, Y, Y_test, s: int) -> None:
    """DivergenceError (cause ``'data'``, time 0) if the teacher gave a non-finite label."""
    for name, lab in (("training", Y), ("held-out", Y_test)):
        if not np.isfinite(lab).all():
            bad = int(np.sum(~np.isfinite(lab).all(axis=1)))
            raise errors.DivergenceError(
                f"dmft.simulate (seed {s}): the teacher of model {model.name!r} returned non-finite labels for {bad} "
                f"of {len(lab)} {name} samples", 0.0, cause="data")


def _check_gf_energy(rec, times, ridge: float, delta: float, dt: float, lr: float, s: int) -> None:
    """Fixed-step (RK4) gradient flow: the objective ``train_loss + ridge tr(q) / (2 delta)``
    never increases along the flow; an increase by more than 1e-3 of it is the step's."""
    energy = rec.train + ridge * np.trace(rec.norm, axis1=1, axis2=2) / (2 * delta)
    up = np.diff(energy) > 1e-3 * np.abs(energy[1:]) + 1e-12
    if up.any():
        j = int(np.argmax(up)) + 1
        raise errors.DivergenceError(
            f"dmft.simulate(dynamics='gf', dt={dt:g}) (seed {s}): the gradient-flow objective increases from "
            f"{energy[j - 1]:.6g} to {energy[j]:.6g} by time {times[j]:.4g}: the RK4 step is unstable at lr * dt = "
            f"{lr * dt:.3g}", float(times[j]), cause="time_step")


def _classify(err, cfg, dynamics: str, rec, X, Y, theta0, run, rng, s: int):
    """``err`` (from :meth:`_Recorder.check`) with its cause.

    ``'model'``: the state is finite where the losses are not, or the gradient is not finite
    at the last good state with moderate fields; adaptive gradient flow, which follows the
    flow, running away (a loss unbounded below). SME and RK4 gradient flow: the seed again
    with ``dt / 2`` up to ``1.5 t + 2 dt`` decides between ``'learning_rate'`` (it diverges by
    ``1.25 t + 2 dt`` too) and ``'time_step'``. SGD: ``'learning_rate'``.
    """
    if err.cause != "learning_rate":  # already classified (data, time step of RK4 gradient flow)
        return err
    t, model = err.time, cfg["model"]
    j = int(np.searchsorted(cfg["times"], t))
    where = f"dmft.simulate(dynamics={dynamics!r}) (seed {s}) diverged at time {t:.4g}"
    state_ok = j < len(rec.norm) and np.isfinite(rec.norm[j]).all() and np.trace(rec.norm[j]) <= BLOWUP_NORM
    if state_ok:
        return errors.DivergenceError(f"{where}: the loss is not finite at a finite state (tr q = "
                                      f"{np.trace(rec.norm[j]):.4g})", t, cause="model")
    bad = _probe_gradient(model, X, Y, rec)
    if bad is not None:
        return errors.DivergenceError(f"{where}: the model's gradient is not finite at r = {bad[0]}, y = {bad[1]}", t,
                                      cause="model")
    if dynamics == "gf" and cfg["dt"] is None:
        return errors.DivergenceError(
            f"{where}: gradient flow itself runs away (the adaptive integrator follows the flow): the loss is not "
            "bounded below along it", t, cause="model")
    if dynamics == "sgd":
        return errors.DivergenceError(where, t, cause="learning_rate")
    dt = cfg["dt"]
    t_end = 1.5 * t + 2 * dt
    times = cfg["times"][cfg["times"] < t_end]
    times = np.append(times, t_end)
    rec2 = _Recorder(model, X, Y, rec.theta_star, (rec.X_test, rec.Y_test), len(times))
    with np.errstate(all="ignore"):
        run({**cfg, "dt": dt / 2, "times": times}, X, Y, theta0.copy(), rng, rec2)
    try:
        rec2.check(times, s)
    except errors.DivergenceError as e2:
        if e2.time <= 1.25 * t + 2 * dt:
            return errors.DivergenceError(f"{where}; with dt/2 it diverges at {e2.time:.4g} too", t)
        refined = f"diverges only at {e2.time:.4g}"
    else:
        refined = f"stays finite up to {t_end:.4g}"
    return errors.DivergenceError(f"{where} at lr * dt = {cfg['lr'] * dt:.3g}; with dt/2 = {dt / 2:.3g} it {refined}",
                                  t, cause="time_step")


def _probe_gradient(model, X, Y, rec):
    """``(r, y)`` where ``l'`` is not finite among moderate fields, or None: the training
    fields at the last good state (if moderate), then 256 fields ``r ~ N(0, s^2 I)`` with
    ``s^2`` the last finite ``tr q`` (at least 1; fixed points) against training labels.
    A blow-up inside one kernel call leaves no state just before it: the probe looks where
    the run was going."""
    G = np.empty((0, model.k))
    grads = specialise(_k.per_sample, loss=model.loss, grad=model.grad)
    tr = np.trace(rec.norm, axis1=1, axis2=2)
    scale = math.sqrt(max(1.0, float(np.max(tr[np.isfinite(tr)], initial=1.0))))
    probes = []
    if rec.last_good is not None:
        fields = X @ rec.last_good
        if np.isfinite(fields).all() and np.abs(fields).max(initial=0.0) <= _MODERATE_FIELD:
            probes.append((fields, Y))
    rows = np.arange(256) % len(Y)
    probes.append((scale * np.random.default_rng(0).standard_normal((256, model.k)), Y[rows]))
    for R, labels in probes:
        R = np.ascontiguousarray(R)
        G = np.empty_like(R)
        grads(model.param_array, R, np.eye(model.k), np.ascontiguousarray(labels), G, False, True)
        bad = ~np.isfinite(G).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            return R[i].tolist(), labels[i].tolist()
    return None


def _check_step_stability(model, X, Y, theta0, lr: float, dt: float, dynamics: str, s: int, edge: float) -> float:
    """SME (Euler-Maruyama) and RK4 gradient flow with a fixed ``dt``: DivergenceError (cause
    ``'time_step'``, time 0) when ``lr dt lambda`` exceeds the scheme's real stability limit
    (2 and 2.785), ``lambda = edge mean_i l''_i`` the largest eigenvalue of the empirical
    Hessian at ``theta_0`` (``edge`` the largest eigenvalue of ``X^T X``: ``(1 + sqrt(n/d))^2``
    for isotropic inputs, times the mean curvature over up to 1000 samples). Returns that
    mean curvature ``mean_i l''_i``."""
    n, d = X.shape
    rows = np.arange(min(n, 1000))
    R = X[rows] @ theta0
    H = np.empty((model.k, model.k))
    curv = 0.0
    for i in rows:
        model.hess(R[i], Y[i], model.param_array, H)
        curv += float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1]) / len(rows)
    lam = edge * curv
    limit = 2.0 if dynamics == "sme" else 2.785
    if lr * dt * lam > limit:
        raise errors.DivergenceError(
            f"dmft.simulate(dynamics={dynamics!r}, dt={dt:g}) (seed {s}): the step is unstable from the start: "
            f"lr * dt * lambda_max = {lr * dt * lam:.3g} > {limit} ({'Euler-Maruyama' if dynamics == 'sme' else 'RK4'}"
            f"; lambda_max = {lam:.3g} of the empirical Hessian at theta_0); use dt < {limit / (lr * lam):.3g}", 0.0,
            cause="time_step")
    return curv


def _start_curvature(model, init_std: float, labels=None) -> float:
    """The mean of the largest eigenvalue of ``l''`` over 256 samples at the start, before the
    data exist: fields ``x^T theta_0 ~ N(0, init_std^2 I)`` (``|x|^2 ~ 1``), teacher fields
    ``N(0, I)``, label noise ``N(0, I)`` (fixed draws), or the hard ``labels`` (C, label_dim) in
    turn; :func:`_check_step_stability` takes the same mean over the data set's own samples."""
    rng = np.random.default_rng(0)
    R = init_std * rng.standard_normal((256, model.k))
    H, y = np.empty((model.k, model.k)), np.empty(model.label_dim)
    curv = 0.0
    for i, (r, rs, eps) in enumerate(zip(R, rng.standard_normal((256, model.k_star)),
                                         rng.standard_normal((256, model.noise_dim)))):
        if labels is None:
            model.teacher(rs, eps, model.param_array, y)
        else:
            y[:] = labels[i % len(labels)]
        model.hess(r, y, model.param_array, H)
        curv += float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1]) / 256
    return curv


def _step_may_bias(dynamics: str, lr: float, c: float, dt: float, curv: float, edge: float) -> bool:
    """Whether a fixed step ``dt`` is checked against ``dt / 2`` (:func:`_step_error`). SME: a
    sample's residual ``r`` with curvature ``l''`` moves by ``-lr l'' r (dt + dB / sqrt(kappa_bar))``
    per step, so Euler-Maruyama's mean-square factor ``(1 - lr l'' dt)^2 + c lr l''^2 dt`` adds
    ``(lr l'')^2 dt`` to the exact rate ``-lr l'' (2 - c l'')``: checked where that is more than
    ``_SME_CHECKED_RATE_BIAS`` of it (always at ``c l'' >= 2``). RK4: where ``lr dt lambda_max >
    _RK4_CHECKED_STIFFNESS``, ``lambda_max = edge l''`` (``edge`` the largest eigenvalue of
    ``X^T X``, ``(1 + sqrt(delta))^2`` for isotropic inputs)."""
    if dynamics == "sme":
        margin = 2 - c * curv
        return margin <= 0 or lr * dt * curv > _SME_CHECKED_RATE_BIAS * margin
    return lr * dt * edge * curv > _RK4_CHECKED_STIFFNESS


def _halved_run(cfg, dynamics: str, run, rec, X, Y, theta0, sample_ss, s: int):
    """The seed again with every step halved, on the same data and Brownian path
    (:class:`dmft._brownian.BridgeNormals`): its recorder; DivergenceError (cause ``'time_step'``) if it
    diverges where the run did not."""
    times, dt = cfg["times"], cfg["dt"]
    half = _Recorder(cfg["model"], X, Y, rec.theta_star, (rec.X_test, rec.Y_test), len(times))
    normals = BridgeNormals(np.random.default_rng(sample_ss), np.random.default_rng(sample_ss.spawn(1)[0]))
    with np.errstate(all="ignore"):
        run({**cfg, "split": 2}, X, Y, theta0.copy(), normals, half)
    try:
        half.check(times, s)
    except errors.DivergenceError as e:
        raise errors.DivergenceError(
            f"dmft.simulate(dynamics={dynamics!r}) (seed {s}): the step dt = {dt:.4g} is not resolved: with dt/2 the "
            f"run diverges at time {e.time:.4g}", e.time, cause="time_step") from None
    return half


def _memory_estimate(model, dynamics: str, n: int, d: int, kappa: int, n_test: int, n_time: int, sampling: str):
    """Peak bytes of a run above the process's baseline and its largest part (``'data'``:
    the ``n x d`` inputs, ``'test'``: the ``n_test x d`` held-out inputs, ``'batch'``: SGD's
    sample indices). One seed's data at a time; float64 counts (no overflow).
    Checked against measured peak RSS in tests/test_resources.py."""
    n, d, n_test, k = float(n), float(d), float(n_test), model.k
    per_sample = model.k_star + model.noise_dim + model.label_dim + k + 1
    parts = {"data": n * d + n * per_sample, "test": n_test * d + n_test * per_sample}
    # the kernel gets min(kappa, 2^20)-ish indices per call (a batch at least); sampling
    # without replacement draws permutations of n, Bernoulli builds positions and their divmod
    indices = max(float(kappa), float(_MAX_INDICES))
    if dynamics == "sgd":
        parts["batch"] = indices * {"with_replacement": 2, "without_replacement": 2, "bernoulli": 5}[sampling]
        parts["data"] += n if sampling == "without_replacement" else 0.0
    elif dynamics == "sme":
        parts["data"] += 2 * n * k + 2 * n + 3 * d * k
    else:  # the integrator's stages; the adaptive one also keeps the state at every output time (twice)
        parts["data"] += d * k * (12 + 2 * n_time) + 2 * n * k
    return 8 * sum(parts.values()), max(parts, key=parts.get)


def _runtime_estimate(model, dynamics: str, n: int, d: int, n_test: int, n_time: int, n_seeds: int, batch: float,
                      t_max: float, dt, lr: float, kappa: int, edge: float, checked: bool = False):
    """Seconds of a run from operation counts (multiply-adds of ``r = theta^T x`` and of the
    update, ``k`` per coordinate) at ``_SECONDS_PER_MAC`` (measured, docs/performance.md),
    and the argument that drives it. SGD: ``t_max batch n`` sample gradients per seed; SME:
    ``t_max / dt`` steps over all ``n`` samples; GF: RK4's 4 per step, the adaptive
    integrator's ``6 (lr t_max L + 20)`` with ``L = edge`` the data's largest Hessian
    eigenvalue per unit curvature (``(1 + sqrt(n/d))^2`` for isotropic inputs). Recording:
    ``n_time (n + n_test)`` predictions. ``checked``: the step check's run with halved steps,
    twice the work, is added."""
    nd = float(n) * d * model.k
    if dynamics == "sgd":
        work = 2 * t_max * batch * float(n) * d * model.k
    elif dynamics == "sme":
        work = 2 * nd * math.ceil(t_max / dt)
    elif dt is not None:
        work = 8 * nd * math.ceil(t_max / dt)
    else:
        work = 12 * nd * (lr * t_max * edge + 20)
    record = float(n_time) * (n + n_test) * d * model.k
    if checked:
        work, record = 3 * work, 2 * record
    seconds = n_seeds * (work + record) * _SECONDS_PER_MAC
    return seconds, ("t_max" if work > record else "n_time")


def _check_resources(mem: float, mem_part: str, max_memory_gb: float, runtime: float, time_part: str,
                     max_runtime_s, values: dict) -> None:
    """ParameterError naming the argument that drives an estimate above its limit."""
    if mem > max_memory_gb * 2**30:
        name = {"data": "d", "test": "n_test", "batch": "batch"}[mem_part]
        raise errors.ParameterError(
            f"{name}={values[name]!r} is not allowed here: dmft.simulate would need about {mem / 2**30:.3g} GB "
            f"> max_memory_gb={max_memory_gb:g} (one seed's n x d training and n_test x d held-out inputs"
            + (", and the SGD batch's indices" if mem_part == "batch" else "")
            + f"); lower {name}" + (" or delta" if name == "d" else "") + ", or raise max_memory_gb")
    if max_runtime_s is not None and runtime > max_runtime_s:
        name = time_part
        raise errors.ParameterError(
            f"{name}={values[name]!r} is not allowed here: dmft.simulate would take about {runtime:.3g} s "
            f"> max_runtime_s={max_runtime_s:g}; lower t_max, d, n_seeds or n_time, or raise max_runtime_s "
            "(None: no limit)")
    errors.warn_long_run("dmft.simulate", runtime, stacklevel=4)


# ---------------------------------------------------------------- data and observables
def _dataset(model, n: int, d: int, init_std: float, rng: np.random.Generator, mix=None):
    """``(X, Y, theta_star, theta_0)`` of one seed, drawn in this order from ``rng`` (after the
    classes of a mixture, :func:`_inputs`).

    ``mix`` (:class:`dmft.multipass._spectral.Mixture`): its inputs and its fixed teacher, or
    (hard labels) ``theta_star`` of shape (d, 0) and the class labels. The isotropic teacher's
    normals are drawn all the same, so the other draws are those of the isotropic data set."""
    X, classes = _inputs(rng, n, d, mix)
    theta_star = rng.standard_normal((d, model.k_star))
    if mix is not None:
        theta_star = np.zeros((d, 0)) if mix.teacher is None else mix.teacher.copy()
    eps = rng.standard_normal((n, model.noise_dim))
    theta0 = init_std * rng.standard_normal((d, model.k))
    return X, _labels(model, X, theta_star, eps, mix, classes), theta_star, theta0


def _test_set(model, n_test: int, theta_star, rng: np.random.Generator, mix=None):
    """Held-out inputs ``X`` (n_test, d) from the same law as the training inputs (:func:`_inputs`)
    and their labels (n_test, label_dim), teacher labels with fresh label noise, drawn in this
    order from ``rng``."""
    d = theta_star.shape[0]
    X, classes = _inputs(rng, n_test, d, mix)
    eps = rng.standard_normal((n_test, model.noise_dim))
    return X, _labels(model, X, theta_star, eps, mix, classes)


#: rows per block when a mixture's inputs are scaled and shifted (bounds the temporaries)
_ROW_BLOCK = 4096


def _inputs(rng: np.random.Generator, n: int, d: int, mix=None):
    """``(X, classes)``: ``n`` rows ``x ~ N(0, I/d)``, or with ``mix`` rows of class ``c_i``
    ``x = mu_c/sqrt(d) + sqrt(lam^(c)/d) xi``, and the classes (None for one class). A mixture of
    several classes draws the classes first (``c_i`` from uniforms ``u_i``: the first ``c`` with
    ``u_i < p_1 + .. + p_c``, as ``onepass``), then the normals. In place: the peak memory is one
    ``n x d`` array."""
    classes = None
    if mix is not None and mix.n_classes > 1:
        classes = np.minimum(np.searchsorted(np.cumsum(mix.probs), rng.random(n), side="right"), mix.n_classes - 1)
    X = rng.standard_normal((n, d))
    if mix is None:
        X /= math.sqrt(d)
    elif classes is None:
        X *= mix.scales[0]
        if np.any(mix.means[0] != 0.0):
            X += mix.means[0]
    else:
        scales = mix.scales
        for lo in range(0, n, _ROW_BLOCK):
            c = classes[lo:lo + _ROW_BLOCK]
            X[lo:lo + _ROW_BLOCK] *= scales[c]
            X[lo:lo + _ROW_BLOCK] += mix.means[c]
    return X, classes


def _top_eigenvalue(X, iterations: int = 30) -> float:
    """Largest eigenvalue of ``X^T X`` by power iteration from the flat vector (deterministic;
    it converges from below, so it is raised by 10%: a stability check, not a measurement)."""
    v = np.ones(X.shape[1]) / math.sqrt(X.shape[1])
    top = 0.0
    for _ in range(iterations):
        w = X.T @ (X @ v)
        top = float(np.linalg.norm(w))
        v = w / top
    return 1.1 * top


def _labels(model, X, theta_star, eps, mix=None, classes=None):
    """Labels (n, label_dim) of the rows of ``X``: the teacher's with label noise ``eps``
    (n, noise_dim), or with ``mix``'s hard labels the label of each row's class."""
    if mix is not None and mix.labels is not None:
        return np.array(mix.labels[np.zeros(X.shape[0], dtype=np.int64) if classes is None else classes])
    Y = np.empty((X.shape[0], model.label_dim))
    teacher_labels = specialise(_k.teacher_labels, teacher=model.teacher)
    teacher_labels(model.param_array, np.ascontiguousarray(X @ theta_star), eps, Y)
    return Y


def _population_loss(model, q, m, rho) -> float:
    """``E l`` over ``(r, r*) ~ N(0, [[q, m], [m^T, rho]])`` with label noise integrated."""
    cov = np.block([[q, m], [m.T, rho]])
    return expectation.gaussian_moments(model, np.zeros(cov.shape[0]), cov).loss


class _Recorder:
    """Observables at output times; marks the run diverged at the first bad state. ``means``
    (C, d), the class means ``mu_c/sqrt(d)`` of mixture data, adds ``mean_overlap``."""

    def __init__(self, model, X, Y, theta_star, held_out, n_time, means=None):
        self.model, self.X, self.Y, self.theta_star = model, X, Y, theta_star
        self.X_test, self.Y_test = held_out
        self.means = means
        self.params = model.param_array
        self.resize(n_time)
        self.diverged = False
        self.last_good = None
        self._G = np.empty((0, model.k))

    def resize(self, n_slots: int) -> None:
        m = self.model
        self.train = np.full(n_slots, np.nan)
        self.test = np.full(n_slots, np.nan)
        self.test_sem = np.full(n_slots, np.nan)
        self.norm = np.full((n_slots, m.k, m.k), np.nan)
        self.overlap = np.full((n_slots, m.k, self.theta_star.shape[1]), np.nan)
        self.mean_overlap = np.full((n_slots, m.k, 0 if self.means is None else self.means.shape[0]), np.nan)

    def ok(self, theta) -> bool:
        """False (and diverged) if ``theta`` is non-finite or too large; keeps the last good one."""
        if not self.diverged:
            d = theta.shape[0]
            if not np.isfinite(theta).all() or np.sum(theta * theta) / d > BLOWUP_NORM:
                self.diverged = True
            else:
                self.last_good = theta.copy()
        return not self.diverged

    def record(self, j: int, theta) -> bool:
        if not self.ok(theta):
            return False
        d = theta.shape[0]
        m = self.model
        X = self.X
        per_sample = specialise(_k.per_sample, loss=m.loss, grad=m.grad)
        self.train[j] = per_sample(self.params, X, theta, self.Y, self._G, True, False) / X.shape[0]
        losses = np.empty(self.X_test.shape[0])
        specialise(_k.row_losses, loss=m.loss)(self.params, self.X_test @ theta, self.Y_test, losses)
        self.test[j] = losses.mean()
        self.test_sem[j] = _stats.sem(losses)
        self.norm[j] = theta.T @ theta / d
        self.overlap[j] = theta.T @ self.theta_star / d
        if self.means is not None:
            self.mean_overlap[j] = theta.T @ self.means.T
        return True

    def interpolate(self, lo, hi, w) -> None:
        """Replace the slots by ``(1 - w) slot[lo] + w slot[hi]`` (SGD between steps)."""
        w = np.asarray(w)
        for name in ("train", "test", "test_sem", "norm", "overlap", "mean_overlap"):
            a = getattr(self, name)
            ww = w.reshape((-1,) + (1,) * (a.ndim - 1))
            lo_v, hi_v = a[lo], a[hi]
            # w = 0 must not pick up a NaN from an unneeded slot
            setattr(self, name, np.where(ww > 0, (1 - ww) * lo_v + ww * hi_v, lo_v))

    def check(self, times, s: int) -> None:
        vals = np.concatenate([self.norm.reshape(len(times), -1), self.train[:, None], self.test[:, None]], axis=1)
        output.check_finite(f"simulation (seed {s})", times, vals, limit=BLOWUP_NORM)


# ---------------------------------------------------------------- SGD
def _batches(sampling, n, kappa, n_steps, rng, stream):
    """``(idx, start)`` for ``n_steps`` SGD steps: step ``s`` uses ``idx[start[s]:start[s+1]]``."""
    if sampling == "with_replacement":
        idx = rng.integers(0, n, size=n_steps * kappa)
        start = np.arange(n_steps + 1, dtype=np.int64) * kappa
    elif sampling == "without_replacement":
        idx = stream.take(n_steps * kappa)
        start = np.arange(n_steps + 1, dtype=np.int64) * kappa
    else:  # bernoulli: i.i.d. inclusion over the n_steps x n cells, by geometric gaps
        p = kappa / n
        cells = n_steps * n
        if p >= 1.0:
            pos = np.arange(cells, dtype=np.int64)
        else:
            parts, last = [], -1
            while True:
                m = int((cells - last) * p + 8 * math.sqrt((cells - last) * p) + 16)
                ps = last + np.cumsum(rng.geometric(p, size=m))
                parts.append(ps[ps < cells])
                if ps[-1] >= cells:
                    break
                last = int(ps[-1])
            pos = np.concatenate(parts)
        step, idx = np.divmod(pos, n)
        start = np.searchsorted(step, np.arange(n_steps + 1)).astype(np.int64)
    return np.ascontiguousarray(idx, dtype=np.int64), start


class _EpochStream:
    """Concatenated independent random permutations of ``range(n)`` (shuffled epochs)."""

    def __init__(self, rng, n):
        self.rng, self.n = rng, n
        self.perm, self.pos = rng.permutation(n), 0

    def take(self, m: int) -> np.ndarray:
        parts = []
        while m > 0:
            if self.pos == self.n:
                self.perm, self.pos = self.rng.permutation(self.n), 0
            t = min(m, self.n - self.pos)
            parts.append(self.perm[self.pos:self.pos + t])
            self.pos += t
            m -= t
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _run_sgd(cfg, X, Y, theta, rng, rec):
    m = cfg["model"]
    n, kappa, h = cfg["n"], cfg["kappa"], cfg["h"]
    stream = _EpochStream(rng, n) if cfg["sampling"] == "without_replacement" else None
    lo, hi, w = _bracket(cfg["times"], h)
    targets, inverse = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    rec.resize(len(targets))
    per_call = max(1, _MAX_INDICES // kappa)
    _sgd_loop(m, cfg, X, Y, theta, rng, rec, stream, targets, per_call)
    rec.interpolate(inverse[:len(lo)], inverse[len(lo):], w)


def _bracket(times, h):
    """Steps ``floor(t/h)``, ``floor(t/h) + 1`` around each time and the weight of the upper
    one (0 when ``t/h`` is an integer to 1e-9)."""
    x = np.asarray(times) / h
    near = np.rint(x)
    snap = np.abs(x - near) <= 1e-9 * np.maximum(1.0, x)
    lo = np.where(snap, near, np.floor(x)).astype(np.int64)
    w = np.where(snap, 0.0, x - lo)
    return lo, lo + (w > 0), w


def _sgd_loop(m, cfg, X, Y, theta, rng, rec, stream, targets, per_call):
    """SGD steps up to each target step, recording there. Step ``s`` (at time ``t = s h``) has the
    per-sample step ``c_s = lr(t)/batch`` and the ridge factor ``1 - lr(t) ridge h`` (``= 1 - (eta/n) lam``)."""
    n, kappa, h = cfg["n"], cfg["kappa"], cfg["h"]
    step = 0
    for j, target in enumerate(targets):
        while step < target:
            ns = int(min(per_call, target - step))
            idx, start = _batches(cfg["sampling"], n, kappa, ns, rng, stream)
            rates = cfg["schedule"].rates((step + np.arange(ns)) * h)
            c, decay = rates / cfg["batch"], 1.0 - rates * cfg["ridge"] * h
            specialise(_k.sgd_steps, grad=m.grad)(m.param_array, X, Y, theta, idx, start, c, decay)
            step += ns
            if not rec.ok(theta):
                return
        if not rec.record(j, theta):
            return


# ---------------------------------------------------------------- SME and GF
def _force(m, params, X, Y, theta, G):
    """``G = l'(X theta, Y)`` (n, k)."""
    specialise(_k.per_sample, loss=m.loss, grad=m.grad)(params, X, theta, Y, G, False, True)
    return G


def _intervals(times, dt, split=1, jumps=()):
    """``(j, a, b, tau, ns)`` per interval ``[a, b]`` between consecutive knots, the output times and
    the schedule's ``jumps`` merged: ``ns`` equal substeps of size ``tau <= dt`` (times ``split``;
    0 for an empty interval) and the index ``j`` of the output time ``b`` (-1 at a jump)."""
    knots = np.concatenate([times, jumps])
    index = np.concatenate([np.arange(len(times)), np.full(len(jumps), -1)])
    order = np.argsort(knots, kind="stable")
    a = 0.0
    for b, j in zip(knots[order], index[order]):
        gap = b - a
        ns = 0 if gap == 0 else split * max(1, int(math.ceil(gap / dt - 1e-9)))
        yield int(j), a, b, (gap / ns if ns else 0.0), ns
        a = b


def _run_sme(cfg, X, Y, theta, rng, rec):
    """Euler-Maruyama; a step from ``t`` takes the rate ``lr(t)``."""
    m, params = cfg["model"], cfg["model"].param_array
    schedule, lam, noise = cfg["schedule"], cfg["ridge"], 1.0 / math.sqrt(cfg["batch"])
    n = cfg["n"]
    G = np.empty((n, m.k))
    step = np.empty_like(theta)
    for j, a, _, tau, ns in _intervals(cfg["times"], cfg["dt"], cfg["split"], cfg["jumps"]):
        sq = math.sqrt(tau)
        for i in range(ns):
            lr = schedule(a + i * tau, 0.0)
            _force(m, params, X, Y, theta, G)
            w = tau + (noise * sq) * rng.standard_normal(n)
            _k.weighted_transpose(X, G, w, step)
            theta -= lr * (step + (lam * tau) * theta)
            if not rec.ok(theta):
                return
        if j >= 0 and not rec.record(j, theta):
            return


def _run_gf(cfg, X, Y, theta, rng, rec):
    m, params = cfg["model"], cfg["model"].param_array
    schedule, lam, times = cfg["schedule"], cfg["ridge"], cfg["times"]
    shape = theta.shape
    G = np.empty((cfg["n"], m.k))
    ones = np.ones(cfg["n"])

    def rhs(lr, th):
        out = np.empty(shape)
        _k.weighted_transpose(X, _force(m, params, X, Y, np.ascontiguousarray(th), G), ones, out)
        return -lr * (out + lam * th)

    if cfg["dt"] is None:
        _adaptive_gf(rhs, schedule, times, cfg["jumps"], theta, rec)
        return
    for j, a, b, tau, ns in _intervals(times, cfg["dt"], cfg["split"], cfg["jumps"]):
        for i in range(ns):  # classical RK4
            t0 = a + i * tau
            lr0, lr1, lr2 = (_rate_inside(schedule, s, a, b, cfg["jumps"]) for s in (t0, t0 + 0.5 * tau, t0 + tau))
            k1 = rhs(lr0, theta)
            k2 = rhs(lr1, theta + 0.5 * tau * k1)
            k3 = rhs(lr1, theta + 0.5 * tau * k2)
            k4 = rhs(lr2, theta + tau * k3)
            theta += (tau / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
            if not rec.ok(theta):
                return
        if j >= 0 and not rec.record(j, theta):
            return


def _rate_inside(schedule, t: float, a: float, b: float, jumps) -> float:
    """``lr(t)`` for a step inside ``[a, b]``; with jumps, the rate of its piece
    (:func:`dmft.schedules.rate_between`)."""
    return schedules.rate_between(schedule, t, a, b) if len(jumps) else schedule(t, 0.0)


def _adaptive_gf(rhs, schedule, times, jumps, theta, rec):
    """Gradient flow by scipy's RK45 (rtol ``_GF_RTOL``) through the output times, restarted at each
    of the schedule's jumps (the error control of one run would have to find them)."""
    shape = theta.shape
    times = np.asarray(times, dtype=float)
    if times[0] == 0.0:
        if not rec.record(0, theta):
            return

    def blowup(t, y):  # stop (and report divergence) once tr q exceeds the limit
        return BLOWUP_NORM * shape[0] - float(y @ y)

    blowup.terminal = True
    edges = np.concatenate([[0.0], jumps, [float(times[-1])]])
    y = theta.ravel()
    for a, b in zip(edges[:-1], edges[1:]):
        if b == a:  # only t = 0 asked for
            continue
        inside = times[((times >= a) if a == 0.0 else (times > a)) & (times <= b)]
        t_eval = inside if inside.size and inside[-1] == b else np.append(inside, b)
        sol = integrate.solve_ivp(
            lambda t, y: rhs(_rate_inside(schedule, t, a, b, jumps), y.reshape(shape)).ravel(), (a, b), y,
            method="RK45", t_eval=t_eval, rtol=_GF_RTOL, atol=_GF_ATOL, events=blowup,
        )
        for t, state in zip(sol.t, sol.y.T):
            hit = np.nonzero(times == t)[0]
            if t > 0.0 and hit.size and not rec.record(int(hit[0]), state.reshape(shape).copy()):
                return
        if sol.status != 0 or sol.t.size < t_eval.size:  # the blow-up event ended the run
            rec.diverged = True
            return
        y = sol.y[:, -1]


# ---------------------------------------------------------------- exact moments (linear model)
def linear_sgd_moments(
    model="linear_regression",
    *,
    delta: float = 2.0,
    lr: float = 2.0,
    batch: float = 1.0,
    t_max: float = 4.0,
    d: int = 200,
    n_seeds: int = 1,
    seed=0,
    ridge: float = 0.0,
    init_std: float = 0.0,
    n_time: int = 101,
    times=None,
    progress: bool = True,
):
    """Sampling-noise averages of SGD on each fixed data set, exactly, for the squared loss.

    SGD with a Poisson clock (every sample is visited at the jump times of its own Poisson
    process of rate ``batch``; the SGD driver of the DMFT (docs/dmft_theory.md) and the
    ``d -> inf`` limit of ``sampling='with_replacement'``) has a closed equation for the mean
    ``mu = E theta`` and second moment ``S = E theta theta^T`` (``k = 1``, ``A = X^T X``,
    ``b = X^T y``, ``s_i = x_i^T S x_i - 2 y_i x_i^T mu + y_i^2``)::

        dmu/dt = -lr (A mu - b) - lr lam mu
        dS/dt  = -lr (S A + A S - mu b^T - b mu^T) - 2 lr lam S
                 + (lr^2/batch) sum_i s_i x_i x_i^T

    integrated by RK45 (rtol 1e-8). Cost O(n d^2) per evaluation: meant for ``d`` of a few
    hundred. Same data sets as :func:`simulate` with the same ``seed``, ``delta``, ``d``
    and ``init_std``; the returned Dataset has the same layout, with the expectations of
    ``train_loss``, ``test_loss``, ``norm`` and ``overlap`` over the sampling noise
    (all are linear in ``(mu, S)``), a noise-free reference for finite-``d`` SGD.
    Discrete SGD with batch ``kappa`` differs from the Poisson clock by ``O(kappa/d)``.

    Only ``linear_regression`` with ``k = 1`` is supported.
    """
    model = _models.get(model, **({} if not isinstance(model, str) else {}))
    if model.name != "linear_regression" or model.k != 1:
        raise errors.ParameterError(
            f"model={model!r} is not allowed: exact moments need linear_regression with k = 1"
        )
    delta = errors.positive("delta", delta)
    lr = errors.positive("lr", lr)
    batch = errors.positive("batch", batch)
    d = errors.positive_int("d", d)
    n_seeds = errors.positive_int("n_seeds", n_seeds)
    seed = errors.seed_value(seed)
    root = errors.seed_sequence(seed)
    ridge = errors.nonnegative("ridge", ridge)
    init_std = errors.nonnegative("init_std", init_std)
    if times is None:
        t_max = errors.positive("t_max", t_max)
        n_time = errors.positive_int("n_time", n_time, minimum=2)
        times = np.linspace(0.0, t_max, n_time)
    else:
        times = errors.finite_array("times", times, nonnegative=True)
        if times.ndim != 1 or times.size < 1 or np.any(np.diff(times) <= 0):
            raise errors.ParameterError("times is not allowed: times must be a strictly increasing 1-d array")
        t_max, n_time = float(times[-1]), int(times.size)
    n = int(round(delta * d))
    if n < 1:
        raise errors.ParameterError(f"delta={delta!r} is not allowed: n = round(delta d) must be >= 1 (d={d})")

    train = np.empty((n_seeds, n_time))
    test = np.empty((n_seeds, n_time))
    norm = np.empty((n_seeds, n_time, 1, 1))
    overlap = np.empty((n_seeds, n_time, 1, 1))
    rhos = np.empty((n_seeds, 1, 1))
    for s, child in enumerate(_progress(root.spawn(n_seeds), progress, "linear_sgd_moments")):
        data_ss, _ = child.spawn(2)
        X, Y, theta_star, theta0 = _dataset(model, n, d, init_std, np.random.default_rng(data_ss))
        y = Y[:, 0]
        A = X.T @ X
        b = X.T @ y

        dmu, dS, sv = np.empty(d), np.empty((d, d)), np.empty(n)

        def rhs(t, z):
            _k.linear_moments_rhs(X, y, A, b, z[:d], z[d:].reshape(d, d), lr, ridge,
                                  lr * lr / batch, dmu, dS, sv)
            return np.concatenate([dmu, dS.ravel()])

        th0 = theta0[:, 0]
        z0 = np.concatenate([th0, np.outer(th0, th0).ravel()])
        with np.errstate(all="ignore"):
            sol = integrate.solve_ivp(rhs, (0.0, t_max), z0, method="RK45", t_eval=times,
                                      rtol=1e-8, atol=1e-10)
        rho = rhos[s] = theta_star.T @ theta_star / d
        if sol.status != 0 or sol.y.shape[1] != n_time or not np.isfinite(sol.y).all():
            good = sol.y.shape[1] if np.isfinite(sol.y).all() else int(np.argmin(np.isfinite(sol.y).all(0)))
            bad = np.full((n_time, 1), np.nan)
            bad[:good] = 0.0
            output.check_finite(f"linear_sgd_moments (seed {s})", times, bad)
        for j in range(n_time):
            mu, S = sol.y[:d, j].copy(), sol.y[d:, j].reshape(d, d).copy()
            rhs(0.0, sol.y[:, j].copy())  # fills sv = 2 E l_i
            train[s, j] = 0.5 * sv.mean()
            norm[s, j, 0, 0] = np.trace(S) / d
            overlap[s, j, 0, 0] = mu @ theta_star[:, 0] / d
        output.check_finite(f"linear_sgd_moments (seed {s})", times, norm[s, :, 0], limit=BLOWUP_NORM)
        test[s] = [_population_loss(model, norm[s, j], overlap[s, j], rho) for j in range(n_time)]

    attrs = {
        **model.attrs(), "delta": delta, "lr": lr, "batch": batch, "dynamics": "sgd_moments",
        "d": d, "n": n, "n_seeds": n_seeds,
        "seed": seed if isinstance(seed, (int, np.integer)) else repr(root.entropy),
        "ridge": ridge, "init_std": init_std, "t_max": t_max, "n_time": n_time,
        "teacher_prior": "N(0, 1) (rho = 1)", "rho": rhos.tolist(),
        "method": "exact sampling-noise moments of Poisson-clock SGD, RK45 rtol 1e-8",
    }
    return _dataset_of_runs(train, test, norm, overlap, times, batch, attrs)
