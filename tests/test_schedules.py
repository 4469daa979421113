"""Learning-rate schedules (dmft.schedules, the same module as onepass.schedules): their values
at known points (analytic), their argument checks, and the entry points that take or refuse
them. The simulators' dynamics under a schedule are checked in tests/test_simulate_mixtures.py."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import dmft
import onepass
from dmft import errors, models, output, schedules as S
from dmft import data as D

#: no shrinking: keeps the fast suite's worst case bounded (failing examples are still printed)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                phases=[Phase.explicit, Phase.reuse, Phase.generate])
SLOW_EXAMPLES = settings(FAST, max_examples=6)
LIN = models.linear_regression(0.5)

rates_ = st.floats(1e-3, 1e3)
fractions = st.floats(1e-3, 1.0)
spans = st.floats(1e-3, 1e3)
units = st.floats(0.0, 0.999)


# ---------------------------------------------------------------- values
@FAST
@given(lr=rates_, factor=fractions, every=spans, j=st.integers(0, 40), u=units)
def test_step_decay_is_lr_factor_to_the_number_of_drops(lr, factor, every, j, u):
    """``lr factor^j`` on ``[j every, (j + 1) every)``, at the jump itself included."""
    s = S.StepDecay(lr, factor, every)
    expected = lr * factor**j
    for t in (j * every, (j + u) * every):
        assert s(t, 0.0) == pytest.approx(expected, rel=1e-12, abs=0.0)
        assert s.rates(np.array([t]))[0] == pytest.approx(expected, rel=1e-12, abs=0.0)
    assert np.all(s.rates(np.linspace(0.0, 50 * every, 101)) > 0)


@FAST
@given(lr=rates_, factor=fractions, every=spans, periods=st.floats(1e-3, 100.0))
def test_step_decay_jumps_are_where_the_rate_changes(lr, factor, every, periods):
    s = S.StepDecay(lr, factor, every)
    t_end = periods * every
    jumps = s.jumps(t_end)
    assert np.all((jumps > 0) & (jumps < t_end))
    np.testing.assert_allclose(jumps, every * np.arange(1, jumps.size + 1), rtol=1e-12)
    before, after = s.rates(jumps - 1e-6 * every), s.rates(jumps)
    np.testing.assert_allclose(after, factor * before, rtol=1e-12)  # the rate drops there
    assert jumps.size == max(0, math.ceil(t_end / every * (1 - 1e-12)) - 1)


@FAST
@given(lr=rates_, frac_min=st.floats(0.0, 1.0), t_max=spans, u=st.floats(0.0, 3.0))
def test_cosine_at_known_points(lr, frac_min, t_max, u):
    """``lr`` at 0, the midpoint ``(lr + lr_min)/2``, ``lr_min + 3/4 (lr - lr_min)`` at ``t_max/3``,
    ``lr_min`` from ``t_max`` on; between, non-increasing and in ``[lr_min, lr]``."""
    lr_min = frac_min * lr
    c = S.Cosine(lr, t_max, lr_min)
    tol = dict(rel=1e-12, abs=1e-12 * lr)
    assert c(0.0, 0.0) == pytest.approx(lr, **tol)
    assert c(t_max / 2, 0.0) == pytest.approx((lr + lr_min) / 2, **tol)
    assert c(t_max / 3, 0.0) == pytest.approx(lr_min + 0.75 * (lr - lr_min), **tol)
    assert c(t_max * (1 + u), 0.0) == pytest.approx(lr_min, **tol)
    g = c.rates(np.linspace(0.0, 2 * t_max, 201))
    assert np.all(np.diff(g) <= 1e-12 * lr) and np.all(g >= lr_min - 1e-12 * lr) and np.all(g <= lr * (1 + 1e-12))
    assert np.all(c.rates(np.linspace(0.0, t_max, 101)[:-1]) > 0)  # positive before t_max, even at lr_min = 0


@FAST
@given(lr=rates_, t=st.lists(st.floats(0.0, 1e3), min_size=1, max_size=5))
def test_constant_and_time_dependent_rates_are_positive_and_pointwise(lr, t):
    t = np.asarray(t)
    np.testing.assert_array_equal(S.Constant(lr).rates(t), lr)
    f = S.TimeDependent(lambda s: lr / (1.0 + s))
    np.testing.assert_allclose(f.rates(t), lr / (1.0 + t), rtol=1e-15)
    assert np.all(f.rates(t) > 0)


# ---------------------------------------------------------------- bad input
bad_numbers = st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, "0.5", None, True, [1.0]])


@FAST
@given(bad=bad_numbers)
def test_bad_schedule_arguments_are_refused_by_name(bad):
    for build, name in ((lambda v: S.StepDecay(lr=v), "lr"), (lambda v: S.StepDecay(factor=v), "factor"),
                        (lambda v: S.StepDecay(every=v), "every"), (lambda v: S.Cosine(lr=v), "lr"),
                        (lambda v: S.Cosine(t_max=v), "t_max"), (lambda v: S.Constant(v), "lr")):
        with pytest.raises(errors.ParameterError, match=f"^{name}="):
            build(bad)


def test_out_of_range_schedule_arguments_are_refused_by_name():
    with pytest.raises(errors.ParameterError, match=r"^factor=1.5 is not allowed: factor must be in \(0, 1\]"):
        S.StepDecay(1.0, 1.5, 1.0)
    with pytest.raises(errors.ParameterError, match="^lr_min=2.0 is not allowed"):
        S.Cosine(1.0, 1.0, 2.0)
    with pytest.raises(errors.ParameterError, match="^lr_min=-0.1 is not allowed"):
        S.Cosine(1.0, 1.0, -0.1)


@pytest.mark.parametrize("lr, match", [
    (S.AdaGradNorm(), r"lr=AdaGradNorm\(lr=1.0, b0=1.0\) is not allowed: .*onepass"),
    (-1.0, "^lr=-1.0 is not allowed"), (math.nan, "^lr=nan is not allowed"), ("fast", "^lr='fast' is not allowed"),
    (lambda t: 1.0 - t, r"^lr\(t=1\)=0.0 is not allowed"),  # TimeDependent refuses a rate that reaches 0
    (S.TimeDependent(lambda t: math.inf), r"^lr\(t=0\)=inf is not allowed"),
])
def test_simulate_refuses_bad_rates_before_any_work(lr, match):
    with pytest.raises(errors.ParameterError, match=match):
        dmft.simulate(LIN, lr=lr, d=10_000_000, t_max=1.0, progress=False)  # d would take hours


def test_the_dmft_refuses_adagrad_norm_and_unlabelled_mixtures_by_name():
    """The DMFT takes schedules of time but not AdaGradNorm (no accumulated gradient norm), and
    hard-label mixtures only with a model that has labels for their classes (the ReLU unit has
    none); ``dmft.solve`` and ``dmft.compare`` say so before any work."""
    with pytest.raises(errors.ParameterError, match=r"^lr=AdaGradNorm.*AdaGradNorm is for onepass"):
        dmft.compare(LIN, lr=S.AdaGradNorm(), progress=False)
    with pytest.raises(errors.ParameterError, match=r"^lr=AdaGradNorm.*AdaGradNorm is for onepass"):
        dmft.solve(LIN, lr=S.AdaGradNorm(), progress=False)
    with pytest.raises(errors.ParameterError, match="^data='binary_Identity' is not allowed: it has hard labels"):
        dmft.compare("relu", data=D.binary_mixture(d=50), progress=False)
    with pytest.raises(errors.ParameterError, match="^data='binary_Identity' is not allowed: it has hard labels"):
        dmft.solve("relu", data=D.binary_mixture(d=50), progress=False)


# ---------------------------------------------------------------- entry points
@SLOW_EXAMPLES
@given(x=st.floats(0.2, 1.5), dynamics=st.sampled_from(["sgd", "sme", "gf"]), ridge=st.sampled_from([0.0, 0.3]))
def test_simulate_constant_schedule_is_the_number(x, dynamics, ridge):
    """``lr=Constant(x)`` and ``lr=x``: the same numbers on the same seed (SGD, SME, GF)."""
    kw = dict(dynamics=dynamics, d=30, t_max=0.5, n_time=3, n_seeds=1, seed=2, ridge=ridge, n_test=50,
              progress=False, check_dt=False)
    a = dmft.simulate(LIN, lr=S.Constant(x), **kw)
    b = dmft.simulate(LIN, lr=x, **kw)
    for v in ("train_loss", "test_loss", "norm", "overlap"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert a.attrs["lr"] == b.attrs["lr"] == x


def test_schedule_attrs_survive_the_netcdf_round_trip(tmp_path):
    ds = dmft.simulate("logistic", data=D.binary_mixture(d=40), lr=S.Cosine(1.0, 0.5), dynamics="gf", t_max=0.5,
                       n_time=3, n_seeds=1, n_test=50, progress=False)
    assert ds.attrs["lr"] == "Cosine(lr=1.0, t_max=0.5, lr_min=0.0)"
    back = output.load(output.save(ds, tmp_path / "x.nc"))
    import xarray as xr
    xr.testing.assert_identical(ds, back)


def test_onepass_exports_the_new_schedules():
    assert onepass.schedules is S and onepass.StepDecay is S.StepDecay and onepass.Cosine is S.Cosine
    assert set(S.__all__) >= {"Constant", "TimeDependent", "StepDecay", "Cosine", "AdaGradNorm"}


def _least_squares_distance(times, gamma, sigma2=0.25):
    """Closed form of one-pass SGD's ``D^2 = |X - X*|^2`` (squared loss, ``K = I``, ``X0 = 0``,
    ``|X*| = 1``; docs/onepass.md) under a piecewise-constant rate ``gamma(t)``: on a piece of
    rate ``g``, ``D^2 -> D_inf + (D^2 - D_inf) exp(-g (2 - g) dt)``, ``D_inf = g sigma^2 / (2 - g)``."""
    out, D2, now = [], 1.0, 0.0
    for t in times:
        while now < t:
            nxt = min(t, gamma.every * (math.floor(now / gamma.every + 1e-12) + 1))
            g = gamma(now, 0.0)
            d_inf = g * sigma2 / (2 - g)
            D2 = d_inf + (D2 - d_inf) * math.exp(-g * (2 - g) * (nxt - now))
            now = nxt
        out.append(D2)
    return np.array(out)


def test_onepass_solve_with_step_decay_is_the_piecewise_closed_form():
    """``onepass`` takes the new schedules: its ODE under ``StepDecay(1.5, 0.5, 0.7)`` against the
    piecewise closed form (three pieces, rates 1.5, 0.75, 0.375), and its ``lr`` output. The ODE's
    error at ``d = 200`` single-coordinate groups is its rtol's (measured 1e-9 relative)."""
    sched = S.StepDecay(1.5, 0.5, 0.7)
    times = np.array([0.3, 0.7, 1.0, 1.4, 2.0])
    ds = onepass.solve(LIN, D.teacher_student(d=200), lr=sched, times=times, progress=False)
    np.testing.assert_allclose(ds.distance.values, _least_squares_distance(times, sched), rtol=1e-6)
    np.testing.assert_allclose(ds.lr.values, [1.5, 0.75, 0.75, 0.375, 0.375], rtol=1e-15)
    cos = onepass.solve(LIN, D.teacher_student(d=200), lr=S.Cosine(1.0, 2.0, 0.1), times=[1.0, 3.0],
                        progress=False)
    np.testing.assert_allclose(cos.lr.values, [0.55, 0.1], rtol=1e-12)


def test_onepass_simulate_reports_the_rate_at_the_output_times():
    """One-pass SGD's step ``j`` has the rate at ``t = j/d``; its ``lr`` output is the rate at
    each output time (a jump included), as ``onepass.solve``'s."""
    sched = S.StepDecay(1.0, 0.5, 0.5)
    sim = onepass.simulate(LIN, D.teacher_student(d=100), lr=sched, times=[0.0, 0.25, 0.5, 1.0], n_seeds=1,
                           n_test=100, progress=False)
    np.testing.assert_allclose(sim.lr.values[0], [1.0, 1.0, 0.5, 0.25], rtol=1e-15)
