"""Anisotropic teacher-student data in the multi-pass simulators and DMFT (docs/dmft_anisotropic.md).

Independent numbers: the Marchenko-Pastur integral (the closed form at ``K = I``), exact
finite-``d`` linear algebra (eigendecomposition of ``X^T X``), the held-out losses of
``dmft.simulate`` (they do not go through the theory's Gaussian integrals), and the
isotropic solver. Statistical tolerances are ``4 x`` the combined standard error plus a
stated finite-``d`` allowance.
"""
import json
import math

import numpy as np
import pytest

import dmft
from dmft import errors, models
from onepass import data as D

import reference_multipass as ref

LIN = models.linear_regression(noise_std=0.5)


def power_law(d, alpha=1.5, beta=-0.5):
    """``lam_i ∝ (i/d)^alpha`` with ``Tr K/d = 1`` and teacher ``x*_i^2 ∝ (i/d)^beta``, ``|x*| = 1``:
    most teacher power on the small eigenvalues."""
    u = np.arange(1, d + 1) / d
    lam = u**alpha / np.mean(u**alpha)
    xs = u ** (beta / 2)
    return D.gaussian_mixture(np.zeros((1, d)), [lam], teacher=(xs / np.linalg.norm(xs))[None, :], name="power_law")


def per_coordinate(data):
    """``(p, lam, rho)`` of the exact per-coordinate groups in the multi-pass units."""
    d = data.d
    return np.full(d, 1 / d), data.eigenvalues[0], d * data.teacher[0] ** 2


def exact_gf_error(lam, theta_star, delta, lr, noise_var, times, rng):
    """``(theta - theta*)^T K (theta - theta*)/d + sigma^2`` of GF from 0 on one data set,
    averaged over the label noise exactly: eigendecomposition of ``X^T X``."""
    d = lam.size
    X = rng.standard_normal((int(round(delta * d)), d)) * np.sqrt(lam / d)
    h, V = np.linalg.eigh(X.T @ X)
    h = np.maximum(h, 0.0)
    KV = V.T @ (lam[:, None] * V)
    a = V.T @ theta_star
    out = []
    for t in times:
        f = np.exp(-lr * t * h)
        var = np.where(h > 1e-12, (1 - f) ** 2 / np.where(h > 1e-12, h, 1.0), 0.0)
        out.append((f * a) @ KV @ (f * a) / d + noise_var * np.sum(np.diag(KV) * var) / d + noise_var)
    return np.array(out)


# ---------------------------------------------------------------- closed form
def test_closed_form_at_identity_is_marchenko_pastur():
    """``K = I``: the two-resolvent formula must reduce to the resolvent identity, i.e. to the
    Marchenko-Pastur integral (scipy quad to 1e-13); the contour rule converges geometrically."""
    times = [0.0, 0.5, 1.0, 2.0, 5.0, 20.0]
    cf, half = ref.anisotropic_gf([1.0], [1.0], [1.0], delta=2.0, lr=0.5, noise_var=0.25, times=times)
    mp = [1.25] + [ref.marchenko_pastur_gf(2.0, 0.25, 0.5, t) for t in times[1:]]
    np.testing.assert_allclose(cf, mp, rtol=1e-10)
    assert np.abs(cf - half).max() < 1e-10


def test_closed_form_matches_exact_linear_algebra():
    """A two-level spectrum at ``delta = 0.5`` (an atom of ``X^T X`` at zero) and ``2``: the
    closed form against GF on 6 data sets of ``d = 400`` in exact arithmetic. Seed spread
    of the error ~1% of it at this ``d``; finite-``d`` allowance ``2/d``."""
    d = 400
    u = np.arange(1, d + 1) / d
    lam = np.where(u <= 0.5, 0.4, 1.6)
    theta = np.where(u <= 0.5, 1.5, 0.5)
    times = [0.5, 1.0, 3.0]
    for delta in (0.5, 2.0):
        cf, half = ref.anisotropic_gf([0.5, 0.5], [0.4, 1.6], [2.25, 0.25], delta=delta, lr=0.5, noise_var=0.25,
                                      times=times)
        assert np.abs(cf - half).max() < 1e-6
        rng = np.random.default_rng(7)
        ex = np.array([exact_gf_error(lam, theta, delta, 0.5, 0.25, times, rng) for _ in range(6)])
        sem = ex.std(0, ddof=1) / math.sqrt(len(ex))
        assert np.all(np.abs(ex.mean(0) - cf) < 4 * sem + 2.0 / d), (delta, ex.mean(0), cf, sem)


@pytest.mark.slow
def test_closed_form_matches_exact_linear_algebra_large_d():
    """Power law (``alpha = 1.5``, teacher ``beta = -0.5``), ``d = 2000``, 32 data sets: the
    closed form within 3 SE (about 0.1% relative) of exact finite-``d`` gradient flow."""
    data = power_law(2000)
    p, lam, rho = per_coordinate(data)
    times = [0.5, 1.0, 2.0, 5.0]
    cf, half = ref.anisotropic_gf(p, lam, rho, delta=2.0, lr=0.5, noise_var=0.25, times=times)
    assert np.abs(cf - half).max() < 1e-4 * cf.min()
    rng = np.random.default_rng(1)
    ex = np.array([exact_gf_error(lam, np.sqrt(rho), 2.0, 0.5, 0.25, times, rng) for _ in range(32)])
    sem = ex.std(0, ddof=1) / math.sqrt(len(ex))
    assert np.all(np.abs(ex.mean(0) - cf) < 3 * sem + 1.0 / 2000), (ex.mean(0), cf, sem)


# ---------------------------------------------------------------- simulators
def test_simulate_inputs_have_the_data_covariance():
    """At ``theta = 0`` the held-out squared loss is ``(Var r* + sigma^2)/2`` with
    ``Var r* = sum_i lam_i x*_i^2``: checks the column scaling and the teacher's units."""
    data = power_law(300)
    ds = dmft.simulate(LIN, dynamics="gf", lr=0.5, times=[0.0], n_seeds=2, n_test=20000, data=data, progress=False)
    expected = 0.5 * (float(np.sum(data.eigenvalues[0] * data.teacher[0] ** 2)) + 0.25)
    z = (ds.test_loss.values[:, 0] - expected) / ds.test_loss_sem.values[:, 0]
    assert np.abs(z).max() < 4, (ds.test_loss.values, expected)
    assert ds.attrs["d"] == 300 and ds.attrs["data"] == "power_law"
    np.testing.assert_allclose(json.loads(ds.attrs["rho"]), 1.0, rtol=1e-12)  # theta*^T theta*/d = |x*|^2


def _simulated_vs_closed_form(d, n_seeds, times):
    data = power_law(d)
    ds = dmft.simulate(LIN, dynamics="gf", lr=0.5, times=times, n_seeds=n_seeds, seed=2, data=data, progress=False)
    err = 2 * ds.test_loss.values
    cf, _ = ref.anisotropic_gf(*per_coordinate(data), delta=2.0, lr=0.5, noise_var=0.25, times=times)
    mean, sem = err.mean(0), err.std(0, ddof=1) / math.sqrt(n_seeds)
    return mean, sem, cf


def test_simulate_gf_matches_closed_form():
    """Power-law data, ``d = 400``, 8 seeds: the held-out error within 4 SE + 2/d of the closed form."""
    mean, sem, cf = _simulated_vs_closed_form(400, 8, [0.5, 1.0, 2.0])
    assert np.all(np.abs(mean - cf) < 4 * sem + 2.0 / 400), (mean, cf, sem)


@pytest.mark.slow
def test_simulate_gf_matches_closed_form_large_d():
    mean, sem, cf = _simulated_vs_closed_form(2000, 16, [0.5, 1.0, 2.0, 4.0])
    assert np.all(np.abs(mean - cf) < 3 * sem + 1.0 / 2000), (mean, cf, sem)


def test_simulate_bad_data_names_the_argument():
    with pytest.raises(errors.ParameterError, match="data="):
        dmft.simulate(LIN, data="power_law", progress=False)
    with pytest.raises(errors.ParameterError, match="data="):
        dmft.simulate("logistic", data=D.binary_mixture(d=50), progress=False)
    with pytest.raises(errors.ParameterError, match="k_star"):
        dmft.simulate(models.linear_regression(0.5, 2), data=power_law(50), progress=False)
    with pytest.raises(errors.ParameterError, match="d=100"):
        dmft.simulate(LIN, data=power_law(50), d=100, progress=False)
