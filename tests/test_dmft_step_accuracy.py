"""The SME and GF grids at their default step against exact squared-loss moments (issue 19).

The reference (tests/reference_squared_loss.py) is the ``d -> infinity`` limit of the
exact second moments of SME on the squared loss, a closed linear equation integrated
exactly on Gauss nodes of the Marchenko-Pastur law; gradient flow is its noise-free case
(the Marchenko-Pastur closed form). Its errors: the quadrature (48 -> 64 nodes: below
1e-13 here) and the closure, tested against the exact finite-``d`` moments of
:func:`dmft.multipass._simulate.linear_sgd_moments` (Poisson-clock SGD and SME have the same first
and second moments on the squared loss: the same generator acts on quadratics).
"""
import numpy as np
import pytest

import dmft
from dmft import errors, models

from reference_squared_loss import moments, moments_on_data

NOISE_VAR = 0.25
SQ = models.linear_regression(noise_std=NOISE_VAR ** 0.5)
#: quadrature and expm error of the reference (48 -> 64 nodes changes it by < 1e-13)
QUAD_ERR = 1e-10
#: standard errors of the solver: the spread of its 8 replicas, so ``z`` is Student-t with
#: 7 degrees of freedom; at 4 a false alarm has probability 5e-3 per comparison
Z = 4.0
EARLY = np.array([0.04, 0.08, 0.2, 0.4, 0.6, 1.0])
VARIABLES = ("norm", "overlap", "test_loss", "train_loss")


def test_reference_converges_and_has_the_known_limits():
    kw = dict(delta=0.5, lr=0.5, noise_var=NOISE_VAR)
    for dynamics in ("sme", "gf"):
        a, b = moments(EARLY, dynamics=dynamics, **kw), moments(EARLY, dynamics=dynamics, n_nodes=64, **kw)
        for v in VARIABLES:
            np.testing.assert_allclose(a[v], b[v], rtol=0, atol=1e-12)
    # gradient flow at delta = 2: the Marchenko-Pastur values of docs/dmft_theory.md, section 7
    # (2 x test loss, tabulated to 1e-6)
    gf = moments([0.5, 1.0, 2.0, 5.0], delta=2.0, lr=0.5, noise_var=NOISE_VAR, dynamics="gf")
    np.testing.assert_allclose(2 * gf["test_loss"], [0.718905, 0.557932, 0.460761, 0.434460], atol=2e-6)
    # SME for t -> 0: the noise alone moves q, at the rate kappa delta E[y^2] = (lr^2/batch) delta (1 + sigma^2);
    # the training loss starts at E[y^2]/2
    t = 1e-5
    sme = moments([0.0, t], **kw)
    assert sme["norm"][1] / t == pytest.approx(0.25 * 0.5 * (1 + NOISE_VAR), rel=1e-4)
    assert sme["train_loss"][0] == pytest.approx((1 + NOISE_VAR) / 2, abs=1e-12)


@pytest.mark.parametrize("dynamics", ["sme", "gf"])
@pytest.mark.parametrize("delta", [0.5, 1.0])
def test_default_grid_matches_exact_moments_at_early_times(dynamics, delta):
    """The defaults (dt = 0.04, 8192 paths) right after the zero start, where ``q`` is small
    and a first-order grid's relative error is largest: every output within ``Z`` of its own
    standard error of the exact value (there is no grid allowance). The former scheme (first
    order for SME, an O(dt) error at the first step for GF) was 45 SE off in the SME ``norm``
    and 21 SE in the GF ``norm`` at t = 0.04 (delta = 0.5)."""
    ds = dmft.solve(SQ, delta=delta, lr=0.5, dynamics=dynamics, times=EARLY, seed=0, progress=False)
    assert ds.attrs["dt"] == pytest.approx(0.04)
    ref = moments(EARLY, delta=delta, lr=0.5, noise_var=NOISE_VAR, dynamics=dynamics)
    for v in VARIABLES:
        x, se = np.ravel(ds[v].values), np.ravel(ds[v + "_sem"].values)
        bad = np.abs(x - ref[v]) > Z * se + QUAD_ERR
        assert not bad.any(), (v, EARLY[bad], x[bad], ref[v][bad], se[bad])


@pytest.mark.slow
def test_slow_reference_closure_matches_exact_finite_d_moments():
    """The closure of the reference (diagonals of functions of ``G`` concentrate) against the
    exact SME second moments at finite ``d`` on the same data sets: the relative difference
    of ``norm`` falls like ``1/d`` (measured +1.5%, +0.4%, +0.1% at t = 0.2 and d = 100, 200,
    400; the data sets' own spread cancels in the pairs)."""
    from dmft.multipass import _simulate as simulate
    times, d, n_sets = [0.2, 0.4, 1.0], 200, 8
    exact = simulate.linear_sgd_moments(SQ, delta=0.5, lr=0.5, d=d, n_seeds=n_sets, seed=5, times=times,
                                        progress=False).norm.values[:, :, 0, 0]
    closure = []
    for child in errors.seed_sequence(5).spawn(n_sets):  # the data sets of linear_sgd_moments
        X, Y, _, _ = simulate._dataset(SQ, d // 2, d, 0.0, np.random.default_rng(child.spawn(2)[0]))
        closure.append(moments_on_data(times, X, Y[:, 0], lr=0.5))
    rel = (exact - np.array(closure)) / np.array(closure)
    mean, se = rel.mean(0), rel.std(0, ddof=1) / np.sqrt(n_sets)
    # allowance: the O(1/d) closure error at d = 200 (0.4% measured)
    assert np.all(np.abs(mean) <= Z * se + 0.01), (mean, se)


@pytest.mark.parametrize("dynamics, lr, dt", [("sme", 0.5, 0.04), ("sme", 2.0, 0.02), ("gf", 4.0, 0.01),
                                              ("sgd", 2.0, 0.02)])
def test_default_step_of_the_dense_drivers_shrinks_with_lr(dynamics, lr, dt):
    """SME and GF take ``dt = 0.04 / max(1, lr)``: their grid error is second order in
    ``lr dt`` (Huber-on-tanh at ``lr = 2``: ``norm`` +1.1..1.4% off at ``dt = 0.04``, +0.1..0.4%
    at 0.02); SGD's events sit at their exact times and keep 0.02."""
    ds = dmft.solve(SQ, lr=lr, dynamics=dynamics, t_max=0.16, n_time=2, n_paths=64, check_dt=False, progress=False)
    assert ds.attrs["dt"] == pytest.approx(dt)
