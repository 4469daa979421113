"""Numba kernels behind :func:`dmft.solve` (each called by exactly one wrapper in solve.py).

Array conventions (``B`` replicas, grid ``t_n = n dt``, ``n = 0..N``, ``k`` student and
``ks`` teacher directions):

* two-time kernels in block layout ``X[b, n k + a, m k + e]`` (``k x k`` blocks), e.g. ``R``;
* per-path event tables ``ev_cell[p, j]`` (grid cell ``(t_{m-1}, t_m]`` of event ``j``),
  ``ev_lam[p, j]`` (position in the cell, in ``(0, 1]``), ``ev_dz[p, j]`` (driver increment);
  kernels with many inputs take them grouped in tuples (``events = (ev_cell, ev_lam, ev_dz)``,
  ...), which numba passes as structs of arrays at no cost;
* the pathwise tangents ``psi[p, tri(j, i) k^2 + a k + e]`` = ``d r(s_j-) / d r(s_i-)`` in packed
  lower-triangular storage ``tri(j, i) = j (j + 1) / 2 + i`` (Poisson driver; the dense
  drivers recompute a row from the shared responses instead, :func:`dense_tangents`).

``sample_cell_poisson`` (events at their exact times, packed tangents), ``sample_cell_dense``
(one shared event per cell, tangents backwards over the shared responses), ``train_losses``
and ``labels`` are templates: :func:`dmft._jit.specialise`
binds the model's functions (``grad``, ``hess``, ``loss``, ``teacher``) and compiles them
with a disk cache; pure-array kernels are cached directly.
"""
import math

import numpy as np
from numba import njit, prange

from .. import _config


@njit(cache=True, inline="always")
def _boundary_factor(u):
    """The factor ``(a2 - a1 u) / (a0 a2 - a1^2)`` that makes the Gaussian ``phi(u)`` on the half
    line ``u >= 0`` (``u`` in units of its width) a local-linear boundary kernel: it integrates to
    1 with no first moment, ``a0 = a2 = 1/2`` and ``a1 = 1/sqrt(2 pi)`` being the half line's
    moments of ``phi`` (docs/dmft_theory.md, "Kinks", one-sided data)."""
    return (0.5 - 0.3989422804014327 * u) / (0.25 - 0.5 / math.pi)


@njit(cache=True, inline="always")  # ~26M calls in train_losses at the defaults
def _rinterp(R, n, lt, m, ls, out):
    """``R_theta(t, s)`` at ``t = t_{n-1} + lt dt``, ``s = t_{m-1} + ls dt`` (``m <= n``).

    ``R`` is one replica's kernel in block layout ``R[n k + a, m k + e]``. Bilinear on the
    grid square when the cells differ; in the same cell the time-translation form
    ``R(t, s) = I + ((t - s)/dt) (R(t_n, t_{n-1}) - I)`` (exact ``R(s, s) = I``).
    """
    k = out.shape[0]
    if m < n:
        w00 = (1.0 - lt) * (1.0 - ls)
        w01 = (1.0 - lt) * ls
        w10 = lt * (1.0 - ls)
        w11 = lt * ls
        r0 = (n - 1) * k
        r1 = n * k
        c0 = (m - 1) * k
        c1 = m * k
        for a in range(k):
            for b in range(k):
                out[a, b] = (w00 * R[r0 + a, c0 + b] + w01 * R[r0 + a, c1 + b]
                             + w10 * R[r1 + a, c0 + b] + w11 * R[r1 + a, c1 + b])
    else:
        f = lt - ls
        r1 = n * k
        c0 = (n - 1) * k
        for a in range(k):
            for b in range(k):
                out[a, b] = f * R[r1 + a, c0 + b]
            out[a, a] += 1.0 - f


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def chol_append(L, cov, first, jitter, pivots):
    """Append rows ``first .. first + T - 1`` of a lower-triangular factor ``L`` with
    ``L L^T = Cov + jitter diag(Cov)`` (new rows only), in one pass over the earlier rows.

    ``cov[t, :first + t + 1]`` is the covariance of new entry ``first + t`` with entries
    ``0 .. first + t``. Each earlier row of ``L`` is read once for all ``T`` new rows, so
    appending two grid points' rows together costs one pass over the (memory-bound)
    triangle instead of two. The jitter keeps every pivot of a consistent semi-definite
    input at least ``jitter`` times its variance, so no ``L[i, i]`` is so small that
    rounding in ``Cov`` (~1e-13 relative) divided by it becomes O(1) in later rows
    (docs/dmft_theory.md, "Gaussian field"). A pivot ``<= 0`` (zero variance, or an
    inconsistent input) gives a zero column. ``pivots[t]``: the pivot, negative values
    flag an indefinite input.
    """
    T = cov.shape[0]
    last = first + T - 1
    s = np.zeros(T)
    for i in range(last + 1):
        if i >= first:  # new row i is complete left of its diagonal
            t = i - first
            d = cov[t, i] * (1.0 + jitter) - s[t]
            pivots[t] = d
            L[i, i] = np.sqrt(d) if d > 0.0 else 0.0
            for j in range(i + 1, L.shape[1]):
                L[i, j] = 0.0
        for t in range(max(i + 1 - first, 0), T):
            row = first + t
            acc = cov[t, i]
            for j in range(i):
                acc -= L[row, j] * L[i, j]
            L[row, i] = acc / L[i, i] if L[i, i] > 0.0 else 0.0
            s[t] += L[row, i] * L[row, i]


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def chol_rows(L, m, C, n, n_grid, k, ks, jitter, pivots):
    """Rows ``ks + n k .. ks + (n + n_grid) k - 1`` (grid points ``n .. n + n_grid - 1``) of
    each replica's joint factor ``L[b]`` (teacher first, then the grid field), in one pass
    over ``L[b]``: covariances ``m[b, n', a]`` with the teacher and ``C[b, n' k + a, :]``
    with the field. ``pivots[b, t]``: pivot of row ``ks + n k + t`` relative to its variance.
    Replicas in ``prange`` (independent factors; :data:`chol_rows_parallel` runs them on threads).
    """
    B = L.shape[0]
    row0 = ks + n * k
    T = n_grid * k
    for b in prange(B):
        cov = np.zeros((T, row0 + T))
        piv = np.empty(T)
        for t in range(T):
            g, a = n + t // k, t % k
            for i in range(ks):
                cov[t, i] = m[b, g, a, i]
            for i in range(g * k + a + 1):
                cov[t, ks + i] = C[b, g * k + a, i]
        chol_append(L[b], cov, row0, jitter, piv)
        for t in range(T):
            pivots[b, t] = piv[t] / max(cov[t, row0 + t], 1e-300)


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH), inline="always")
def _axpy(w, x, y):
    """``y += w x`` on 1-d slices: indices from ``range(len)`` let numba drop the
    negative-index checks that keep the loop from vectorising."""
    for i in range(x.shape[0]):
        y[i] += w * x[i]


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH), inline="always")
def _dot(x, y):
    """``sum_i x_i y_i`` of two 1-d slices (reassociated: vectorised)."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * y[i]
    return acc


@njit(cache=True, nogil=True)
def _cumulative_dW(dK, dW, lo, hi):
    """For one replica of :func:`row_products`: the cumulative ``cum[a, i k + e] = sum_{c <= i}
    dW[c, a, e]`` (n k columns) where the step-response term is cheaper as dot products with
    rows of ``A``, else an empty (k, 0): reading the step response costs its non-zero weights'
    rows; the dot products cost the output rows of ``A`` that the ``dK`` term does not read
    (the others are in cache) plus a quarter of all of them for the arithmetic."""
    n, k = dW.shape[0], dW.shape[1]
    step_reads = 0
    for c in range(n):
        for a in range(k):
            for e in range(k):
                if dW[c, a, e] != 0.0:
                    step_reads += hi - max(lo, min(hi, c * k))
    cold = 0
    warm = 0
    for j in range(n):
        for e in range(k):
            if lo <= j * k + e < hi:
                read = False
                for a in range(k):
                    read = read or dK[j, a, e] != 0.0
                if read:
                    warm += (j + 1) * k
                else:
                    cold += (j + 1) * k
    if cold + k * (cold + warm) // 4 >= step_reads:
        return np.zeros((k, 0))
    cum = np.empty((k, n * k))
    for a in range(k):
        for e in range(k):
            acc = 0.0
            for c in range(n):
                acc += dW[c, a, e]
                cum[a, c * k + e] = acc
    return cum


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def row_products(dK, dW, A, R, C, RtT, delta, lo, hi, TA, TR, TC):
    """``T += sum_j dK_j X_j.`` for ``X = A, R, C`` and ``TC += delta sum_c dW_c Rt_.c^T``,
    on the columns ``lo <= col < hi``.

    The ``O(n^2)`` part of one incremental parameter-side row.
    dK, dW: (B, n, k, k) row increments; A, R, C, RtT: (B, (N+1) k, (N+1) k) with
    ``RtT[c k + e, m k + a] = Rt[m k + a, c k + e]`` (the step response, transposed so a
    column is a contiguous row); TA, TR, TC: (B, k, >= hi), updated in place. Zero blocks
    are skipped (SGD: only the grid nodes of the cell's events are non-zero) and ``A``,
    ``R`` (causal) and ``RtT`` are read only inside their triangles. Where ``dW`` is dense
    enough (:func:`_cumulative_dW` decides per replica), the step response is not read:
    ``sum_c dW_c Rt_col,c = sum_i A_col,i W_i`` with the cumulative ``W_i = sum_{c <= i} dW_c``,
    a dot product with the row of ``A`` that the ``dK`` term has usually just read. Replicas
    in ``prange`` (:data:`row_products_parallel` runs them on threads).
    """
    B, n, k, _ = dK.shape
    for b in prange(B):
        cum = _cumulative_dW(dK[b], dW[b], lo, hi)
        by_rows_of_a = cum.shape[1] > 0
        for j in range(n):
            for e in range(k):
                r = j * k + e
                causal = max(lo, min(hi, (j + 1) * k))
                after = min(hi, max(lo, j * k))
                for a in range(k):
                    w = dK[b, j, a, e]
                    if w != 0.0:
                        _axpy(w, A[b, r, lo:causal], TA[b, a, lo:causal])
                        _axpy(w, R[b, r, lo:causal], TR[b, a, lo:causal])
                        _axpy(w, C[b, r, lo:hi], TC[b, a, lo:hi])
                    if by_rows_of_a:
                        if lo <= r < hi:
                            TC[b, a, r] += delta * _dot(A[b, r, : (j + 1) * k], cum[a, : (j + 1) * k])
                    else:
                        w = delta * dW[b, j, a, e]
                        if w != 0.0:
                            _axpy(w, RtT[b, r, after:hi], TC[b, a, after:hi])


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def row_sums(A, nu, delta, n, RtT, asum, bvec):
    """From row ``n`` of ``A`` (final): the step response ``Rt_nc = sum_{j=c}^n A_nj``, stored
    transposed (``RtT[b, c k + e, n k + a]``), ``asum[b, n] = sum_j A_nj`` and
    ``bvec[b, n] = delta A_n. nu``. A, RtT: (B, (N+1) k, (N+1) k); nu, bvec: (B, N+1, k, ks);
    asum: (B, N+1, k, k)."""
    B = A.shape[0]
    k = asum.shape[2]
    ks = nu.shape[3]
    for b in range(B):
        for a in range(k):
            r = n * k + a
            for e in range(k):
                acc = 0.0
                for c in range(n, -1, -1):
                    acc += A[b, r, c * k + e]
                    RtT[b, c * k + e, r] = acc
                asum[b, n, a, e] = acc
            for g in range(ks):
                acc = 0.0
                for j in range(n + 1):
                    for e in range(k):
                        acc += A[b, r, j * k + e] * nu[b, j, e, g]
                bvec[b, n, a, g] = delta * acc


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def finish_row(step, row, products, prior, kernels, teacher):
    """Row ``n >= 1`` of ``m, nu, A, R, C`` (and :func:`row_sums`) of every replica, from
    row ``n - 1`` and the products ``P = sum_j dK_j X_j.`` of :func:`row_products`: the
    incremental identities of ``solve._ParamSide.row`` (:func:`teacher_row`, then
    :func:`kernel_row`). ``step = (n, dt, delta, lam)``, ``row = (Grow, dGm, Minv)``,
    ``products = (PA, PR, PC)``, ``prior = (q0, rho, rho_inv)``, ``kernels = (A, R, C, S,
    RtT)``, ``teacher = (m, nu, Phi, asum, bvec)`` (see :func:`kernel_row`)."""
    n, dt, delta, lam = step
    q0, rho, rho_inv = prior
    m, nu, Phi, asum, bvec = teacher
    teacher_row(n, dt, delta, lam, row[0], rho_inv, m, nu, Phi)
    kernel_row(step, row, products, (q0, rho), kernels, (nu, asum, bvec))


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def teacher_row(n, dt, delta, lam, Grow, rho_inv, m, nu, Phi):
    """Row ``n`` of ``m`` and ``nu`` of every replica from the isotropic identities
    ``m_n = (delta Phi_n - lam sum_{j<n} w_j m_j) / (1 + lam dt / 2)`` (trapezoid, the half
    weight at ``n`` moved left) and ``nu_n = (Phi_n - sum_{j<=n} G_nj m_j) rho^-1``.
    Grow: (B, N+1, k, k) the row of ``G``; m, nu, Phi: (B, N+1, k, ks)."""
    B, _, k, ks = m.shape
    tmp = np.empty((k, ks))
    for b in range(B):
        for a in range(k):
            for g in range(ks):
                acc = 0.5 * dt * m[b, 0, a, g]
                for j in range(1, n):
                    acc += dt * m[b, j, a, g]
                m[b, n, a, g] = (delta * Phi[b, n, a, g] - lam * acc) / (1.0 + 0.5 * lam * dt)
        for a in range(k):
            for g in range(ks):
                acc = Phi[b, n, a, g]
                for j in range(n + 1):
                    for h in range(k):
                        acc -= Grow[b, j, a, h] * m[b, j, h, g]
                tmp[a, g] = acc
        for a in range(k):
            for g in range(ks):
                acc = 0.0
                for h in range(ks):
                    acc += tmp[a, h] * rho_inv[h, g]
                nu[b, n, a, g] = acc


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def kernel_row(step, row, products, prior, kernels, sums):
    """Row ``n >= 1`` of ``A, R, C`` (and :func:`row_sums`) of every replica, given row ``n``
    of ``nu``: ``A_n. = Minv (A_{n-1}. - E_{n-1} + PA)``, ``R_n. = Minv (R_{n-1}. - delta dG^-
    + PR)``, ``C_n. = Minv (C_{n-1}. + PC + delta dnu rho b^T)`` (with its transpose as
    column ``n``), ``C_nn = Minv (Y_nn + sum_{j<n} K_nj C_jn)`` (:func:`diagonal_block`), ``Y_nn = q0 asum_n^T +
    delta S_n. A_n.^T + delta nu_n rho b_n^T``. ``step = (n, dt, delta, lam)``; ``row =
    (Grow, dGm, Minv)``: Grow (B, N+1, k, k) the row of ``G``, dGm (B, n, k, k) the increment
    of ``G^-``, Minv (B, k, k) ``(I - K_nn)^-1``; ``products = (PA, PR, PC)`` (B, k, n k);
    ``prior = (q0, rho)``; ``kernels = (A, R, C, S, RtT)``; ``sums = (nu, asum, bvec)``.
    """
    n, dt, delta, lam = step
    Grow, dGm, Minv = row
    PA, PR, PC = products
    q0, rho = prior
    A, R, C, S, RtT = kernels
    nu, asum, bvec = sums
    B = A.shape[0]
    k = Minv.shape[1]
    ks = nu.shape[3]
    nk = n * k
    pk = nk - k
    TA = np.empty((k, nk))
    TR = np.empty((k, nk))
    TC = np.empty((k, nk))
    drho = np.empty((k, ks))
    for b in range(B):
        for a in range(k):
            for g in range(ks):
                acc = 0.0
                for h in range(ks):
                    acc += (nu[b, n, a, h] - nu[b, n - 1, a, h]) * rho[h, g]
                drho[a, g] = delta * acc
        for a in range(k):
            for j in range(n):
                for e in range(k):
                    col = j * k + e
                    TA[a, col] = A[b, pk + a, col] + PA[b, a, col]
                    TR[a, col] = R[b, pk + a, col] - delta * dGm[b, j, a, e] + PR[b, a, col]
                    acc = C[b, pk + a, col] + PC[b, a, col]
                    for g in range(ks):
                        acc += drho[a, g] * bvec[b, j, e, g]
                    TC[a, col] = acc
            TA[a, pk + a] -= 1.0
        for a in range(k):
            r = nk + a
            for col in range(nk):
                xa = 0.0
                xr = 0.0
                xc = 0.0
                for h in range(k):
                    w = Minv[b, a, h]
                    xa += w * TA[h, col]
                    xr += w * TR[h, col]
                    xc += w * TC[h, col]
                A[b, r, col] = xa
                R[b, r, col] = xr
                C[b, r, col] = xc
                C[b, col, r] = xc
            for e in range(k):
                A[b, r, nk + e] = Minv[b, a, e]
                R[b, r, nk + e] = 1.0 if a == e else 0.0
    row_sums(A, nu, delta, n, RtT, asum, bvec)
    diagonal_block(step, row, prior, kernels, sums)


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def diagonal_block(step, row, prior, kernels, sums):
    """The diagonal block ``C_nn = Minv (Y_nn + sum_{j<n} K_nj C_jn)`` of every replica, with
    ``Y_nn = q0 asum_n^T + delta S_n. A_n.^T + delta nu_n rho b_n^T``, once row ``n`` of
    ``A`` and the columns ``C_.n`` left of it are final (arguments of :func:`kernel_row`)."""
    n, dt, delta, lam = step
    Grow, _, Minv = row
    q0, rho = prior
    A, _, C, S, _ = kernels
    nu, asum, bvec = sums
    B = A.shape[0]
    k = Minv.shape[1]
    ks = nu.shape[3]
    nk = n * k
    Y = np.empty((k, k))
    cnn = np.empty((k, k))
    for b in range(B):
        for a in range(k):
            for e in range(k):
                acc = 0.0
                for h in range(k):
                    acc += q0[a, h] * asum[b, n, e, h]
                sa = 0.0
                for col in range(nk + k):
                    sa += S[b, nk + a, col] * A[b, nk + e, col]
                nb = 0.0
                for h in range(ks):
                    for g in range(ks):
                        nb += nu[b, n, a, h] * rho[h, g] * bvec[b, n, e, g]
                Y[a, e] = acc + delta * (sa + nb)
        for h in range(k):  # Y += sum_{j<n} K_nj C_jn, K_nj = delta G_nj - lam w_j I
            for e in range(k):
                acc = 0.0
                for j in range(n):
                    wj = 0.5 * dt if j == 0 else dt
                    for g in range(k):
                        Kv = delta * Grow[b, j, h, g] - (lam * wj if h == g else 0.0)
                        acc += Kv * C[b, nk + e, j * k + g]
                Y[h, e] += acc
        for a in range(k):
            for e in range(k):
                acc = 0.0
                for h in range(k):
                    acc += Minv[b, a, h] * Y[h, e]
                cnn[a, e] = acc
        for a in range(k):
            for e in range(k):
                C[b, nk + a, nk + e] = 0.5 * (cnn[a, e] + cnn[e, a])


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def group_rows(n, dlam, ridge_w, rfac, Minv, Grow, shared, q0, rho, nu, kernels, sums, off):
    """Rows ``n, .., n + len(Grow) - 1`` of ``A_g``, ``R_g``, ``C_g`` (its lower block triangle) of
    every spectral group ``g`` and replica ``b``, in the direct form
    (docs/dmft_anisotropic.md, section 5), for row ``i``:

        A_i. = Minv_g sum_{j<i} K_ij A_j.,   K_ij = dlam_g G_ij - ridge_w[j] I,   A_ii = Minv_g
        C_im = dlam_g A_i. S A_m.^T + asum_i q0 asum_m^T + b_i rho_g b_m^T          (m <= i)
        R_im = rfac[m] Rt_im - dlam_g sum_{j=m}^i A_ij Ghat_jm,   R_ii = I           (m < i)

    with ``Rt_im = sum_{j=m}^i A_ij``, ``asum_i = Rt_i0``, ``b_i = dlam_g sum_j A_ij nu_j`` and
    ``Ghat_jm = G^-_jm`` (``j > m``), ``G_mm`` (``j = m``): ``R_.m = A f_.m`` with ``f`` the source
    of the response recursion (``I - K^-_jm``, and ``I - K_mm`` at ``j = m``). The rows read their
    group's own history only in ``A_g``, once for all rows (the ``A`` sums of the rows in one
    pass over its packed rows, a contiguous stream), whose triangle then stays in the cache for
    ``C``; the other sums are dot products with the replica's shared ``S`` and ``Ghat``. Two
    rows are the final row ``n`` and the predictor's row ``n + 1``
    (:meth:`dmft.multipass._solve._GroupRows.row`).
    dlam (G,); ridge_w, rfac (>= n + rows - 1,): the ridge's trapezoid weights ``lr ridge w_j``
    and ``1 + lr ridge uL_m dt / 2``; Minv (rows, G, B, k, k); Grow (rows, B, N+1, k, k);
    shared = (GhatT, Ssym) (B, NK, NK): ``Ghat`` transposed and ``S`` symmetric, both filled up
    to the last row and column; q0 (k, k); rho (G, ks, ks); nu (B, N+1, k, ks); kernels = (A,
    R, C): ``A`` (G, B, off[-1]) packed, row ``r`` at ``off[r]:off[r + 1]`` (its ``(r // k + 1) k``
    columns), ``R``, ``C`` (G, B, NK, NK); sums = (asum, bvec) (G, B, N+1, k, k | ks)."""
    A, R, C = kernels
    asum, bvec = sums
    GhatT, Ssym = shared
    G, B = A.shape[0], A.shape[1]
    rows = Grow.shape[0]
    k = Minv.shape[3]
    top = (n + rows) * k
    T = np.empty((rows, k, top))
    V = np.empty((k, top))
    for b in range(B):  # groups inside replicas: the replica's S and Ghat stay in the cache
        for g in range(G):
            Ag = A[g, b]
            T[:] = 0.0
            for j in range(n):
                for e in range(k):
                    for i in range(rows):
                        _add_k_row(T[i], Ag, off, Grow[i, b, j], dlam[g], ridge_w[j], j, e, k)
            for i in range(rows):
                m = n + i
                for j in range(n, m):  # the rows before m computed here
                    for e in range(k):
                        _add_k_row(T[i], Ag, off, Grow[i, b, j], dlam[g], ridge_w[j], j, e, k)
                _group_a_row(Ag, off, T[i], Minv[i, g, b], m, k)
                _group_sums(Ag, off, nu, dlam[g], m, b, asum[g], bvec[g])
            for i in range(rows):
                m = n + i
                mk, m1k = m * k, (m + 1) * k
                for a in range(k):
                    for col in range(m1k):
                        V[a, col] = _dot(Ag[off[mk + a]: off[mk + a] + m1k], Ssym[b, col, :m1k])
                _group_c_row(Ag, off, C[g, b], V, dlam[g], m, (asum[g, b], bvec[g, b]), q0, rho[g])
                _group_r_row(Ag, off, R[g, b], GhatT[b], rfac, dlam[g], m, k)


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH), inline="always")
def _add_k_row(T, Ag, off, Gj, dlam, ridge_wj, j, e, k):
    """``T[a] += (K_j)_ae A_{j k + e}.`` for every ``a``: one row of block ``j`` of the ``A`` sum of
    :func:`group_rows`, ``K_j = dlam G_j - ridge_wj I`` (``Gj`` the block (k, k))."""
    r = j * k + e
    x = Ag[off[r]: off[r] + (j + 1) * k]
    for a in range(k):
        w = dlam * Gj[a, e] - (ridge_wj if a == e else 0.0)
        if w != 0.0:
            _axpy(w, x, T[a, : (j + 1) * k])


@njit(cache=True, nogil=True, inline="always")
def _group_a_row(Ag, off, T, Minv, n, k):
    """Row ``n`` of one group's ``A``: ``Minv T`` left of the diagonal block, ``Minv`` on it."""
    nk = n * k
    for a in range(k):
        r = nk + a
        for col in range(nk):
            acc = 0.0
            for h in range(k):
                acc += Minv[a, h] * T[h, col]
            Ag[off[r] + col] = acc
        for e in range(k):
            Ag[off[r] + nk + e] = Minv[a, e]


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def group_c_rows(n, dlam, Ssym, q0, rho, nu, A, C, sums, off):
    """Row ``n`` of ``C_g`` (and ``b_n``) of every group and replica (:func:`group_rows`)
    when row ``n`` of ``A_g`` is final and only ``S`` and ``nu`` changed (a sweep that keeps the row
    of ``G``: ``A`` and ``R`` depend on ``G`` alone)."""
    asum, bvec = sums
    G, B = A.shape[0], A.shape[1]
    k = asum.shape[3]
    nk = n * k
    n1k = nk + k
    V = np.empty((k, n1k))
    for b in range(B):
        for g in range(G):
            Ag = A[g, b]
            _group_sums(Ag, off, nu, dlam[g], n, b, asum[g], bvec[g])
            for a in range(k):
                for col in range(n1k):
                    V[a, col] = _dot(Ag[off[nk + a]: off[nk + a] + n1k], Ssym[b, col, :n1k])
            _group_c_row(Ag, off, C[g, b], V, dlam[g], n, (asum[g, b], bvec[g, b]), q0, rho[g])


@njit(cache=True, nogil=True, inline="always")
def _group_sums(Ag, off, nu, dlam, n, b, asum, bvec):
    """``asum[b, n] = sum_j A_nj`` and ``bvec[b, n] = dlam sum_j A_nj nu_j`` of one group."""
    k, ks = asum.shape[2], nu.shape[3]
    for a in range(k):
        r = n * k + a
        for e in range(k):
            acc = 0.0
            for j in range(n + 1):
                acc += Ag[off[r] + j * k + e]
            asum[b, n, a, e] = acc
        for f in range(ks):
            acc = 0.0
            for j in range(n + 1):
                for e in range(k):
                    acc += Ag[off[r] + j * k + e] * nu[b, j, e, f]
            bvec[b, n, a, f] = dlam * acc


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH), inline="always")
def _group_c_row(Ag, off, Cg, V, dlam, n, sums, q0, rho):
    """Row ``n`` of one group's ``C`` (:func:`group_rows`) from ``V = A_n. S``: the lower block
    triangle only (nothing reads a group's ``C`` above it; a column write would touch ``n``
    cache lines)."""
    asum, bvec = sums
    k, ks = V.shape[0], bvec.shape[2]
    nk = n * k
    aq = asum[n] @ q0  # (k, k): a_n q0
    br = bvec[n] @ rho  # (k, ks): b_n rho
    for m in range(n + 1):
        am, bm = asum[m], bvec[m]
        for a in range(k):
            for e in range(k):
                r = m * k + e
                acc = dlam * _dot(V[a, : (m + 1) * k], Ag[off[r]: off[r] + (m + 1) * k])
                for f in range(k):
                    acc += aq[a, f] * am[e, f]
                for f in range(ks):
                    acc += br[a, f] * bm[e, f]
                Cg[nk + a, r] = acc
    for a in range(k):
        for e in range(a):
            x = 0.5 * (Cg[nk + a, nk + e] + Cg[nk + e, nk + a])
            Cg[nk + a, nk + e] = x
            Cg[nk + e, nk + a] = x


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH), inline="always")
def _group_r_row(Ag, off, Rg, GhatT, rfac, dlam, n, k):
    """Row ``n`` of one group's ``R`` (:func:`group_rows`): ``sum_{j=m}^n A_nj Ghat_jm`` as dot
    products with the rows of ``Ghat`` transposed."""
    nk = n * k
    n1k = nk + k
    for a in range(k):
        r = nk + a
        for e in range(k):
            acc = Ag[off[r] + nk + e]  # Rt_nm, summed from m = n down
            for m in range(n - 1, -1, -1):
                col = m * k + e
                acc += Ag[off[r] + col]
                h = _dot(Ag[off[r] + m * k: off[r] + n1k], GhatT[col, m * k: n1k])
                Rg[r, col] = rfac[m] * acc - dlam * h
            Rg[r, nk + e] = 1.0 if a == e else 0.0


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH), inline="always")
def _field_row(L, Z, b, p, row0, k, out, q):
    """``out[q, a] = sum_i L[b, row0 + a, i] Z[p, i]`` (the field of path ``p`` at one grid point)."""
    for a in range(k):
        row = row0 + a
        acc = 0.0
        for i in range(row + 1):
            acc += L[b, row, i] * Z[p, i]
        out[q, a] = acc


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def grid_field(L, Z, row0, k, Pb, paths, out):
    """``out[q, a] = sum_i L[b, row0 + a, i] Z[p, i]`` for ``p = paths[q]``, ``b = p // Pb``."""
    for q in range(paths.size):
        p = paths[q]
        _field_row(L, Z, p // Pb, p, row0, k, out, q)


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def grid_fields(L, Z, row0, row1, k, Pb, paths, out0, out1):
    """:func:`grid_field` at two rows of the factor, ``out0`` from ``row0`` and ``out1`` from
    ``row1``, in one pass over the paths: the second sum finds the path's ``Z`` row in the
    cache. Each sum is the loop of :func:`grid_field`, so the numbers are its numbers."""
    for q in range(paths.size):
        p = paths[q]
        _field_row(L, Z, p // Pb, p, row0, k, out0, q)
        _field_row(L, Z, p // Pb, p, row1, k, out1, q)


@njit(cache=True, nogil=True)
def shared_response(R, n, lt, cells, lams, out):
    """``out[b, l] = R_b(t, s_l)`` (:func:`_rinterp`) at ``t = t_{n-1} + lt dt`` and
    ``s_l = t_{cells[l]-1} + lams[l] dt`` for ``l < out.shape[1]``: the response between an
    event and the earlier ones when every path has its events at the same times (dense
    drivers), computed once per replica instead of once per path."""
    for b in range(R.shape[0]):
        for l in range(out.shape[1]):
            _rinterp(R[b], n, lt, cells[l], lams[l], out[b, l])


@njit(cache=True, inline="always")
def _add_block_to_earlier(Y, Rm, top, bot, k, M, Acc):
    """``Acc_i += sum_{bot<=l<=top} Y_l Rm[l, i]`` for every ``i < bot`` (the block of four
    rows ``l`` of :func:`dense_tangents`): four ``Acc_i`` per pass, so that each ``Y`` value
    loaded serves four of them, then the rest one at a time; each ``Acc_i`` sums its rows in
    the same order either way."""
    for i in range(0, bot - 3, 4):
        for a in range(k):
            for h in range(k):
                for e in range(k):
                    w0, w1 = Rm[top, i, h, e], Rm[top - 1, i, h, e]
                    w2, w3 = Rm[top - 2, i, h, e], Rm[bot, i, h, e]
                    v0, v1 = Rm[top, i + 1, h, e], Rm[top - 1, i + 1, h, e]
                    v2, v3 = Rm[top - 2, i + 1, h, e], Rm[bot, i + 1, h, e]
                    u0, u1 = Rm[top, i + 2, h, e], Rm[top - 1, i + 2, h, e]
                    u2, u3 = Rm[top - 2, i + 2, h, e], Rm[bot, i + 2, h, e]
                    x0, x1 = Rm[top, i + 3, h, e], Rm[top - 1, i + 3, h, e]
                    x2, x3 = Rm[top - 2, i + 3, h, e], Rm[bot, i + 3, h, e]
                    for m in range(M):
                        y0, y1, y2, y3 = Y[top, a, h, m], Y[top - 1, a, h, m], Y[top - 2, a, h, m], Y[bot, a, h, m]
                        Acc[i, a, e, m] += y0 * w0 + y1 * w1 + y2 * w2 + y3 * w3
                        Acc[i + 1, a, e, m] += y0 * v0 + y1 * v1 + y2 * v2 + y3 * v3
                        Acc[i + 2, a, e, m] += y0 * u0 + y1 * u1 + y2 * u2 + y3 * u3
                        Acc[i + 3, a, e, m] += y0 * x0 + y1 * x1 + y2 * x2 + y3 * x3
    for i in range(bot - bot % 4, bot):
        for a in range(k):
            for h in range(k):
                for e in range(k):
                    w0, w1 = Rm[top, i, h, e], Rm[top - 1, i, h, e]
                    w2, w3 = Rm[top - 2, i, h, e], Rm[bot, i, h, e]
                    for m in range(M):
                        Acc[i, a, e, m] += (Y[top, a, h, m] * w0 + Y[top - 1, a, h, m] * w1
                                            + Y[top - 2, a, h, m] * w2 + Y[bot, a, h, m] * w3)


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def dense_tangents(Rm, j, c, hzT, dzT, gpT, gp0T, Y, Acc, out, out0, seeds, noise):
    """``out[i] = sum_m g'_j(m) psi_ji(m)`` (``i <= j``) over the tangent paths ``m`` of one
    replica, with ``Psi = (I - T)^-1`` backwards from the shared ``Rm[l, i] = R(s_l, s_i)``
    (see :func:`sample_cell_dense`): ``Y_j = I``, ``Y_l = c (dz_l Acc_l + hz_{l+1} Y_{l+1}) g'_l`` for
    ``l = j - 1 .. 0`` (``hz_{l+1}`` the coefficient of ``g_l`` in ``r(s_{l+1}-)``), each
    ``Y_l`` adding ``Y_l Rm[l, i]`` to ``Acc_i`` (``i < l``). ``out0 = sum_m g'_j(m)
    psi_j0(m) c hz_0(m) g'(r(t_0))(m)``: the response to the start ``r(t_0)``, which event 0's
    ``r(s_0-)`` holds through ``hz_0 g(r(t_0))`` (``gp0T`` (k, k, M) the ``g'`` there).

    Paths are the last (contiguous) axis, so every update is a long vector loop and the
    recursion's latency is shared by the block. The ``l`` are taken in blocks of four: a
    block's rows are added to every earlier ``Acc_i`` in one pass, which reads and writes
    ``Acc`` once per four rows instead of once per row, and four ``Acc_i`` at a time, so each
    ``Y`` value loaded serves four of them (each ``Acc_i`` sums in the same order either way).
    dzT, hzT: (>= j, M), (>= j + 1, M); gpT: (>= j + 1, k, k, M); Y, Acc: (>= j + 1, k, k, M) work space;
    out: (>= j + 1, k, k); out0: (k, k).

    ``seeds`` (>= j, k, k, M; none: 0 rows): the boundary terms' seeds (:func:`sample_cell_dense`,
    "Ghosts"), ``Y_l += seed_l``, with ``g'_j`` in ``Y_j`` (the seeds are responses of the force
    at ``j``, not of ``r``), so that ``out`` is ``sum_m Y_i`` and each seed reaches every kick
    before its touch through the path's tangents.

    ``noise = (dzd, hzd, gnT, gn0T)`` (``gnT`` with 0 rows: none): SME with a signed noise
    coefficient (:func:`sample_cell_dense`, "Signed noise"), whose drift and noise have different
    ``g'``. Then ``dzT``, ``hzT`` hold the noise parts of ``dz`` and ``hz`` and ``dzd``, ``hzd``
    (>= j + 1,) their drift parts, ``gpT``, ``gp0T`` the drift's ``g'`` and ``gnT``, ``gn0T`` the
    noise's: ``Y_l = c ((dzd_l Acc_l + hzd_{l+1} Y_{l+1}) g'_l + (dz_l Acc_l + hz_{l+1} Y_{l+1}) gn'_l)``.
    """
    k = gpT.shape[1]
    M = gpT.shape[3]
    seeded = seeds.shape[0] > 0
    dzd, hzd, gnT, gn0T = noise
    split = gnT.shape[0] > 0
    Acc[: j + 1] = 0.0
    top = j
    while top >= 0:
        bot = max(top - 3, 0)
        for l in range(top, bot - 1, -1):
            if l == j:
                for a in range(k):
                    for e in range(k):
                        if seeded:
                            Y[l, a, e, :] = gpT[l, a, e, :]
                        else:
                            Y[l, a, e, :] = 1.0 if a == e else 0.0
            else:
                for a in range(k):
                    for e in range(k):
                        for m in range(M):
                            Y[l, a, e, m] = seeds[l, a, e, m] if seeded else 0.0
                        for h in range(k):
                            if split:
                                dd, hd = dzd[l], hzd[l + 1]
                                for m in range(M):
                                    Y[l, a, e, m] += c * ((dd * Acc[l, a, h, m] + hd * Y[l + 1, a, h, m]) * gpT[l, h, e, m]
                                                          + (dzT[l, m] * Acc[l, a, h, m] + hzT[l + 1, m] * Y[l + 1, a, h, m])
                                                          * gnT[l, h, e, m])
                            else:
                                for m in range(M):
                                    Y[l, a, e, m] += (c * (dzT[l, m] * Acc[l, a, h, m] + hzT[l + 1, m] * Y[l + 1, a, h, m])
                                                      * gpT[l, h, e, m])
            for i in range(bot, l):  # inside the block (a short block is the last one: bot = 0)
                for a in range(k):
                    for h in range(k):
                        for e in range(k):
                            w = Rm[l, i, h, e]
                            for m in range(M):
                                Acc[i, a, e, m] += Y[l, a, h, m] * w
        if bot > 0:
            _add_block_to_earlier(Y, Rm, top, bot, k, M, Acc)
        top = bot - 1
    for i in range(j + 1):
        for a in range(k):
            for e in range(k):
                acc = 0.0
                if seeded:
                    for m in range(M):
                        acc += Y[i, a, e, m]
                else:
                    for h in range(k):
                        for m in range(M):
                            acc += gpT[j, a, h, m] * Y[i, h, e, m]
                out[i, a, e] = acc
    # psi_j,start = psi_j0 c hz_0 g'(r(t_0)), in Acc[0] (free once the recursion is done)
    for a in range(k):
        for e in range(k):
            for m in range(M):
                Acc[0, a, e, m] = 0.0
            for h in range(k):
                if split:
                    for m in range(M):
                        Acc[0, a, e, m] += c * Y[0, a, h, m] * (hzd[0] * gp0T[h, e, m] + hzT[0, m] * gn0T[h, e, m])
                else:
                    for m in range(M):
                        Acc[0, a, e, m] += c * hzT[0, m] * Y[0, a, h, m] * gp0T[h, e, m]
    for a in range(k):
        for e in range(k):
            acc = 0.0
            if seeded:
                for m in range(M):
                    acc += Acc[0, a, e, m]
            else:
                for h in range(k):
                    for m in range(M):
                        acc += gpT[j, a, h, m] * Acc[0, h, e, m]
            out0[a, e] = acc


@njit(cache=True, inline="always")
def _add_response(Rt, force, f, k, r):
    """``r += f Rt force``: one earlier event's term of the field (``Rt`` its response)."""
    for a in range(k):
        acc = 0.0
        for e in range(k):
            acc += Rt[a, e] * force[e]
        r[a] += f * acc


@njit(cache=True, inline="always")
def _kink_points(kinks, pl, p, b, r, k, rk2):
    """The distance ``x = a . r - off[p]`` of ``r`` to kink plane ``pl`` (kept in
    ``kinks[3][p, pl]``) and, within 8 widths of it, the two points ``rk2`` at ``-+1e-7 (1 +
    |x|)`` on either side of the plane's point nearest ``r``, where the caller evaluates the
    gradient; False beyond (no smoothing). A negative width (the boundary terms, no smoothing):
    True only where the path crossed the plane since its previous event (``kinks[4][p, pl]``)."""
    ka, koff, kwidth, kx, kxp = kinks
    x = -koff[p, pl]
    a2 = 0.0
    for a in range(k):
        x += ka[pl, a] * r[a]
        a2 += ka[pl, a] * ka[pl, a]
    kx[p, pl] = x
    width = kwidth[b, pl]
    if width < 0.0:
        if x * kxp[p, pl] >= 0.0:
            return False
    elif width == 0.0 or abs(x) >= 8.0 * width:
        return False
    # the jump J of l' across the plane, at the point of the plane nearest r
    hstep = 1e-7 * (1.0 + abs(x)) / math.sqrt(a2)
    for side in range(2):
        sg = 1.0 if side == 0 else -1.0
        for a in range(k):
            rk2[side, a] = r[a] + (sg * hstep - x / a2) * ka[pl, a]
    return True


@njit(cache=True, inline="always")
def _kink_sign(kinks, p, r, k):
    """``s(r) = prod_i sign(a[i] . r - off[p, i])`` over the kink planes: ``s l'`` is continuous
    across planes where ``l'`` flips its sign (a signed noise, :func:`sample_cell_dense`)."""
    ka, koff = kinks[0], kinks[1]
    s = 1.0
    for pl in range(ka.shape[0]):
        x = -koff[p, pl]
        for a in range(k):
            x += ka[pl, a] * r[a]
        if x < 0.0:
            s = -s
    return s


@njit(cache=True, inline="always")
def _kink_smooth(kinks, pl, p, b, gk, k, gv, H):
    """``l' += J (Phi(x / h) - 1[x > 0])``, ``l'' += J a^T phi(x / h) / h`` at plane ``pl``, with
    ``J = gk[0] - gk[1]`` the jump of ``l'`` across it (:func:`_kink_points`). A negative width:
    the kinked path crossed the plane between its events, and its ``l''`` gets the Dirac part
    integrated over the crossing, ``J a^T / |x - x_prev|`` (the saltation of a crossing at the
    speed the two events give; an unbiased estimate of the density at the plane for any step)."""
    ka, _, kwidth, kx, kxp = kinks
    x = kx[p, pl]
    width = kwidth[b, pl]
    if width < 0.0:
        inv = 1.0 / abs(x - kxp[p, pl])
        for a in range(k):
            jump = gk[0, a] - gk[1, a]
            for e in range(k):
                H[a, e] += jump * ka[pl, e] * inv
        return
    u = x / width
    cdf = 0.5 * (1.0 + math.erf(u * 0.7071067811865476)) - (1.0 if x > 0.0 else 0.0)
    pdf = 0.3989422804014327 * math.exp(-0.5 * u * u) / width
    for a in range(k):
        jump = gk[0, a] - gk[1, a]
        gv[a] += jump * cdf
        for e in range(k):
            H[a, e] += jump * ka[pl, e] * pdf


@njit(cache=True, inline="always")
def _tangent_row(psp, M, gpj, j, f, winv, cells, lams, k, acc1, X, dGm, dGp):
    """Row ``j`` of a Poisson path's packed tangents ``psp`` from the earlier rows,
    ``psi_ji = sum_{l<j} M_l psi_li`` (``M_l = c R(s_j, s_l) g'_l dz_l``, and ``psi_jj = I``),
    and its share of the row of ``G``: ``X_i = f g'_j psi_ji winv`` to the hat functions of
    event ``i``'s cell (``lam_i`` to its right node in ``dGm``, ``1 - lam_i`` to its left in
    ``dGp``)."""
    kk = k * k
    base = j * (j + 1) // 2
    ps1 = psp
    for i in range(j + 1):
        acc1[i] = 0.0
        for a in range(k):
            for e in range(k):
                psp[(base + i) * kk + a * k + e] = 0.0
    # looping l outside for contiguous rows
    for l in range(j):
        bl = l * (l + 1) // 2
        if k == 1:
            ml = M[l, 0, 0]
            if ml != 0.0:
                for i in range(l + 1):
                    acc1[i] += ml * ps1[bl + i]
        else:
            for i in range(l + 1):
                for a in range(k):
                    for h in range(k):
                        mah = M[l, a, h]
                        for e in range(k):
                            psp[(base + i) * kk + a * k + e] += mah * psp[(bl + i) * kk + h * k + e]
    if k == 1:
        for i in range(j):
            ps1[base + i] = acc1[i]
    for a in range(k):
        psp[(base + j) * kk + a * k + a] = 1.0
    for i in range(j + 1):
        for a in range(k):
            for e in range(k):
                acc = 0.0
                for h in range(k):
                    acc += gpj[a, h] * psp[(base + i) * kk + h * k + e]
                X[a, e] = f * acc * winv
        ci = cells[i]
        li = lams[i]
        for a in range(k):
            for e in range(k):
                dGm[ci, a, e] += li * X[a, e]
                dGp[ci - 1, a, e] += (1.0 - li) * X[a, e]


@njit(cache=True, inline="always")
def _add_cell_sums(b, p, dFp, qv, wstar, inv, k, dFF, QV, dPhi):
    """A path's share of ``dFF = E[dF dF^T] (+ the noise's c^2 dz_var gn gn^T in qv)``, of the
    quadratic variation's mean ``QV`` and of ``dPhi = E[dF w*^T]``."""
    for a in range(k):
        for e in range(k):
            dFF[b, a, e] += (dFp[a] * dFp[e] + qv[a, e]) * inv
            QV[b, a, e] += qv[a, e] * inv
        for e in range(wstar.shape[1]):
            dPhi[b, a, e] += dFp[a] * wstar[p, e] * inv


def sample_cell_poisson(params, cell, active, events, fields, R, labels, path_state, sums, kinks, bridges):
    """Advance every active path of the Poisson driver (SGD) over the cell ``(t_{n-1}, t_n]``.

    ``cell = (n, c, Pb, tstride, with_tangents)``; ``active = (paths, lo, hi)``: the sorted active paths and
    their events ``lo[q] <= j < hi[q]`` in the cell; ``events = (ev_cell, ev_lam, ev_dz)``;
    ``fields = (Wprev, Wnew)``, the paths' Gaussian fields at ``t_{n-1}`` and ``t_n``;
    ``labels = (y, wstar)``; ``path_state = (g, gp, psi, psi_at)``: tangent path ``m``'s packed
    triangle is ``psi[psi_at[m]:psi_at[m + 1]]`` (its own number of events); ``sums = (dGm, dGp,
    dS, dFF, dPhi, QV)``; ``bridges = (ev_zeta, bridge)``: standard normals per event (P, J, k) and
    the square root ``bridge`` (B, k, k) of the field's quadratic variation over a cell.

    For event ``j`` of path ``p`` at ``s_j = t_{n-1} + lam_j dt``:
    ``r(s_j-) = w(s_j) + c sum_{i<j} R(s_j, s_i) g_i dz_i`` with ``w`` linear in time
    between ``Wprev[q]`` (``t_{n-1}``) and ``Wnew[q]`` (``t_n``) plus ``bridge b(lam_j)``, a
    standard Brownian bridge on the cell drawn in the order of the path's events there
    (``b(lam_j)`` given ``b(lam_{j-1})``: mean ``b(lam_{j-1}) (1 - lam_j)/(1 - lam_{j-1})``,
    variance ``(lam_j - lam_{j-1})(1 - lam_j)/(1 - lam_{j-1})``); ``g = -l'``, ``g' = -l''``;
    tangents ``psi_ji = sum_{i<=l<j} c R(s_j, s_l) g'_l dz_l psi_li``, ``psi_jj = I``, kept in
    tangent path ``p // tstride`` of ``psi`` and formed from the earlier rows (forward, :func:`_tangent_row`;
    none with ``with_tangents`` false: a sweep that keeps the predicted ``G`` row).
    Accumulates (divided by the replica size ``Pb``) the increments of
    ``G(t_n, .)`` on the hat functions of the grid (``dGm``: weight ``lam`` to the cell's
    right node, ``dGp``: ``1 - lam`` to its left node), ``dS[b, m] = E[dF (c g dz)^T]``
    over committed events in cell ``m`` (its cumulative sum is ``E[dF F(t_m)^T]``),
    ``dFF = E[dF dF^T]``, ``dPhi = E[dF w*^T]``, with ``dF = sum_j c g_j dz_j`` the path's
    force increment over the cell. Only every ``tstride``-th path carries tangents; its ``G``
    increments are weighted by ``tstride / Pb``. The replicas run in parallel (with
    ``specialise(..., parallel=True)``), each replica's paths in order. Kink planes
    (``kinks = (a, off, width, x)``): see :func:`sample_cell_dense`.
    """
    # K (= Wprev.shape[1]) is bound as a constant by specialise: the k x k loops unroll
    k = K  # noqa: F821
    n, c, Pb, tstride, with_tangents = cell
    paths, lo, hi = active
    ev_cell, ev_lam, ev_dz = events
    Wprev, Wnew = fields
    y, wstar = labels
    g, gp, psi, psi_at = path_state
    dGm, dGp, dS, dFF, dPhi, QV = sums
    ev_zeta, bridge = bridges
    Jmax = ev_cell.shape[1]
    inv = 1.0 / Pb
    B = dGm.shape[0]
    # replica b's active paths are paths[first[b]:first[b + 1]]; a path writes only its own
    # rows and its replica's sums, so the replicas are independent
    first = np.searchsorted(paths // Pb, np.arange(B + 1))
    for b in prange(B):
        Rt = np.empty((k, k))
        r = np.empty(k)
        bb = np.empty(k)
        gv = np.empty(k)
        H = np.empty((k, k))
        M = np.empty((Jmax, k, k))
        acc1 = np.empty(Jmax + 1)
        X = np.empty((k, k))
        dFp = np.empty(k)
        qv = np.zeros((k, k))  # dFF has no noise term besides the jumps
        rk2 = np.empty((2, k))
        gk = np.empty((2, k))
        for q in range(first[b], first[b + 1]):
            p = paths[q]
            Rb = R[b]
            yp = y[p]
            tang = with_tangents and p % tstride == 0
            for a in range(k):
                dFp[a] = 0.0
                bb[a] = 0.0
            lb = 0.0  # the bridge's last position in the cell
            for j in range(lo[q], hi[q]):
                lt = ev_lam[p, j]
                shrink = (1.0 - lt) / (1.0 - lb) if lb < 1.0 else 0.0
                sd = math.sqrt(max((lt - lb) * shrink, 0.0))
                for a in range(k):
                    bb[a] = shrink * bb[a] + sd * ev_zeta[p, j, a]
                lb = lt
                for a in range(k):
                    r[a] = (1.0 - lt) * Wprev[q, a] + lt * Wnew[q, a]
                    for e in range(k):
                        r[a] += bridge[b, a, e] * bb[e]
                for l in range(j):
                    _rinterp(Rb, n, lt, ev_cell[p, l], ev_lam[p, l], Rt)
                    f = c * ev_dz[p, l]
                    _add_response(Rt, g[p, l], f, k, r)
                    if tang:
                        for a in range(k):
                            for e in range(k):
                                acc = 0.0
                                for h in range(k):
                                    acc += Rt[a, h] * gp[p, l, h, e]
                                M[l, a, e] = f * acc
                grad(r, yp, params, gv)  # noqa: F821 (bound by specialise)
                hess(r, yp, params, H)  # noqa: F821
                for pl in range(kinks[0].shape[0]):
                    if _kink_points(kinks, pl, p, b, r, k, rk2):
                        grad(rk2[0], yp, params, gk[0])  # noqa: F821
                        grad(rk2[1], yp, params, gk[1])  # noqa: F821
                        _kink_smooth(kinks, pl, p, b, gk, k, gv, H)
                for a in range(k):
                    g[p, j, a] = -gv[a]
                    for e in range(k):
                        gp[p, j, a, e] = -H[a, e]
                f = c * ev_dz[p, j]
                for a in range(k):
                    dFp[a] += f * g[p, j, a]
                    for e in range(k):  # the jumps' quadratic variation
                        QV[b, a, e] += f * f * g[p, j, a] * g[p, j, e] * inv
                if tang:
                    tp = p // tstride
                    _tangent_row(psi[psi_at[tp]:psi_at[tp + 1]], M, gp[p, j], j, f, tstride * inv, ev_cell[p],
                                 ev_lam[p], k, acc1, X, dGm[b], dGp[b])
            # E[dF (c g_i dz_i)^T] at the cell of every committed event i: its cumulative sum
            # over cells is E[dF F(t_m)^T] (F is piecewise constant), O(J) per path
            for i in range(lo[q]):
                f = c * ev_dz[p, i]
                ci = ev_cell[p, i]
                for a in range(k):
                    for e in range(k):
                        dS[b, ci, a, e] += dFp[a] * f * g[p, i, e] * inv
            _add_cell_sums(b, p, dFp, qv, wstar, inv, k, dFF, QV, dPhi)


@njit(cache=True, inline="always")
def _gather(src, m0, out):
    """``out[l, a, e, m] = src[l, a, e, m0 + m]``: a block of tangent paths (the last axis) of
    ``out``'s rows, contiguous for the recursion."""
    for l in range(out.shape[0]):
        for a in range(out.shape[1]):
            for e in range(out.shape[2]):
                for m in range(out.shape[3]):
                    out[l, a, e, m] = src[l, a, e, m0 + m]


@njit(cache=True, nogil=True, fastmath=set(_config.FASTMATH))
def chunked_tangents(Rm, j, c, tangent_paths, chunk, out, out0):
    """:func:`dense_tangents` over the tangent paths ``(dzT, hzT, gpT, gp0T, seedT, seed0T, noise)`` of one
    replica (``noise = (dzd, hzd, gnT, gn0T)``, :func:`dense_tangents`)
    in blocks of ``chunk`` paths, each gathered into contiguous work arrays: the sums over
    paths ``out`` (>= j + 1, k, k) and ``out0`` (k, k) are the blocks' sums. The recursion
    reads and writes its ``Acc`` once per four rows; a block small enough for the cache
    keeps those passes out of main memory. It runs in single precision (the gathered paths
    and a copy of ``Rm``); ``out`` and ``out0`` sum over paths in double."""
    dzT, hzT, gpT, gp0T, seedT, seed0T, noise = tangent_paths
    seeded = seedT.shape[0] > 0
    dzd, hzd, gnT, gn0T = noise
    split = gnT.shape[0] > 0
    k = gpT.shape[1]
    M = gpT.shape[3]
    part = np.empty((j + 1, k, k))
    part0 = np.empty((k, k))
    out[: j + 1] = 0.0
    out0[:] = 0.0
    # the recursion in single precision (its sums over paths in double): twice the lanes of a
    # vector and half the bytes; its rounding is far below the Monte-Carlo error of the paths
    # (docs/dmft_theory.md, "Estimators")
    f4 = np.float32
    R4 = np.empty((j + 1, j + 1, k, k), f4)
    for l in range(j + 1):
        for i in range(j + 1):
            for a in range(k):
                for e in range(k):
                    R4[l, i, a, e] = Rm[l, i, a, e]
    c4 = f4(c)
    dzd4, hzd4 = dzd[: j + 1].astype(f4), hzd[: j + 2].astype(f4)
    # work arrays of a full block, allocated once: fresh ones per block cost more than the
    # gather itself (page faults of new memory; half the time of the row at j = 100, k = 2)
    full = min(chunk, M)
    work = (np.empty((j + 1, full), f4), np.empty((j + 1, full), f4), np.empty((j + 1, k, k, full), f4),
            np.empty((k, k, full), f4), np.empty((j + 1, k, k, full), f4), np.empty((j + 1, k, k, full), f4))
    for m0 in range(0, M, chunk):
        mc = min(chunk, M - m0)  # exact sizes: contiguous arrays keep the path loops vectorised
        if mc == full:
            dz, hz, gp, gp0, Y, Acc = work
        else:
            dz, hz = np.empty((j + 1, mc), f4), np.empty((j + 1, mc), f4)
            gp, gp0 = np.empty((j + 1, k, k, mc), f4), np.empty((k, k, mc), f4)
            Y, Acc = np.empty((j + 1, k, k, mc), f4), np.empty((j + 1, k, k, mc), f4)
        for l in range(j + 1):
            for m in range(mc):
                dz[l, m] = dzT[l, m0 + m]
                hz[l, m] = hzT[l, m0 + m]
        _gather(gpT, m0, gp)
        _gather(gp0T.reshape((1, k, k, gp0T.shape[2])), m0, gp0.reshape((1, k, k, mc)))
        sd = np.empty((j + 1 if seeded else 0, k, k, mc), f4)
        _gather(seedT, m0, sd)
        gn = np.empty((j + 1 if split else 0, k, k, mc), f4)
        gn0 = np.empty((1, k, k, mc if split else 0), f4)
        _gather(gnT, m0, gn)
        _gather(gn0T.reshape((1, k, k, gn0T.shape[2])), m0, gn0)
        dense_tangents(R4, j, c4, hz, dz, gp, gp0, Y, Acc, part, part0, sd, (dzd4, hzd4, gn, gn0[0]))
        if seeded:  # the starts' ghosts: the kick at t_0 only
            for a in range(k):
                for e in range(k):
                    acc = 0.0
                    for m in range(mc):
                        acc += seed0T[a, e, m0 + m]
                    part0[a, e] += acc
        out[: j + 1] += part
        out0 += part0


@njit(cache=True, inline="always")
def _replica_tangents(Rm, j, c, f, tangent_paths, chunk, cells, lams, k, dGm, dGp):
    """One replica's share of the row of ``G`` from its tangent paths (dense drivers, event
    ``j`` of every path in cell ``j + 1``): ``out_i = sum_m g'_j(m) psi_ji(m)`` by
    :func:`dense_tangents`, weighted by ``f`` to the hat functions of event ``i``'s cell, and
    the response to the start ``r(t_0)`` on the right of node 0 (``tangent_paths`` one
    replica's ``(dzT, hzT, gpT, gp0T, seedT, seed0T, noise)``, taken ``chunk`` at a time)."""
    out = np.empty((j + 1, k, k))
    out0 = np.empty((k, k))
    chunked_tangents(Rm, j, c, tangent_paths, chunk, out, out0)
    for i in range(j + 1):
        ci = cells[i]
        li = lams[i]
        for a in range(k):
            for e in range(k):
                dGm[ci, a, e] += li * f * out[i, a, e]
                dGp[ci - 1, a, e] += (1.0 - li) * f * out[i, a, e]
    for a in range(k):
        for e in range(k):
            dGp[0, a, e] += f * out0[a, e]


@njit(cache=True, inline="always")
def _responses_by_output(Rmid_j, j, k):
    """``Rt[a, l k + e] = R(s_j, s_l)[a, e]`` (k, j k) from the shared ``Rmid_j[l] = R(s_j, s_l)``:
    one contiguous row per output ``a``, so that a path's memory term ``sum_{l<j} R(s_j, s_l)
    fev_l`` is ``k`` dot products with its flattened forces (vectorised; the (l, a, e) order
    of ``Rmid`` would make them strided sums)."""
    Rt = np.empty((k, j * k))
    for l in range(j):
        for a in range(k):
            for e in range(k):
                Rt[a, l * k + e] = Rmid_j[l, a, e]
    return Rt


@njit(cache=True, inline="always")
def _add_half_cell_noise(zeta_pj, bridge_b, own, g_last, k, r):
    """SME: the noise of the first half cell, ``own zeta_0 g_{j-1} + bridge zeta_{1:}``."""
    for a in range(k):
        r[a] += own * zeta_pj[0] * g_last[a]
        for e in range(k):
            r[a] += bridge_b[a, e] * zeta_pj[1 + e]


@njit(cache=True, inline="always")
def _add_event_force(gj, sj, H, damp, dz, moments, k, gn, fevj, dFp, qv):
    """The event's self-damped noise force ``gn = (I - damp l'') s`` (``s`` the noise's force,
    ``g`` itself but for a signed noise, ``H = l''`` its derivative), the path's force
    ``fev = dz_mean g + (dz - dz_mean) gn``, and its share of the cell's ``dF += c dz_mean g``
    and of ``qv += c^2 dz_var gn gn^T``; ``moments = (c, dz_mean, dz_var)``."""
    c, dz_mean, dz_var = moments
    for a in range(k):
        gn[a] = sj[a]
        if damp > 0.0:
            for e in range(k):
                gn[a] -= damp * H[a, e] * sj[e]
    for a in range(k):
        fevj[a] = dz_mean * gj[a] + (dz - dz_mean) * gn[a]
    f = c * dz_mean
    for a in range(k):
        dFp[a] += f * gj[a]
        for e in range(k):
            qv[a, e] += c * c * dz_var * gn[a] * gn[e]


def sample_cell_dense(params, cell, active, events, fields, R, Rmid, labels, forces, tangent_paths, sums, kinks, mid,
                      tangent_chunk, ghosts):
    """Advance every path of a dense driver (SME, GF) over the cell ``(t_{n-1}, t_n]``: one
    event per path, at the cell's midpoint ``s_j`` (``j = n - 1``), the same for all paths.

    ``cell = (n, c, half, dz_mean, dz_var, Pb, tstride)``; ``active``, ``events``, ``fields``,
    ``labels`` as in :func:`sample_cell_poisson`; ``Rmid[b, j, l]`` (B, N, N, k, k) is
    ``R(s_j, s_l)`` between the shared event times (:func:`shared_response` fills row ``j``
    before the call); ``forces = (g, fev, gs)``; ``tangent_paths = (dzT, hzT, gpT, gp0T, seedT, seed0T, noise)``
    (``noise = (dzd, hzd, gnT, gn0T)``, :func:`dense_tangents`); ``sums =
    (dGm, dGp, dS, dFF, dPhi, QV)``; ``mid = (zeta, bridge, own, damp)``.

    ``r(s_j-) = w(s_j) + c sum_{l<j} R(s_j, s_l) fev_l`` (dot products with the shared
    ``Rmid`` by output, :func:`_responses_by_output`), plus the drift of the first half of
    its own cell, ``c half g_{j-1}``
    (``half = rate dt / 2``; explicit, ``O(dt^2)``; the first event ``c half g(r(t_0))``),
    without which the midpoint scheme is only first order. ``dz_j`` of the cell's event is
    independent of everything the statistics multiply it by (the past of the path, ``g_j``,
    ``psi_j.``), so the statistics average it out exactly (Rao-Blackwell): ``dz_j -> dz_mean``
    in ``G``, ``dS``, ``dPhi`` and ``dz_j^2 -> dz_mean^2 + dz_var`` in ``dFF``. The path
    itself moves with the drawn ``dz_j``: ``fev[p, j]`` is its force. Same expectations, and
    for SME no ``O(sqrt(dt))`` noise in them (GF: ``dz_var = 0``).
    SME (``own > 0``; docs/dmft_theory.md, "Discretisation"): ``r(s_j-)`` also gets the noise
    of the first half cell, the path's own ``own zeta[p, j, 0] g_{j-1}`` (``own = c sqrt(rate
    dt / 2)``) and the field's Brownian bridge ``bridge[b] zeta[p, j, 1:]``, from standard
    normals independent of ``dz_j`` (so ``g_j`` does not anticipate it); the noise part of
    ``dz_j`` acts through the self-damped force ``gn_j = (I - damp l''_j) g_j`` (``damp = c
    half``: the drift the cell's own noise changes before the cell ends), ``fev_j = dz_mean
    g_j + (dz_j - dz_mean) gn_j`` and ``c^2 dz_var gn_j gn_j^T`` in ``dFF``; ``QV[b]``
    accumulates the latter's mean, the increment of ``F``'s quadratic variation over the cell.
    GF: ``own = damp = 0``.
    Tangents (``tangent_chunk`` paths at a time, :func:`chunked_tangents`; 0: ``dGm``, ``dGp``
    stay unset, the caller's predictor sweep):
    row ``j`` is found backwards, without storing the earlier rows: ``Psi = (I - T)^-1`` with
    ``T_li = c R(s_l, s_i) g'_i dz_i (+ c half g'_i if l = i + 1)``, so ``Y_i = psi_ji``
    solves ``Y_i = delta_ij I + sum_{i<l<=j} Y_l T_li`` (:func:`dense_tangents`, all tangent
    paths of a replica at once, :func:`_replica_tangents`): it streams the replica's ``Rmid``
    (cache-resident) instead of every path's ``O(j^2)`` triangle from memory. The tangent
    paths ``m`` (path ``b Pb + m tstride``) are the last axis: ``dzT[b, l, m]``,
    ``hzT[b, l, m]`` (B, N, Mt; the coefficient of ``g_{l-1}`` in ``r(s_l-)``: ``half``, plus
    ``own zeta`` for SME), filled by the caller, and ``gpT[b, l, :, :, m]`` (B, N, k, k, Mt),
    whose row ``j`` is written here; ``gp0T[b, :, :, m]`` the ``g'`` at ``r(t_0)``.
    Planes ``a[i] . r = off[p, i]`` across which ``l'`` jumps by ``J`` (``kinks = (a, off,
    width, x)``; ``a`` without rows: none) are smoothed in path and tangents alike: with
    ``x = a[i] . r - off[p, i]`` and ``h = width[b, i]``, ``l' += J (Phi(x / h) - 1[x > 0])``
    and ``l'' += J a[i]^T phi(x / h) / h``, the derivatives of the loss convolved with a
    Gaussian of width ``h`` across the plane (``J`` taken at the nearest point of the plane,
    :func:`_kink_points`). ``x[p, i]`` keeps the path's last ``x`` (the caller's widths).

    Signed noise (SME, every plane one across which ``l'`` flips its sign, as phase retrieval's;
    compiled in where the constant ``SIGNED`` is 1; docs/dmft_theory.md, "Kinks"): a path's noise
    depends on its force only through ``g g^T``, so its force in the noise may be ``s(r) g(r)``
    for any sign ``s`` of the path's past. With ``s = prod_i sign(x_i)`` (:func:`_kink_sign`) and
    the kinked model's ``g``, the noise coefficient is continuous across the planes, and its
    derivative ``s l''`` (the kinked model's, ``Hs``) has no Dirac part: the tangents no longer
    differentiate a jump of the noise, whose smoothed derivative ``J / h`` times the noise is
    heavy-tailed. The drift keeps the smoothed ``g`` and ``l''``. ``gs[p, j]`` (P, N, k) keeps the
    noise's force for the next cell's first half, ``gnT``, ``gn0T`` its ``g'`` on the tangent
    paths, whose ``dzT``, ``hzT`` are then the noise parts of ``dz`` and ``hz`` (:func:`dense_tangents`).

    Ghosts (GF, ``k = 1``, one plane; compiled in where the constant ``GHOSTS`` is 1, so that the
    other solves do not compile them; docs/dmft_theory.md, "Kinks"): the kinked model with each crossing's saltation (width -1), plus the boundary terms
    of the paths whose fate a kick flips. A tangent path that starts near the plane and recedes
    (a start, ``j = 0``) or whose distance ``x`` has a local extremum near it (a touch, at
    ``j - 1``; ``x_e`` from the parabola through three events) gets a pair of ghosts: its field
    shifted by ``-x_e`` so that the extremum lies on the plane, one nudged across, one back,
    each then advanced with its own force and memory. The difference of their forces at each
    later event, times a density at the plane, seeds the tangents at the touch (``seedT``; a
    start's reaches the kick at ``t_0`` alone, ``seed0T``). Starts take the Gaussian ``K`` of
    width ``hb``; touches, which lie on one side of their boundary, the local-linear boundary
    kernel ``K (a2 - a1 |x_e|) / (a0 a2 - a1^2)``. Touches of one path with no crossing between
    them and no rise of ``x`` above ``rise hb`` over the lowest so far form a cluster, which
    holds one slot, at its lowest touch. ``ghosts = (xp2, tau, weight, offset, start, dforce,
    hb, open_slot, open_min, rise)``: the path's ``x`` two events back (P, 1); per slot (P, G)
    the touch's event (-1 free), its density weight (sign included), ``x_e``, 1 for a start;
    the ghosts' force changes ``dforce`` (B Mt, G, 2, N + 1, 1) by tangent path; ``hb`` (B,);
    the path's open cluster (its slot or -1) and its lowest ``|x_e|``; ``rise``.
    """
    # about 80 lines: the model's grad and hess calls stay in the template (specialise binds
    # them), the model-free steps around them are the inline helpers above
    k = K  # noqa: F821 (bound by specialise)
    n, c, half, dz_mean, dz_var, Pb, tstride = cell
    paths, lo, hi = active
    ev_cell, ev_lam, ev_dz = events
    Wprev, Wnew = fields
    y, wstar = labels
    g, fev, gs = forces
    dzT, hzT, gpT, gp0T, seedT, seed0T, noise = tangent_paths
    dzd, hzd, gnT, gn0T = noise
    dGm, dGp, dS, dFF, dPhi, QV = sums
    zeta, bridge, own, damp = mid
    inv = 1.0 / Pb
    B = dGm.shape[0]
    first = np.searchsorted(paths // Pb, np.arange(B + 1))  # see sample_cell_poisson
    jn = n - 1  # every path's one event
    fev2 = fev.reshape((fev.shape[0], fev.shape[1] * k))  # a path's forces (l, e) flattened
    for b in prange(B):
        Rt = _responses_by_output(Rmid[b, jn], jn, k)
        dSt = np.zeros((k, jn * k))  # the replica's dS[b, 1 .. jn] as contiguous rows (a, i k + e)
        r = np.empty(k)
        gv = np.empty(k)
        H = np.empty((k, k))
        dFp = np.empty(k)
        qv = np.empty((k, k))
        rk = np.empty(k)
        rk2 = np.empty((2, k))
        gk = np.empty((2, k))
        g0 = np.empty(k)
        gn = np.empty(k)
        sv = np.empty(k)  # a signed noise's force s(r) g(r) and its l'' (SIGNED)
        Hs = np.empty((k, k))
        gs0 = np.empty(k)
        for q in range(first[b], first[b + 1]):
            p = paths[q]
            yp = y[p]
            tang = tangent_chunk > 0 and p % tstride == 0  # g' is only read by this sweep's tangents
            for a in range(k):
                dFp[a] = 0.0
                for e in range(k):
                    qv[a, e] = 0.0
            for j in range(lo[q], hi[q]):
                lt = ev_lam[0, j]  # the cell midpoint, the same for every path: no row to fetch per path
                for a in range(k):
                    r[a] = (1.0 - lt) * Wprev[q, a] + lt * Wnew[q, a]
                for a in range(k):
                    r[a] += c * _dot(Rt[a, : j * k], fev2[p, : j * k])
                # half > 0 always here: the guards pin the instructions LLVM picks for these sums,
                # and so their rounding (benchmarks/before_after.py holds the numbers)
                if half > 0.0 and j >= 1:
                    for a in range(k):
                        r[a] += c * half * g[p, j - 1, a]
                if half > 0.0 and j == 0:  # the first half cell's force, at r(t_0) = w(t_0)
                    for a in range(k):
                        rk[a] = Wprev[q, a]
                    grad(rk, yp, params, g0)  # noqa: F821
                    for a in range(k):
                        g0[a] = -g0[a]
                        r[a] += c * half * g0[a]
                    s0 = 1.0
                    if SIGNED:  # noqa: F821 (bound by specialise: docstring "Signed noise")
                        s0 = _kink_sign(kinks, p, rk, k)
                        for a in range(k):
                            gs0[a] = s0 * g0[a]
                    if tang:
                        hess(rk, yp, params, H)  # noqa: F821
                        for a in range(k):
                            for e in range(k):
                                gp0T[b, a, e, (p - b * Pb) // tstride] = -H[a, e]
                                if SIGNED:  # noqa: F821
                                    gn0T[b, a, e, (p - b * Pb) // tstride] = -s0 * H[a, e]
                if own > 0.0:
                    if SIGNED:  # noqa: F821
                        _add_half_cell_noise(zeta[p, j], bridge[b], own, gs[p, j - 1] if j >= 1 else gs0, k, r)
                    else:
                        _add_half_cell_noise(zeta[p, j], bridge[b], own, g[p, j - 1] if j >= 1 else g0, k, r)
                grad(r, yp, params, gv)  # noqa: F821
                hess(r, yp, params, H)  # noqa: F821
                if SIGNED:  # noqa: F821 (the kinked model's force, before the smoothing below)
                    sg = _kink_sign(kinks, p, r, k)
                    for a in range(k):
                        sv[a] = -sg * gv[a]
                        gs[p, j, a] = sv[a]
                        for e in range(k):
                            Hs[a, e] = sg * H[a, e]
                for pl in range(kinks[0].shape[0]):
                    if _kink_points(kinks, pl, p, b, r, k, rk2):
                        grad(rk2[0], yp, params, gk[0])  # noqa: F821
                        grad(rk2[1], yp, params, gk[1])  # noqa: F821
                        _kink_smooth(kinks, pl, p, b, gk, k, gv, H)
                for a in range(k):
                    g[p, j, a] = -gv[a]
                if tang:  # g' only on the tangent paths
                    for a in range(k):
                        for e in range(k):
                            gpT[b, j, a, e, (p - b * Pb) // tstride] = -H[a, e]
                            if SIGNED:  # noqa: F821
                                gnT[b, j, a, e, (p - b * Pb) // tstride] = -Hs[a, e]
                    if GHOSTS:  # noqa: F821 (bound by specialise: GF's boundary terms, docstring "Ghosts")
                        xp2, tau, weight, offset, start, dforce, hb_b, open_slot, open_min, rise = ghosts
                        ka, koff, _, kx, kxp = kinks
                        m_t = (p - b * Pb) // tstride
                        mg = b * seedT.shape[4] + m_t
                        x0, x1, x2 = kx[p, 0], kxp[p, 0], xp2[p, 0]
                        a0, hb = ka[0, 0], hb_b[b]
                        interior = (j >= 2 and x1 * x0 > 0.0 and x1 * x2 > 0.0 and abs(x1) < abs(x2)
                                    and abs(x1) <= abs(x0))
                        endpoint = j == 0 and x1 * x0 > 0.0 and abs(x1) < abs(x0)  # a start: receding from t_0
                        spawned = -1
                        if (interior or endpoint) and hb > 0.0:
                            xe = x1
                            if interior:  # the parabola through the three events
                                den = x0 - 2.0 * x1 + x2
                                xe = x1 - (x0 - x2) ** 2 / (8.0 * den) if den != 0.0 else x1
                                if xe * x1 < 0.0:
                                    xe = 0.0
                            if abs(xe) < 5.0 * hb:
                                op = open_slot[p]
                                if endpoint or op < 0:
                                    for sl in range(tau.shape[1]):
                                        if tau[p, sl] < 0:
                                            spawned = sl
                                            break
                                elif abs(xe) < open_min[p]:  # a lower touch of the open cluster takes its slot
                                    spawned = op
                                    seedT[b, tau[p, op], 0, 0, m_t] = 0.0
                                if spawned >= 0:
                                    sig = 1.0 if x1 > 0.0 else -1.0
                                    dens = 0.3989422804014327 * math.exp(-0.5 * (xe / hb) ** 2) / hb
                                    if not endpoint:  # one-sided data: the local-linear boundary kernel
                                        open_slot[p] = spawned
                                        open_min[p] = abs(xe)
                                        dens *= _boundary_factor(abs(xe) / hb)
                                    tau[p, spawned] = 0 if endpoint else j - 1
                                    start[p, spawned] = 1 if endpoint else 0
                                    weight[p, spawned] = -sig * dens
                                    offset[p, spawned] = xe
                                    # the pair's force at the touch (a start: its half cell) on the plane
                                    for q in range(2):
                                        rk[0] = (koff[p, 0] + (-sig if q == 0 else sig) * 1e-9) / a0
                                        grad(rk, yp, params, gn)  # noqa: F821
                                        if endpoint:
                                            dforce[mg, spawned, q, 0, 0] = -gn[0] - g0[0]
                                        else:
                                            dforce[mg, spawned, q, j, 0] = -gn[0] - g[p, j - 1, 0]
                        if open_slot[p] >= 0 and (x0 * x1 < 0.0 or abs(x0) > open_min[p] + rise * hb):
                            open_slot[p] = -1
                        for sl in range(tau.shape[1]):
                            t0 = tau[p, sl]
                            if t0 < 0:
                                continue
                            for q in range(2):  # each ghost: the path's field shifted by -x_e, its own force and memory
                                rk[0] = r[0] - offset[p, sl] / a0 + c * half * dforce[mg, sl, q, j, 0]
                                for l in range(t0, j):
                                    rk[0] += c * dz_mean * Rmid[b, jn, l, 0, 0] * dforce[mg, sl, q, l + 1, 0]
                                grad(rk, yp, params, gn)  # noqa: F821
                                dforce[mg, sl, q, j + 1, 0] = -gn[0] - g[p, j, 0]
                            dg = dforce[mg, sl, 0, j + 1, 0] - dforce[mg, sl, 1, j + 1, 0]
                            if sl == spawned and not endpoint:
                                dg += dforce[mg, sl, 0, j, 0] - dforce[mg, sl, 1, j, 0]
                            if start[p, sl] == 1:
                                seed0T[b, 0, 0, m_t] = weight[p, sl] * dg * a0
                            else:
                                seedT[b, t0, 0, 0, m_t] = weight[p, sl] * dg * a0
                if SIGNED:  # noqa: F821
                    _add_event_force(g[p, j], sv, Hs, damp, ev_dz[p, j], (c, dz_mean, dz_var), k, gn, fev[p, j], dFp, qv)
                else:
                    _add_event_force(g[p, j], g[p, j], H, damp, ev_dz[p, j], (c, dz_mean, dz_var), k, gn, fev[p, j],
                                     dFp, qv)
            # E[dF (c g_i dz_i)^T] at event i's cell i + 1: a contiguous (vectorised) update
            for a in range(k):
                _axpy(dFp[a] * c * inv, fev2[p, : lo[q] * k], dSt[a, : lo[q] * k])
            _add_cell_sums(b, p, dFp, qv, wstar, inv, k, dFF, QV, dPhi)
        for i in range(jn):
            for a in range(k):
                for e in range(k):
                    dS[b, i + 1, a, e] += dSt[a, i * k + e]
    if paths.size and tangent_chunk > 0:
        f = c * dz_mean * tstride * inv
        for b in prange(B):
            _replica_tangents(Rmid[b], jn, c, f, (dzT[b], hzT[b], gpT[b], gp0T[b], seedT[b], seed0T[b],
                                                  (dzd, hzd, gnT[b], gn0T[b])),
                              tangent_chunk, ev_cell[0], ev_lam[0], k, dGm[b], dGp[b])


def train_losses(params, steps, c, counts, ev_cell, ev_lam, fev, W, R, y, out):
    """``out[o] = mean_p l(r_p(t_n), y_p)`` at the grid steps ``n = steps[o]`` (ascending) of one
    replica.

    ``r(t_n) = w(t_n) + c sum_{s_i<=t_n} R(t_n, s_i) fev_i`` over the path's events up to
    ``t_n``, ``fev_i`` the event's force ``g_i dz_i`` (:func:`sample_cell_poisson`,
    :func:`sample_cell_dense`); ``W[p, o]`` is
    the field ``w(t_n)``; ``R`` the replica's final response (rows
    are never changed once their step is done, so this equals the loss at the time).
    Per path, each event adds its term to every later output time at once: ``R(t_n, s_i)``
    interpolates between the columns of the event's cell on row ``n`` (:func:`_rinterp` at
    ``t = t_n``), read from ``RT[a, e, m, o] = R[n_o k + a, m k + e]``, contiguous in the
    output times; an event in the output's own cell takes the same-cell form of
    :func:`_rinterp`. Each ``r`` sums its events in their order.
    """
    P, _, k = W.shape
    T, ncol = steps.size, R.shape[1] // k
    RT = np.empty((k, k, ncol, T))
    for o in range(T):
        for a in range(k):
            for m in range(ncol):
                for e in range(k):
                    RT[a, e, m, o] = R[steps[o] * k + a, m * k + e]
    rr = np.empty((k, T))
    r = np.empty(k)
    Rt = np.empty((k, k))
    total = np.zeros(T)
    for p in range(P):
        for o in range(T):
            for a in range(k):
                rr[a, o] = W[p, o, a]
        first = 0  # the first output time at or after the event's cell
        for i in range(counts[p]):
            m, ls = ev_cell[p, i], ev_lam[p, i]
            while first < T and steps[first] < m:
                first += 1
            later = first
            while later < T and steps[later] == m:  # t_n ends the event's own cell
                _rinterp(R, m, 1.0, m, ls, Rt)
                for a in range(k):
                    r[a] = 0.0
                _add_response(Rt, fev[p, i], c, k, r)
                for a in range(k):
                    rr[a, later] += r[a]
                later += 1
            for a in range(k):
                for e in range(k):
                    f = fev[p, i, e]
                    for o in range(later, T):  # bilinear at t = t_n: the cell's two columns of row n
                        rr[a, o] += c * (((1.0 - ls) * RT[a, e, m - 1, o] + ls * RT[a, e, m, o]) * f)
        for o in range(T):
            for a in range(k):
                r[a] = rr[a, o]
            total[o] += loss(r, y[p], params)  # noqa: F821 (bound by specialise)
    for o in range(T):
        out[o] = total[o] / P


@njit(cache=True, nogil=True)
def response_table(R, steps, cells, lams, out):
    """``out[o, l] = R(t_n, s_l)`` (``n = steps[o]``) for the events ``s_l`` shared by every path
    of a dense driver (``cells``, ``lams`` of one path) up to ``t_n``: :func:`_rinterp` once per
    replica instead of once per path (:func:`train_losses_shared`)."""
    for o in range(steps.size):
        n = steps[o]
        for l in range(cells.size):
            if cells[l] > n:
                break
            _rinterp(R, n, 1.0, cells[l], lams[l], out[o, l])


def train_losses_shared(params, steps, c, Rt, fev, W, y, out):
    """:func:`train_losses` for a dense driver, whose paths share their event times: the
    responses ``Rt[o, l] = R(t_n, s_l)`` come from :func:`response_table` (the same numbers);
    event ``l`` sits in cell ``l + 1``, so ``t_n`` has the events ``l < n``."""
    P, _, k = W.shape
    r = np.empty(k)
    total = np.zeros(steps.size)
    for p in range(P):
        for o in range(steps.size):
            for a in range(k):
                r[a] = W[p, o, a]
            for i in range(steps[o]):
                _add_response(Rt[o, i], fev[p, i], c, k, r)
            total[o] += loss(r, y[p], params)  # noqa: F821 (bound by specialise)
    for o in range(steps.size):
        out[o] = total[o] / P


@njit(cache=True, nogil=True)
def events_finite(g, paths, lo, hi):
    """Whether ``g[paths[q], j]`` is finite for every event ``lo[q] <= j < hi[q]`` (the
    gradients a cell wrote; a blow-up's cause)."""
    for q in range(paths.size):
        for j in range(lo[q], hi[q]):
            for a in range(g.shape[2]):
                if not math.isfinite(g[paths[q], j, a]):
                    return False
    return True


def labels(params, wstar, eps, out):
    """``out[p] = teacher(w*_p, eps_p)`` for every path."""
    for p in range(wstar.shape[0]):
        teacher(wstar[p], eps[p], params, out[p])


# the replica loops on numba's threads (dmft._config.PARALLEL). Not disk-cached: numba's cache
# index does not tell a parallel compilation of a function from its serial one
chol_rows_parallel = njit(nogil=True, fastmath=set(_config.FASTMATH), parallel=True)(chol_rows.py_func)
row_products_parallel = njit(nogil=True, fastmath=set(_config.FASTMATH), parallel=True)(row_products.py_func)
