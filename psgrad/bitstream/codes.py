"""Universal integer codes as mirrored numba kernels, with exact length functions.

Layouts (stream order as in ``bits``: each field least significant bit first):

- Elias gamma, ``n >= 1``, ``L = floor(log2 n)``: ``L`` zero bits, one 1 bit,
  then the low ``L`` bits of ``n`` (its bits below the leading one).
  ``2L + 1`` bits; gamma(1) is the single bit 1.
- Elias delta, ``n >= 1``: gamma(``L + 1``) then the low ``L`` bits of ``n``.
- Elias omega, ``n >= 1``: groups for the chain ``n -> L(n) -> L(L(n)) ... -> 1``
  written innermost first, each group a 1 bit then the low ``L`` bits of its
  value; a final 0 bit ends the code. omega(1) is the single bit 0.
- Golomb-Rice with parameter ``k``, ``n >= 0``: ``n >> k`` one bits, a 0 bit,
  then the low ``k`` bits of ``n``.

Values are int64. Decoders raise ``DecodeError`` on truncated input and on
codes whose value would not fit in 63 bits; they never read past ``end``.
"""
import numpy as np
from numba import njit

from ..errors import DecodeError
from .bits import read_bits, write_bits


@njit(cache=True)
def bit_length(n):
    """Number of bits of the non-negative integer ``n`` (0 for 0)."""
    n = np.int64(n)
    L = 0
    while n > 0:
        n = n >> 1
        L += 1
    return L


@njit(cache=True)
def _read_zeros_then_one(buf, end, pos, limit):
    """Count zero bits up to and including the terminating 1 bit."""
    count = 0
    while True:
        b, pos = read_bits(buf, end, pos, 1)
        if b == 1:
            return count, pos
        count += 1
        if count > limit:
            raise DecodeError("integer code: value exceeds 63 bits")


@njit(cache=True)
def gamma_len(n):
    return 2 * bit_length(n) - 1


@njit(cache=True)
def write_gamma(buf, pos, n):
    L = bit_length(n) - 1
    pos += L  # zeros: the buffer is zero-initialised
    pos = write_bits(buf, pos, 1, 1)
    return write_bits(buf, pos, n, L)


@njit(cache=True)
def read_gamma(buf, end, pos):
    L, pos = _read_zeros_then_one(buf, end, pos, 62)
    low, pos = read_bits(buf, end, pos, L)
    return (np.int64(1) << L) | np.int64(low), pos


@njit(cache=True)
def delta_len(n):
    L = bit_length(n) - 1
    return gamma_len(L + 1) + L


@njit(cache=True)
def write_delta(buf, pos, n):
    L = bit_length(n) - 1
    pos = write_gamma(buf, pos, L + 1)
    return write_bits(buf, pos, n, L)


@njit(cache=True)
def read_delta(buf, end, pos):
    Lp1, pos = read_gamma(buf, end, pos)
    L = Lp1 - 1
    if L > 62:
        raise DecodeError("integer code: value exceeds 63 bits")
    low, pos = read_bits(buf, end, pos, L)
    return (np.int64(1) << L) | np.int64(low), pos


@njit(cache=True)
def omega_len(n):
    total = 1
    v = np.int64(n)
    while v > 1:
        L = bit_length(v) - 1
        total += 1 + L
        v = np.int64(L)
    return total


@njit(cache=True)
def omega_chain(n):
    """The values ``n, L(n), L(L(n)), ... > 1`` whose groups make up omega(``n``): ``(vals, count)``,
    outermost first; the code writes them innermost first (``vals[count - 1]`` down to ``vals[0]``)."""
    vals = np.empty(8, np.int64)
    count = 0
    v = np.int64(n)
    while v > 1:
        vals[count] = v
        count += 1
        v = np.int64(bit_length(v) - 1)
    return vals, count


@njit(cache=True)
def write_omega(buf, pos, n):
    vals, count = omega_chain(n)
    for j in range(count - 1, -1, -1):
        L = bit_length(vals[j]) - 1
        pos = write_bits(buf, pos, 1, 1)
        pos = write_bits(buf, pos, vals[j], L)
    return pos + 1  # the terminating 0 bit


@njit(cache=True)
def read_omega(buf, end, pos):
    n = np.int64(1)
    while True:
        b, pos = read_bits(buf, end, pos, 1)
        if b == 0:
            return n, pos
        if n > 62:
            raise DecodeError("integer code: value exceeds 63 bits")
        low, pos = read_bits(buf, end, pos, n)
        n = (np.int64(1) << n) | np.int64(low)


@njit(cache=True)
def rice_len(n, k):
    return (np.int64(n) >> k) + 1 + k


@njit(cache=True)
def write_rice(buf, pos, n, k):
    q = np.int64(n) >> k
    while q >= 64:
        pos = write_bits(buf, pos, 0xFFFFFFFFFFFFFFFF, 64)
        q -= 64
    pos = write_bits(buf, pos, (np.uint64(1) << np.uint64(q)) - np.uint64(1), q)
    pos += 1  # the terminating 0 bit
    return write_bits(buf, pos, n, k)


@njit(cache=True)
def read_rice(buf, end, pos, k):
    q = 0
    while True:
        b, pos = read_bits(buf, end, pos, 1)
        if b == 0:
            break
        q += 1
        if q >= (1 << (62 - k)):
            raise DecodeError("integer code: Rice quotient too large")
    low, pos = read_bits(buf, end, pos, k)
    return (np.int64(q) << k) | np.int64(low), pos


def rice_parameter(count, span):
    """The Rice parameter ``k`` that minimises the expected length of geometric gaps.

    ``count`` positions spread uniformly over ``span`` slots leave gaps that are
    close to geometric with ``q = 1 - count / span``; the expected Rice length
    is ``k + 1 + q^(2^k) / (1 - q^(2^k))`` (Golomb 1966; Gallager and van
    Voorhis 1975 for the optimal Golomb parameter), minimised here over ``k``.
    Both sides compute it from public sizes, so it costs no bits.
    """
    if count <= 0 or span <= count:
        return 0
    q = 1.0 - count / span
    best_k, best = 0, float("inf")
    for k in range(0, 48):
        qk = q ** (1 << k)
        cost = k + 1 + (qk / (1.0 - qk) if qk < 1.0 else float("inf"))
        if cost < best:
            best_k, best = k, cost
    return best_k
