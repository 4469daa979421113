"""``dmft.testing.assert_agree``, the theory-vs-simulation harness of the validation tests:
its ratios against the standard errors computed here with numpy, its tolerance at the
boundary, its failure messages, and the inputs it refuses."""
import numpy as np
import pytest
import xarray as xr

from dmft import testing

TIME = [0.0, 0.5, 1.0]


def _theory(values, sem):
    return xr.Dataset({"risk": ("time", np.asarray(values, float)), "risk_sem": ("time", np.asarray(sem, float))},
                      coords={"time": TIME})


def _simulation(seeds):
    return xr.Dataset({"risk": (("seed", "time"), np.asarray(seeds, float))}, coords={"time": TIME})


def test_ratios_are_the_differences_over_the_combined_standard_errors():
    rng = np.random.default_rng(0)
    seeds = 1.0 + 0.1 * rng.standard_normal((5, 3))
    th = _theory([1.01, 0.98, 1.0], [0.0, 0.02, 0.03])
    z = testing.assert_agree(th, _simulation(seeds), variables="risk")
    mean, sem = seeds.mean(0), seeds.std(0, ddof=1) / np.sqrt(5)
    expected = np.abs(th.risk.values - mean) / np.hypot(th.risk_sem.values, sem)
    assert z == {"risk": pytest.approx(expected.max(), rel=1e-12)}


def test_tolerance_is_z_max_standard_errors_plus_allowances():
    # simulation mean 1.0 with SE 0.01 (two seeds 0.99, 1.01), theory SE 0: tolerance at
    # t = 1 is 4 * 0.01 + rtol * 1.0 + atol
    seeds = [[0.0, 0.5, 0.99], [0.0, 0.5, 1.01]]
    sim = _simulation(seeds)
    testing.assert_agree(_theory([0.0, 0.5, 1.0485], [0, 0, 0]), sim, variables="risk", rtol=0.005, atol=0.004)
    with pytest.raises(AssertionError):
        testing.assert_agree(_theory([0.0, 0.5, 1.0495], [0, 0, 0]), sim, variables="risk", rtol=0.005, atol=0.004)
    testing.assert_agree(_theory([0.0, 0.5, 1.06], [0, 0, 0]), sim, variables="risk", rtol={"risk": 0.03})
    testing.assert_agree(_theory([0.0, 0.5, 1.03], [0, 0, 0]), sim, variables="risk", z_max=3.5)
    with pytest.raises(AssertionError):
        testing.assert_agree(_theory([0.0, 0.5, 1.03], [0, 0, 0]), sim, variables="risk", z_max=2.5)


def test_failure_names_the_worst_entry_with_its_numbers():
    th = xr.Dataset({"norm": (("time", "group"), [[1.0, 2.0], [1.5, 2.9]])},
                    coords={"time": [0.0, 1.0], "group": ["I00", "I11"]})
    sim = xr.Dataset({"norm": (("group", "time", "seed"), [[[1.0, 1.0], [1.49, 1.51]], [[2.0, 2.0], [2.49, 2.51]]])},
                     coords={"time": [0.0, 1.0], "group": ["I00", "I11"]}).transpose("seed", "time", "group")
    with pytest.raises(AssertionError) as e:
        testing.assert_agree(th, sim, variables=["norm"], rtol=0.01)
    message = str(e.value)
    assert "norm at time=1, group=I11: theory 2.9 +- 0, simulation 2.5 +- 0.01" in message
    assert "40.00 SE" in message and "1 of 4 entries" in message


def test_an_unknown_standard_error_or_a_non_finite_value_fails():
    one_seed = _simulation([[0.0, 0.5, 1.0]])
    with pytest.raises(AssertionError, match="one seed"):
        testing.assert_agree(_theory([0.0, 0.5, 1.0], [0, 0.1, 0.1]), one_seed, variables="risk")
    with pytest.raises(AssertionError):
        testing.assert_agree(_theory([0.0, np.nan, 1.0], [0, 0.1, 0.1]), _simulation([[0, 0.5, 1], [0, 0.5, 1]]),
                             variables="risk", atol=1.0)


def test_exact_references_and_output_times():
    exact = xr.Dataset({"risk": ("time", [0.0, 0.5, 1.0])}, coords={"time": TIME})  # no SE: a closed form
    assert testing.assert_agree(exact, exact, variables="risk") == {"risk": 0.0}
    with pytest.raises(AssertionError, match="inf SE"):
        testing.assert_agree(exact + 1e-6, exact, variables="risk")
    # two exact values computed two ways agree to round-off, whatever their zero SEs
    assert testing.assert_agree(exact * (1 + 3e-16), exact, variables="risk") == {"risk": 0.0}
    th = _theory([9.0, 0.5, 1.0], [0.0, 0.1, 0.1])  # off at t = 0 only
    assert testing.assert_agree(th, exact, variables="risk", times=[0.45, 1.1]) == {"risk": 0.0}
    with pytest.raises(ValueError, match="different output times"):
        testing.assert_agree(th, exact.assign_coords(time=[0.0, 0.5, 2.0]), variables="risk")
    with pytest.raises(ValueError, match="simulation has no \\[.test_loss.\\]"):
        testing.assert_agree(exact.rename(risk="test_loss"), exact, variables=["test_loss"])
