"""Natural compression and natural dithering (Horvath, Ho, Horvath, Sahu, Canini,
Richtarik, "Natural compression for distributed deep learning", 2019).

``natural`` (C_nat) rounds each coordinate stochastically to one of the two
powers of two around it, with the probabilities that make it unbiased; only
the sign and the 8-bit exponent are sent (9 bits per coordinate), and
``omega = 1/8``. For ``x = 2^e (1 + m / 2^23)`` the probability of rounding up
is exactly ``m / 2^23``, so comparing the 23 mantissa bits with 23 random bits
is exact. Exponent code 0 means zero: magnitudes below ``2^-126`` round to 0 or
``2^-126``; the code 255 is never written (magnitudes of ``2^127`` and above,
infinities and NaN saturate to ``2^127``).

``natural_dither(levels, bucket)`` scales each bucket by its L2 norm and rounds
``|x_i| / norm`` stochastically on the grid ``{0, 2^(1-s), ..., 1/2, 1}``
(``s = levels``): per coordinate one field of ``1 + bit_length(s)`` bits
(``index << 1 | sign``), per bucket a float32 norm. Its variance bound, for
bucket length ``B``, is ``omega = 1/8 + sqrt(B) 2^(1-s) min(1, sqrt(B) 2^(1-s))``.

Layouts: ``natural`` writes the ``d`` 8-bit exponent codes as bytes ``0 .. d-1``,
then the ``d`` sign bits from byte ``d`` (bit ``i % 8`` of byte ``d + i // 8``,
1 = negative): every field is byte-aligned, so both sides are plain byte loops.
Its rounding uses 23 bits of draw ``i // 2`` (low half for even ``i``, high
half for odd), exact as said above; the decoder draws nothing. ``natural_dither`` writes the ``d`` fields from bit 0, then
the bucket norms as float32.
"""
import math

import numpy as np
from numba import njit

from ..bitstream.rng import draw_u64
from ..bitstream.words import get, load_words, new_words, pack_fixed, put, unpack_fixed
from ..errors import DecodeError
from .base import Codec, expect_bits
from .buckets import bucket_count, bucket_l2_f32, bucket_size, check_bucket
from .signs import bits_f32, check_scale, f32_bits


_CHUNK = 4096  # coordinates per pass of the two-loop natural dithering encoder (scratch stays in L1/L2)


@njit(cache=True)
def _nat_code(a, r, t):
    """Exponent code of float32 bits ``a`` using the 23 random bits of half ``t`` of draw ``r``."""
    a = a & np.uint32(0x7FFFFFFF)
    m = a & np.uint32(0x7FFFFF)
    rnd = np.uint32((r >> np.uint64(32 * t + 9)) & np.uint64(0x7FFFFF))
    return min((a >> np.uint32(23)) + np.uint32(rnd < m), np.uint32(254))


@njit(cache=True)
def _nat_encode(x, key, out):
    """Fill ``out`` (``ceil(9d / 8)`` bytes): byte ``i`` is the exponent code of coordinate ``i``
    (draw ``i // 2`` rounds it: low half for even ``i``, high half for odd), then the sign bits
    eight per byte. Each loop runs over a 0-based index with no bit cursor, so both vectorise."""
    u = x.view(np.uint32)
    d = x.shape[0]
    for i in range(d):
        j = np.uint64(i)
        out[i] = np.uint8(_nat_code(u[i], draw_u64(key, j >> np.uint64(1)), np.int64(j & np.uint64(1))))
    signs = out[d:]
    full = d // 8
    for g in range(full):
        acc = np.uint32(0)
        for t in range(8):
            acc |= (u[8 * g + t] >> np.uint32(31)) << np.uint32(t)
        signs[g] = np.uint8(acc)
    if d > 8 * full:
        acc = np.uint32(0)
        for t in range(d - 8 * full):
            acc |= (u[8 * full + t] >> np.uint32(31)) << np.uint32(t)
        signs[full] = np.uint8(acc)


@njit(cache=True)
def _nat_decode(data, d, out):
    """Inverse of ``_nat_encode``: ``+-2^(code - 127)`` as float32 bits (code 0 gives +-0)."""
    codes = data[:d]
    top = np.uint8(0)
    for i in range(d):
        top = max(top, codes[i])
    if top == 255:
        raise DecodeError("natural: exponent code 255 is never written")
    u = out.view(np.uint32)
    signs = data[d:]
    full = d // 8
    for g in range(full):
        sb = np.uint32(signs[g])
        for t in range(8):
            u[8 * g + t] = (np.uint32(codes[8 * g + t]) << np.uint32(23)) | (((sb >> np.uint32(t)) & np.uint32(1)) << np.uint32(31))
    for i in range(8 * full, d):
        sb = np.uint32(signs[full])
        u[i] = (np.uint32(codes[i]) << np.uint32(23)) | (((sb >> np.uint32(i - 8 * full)) & np.uint32(1)) << np.uint32(31))


class Natural(Codec):
    """C_nat: unbiased stochastic rounding to a power of two; sign and exponent, 9 bits per coordinate."""

    name = "natural"
    unbiased = True

    def omega(self, d):
        return 1.0 / 8.0

    def _encode(self, x, key):
        d = x.shape[0]
        out = np.empty((9 * d + 7) // 8, np.uint8)
        _nat_encode(x, np.uint64(key.stream("natural")), out)
        return out, 9 * d

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 9 * d)
        out = np.empty(d, np.float32)
        _nat_decode(data, d, out)
        return out


@njit(cache=True)
def _bucket_ratios(xs, n, y):
    """``y = float32(|x| / n)`` over one bucket (0 when ``n = 0``)."""
    ok = n > 0
    nn = np.float64(n) if ok else 1.0
    for i in range(xs.shape[0]):
        y[i] = np.float32(abs(np.float64(xs[i])) / nn) if ok else np.float32(0.0)


@njit(cache=True)
def _bucket_symbols(xs, start, s, key, y, sym):
    """Symbols of one bucket ``xs`` (global offset ``start``) from its ratios ``y``. Kept apart from
    ``_bucket_ratios``, and over 0-based slices, so that numba vectorises both loops."""
    a = y.view(np.uint32)
    sx = xs.view(np.uint32)
    low = 2.0 ** (s - 1) * 4294967296.0
    for i in range(xs.shape[0]):
        g = np.uint64(start + i)
        r = np.uint32((draw_u64(key, g >> np.uint64(1)) >> ((g & np.uint64(1)) << np.uint64(5)))
                      & np.uint64(0xFFFFFFFF))
        e = np.int64(a[i] >> np.uint32(23)) - 127
        j_mid = e + s + np.int64((r >> np.uint32(9)) < (a[i] & np.uint32(0x7FFFFF)))
        j_low = np.int64(np.float64(r) < np.float64(y[i]) * low)
        j = np.int64(s) if a[i] >= np.uint32(0x3F800000) else (j_mid if e + s >= 1 else j_low)
        sym[i] = np.uint8((j << 1) | np.int64(sx[i] >> np.uint32(31)))


@njit(cache=True)
def _dither_symbols(x, b, norms, s, key, sym):
    """Per coordinate ``(level index << 1) | sign`` on the grid {0, 2^(1-s), ..., 1}.

    ``y = |x_i| / norm`` as float32 ``2^e (1 + m / 2^23)`` lies between levels
    ``2^e`` and ``2^(e+1)``; it rounds up with probability ``m / 2^23``, decided
    exactly by 23 random bits. Below the smallest level it rounds to 0 or
    ``2^(1-s)`` with probability ``y 2^(s-1)``. Draw ``i // 2`` serves
    coordinates ``i`` (low half) and ``i + 1`` (high half).
    """
    d = x.shape[0]
    y = np.empty(_CHUNK, np.float32)  # small scratch: a fresh d-long one costs a page fault per 4 KiB
    for k in range(norms.shape[0]):
        for lo in range(k * b, min(d, (k + 1) * b), _CHUNK):
            hi = min(d, (k + 1) * b, lo + _CHUNK)
            _bucket_ratios(x[lo:hi], norms[k], y[:hi - lo])
            _bucket_symbols(x[lo:hi], lo, s, key, y[:hi - lo], sym[lo:hi])


@njit(cache=True)
def _bucket_values(sym, tab, out):
    for i in range(out.shape[0]):
        out[i] = tab[sym[i]]


@njit(cache=True)
def _dither_decode(sym, s, b, norms, out):
    """Values ``+-norm * 2^(j-s)`` (0 for ``j = 0``); reject indices above ``s``."""
    d = out.shape[0]
    top = np.uint8(0)
    for i in range(d):
        top = max(top, sym[i])
    if np.int64(top >> np.uint8(1)) > s:
        raise DecodeError("natural_dither: level index above levels")
    levels = np.empty(s + 1, np.float64)
    levels[0] = 0.0
    for j in range(1, s + 1):
        levels[j] = 2.0 ** (j - s)
    tab = np.empty(2 * (s + 1), np.float32)  # symbol -> value; norm * 2^(j-s) is exact in float64
    for k in range(norms.shape[0]):
        for j in range(s + 1):
            v = np.float64(norms[k]) * levels[j]
            tab[2 * j] = np.float32(v)
            tab[2 * j + 1] = np.float32(-v)
        lo = k * b
        hi = min(d, lo + b)
        _bucket_values(sym[lo:hi], tab, out[lo:hi])


class NaturalDither(Codec):
    """Natural dithering: per-bucket L2 norm, then sign and a power-of-two level per coordinate."""

    name = "natural_dither"
    unbiased = True

    def __init__(self, levels=7, bucket=0):
        if not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 64:
            raise ValueError(f"levels must be an integer in [1, 64], got {levels=}")
        check_bucket(bucket)
        super().__init__(levels=levels, bucket=bucket)
        self.levels = int(levels)
        self.bucket = int(bucket)
        self.width = 1 + int(levels).bit_length()  # sign bit + level index

    def omega(self, d):
        r = math.sqrt(bucket_size(d, self.bucket)) * 2.0 ** (1 - self.levels)
        return 0.125 + r * min(1.0, r)

    def _bits(self, d):
        return d * self.width + 32 * bucket_count(d, self.bucket)

    def _encode(self, x, key):
        d = x.shape[0]
        b = bucket_size(d, self.bucket)
        norms = bucket_l2_f32(x, b)
        sym = np.empty(d, np.uint8)
        _dither_symbols(x, b, norms, self.levels, np.uint64(key.stream("natural_dither")), sym)
        words = new_words(self._bits(d))
        pos = pack_fixed(sym, self.width, words)
        for v in norms:
            pos = put(words, pos, f32_bits(v), 32)
        return words.view(np.uint8), pos

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, self._bits(d))
        words = load_words(data, nbits)
        nb = bucket_count(d, self.bucket)
        start = d * self.width
        norms = np.empty(nb, np.float32)
        for k in range(nb):
            norms[k] = bits_f32(int(get(words, start + 32 * k, 32)[0]))
            check_scale(self.name, norms[k])
        sym = np.empty(d, np.uint8)
        unpack_fixed(words, self.width, sym)
        out = np.empty(d, np.float32)
        _dither_decode(sym, self.levels, bucket_size(d, self.bucket), norms, out)
        return out
