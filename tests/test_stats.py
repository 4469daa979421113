"""The one standard-error definition (``dmft._stats``) against scipy's."""
import numpy as np
import xarray as xr
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from dmft import _stats

FINITE = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 9), st.integers(2, 4)), elements=FINITE), st.integers(0, 1))
def test_sem_is_scipys(x, axis):
    np.testing.assert_allclose(_stats.sem(x, axis), stats.sem(x, axis=axis, ddof=1), rtol=1e-9, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(3, 9), st.integers(1, 4)), elements=FINITE))
def test_nansem_is_the_sem_of_the_finite_draws(x):
    x = x.copy()
    x[0, :] = np.nan  # one draw missing in every column
    np.testing.assert_allclose(_stats.nansem(x), stats.sem(x[1:], axis=0, ddof=1), rtol=1e-9, atol=1e-9)


def test_sem_over_a_dimension_is_sem_along_its_axis():
    x = np.random.default_rng(0).standard_normal((5, 7))
    da = xr.DataArray(x, dims=("seed", "time"))
    np.testing.assert_allclose(_stats.sem_over(da, "seed").values, stats.sem(x, axis=0, ddof=1), rtol=1e-12)
