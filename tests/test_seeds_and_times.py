"""Seeds: a ``numpy.random.Generator`` stands for the integer ``int(rng.integers(2**63))``
drawn from it, wherever a seed is taken; integers keep their streams. ``onepass.compare``
takes ``times=``."""
import numpy as np
import pytest

import dmft
import onepass
from dmft import errors, expectation, models
from dmft.multipass import linear_sgd_moments

LIN = models.linear_regression(0.5)
TEACHER = onepass.data.teacher_student("identity", d=40)
FEW = dict(t_max=0.4, n_time=3)

#: every routine that takes a seed, on a tiny problem -> its random output
_SEEDED = {
    "dmft.solve": lambda seed: dmft.solve(LIN, dynamics="sgd", lr=0.5, n_paths=32, progress=False, seed=seed,
                                          **FEW).test_loss,
    "dmft.simulate": lambda seed: dmft.simulate(LIN, dynamics="sgd", lr=0.5, d=20, n_seeds=2, progress=False,
                                                seed=seed, **FEW).test_loss,
    "dmft.compare": lambda seed: dmft.compare(LIN, dynamics="gf", lr=0.5, d=20, n_seeds=2, n_paths=32,
                                              progress=False, seed=seed, **FEW).test_loss,
    "dmft.sweep": lambda seed: dmft.sweep(dmft.simulate, {"lr": [0.5]}, fixed=dict(
        model=LIN, dynamics="sgd", d=20, n_seeds=1, **FEW), seed=seed, progress=False).test_loss,
    "linear_sgd_moments": lambda seed: linear_sgd_moments(delta=2.0, lr=0.5, batch=1.0, d=20, n_seeds=2,
                                                          seed=seed, progress=False, **FEW).test_loss,
    "onepass.simulate": lambda seed: onepass.simulate(LIN, TEACHER, n_seeds=2, n_test=20, progress=False,
                                                      seed=seed, **FEW).risk,
    "onepass.compare": lambda seed: onepass.compare(LIN, TEACHER, n_seeds=2, n_test=20, progress=False,
                                                    seed=seed, **FEW).risk,
    "onepass.data.teacher_student": lambda seed: onepass.data.teacher_student("identity", d=20, k_star=2,
                                                                              seed=seed).teacher,
    "onepass.data.multiclass_mixture": lambda seed: onepass.data.multiclass_mixture(3, d=20, seed=seed).means,
    "expectation.QuasiMonteCarlo": lambda seed: expectation.gaussian_moments(
        LIN, np.zeros(2), np.eye(2), rule=expectation.QuasiMonteCarlo(64, seed=seed)).loss,
}


def _drawn(entropy: int) -> int:
    """The integer a fresh ``default_rng(entropy)`` stands for (numpy's own draw)."""
    return int(np.random.default_rng(entropy).integers(2**63))


@pytest.mark.parametrize("name", list(_SEEDED))
def test_a_generator_is_the_integer_drawn_from_it(name):
    run = _SEEDED[name]
    from_generator = np.asarray(run(np.random.default_rng(7)))
    from_integer = np.asarray(run(_drawn(7)))
    np.testing.assert_array_equal(from_generator, from_integer)
    # the Generator advances (numpy's convention): a second call gets other numbers
    rng = np.random.default_rng(7)
    first, second = np.asarray(run(rng)), np.asarray(run(rng))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("name", ["dmft.simulate", "onepass.simulate"])
def test_an_integer_keeps_its_stream(name):
    # an integer s is SeedSequence(s), as before Generators were accepted
    run = _SEEDED[name]
    np.testing.assert_array_equal(np.asarray(run(3)), np.asarray(run(np.random.SeedSequence(3))))


def test_the_drawn_integer_is_recorded():
    ds = dmft.simulate(LIN, dynamics="gf", lr=0.5, d=20, n_seeds=1, progress=False, seed=np.random.default_rng(7),
                       **FEW)
    assert ds.attrs["seed"] == _drawn(7)
    grid = dmft.sweep(dmft.simulate, {"lr": [0.5]}, fixed=dict(model=LIN, dynamics="gf", d=20, n_seeds=1, **FEW),
                      seed=np.random.default_rng(7), progress=False)
    assert grid.attrs["sweep_seed"] == _drawn(7)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seeds_name_the_argument(seed):
    with pytest.raises(errors.ParameterError, match="seed=.*Generator"):
        errors.seed_value(seed)


def test_onepass_compare_takes_times():
    # the same runs on two grids: the ODE's steps do not depend on the output times (its
    # values there are interpolated within rtol = 1e-7); SGD's class and noise draws are
    # taken in blocks that end at output times, so only its start (the same held-out set
    # and initial state) is comparable across grids
    d = TEACHER.d
    times = np.array([0.0, 2 / d, 20 / d, 80 / d])  # whole steps
    grid = np.linspace(0.0, 80 / d, 41)              # contains them (every 2 steps)
    common = dict(n_seeds=2, n_test=50, seed=4, progress=False, sources=("theory", "simulation"))
    on_times = onepass.compare(LIN, TEACHER, times=times, **common)
    on_grid = onepass.compare(LIN, TEACHER, t_max=grid[-1], n_time=grid.size, **common).sel(time=times,
                                                                                         method="nearest")
    np.testing.assert_array_equal(on_times.time, times)
    np.testing.assert_allclose(on_times.risk.sel(source="theory"), on_grid.risk.sel(source="theory"), rtol=1e-6)
    simulated = on_times.risk.sel(source="simulation")
    assert np.isfinite(simulated).all() and simulated[0] == on_grid.risk.sel(source="simulation")[0]
