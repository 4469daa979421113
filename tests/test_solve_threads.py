"""``dmft.solve`` integrates its replicas in parts, each on its own thread
(``dmft._config.SOLVE_THREADS``, issue 24). The replicas are independent until their
statistics are combined, so the numbers must be those of one thread bit for bit, whatever the
split (odd replica counts, a mixture's class blocks, spectral groups, schedules, ``k = 2``);
an end in one part (a blow-up, an exception) must end the solve as the one-thread solve ends,
leave no thread behind, and warnings come once, pointing at the caller."""
import threading
import time
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmft
from dmft import _config, errors, models
from dmft.multipass import _solve

HUBER = models.huber_tanh(noise_std=0.3, threshold=0.5)
LIN = models.linear_regression(0.5)
SMALL = dict(delta=2.0, lr=1.0, t_max=1.0, n_time=5, n_paths=512, progress=False)

CASES = {
    "sgd": lambda: dmft.solve(HUBER, dynamics="sgd", seed=1, **SMALL),
    "sme": lambda: dmft.solve(HUBER, dynamics="sme", seed=2, **SMALL),  # with its step check
    "gf, 7 replicas": lambda: dmft.solve(HUBER, dynamics="gf", seed=3, n_replicas=7, **{**SMALL, "n_paths": 448}),
    "sgd, schedule": lambda: dmft.solve(HUBER, dynamics="sgd", seed=4, **{
        **SMALL, "lr": dmft.schedules.StepDecay(1.0, 0.5, 0.5)}),
    "gf, k = 2": lambda: dmft.solve(models.committee("tanh", 2), dynamics="gf", seed=5, init_std=1.0,
                                    **{**SMALL, "lr": 0.7}),
    "sgd, power law": lambda: dmft.solve(LIN, dynamics="sgd", seed=6, data=dmft.data.teacher_student(
        "power_law", d=100), groups=dmft.data.Binned(4), **SMALL),
    "sgd, mixture": lambda: dmft.solve("logistic", dynamics="sgd", seed=7, data=dmft.data.binary_mixture(
        "zero_one", d=100), **SMALL),
    "sme, relu kinks": lambda: dmft.solve(models.relu(1), dynamics="sme", seed=8, kink_extrapolate=False,
                                          check_dt=False, **SMALL),
    "gf, relu boundary terms": lambda: dmft.solve(models.relu(1), dynamics="gf", seed=9, kink_response="boundary",
                                                  init_std=1.0, check_dt=False, **SMALL),
    "sgd, mc": lambda: dmft.solve(HUBER, dynamics="sgd", seed=11, sampling="mc", **SMALL),
    "gf, 7 replicas, no step check": lambda: dmft.solve(HUBER, dynamics="gf", seed=3, n_replicas=7, check_dt=False,
                                                        **{**SMALL, "n_paths": 448}),
    "sme, phase retrieval signed noise": lambda: dmft.solve(
        models.phase_retrieval(), dynamics="sme", seed=10, kink_response="signed_noise", kink_extrapolate=False,
        init_std=1.0, check_dt=False, **{**SMALL, "lr": 0.2}),
}


def _with_threads(threads, call):
    saved = _config.SOLVE_THREADS
    _config.SOLVE_THREADS = threads
    try:
        return call()
    finally:
        _config.SOLVE_THREADS = saved


def _assert_same(a, b):
    assert set(a.data_vars) == set(b.data_vars)
    for var in a.data_vars:
        np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)
    for key, value in a.attrs.items():
        if key != "runtime_s":
            np.testing.assert_array_equal(value, b.attrs[key], err_msg=key)


def _part_threads():
    return [t for t in threading.enumerate() if t.name.startswith("dmft.solve part")]


@pytest.mark.parametrize("name", list(CASES))
def test_two_threads_give_the_numbers_of_one(name):
    one = _with_threads(1, CASES[name])
    two = _with_threads(2, CASES[name])
    _assert_same(one, two)
    assert not _part_threads()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_replicas=st.integers(2, 9), threads=st.integers(2, 4), dynamics=st.sampled_from(["sgd", "gf"]),
       seed=st.integers(0, 2**16))
def test_any_split_of_the_replicas_gives_the_same_numbers(n_replicas, threads, dynamics, seed):
    kw = dict(dynamics=dynamics, seed=seed, n_replicas=n_replicas, check_dt=False,
              **{**SMALL, "n_paths": 32 * n_replicas, "n_time": 3})
    with mock.patch.object(_solve, "STREAM_BLOCK", 48):  # SGD's event blocks cut across the parts
        one = _with_threads(1, lambda: dmft.solve(HUBER, **kw))
        many = _with_threads(threads, lambda: dmft.solve(HUBER, **kw))
    _assert_same(one, many)


@pytest.mark.parametrize("name", ["sgd", "sgd, mc", "sgd, schedule", "gf, 7 replicas, no step check",
                                  "sgd, power law", "sme, relu kinks"])
def test_parts_that_draw_their_own_inputs_give_the_numbers_of_one_draw_for_all(monkeypatch, name):
    """A solve whose inputs serve no other solve (no kink companion, no step check) lets each
    part draw its paths' inputs and events when it starts (``_draws_in_parts``), SGD's events
    and ``'mc'`` normals in blocks of paths that here (``STREAM_BLOCK = 100``, 64 paths per
    replica) cut across the replicas and the parts: the numbers of one draw for all paths."""
    monkeypatch.setattr(_solve, "STREAM_BLOCK", 100)
    calls, random_inputs = [], _solve._random_inputs

    def spy(run, grid, seeds, threads, replicas=None):
        calls.append(replicas)
        return random_inputs(run, grid, seeds, threads, replicas)

    monkeypatch.setattr(_solve, "_random_inputs", spy)
    parts = _with_threads(2, CASES[name])
    assert len(calls) == 2 and None not in calls, calls  # each of the two parts drew its own
    calls.clear()
    monkeypatch.setattr(_solve, "_draws_in_parts", lambda run: False)
    whole = _with_threads(2, CASES[name])
    assert calls == [None]
    _assert_same(parts, whole)


def _nan_gradient_model():
    """Squared loss whose gradient is NaN for |r| >= 0.3 (tests/test_divergence.py)."""
    return models.custom(lambda r, y: 0.5 * (r[0] - y[0]) ** 2 if abs(r[0]) < 0.3 else np.nan,
                         grad=lambda r, y: (r - y) if abs(r[0]) < 0.3 else np.full(1, np.nan),
                         hess=lambda r, y: np.ones((1, 1)), teacher=lambda rs, eps: rs.copy(), name="nan_gradient")


@pytest.mark.parametrize("case", ["learning_rate", "model gf", "model sgd", "truncate"])
def test_a_blow_up_ends_the_solve_as_with_one_thread(case):
    if case.startswith("model"):  # the cause is read from every part's fields and gradients at the step
        call = lambda: dmft.solve(_nan_gradient_model(), dynamics=case[6:], lr=0.5, t_max=0.4, dt=0.1,  # noqa
                                  n_time=5, n_paths=256, n_replicas=4, progress=False)
    else:  # SGD at the per-sample step 8: a revisited sample's residual grows by 7 per visit
        truncate = case == "truncate"  # the output times before the blow-up, solved again
        call = lambda: dmft.solve(LIN, lr=8.0, t_max=20.0, dt=0.1, n_time=201 if truncate else 11,  # noqa: E731
                                  n_paths=256, n_replicas=4, progress=False,
                                  on_divergence="truncate" if truncate else "raise")
    found = {}
    for threads in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                found[threads] = _with_threads(threads, call)
            except errors.DivergenceError as e:
                found[threads] = (str(e), e.time, e.cause)
        assert not _part_threads()
    if case == "truncate":
        _assert_same(found[1], found[2])
        assert found[2].attrs["truncated"] == 1
    else:
        assert found[1] == found[2]
        # SGD's NaN gradients reach the kernels before the blow-up step, whose fields are no
        # longer moderate: one thread calls it 'learning_rate' too
        assert found[1][2] == {"model sgd": "learning_rate"}.get(case, case.split()[0])


def test_the_calling_thread_runs_the_first_part_however_late_it_gets_there(monkeypatch):
    """The calling thread takes its part before a helper starts: were it to take one only after
    starting them, a helper could take every part first on a loaded machine (the test below
    would find the calling thread had run no step). A pause after each helper's start stands in
    for that load."""
    ran, work = {}, _solve._work

    class Late(threading.Thread):
        def start(self):
            super().start()
            if self.name.startswith("dmft.solve part"):
                time.sleep(0.5)

    def recorded(run, part, team):
        ran[part.replicas.start] = threading.current_thread() is threading.main_thread()
        return work(run, part, team)

    monkeypatch.setattr(_solve.threading, "Thread", Late)
    monkeypatch.setattr(_solve, "_work", recorded)
    _with_threads(2, CASES["sgd"])
    assert ran == {0: True, 4: False}  # 8 replicas in two parts


def test_an_exception_in_one_part_stops_the_others_and_is_raised(monkeypatch):
    step, reached, raised = _solve._step, [], threading.Event()

    def failing(n, run, grid, state, side):
        if threading.current_thread() is threading.main_thread():
            reached.append(n)
            if n == 4:  # the parts do not wait for each other: let the second one get to its step 3
                raised.wait(30)
                time.sleep(0.05)
        elif n == 3:  # the second part, on its own thread
            raised.set()
            raise ArithmeticError("in the second part")
        return step(n, run, grid, state, side)

    monkeypatch.setattr(_solve, "_step", failing)
    with pytest.raises(ArithmeticError, match="second part"):
        _with_threads(2, lambda: dmft.solve(HUBER, dynamics="gf", seed=1, check_dt=False, **{
            **SMALL, "t_max": 4.0, "dt": 0.02}))
    assert not _part_threads()
    # the first part stopped at its next step once the second had ended, not at step 200
    assert max(reached) <= 5


def test_an_earlier_blow_up_in_the_other_part_comes_before_an_exception(monkeypatch):
    step = _solve._step

    def failing(n, run, grid, state, side):  # the first part raises at step 5, the second blows up at 2
        if threading.current_thread() is threading.main_thread() and n == 5:
            raise ArithmeticError("too late")
        out = step(n, run, grid, state, side)
        if threading.current_thread() is not threading.main_thread() and n == 2:
            state.C[:] = np.inf
        return out

    monkeypatch.setattr(_solve, "_step", failing)
    with pytest.raises(errors.DivergenceError) as info:
        _with_threads(2, lambda: dmft.solve(HUBER, dynamics="sgd", seed=1, check_dt=False, **SMALL))
    assert info.value.time < 3 * SMALL["t_max"] / 26  # step 2 of 26
    assert not _part_threads()


def test_warnings_come_once_and_point_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a step too coarse for the learning rate: warned by the plan, before the parts start
        _with_threads(2, lambda: dmft.solve(HUBER, dynamics="sgd", seed=1, dt=0.25, check_dt=False, **{
            **SMALL, "lr": 2.0}))
    ours = [w for w in caught if issubclass(w.category, errors.UnresolvedTimeStepWarning)]
    assert len(ours) == 1 and ours[0].filename == __file__


def test_the_progress_bar_follows_the_parts(monkeypatch):
    shown = []

    class Bar:
        def update(self, n):
            shown.append(n)

        def close(self):
            pass

    monkeypatch.setattr(_solve, "progress_bar", lambda *a, **kw: Bar())
    ds = _with_threads(2, lambda: dmft.solve(HUBER, dynamics="gf", seed=1, check_dt=False, **SMALL))
    assert sum(shown) == ds.attrs["n_steps"] and min(shown) > 0


def test_threads_per_solve(monkeypatch):
    run = _solve._checked(dict(model=HUBER, delta=2.0, lr=1.0, batch=None, dynamics="gf", t_max=1.0, dt=None,
                               n_time=3, times=None, n_paths=64, n_replicas=3, tangent_stride=None, ridge=0.0,
                               init_std=0.0, corrector=None, sampling="qmc", seed=0, progress=False,
                               max_memory_gb=4.0, check_dt=False, on_divergence="raise", max_runtime_s=None,
                               kink_bandwidth=0.1, kink_extrapolate=True, kink_response="smoothed", data=None,
                               groups="auto", driver=None,
                               time_grid=None))
    assert _with_threads(8, lambda: _solve._solve_threads(run, None)) == min(3, _solve._cores())
    assert _with_threads(2, lambda: _solve._solve_threads(run, object())) == 1  # beside a kink companion
    assert _with_threads(1, lambda: _solve._solve_threads(run, None)) == 1
    monkeypatch.setattr(_config, "PARALLEL", True)  # numba's parallel kernels: not from two threads at once
    assert _with_threads(2, lambda: _solve._solve_threads(run, None)) == 1


def test_on_threads_raises_a_chunks_exception_after_all_chunks_ended():
    ended = []

    def work(chunk):
        ended.append(chunk)
        if 3 in chunk:
            raise KeyError("second chunk")

    with pytest.raises(KeyError, match="second chunk"):
        _solve._on_threads(work, range(4), 2)
    assert sorted(c.start for c in ended) == [0, 2]


def _blas_threads():
    import threadpoolctl

    return {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}


def test_blas_is_on_one_thread_while_the_parts_run_and_restored_after(monkeypatch):
    before = _blas_threads()
    if not before:
        pytest.skip("threadpoolctl finds no BLAS in this process")
    seen, step = [], _solve._step

    def spy(n, *args):
        seen.append(_blas_threads())
        return step(n, *args)

    monkeypatch.setattr(_solve, "_step", spy)
    _with_threads(2, lambda: dmft.solve(HUBER, dynamics="gf", seed=1, check_dt=False, **SMALL))
    assert all(s == {1} for s in seen) and _blas_threads() == before


def test_on_threads_runs_blas_on_one_thread_and_restores_it():
    before = _blas_threads()
    if not before:
        pytest.skip("threadpoolctl finds no BLAS in this process")
    seen = []
    _solve._on_threads(lambda chunk: seen.append(_blas_threads()), range(4), 2)
    assert seen == [{1}, {1}] and _blas_threads() == before


def test_beside_returns_the_value_or_raises_the_exception_of_its_thread():
    assert _solve._Beside(lambda a, b: (a + b, threading.get_ident()), 1, 2).result()[0] == 3
    assert _solve._Beside(threading.get_ident).result() != threading.get_ident()

    def fail():
        raise ValueError("drawn beside")

    with pytest.raises(ValueError, match="drawn beside"):
        _solve._Beside(fail).result()


IN_TURN = {
    "sgd": (HUBER, dict(dynamics="sgd", seed=5, **{**SMALL, "t_max": 16.0, "n_paths": 2048})),
    "gf, 7 replicas": (HUBER, dict(dynamics="gf", seed=3, check_dt=False, n_replicas=7, **{**SMALL, "n_paths": 448})),
    "sgd, power law": (LIN, dict(dynamics="sgd", seed=6, data=dmft.data.teacher_student("power_law", d=100),
                                 groups=dmft.data.Binned(4), **SMALL)),
    "sgd, mixture": ("logistic", dict(dynamics="sgd", seed=7, data=dmft.data.binary_mixture("zero_one", d=100),
                                      **SMALL)),
    "sme, relu kinks": (models.relu(1), dict(dynamics="sme", seed=8, check_dt=False, **SMALL)),
}


@pytest.mark.parametrize("name", IN_TURN)
def test_a_solve_above_the_memory_limit_runs_its_replicas_in_turn(monkeypatch, name):
    """Past ``max_memory_gb``, parts of the replicas run in turn (at most one per thread at a
    time), their paths' workspace freed between them: the numbers of the parts side by side,
    the estimate within the limit; refused when even one replica at a time is above it. With a
    kink companion (``relu``) the parts take turns on one thread."""
    model, kw = IN_TURN[name]
    free = _with_threads(2, lambda: dmft.solve(model, **kw))
    limit = free.attrs["memory_gb"] - 1e-6  # 1 kB below: less than any part's paths use
    running, most, work = [0], [0], _solve._work

    def spy(run, part, team):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            return work(run, part, team)
        finally:
            running[0] -= 1

    monkeypatch.setattr(_solve, "_work", spy)
    parts, split = [], _solve._split

    def recorded(*args):
        new = split(*args)
        parts.extend(new)
        return new

    monkeypatch.setattr(_solve, "_split", recorded)
    turn = _with_threads(2, lambda: dmft.solve(model, max_memory_gb=limit, **kw))
    assert turn.attrs["memory_gb"] <= limit and most[0] <= 2 and all(p.side is None for p in parts)
    assert all(p.rnd is None for p in parts if p.draw is not None)  # drawn by the part, freed after it
    assert len(parts) > (4 if name == "sme, relu kinks" else 2)  # and the kink companion's parts
    for v in free.data_vars:
        np.testing.assert_array_equal(turn[v].values, free[v].values)
    with pytest.raises(errors.ParameterError, match=r"parts in turn > max_memory_gb="):
        dmft.solve(model, max_memory_gb=0.3 * limit, **kw)


@settings(max_examples=60, deadline=None)
@given(units=st.integers(1, 16), threads=st.integers(1, 4), fixed=st.floats(0, 10), own=st.floats(0.1, 10),
       limit=st.floats(0, 25))
def test_parts_in_turn_are_the_fewest_that_fit(units, threads, fixed, own, limit):
    grid = type("G", (), {"B": units, "split": 1})()
    estimate = lambda at_once=1.0: (fixed + own * at_once, "paths")  # noqa: E731
    parts, mem = _solve._parts_in_turn(grid, threads, limit, estimate)

    def need(p):
        return estimate(min(threads, p) * -(-units // p) / units)[0]

    if units <= threads:
        assert parts == 0 and mem == fixed + own
    else:
        assert threads < parts <= units and mem == need(parts)
        assert mem <= limit or parts == units
        assert all(need(p) > limit for p in range(threads + 1, parts))
