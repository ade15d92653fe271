"""Rotated ternary code: a Haar-turned, thresholded sign pattern with Golomb-coded positions, for low rates.

Steps (encoder; the decoder mirrors 1, 2 and 5):

1. Rotate ``x`` with the shared randomized Hadamard transform (blocks of
   ``rotation_block``) and split the padded result into ``B`` blocks of
   ``m' = min(m, n)``.
2. Turn every block by the same Haar-random orthogonal ``U`` of the round,
   ``z_b = U y_b``. ``U`` is a product of ``m'`` Householder reflections of
   shrinking size drawn from shared normals (``householder_haar``): ``m'^2 / 2``
   draws and no factorisation. With many blocks it is formed as a dense
   matrix from the reflections (``dense_turn``, about ``2 m'^3 / 3``
   multiply-adds) and applied with ``turn_rows``; with few (``B < m'``, short
   vectors) the reflections are applied to the blocks directly
   (``reflect_rows``, about ``m'^2`` multiply-adds per block). Either way
   ``O(m')`` multiply-adds per coordinate in a fixed order (``turn_blocks``).
3. Keep coordinate ``t`` of block ``b`` when ``|z_bt| > T ||z_b|| / sqrt(m')``:
   ``Q_b`` is the vector of signs on the kept set, zero elsewhere. ``T`` is
   set from ``rate`` so that the entropy of the kept pattern plus its signs
   is the rate left after the block norms.
4. Send each block norm ``||z_b||`` on the grid ``lo + j (hi - lo) / (L - 1)``
   (``L = 2^norm_bits``, ``lo``/``hi`` the smallest/largest norm as float32,
   rounded outwards) by stochastic rounding with shared uniforms, and the
   kept positions (in block order) as Golomb-coded gaps, each followed by
   its sign.
5. Decode ``y_b = U^T (kappa * nhat_b * Q_b)``, unrotate. ``kappa =
   sqrt(m') / mu`` with ``mu = E[<Q(z), z>]`` for ``z`` uniform on the sphere
   of radius ``sqrt(m')``, computed in closed form (``shape``).

Why it is exactly unbiased: with ``U`` Haar, ``z_b`` is uniform on its sphere
whatever ``y_b``, and ``Q_b`` is a function of ``z_b`` alone. Write ``Q(z) =
a(z) z + w(z)``, ``w ⊥ z``. The argument of the trellis code
(``spherical_trellis``) gives ``E[U^T w(U y_b)] = 0``, so
``E[U^T Q_b] = E[a] y_b`` with ``E[a] = mu / (sqrt(m') ||y_b||)``, and
``kappa * E[nhat_b] = kappa ||y_b||`` turns it into ``y_b``. The scale uses
the expectation of ``<Q, z>``, not its value per block (EDEN's scale,
Vargaftik et al., ICML 2022, uses the value): at a handful of kept
coordinates per block the per-block value varies a lot and its inverse costs
more error than the mean (measured in docs/operators.md).

Bit layout (stream order): ``lo`` and ``hi`` float32 (64 bits), ``B`` norm
levels of ``norm_bits`` bits, Elias delta of ``K + 1`` (``K`` kept
coordinates), then per kept coordinate the Golomb code (parameter ``M`` of
``golomb_parameter(P)``, ``P`` the keep probability) of its gap to the
previous one minus one (the first from -1), and a sign bit (1 = negative).
"""
import functools

import numpy as np
from numba import njit
from scipy.special import betainc, gammaln

from ..bitstream.bits import f32_field, field_f32
from ..bitstream.hadamard import padded_length, rotate, unrotate
from ..bitstream.rng import draw_normal, draw_uniform
from ..bitstream.words import (get_checked, get_gamma, get_golomb, golomb_parameter, load_words, new_words, put,
                               put_gamma, put_golomb)
from ..errors import DecodeError
from .base import Codec
from .buckets import F32_MAX, range_shift
from .spherical_trellis import turn_rows

GROUP = 32  # blocks turned at a time: a tile that stays in cache


@njit(cache=True)
def householder_haar(key, m):
    """A Haar-random ``m x m`` orthogonal ``U = H_0 (1 + H_1 (1 + ... H_{m-1}))`` as reflection vectors.

    Reflection ``k`` acts on coordinates ``k..m-1``: with ``v`` of ``m - k``
    shared normals, ``u = v / ||v||``, ``s = sign(u_0)`` and ``w = e_0 + s u``,
    ``H_k a = -s (a - <w, a> w / (1 + |u_0|))``, which maps ``e_0`` to ``u``
    (uniform on the sphere). A uniform first column followed by an independent
    Haar matrix on its complement is Haar (the subgroup algorithm; Diaconis
    and Shahshahani 1987, Stewart 1980). Returns ``(W, off, f, s)``: reflection
    ``k``'s ``w`` in ``W[off[k]:off[k] + m - k]`` and ``H_k a = s_k' a + f_k <w, a> w``
    with ``s_k' = -s`` and ``f_k = s / (1 + |u_0|)``, all float32.
    """
    off = np.empty(m + 1, np.int64)
    off[0] = 0
    for k in range(m):
        off[k + 1] = off[k] + m - k
    W = np.empty(off[m], np.float32)
    f = np.empty(m, np.float32)
    sg = np.empty(m, np.float32)
    v = np.empty(m)
    for k in range(m):
        L = m - k
        nn = 0.0
        for i in range(L):
            v[i] = draw_normal(key, off[k] + i)
            nn += v[i] * v[i]
        inv = 1.0 / np.sqrt(nn) if nn > 0.0 else 0.0
        u0 = v[0] * inv if nn > 0.0 else 1.0
        s = 1.0 if u0 >= 0.0 else -1.0
        W[off[k]] = np.float32(1.0 + s * u0)
        for i in range(1, L):
            W[off[k] + i] = np.float32(s * v[i] * inv)
        f[k] = np.float32(s / (1.0 + abs(u0)))
        sg[k] = np.float32(-s)
    return W, off, f, sg


@njit(cache=True)
def _reflect(zt, m, k, W, off, f, sg):
    """Apply reflection ``k`` to the eight lanes of the tile ``zt[i * 8 + l]`` (float32, terms in order of ``i``).

    The lanes' dot products live in eight scalars, which the compiler packs into
    one SIMD register (an array would alias the tile and stay scalar).
    """
    w = W[off[k]:off[k + 1]]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
    for i in range(k, m):
        wi = w[i - k]
        r = zt[i * 8:i * 8 + 8]
        a0 += wi * r[0]
        a1 += wi * r[1]
        a2 += wi * r[2]
        a3 += wi * r[3]
        a4 += wi * r[4]
        a5 += wi * r[5]
        a6 += wi * r[6]
        a7 += wi * r[7]
    fk = f[k]
    a0, a1, a2, a3, a4, a5, a6, a7 = fk * a0, fk * a1, fk * a2, fk * a3, fk * a4, fk * a5, fk * a6, fk * a7
    s = sg[k]
    for i in range(k, m):
        wi = w[i - k]
        r = zt[i * 8:i * 8 + 8]
        r[0] = s * r[0] + a0 * wi
        r[1] = s * r[1] + a1 * wi
        r[2] = s * r[2] + a2 * wi
        r[3] = s * r[3] + a3 * wi
        r[4] = s * r[4] + a4 * wi
        r[5] = s * r[5] + a5 * wi
        r[6] = s * r[6] + a6 * wi
        r[7] = s * r[7] + a7 * wi


@njit(cache=True)
def dense_turn(W, off, f, sg, m):
    """``(U, U^T)`` as dense float32 matrices (``U[i, j] = (U e_j)_i``), from the reflections.

    Eight columns at a time as lanes of a tile (``_reflect``): column ``j``
    starts as ``e_j``, on which the reflections ``k > j`` act as the identity,
    so the lanes ``j0..j0+7`` start at reflection ``j0 + 7``. About
    ``2 m^3 / 3`` multiply-adds per message; the data are then turned at
    matrix-product speed by ``turn_rows``.
    """
    U = np.empty((m, m), np.float32)
    UT = np.empty((m, m), np.float32)
    zt = np.zeros(m * 8, np.float32)
    for j0 in range(0, m, 8):
        n = min(8, m - j0)
        zt[:] = 0.0
        for l in range(n):
            zt[(j0 + l) * 8 + l] = 1.0
        for k in range(min(m - 1, j0 + 7), -1, -1):
            _reflect(zt, m, k, W, off, f, sg)
        for l in range(n):
            for i in range(m):
                U[i, j0 + l] = zt[i * 8 + l]
                UT[j0 + l, i] = zt[i * 8 + l]
    return U, UT


@njit(cache=True)
def reflect_rows(V, W, off, f, sg, back, out):
    """``out[b] = U V[b]`` (``back``: ``U^T V[b]``) for every row, straight from the reflections, eight rows
    at a time as the lanes of a tile (``_reflect``). ``U`` applies reflection ``m - 1`` first and ``0``
    last; every reflection is symmetric, so ``U^T`` applies them in the opposite order."""
    n, m = V.shape
    zt = np.empty(m * 8, np.float32)
    for b0 in range(0, n, 8):
        nl = min(8, n - b0)
        zt[:] = 0.0
        for l in range(nl):
            for i in range(m):
                zt[i * 8 + l] = V[b0 + l, i]
        for j in range(m):
            _reflect(zt, m, j if back else m - 1 - j, W, off, f, sg)
        for l in range(nl):
            for i in range(m):
                out[b0 + l, i] = zt[i * 8 + l]


@functools.lru_cache(maxsize=16)
def _reflections(key, m):
    """``householder_haar(key, m)``, read-only, for the last 16 keys: in one process (the local transport)
    the server's decode draws the ``m^2 / 2`` normals of the agent's encode again, which at ``B < m``
    blocks cost more than turning the blocks (2 MB per key at ``m = 1024``)."""
    refl = householder_haar(key, m)
    for a in refl:
        a.flags.writeable = False
    return refl


def forget_turns():
    """Empty the cache of reflections (``_reflections``)."""
    _reflections.cache_clear()


def haar_turn(key, m, B):
    """The round's turn for ``B`` blocks of ``m``: ``(W, off, f, sg, U, UT)``, the reflections and, where
    ``B >= m`` makes building them cheaper than applying the reflections block by block, the dense ``U``
    and ``U^T`` (else 0 x 0)."""
    refl = _reflections(key, m)
    if B < m:
        empty = np.zeros((0, 0), np.float32)
        return refl + (empty, empty)
    return refl + dense_turn(*refl, m)


@njit(cache=True)
def turn_blocks(V, turn, back, out):
    """``out[b] = U V[b]`` (``back``: ``U^T V[b]``) for every row, with the dense matrices of ``turn`` when
    it has them (``turn_rows``), else from its reflections (``reflect_rows``)."""
    W, off, f, sg, U, UT = turn
    if U.shape[0]:
        turn_rows(V, U if back else UT, out)
    else:
        reflect_rows(V, W, off, f, sg, back, out)


@njit(cache=True)
def _select(y, m, B, turn, T, norms, idx, neg):
    """Turn the blocks of ``y`` (``z_b = U y_b``, ``GROUP`` blocks at a time through ``turn_blocks``), record
    their norms and the kept positions and signs; returns ``K``."""
    G = GROUP
    Y = y[:B * m].reshape((B, m))
    Z = np.empty((G, m), np.float32)
    K = 0
    for b0 in range(0, B, G):
        n = min(G, B - b0)
        turn_blocks(Y[b0:b0 + n], turn, False, Z[:n])
        for l in range(n):
            z = Z[l]
            s = 0.0
            for i in range(m):
                v = np.float64(z[i])
                s += v * v
            norms[b0 + l] = np.sqrt(s)
            if s == 0.0:
                continue
            thr = T * np.sqrt(s / m)
            for i in range(m):
                if abs(np.float64(z[i])) > thr:
                    idx[K] = (b0 + l) * m + i
                    neg[K] = z[i] < 0
                    K += 1
    return K


@njit(cache=True)
def put_norms(words, norms, lo, hi, norm_bits, dither_key):
    """``lo``, ``hi`` and the stochastically rounded level of each block norm, from bit 0 of the zeroed
    ``words``; returns the position after them."""
    B = norms.shape[0]
    L = 1 << norm_bits
    step = (np.float64(hi) - lo) / (L - 1)
    pos = put(words, 0, f32_field(lo), 32)
    pos = put(words, pos, f32_field(hi), 32)
    for b in range(B):
        j = 0
        if step > 0.0:
            t = (norms[b] - lo) / step
            j = np.int64(np.floor(t))
            if draw_uniform(dither_key, b) < t - j:
                j += 1
            j = min(max(j, 0), L - 1)
        pos = put(words, pos, np.uint64(j), norm_bits)
    return pos


@njit(cache=True)
def get_norms(words, end, B, norm_bits, kappa):
    """The fields of ``put_norms``: ``(kappa * nhat_b for every block, position after them)``;
    ``DecodeError`` for a norm range that is not finite with ``0 <= lo <= hi``, or a truncated field."""
    lb, pos = get_checked(words, end, 0, 32)
    hb, pos = get_checked(words, end, pos, 32)
    lo = np.float64(field_f32(lb))
    hi = np.float64(field_f32(hb))
    if not (0.0 <= lo <= hi < np.inf):
        raise DecodeError("rotated code: norm range must be finite with 0 <= lo <= hi")
    step = (hi - lo) / ((1 << norm_bits) - 1)
    vals = np.empty(B, np.float32)
    for b in range(B):
        j, pos = get_checked(words, end, pos, norm_bits)
        vals[b] = np.float32(kappa * (lo + np.float64(j) * step))
    return vals, pos


@njit(cache=True)
def _write(norms, lo, hi, norm_bits, idx, neg, K, M, dither_key, words):
    """The payload into the zeroed ``words``; returns its bit length."""
    pos = put_norms(words, norms, lo, hi, norm_bits, dither_key)
    n1 = np.int64(K + 1)  # Elias delta: gamma of the bit length, then the low bits
    nb = 0
    while (n1 >> nb) > 1:
        nb += 1
    pos = put_gamma(words, pos, nb + 1)
    pos = put(words, pos, np.uint64(n1) & ((np.uint64(1) << np.uint64(nb)) - np.uint64(1)), nb)
    prev = -1
    for t in range(K):
        pos = put_golomb(words, pos, idx[t] - prev - 1, M)
        pos = put(words, pos, np.uint64(neg[t]), 1)
        prev = idx[t]
    return pos


@njit(cache=True)
def _read(words, end, B, m, norm_bits, M, kappa, turn, y):
    """Decode a payload into the rotated domain ``y`` (``B m`` float32); ``DecodeError`` on any bad field."""
    G = GROUP
    vals, pos = get_norms(words, end, B, norm_bits, kappa)
    nbp1, pos = get_gamma(words, end, pos)
    nb = nbp1 - 1
    if nb > 62:
        raise DecodeError("rotated_ternary: kept count exceeds 63 bits")
    low, pos = get_checked(words, end, pos, nb)
    K = ((np.int64(1) << nb) | np.int64(low)) - 1
    n = B * m
    if K > n:
        raise DecodeError("rotated_ternary: more kept coordinates than the padded vector has")
    V = np.zeros((G, m), np.float32)
    Y = y.reshape((B, m))
    i = np.int64(-1)
    t = 0
    pending = False
    s = np.uint64(0)
    if K > 0:
        gap, pos = get_golomb(words, end, pos, M)
        s, pos = get_checked(words, end, pos, 1)
        i = gap
        pending = True
    for b0 in range(0, B, G):
        nblk = min(G, B - b0)
        V[:] = 0.0
        stop = (b0 + nblk) * m
        while pending and i < stop:
            bl = i // m
            v = vals[bl]
            V[bl - b0, i - bl * m] = -v if s else v
            t += 1
            pending = False
            if t < K:
                gap, pos = get_golomb(words, end, pos, M)
                s, pos = get_checked(words, end, pos, 1)
                i = i + gap + 1
                pending = True
        turn_blocks(V[:nblk], turn, True, Y[b0:b0 + nblk])  # y_b = U^T v_b
    if pending:
        raise DecodeError("rotated_ternary: position past the end of the vector")
    if pos != end:
        raise DecodeError("rotated_ternary: trailing bits after the last kept coordinate")


def _entropy(p):
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


@functools.lru_cache(maxsize=None)
def shape(m, rate):
    """``(T, P, kappa, omega_shape, M)`` of the code for blocks of ``m`` at ``rate`` bits per coordinate
    (the part left for positions and signs).

    For ``z`` uniform on the sphere of radius ``sqrt(m)`` one coordinate has
    ``w = z_1 / sqrt(m)``, ``w^2 ~ Beta(1/2, (m-1)/2)``: keep probability
    ``P = 1 - I_{T^2/m}(1/2, (m-1)/2)`` and ``E[|z_1|; |z_1| > T] =
    sqrt(m) 2 c (1 - T^2/m)^((m-1)/2) / (m-1)``, ``c = Gamma(m/2) /
    (sqrt(pi) Gamma((m-1)/2))``. ``mu = m E[|z_1|; |z_1| > T]``, ``kappa =
    sqrt(m) / mu``, and ``E||kappa ||z|| Q - z||^2 = (m^2 P / mu^2 - 1) ||z||^2``.
    ``T`` solves ``h(P) + P = rate`` (``h`` the binary entropy) by bisection
    on the branch ``P <= 2/3``.
    """
    if m == 1:  # one coordinate: its sign, always
        return 0.0, 1.0, 1.0, 0.0, 1

    def keep(T):
        return float(1.0 - betainc(0.5, (m - 1) / 2, min(T * T / m, 1.0)))

    def cost(T):
        p = keep(T)
        return _entropy(p) + p

    lo, hi = 0.0, np.sqrt(m)
    for _ in range(80):  # the T of P = 2/3, where h(P) + P peaks
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if keep(mid) > 2 / 3 else (lo, mid)
    a, b = hi, np.sqrt(m)
    for _ in range(80):
        mid = (a + b) / 2
        a, b = (mid, b) if cost(mid) > rate else (a, mid)
    T = b
    P = keep(T)
    logc = gammaln(m / 2) - 0.5 * np.log(np.pi) - gammaln((m - 1) / 2)
    tail = np.sqrt(m) * 2 * np.exp(logc + (m - 1) / 2 * np.log1p(-min(T * T / m, 1.0))) / (m - 1)
    mu = m * tail
    return T, P, np.sqrt(m) / mu, m * m * P / (mu * mu) - 1.0, golomb_parameter(P)


class RotatedTernary(Codec):
    """``rotated_ternary(rate=0.1, m=1024, norm_bits=3, rotation_block=4096)``: unbiased, for 0.02 to 1 bit.

    ``rate``: target bits per coordinate, everything included (the threshold
    is set for it; the measured rate is within a few percent); ``m``: block of
    the Haar turn (a power of two, work per coordinate ``O(m)``);
    ``norm_bits``: bits of each block's norm.
    """

    name = "rotated_ternary"
    unbiased = True

    def __init__(self, rate=0.1, m=1024, norm_bits=3, rotation_block=4096):
        if not 0.0 < rate <= 1.5:
            raise ValueError(f"rate must be in (0, 1.5], got {rate=}")
        if not (isinstance(m, (int, np.integer)) and 1 <= m <= 4096 and m & (m - 1) == 0):
            raise ValueError(f"m must be a power of two in [1, 4096], got {m=}")
        if not 1 <= norm_bits <= 16:
            raise ValueError(f"norm_bits must be in [1, 16], got {norm_bits=}")
        if rotation_block < m or rotation_block & (rotation_block - 1):
            raise ValueError(f"rotation_block must be a power of two >= m, got {rotation_block=}")
        if rate <= norm_bits / m:
            raise ValueError(f"rate must exceed norm_bits / m = {norm_bits / m}, got {rate=}")
        super().__init__(rate=rate, m=m, norm_bits=norm_bits, rotation_block=rotation_block)
        self.rate, self.m, self.norm_bits, self.rotation_block = float(rate), int(m), int(norm_bits), int(rotation_block)

    def _layout(self, d):
        n = padded_length(d, self.rotation_block)
        mb = min(self.m, n)
        return n, mb, n // mb

    def _shape(self, mb):
        # short vectors (small m') leave little or nothing after the norms: keep at least one coordinate per
        # block in expectation, whatever the rate, rather than a near-empty pattern of huge variance
        least = _entropy(1.0 / mb) + 1.0 / mb
        return shape(mb, max(self.rate - self.norm_bits / mb, least))

    def shape_error(self, d):
        """``E||C(x) - x||^2 / ||x||^2`` for ``d``-vectors without the norm dither: the same for every ``x``,
        because the Haar turn makes every block uniform on its sphere (``shape``)."""
        return self._shape(self._layout(max(d, 1))[1])[3]

    def omega(self, d):
        # shape term, plus the norm dither: per block variance <= step^2 / 4 <= ||y||^2 / (4 (L-1)^2), B blocks,
        # times E||kappa Q||^2 / ||z||^2 = 1 + shape term
        B = self._layout(max(d, 1))[2]
        w = self.shape_error(d)
        return w + (1.0 + w) * B / (4.0 * ((1 << self.norm_bits) - 1) ** 2)

    def _haar(self, key, mb, B):
        """The round's turn of ``B`` blocks (``haar_turn``)."""
        return haar_turn(np.uint64(key.stream("rotated_ternary.haar")), mb, B)

    def _encode(self, x, key):
        if x.shape[0] == 0:
            return np.zeros(0, np.uint8), 0
        return self._payload(*self.quantize(x, key))

    def quantize(self, x, key):
        """Steps 1 to 4 for a non-empty ``x``: the arguments of ``_payload`` (block norms, their range, the
        kept positions and signs, the block length and the norm dither's key). Every coder of the pattern
        (``_payload`` of this class or of ``rotated_entropy``) decodes them to the same vector."""
        d = x.shape[0]
        if not np.isfinite(x).all():
            raise ValueError(f"{self.name}: input must be finite")
        n, mb, B = self._layout(d)
        T = self._shape(mb)[0]
        shift = range_shift(x)  # entries near float32's maximum would overflow the rotation's sums
        y = rotate(np.ldexp(x, -shift), np.uint64(key.stream("rotated_ternary.rotation")), self.rotation_block)
        norms = np.empty(B)
        idx = np.empty(n, np.int64)
        neg = np.empty(n, np.bool_)
        K = _select(y, mb, B, self._haar(key, mb, B), T, norms, idx, neg)
        # Back to the input's scale; a block norm beyond float32's range is sent as its maximum (the decoded
        # block is then shorter than the input's: the one place this codec is not unbiased).
        norms = np.minimum(np.ldexp(norms, shift), F32_MAX)
        lo = np.float32(norms.min())
        if np.float64(lo) > norms.min():
            lo = np.nextafter(lo, np.float32(0))
        hi = np.float32(norms.max())
        if np.float64(hi) < norms.max():
            hi = np.nextafter(hi, np.float32(np.inf))
        if not np.isfinite(hi):
            raise ValueError(f"{self.name}: input norm overflows float32")
        return norms, lo, hi, idx[:K], neg[:K], mb, np.uint64(key.stream("rotated_ternary.norm"))

    def _payload(self, norms, lo, hi, idx, neg, mb, norm_key):
        """The payload of the block norms and the kept positions ``idx`` with their signs ``neg``."""
        M = self._shape(mb)[4]
        K = idx.shape[0]
        words = new_words(200 + len(norms) * self.norm_bits + len(norms) * mb // M + K * (M.bit_length() + 3))
        return words.view(np.uint8), _write(norms, lo, hi, self.norm_bits, idx, neg, K, M, norm_key, words)

    # bits every payload of a non-empty vector has beyond lo, hi and the norm levels (the count's delta code)
    least_trailer = 1

    def _decode(self, data, nbits, d, key):
        if d == 0:
            if nbits:
                raise DecodeError(f"{self.name}: payload has {nbits} bits for an empty vector")
            return np.zeros(0, np.float32)
        n, mb, B = self._layout(d)
        least = 64 + B * self.norm_bits + self.least_trailer
        if nbits < least:  # d bounded before allocating
            raise DecodeError(f"{self.name}: payload has {nbits} bits, fewer than the {least} of any {d}-vector's")
        kappa = self._shape(mb)[2]
        y = np.empty(n, np.float32)
        words = load_words(data, nbits)
        # Norms near float32's maximum: decode at 2^-shift (lo and hi are the two halves of word 0), so that
        # the blocks and the rotation's sums stay finite, and scale the result back at the end.
        shift = range_shift(words.view(np.float32)[:2])
        if shift:
            words.view(np.float32)[:2] = np.ldexp(words.view(np.float32)[:2], -shift)
        self._read(words, nbits, B, mb, kappa, self._haar(key, mb, B), y)
        out = unrotate(y, d, np.uint64(key.stream("rotated_ternary.rotation")), self.rotation_block)
        if shift:
            with np.errstate(over="ignore"):  # a value beyond float32's range is inf
                out = np.ldexp(out, shift)
        return out

    def _read(self, words, nbits, B, mb, kappa, turn, y):
        """Decode the payload in word form into the rotated domain ``y`` (``turn``: the round's, ``haar_turn``)."""
        _read(words, nbits, B, mb, self.norm_bits, self._shape(mb)[4], kappa, turn, y)
