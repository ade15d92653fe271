"""``stochastic_uniform(bits)``: unbiased stochastic rounding to a uniform grid of ``2^bits`` levels.

With ``m = max_i |x_i|`` and ``s = 2^bits - 1`` intervals, coordinate ``x_i`` sits at
``u_i = (x_i / m + 1) s / 2`` in ``[0, s]`` and is sent as the level ``l_i = floor(u_i)`` or
``floor(u_i) + 1``, the upper one with probability ``u_i - floor(u_i)``; it decodes to
``m (2 l_i / s - 1)``. So ``E[C(x)] = x``, each coordinate's variance is at most ``(m / s)^2`` and, since
``m^2 <= ||x||^2``, ``E||C(x) - x||^2 <= (d / s^2) ||x||^2`` (``omega = d / s^2``).

Layout, exactly ``32 + bits * d`` bits:

- bits 0-31: ``m`` as a little-endian float32;
- then ``l_0, l_1, ...``, ``bits`` bits each, least significant bit first (stream bit ``i`` is bit
  ``i % 8`` of byte ``i // 8``); the padding bits of the last byte are zero.

The rounding draws come from the message's key (``key.stream``), so the same key gives the same bytes;
the decoder needs no randomness.
"""
import numpy as np

from psgrad import Codec, DecodeError

HEADER_BITS = 32


class StochasticUniform(Codec):
    """Unbiased ``bits``-bit stochastic uniform quantizer with a max-abs scale."""

    name = "stochastic_uniform"
    unbiased = True

    def __init__(self, bits=4):
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in [1, 16], got {bits=}")
        super().__init__(bits=bits)
        self.bits = int(bits)
        self.intervals = (1 << self.bits) - 1

    def omega(self, d):
        return d / self.intervals ** 2

    def payload_bits(self, d):
        """The exact payload size for a vector of length ``d``."""
        return HEADER_BITS + self.bits * d

    def _encode(self, x, key):
        d = x.shape[0]
        m = np.float32(np.max(np.abs(x))) if d else np.float32(0.0)
        if not np.isfinite(m):
            raise ValueError(f"{self.name}: x holds a non-finite value")
        levels = np.zeros(d, np.int64)
        if m > 0:
            u = (x.astype(np.float64) / np.float64(m) + 1.0) * (self.intervals / 2)
            low = np.floor(u)
            draws = np.random.default_rng(int(key.stream("stochastic_uniform"))).random(d)
            levels = np.minimum(low + (draws < u - low), self.intervals).astype(np.int64)
        buf = np.zeros((self.payload_bits(d) + 7) // 8, np.uint8)
        buf[:4] = np.array([m], "<f4").view(np.uint8)
        # bit j of level i is stream bit 32 + bits * i + j
        planes = (levels[:, None] >> np.arange(self.bits)) & 1
        buf[4:] = np.packbits(planes.astype(np.uint8).ravel(), bitorder="little")
        return buf, self.payload_bits(d)

    def _decode(self, data, nbits, d, key):
        expected = self.payload_bits(d)
        if nbits != expected:
            raise DecodeError(f"{self.name}: payload has {nbits} bits, expected {expected} "
                              f"(32 + {self.bits} x {d})")
        m = np.float64(data[:4].copy().view("<f4")[0])
        if not np.isfinite(m) or m < 0 or np.signbit(m):
            raise DecodeError(f"{self.name}: scale {m!r} is not a finite non-negative float32")
        planes = np.unpackbits(data[4:(nbits + 7) // 8], count=self.bits * d, bitorder="little")
        levels = planes.reshape(d, self.bits).astype(np.int64) @ (1 << np.arange(self.bits))
        # every bits-bit level lies in [0, s], so any payload of the right length decodes
        return (m * (2.0 * levels / self.intervals - 1.0)).astype(np.float32)
