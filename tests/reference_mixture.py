"""Independent reference for the multi-pass DMFT on binary Gaussian mixtures (docs/dmft_mixture.md, section 5):
the fixed point of ridge-regularised logistic regression, the static (replica / leave-one-out) theory of
empirical risk minimisation, which gradient flow with a ridge reaches as ``t -> inf``.

Setting: classes ``c = 0, 1`` with probabilities ``pi_c``, inputs ``x = s_c mu/sqrt(d) + z`` (``s_c = +1, -1``,
``z ~ N(0, I/d)``, ``|mu|^2 = rho``), labels ``y_c``, risk ``sum_i l(theta^T x_i, y_{c_i}) + (ridge/2)|theta|^2``,
``n = delta d``. The minimiser has, as ``d -> inf``, ``M = theta^T mu/sqrt(d)``, ``q = |theta|^2/d`` and the
response ``V`` solving

    r_hat = omega - V l'(r_hat, y_c),   omega = s_c M + sqrt(q) xi,   f = -l'(r_hat, y_c)
    V = 1 / (ridge + delta E[l''(r_hat)/(1 + V l''(r_hat))])
    M = V delta nu rho,   nu = pi_0 E[f | 0] - pi_1 E[f | 1]
    q = V^2 (delta E[f^2] + delta^2 nu^2 rho)

(E over classes and ``xi ~ N(0, 1)``; ``E[f^2]`` is the uncentred second moment). The test loss is
``sum_c pi_c E l(s_c M + sqrt(q) xi, y_c)``, the training loss ``sum_c pi_c E l(r_hat, y_c)``.
"""
import numpy as np

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(120)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _sigmoid(r):
    return 0.5 * (1.0 + np.tanh(0.5 * r))


def _prox(omega, y, V):
    """``r`` with ``r = omega - V (sigmoid(r) - y)``, Newton from ``omega`` (the map is monotone)."""
    r = omega.copy()
    for _ in range(100):
        s = _sigmoid(r)
        step = (r - omega + V * (s - y)) / (1.0 + V * s * (1.0 - s))
        r -= step
        if np.abs(step).max() < 1e-15:
            break
    return r


def logistic_ridge_fixed_point(delta, ridge, rho, probs=(0.5, 0.5), labels=(1.0, 0.0), tol=1e-13):
    """``dict(M, q, V, test_loss, train_loss)`` of the logistic ridge minimiser (module docstring), by damped
    iteration of the fixed-point map from ``M = q = 0``, ``V = 1/ridge``."""
    M, q, V = 0.0, 0.0, 1.0 / ridge
    for _ in range(20000):
        Vhat = nu = Ef2 = 0.0
        for s, p, y in zip((1.0, -1.0), probs, labels):
            r = _prox(s * M + np.sqrt(q) * _NODES, y, V)
            sig = _sigmoid(r)
            f = y - sig
            h = sig * (1.0 - sig)
            Vhat += p * delta * _WEIGHTS @ (h / (1.0 + V * h))
            nu += s * p * (_WEIGHTS @ f)
            Ef2 += p * (_WEIGHTS @ f**2)
        V_new = 1.0 / (ridge + Vhat)
        M_new = V_new * delta * nu * rho
        q_new = V_new**2 * (delta * Ef2 + delta**2 * nu**2 * rho)
        change = max(abs(M_new - M), abs(q_new - q), abs(V_new - V))
        M, q, V = 0.5 * (M + M_new), 0.5 * (q + q_new), 0.5 * (V + V_new)
        if change < tol:
            break
    else:
        raise RuntimeError("the fixed point did not converge")
    test = train = 0.0
    for s, p, y in zip((1.0, -1.0), probs, labels):
        omega = s * M + np.sqrt(q) * _NODES
        r = _prox(omega, y, V)
        test += p * (_WEIGHTS @ (np.logaddexp(0.0, omega) - y * omega))
        train += p * (_WEIGHTS @ (np.logaddexp(0.0, r) - y * r))
    return dict(M=M, q=q, V=V, test_loss=test, train_loss=train)
