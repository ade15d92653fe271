"""Uncompressed baselines: float32 and IEEE half precision, 32d and 16d payload bits."""
import numpy as np

from .base import Codec, expect_bits


class Fp32(Codec):
    """The identity: the raw float32 bytes (little-endian), 32 bits per coordinate."""

    name = "fp32"
    unbiased = True

    def omega(self, d):
        return 0.0

    def _encode(self, x, key):
        return x.view(np.uint8).copy(), 32 * x.shape[0]

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 32 * d)
        return data[: 4 * d].copy().view(np.float32)


class Fp16(Codec):
    """Round to nearest IEEE half precision, 16 bits per coordinate.

    Biased (round to nearest); magnitudes above 65504 become infinite, as in
    any fp16 all-reduce.
    """

    name = "fp16"
    unbiased = False

    def alpha(self, d):
        return 1.0 - 2.0 ** -22  # relative rounding error <= 2^-11 per coordinate, in range

    def _encode(self, x, key):
        return x.astype(np.float16).view(np.uint8), 16 * x.shape[0]

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 16 * d)
        return data[: 2 * d].copy().view(np.float16).astype(np.float32)
