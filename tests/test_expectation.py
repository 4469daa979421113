"""The Gaussian-expectation engine against independent integrals, for every built-in model.

References never call :mod:`dmft.expectation`: closed forms (bivariate-normal identities),
scipy quadrature, and plain Monte Carlo (Huber's label noise integrated in closed form
first). Tolerances: 1e-7 where the reference is a closed form, 4 standard errors (plus the
stated accuracy) against Monte Carlo.
"""
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from dmft import expectation as E
from dmft import models

PHI0 = 1 / math.sqrt(2 * math.pi)
COVS = {
    "correlated": np.array([[0.9368, 0.6764], [0.6764, 1.0]]),  # the issue's (q, m, rho)
    "weak": np.array([[0.3, -0.1], [-0.1, 1.2]]),
    "large": np.array([[2.5, 1.4], [1.4, 1.0]]),
}
MEANS = {"centred": np.zeros(2), "shifted": np.array([0.4, -0.3])}


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return special.expit(x)


def quad_r(f, mu, var):
    """``E f(r)``, ``r ~ N(mu, var)`` by adaptive quadrature."""
    sd = math.sqrt(var)
    return integrate.quad(lambda z: stats.norm.pdf(z) * f(mu + sd * z), -12, 12, epsabs=1e-13, epsrel=1e-12,
                          limit=200)[0]


# ---------------------------------------------------------------- logistic, sign teacher
def logistic_reference(mean, cov, s):
    """Loss, grad, hess, hess_star, fisher of ``softplus(r) - y r``, ``y = 1[zeta > 0]``,
    ``zeta = r* + s eps``: ``(r, zeta)`` is bivariate normal, so the label terms are
    closed forms or 1-d integrals of ``r`` against ``P(zeta > 0 | r)``."""
    mr, mz = mean
    vr, c, vz = cov[0, 0], cov[0, 1], cov[1, 1] + s * s
    sz = math.sqrt(vz)
    a = mz / sz
    p1 = stats.norm.cdf(a)
    E_ry = mr * p1 + c / sz * stats.norm.pdf(a)  # E[r 1(zeta > 0)]
    cond_sd = math.sqrt(max(vz - c * c / vr, 0.0))

    def p_pos(r):  # P(zeta > 0 | r)
        m = mz + c / vr * (r - mr)
        return stats.norm.cdf(m / cond_sd) if cond_sd > 0 else float(m > 0)

    loss = quad_r(softplus, mr, vr) - E_ry
    grad = quad_r(sigmoid, mr, vr) - p1
    hess = quad_r(lambda r: sigmoid(r) * (1 - sigmoid(r)), mr, vr)
    fisher = quad_r(lambda r: sigmoid(r) ** 2 - 2 * sigmoid(r) * p_pos(r), mr, vr) + p1
    # Price: E d2l/dr dr* = dE l/dCov(r, r*) = -dE[r y]/dc at fixed means and variances
    hess_star = -stats.norm.pdf(a) / sz
    return loss, grad, hess, hess_star, fisher


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("cov_name", list(COVS))
@pytest.mark.parametrize("mean_name", list(MEANS))
def test_logistic_sign_teacher_against_closed_forms(noise, cov_name, mean_name):
    """The sign teacher's jump is integrated piecewise: every moment to 1e-7 (the default
    rule), where a tensor grid across the jump was 11% off on the loss."""
    mean, cov = MEANS[mean_name], COVS[cov_name]
    got = E.gaussian_moments(models.logistic(noise), mean, cov)
    loss, grad, hess, hess_star, fisher = logistic_reference(mean, cov, noise)
    np.testing.assert_allclose(
        [got.loss, got.grad[0], got.hess[0, 0], got.hess_star[0, 0], got.fisher[0, 0]],
        [loss, grad, hess, hess_star, fisher], rtol=1e-7, atol=1e-9)


def test_issue_case_logistic_loss():
    """The reported case: 0.5297 (2-d adaptive quadrature), not the old 0.588."""
    got = E.gaussian_moments(models.logistic(), np.zeros(2), COVS["correlated"]).loss
    assert got == pytest.approx(0.5296539053331363, rel=1e-9)


# ---------------------------------------------------------------- phase retrieval
def abs_product_mean(v1, v2, c):
    """``E |x||y|`` for a centred bivariate normal (closed form)."""
    s = math.sqrt(v1 * v2)
    rho = np.clip(c / s, -1, 1)
    return 2 / math.pi * s * (math.sqrt(1 - rho * rho) + rho * math.asin(rho))


@pytest.mark.parametrize("noise", [0.0, 0.2])
@pytest.mark.parametrize("cov_name", list(COVS))
def test_phase_retrieval_against_closed_form(noise, cov_name):
    """``E (|r| - |r*| - s eps)^2 = q + rho + s^2 - 2 E|r||r*|``; the Stein Hessian
    ``E l'' = 2 - 4 E[|r*| delta(r)]`` (the Dirac term) = ``2 - 4 E[|r*| | r = 0] p(0)``."""
    cov = COVS[cov_name]
    got = E.gaussian_moments(models.phase_retrieval(noise), np.zeros(2), cov)
    q, m, rho = cov[0, 0], cov[0, 1], cov[1, 1]
    loss = q + rho + noise**2 - 2 * abs_product_mean(q, rho, m)
    cond_var = rho - m * m / q  # r* | r = 0 is N(0, cond_var)
    hess = 2 - 4 * math.sqrt(2 * cond_var / math.pi) * stats.norm.pdf(0, scale=math.sqrt(q))
    assert got.loss == pytest.approx(loss, rel=1e-7)
    assert got.grad[0] == pytest.approx(0.0, abs=1e-9)
    assert got.hess[0, 0] == pytest.approx(hess, rel=1e-6)


# ---------------------------------------------------------------- Huber on tanh
def huber_noise_average(a, s, h):
    """``E huber_h(a - s eps)``, ``eps ~ N(0, 1)``, in closed form (truncated-normal moments)."""
    if s == 0:
        return np.where(np.abs(a) <= h, 0.5 * a * a, h * (np.abs(a) - 0.5 * h))
    al, be = (-h - a) / s, (h - a) / s
    Pa, Pb, pa, pb = stats.norm.cdf(al), stats.norm.cdf(be), stats.norm.pdf(al), stats.norm.pdf(be)
    inner = 0.5 * (a * a * (Pb - Pa) + 2 * a * s * (pa - pb) + s * s * ((Pb - Pa) + al * pa - be * pb))
    upper = h * ((a - 0.5 * h) * (1 - Pb) + s * pb)
    lower = h * ((-a - 0.5 * h) * Pa + s * pa)
    return inner + upper + lower


@pytest.mark.parametrize("k", [1, 2])
def test_huber_tanh_loss_against_monte_carlo(k):
    """Label noise integrated in closed form, ``(r, r*)`` by 2^22 Monte Carlo samples
    (SE 7-8e-5, 4e-4 relative) at a wide covariance (variances to 2.3). Huber's kink is a
    curved surface the engine cannot split along; measured: 1.3 SE (k = 1, trapezoid) and
    1.7 SE (k = 2, quasi-Monte Carlo) from the reference. A tensor Gauss-Hermite grid was
    0.3% and 0.9% off here (tanh's complex poles)."""
    model = models.huber_tanh(noise_std=0.3, threshold=0.5, k=k)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2 * k, 2 * k))
    cov = A @ A.T / (2 * k) + 0.3 * np.eye(2 * k)
    Z = rng.standard_normal((1 << 22, 2 * k)) @ np.linalg.cholesky(cov).T
    per = huber_noise_average(np.tanh(Z[:, :k]).mean(1) - np.tanh(Z[:, k:]).mean(1), 0.3, 0.5)
    ref, se = per.mean(), per.std() / math.sqrt(len(per))
    got = E.gaussian_moments(model, np.zeros(2 * k), cov, error=True)
    assert abs(got.loss - ref) <= got.error + 4 * se, (got.loss, ref, se, got.error)


def test_huber_tanh_default_regime_within_1e4():
    """Where the validated runs live (``q <= 0.5``): the default rule is within 1e-4
    relative of a 2^22-sample Monte Carlo of the noise-averaged integrand (4 SE, 3e-4)."""
    model = models.huber_tanh()
    cov = np.array([[0.4, 0.3], [0.3, 1.0]])
    rng = np.random.default_rng(8)
    Z = rng.standard_normal((1 << 22, 2)) @ np.linalg.cholesky(cov).T
    per = huber_noise_average(np.tanh(Z[:, 0]) - np.tanh(Z[:, 1]), 0.3, 0.5)
    ref, se = per.mean(), per.std() / math.sqrt(len(per))
    got = E.gaussian_moments(model, np.zeros(2), cov, error=True)
    assert abs(got.loss - ref) < 4 * se + 1e-4 * ref, (got.loss, ref, se)
    assert got.error < 1e-4 * ref


# ---------------------------------------------------------------- softmax, soft teacher
def test_softmax_soft_teacher_against_monte_carlo():
    """Six integration dimensions (quasi-Monte Carlo default): within 4 SE of 2^22 plain
    Monte Carlo samples (SE 2.3e-4, 2e-4 relative)."""
    C = 3
    model = models.softmax_cross_entropy(C)
    rng = np.random.default_rng(5)
    A = rng.standard_normal((2 * C, 2 * C))
    cov = A @ A.T / (2 * C) + 0.2 * np.eye(2 * C)
    Z = rng.standard_normal((1 << 22, 2 * C)) @ np.linalg.cholesky(cov).T
    r, rs = Z[:, :C], Z[:, C:]
    y = special.softmax(rs, axis=1)
    per = special.logsumexp(r, axis=1) - (y * r).sum(1)
    ref, se = per.mean(), per.std() / math.sqrt(len(per))
    got = E.gaussian_moments(model, np.zeros(2 * C), cov)
    assert abs(got.loss - ref) < 4 * se, (got.loss, ref, se)


# ---------------------------------------------------------------- linear regression
@pytest.mark.parametrize("k", [1, 2])
def test_linear_regression_closed_form_and_quadrature_against_formula(k):
    """``E |r - r* - s eps|^2 / 2 = tr(q - m - m^T + rho)/2 + k s^2/2``: the closed form and
    the quadrature rule (exact for this polynomial) both equal it."""
    model = models.linear_regression(noise_std=0.4, k=k)
    rng = np.random.default_rng(1)
    A = rng.standard_normal((2 * k, 2 * k))
    cov = A @ A.T / (2 * k)
    q, m, rho = cov[:k, :k], cov[:k, k:], cov[k:, k:]
    expected = 0.5 * np.trace(q - m - m.T + rho) + 0.5 * k * 0.16
    for rule in (None, E.GaussHermite()):
        assert E.gaussian_moments(model, np.zeros(2 * k), cov, rule=rule).loss == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- the split rule itself
def test_kink_planes_move_the_nodes_smoothly():
    """Moments are smooth in the covariance across the sign teacher's jump: a central
    second difference of the loss in ``m`` is O(h^2)-consistent (no kink from node jumps)."""
    model = models.logistic()
    h = 1e-3

    def L(m):
        return E.gaussian_moments(model, np.zeros(2), np.array([[1.0, m], [m, 1.0]])).loss

    m0 = 0.3
    d2 = (L(m0 + h) - 2 * L(m0) + L(m0 - h)) / h**2
    # closed form: L = E softplus(r) - m phi(0) is linear in m, so d2 = 0
    assert abs(d2) < 1e-4


def test_bad_kinks_are_named():
    import dataclasses

    bad = dataclasses.replace(models.logistic(), kinks=lambda p: [[0.0, 1.0]])
    with pytest.raises(Exception, match="kinks"):
        E.gaussian_moments(bad, np.zeros(2), np.eye(2))


# ---------------------------------------------------------------- Dirac parts of l''
def test_gradient_jump_finds_dirac_hessians():
    """Phase retrieval's ``l' = 2(|r| - y) sign r`` jumps by ``4|y|`` at ``r = 0``; the sign
    teacher (a jump in the label, not in ``r``) and Huber (C1) give no jump."""
    assert models.phase_retrieval().gradient_jump() > 0.1
    assert models.logistic().gradient_jump() == 0.0
    assert models.huber_tanh().gradient_jump() == 0.0


def test_solve_warns_when_the_response_misses_a_dirac_part():
    import dmft
    from dmft import errors

    with pytest.warns(errors.DiracResponseWarning):
        ds = dmft.solve(models.phase_retrieval(), dynamics="gf", lr=0.5, t_max=0.2, n_time=3, n_paths=64,
                        init_std=0.5, progress=False)
    assert ds.attrs["gradient_jump_at_kinks"] > 0.1


# ---------------------------------------------------------------- error estimates in outputs
def _sign_logistic(kinks):
    def loss(r, y):
        return max(r[0], 0.0) + math.log1p(math.exp(-abs(r[0]))) - y[0] * r[0]

    def teacher(r_star, eps):
        return np.array([1.0 if r_star[0] > 0 else 0.0])

    return models.custom(loss, teacher=teacher, kinks=kinks, name="sign_logistic")


def test_onepass_risk_carries_its_quadrature_error_and_warns_on_undeclared_jumps():
    """The declared jump gives an error estimate below 1e-9; the same model without its
    kink (a tensor grid across the jump) warns, with an estimate above 1e-4 of the risk."""
    import onepass
    from dmft import errors

    data = onepass.data.teacher_student(d=200)
    kw = dict(lr=0.5, t_max=2.0, n_time=3)
    good = onepass.solve(_sign_logistic([[0.0, 1.0, 0.0]]), data, **kw)
    assert good.attrs["risk_quadrature_error"] < 1e-9
    with pytest.warns(errors.QuadratureWarning):
        bad = onepass.solve(_sign_logistic(None), data, **kw)
    assert bad.attrs["risk_quadrature_error"] > 1e-4 * float(bad.risk.max())


def test_multipass_logistic_sign_teacher_theory_against_held_out_simulation():
    """GF on logistic with a sign teacher (delta = 2, lr = 1): the DMFT test loss (the engine,
    split at the teacher's jump) against the held-out test loss of d = 1000 simulations, at
    every output time within 4 combined SE (measured at t <= 4: |z| <= 1.2 with 8 seeds).
    The engine's own accuracy on this model is pinned by the closed-form tests above."""
    import dmft

    kw = dict(delta=2.0, lr=1.0, t_max=2.0, n_time=5, progress=False)
    th = dmft.solve("logistic", dynamics="gf", n_paths=4096, **kw)
    sim = dmft.simulate("logistic", dynamics="gf", d=1000, n_seeds=4, seed=3, **kw)
    mean = sim.test_loss.mean("seed").values
    se = np.sqrt(th.test_loss_sem.values ** 2 + sim.test_loss.var("seed", ddof=1).values / 4)
    se[0] = max(se[0], 1e-12)
    assert np.all(np.abs(th.test_loss.values - mean)[1:] < 4 * se[1:]), (th.test_loss.values, mean, se)
    assert abs(th.test_loss.values[0] - math.log(2)) < 1e-9  # zero start: E softplus(0) - E[0 * y]
