"""Numba kernel behind :func:`dmft.expectation.gaussian_moments` (its only caller).

``weighted_moments`` is a template: :func:`dmft._jit.specialise` binds ``loss``, ``grad``,
``hess`` and ``teacher`` to a model's functions and compiles it with a disk cache.
"""
import numpy as np


def weighted_moments(params, Z, EPS, label, use_label, weights, k, k_star, want_hess):
    """Weighted sums over quadrature points of the loss and its derivatives.

    Z: (N, k + k_star) points of (r, r_star); EPS: (N, noise_dim) label noise;
    label: (m,) fixed label used when ``use_label``; weights: (N,) summing to 1.
    Returns (E l, E g (k,), E H (k,k), E g g^T (k,k), E g z^T (k, k+k_star)).
    """
    N = Z.shape[0]
    D = Z.shape[1]
    m = label.size
    y = np.empty(m)
    g = np.empty(k)
    H = np.empty((k, k))
    El = 0.0
    Eg = np.zeros(k)
    EH = np.zeros((k, k))
    EI = np.zeros((k, k))
    EgZ = np.zeros((k, D))
    for n in range(N):
        w = weights[n]
        r = Z[n, :k]
        if use_label:
            y[:] = label
        else:
            teacher(Z[n, k:k + k_star], EPS[n], params, y)  # noqa: F821 (bound by specialise)
        El += w * loss(r, y, params)  # noqa: F821
        grad(r, y, params, g)  # noqa: F821
        if want_hess:
            hess(r, y, params, H)  # noqa: F821
        for a in range(k):
            wa = w * g[a]
            Eg[a] += wa
            for b in range(k):
                EI[a, b] += wa * g[b]
                if want_hess:
                    EH[a, b] += w * H[a, b]
            for b in range(D):
                EgZ[a, b] += wa * Z[n, b]
    return El, Eg, EH, EI, EgZ
