"""``dmft.simulate`` on Gaussian mixtures and with learning-rate schedules (docs/simulate.md).

Independent numbers: the data object's arrays (Monte Carlo moments of the generated samples),
closed-form and Gauss-Hermite losses at the start, ``onepass.solve`` (the one-pass ODE on the
same data object: ``delta -> inf`` at matched time ``t_onepass = batch delta t``, ``gamma = lr/batch``),
and the exact time change of gradient flow, ``theta_lr(.)(t) = theta_c(int_0^t lr(s) ds / c)``.
"""
import math

import numpy as np
import pytest
from scipy import integrate

import dmft
import onepass
from dmft import models, schedules as S
from dmft import data as D
from dmft.multipass import _simulate, _spectral

LIN = models.linear_regression(noise_std=0.5)
LOGISTIC = models.logistic()


def three_classes(d, teacher=None):
    """Three classes with unequal probabilities, distinct means and covariances (one with zeros)."""
    u = np.arange(1, d + 1) / d
    means = np.stack([np.sin(3 * np.pi * u), np.cos(np.pi * u), np.zeros(d)])
    means *= (np.array([1.0, 0.5, 0.0]) / np.maximum(np.linalg.norm(means, axis=1), 1e-300))[:, None]
    return D.gaussian_mixture(means, [u**1.5 / np.mean(u**1.5), np.where(u < 0.5, 0.0, 2.0), 0.7],
                              probs=[0.5, 0.3, 0.2], teacher=teacher, name="three_classes")


# ---------------------------------------------------------------- data
def test_mixture_samples_have_the_class_means_and_covariances():
    """Classes ~ probs (binomial SE), per class and coordinate ``sqrt(d) mean(x) = mu_c`` and
    ``d var(x) = lam^(c)`` (normal SEs ``sqrt(lam/n_c)``, ``lam sqrt(2/(n_c - 1))``): all within
    4.5 SE (about 130 statistics; a chance exceedance has probability 1e-3)."""
    d, n = 20, 40_000
    data = three_classes(d)
    mix = _spectral.check_simulation_data(data, models.softmax_cross_entropy(3))  # hard labels for 3 classes
    X, classes = _simulate._inputs(np.random.default_rng(5), n, d, mix)
    z = []
    for c, p in enumerate(data.probs):
        rows = X[classes == c] * math.sqrt(d)
        n_c = rows.shape[0]
        z.append([(n_c / n - p) / math.sqrt(p * (1 - p) / n)])
        lam = data.eigenvalues[c]
        mean_se = np.sqrt(np.maximum(lam, 1e-300) / n_c)
        z.append(np.where(lam > 0, (rows.mean(0) - data.means[c]) / mean_se, 0.0))
        np.testing.assert_allclose(rows[:, lam == 0], np.broadcast_to(data.means[c][lam == 0], rows[:, lam == 0].shape),
                                   rtol=1e-14, atol=1e-15)  # zero variance: the mean, up to rounding
        var = rows.var(0, ddof=1)
        z.append(np.where(lam > 0, (var - lam) / np.maximum(lam * math.sqrt(2 / (n_c - 1)), 1e-300), 0.0))
    z = np.concatenate(z)
    assert np.abs(z).max() < 4.5, np.abs(z).max()


def test_held_out_loss_at_zero_is_the_mixture_teacher_variance():
    """Squared loss, teacher rows on a three-class mixture, ``theta = 0``: the held-out loss is
    ``(sum_c p_c [(x* mu_c)^2 + sum_i lam_i^(c) x*_i^2] + sigma^2)/2`` (within 4 SE)."""
    d = 200
    xs = (np.cos(np.arange(d)) + np.sin(3 * np.pi * np.arange(1, d + 1) / d))[None, :]  # on class 0's mean too
    data = three_classes(d, teacher=xs / np.linalg.norm(xs))
    ds = dmft.simulate(LIN, data=data, dynamics="gf", times=[0.0], n_seeds=2, n_test=40_000, delta=0.5,
                       progress=False)
    x = data.teacher[0]
    expected = 0.5 * (sum(p * ((x @ mu) ** 2 + lam @ x**2) for p, mu, lam in
                          zip(data.probs, data.means, data.eigenvalues)) + 0.25)
    z = (ds.test_loss.values[:, 0] - expected) / ds.test_loss_sem.values[:, 0]
    assert np.abs(z).max() < 4, (ds.test_loss.values, expected)
    assert "mean_overlap" in ds and ds.overlap.shape == (2, 1, 1, 1)


def test_hard_label_losses_at_the_start_are_the_gauss_hermite_integral():
    """Logistic on a binary mixture (hard labels ``y = 1, 0``, ``K = I``) from a random
    ``theta_0``: given the class, ``r ~ N(X mu_c, q)`` with ``q = norm`` and ``X mu_c =
    mean_overlap`` (the simulator's own outputs), so the held-out loss is
    ``sum_c p_c E[log(1 + e^r) - y_c r]`` (80-point Gauss-Hermite, exact to 1e-12 here): within 4 SE."""
    data = D.binary_mixture("identity", d=400, mean_norm=2.0)
    ds = dmft.simulate(LOGISTIC, data=data, dynamics="gf", times=[0.0], n_seeds=3, n_test=40_000, delta=0.5,
                       init_std=0.8, progress=False)
    assert "overlap" not in ds and "rho" not in ds.attrs
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    for s in range(3):
        q = float(ds.norm.values[s, 0, 0, 0])
        m = ds.mean_overlap.values[s, 0, 0]
        expected = 0.0
        for p, mc, y in zip(data.probs, m, (1.0, 0.0)):
            r = mc + math.sqrt(q) * nodes
            expected += p * weights @ (np.logaddexp(0.0, r) - y * r) / math.sqrt(2 * math.pi)
        z = (ds.test_loss.values[s, 0] - expected) / ds.test_loss_sem.values[s, 0]
        assert abs(z) < 4, (s, ds.test_loss.values[s, 0], expected)
    np.testing.assert_allclose(ds.mean_overlap.values[:, 0, 0, 0], -ds.mean_overlap.values[:, 0, 0, 1])


# ---------------------------------------------------------------- against the one-pass ODE
#: relative excess of multi-pass SGD (with replacement) over the one-pass ODE per unit ``t_onepass/delta``
#: (samples are reused): measured 0.045 on the test loss (logistic, zero-one mixture, d = 300, 32 seeds:
#: +1.1% +- 0.2% at delta = 8, +0.25% +- 0.17% at 32, +0.17% +- 0.17% at 64, all at t_onepass = 2)
REUSE_BIAS = 0.05


def _against_onepass(model, data, lr_multi, lr_one, t_onepass, delta, n_seeds, seed=1, sampling="with_replacement"):
    """Per variable: the seed mean of ``dmft.simulate`` (SGD) at ``t = t_onepass/delta``, its SE and
    ``onepass.solve``'s value (test loss/risk, norm, class-mean overlaps), each (time, entries)."""
    ds = dmft.simulate(model, data=data, delta=delta, lr=lr_multi, dynamics="sgd", times=np.asarray(t_onepass) / delta,
                       n_seeds=n_seeds, seed=seed, sampling=sampling, progress=False)
    op = onepass.solve(model, data, lr=lr_one, times=t_onepass, progress=False)
    out = {}
    for var, opvar in (("test_loss", "risk"), ("norm", "norm"), ("mean_overlap", "mean_overlap")):
        a = ds[var].values.reshape(n_seeds, len(t_onepass), -1)
        out[var] = a.mean(0), a.std(0, ddof=1) / math.sqrt(n_seeds), op[opvar].values.reshape(len(t_onepass), -1)
    return out


def _assert_within(results, t_onepass, delta, z_max=3.0):
    bias = REUSE_BIAS * np.asarray(t_onepass)[:, None] / delta
    for var, (mean, se, theory) in results.items():
        assert np.all(np.abs(mean - theory) <= z_max * se + bias * np.abs(theory)), (var, mean, se, theory)


@pytest.mark.parametrize("spectrum", ["identity", "zero_one"])
def test_mixture_sgd_at_large_delta_is_the_onepass_ode(spectrum):
    """Logistic on ``binary_mixture(spectrum)``, ``delta = 32``, ``t_onepass = 0.5, 1, 2``: test
    loss, norm and class-mean overlaps within 3 SE of ``onepass.solve`` on the same data object,
    plus the measured reuse bias ``REUSE_BIAS t_onepass/delta`` (at most 0.3%). Measured at
    ``d = 500``, 8 seeds: ``|z| <= 1.2``."""
    data = D.binary_mixture(spectrum, d=300, mean_norm=1.5)
    t1 = [0.5, 1.0, 2.0]
    _assert_within(_against_onepass(LOGISTIC, data, 1.0, 1.0, t1, 32.0, 8), t1, 32.0)


def test_mixture_sgd_within_one_epoch_without_replacement_is_one_pass_sgd():
    """Shuffled epochs visit no sample twice in the first epoch: SGD there is one-pass SGD at any
    ``delta`` (here 4, up to half an epoch), so ``onepass.solve`` with no allowance: 3 SE."""
    data = D.binary_mixture("zero_one", d=300, mean_norm=1.5)
    t1 = [0.5, 1.0, 2.0]
    _assert_within(_against_onepass(LOGISTIC, data, 1.0, 1.0, t1, 4.0, 8, sampling="without_replacement"), t1,
                   np.inf)


@pytest.mark.slow
@pytest.mark.parametrize("spectrum", ["identity", "zero_one", "power_law"])
def test_mixture_sgd_at_large_delta_is_the_onepass_ode_large_d(spectrum):
    data = D.binary_mixture(spectrum, d=800, mean_norm=1.5)
    t1 = [0.5, 1.0, 2.0, 4.0]
    _assert_within(_against_onepass(LOGISTIC, data, 1.0, 1.0, t1, 48.0, 16), t1, 48.0)


def test_sgd_with_step_decay_at_large_delta_is_the_onepass_ode_with_it():
    """``StepDecay(2, 0.25, 0.5/delta)`` in multi-pass time is ``StepDecay(2, 0.25, 0.5)`` in
    one-pass time: logistic on the zero-one mixture within 3 SE (plus the reuse bias) of
    ``onepass.solve`` with it, and more than 5 SE away from the constant rate 2 (the schedule
    matters at these times)."""
    delta = 32.0
    data = D.binary_mixture("zero_one", d=300, mean_norm=1.5)
    t1 = [0.75, 1.5]
    res = _against_onepass(LOGISTIC, data, S.StepDecay(2.0, 0.25, 0.5 / delta), S.StepDecay(2.0, 0.25, 0.5), t1,
                           delta, 8)
    _assert_within(res, t1, delta)
    const = onepass.solve(LOGISTIC, data, lr=2.0, times=t1, progress=False)
    mean, se, _ = res["norm"]
    z_const = (mean[:, 0] - const.norm.values[:, 0, 0]) / se[:, 0]
    assert np.all(np.abs(z_const) > 5), z_const


# ---------------------------------------------------------------- gradient flow: a time change
def _cumulative_rate(schedule, times):
    """``int_0^t lr(s) ds`` by scipy quadrature, split at the schedule's jumps."""
    jumps = schedule.jumps(max(times)) if isinstance(schedule, S.StepDecay) else []
    return np.array([integrate.quad(lambda s: schedule(s, 0.0), 0.0, t, points=[j for j in jumps if j < t] or None,
                                    limit=200, epsabs=1e-13, epsrel=1e-13)[0] for t in times])


@pytest.mark.parametrize("schedule", [S.StepDecay(2.0, 0.5, 0.4), S.Cosine(2.0, 1.5, 0.2)], ids=["step", "cosine"])
def test_gf_with_a_schedule_is_constant_gf_in_rescaled_time(schedule):
    """``d theta/dt = -lr(t) grad R`` is ``d theta/ds = -c grad R`` at ``s = int_0^t lr / c``: the
    schedule's run at ``t`` equals the constant-rate run (``c = 2``, adaptive) at ``s(t)`` on the
    same data (Huber-on-tanh with ridge, a nonlinear flow). Adaptive: each run's global error
    against RK4 at ``dt = 0.002`` was at most 4e-7 relative (4 rtol); allowed 2e-6. RK4 at
    ``dt = 0.01``: 1.5 times its Richardson error estimate ``(16/15) |x(dt) - x(dt/2)|`` (order 4)
    more; an error of order 1 (a stage with the wrong rate) is twice its estimate ``|x(dt) - x(dt/2)|``."""
    model = models.huber_tanh()
    times = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 2.0])
    kw = dict(d=200, delta=2.0, n_seeds=2, seed=4, ridge=0.1, n_test=500, init_std=0.5, progress=False)
    rescaled = _cumulative_rate(schedule, times) / 2.0
    const = dmft.simulate(model, dynamics="gf", lr=2.0, times=rescaled, **kw)
    runs = {dt: dmft.simulate(model, dynamics="gf", lr=schedule, times=times, dt=dt, check_dt=False, **kw)
            for dt in (None, 0.01, 0.005)}
    for var in ("norm", "overlap", "train_loss", "test_loss"):
        c = np.ravel(const[var].values)
        v = {dt: np.ravel(ds[var].values) for dt, ds in runs.items()}
        scale = np.abs(c).max()
        adaptive = np.abs(v[None] - c).max() / scale
        assert adaptive < 2e-6, (var, adaptive)
        rk4 = np.abs(v[0.01] - c) / scale
        allowed = 1.5 * (16 / 15) * np.abs(v[0.01] - v[0.005]) / scale + 2e-6
        assert np.all(rk4 <= allowed), (var, rk4, allowed)
    assert runs[None].attrs["lr"] == repr(schedule)


def test_sme_with_a_schedule_is_sgd_with_it():
    """Squared loss with ridge 0.3, ``StepDecay(1, 0.5, 0.5)``: SME's drift, noise and ridge with
    ``lr(t)`` against SGD's per-step rates and ridge factors on the same data sets (paired,
    d = 300, 8 seeds) within 4 SE + 0.003 (the measured SGD-SME gap of the constant rate,
    docs/simulate.md); SGD at the constant rate 1 is more than 5 SE away."""
    kw = dict(d=300, delta=2.0, times=[0.5, 1.0, 1.5], n_seeds=8, seed=6, ridge=0.3, progress=False, check_dt=False)
    sched = S.StepDecay(1.0, 0.5, 0.5)
    sgd = dmft.simulate(LIN, dynamics="sgd", lr=sched, **kw)
    sme = dmft.simulate(LIN, dynamics="sme", lr=sched, **kw)
    const = dmft.simulate(LIN, dynamics="sgd", lr=1.0, **kw)
    for var in ("test_loss", "norm"):
        diff = (sme[var] - sgd[var]).values.reshape(8, 3, -1)
        se = diff.std(0, ddof=1) / math.sqrt(8)
        assert np.all(np.abs(diff.mean(0)) < 4 * se + 0.003), (var, diff.mean(0), se)
    off = (const.norm - sgd.norm).values.reshape(8, 3)[:, 1:]
    assert np.all(np.abs(off.mean(0)) > 5 * off.std(0, ddof=1) / math.sqrt(8)), off.mean(0)
