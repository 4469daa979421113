"""With ``dmft._config.PARALLEL`` the replicas run on numba's threads (issue 24): the sample
side (``sample_cell_poisson``, ``sample_cell_dense``), the factor rows (``chol_rows``) and the parameter side's products
(``row_products``) loop over independent replicas in ``prange``, each replica's sums in the
order of its paths, so the numbers do not depend on the threads: bit-identical to the serial
kernels (the default) and to one thread."""
import numba
import numpy as np
import pytest

import dmft
from dmft import models
from dmft import _config

CASES = {
    "sgd-huber": (models.huber_tanh(), dict(dynamics="sgd")),
    "gf-huber": (models.huber_tanh(), dict(dynamics="gf")),
    "sme-relu": (models.relu(1), dict(dynamics="sme", kink_extrapolate=False)),  # the kink smoothing
}
OUT = ("test_loss", "train_loss", "norm", "overlap", "correlation", "response", "test_loss_sem")


def _solve(name):
    model, kw = CASES[name]
    return dmft.solve(model, lr=1.0, t_max=1.0, n_time=3, n_paths=512, seed=7, progress=False, check_dt=False,
                      **kw)


def _same(a, b):
    for var in OUT:
        np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)


# slow: the parallel kernels are compiled in every process (not disk-cached), and on a loaded
# machine the threads' per-step regions take minutes
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_two_threads_give_the_numbers_of_one(name, monkeypatch):
    monkeypatch.setattr(_config, "PARALLEL", True)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _solve(name)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _solve(name)
    finally:
        numba.set_num_threads(threads)
    _same(one, two)


@pytest.mark.slow
def test_parallel_kernels_equal_the_serial_ones(monkeypatch):
    # the serial kernels are the same sources compiled without parallel (prange is range)
    serial = {name: _solve(name) for name in ("sgd-huber", "gf-huber", "sme-relu")}
    monkeypatch.setattr(_config, "PARALLEL", True)
    for name, ds in serial.items():
        _same(ds, _solve(name))
