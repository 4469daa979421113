"""Vectorised standard normals for numba kernels: counter-based SplitMix64 + Box-Muller.

A simulator that draws ``d`` fresh normals per step (one-pass SGD) is bound by the
generator: numpy's ziggurat cannot be called from a kernel without a round trip through
memory, and it does not vectorise. Here word ``i`` of a stream is
``mix(key + i * gamma)``, SplitMix64's output function (the generator of Java's
``SplittableRandom``; it passes BigCrush), so a block of words has no loop-carried state,
and both Box-Muller transforms are polynomials, so LLVM vectorises the whole loop
(costs per normal: docs/performance.md, "Simulators"; ``benchmarks/bench_simulators.py``).

Transform of the word pair ``(w1, w2)`` into two normals ``r cos(theta), r sin(theta)``:

* ``U = 2^-(z+1) (1 + f)`` with ``z`` the leading zeros of ``w1`` and ``f`` the next 52
  bits, so ``U`` is uniform on ``(0, 1]`` to 52 significant bits however small it is
  (smallest value ``2^-64``, i.e. ``|x| <= 9.4``), and
  ``log U = log m - e log 2`` with ``m`` in ``[1/sqrt2, sqrt2)`` and
  ``log m = 2 atanh(s)``, ``s = (m - 1)/(m + 1)``, ``|s| <= 0.172`` (series to ``s^19``:
  error < 1e-17);
* ``theta = q pi/2 + psi``: quadrant ``q`` from the top two bits of ``w2``, ``psi`` uniform
  on ``[-pi/4, pi/4)`` from the other 62; Taylor series of ``cos`` to ``psi^14`` and
  ``sin`` to ``psi^15`` (error < 1.1e-15).

``tests/test_normals.py`` checks the transform against numpy's ``log``/``cos``/``sin``
of the same words and the output against the normal law.
"""
import math

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros

from ._config import FASTMATH

_U = np.uint64
_M1, _M2 = _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)
_S1, _S12, _S27, _S30, _S31, _S62 = _U(1), _U(12), _U(27), _U(30), _U(31), _U(62)
_LOW62 = _U((1 << 62) - 1)
_LN2, _SQRT2, _HALF_PI = math.log(2.0), math.sqrt(2.0), 0.5 * math.pi
# Horner coefficients, highest power first: 2 atanh(s)/s in s^2 (to s^18), cos (to psi^14)
# and sin(psi)/psi (to psi^14) as Taylor series
_LOG_ATANH = tuple(2.0 / (2 * j + 1) for j in range(9, -1, -1))
_COS = tuple((-1) ** j / math.factorial(2 * j) for j in range(7, -1, -1))
_SIN = tuple((-1) ** j / math.factorial(2 * j + 1) for j in range(7, -1, -1))


@njit(inline="always")
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def word(key, gamma, i):
    """Word ``i`` of the stream ``(key, gamma)``: ``mix(key + i gamma)`` (uint64, wrapping)."""
    return _mix(key + i * gamma)


@njit(inline="always")
def _horner(x, coefficients):
    p = coefficients[0]
    for c in coefficients[1:]:
        p = p * x + c
    return p


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def normal_pair(w1, w2):
    """The two normals ``(r cos theta, r sin theta)`` of the word pair ``(w1, w2)`` (module docstring)."""
    z = leading_zeros(w1 | _S1)
    m = 1.0 + np.float64(((w1 << z) << _S1) >> _S12) * 2.220446049250313e-16
    big = m > _SQRT2
    m = 0.5 * m if big else m
    e = np.float64(z + _S1) - (1.0 if big else 0.0)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = _horner(s2, _LOG_ATANH)
    r = math.sqrt(2.0 * (e * _LN2 - p * s))
    q = w2 >> _S62
    psi = (np.float64(w2 & _LOW62) * 2.168404344971009e-19 - 0.5) * _HALF_PI
    x2 = psi * psi
    c = _horner(x2, _COS)
    sn = _horner(x2, _SIN) * psi
    odd = (q & _S1) == _S1
    ct = -sn if odd else c
    st = c if odd else sn
    sign = -1.0 if q >= _U(2) else 1.0
    return sign * r * ct, sign * r * st


# error_model="numpy": numba's ZeroDivisionError check on (m - 1)/(m + 1) stops LLVM from
# vectorising the loop (m + 1 > 1.7, so the check can never fire)
@njit(fastmath=set(FASTMATH), error_model="numpy", cache=True, nogil=True)
def fill_normals(key, gamma, counter, out):
    """Fill ``out`` (even length ``2h``) with standard normals from words ``counter .. counter+2h-1``.

    ``out[j]`` and ``out[h + j]`` are the cosine and sine normals of the word pair
    ``(counter + j, counter + h + j)``. key, gamma, counter: uint64 (gamma odd).
    """
    h = out.shape[0] // 2
    for j in range(h):
        out[j], out[h + j] = normal_pair(word(key, gamma, counter + _U(j)), word(key, gamma, counter + _U(h + j)))


def stream(seed_sequence):
    """``(key, gamma)`` of a normal stream from a ``numpy.random.SeedSequence``.

    gamma is made odd and, as in ``SplittableRandom.mixGamma``, given enough bit
    transitions (a gamma such as ``1`` would make neighbouring words alike).
    """
    key, gamma = (int(v) for v in seed_sequence.generate_state(2, np.uint64))
    gamma |= 1
    if bin(gamma ^ (gamma >> 1)).count("1") < 24:
        gamma ^= 0xAAAAAAAAAAAAAAAA
    return _U(key), _U(gamma)

