"""Spherical compression: rotated blocks, each sent as a gain and the index of its best codeword.

Two codes. ``code="trellis"`` (the default; ``spherical_trellis.py``):
trellis-coded quantization of each block, exactly unbiased through a shared
Haar turn of the blocks. ``code="random"`` (this module; the meaning of
``spherical(m, bits)``): a fresh random spherical code per round, searched by
brute force. Steps of the random code (encoder; the decoder mirrors 1, 2 and 5):

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

from ..bitstream.bits import f32_field, field_f32
from ..bitstream.hadamard import padded_length, rotate, unrotate
from ..bitstream.rng import draw_normal
from ..bitstream.words import get, load_words, put
from ..errors import DecodeError
from .base import Codec, expect_bits
from .buckets import F32_MAX, range_shift
from .spherical_trellis import decode_tables, encode_blocks, gain_level, haar, read_blocks, write_blocks
from .trellis import CODES, LEVELS, trellis_tables


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
    words = np.zeros((32 + B * (gain_bits + bits) + 63) // 64 + 1, np.uint64)
    pos = put(words, 0, f32_field(np.float32(top)), 32)
    step = top / (levels - 1) if top > 0 else 1.0
    for b in range(B):
        j = gain_level(gains[b], step, levels, dither_key, b, stochastic)
        code = np.uint64(j) | (np.uint64(index[b]) << np.uint64(gain_bits))
        pos = put(words, pos, code, gain_bits + bits)
    return words.view(np.uint8), pos


@njit(cache=True)
def _read(words, end, B, m, C, levels, gain_bits, bits, scale, y):
    """Fill ``y`` (``B m``, allocated by the caller with numpy: huge pages) with the decoded blocks."""
    if end < 32 + B * (gain_bits + bits):
        raise DecodeError("spherical: payload shorter than its blocks")
    tb, pos = get(words, 0, 32)
    top = field_f32(tb)
    if not (top >= 0.0 and top < np.inf):
        raise DecodeError("spherical: gain range must be finite and >= 0")
    half = C.shape[0]
    step = np.float64(top) / (levels - 1)
    for b in range(B):
        code, pos = get(words, pos, gain_bits + bits)
        j = np.int64(code & np.uint64(levels - 1))
        k = np.int64(code >> np.uint64(gain_bits))
        g = np.float32(j * step * scale)
        if k >= half:
            k -= half
            g = -g
        for i in range(m):
            y[b * m + i] = g * C[k, i]


# code -> defaults of (m, bits, gain_bits) for the unbiased and the biased variant
_DEFAULTS = {
    "random": {True: (8, 6, 2), False: (8, 6, 2)},
    "trellis": {True: (128, 128, 3), False: (4096, 4096, 6)},
}
TRELLIS_STATES = tuple(sorted(CODES))


class Spherical(Codec):
    """Spherical compression ``spherical(m, bits, unbiased=True, gain_bits, rotation_block=4096, code, states=8)``.

    ``code="random"``: a fresh random spherical code of ``2^bits`` codewords per
    block of ``m`` (brute-force search, ``2^(bits-1)`` multiply-adds per
    coordinate). ``code="trellis"``: trellis-coded quantization of each block
    (``bits = m`` or ``2 m``: 1 or 2 bits per coordinate, ``states`` trellis
    states, Viterbi search, ``2 states`` add-compare-selects per coordinate);
    the unbiased variant turns every block by a shared Haar ``m x m`` rotation
    (``m <= 256``). ``gain_bits``: bits of each block's gain;
    ``rotation_block``: Hadamard block (power of two). Rate:
    ``(bits + gain_bits) / m`` bits per coordinate plus 32 bits per message
    and the padding to whole blocks. Unset ``m``, ``bits``, ``gain_bits`` take
    the defaults of the code (random: 8, 6, 2; trellis: 128, 128, 3 unbiased and
    4096, 4096, 6 biased). ``code="auto"`` (default): the trellis code when
    neither ``m`` nor ``bits`` is given, else the random code.
    """

    name = "spherical"

    def __init__(self, m=None, bits=None, unbiased=True, gain_bits=None, rotation_block=4096, code="auto",
                 states=8):
        if code == "auto":  # spherical(m, bits) keeps its meaning: a random code of 2^bits codewords per block
            code = "trellis" if m is None and bits is None else "random"
        if code not in _DEFAULTS:
            raise ValueError(f"code must be one of {sorted(_DEFAULTS) + ['auto']}, got {code=}")
        dm, db, dg = _DEFAULTS[code][bool(unbiased)]
        m, bits, gain_bits = (dm if m is None else m), (db if bits is None else bits), (dg if gain_bits is None
                                                                                      else gain_bits)
        if not 1 <= m <= (256 if code == "trellis" and unbiased else 1 << 16):
            raise ValueError(f"m must be in [1, 1024] (random), [1, 256] (unbiased trellis: an m x m rotation) "
                             f"or [1, 65536] (biased trellis), got {m=}")
        if code == "random" and not (1 <= bits <= 16 and m <= 1024):
            raise ValueError(f"bits must be in [1, 16] and m <= 1024 for the random code, got {bits=}, {m=}")
        if code == "trellis" and bits not in (m, 2 * m):
            raise ValueError(f"bits must be m or 2 m (1 or 2 bits per coordinate) for the trellis code, got {bits=}, {m=}")
        if code == "trellis" and states not in CODES:
            raise ValueError(f"states must be one of {TRELLIS_STATES}, got {states=}")
        if not 1 <= gain_bits <= 16:
            raise ValueError(f"gain_bits must be in [1, 16], got {gain_bits=}")
        if rotation_block < 1 or rotation_block & (rotation_block - 1):
            raise ValueError(f"rotation_block must be a power of two, got {rotation_block=}")
        super().__init__(m=m, bits=bits, unbiased=unbiased, gain_bits=gain_bits, rotation_block=rotation_block,
                         code=code, states=states)
        self.m, self.bits, self.gain_bits, self.rotation_block = int(m), int(bits), int(gain_bits), int(rotation_block)
        self.code, self.states = code, int(states)
        self.unbiased = bool(unbiased)
        self.levels = 1 << self.gain_bits
        if code == "random":
            self.kappa, self.cos2 = expected_cos(self.m, self.bits)
        else:
            self.rate = self.bits // self.m
            self.alphabet = LEVELS[self.rate, self.states]
            self.label, self.nxt = trellis_tables(self.states, *CODES[self.states])
            self.vals, self.nxt2, self.T4, self.N4 = decode_tables(self.alphabet, self.label, self.nxt, self.rate)

    def block(self, d):
        """Block length for ``d`` coordinates: ``m``, or the padded length when that is shorter (trellis)."""
        if self.code == "trellis":
            return min(self.m, padded_length(d, self.rotation_block)) if d else self.m
        return self.m

    def blocks(self, d):
        """Number of blocks after rotation and padding."""
        return -(-padded_length(d, self.rotation_block) // self.block(d)) if d else 0

    def payload_bits(self, d):
        """Exact payload length for ``d`` coordinates."""
        if not d:
            return 0
        per_block = self.gain_bits + (self.rate * self.block(d) if self.code == "trellis" else self.bits)
        return 32 + self.blocks(d) * per_block

    def shape_error(self, d):
        """``E||C(x) - x||^2 / ||x||^2`` of the unbiased variant for ``d``-vectors without the gain dither,
        the same for every ``x`` (None for the biased variant). Trellis: ``E[1/cos^2] - 1`` of the TCQ path,
        the same for every input because the Haar turn makes each block's direction uniform; tabulated
        (``shape_constants``, upper 4-sigma). Random code: ``1 / E[cos^2] - 1``."""
        if not self.unbiased:
            return None
        if self.code == "trellis":
            return shape_constants(self.block(d), self.rate, self.states)[0] - 1.0
        return 1.0 / self.cos2 - 1.0

    def omega(self, d):
        if not self.unbiased:
            return None
        shape = self.shape_error(d)
        if self.code == "trellis":  # the shape term and the gain dither, as below, with E[1/cos^2] for 1/E[cos^2]
            return shape + np.sqrt(self.blocks(d)) * (shape + 1.0) / (self.levels - 1)
        # Shape term 1/E[cos^2] - 1, plus the gain dither: each block's dither variance is at most
        # step * g_b, step <= ||y|| / (L-1), and sum_b g_b <= sqrt(B) ||y||; divided by E[cos^2]^2.
        return shape + np.sqrt(self.blocks(d)) / ((self.levels - 1) * self.cos2 ** 2)

    def _codebook(self, key):
        return _codebook(np.uint64(key.stream("spherical.codebook")), self.m, 1 << (self.bits - 1))

    def _turn(self, key, d):
        """The Haar rotation of the round's blocks (unbiased trellis), or an empty matrix for none."""
        if self.code == "trellis" and self.unbiased:
            return haar(np.uint64(key.stream("spherical.haar")), self.block(d))
        return np.zeros((0, 0), np.float32)

    def _rotated(self, x, key):
        B, m = self.blocks(x.shape[0]), self.block(x.shape[0])
        r = rotate(x, np.uint64(key.stream("spherical.rotation")), self.rotation_block)
        if r.shape[0] == B * m:  # the usual case: the padded length is a whole number of blocks
            return r
        y = np.zeros(B * m, np.float32)
        y[: r.shape[0]] = r
        return y

    @staticmethod
    def _top(gains, shift):
        """The float32 top of the gain grid, >= every gain, after scaling the gains of an input scaled
        by ``2^-shift`` back (in place). Gains beyond float32's range are all scaled down together, so that
        the message stays valid: it then decodes to a shrunken vector."""
        gains *= 2.0 ** shift
        over = gains.max() / (F32_MAX * (1 - 2.0 ** -20))
        if over > 1:
            gains /= over
        top = np.float32(gains.max())
        if np.float64(top) < gains.max():  # the float32 top must cover every gain
            top = np.nextafter(top, np.float32(np.inf))
        return np.float64(top)

    def _encode(self, x, key):
        d = x.shape[0]
        if d == 0:
            return np.zeros(0, np.uint8), 0
        if not np.isfinite(x).all():
            raise ValueError("spherical: input must be finite")
        shift = range_shift(x)  # entries near float32's maximum would overflow the rotation and the norms
        y = self._rotated(np.ldexp(x, -shift), key)
        B, m = self.blocks(d), self.block(d)
        gains = np.empty(B, np.float64)
        dither = np.uint64(key.stream("spherical.dither"))
        if self.code == "trellis":
            codes = np.empty(B * m, np.uint8)
            encode_blocks(y, m, np.ascontiguousarray(self._turn(key, d).T), self.alphabet, self.label, self.nxt,
                          self.unbiased, gains, codes)
            return write_blocks(gains, codes, m, self.rate, self._top(gains, shift), self.levels, self.gain_bits, dither,
                                self.unbiased)
        index = np.empty(B, np.int64)
        _search(y, self.m, np.ascontiguousarray(self._codebook(key).T), gains, index)
        return _write(gains, index, self._top(gains, shift), self.levels, self.gain_bits, self.bits, dither, self.unbiased)

    def _decode(self, data, nbits, d, key):
        if d == 0:
            expect_bits(self.name, nbits, 0)
            return np.zeros(0, np.float32)
        expect_bits(self.name, nbits, self.payload_bits(d))
        B = self.blocks(d)
        words = load_words(data, nbits)
        # A top near float32's maximum: decode at 2^-shift (the top field is the low half of word 0), so that
        # the blocks and the rotation's sums stay finite, and scale the result back at the end.
        shift = range_shift(words.view(np.float32)[:1])
        if shift:
            words.view(np.float32)[0] = np.ldexp(words.view(np.float32)[0], -shift)
        if self.code == "trellis":
            y = np.empty(B * self.block(d), np.float32)
            read_blocks(words, nbits, B, self.block(d), self.rate, self.vals, self.nxt2,
                        self.T4, self.N4, self.levels, self.gain_bits, self._turn(key, d), y)
        else:
            scale = 1.0 / self.cos2 if self.unbiased else 1.0
            y = np.empty(B * self.m, np.float32)
            _read(words, nbits, B, self.m, self._codebook(key), self.levels, self.gain_bits,
                  self.bits, scale, y)
        n = padded_length(d, self.rotation_block)
        out = unrotate(y[:n], d, np.uint64(key.stream("spherical.rotation")), self.rotation_block)
        if shift:
            with np.errstate(over="ignore"):  # a value beyond float32's range is inf
                out = np.ldexp(out, shift)
        return out


@functools.lru_cache(maxsize=None)
def shape_constants(m, rate, states, samples=4000):
    """Upper 4-sigma bound of ``E[1/cos^2]`` and the mean of ``cos^2`` of the Haar-turned TCQ block.

    With the Haar turn a block's direction is uniform on the sphere whatever the input, so these are
    constants of ``(m, rate, states)``; estimated on ``samples`` uniform directions (fixed seed).
    """
    rng = np.random.default_rng(12345)
    y = rng.standard_normal(samples * m).astype(np.float32)
    label, nxt = trellis_tables(states, *CODES[states])
    gains = np.empty(samples)
    codes = np.empty(samples * m, np.uint8)
    encode_blocks(y, m, np.zeros((0, 0), np.float32), LEVELS[rate, states], label, nxt, True, gains, codes)
    # unbiased gain g = ||z||^2 / <z, Q>, so 1/cos^2 = g^2 ||Q||^2 / ||z||^2
    vals, nxt2, _, _ = decode_tables(LEVELS[rate, states], label, nxt, rate)
    q = _levels_of(codes, vals, nxt2, m)
    zz = (y.astype(np.float64).reshape(samples, m) ** 2).sum(1)
    inv = gains ** 2 * (q.reshape(samples, m) ** 2).sum(1) / zz
    return float(inv.mean() + 4 * inv.std() / np.sqrt(samples)), float((1 / inv).mean())


@njit(cache=True)
def _levels_of(codes, vals, nxt2, m):
    out = np.empty(codes.shape[0])
    for b in range(codes.shape[0] // m):
        s = 0
        for t in range(m):
            c = codes[b * m + t]
            out[b * m + t] = vals[s, c]
            s = nxt2[s, c]
    return out
