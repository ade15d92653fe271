"""TernGrad (Wen, Xu, Yan, Wu, Wang, Chen, Li, "TernGrad: ternary gradients to
reduce communication in distributed deep learning", NeurIPS 2017).

Per bucket the scale ``s = max |x_i|``; each coordinate becomes
``s * sign(x_i) * b_i`` with ``b_i ~ Bernoulli(|x_i| / s)``: unbiased, with
``E||C(x) - x||^2 = s ||x||_1 - ||x||^2 <= (sqrt(B) - 1) / 2 * ||x||^2`` for a
bucket of ``B`` coordinates (the maximum of ``||x||_inf ||x||_1 / ||x||_2^2`` is
``(1 + sqrt(B)) / 2``). The paper's own buckets are layers; ``bucket = 0``
uses one scale for the whole vector.

Layout: the ternary digits packed five per byte in base 3 (digit 0 = zero,
1 = +s, 2 = -s; digit ``t`` of a byte has weight ``3^t``), ``ceil(d / 5)``
bytes, i.e. 1.6 bits per coordinate against the 2 of a plain two-bit field;
then one float32 scale per bucket. Bernoulli draws use 32 random bits (draw
``i // 2`` of the shared stream, low half for even ``i``, high half for odd):
the keep probability is resolved to ``2^-32``, so any bias is below
``2^-32 s`` per coordinate, far under float32 precision. Only the encoder
draws; the decoder is a function of the payload alone.
"""
import numpy as np
from numba import njit

from ..bitstream.rng import draw_u64
from ..errors import DecodeError
from .base import Codec, expect_bits
from .buckets import bucket_count, bucket_maxabs, bucket_size, check_bucket
from .signs import check_scales

_POW3 = np.array([1, 3, 9, 27, 81], np.uint8)
_CHUNK = 5 * 1024  # coordinates per chunk: a multiple of 5, so chunks start on byte boundaries

# Hot loops run over slices indexed from 0: numba then knows every index is non-negative, drops the
# negative-index wrap-around and vectorises the loop (a loop over range(lo, hi) stays scalar).


@njit(cache=True)
def _bucket_digits(xs, start, t32, key, dig):
    """Base-3 digit of each coordinate of one bucket ``xs`` (global offset ``start``): kept (1, or 2
    when negative) when its 32 random bits fall below ``|x| / s * 2^32`` (``t32 = 2^32 / s``)."""
    for i in range(xs.shape[0]):
        j = np.uint64(start + i)
        r = (draw_u64(key, j >> np.uint64(1)) >> ((j & np.uint64(1)) << np.uint64(5))) & np.uint64(0xFFFFFFFF)
        v = xs[i]
        keep = np.float64(r) < abs(np.float64(v)) * t32
        dig[i] = np.uint8(keep) * (np.uint8(1) + np.uint8(v < 0))


@njit(cache=True)
def _pack5(dig, out):
    """Five digits per byte, digit ``t`` of a byte with weight ``3^t``."""
    for g in range(out.shape[0]):
        j = 5 * g
        out[g] = dig[j] + np.uint8(3) * dig[j + 1] + np.uint8(9) * dig[j + 2] + np.uint8(27) * dig[j + 3] \
            + np.uint8(81) * dig[j + 4]


@njit(cache=True)
def _trits(x, b, scales, key, out):
    """Draw ``i // 2`` decides coordinates ``i`` (low half) and ``i + 1`` (high half). Works through
    chunks of ``_CHUNK`` coordinates with a small digit scratch (a fresh ``d``-long one would cost a
    page fault per 4 KiB), each chunk cut further at bucket boundaries."""
    d = x.shape[0]
    t32 = np.empty(scales.shape[0], np.float64)
    for k in range(scales.shape[0]):
        t32[k] = 4294967296.0 / np.float64(scales[k]) if scales[k] > 0 else 0.0
    dig = np.zeros(_CHUNK, np.uint8)
    for c0 in range(0, d, _CHUNK):
        c1 = min(d, c0 + _CHUNK)
        p = c0
        while p < c1:
            k = p // b
            e = min(c1, (k + 1) * b)
            _bucket_digits(x[p:e], p, t32[k], key, dig[p - c0:e - c0])
            p = e
        dig[c1 - c0:] = 0  # unused digits of the last byte
        _pack5(dig, out[c0 // 5:(c1 + 4) // 5])


@njit(cache=True)
def _bucket_values(dig, s, out):
    """Digit 1 -> ``s``, 2 -> ``-s``, 0 -> 0 over one bucket."""
    for i in range(out.shape[0]):
        q = dig[i]
        out[i] = s if q == 1 else (-s if q == 2 else np.float32(0.0))


@njit(cache=True)
def _unpack5(data, dig):
    """Base-3 digits of each byte, by division by the constant 3 (vectorises, unlike a table lookup)."""
    three = np.uint8(3)
    for g in range(data.shape[0]):
        v = data[g]
        q1 = v // three
        q2 = q1 // three
        q3 = q2 // three
        q4 = q3 // three
        j = 5 * g
        dig[j] = v - three * q1
        dig[j + 1] = q1 - three * q2
        dig[j + 2] = q2 - three * q3
        dig[j + 3] = q3 - three * q4
        dig[j + 4] = q4


@njit(cache=True)
def _untrits(data, d, b, scales, out):
    ng = (d + 4) // 5
    last = d - 5 * (ng - 1) if d else 0  # digits used in the last byte
    top = np.uint8(0)
    for g in range(ng - 1):
        top = max(top, data[g])
    limit = 243 if last == 5 else np.int64(_POW3[last])  # 3^(digits used in the last byte)
    if ng and (top >= 243 or data[ng - 1] >= limit):
        raise DecodeError("terngrad: byte is not five base-3 digits (or the unused digits are not zero)")
    dig = np.empty(_CHUNK, np.uint8)  # chunked like the encoder
    for c0 in range(0, d, _CHUNK):
        c1 = min(d, c0 + _CHUNK)
        _unpack5(data[c0 // 5:(c1 + 4) // 5], dig)
        p = c0
        while p < c1:
            k = p // b
            e = min(c1, (k + 1) * b)
            _bucket_values(dig[p - c0:e - c0], scales[k], out[p:e])
            p = e


class TernGrad(Codec):
    """TernGrad: per-bucket max scale and unbiased ternary digits, 1.6 bits per coordinate."""

    name = "terngrad"
    unbiased = True

    def __init__(self, bucket=0):
        check_bucket(bucket)
        super().__init__(bucket=bucket)
        self.bucket = int(bucket)

    def omega(self, d):
        return (np.sqrt(bucket_size(d, self.bucket)) - 1.0) / 2.0

    def _bits(self, d):
        return 8 * ((d + 4) // 5) + 32 * bucket_count(d, self.bucket)

    def _encode(self, x, key):
        d = x.shape[0]
        b = bucket_size(d, self.bucket)
        scales = bucket_maxabs(x, b)
        nt = (d + 4) // 5
        out = np.empty(nt + 4 * len(scales), np.uint8)
        _trits(x, b, scales, np.uint64(key.stream("terngrad")), out)
        out[nt:] = scales.view(np.uint8)
        return out, self._bits(d)

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, self._bits(d))
        nt = (d + 4) // 5
        scales = data[nt:nt + 4 * bucket_count(d, self.bucket)].copy().view(np.float32)
        check_scales(self.name, scales)
        out = np.empty(d, np.float32)
        _untrits(data, d, bucket_size(d, self.bucket), scales, out)
        return out
