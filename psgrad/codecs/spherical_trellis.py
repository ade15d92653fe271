"""The trellis code of spherical compression: rotated blocks sent as a gain and a TCQ path.

Steps (encoder; the decoder mirrors 1, 2 and 5):

1. Rotate ``x`` with the shared randomized Hadamard transform and pad to ``B``
   blocks of ``m``.
2. Unbiased variant only: turn every block by the same Haar-random ``m x m``
   orthogonal matrix ``U`` of the round (``haar``; Gram-Schmidt of shared
   Gaussian draws), ``z_b = U y_b``.
3. Quantize the direction of each block with trellis-coded quantization
   (``trellis.tcq_block``, from state 0, on ``sqrt(m) z_b / ||z_b||``): a
   path ``Q_b`` of ``R m`` bits. If ``<z_b, Q_b> <= 0`` the path is replaced
   by the per-sample choice of the available level of largest ``z_t * level``
   (every state offers a positive and a negative level), so ``<z_b, Q_b> > 0``
   for every non-zero block.
4. Gain ``g_b``: unbiased ``||z_b||^2 / <z_b, Q_b>`` (the scale of EDEN,
   Vargaftik et al., ICML 2022, applied per block), biased
   ``<z_b, Q_b> / ||Q_b||^2`` (least squares). Gains are sent on the grid
   ``{0, h/(L-1), ..., h}``, ``h = max_b g_b`` as float32 rounded up,
   ``L = 2^gain_bits``: stochastic rounding with shared uniforms (unbiased),
   nearest level (biased). A zero block has gain 0 and decodes to zero.
5. Decode ``y_b = U^T (g_hat_b Q_b)`` (unbiased) or ``g_hat_b Q_b``, unrotate.

Why the unbiased variant is exactly unbiased: ``Q_b`` and ``g_b`` are
deterministic functions of ``z_b`` alone (the trellis restarts in every block),
and ``g_b <z_b, Q_b> = ||z_b||^2``. With ``U`` Haar-distributed, fix the block
``u = y_b`` and an orthogonal ``V`` with ``V u = u``; ``U`` and ``U V`` have
the same law and give the same ``z_b``, so ``E[U^T w(U u)] = V^T E[U^T w(U u)]``
for ``w = g Q - z`` (orthogonal to ``z``); averaging over all such ``V``
leaves only the component along ``u``, which is zero because ``<U^T w, u> =
<w, z> = 0``. Hence ``E[U^T g_b Q_b] = u``, and the gain dither is unbiased and
independent of ``U``. See docs/operators.md.

Bit layout (stream order): ``h`` float32 (32 bits); then per block the gain
level (``gain_bits``) and the ``m`` TCQ words (``R`` bits each: branch bit,
then the level index in its subset).
"""
import numpy as np
from numba import njit

from ..bitstream.bits import read_bits, read_f32, write_bits, write_f32
from ..bitstream.rng import draw_normal, draw_uniform
from ..errors import DecodeError
from .trellis import tcq_block


@njit(cache=True)
def haar(key, m):
    """A Haar-distributed ``m x m`` orthogonal matrix (rows of ``U``): Gram-Schmidt of shared normals.

    The Q factor of a Gaussian matrix with positive R diagonal is Haar (Mezzadri, "How to generate
    random matrices from the classical compact groups", Notices AMS 2007); Gram-Schmidt yields that factor.
    """
    A = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            A[i, j] = draw_normal(key, i * m + j)
    for i in range(m):  # modified Gram-Schmidt on rows, twice for orthogonality to double precision
        for _ in range(2):
            for k in range(i):
                dot = 0.0
                for j in range(m):
                    dot += A[i, j] * A[k, j]
                for j in range(m):
                    A[i, j] -= dot * A[k, j]
        s = 0.0
        for j in range(m):
            s += A[i, j] * A[i, j]
        inv = 1.0 / np.sqrt(s)
        for j in range(m):
            A[i, j] *= inv
    return A.astype(np.float32)


@njit(cache=True)
def _greedy(z, levels, label, nxt, codes, q):
    """Per sample, the available level of largest ``z_t * level`` (positive correlation guaranteed)."""
    per = levels.shape[0] // 4
    s = 0
    for t in range(z.shape[0]):
        best = -np.inf
        bc = 0
        for b in range(2):
            k = label[s, b]
            for i in range(per):
                v = z[t] * levels[k + 4 * i]
                if v > best:
                    best = v
                    bc = b | (i << 1)
        codes[t] = bc
        q[t] = levels[label[s, bc & 1] + 4 * (bc >> 1)]
        s = nxt[s, bc & 1]


@njit(cache=True)
def encode_blocks(y, m, UT, levels, label, nxt, unbiased, gains, codes):
    """Per block: optional Haar turn (``UT`` = ``U^T``, or 0 x 0 for none), TCQ path, gain. Fills gains, codes."""
    B = gains.shape[0]
    states = label.shape[0]
    dec = np.empty((m, states), np.uint8)
    cost = np.empty(states)
    new = np.empty(states)
    z = np.empty(m, np.float32)
    zn = np.empty(m)
    q = np.empty(m)
    turn = UT.shape[0] == m
    for b in range(B):
        yb = y[b * m:(b + 1) * m]
        cb = codes[b * m:(b + 1) * m]
        if turn:
            z[:] = 0.0
            for j in range(m):  # z = U y_b as a sum of scaled columns: independent lanes, no reassociation
                v = yb[j]
                row = UT[j]
                for i in range(m):
                    z[i] += v * row[i]
        else:
            z[:] = yb
        s = 0.0
        for i in range(m):
            s += np.float64(z[i]) * z[i]
        if s == 0.0:
            gains[b] = 0.0
            cb[:] = 0
            continue
        norm = np.sqrt(s)
        f = np.sqrt(m) / norm
        for i in range(m):
            zn[i] = z[i] * f
        tcq_block(zn, levels, label, nxt, cb, dec, cost, new)
        st = 0
        dot = 0.0
        qq = 0.0
        for t in range(m):
            c = cb[t]
            v = levels[label[st, c & 1] + 4 * (c >> 1)]
            st = nxt[st, c & 1]
            dot += zn[t] * v
            qq += v * v
        if not dot > 0.0:
            _greedy(zn, levels, label, nxt, cb, q)
            dot = 0.0
            qq = 0.0
            for t in range(m):
                dot += zn[t] * q[t]
                qq += q[t] * q[t]
        # <z, Q> = dot * norm / sqrt(m)
        zq = dot / f
        gains[b] = s / zq if unbiased else zq / qq


@njit(cache=True)
def gain_level(gain, step, levels, dither_key, b, stochastic):
    """Block ``b``'s gain on the grid ``{0, step, ..., (levels - 1) step}``: stochastic rounding with the
    shared uniform ``b`` of ``dither_key`` (unbiased) or rounding to the nearest level (biased)."""
    t = gain / step
    j = np.int64(np.floor(t))
    if stochastic:
        if draw_uniform(dither_key, b) < t - j:
            j += 1
    elif t - j >= 0.5:
        j += 1
    return min(j, levels - 1)


@njit(cache=True)
def write_blocks(gains, codes, m, rate, top, levels_g, gain_bits, dither_key, stochastic):
    B = gains.shape[0]
    buf = np.zeros((32 + B * (gain_bits + rate * m) + 7) // 8 + 16, np.uint8)
    pos = write_f32(buf, 0, np.float32(top))
    step = top / (levels_g - 1) if top > 0 else 1.0
    per_word = 64 // rate
    for b in range(B):
        j = gain_level(gains[b], step, levels_g, dither_key, b, stochastic)
        pos = write_bits(buf, pos, np.uint64(j), gain_bits)
        base = b * m
        i = 0
        while i < m:
            n = min(per_word, m - i)
            acc = np.uint64(0)
            for k in range(n):
                acc |= np.uint64(codes[base + i + k]) << np.uint64(k * rate)
            pos = write_bits(buf, pos, acc, n * rate)
            i += n
    return buf, pos


@njit(cache=True)
def read_blocks(buf, end, B, m, rate, vals, nxt2, levels_g, gain_bits, U):
    """Decode to the rotated domain: per block ``g_hat * Q_b``, turned back by ``U^T`` when ``U`` is m x m."""
    top, pos = read_f32(buf, end, 0)
    if not (top >= 0.0 and top < np.inf):
        raise DecodeError("spherical: gain range must be finite and >= 0")
    if pos + B * (gain_bits + rate * m) > end:
        raise DecodeError("spherical: payload shorter than its blocks")
    step = np.float64(top) / (levels_g - 1)
    y = np.zeros(B * m, np.float32)
    qb = np.empty(m, np.float32)
    turn = U.shape[0] == m
    per_word = 64 // rate
    mask = np.uint64((1 << rate) - 1)
    for b in range(B):
        j, pos = read_bits(buf, end, pos, gain_bits)
        g = np.float32(np.float64(j) * step)
        s = 0
        i = 0
        while i < m:
            n = min(per_word, m - i)
            word, pos = read_bits(buf, end, pos, n * rate)
            for k in range(n):
                c = np.int64((word >> np.uint64(k * rate)) & mask)
                qb[i + k] = vals[s, c]
                s = nxt2[s, c]
            i += n
        out = y[b * m:(b + 1) * m]
        if g == 0:
            continue
        if turn:
            for t in range(m):  # U^T v as a sum of scaled rows of U
                v = g * qb[t]
                row = U[t]
                for i2 in range(m):
                    out[i2] += v * row[i2]
        else:
            for t in range(m):
                out[t] = g * qb[t]
    return y


def decode_tables(levels, label, nxt, rate):
    """``vals[s, c]``: level of word ``c`` at state ``s``; ``nxt2[s, c]``: the next state."""
    states = label.shape[0]
    vals = np.empty((states, 1 << rate), np.float32)
    nxt2 = np.empty((states, 1 << rate), np.int64)
    for s in range(states):
        for c in range(1 << rate):
            vals[s, c] = levels[label[s, c & 1] + 4 * (c >> 1)]
            nxt2[s, c] = nxt[s, c & 1]
    return vals, nxt2
