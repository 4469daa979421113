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
from dmft import models, testing

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


@pytest.mark.parametrize("corr", [0.9, 0.99, 0.999])
def test_phase_retrieval_aligned_student(corr):
    """A student aligned with its teacher (the end of phase retrieval): the planes ``r = 0``
    and ``r* = 0`` nearly coincide; the loss stays within 3e-6 of the closed form (measured
    1.6e-6 at correlation 0.99)."""
    cov = np.array([[1.0, corr], [corr, 1.0]])
    got = E.gaussian_moments(models.phase_retrieval(), np.zeros(2), cov)
    assert got.loss == pytest.approx(2 - 2 * abs_product_mean(1.0, 1.0, corr), rel=3e-6)


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


def huber_tanh_reference(k, cov, n):
    """``E huber(mean tanh(r) - mean tanh(r*) - 0.3 eps)`` (threshold 0.5): the noise in closed
    form, ``(r, r*)`` on an ``n^(2k)`` Gauss-Hermite grid (the noise-averaged integrand is
    analytic, so the grid converges: 600^2 and 300^2 agree to 1e-11, 40^4 and 60^4 to 5e-8)."""
    x, w = special.roots_hermitenorm(n)
    w = w / w.sum()
    grids = np.meshgrid(*[x] * (2 * k), indexing="ij")
    Z = np.stack([g.ravel() for g in grids], 1) @ np.linalg.cholesky(cov).T
    W = np.ones(1)
    for _ in range(2 * k):
        W = np.multiply.outer(W, w).ravel()
    a = np.tanh(Z[:, :k]).mean(1) - np.tanh(Z[:, k:]).mean(1)
    return float(np.sum(W * huber_noise_average(a, 0.3, 0.5)))


_RNG_COV = np.random.default_rng(1).standard_normal((4, 4))
HUBER_COVS = {
    "validated q=0.4": (1, np.array([[0.4, 0.3], [0.3, 1.0]])),
    "wide q=2.3": (1, np.array([[2.3, 0.9], [0.9, 1.0]])),
    "aligned 0.99": (1, np.array([[1.0, 0.99], [0.99, 1.0]])),
    "small q=0.05": (1, np.array([[0.05, 0.02], [0.02, 1.0]])),
    "k=2 validated": (2, np.block([[0.4 * np.eye(2), 0.3 * np.eye(2)], [0.3 * np.eye(2), np.eye(2)]])),
    "k=2 random": (2, _RNG_COV @ _RNG_COV.T / 4 + 0.2 * np.eye(4)),
}


@pytest.mark.parametrize("case", list(HUBER_COVS))
def test_huber_tanh_default_within_1e4(case):
    """Huber's kink ``|tanh(r) - y| = h`` is a curved surface the engine cannot split along
    (trapezoid for ``k = 1``, quasi-Monte Carlo in 5 dimensions for ``k = 2``). Measured
    against the reference: 1e-7..1e-5 (``k = 1``), 1.2e-4 and 4e-5 (``k = 2`` with 32768
    QMC points, up to 7e-5 over 8 scrambles with the default 65536). The refined result
    (``error=True``) is within 1e-5 and its estimate, the difference of two rules, is below
    the 1e-4 target (a quasi-Monte Carlo estimate is itself random: it can undershoot)."""
    k, cov = HUBER_COVS[case]
    ref = huber_tanh_reference(k, cov, 400 if k == 1 else 30)
    model = models.huber_tanh(noise_std=0.3, threshold=0.5, k=k)
    got = E.gaussian_moments(model, np.zeros(2 * k), cov)
    assert abs(got.loss - ref) < 1e-4 * ref, (got.loss, ref)
    est = E.gaussian_moments(model, np.zeros(2 * k), cov, error=True)
    assert abs(est.loss - ref) < 1e-5 * ref and est.error < 1e-4 * ref, (est.loss, ref, est.error)


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
    import warnings

    import dmft
    from dmft import errors

    kw = dict(dynamics="gf", lr=0.5, t_max=0.2, n_time=3, n_paths=64, init_std=0.5, progress=False,
              kink_response="smoothed")
    with pytest.warns(errors.DiracResponseWarning):
        ds = dmft.solve(models.phase_retrieval(), kink_bandwidth=0.0, **kw)
    assert ds.attrs["gradient_jump_at_kinks"] > 0.1
    assert ds.attrs["response_estimator"] == "pathwise"
    with warnings.catch_warnings():  # (64 paths: its noise warning may come, not the bias one)
        warnings.filterwarnings("error", message=".*tangents miss", category=errors.DiracResponseWarning)
        ds = dmft.solve(models.phase_retrieval(), **kw)
    assert ds.attrs["response_estimator"] == "pathwise+smoothed_dirac"


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


@pytest.mark.validation
def test_multipass_logistic_sign_teacher_theory_against_held_out_simulation():
    """GF on logistic with a sign teacher (delta = 2, lr = 1): the DMFT test loss (the engine,
    split at the teacher's jump) against the held-out test loss of d = 1000 simulations, at
    every output time within 4 combined SE (measured at t <= 4: |z| <= 1.2 with 8 seeds).
    The engine's own accuracy on this model is pinned by the closed-form tests above."""
    import dmft

    kw = dict(delta=2.0, lr=1.0, t_max=2.0, n_time=5, progress=False)
    th = dmft.solve("logistic", dynamics="gf", n_paths=4096, **kw)
    sim = dmft.simulate("logistic", dynamics="gf", d=1000, n_seeds=4, seed=3, **kw)
    later = dict(time=slice(1, None))  # t = 0 is checked exactly below
    testing.assert_agree(th.isel(later), sim.isel(later), variables="test_loss", z_max=4.0)
    assert abs(th.test_loss.values[0] - math.log(2)) < 1e-9  # zero start: E softplus(0) - E[0 * y]


# ---------------------------------------------------------------- the per-piece rule
def test_piece_rule_is_exact_for_polynomials_on_the_piece():
    """An n-point piece rule integrates ``t^j phi(t)``, ``j < 2n``, over its piece: against
    the truncated-normal moments ``M_j = (j-1) M_{j-2} + a^{j-1} phi(a) - b^{j-1} phi(b)``
    (exact recursion; its round-off reaches 2e-15 absolute on the narrow piece)."""
    lo = np.array([-8.5, -8.5, 0.3, -1.0, 2.0, 5.0, -0.1, -3.0])
    hi = np.array([8.5, 0.0, 8.5, -0.999, 2.5, 8.5, 0.1, 3.0])
    n = 4
    t, w = E._normal_piece_rule(lo, hi, n)
    pa, pb = stats.norm.pdf(lo), stats.norm.pdf(hi)
    # the mass from the nearer tail: no cancellation on pieces far out
    moments = [np.where(lo > 0, stats.norm.sf(lo) - stats.norm.sf(hi), stats.norm.cdf(hi) - stats.norm.cdf(lo)),
               pa - pb]
    for j in range(2, 2 * n):
        moments.append((j - 1) * moments[j - 2] + lo ** (j - 1) * pa - hi ** (j - 1) * pb)
    for j in range(2 * n):
        scale = moments[0] * np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1.0) ** j
        np.testing.assert_array_less(np.abs((w * t**j).sum(axis=1) - moments[j]), 1e-12 * scale + 1e-14)


# ---------------------------------------------------------------- smooth hinge, sign teacher
def smooth_hinge(u):
    return np.where(u >= 1, 0.0, np.where(u <= 0, 0.5 - u, 0.5 * (1 - u) ** 2))


def smooth_hinge_slope(u):
    return np.where(u >= 1, 0.0, np.where(u <= 0, -1.0, u - 1.0))


def quad_r_pieces(f, mu, var, kinks=(-1.0, 0.0, 1.0)):
    """:func:`quad_r` split at the integrand's kinks in ``r``."""
    sd = math.sqrt(var)
    z = sorted((p - mu) / sd for p in kinks if abs(p - mu) < 12 * sd)
    edges = [-12.0] + z + [12.0]
    return sum(integrate.quad(lambda x: stats.norm.pdf(x) * f(mu + sd * x), a, b, epsabs=1e-14, epsrel=1e-12,
                              limit=200)[0] for a, b in zip(edges[:-1], edges[1:]))


def smooth_hinge_reference(mean, cov, s):
    """Loss, grad, hess, fisher of ``h(y r)``, ``y = sign(zeta)``, ``zeta = r* + s eps``:
    1-d integrals over ``r`` against ``P(zeta > 0 | r)`` (``(r, zeta)`` bivariate normal)."""
    mr, mz = mean
    vr, c, vz = cov[0, 0], cov[0, 1], cov[1, 1] + s * s
    cond_sd = math.sqrt(vz - c * c / vr)

    def p_pos(r):
        return stats.norm.cdf((mz + c / vr * (r - mr)) / cond_sd)

    def avg(f_pos, f_neg):  # E[f_pos(r) 1(y = 1) + f_neg(r) 1(y = -1)]
        return quad_r_pieces(lambda r: f_pos(r) * p_pos(r) + f_neg(r) * (1 - p_pos(r)), mr, vr)

    loss = avg(smooth_hinge, lambda r: smooth_hinge(-r))
    grad = avg(smooth_hinge_slope, lambda r: -smooth_hinge_slope(-r))
    hess = avg(lambda r: (0 < r) & (r < 1), lambda r: (-1 < r) & (r < 0))
    fisher = avg(lambda r: smooth_hinge_slope(r) ** 2, lambda r: smooth_hinge_slope(-r) ** 2)
    return loss, grad, hess, fisher


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("cov_name", list(COVS))
@pytest.mark.parametrize("mean_name", list(MEANS))
def test_smooth_hinge_sign_teacher_against_quadrature(noise, cov_name, mean_name):
    """All five moments against 1-d adaptive quadrature (``hess_star`` by Price's theorem, a
    central difference of the reference loss in ``Cov(r, r*)``, step 1e-4: error ~1e-8).
    Declared kinks: the default rule is within 3e-8 (without the loss's planes ``r = 0,
    +-1`` it was 7e-4 off on the loss and 9e-3 on the Fisher information)."""
    mean, cov = MEANS[mean_name], COVS[cov_name]
    got = E.gaussian_moments(models.smooth_hinge(noise), mean, cov)
    loss, grad, hess, fisher = smooth_hinge_reference(mean, cov, noise)
    h = 1e-4
    dc = np.array([[0.0, h], [h, 0.0]])
    hess_star = (smooth_hinge_reference(mean, cov + dc, noise)[0]
                 - smooth_hinge_reference(mean, cov - dc, noise)[0]) / (2 * h)
    np.testing.assert_allclose([got.loss, got.hess[0, 0], got.fisher[0, 0]], [loss, hess, fisher], rtol=2e-7)
    assert got.grad[0] == pytest.approx(grad, abs=2e-8)
    assert got.hess_star[0, 0] == pytest.approx(hess_star, rel=1e-6, abs=1e-7)


# ---------------------------------------------------------------- ReLU committee
def relu_pair(v1, v2, c):
    """``E relu(x) relu(y)``, centred bivariate normal (arc-cosine kernel of degree 1):
    ``sqrt(v1 v2) (sin t + (pi - t) cos t) / (2 pi)``, ``cos t = c / sqrt(v1 v2)``."""
    s = math.sqrt(v1 * v2)
    t = math.acos(float(np.clip(c / s, -1, 1)))
    return s / (2 * math.pi) * (math.sin(t) + (math.pi - t) * math.cos(t))


def relu_signs(k):
    return np.concatenate([np.ones(k), -np.ones(k)]) / k


def relu_loss(cov, s):
    """``E (mean relu(r) - mean relu(r*) - s eps)^2 / 2`` from :func:`relu_pair`."""
    w = relu_signs(len(cov) // 2)
    return 0.5 * sum(w[a] * w[b] * relu_pair(cov[a, a], cov[b, b], cov[a, b])
                     for a in range(len(w)) for b in range(len(w))) + 0.5 * s * s


def relu_grad(cov):
    """``E[(u - y) 1(r_j > 0)] / k`` with ``E[x 1(x > 0) 1(y > 0)] = sqrt(v_x) (1 + corr) / (2 sqrt(2 pi))``."""
    k = len(cov) // 2
    w = relu_signs(k)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    return np.array([sum(w[b] * sd[b] * (1 + corr[b, j]) for b in range(2 * k)) for j in range(k)]) / (
        2 * math.sqrt(2 * math.pi) * k)


def price_hessian(loss, cov, rows, h=1e-5):
    """Rows ``rows`` of ``E d2l/dz_a dz_b`` from ``loss(cov)`` by Price's theorem:
    ``dL/dcov_ab`` with ``cov_ab`` and ``cov_ba`` moved together, ``2 dL/dcov_aa`` on the
    diagonal (central differences)."""
    D = len(cov)
    H = np.empty((rows, D))
    for a in range(rows):
        for b in range(D):
            e = np.zeros((D, D))
            e[a, b] = e[b, a] = h
            H[a, b] = (loss(cov + e) - loss(cov - e)) / (2 * h) * (2 if a == b else 1)
    return H


def aligned(k, corr):
    """Student units ``r_j`` with correlation ``corr`` to their teacher units ``r*_j``."""
    return np.block([[np.eye(k), corr * np.eye(k)], [corr * np.eye(k), np.eye(k)]])


RELU_COVS = {"weak": COVS["weak"], "large": COVS["large"], "aligned_0.9": aligned(1, 0.9),
             "aligned_0.99": aligned(1, 0.99), "aligned_0.999": aligned(1, 0.999)}


def relu1_fisher(cov, s):
    """``E[(relu(r) - relu(r*) - s eps)^2 1(r > 0)]`` as a 1-d integral over ``r > 0``:
    ``r* | r`` is normal, with ``E relu`` and ``E relu^2`` in closed form."""
    q, m, rho = cov[0, 0], cov[0, 1], cov[1, 1]
    tau = math.sqrt(rho - m * m / q)

    def f(r):
        mu = m / q * r
        a = mu / tau
        e1 = mu * stats.norm.cdf(a) + tau * stats.norm.pdf(a)
        e2 = (mu * mu + tau * tau) * stats.norm.cdf(a) + mu * tau * stats.norm.pdf(a)
        return (r * r - 2 * r * e1 + e2 + s * s) * stats.norm.pdf(r, scale=math.sqrt(q))

    return integrate.quad(f, 0, 12 * math.sqrt(q), epsabs=1e-14, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("cov_name", list(RELU_COVS))
def test_relu_unit_against_closed_forms(noise, cov_name):
    """``k = 1``: loss and grad in closed form, the Hessians (Dirac term included) by Price's
    theorem on the closed-form loss, the Fisher information by 1-d quadrature. The default
    rule is within 1e-6 on every moment, also with the student aligned to its teacher
    (correlation 0.999: the kink planes nearly coincide); the gradient, a difference of
    terms of size 0.4 that cancel as the student aligns, to 1e-8 absolute."""
    cov = RELU_COVS[cov_name]
    got = E.gaussian_moments(models.relu(1, noise), np.zeros(2), cov)
    H = price_hessian(lambda c: relu_loss(c, noise), cov, 1)
    assert got.loss == pytest.approx(relu_loss(cov, noise), rel=1e-6)
    assert got.grad[0] == pytest.approx(relu_grad(cov)[0], rel=1e-6, abs=1e-8)
    np.testing.assert_allclose([got.hess[0, 0], got.hess_star[0, 0]], H[0], rtol=1e-6, atol=1e-8)
    assert got.fisher[0, 0] == pytest.approx(relu1_fisher(cov, noise), rel=1e-6)


def random_cov(dim, seed, floor=0.3):
    A = np.random.default_rng(seed).standard_normal((dim, dim))
    return A @ A.T / dim + floor * np.eye(dim)


RELU2_CASES = {"random_0": (random_cov(4, 0), 0.0), "random_1": (random_cov(4, 1), 0.3),
               "aligned_0.9": (aligned(2, 0.9), 0.0), "aligned_0.99": (aligned(2, 0.99), 0.3)}


@pytest.mark.parametrize("case", list(RELU2_CASES))
def test_relu_committee_against_closed_forms_and_monte_carlo(case):
    """Two units, four kink planes in four (five with noise) dimensions: loss, grad and both
    Hessians against the closed forms and Price's theorem (default rule within 1e-5, measured
    2e-7..6e-6; the gradient, whose terms cancel as the units align, to 5e-7 absolute: 2e-7
    measured at correlation 0.9),
    the Fisher information within 4 SE of 2^22 Monte Carlo samples (label
    noise averaged in closed form: ``E (u - y0 - s eps)^2 = (u - y0)^2 + s^2``)."""
    cov, noise = RELU2_CASES[case]
    got = E.gaussian_moments(models.relu(2, noise), np.zeros(4), cov)
    H = price_hessian(lambda c: relu_loss(c, noise), cov, 2)
    assert got.loss == pytest.approx(relu_loss(cov, noise), rel=1e-5)
    np.testing.assert_allclose(got.grad, relu_grad(cov), rtol=1e-5, atol=5e-7)
    np.testing.assert_allclose(np.hstack([got.hess, got.hess_star]), H, rtol=1e-5, atol=1e-7)
    rng = np.random.default_rng(11)
    Z = rng.standard_normal((1 << 22, 4)) @ np.linalg.cholesky(cov).T
    relu = np.maximum(Z, 0)
    err2 = ((relu[:, :2].mean(1) - relu[:, 2:].mean(1)) ** 2 + noise**2) / 4
    for a in range(2):
        for b in range(2):
            per = err2 * (Z[:, a] > 0) * (Z[:, b] > 0)
            se = per.std() / math.sqrt(len(per))
            assert abs(got.fisher[a, b] - per.mean()) < 4 * se, (a, b, got.fisher[a, b], per.mean(), se)


def test_steep_breaks_keep_the_moments_continuous():
    """Across the range where the breaks of a nearly parallel plane merge into the
    coordinate's crossing (correlation 0.45-0.71: steepness w = 2..1) the ReLU loss stays
    within 1e-8 of the closed form on a fine grid, so the rule has no jump there."""
    model = models.relu(1)
    errs = [abs(E.gaussian_moments(model, np.zeros(2), aligned(1, c)).loss - relu_loss(aligned(1, c), 0.0))
            for c in np.linspace(0.4, 0.75, 36)]
    assert max(errs) < 1e-8, max(errs)


# ---------------------------------------------------------------- erf and tanh committees
def erf_pair(v1, v2, c):
    """``E g(x) g(y)``, ``g = erf(./sqrt 2)``, centred bivariate normal, as a 1-d integral over
    ``x``: ``y | x ~ N(b x, t^2)`` and ``E erf((m + t Z)/sqrt 2) = erf(m / sqrt(2 (1 + t^2)))``."""
    b = c / v1
    t2 = max(v2 - c * c / v1, 0.0)
    sd = math.sqrt(v1)
    return integrate.quad(lambda z: stats.norm.pdf(z) * special.erf(sd * z / math.sqrt(2))
                          * special.erf(b * sd * z / math.sqrt(2 * (1 + t2))), -12, 12, epsabs=1e-14,
                          epsrel=1e-12, limit=200)[0]


def tanh_pair(v1, v2, c, n=160):
    """``E tanh(x) tanh(y)``, centred bivariate normal, by a 160 x 160 Gauss-Hermite grid in
    whitened coordinates (numpy's nodes; 1-d error 3e-11 at 96 points for unit variance)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    sd = math.sqrt(v1)
    b = c / sd
    t = math.sqrt(max(v2 - b * b, 0.0))
    return float(w @ (np.tanh(sd * z)[:, None] * np.tanh(b * z[:, None] + t * z[None, :])) @ w)


def committee_loss(pair, cov, s):
    """``E (mean g(r) - mean g(r*) - s eps)^2 / 2`` from the pair terms ``E g(z_a) g(z_b)``."""
    w = relu_signs(len(cov) // 2)
    D = len(w)
    return 0.5 * sum((1 if a == b else 2) * w[a] * w[b] * pair(cov[a, a], cov[b, b], cov[a, b])
                     for a in range(D) for b in range(a, D)) + 0.5 * s * s


def committee_fisher_monte_carlo(act, dact, cov, s, n=1 << 22, seed=2):
    """Plain Monte Carlo means and SEs of the Fisher information ``E (dl/dr)(dl/dr)^T`` of
    ``l = (mean g(r) - mean g(r*) - s eps)^2/2`` (label noise averaged in closed form)."""
    k = len(cov) // 2
    w = relu_signs(k)
    Z = np.random.default_rng(seed).standard_normal((n, 2 * k)) @ np.linalg.cholesky(cov).T
    e2 = (act(Z) @ w) ** 2 + s * s
    d = dact(Z[:, :k]) * w[:k]
    out = {}
    for a in range(k):
        for b in range(a, k):
            per = e2 * d[:, a] * d[:, b]
            out[a, b] = (per.mean(), per.std() / math.sqrt(n))
    return out


def erf_g(x):
    return special.erf(x / math.sqrt(2))


def erf_dg(x):
    return math.sqrt(2 / math.pi) * np.exp(-0.5 * x * x)


ERF_COVS = {"init": np.eye(4), "random": random_cov(4, 0), "aligned_0.9": aligned(2, 0.9)}


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("cov_name", list(ERF_COVS))
def test_erf_committee_closed_form_against_quadrature(noise, cov_name):
    """The closed form: loss to 1e-10 of 1-d quadratures of the pair terms, both Hessians to
    1e-7 of Price's theorem on that reference (central differences, step 1e-5: error 1e-9),
    grad 0 (odd integrand). The integrated moments (``rule=GaussHermite(points_per_dim=24)``,
    noise-free: 4 dimensions) equal the closed form to 1e-6 (their own error, measured
    2e-8..4e-7)."""
    cov = ERF_COVS[cov_name]
    model = models.committee("erf", 2, noise)
    got = E.gaussian_moments(model, np.zeros(4), cov)
    assert got.loss == pytest.approx(committee_loss(erf_pair, cov, noise), rel=1e-10)
    np.testing.assert_array_equal(got.grad, 0.0)
    H = price_hessian(lambda c: committee_loss(erf_pair, c, noise), cov, 2)
    np.testing.assert_allclose(np.hstack([got.hess, got.hess_star]), H, rtol=1e-7, atol=1e-9)
    if noise == 0:
        quad = E.gaussian_moments(model, np.zeros(4), cov, rule=E.GaussHermite(points_per_dim=24))
        for name in ("loss", "grad", "hess", "hess_star", "fisher"):
            np.testing.assert_allclose(getattr(quad, name), getattr(got, name), rtol=1e-6, atol=1e-6)


def test_erf_committee_fisher_against_monte_carlo():
    """The closed-form Fisher information within 4 SE of 2^22 Monte Carlo samples (SE 3e-5)."""
    cov = random_cov(4, 0)
    got = E.gaussian_moments(models.committee("erf", 2, 0.3), np.zeros(4), cov)
    for (a, b), (mean, se) in committee_fisher_monte_carlo(erf_g, erf_dg, cov, 0.3).items():
        assert abs(got.fisher[a, b] - mean) < 4 * se, (a, b, got.fisher[a, b], mean, se)


def test_erf_committee_off_centre_is_integrated():
    """With a non-zero mean there is no closed form: the engine integrates, and the error
    estimate (against 2^22 Monte Carlo samples, SE 2e-4) bounds its error."""
    model = models.committee("erf", 2)
    cov = random_cov(4, 3)
    mean = np.array([0.3, -0.2, 0.1, 0.4])
    assert model.closed_form(mean, cov, None, model.param_array) is None
    got = E.gaussian_moments(model, mean, cov, error=True)
    Z = mean + np.random.default_rng(4).standard_normal((1 << 22, 4)) @ np.linalg.cholesky(cov).T
    per = 0.5 * (erf_g(Z) @ relu_signs(2)) ** 2
    ref, se = per.mean(), per.std() / math.sqrt(len(per))
    assert np.isfinite(got.error) and got.error > 0
    assert abs(got.loss - ref) < got.error + 4 * se, (got.loss, ref, se, got.error)


def test_tanh_committee_error_estimate_bounds_its_error():
    """tanh's complex poles slow Gauss-Hermite down: the default rule is 3e-3 off at the
    ``init_std = 1`` start (``q = rho = I``, ``m = 0``; reference: 160 x 160 Gauss-Hermite
    grids for the pair terms, 1e-10) and 1e-4 at a random covariance; the error estimate
    bounds the error of the refined value it returns."""
    model = models.committee("tanh", 2)
    for cov in (np.eye(4), random_cov(4, 0)):
        ref = committee_loss(tanh_pair, cov, 0.0)
        default = E.gaussian_moments(model, np.zeros(4), cov)
        got = E.gaussian_moments(model, np.zeros(4), cov, error=True)
        assert abs(default.loss - ref) < 5e-3 * ref
        assert abs(got.loss - ref) < got.error, (got.loss, ref, got.error)


# ---------------------------------------------------------------- derivative checks
@pytest.mark.parametrize("model", [models.smooth_hinge(0.2), models.relu(1), models.relu(2, 0.3),
                                   models.committee("erf", 2, 0.2), models.committee("tanh", 3)],
                         ids=lambda m: repr(m))
def test_zoo_derivatives_against_finite_differences(model):
    """``grad`` is the derivative of ``loss`` and ``hess`` of ``grad`` (away from the kinks:
    ReLU's Dirac terms at ``r_j = 0`` are not in ``hess``)."""
    rng = np.random.default_rng(7)
    for _ in range(10):
        r = rng.uniform(-2, 2, model.k)
        r[np.abs(r) < 1e-3] = 0.5
        y = np.array([rng.choice([-1.0, 1.0]) if model.name == "smooth_hinge" else rng.normal()])
        testing.check_gradient(model, r, y)
        testing.check_hessian(model, r, y)
