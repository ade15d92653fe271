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

from ..bitstream.bits import f32_field, field_f32
from ..bitstream.rng import draw_normal, draw_uniform
from ..bitstream.words import get, put
from ..errors import DecodeError
from .trellis import nearest_in_subsets


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


# Blocks searched side by side: the Viterbi recursion of GROUP blocks runs in SIMD lanes, one block per lane
# (every lane does the same add-compare-selects, so the path of each block is the one a block-by-block search
# finds); the turn and the decoder's table walk also work on GROUP blocks at a time, a tile that stays in cache.
GROUP = 32


@njit(cache=True)
def turn_rows(V, M, out):
    """``out[b] = sum_t V[b, t] M[t]`` for every row ``b``, each sum formed from +0 in the order t = 0, 1, ...

    A fixed order of float32 operations (eight terms per pass over a row of
    ``out``, added left to right, no fused multiply-add), so the result does
    not depend on the machine or on a BLAS library: the decoder runs it on the
    agent and on the server, and both must get the same bits. Eight rows of
    ``M`` per pass keep the row of ``out`` in registers for eight terms instead
    of one, which is what makes it about as fast as a float32 GEMM.
    """
    B, T = V.shape
    n = M.shape[1]
    for b in range(B):
        out[b, :] = 0.0
    t = 0
    while t + 8 <= T:
        r0, r1, r2, r3 = M[t], M[t + 1], M[t + 2], M[t + 3]
        r4, r5, r6, r7 = M[t + 4], M[t + 5], M[t + 6], M[t + 7]
        for b in range(B):
            o = out[b]
            v0, v1, v2, v3 = V[b, t], V[b, t + 1], V[b, t + 2], V[b, t + 3]
            v4, v5, v6, v7 = V[b, t + 4], V[b, t + 5], V[b, t + 6], V[b, t + 7]
            for i in range(n):
                o[i] = (o[i] + v0 * r0[i] + v1 * r1[i] + v2 * r2[i] + v3 * r3[i]
                        + v4 * r4[i] + v5 * r5[i] + v6 * r6[i] + v7 * r7[i])
        t += 8
    while t < T:
        r0 = M[t]
        for b in range(B):
            o = out[b]
            v0 = V[b, t]
            for i in range(n):
                o[i] = o[i] + v0 * r0[i]
        t += 1


@njit(cache=True)
def _viterbi_lanes(zt, m, levels, label, dec, a, c, bd):
    """Viterbi search of ``GROUP`` blocks at once (``zt[t * GROUP + l]``: sample ``t`` of lane ``l``).

    The same arithmetic as ``trellis.tcq_block``, lane by lane: float32 path
    metrics, branch metrics ``(z - level)^2`` in float32 at one level per subset
    (float64 and the nearest level otherwise), ties to the first predecessor.
    Fills ``dec[(t * states + q) * GROUP + l]`` and leaves the final metrics in
    the returned array.
    """
    L = GROUP
    S = label.shape[0]
    half = S >> 1
    per = levels.shape[0] // 4
    l0 = np.empty(S, np.int64)
    l1 = np.empty(S, np.int64)
    for q in range(S):
        l0[q] = label[q >> 1, q & 1]
        l1[q] = label[(q >> 1) + half, q & 1]
    a[:] = np.inf
    a[:L] = 0.0
    for t in range(m):
        zrow = zt[t * L:(t + 1) * L]
        for k in range(4):
            bk = bd[k * L:(k + 1) * L]
            if per == 1:
                lv = levels[k]
                for l in range(L):
                    e = np.float32(zrow[l] - lv)
                    bk[l] = e * e
            else:
                for l in range(L):
                    best = np.inf
                    for i in range(per):
                        e = zrow[l] - levels[k + 4 * i]
                        e = e * e
                        if e < best:
                            best = e
                    bk[l] = best
        dt = dec[t * S * L:(t + 1) * S * L]
        for q in range(S):  # branch-free add-compare-select across the lanes
            A0 = a[(q >> 1) * L:((q >> 1) + 1) * L]
            A1 = a[((q >> 1) + half) * L:((q >> 1) + half + 1) * L]
            B0 = bd[l0[q] * L:(l0[q] + 1) * L]
            B1 = bd[l1[q] * L:(l1[q] + 1) * L]
            C = c[q * L:(q + 1) * L]
            D = dt[q * L:(q + 1) * L]
            for l in range(L):
                c0 = A0[l] + B0[l]
                c1 = A1[l] + B1[l]
                pick = c1 < c0
                C[l] = c1 if pick else c0
                D[l] = pick
        a, c = c, a
    return a


@njit(cache=True)
def encode_blocks(y, m, UT, levels, label, nxt, unbiased, gains, codes):
    """Per block: optional Haar turn (``UT`` = ``U^T``, or 0 x 0 for none), TCQ path, gain. Fills gains, codes.

    Works on ``GROUP`` blocks at a time: turn them (``turn_rows``), scale each
    to norm ``sqrt(m)``, run their Viterbi searches side by side
    (``_viterbi_lanes``), trace each path back, and form the gains. The paths
    and gains are those of a block-by-block ``trellis.tcq_block`` search.
    """
    B = gains.shape[0]
    S = label.shape[0]
    half = S >> 1
    per = levels.shape[0] // 4
    L = GROUP
    turn = UT.shape[0] == m
    Y = y[:B * m].reshape((B, m))
    Z = np.empty((L, m), np.float32)
    zt = np.empty(m * L)
    qv = np.empty(m * L)
    dec = np.empty(m * S * L, np.uint8)
    a = np.empty(S * L, np.float32)
    c = np.empty(S * L, np.float32)
    bd = np.empty(4 * L, np.float32)
    s2 = np.empty(L)
    f = np.empty(L)
    st = np.empty(L, np.int64)
    dot = np.empty(L)
    qq = np.empty(L)
    bd4 = np.empty(4, np.float32)
    bj = np.empty(4, np.int64)
    zcol = np.empty(m)
    qtmp = np.empty(m)
    for b0 in range(0, B, L):
        n = min(L, B - b0)
        if turn:
            turn_rows(Y[b0:b0 + n], UT, Z[:n])
        else:
            Z[:n] = Y[b0:b0 + n]
        for l in range(L):
            s = 0.0
            if l < n:
                for i in range(m):
                    s += np.float64(Z[l, i]) * Z[l, i]
            s2[l] = s
            fl = np.sqrt(m) / np.sqrt(s) if s > 0.0 else 0.0
            f[l] = fl
            for i in range(m):
                zt[i * L + l] = Z[l, i] * fl if s > 0.0 else 0.0
        fin = _viterbi_lanes(zt, m, levels, label, dec, a, c, bd)
        for l in range(n):
            q = 0
            for s_ in range(1, S):
                if fin[s_ * L + l] < fin[q * L + l]:
                    q = s_
            st[l] = q
        for t in range(m - 1, -1, -1):
            for l in range(n):
                q = st[l]
                bb = q & 1
                p = (q >> 1) + half * dec[(t * S + q) * L + l]
                k = label[p, bb]
                if per == 1:
                    codes[(b0 + l) * m + t] = bb
                    qv[t * L + l] = levels[k]
                else:
                    nearest_in_subsets(zt[t * L + l], levels, per, bd4, bj)
                    codes[(b0 + l) * m + t] = bb | (bj[k] << 1)
                    qv[t * L + l] = levels[k + 4 * bj[k]]
                st[l] = p
        dot[:] = 0.0
        qq[:] = 0.0
        for t in range(m):
            for l in range(n):
                v = qv[t * L + l]
                dot[l] += zt[t * L + l] * v
                qq[l] += v * v
        for l in range(n):
            b = b0 + l
            if s2[l] == 0.0:
                gains[b] = 0.0
                codes[b * m:(b + 1) * m] = 0
                continue
            dl = dot[l]
            ql = qq[l]
            if not dl > 0.0:
                for t in range(m):
                    zcol[t] = zt[t * L + l]
                _greedy(zcol, levels, label, nxt, codes[b * m:(b + 1) * m], qtmp)
                dl = 0.0
                ql = 0.0
                for t in range(m):
                    dl += zcol[t] * qtmp[t]
                    ql += qtmp[t] * qtmp[t]
            zq = dl / f[l]  # <z, Q> = dot * norm / sqrt(m)
            gains[b] = s2[l] / zq if unbiased else zq / ql


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
    """The payload as a word buffer (viewed as bytes) and its length: ``h``, then per block gain and words."""
    B = gains.shape[0]
    words = np.zeros((32 + B * (gain_bits + rate * m) + 63) // 64 + 1, np.uint64)
    pos = put(words, 0, f32_field(np.float32(top)), 32)
    step = top / (levels_g - 1) if top > 0 else 1.0
    per_word = 64 // rate
    for b in range(B):
        j = gain_level(gains[b], step, levels_g, dither_key, b, stochastic)
        pos = put(words, pos, np.uint64(j), gain_bits)
        base = b * m
        i = 0
        while i < m:
            n = min(per_word, m - i)
            acc = np.uint64(0)
            for k in range(n):
                acc |= np.uint64(codes[base + i + k]) << np.uint64(k * rate)
            pos = put(words, pos, acc, n * rate)
            i += n
    return words.view(np.uint8), pos


@njit(cache=True)
def _walk(words, pos, m, rate, g, T4f, N4f, vals, nxt2, out, o):
    """Write ``g`` times the levels of one block's path (``m`` words from bit ``pos``) to ``out[o:o + m]``,
    four bits per table step; return the position after the block."""
    s = 0
    t = o
    left = m * rate
    cpn = 4 // rate
    while left > 0:
        take = min(64, left)
        w, pos = get(words, pos, take)
        left -= take
        while take >= 4:
            e = s * 16 + np.int64(w & np.uint64(15))
            if cpn == 4:
                out[t] = g * T4f[4 * e]
                out[t + 1] = g * T4f[4 * e + 1]
                out[t + 2] = g * T4f[4 * e + 2]
                out[t + 3] = g * T4f[4 * e + 3]
            else:
                out[t] = g * T4f[2 * e]
                out[t + 1] = g * T4f[2 * e + 1]
            s = N4f[e]
            t += cpn
            w >>= np.uint64(4)
            take -= 4
        while take > 0:  # fewer than four bits left: one word at a time
            cw = np.int64(w & np.uint64((1 << rate) - 1))
            out[t] = g * vals[s, cw]
            s = nxt2[s, cw]
            t += 1
            w >>= np.uint64(rate)
            take -= rate
    return pos


@njit(cache=True)
def read_blocks(words, end, B, m, rate, vals, nxt2, T4, N4, levels_g, gain_bits, U, y):
    """Decode to the rotated domain: per block ``g_hat * Q_b``, turned back by ``U^T`` when ``U`` is m x m.

    ``words`` is the payload as a word buffer (``bitstream.words.load_words``);
    ``y`` (``B m`` float32) receives the result. The caller allocates it with
    numpy, which backs large arrays with huge pages: first-touch page faults of a
    fresh 40 MB array cost more than the whole table walk otherwise. The path
    is walked four bits at a time through ``T4``/``N4`` (``decode_tables``):
    one table row gives the levels of the next ``4 / R`` samples and the state
    after them.
    """
    if end < 32 + B * (gain_bits + rate * m):
        raise DecodeError("spherical: payload shorter than its blocks")
    tb, pos = get(words, 0, 32)
    top = field_f32(tb)
    if not (top >= 0.0 and top < np.inf):
        raise DecodeError("spherical: gain range must be finite and >= 0")
    step = np.float64(top) / (levels_g - 1)
    turn = U.shape[0] == m
    G = GROUP
    V = np.empty(G * m, np.float32)
    T4f = T4.ravel()
    N4f = N4.ravel()
    for b0 in range(0, B, G):
        n = min(G, B - b0)
        for l in range(n):
            j, pos = get(words, pos, gain_bits)
            g = np.float32(np.float64(j) * step)
            if turn:
                pos = _walk(words, pos, m, rate, g, T4f, N4f, vals, nxt2, V, l * m)
            else:
                o = (b0 + l) * m
                pos = _walk(words, pos, m, rate, g, T4f, N4f, vals, nxt2, y, o)
                if g == 0:  # a zero block decodes to +0.0 exactly
                    y[o:o + m] = 0.0
        if turn:
            turn_rows(V[:n * m].reshape((n, m)), U, y[b0 * m:(b0 + n) * m].reshape((n, m)))


def decode_tables(levels, label, nxt, rate):
    """``vals[s, c]``: level of word ``c`` at state ``s``; ``nxt2[s, c]``: the next state; and the same for
    four bits at once: ``T4[s, nibble, k]`` the level of the ``k``-th of its ``4 / rate`` words, ``N4[s, nibble]``
    the state after them."""
    states = label.shape[0]
    vals = np.empty((states, 1 << rate), np.float32)
    nxt2 = np.empty((states, 1 << rate), np.int64)
    for s in range(states):
        for c in range(1 << rate):
            vals[s, c] = levels[label[s, c & 1] + 4 * (c >> 1)]
            nxt2[s, c] = nxt[s, c & 1]
    cpn = 4 // rate
    T4 = np.empty((states, 16, cpn), np.float32)
    N4 = np.empty((states, 16), np.int64)
    for s in range(states):
        for nib in range(16):
            q = s
            for k in range(cpn):
                c = (nib >> (k * rate)) & ((1 << rate) - 1)
                T4[s, nib, k] = vals[q, c]
                q = nxt2[q, c]
            N4[s, nib] = q
    return vals, nxt2, T4, N4
