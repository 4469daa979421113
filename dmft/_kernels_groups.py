"""Numba kernels of the spectral groups of :mod:`dmft.data`: O(d) passes, no sorting.

``positive_range`` is called only by :func:`dmft.data._bin_table`, ``distinct_rows``,
``bin_index`` and ``group_sums`` only by :func:`dmft.data.make_groups`, ``sum_outer`` only by
:meth:`dmft.data.Groups.sum_outer`.

Sums run over the coordinates in order, as ``np.bincount`` does, so they equal its sums
to the last bit (no fastmath: re-association would change the rounding). Rows of
per-class or per-vector data come as tuples of (d,) arrays: their number is then known
at compile time and the short loops over them are unrolled (faster than loops over the
rows of a 2-d array; docs/performance.md, "One-pass ODE").
"""
import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def positive_range(bits):
    """Smallest positive and largest entry of ``bits`` (C, d) int64; ``(0, 0)`` if none is positive."""
    lo, hi = np.iinfo(np.int64).max, 0
    for b in bits.ravel():
        if 0 < b < lo:
            lo = b
        if b > hi:
            hi = b
    return (lo, hi) if hi > 0 else (0, 0)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)


@njit(inline="always")
def _plus_zero(b):
    """The bits of a double, with -0.0 (the smallest int64) read as 0.0."""
    return 0 if b == np.iinfo(np.int64).min else b


@njit(cache=True, nogil=True)
def distinct_rows(bits, cap, table_bits):
    """Group of each coordinate by its row ``bits[:, i]`` (C, d) int64, in order of first appearance.

    Open-addressing hash table of ``2^table_bits`` slots (more than ``2 cap``); the rows are
    compared bit for bit, with -0.0 read as 0.0. Stops as soon as a ``cap + 1``-th
    distinct row appears. Returns ``(index, G, first)``: index (d,) int64 in ``0..G-1``
    (valid only if ``G <= cap``), first (G,) the coordinate where each group first appears.
    """
    C, d = bits.shape
    mask = np.uint64((1 << table_bits) - 1)
    slot_group = np.full(1 << table_bits, -1, np.int64)
    first = np.empty(cap + 1, np.int64)
    index = np.empty(d, np.int64)
    G = 0
    for i in range(d):
        h = _GOLDEN
        for c in range(C):  # SplitMix64's finaliser over the words of the row
            z = h ^ np.uint64(_plus_zero(bits[c, i]))
            z = (z ^ (z >> _S30)) * _M1
            z = (z ^ (z >> _S27)) * _M2
            h = z ^ (z >> _S31)
        j = h & mask
        while True:
            g = slot_group[j]
            if g < 0:
                if G == cap:
                    return index, G + 1, first
                slot_group[j] = G
                first[G] = i
                index[i] = G
                G += 1
                break
            same = True
            f = first[g]
            for c in range(C):
                if _plus_zero(bits[c, f]) != _plus_zero(bits[c, i]):
                    same = False
                    break
            if same:
                index[i] = g
                break
            j = (j + np.uint64(1)) & mask
    return index, G, first[:G]


@njit(cache=True, nogil=True)
def bin_index(bits, edges, table, base, shift):
    """Group of each coordinate: the rank of its row of bin codes among the distinct rows.

    bits: (C, d) eigenvalues viewed as int64 (ordered like the values when positive;
    <= 0 for zeros). The code of a positive eigenvalue is ``1 + #{edges <= bits}``
    (1..n_bins), of a zero 0. edges: (n_bins,) increasing, the last one a sentinel above
    every entry; ``table[k] = #{edges <= base + (k << shift)}`` starts the count in the
    cell of ``2^shift`` bit patterns holding the entry (a cell holds at most a few edges).
    Returns ``(index, G)``: index (d,) int64 in ``0..G-1``, groups numbered in
    lexicographic order of the code rows ``(code_1, .., code_C)``.
    """
    C, d = bits.shape
    n_codes = edges.shape[0] + 1
    index = np.zeros(d, np.int64)
    rank = np.zeros(1, np.int64)  # one group before any class is looked at
    G = 1
    for c in range(C):
        # refine the groups of classes < c by the code of class c: the key
        # rank * n_codes + code keeps the lexicographic order and stays below G * n_codes
        for i in range(d):
            b = bits[c, i]
            code = 0
            if b > 0:  # inline: a function call per entry would dominate this loop
                j = table[(b - base) >> shift]
                while edges[j] <= b:  # the sentinel ends the walk
                    j += 1
                code = j + 1
            index[i] = rank[index[i]] * n_codes + code
        # dense ranks of the keys present, in key order (marked in a separate loop, so
        # that the stores do not interleave with the codes)
        present = np.zeros(G * n_codes, np.bool_)
        for i in range(d):
            present[index[i]] = True
        rank = np.empty(G * n_codes, np.int64)
        G = 0
        for key in range(present.shape[0]):
            rank[key] = G
            G += present[key]
    for i in range(d):
        index[i] = rank[index[i]]
    return index, G


@njit(cache=True, nogil=True)
def _add_outer(P, g, rows, i):
    """``P[g] += w w^T`` (upper triangle) for ``w = (rows[0][i], .., rows[D-1][i])``."""
    for a in range(len(rows)):
        wa = rows[a][i]
        for b in range(a, len(rows)):
            P[g, a, b] += wa * rows[b][i]


@njit(cache=True, nogil=True)
def _symmetrise(P):
    """Copy the upper triangle of each ``P[g]`` (G, D, D) to the lower one."""
    for a in range(P.shape[1]):
        for b in range(a + 1, P.shape[1]):
            P[:, b, a] = P[:, a, b]


@njit(cache=True, nogil=True)
def group_sums(index, G, lam, rows):
    """Per group: size, eigenvalue sums and ``sum_{i in g} v_i v_i^T``, in one pass.

    index: (d,) group of each coordinate in ``0..G-1``; lam: C rows (d,) of eigenvalues;
    rows: R rows (d,), the components of ``v_i``. Returns sizes (G,) int64, sums (G, C),
    outer (G, R, R).
    """
    C, R = len(lam), len(rows)
    sizes = np.zeros(G, np.int64)
    sums = np.zeros((G, C))
    outer = np.zeros((G, R, R))
    for i in range(index.shape[0]):
        g = index[i]
        sizes[g] += 1
        for c in range(C):
            sums[g, c] += lam[c][i]
        _add_outer(outer, g, rows, i)
    _symmetrise(outer)
    return sizes, sums, outer


@njit(cache=True, nogil=True)
def sum_outer(index, G, rows):
    """``P_g = sum_{i in g} w_i w_i^T`` (G, D, D); rows: D rows (d,), the components of ``w_i``."""
    P = np.zeros((G, len(rows), len(rows)))
    for i in range(index.shape[0]):
        _add_outer(P, index[i], rows, i)
    _symmetrise(P)
    return P
