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
then one float32 scale per bucket. Bernoulli draws use 32 random bits.
"""
import numpy as np
from numba import njit

from ..bitstream.rng import draw_u64
from ..errors import DecodeError
from .base import Codec, expect_bits
from .buckets import bucket_count, bucket_maxabs, bucket_size, check_bucket
from .signs import check_scale

_POW3 = np.array([1, 3, 9, 27, 81], np.uint8)
_DIGITS = np.array([[(v // 3 ** t) % 3 for t in range(5)] for v in range(243)], np.uint8)


@njit(cache=True)
def _digit(v, t32, r, half):
    """Base-3 digit of one coordinate: kept (1 or 2 by sign) when its 32 random bits fall below
    ``|v| / s * 2^32`` (``t32 = 2^32 / s``)."""
    rnd = np.float64((r >> np.uint64(32 * half)) & np.uint64(0xFFFFFFFF))
    keep = rnd < abs(np.float64(v)) * t32
    return np.uint8(0) if not keep else (np.uint8(2) if v < 0 else np.uint8(1))


@njit(cache=True)
def _trits(x, b, scales, key, out):
    """Draw ``i // 2`` decides coordinates ``i`` (low half) and ``i + 1`` (high half)."""
    d = x.shape[0]
    t32 = np.empty(scales.shape[0], np.float64)
    for k in range(scales.shape[0]):
        t32[k] = 4294967296.0 / np.float64(scales[k]) if scales[k] > 0 else 0.0
    dig = np.empty(d + 5, np.uint8)
    for i in range(0, d - 1, 2):
        r = draw_u64(key, i >> 1)
        dig[i] = _digit(x[i], t32[i // b], r, 0)
        dig[i + 1] = _digit(x[i + 1], t32[(i + 1) // b], r, 1)
    if d & 1:
        dig[d - 1] = _digit(x[d - 1], t32[(d - 1) // b], draw_u64(key, (d - 1) >> 1), 0)
    dig[d:] = 0
    for g in range((d + 4) // 5):
        j = 5 * g
        out[g] = dig[j] + np.uint8(3) * dig[j + 1] + np.uint8(9) * dig[j + 2] + np.uint8(27) * dig[j + 3] \
            + np.uint8(81) * dig[j + 4]


@njit(cache=True)
def _untrits(data, d, b, scales, out):
    last = d - 5 * ((d - 1) // 5) if d else 0  # digits used in the last byte
    bad = False
    for g in range((d + 4) // 5):
        v = data[g]
        n = min(5, d - 5 * g)
        bad |= v >= 243 or (n < 5 and v >= _POW3[last])
        v = min(v, np.uint8(242))
        for t in range(n):
            i = 5 * g + t
            q = _DIGITS[v, t]
            s = scales[i // b]
            out[i] = s if q == 1 else (-s if q == 2 else np.float32(0.0))
    if bad:
        raise DecodeError("terngrad: byte is not five base-3 digits (or the unused digits are not zero)")


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
        for s in scales:
            check_scale(self.name, s)
        out = np.empty(d, np.float32)
        _untrits(data, d, bucket_size(d, self.bucket), scales, out)
        return out
