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

Layouts: ``natural`` writes the ``d`` sign bits from bit 0, then the 8-bit
exponent codes; ``natural_dither`` writes the ``d`` fields from bit 0, then
the bucket norms as float32.
"""
import math

import numpy as np
from numba import njit

from ..bitstream.rng import draw_u64
from ..bitstream.words import (get, get_words, load_words, new_words, pack_fixed, pack_signs, put, put_words,
                               unpack_fixed, unpack_signs)
from ..errors import DecodeError
from .base import Codec, expect_bits
from .buckets import bucket_count, bucket_l2, bucket_size, check_bucket
from .signs import bits_f32, check_scale, f32_bits


@njit(cache=True)
def _nat_code(a, r, t):
    """Exponent code of float32 bits ``a`` using the 23 random bits of half ``t`` of draw ``r``."""
    a = a & np.uint32(0x7FFFFFFF)
    m = a & np.uint32(0x7FFFFF)
    rnd = np.uint32((r >> np.uint64(32 * t + 9)) & np.uint64(0x7FFFFF))
    return min((a >> np.uint32(23)) + np.uint32(rnd < m), np.uint32(254))


@njit(cache=True)
def _nat_codes(x, key, out):
    """The 8-bit exponent code of each coordinate, eight per word of ``out`` (draw ``i // 2``
    rounds coordinate ``i``: low half for even ``i``, high half for odd). No bit cursor in the
    loop, so it vectorises."""
    u = x.view(np.uint32)
    d = x.shape[0]
    full = d // 8
    for g in range(full):
        acc = np.uint64(0)
        for p in range(4):
            r = draw_u64(key, 4 * g + p)
            for t in range(2):
                acc |= np.uint64(_nat_code(u[8 * g + 2 * p + t], r, t)) << np.uint64(8 * (2 * p + t))
        out[g] = acc
    acc = np.uint64(0)
    for i in range(8 * full, d):
        c = _nat_code(u[i], draw_u64(key, i >> 1), i & 1)
        acc |= np.uint64(c) << np.uint64(8 * (i - 8 * full))
    if d > 8 * full:
        out[full] = acc


@njit(cache=True)
def _nat_merge(codes, out):
    """Merge the exponent codes into the sign bits already in ``out`` (as +-1.0 floats)."""
    u = out.view(np.uint32)
    d = out.shape[0]
    bad = False
    for g in range((d + 7) // 8):
        v = codes[g]
        for t in range(min(8, d - 8 * g)):
            c = np.uint32((v >> np.uint64(8 * t)) & np.uint64(0xFF))
            bad |= c == np.uint32(255)
            u[8 * g + t] = (u[8 * g + t] & np.uint32(0x80000000)) | (c << np.uint32(23))
    if bad:
        raise DecodeError("natural: exponent code 255 is never written")


class Natural(Codec):
    """C_nat: unbiased stochastic rounding to a power of two; sign and exponent, 9 bits per coordinate."""

    name = "natural"
    unbiased = True

    def omega(self, d):
        return 1.0 / 8.0

    def _encode(self, x, key):
        d = x.shape[0]
        words = new_words(9 * d)
        pos = pack_signs(x, words, 0)
        codes = np.empty((d + 7) // 8, np.uint64)
        _nat_codes(x, np.uint64(key.stream("natural")), codes)
        return words.view(np.uint8), put_words(words, pos, codes, 8 * d)

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 9 * d)
        words = load_words(data, nbits)
        out = np.empty(d, np.float32)
        pos = unpack_signs(words, 0, out, 1.0)
        codes = np.empty((d + 7) // 8 + 1, np.uint64)
        get_words(words, pos, 8 * d, codes)
        _nat_merge(codes, out)
        return out


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
    y = np.empty(d, np.float32)
    for i in range(d):
        n = norms[i // b]
        y[i] = np.float32(abs(np.float64(x[i])) / np.float64(n)) if n > 0 else np.float32(0.0)
    a = y.view(np.uint32)
    sx = x.view(np.uint32)
    low = 2.0 ** (s - 1) * 4294967296.0
    for i in range(d):
        r = np.uint32((draw_u64(key, i >> 1) >> np.uint64(32 * (i & 1))) & np.uint64(0xFFFFFFFF))
        e = np.int64(a[i] >> np.uint32(23)) - 127
        if a[i] >= np.uint32(0x3F800000):
            j = np.int64(s)
        elif e + s >= 1:
            j = e + s + np.int64((r >> np.uint32(9)) < (a[i] & np.uint32(0x7FFFFF)))
        else:
            j = np.int64(np.float64(r) < np.float64(y[i]) * low)
        sym[i] = np.uint8((j << 1) | np.int64(sx[i] >> np.uint32(31)))


@njit(cache=True)
def _dither_decode(sym, s, b, norms, out):
    """Values ``+-norm * 2^(j-s)`` (0 for ``j = 0``); reject indices above ``s``."""
    d = out.shape[0]
    levels = np.empty(s + 1, np.float64)
    levels[0] = 0.0
    for j in range(1, s + 1):
        levels[j] = 2.0 ** (j - s)
    bad = False
    for i in range(d):
        j = np.int64(sym[i] >> np.uint8(1))
        bad |= j > s
        j = min(j, s)
        v = np.float64(norms[i // b]) * levels[j]
        out[i] = np.float32(-v if sym[i] & np.uint8(1) else v)
    if bad:
        raise DecodeError("natural_dither: level index above levels")


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
        norms = bucket_l2(x, b).astype(np.float32)
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
