"""The in-kernel normal generator (dmft._kernels_normal): transform exactness and law."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from dmft._kernels_normal import fill_normals, stream

MASK = (1 << 64) - 1


def _word(key, gamma, i):
    """SplitMix64's output function of ``key + i gamma``, in Python integers."""
    z = (int(key) + int(i) * int(gamma)) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _reference(key, gamma, counter, n):
    """Box-Muller with numpy's log, cos, sin on the same words and bit decoding."""
    h = n // 2
    out = np.empty(n)
    for j in range(h):
        w1, w2 = _word(key, gamma, counter + j), _word(key, gamma, counter + h + j)
        z = 64 - (w1 | 1).bit_length()
        u = 2.0 ** -(z + 1) * (1 + ((((w1 << z) << 1) & MASK) >> 12) * 2.0**-52)
        theta = (w2 >> 62) * math.pi / 2 + ((w2 & ((1 << 62) - 1)) * 2.0**-62 - 0.5) * math.pi / 2
        r = math.sqrt(-2 * math.log(u))
        out[j], out[h + j] = r * math.cos(theta), r * math.sin(theta)
    return out


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**40))
def test_transform_matches_numpy_log_cos_sin(seed, counter):
    key, gamma = stream(np.random.SeedSequence(seed))
    out = np.empty(64)
    fill_normals(key, gamma, np.uint64(counter), out)
    np.testing.assert_allclose(out, _reference(key, gamma, counter, 64), rtol=0, atol=4e-15)


def test_law_is_standard_normal():
    key, gamma = stream(np.random.SeedSequence(0))
    out = np.empty(10**6)
    fill_normals(key, gamma, np.uint64(0), out)
    n = out.size
    # 5 standard errors on mean, variance (sd sqrt(2/n)) and fourth moment (sd sqrt(96/n))
    assert abs(out.mean()) < 5 / math.sqrt(n)
    assert abs(out.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(out**4) - 3) < 5 * math.sqrt(96 / n)
    # Kolmogorov-Smirnov at the 0.1% level, and the sine half independent of the cosine half
    assert stats.kstest(out, "norm").statistic < 1.95 / math.sqrt(n)
    assert abs(np.corrcoef(out[: n // 2] ** 2, out[n // 2:] ** 2)[0, 1]) < 5 / math.sqrt(n // 2)
    # tails: |x| > 4 has probability 6.3e-5, i.e. ~63 +- 8 of 10^6
    tail = np.sum(np.abs(out) > 4)
    expect = n * 2 * stats.norm.sf(4)
    assert abs(tail - expect) < 5 * math.sqrt(expect)


def test_same_seed_same_numbers_blocks_do_not_overlap():
    key, gamma = stream(np.random.SeedSequence(3))
    a, b, c = np.empty(10), np.empty(10), np.empty(10)
    fill_normals(key, gamma, np.uint64(0), a)
    fill_normals(key, gamma, np.uint64(0), b)
    fill_normals(key, gamma, np.uint64(10), c)
    assert np.array_equal(a, b) and not np.intersect1d(a, c).size
    key2, gamma2 = stream(np.random.SeedSequence(4))
    fill_normals(key2, gamma2, np.uint64(0), b)
    assert not np.intersect1d(a, b).size


@pytest.mark.parametrize("seed", range(50))
def test_gamma_is_odd_with_enough_bit_transitions(seed):
    _, gamma = stream(np.random.SeedSequence(seed))
    g = int(gamma)
    assert g & 1 and bin(g ^ (g >> 1)).count("1") >= 24
