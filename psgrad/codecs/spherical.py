"""Spherical compression: rotated blocks, each sent as a gain and the index of its best random codeword.

Steps (encoder; the decoder mirrors 1, 2 and 5):

1. Rotate ``x`` with the shared randomized Hadamard transform, so every input
   looks like a random point on the sphere; pad the result to ``B`` blocks of ``m``.
2. Draw this round's codebook from the shared generator: ``2^(bits-1)``
   independent uniform directions on the unit sphere of R^m and their
   negatives (``2^bits`` codewords). Fresh per round, so its distribution is
   invariant under every rotation of R^m; that is what makes the scale below exact.
3. For each block ``y_b`` pick the codeword ``c`` maximising ``<y_b, c>`` and
   its gain ``g_b = <y_b, c> = ||y_b|| cos_b >= 0`` (the minimum-error scale).
4. Quantize the gains on the uniform grid ``{0, h/(L-1), ..., h}``,
   ``h = max_b g_b``, ``L = 2^gain_bits``: stochastic rounding (unbiased) in the
   unbiased variant, nearest level in the biased one.
5. Decode ``y_b ~ s * g_hat_b * c``, unrotate. Biased: ``s = 1``. Unbiased:
   ``s = 1 / E[cos^2]``, because ``E[cos * c] = E[cos^2] y_b / ||y_b||`` for a
   rotation-invariant codebook; ``E[cos^2]`` of the best of ``2^(bits-1)``
   antipodal pairs is computed exactly by quadrature (``expected_cos``).

Bit layout (stream order): ``h`` as float32 (32 bits), then per block
``gain_bits`` bits of gain level and ``bits`` bits of codeword index
(the low ``bits - 1`` bits name the direction, the top bit its sign).
Total ``32 + B * (gain_bits + bits)`` bits, nothing else. See docs/operators.md.
"""
import functools

import numpy as np
from numba import njit
from scipy.special import betainc

from ..bitstream.bits import new_buffer, read_bits, read_f32, write_bits, write_f32
from ..bitstream.hadamard import padded_length, rotate, unrotate
from ..bitstream.rng import draw_normal, draw_uniform
from ..errors import DecodeError
from .base import Codec, expect_bits


@functools.lru_cache(maxsize=None)
def expected_cos(m, bits):
    """``(E[cos], E[cos^2])`` of the best codeword of a random antipodal code, for a fixed unit vector.

    With ``n = 2^(bits-1)`` independent uniform directions in R^m, the best
    absolute cosine ``t`` has CDF ``G(t) = (2 F(t) - 1)^n`` on [0, 1], where
    ``F`` is the CDF of one coordinate of a uniform point on the sphere,
    ``F(t) = I_{(1+t)/2}((m-1)/2, (m-1)/2)``. Then ``E[t] = 1 - int G`` and
    ``E[t^2] = 1 - 2 int t G``; both integrals use composite 20-point
    Gauss-Legendre quadrature on 400 panels (error far below float32 resolution).
    """
    if m == 1:
        return 1.0, 1.0
    n = 2 ** (bits - 1)
    nodes, weights = np.polynomial.legendre.leggauss(20)
    edges = np.linspace(0.0, 1.0, 401)
    a, b = edges[:-1, None], edges[1:, None]
    t = ((b - a) / 2 * nodes + (a + b) / 2).ravel()
    w = ((b - a) / 2 * weights).ravel()
    half = (m - 1) / 2
    G = np.clip(2 * betainc(half, half, (1 + t) / 2) - 1, 0.0, 1.0) ** n
    return 1.0 - float(np.sum(w * G)), 1.0 - 2.0 * float(np.sum(w * t * G))


@njit(cache=True)
def _codebook(key, m, half):
    """``half`` uniform unit directions in R^m (rows), from Gaussian draws of stream ``key``."""
    C = np.empty((half, m), np.float32)
    for k in range(half):
        s = 0.0
        for j in range(m):
            v = draw_normal(key, k * m + j)
            C[k, j] = v
            s += v * v
        inv = 1.0 / np.sqrt(s) if s > 0 else 0.0
        for j in range(m):
            C[k, j] = np.float32(C[k, j] * inv)
    return C


@njit(cache=True)
def _search(y, m, CT, gains, index):
    """Best antipodal codeword per block: ``index[b]`` (sign in bit ``bits-1``) and gain ``<y_b, c>``."""
    half = CT.shape[1]
    scores = np.empty(half, np.float32)
    for b in range(gains.shape[0]):
        base = b * m
        scores[:] = 0.0
        for j in range(m):
            v = y[base + j]
            row = CT[j]
            for k in range(half):  # independent lanes: vectorises without reassociation
                scores[k] += row[k] * v
        best = 0
        bestv = abs(scores[0])
        for k in range(1, half):
            a = abs(scores[k])
            if a > bestv:
                best = k
                bestv = a
        index[b] = best if scores[best] >= 0 else best + half
        gains[b] = bestv


@njit(cache=True)
def _write(gains, index, top, levels, gain_bits, bits, dither_key, stochastic):
    B = gains.shape[0]
    buf = np.zeros((32 + B * (gain_bits + bits) + 7) // 8 + 8, np.uint8)
    pos = write_f32(buf, 0, np.float32(top))
    step = top / (levels - 1) if top > 0 else 1.0
    for b in range(B):
        t = gains[b] / step
        j = np.int64(np.floor(t))
        if stochastic:
            if draw_uniform(dither_key, b) < t - j:
                j += 1
        elif t - j >= 0.5:
            j += 1
        if j > levels - 1:
            j = levels - 1
        code = np.uint64(j) | (np.uint64(index[b]) << np.uint64(gain_bits))
        pos = write_bits(buf, pos, code, gain_bits + bits)
    return buf, pos


@njit(cache=True)
def _read(buf, end, B, m, C, levels, gain_bits, bits, scale):
    top, pos = read_f32(buf, end, 0)
    if not (top >= 0.0 and top < np.inf):
        raise DecodeError("spherical: gain range must be finite and >= 0")
    half = C.shape[0]
    step = np.float64(top) / (levels - 1)
    y = np.zeros(B * m, np.float32)
    for b in range(B):
        code, pos = read_bits(buf, end, pos, gain_bits + bits)
        j = np.int64(code & np.uint64(levels - 1))
        k = np.int64(code >> np.uint64(gain_bits))
        g = np.float32(j * step * scale)
        if k >= half:
            k -= half
            g = -g
        for i in range(m):
            y[b * m + i] = g * C[k, i]
    return y


class Spherical(Codec):
    """Spherical compression ``spherical(m, bits, unbiased=True, gain_bits=2, rotation_block=4096)``.

    ``m``: block length; ``bits``: codeword index bits per block (``2^bits``
    codewords, brute-force search costs ``2^(bits-1)`` multiply-adds per
    coordinate); ``gain_bits``: bits of each block's gain; ``rotation_block``:
    Hadamard block (power of two). Rate: ``(bits + gain_bits) / m`` bits per
    coordinate plus 32 bits per message and the padding to whole blocks.
    """

    name = "spherical"

    def __init__(self, m=8, bits=6, unbiased=True, gain_bits=2, rotation_block=4096):
        if not 1 <= m <= 1024:
            raise ValueError(f"m must be in [1, 1024], got {m=}")
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in [1, 16], got {bits=}")
        if not 1 <= gain_bits <= 16:
            raise ValueError(f"gain_bits must be in [1, 16], got {gain_bits=}")
        if rotation_block < 1 or rotation_block & (rotation_block - 1):
            raise ValueError(f"rotation_block must be a power of two, got {rotation_block=}")
        super().__init__(m=m, bits=bits, unbiased=unbiased, gain_bits=gain_bits, rotation_block=rotation_block)
        self.m, self.bits, self.gain_bits, self.rotation_block = int(m), int(bits), int(gain_bits), int(rotation_block)
        self.unbiased = bool(unbiased)
        self.levels = 1 << self.gain_bits
        self.kappa, self.cos2 = expected_cos(self.m, self.bits)

    def blocks(self, d):
        """Number of blocks of ``m`` after rotation and padding."""
        return -(-padded_length(d, self.rotation_block) // self.m) if d else 0

    def payload_bits(self, d):
        """Exact payload length for ``d`` coordinates."""
        return 32 + self.blocks(d) * (self.bits + self.gain_bits) if d else 0

    def omega(self, d):
        # Shape term 1/E[cos^2] - 1, plus the gain dither: each block's dither variance is at most
        # step * g_b, step <= ||y|| / (L-1), and sum_b g_b <= sqrt(B) ||y||; divided by E[cos^2]^2.
        if not self.unbiased:
            return None
        return 1.0 / self.cos2 - 1.0 + np.sqrt(self.blocks(d)) / ((self.levels - 1) * self.cos2 ** 2)

    def _codebook(self, key):
        return _codebook(np.uint64(key.stream("spherical.codebook")), self.m, 1 << (self.bits - 1))

    def _encode(self, x, key):
        d = x.shape[0]
        if d == 0:
            return np.zeros(0, np.uint8), 0
        B = self.blocks(d)
        y = np.zeros(B * self.m, np.float32)
        r = rotate(x, np.uint64(key.stream("spherical.rotation")), self.rotation_block)
        y[: r.shape[0]] = r
        C = self._codebook(key)
        gains = np.empty(B, np.float64)
        index = np.empty(B, np.int64)
        _search(y, self.m, np.ascontiguousarray(C.T), gains, index)
        top = np.float32(gains.max())
        if np.float64(top) < gains.max():  # the float32 top must cover every gain
            top = np.nextafter(top, np.float32(np.inf))
        if not np.isfinite(top):
            raise ValueError("spherical: input must be finite")
        return _write(gains, index, np.float64(top), self.levels, self.gain_bits, self.bits,
                      np.uint64(key.stream("spherical.dither")), self.unbiased)

    def _decode(self, data, nbits, d, key):
        if d == 0:
            expect_bits(self.name, nbits, 0)
            return np.zeros(0, np.float32)
        expect_bits(self.name, nbits, self.payload_bits(d))
        B = self.blocks(d)
        scale = 1.0 / self.cos2 if self.unbiased else 1.0
        y = _read(data, nbits, B, self.m, self._codebook(key), self.levels, self.gain_bits, self.bits, scale)
        n = padded_length(d, self.rotation_block)
        return unrotate(y[:n], d, np.uint64(key.stream("spherical.rotation")), self.rotation_block)
