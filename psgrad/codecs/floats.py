"""Floating-point baselines: float32, IEEE half precision and bfloat16 (32d, 16d and 16d bits)."""
import numpy as np
from numba import njit

from .base import Codec, add_into, expect_bits


class Fp32(Codec):
    """The identity: the raw float32 bytes (little-endian), 32 bits per coordinate."""

    name = "fp32"
    unbiased = True
    raw_float32 = True

    def omega(self, d):
        return 0.0

    def _encode(self, x, key):
        return x.view(np.uint8).copy(), 32 * x.shape[0]

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 32 * d)
        return data[: 4 * d].copy().view(np.float32)

    def _decode_add(self, data, nbits, d, key, out):
        expect_bits(self.name, nbits, 32 * d)
        add_into(out, data[: 4 * d].view(np.float32))  # straight from the payload's bytes


@njit(cache=True)
def _to_fp16(u, out):
    """float32 bits -> IEEE binary16 bits, round to nearest even (bit-identical to numpy's cast for
    non-NaN input; NaN becomes the quiet NaN 0x7E00 with its sign)."""
    for i in range(u.shape[0]):
        v = u[i]
        sign = (v >> np.uint32(16)) & np.uint32(0x8000)
        a = v & np.uint32(0x7FFFFFFF)
        if a >= np.uint32(0x47800000):  # >= 2^16 (or inf/NaN): overflow
            h = np.uint32(0x7E00) if a > np.uint32(0x7F800000) else np.uint32(0x7C00)
        elif a >= np.uint32(0x38800000):  # a normal half: rebias the exponent, round the mantissa
            odd = (a >> np.uint32(13)) & np.uint32(1)
            h = (a - np.uint32(0x38000000) + np.uint32(0xFFF) + odd) >> np.uint32(13)
        else:  # a subnormal half: the value in units of 2^-24, rounded to nearest even
            e = a >> np.uint32(23)
            shift = np.uint32(126) - e if e < np.uint32(126) else np.uint32(0)
            if e == 0 or shift >= np.uint32(25):
                h = np.uint32(0)
            else:
                mant = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
                q = mant >> shift
                rem = mant & ((np.uint32(1) << shift) - np.uint32(1))
                half = np.uint32(1) << (shift - np.uint32(1))
                if rem > half or (rem == half and (q & np.uint32(1))):
                    q += np.uint32(1)
                h = q
        out[i] = np.uint16(h | sign)


@njit(cache=True)
def _from_table(h, table, out, add):
    """``out[i] = table[h[i]]``, or with ``add`` ``out[i] + table[h[i]]``."""
    for i in range(h.shape[0]):
        out[i] = out[i] + table[h[i]] if add else table[h[i]]


# every binary16 value as float32: decoding is one table lookup per coordinate (256 KiB, cache-resident)
_FP16_TABLE = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


class Fp16(Codec):
    """Round to nearest IEEE half precision, 16 bits per coordinate.

    Biased (round to nearest); magnitudes of 65520 and above become infinite,
    and below 2^-25 zero, as in any fp16 all-reduce.
    """

    name = "fp16"
    unbiased = False

    def alpha(self, d):
        return 1.0 - 2.0 ** -22  # relative rounding error <= 2^-11 per coordinate, in range

    def _encode(self, x, key):
        out = np.empty(x.shape[0], np.uint16)
        _to_fp16(x.view(np.uint32), out)
        return out.view(np.uint8), 16 * x.shape[0]

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 16 * d)
        out = np.empty(d, np.float32)
        _from_table(data[: 2 * d].view(np.uint16), _FP16_TABLE, out, False)
        return out

    def _decode_add(self, data, nbits, d, key, out):
        expect_bits(self.name, nbits, 16 * d)
        _from_table(data[: 2 * d].view(np.uint16), _FP16_TABLE, out, True)


@njit(cache=True)
def _to_bf16(u, out):
    """float32 bits -> bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN."""
    for i in range(u.shape[0]):
        v = u[i]
        if (v & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
            out[i] = np.uint16((v >> np.uint32(16)) | np.uint32(0x40))
        else:
            out[i] = np.uint16((v + np.uint32(0x7FFF) + ((v >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@njit(cache=True)
def _from_bf16(h, out):
    for i in range(h.shape[0]):
        out[i] = np.uint32(h[i]) << np.uint32(16)


class Bf16(Codec):
    """Round to nearest even bfloat16 (the top 16 bits of float32), 16 bits per coordinate.

    bfloat16 keeps float32's exponent range, so 1e-30 and 1e30 survive where
    fp16 underflows or overflows; the relative error is at most ``2^-8``.
    """

    name = "bf16"
    unbiased = False

    def alpha(self, d):
        return 1.0 - 2.0 ** -16

    def _encode(self, x, key):
        out = np.empty(x.shape[0], np.uint16)
        _to_bf16(x.view(np.uint32), out)
        return out.view(np.uint8), 16 * x.shape[0]

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 16 * d)
        out = np.empty(d, np.uint32)
        _from_bf16(data[: 2 * d].view(np.uint16), out)
        return out.view(np.float32)
