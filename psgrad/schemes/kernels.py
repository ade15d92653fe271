"""Vector kernels of the schemes, as numba loops with a fixed evaluation order.

Anything that feeds mirrored state is computed here, never by BLAS or numpy
reductions whose summation order may depend on the build, the CPU or the
thread count: agent and server run these very loops, so their results agree
bit for bit. Element-wise results are float32 (the wire type). Reductions
add float64 products of float32 values (exact) one element at a time, in
index order, except the predictor's moment sums, which use a fixed blocked
order of float32 lanes (see ``moments``).

The Python wrappers allocate outputs with numpy (large numpy allocations are
far cheaper than allocations inside numba) and the ``_kernels`` fill them.

Predictor memories are tuples of float32 arrays, newest first, so that
pushing an entry shares the old arrays instead of copying them; numba compiles
one specialisation per tuple length.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _sub(a, b, out):
    for i in range(a.shape[0]):
        out[i] = a[i] - b[i]


@njit(cache=True)
def _add(a, b, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + b[i]


@njit(cache=True)
def _add_sub(e, g, g_hat, out):
    for i in range(e.shape[0]):
        out[i] = (e[i] + g[i]) - g_hat[i]


@njit(cache=True)
def _add_and_step(h, delta, alpha, est, new_h):
    a = np.float32(alpha)
    for i in range(h.shape[0]):
        est[i] = h[i] + delta[i]
        new_h[i] = h[i] + a * delta[i]


def sub(a, b):
    """``a - b`` in float32."""
    out = np.empty_like(a)
    _sub(a, b, out)
    return out


def add(a, b):
    """``a + b`` in float32."""
    out = np.empty_like(a)
    _add(a, b, out)
    return out


def add_sub(e, g, g_hat):
    """``(e + g) - g_hat`` in float32: the error-feedback accumulator update."""
    out = np.empty_like(e)
    _add_sub(e, g, g_hat, out)
    return out


def add_and_step(h, delta, alpha):
    """``(h + delta, h + alpha * delta)`` in float32, in one pass (DIANA's estimate and new shift)."""
    est = np.empty_like(h)
    new_h = np.empty_like(h)
    _add_and_step(h, delta, alpha, est, new_h)
    return est, new_h


@njit(cache=True)
def sq_norm(x):
    """``||x||^2``."""
    s = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        s += v * v
    return s


@njit(cache=True)
def sq_dist_and_norm(g, h):
    """``(||g - h||^2, ||g||^2)`` in one pass, with ``g - h`` rounded to float32 first."""
    sd = 0.0
    sg = 0.0
    for i in range(g.shape[0]):
        r = np.float64(g[i] - h[i])
        v = np.float64(g[i])
        sd += r * r
        sg += v * v
    return sd, sg


@njit(cache=True)
def residual_sq(g_sq, a, b, G):
    """``||g - M a||^2 = g_sq - 2 a.b + a.G.a`` from ``b = M^T g`` and ``G = M^T M`` (float64), in index order.

    Loops rather than ``a @ G @ a``: numpy hands even a 3 x 3 product to BLAS, whose kernel (and so its
    rounding) depends on the CPU it runs on, and this value decides whether the trigger fires."""
    ab = 0.0
    aga = 0.0
    for i in range(a.shape[0]):
        ab += a[i] * b[i]
        row = 0.0
        for j in range(a.shape[0]):
            row += a[j] * G[j, i]
        aga += row * a[i]
    return g_sq - 2.0 * ab + aga


@njit(cache=True, inline="always")
def _pred_at(mem, a, i):
    """Prediction ``sum_j a_j m_j[i]`` in float32, j ascending: the one formula both sides use."""
    p = a[0] * mem[0][i]
    for j in range(1, len(mem)):
        p += a[j] * mem[j][i]
    return p


@njit(cache=True)
def _predict(mem, a, r_hat, add_r, zero, out):
    for i in range(out.shape[0]):
        v = _pred_at(mem, a, i)
        if add_r:
            v += r_hat[i]
        out[i] = v + zero


def predict(mem, a, r_hat=None, plus_zero=False):
    """``M a (+ r_hat if given)`` in float32, for a non-empty memory: the mirrored reconstruction.

    ``plus_zero``: ``M a + 0.0`` instead of ``M a``, which turns ``-0.0`` into ``+0.0`` and changes
    nothing else: the base that a residual is then added to in place (``Codec.decode_add``), so that
    where a sparse residual decoder skips a coordinate it holds what adding the residual's ``+0.0``
    would give. (Otherwise ``-0.0`` is added, which changes nothing at all.)
    """
    out = np.empty_like(mem[0])
    add_r = r_hat is not None
    _predict(mem, a, r_hat if add_r else out, add_r, np.float32(0.0 if plus_zero else -0.0), out)
    return out


# The moment sums of the predictor fit use float32 lanes (Blanchard, Higham, Mary, "A class of fast and
# accurate summation algorithms", SIAM J. Sci. Comput. 2020: blocked summation): element i of block
# b (BLOCK elements) goes to lane i % LANES, whose float32 partial sum over the block is added to the
# lane's float64 total; the lane totals are added in lane order at the end, then the elements past the
# last whole block one by one in float64. A fixed order, so the result does not depend on the CPU, but
# with LANES independent sums the loop vectorises without reassociating anything. Error: a float32
# product rounding plus BLOCK / LANES float32 additions per element, about 1e-7 relative for typical
# data and within 2e-6 of the sum of the terms' magnitudes for any (a sequential float64 sum of exact
# products is far more accurate, but it cannot vectorise and is several times slower). These sums feed
# only the agent's least-squares fit, never the mirrored state.
#
# Every sum x.y is computed by that one rule whichever kernel computes it (float32 products commute
# exactly), so a Gram entry computed in an earlier round is bit-identical to computing it again: the
# kernels below compute only the sums that involve g or the newest memory entry m_0,
#     g.g,  m_j.g  and  m_0.m_j  (j < k),
# and ``moments`` takes the rest of ``M^T M`` (the Gram of m_1 .. m_{k-1}) from the previous round.
LANES = 16
UNROLL = 8  # consecutive lane groups summed per load and store of the lane partials
BLOCK = 512
SMALL = 4  # memories up to this length take the kernel whose accumulators all live in registers


@njit(cache=True)
def _finish(part, tot, nq):
    """Add each sum's float32 lane partials to its float64 lane totals and clear them (end of a block)."""
    for q in range(nq):
        for l in range(LANES):
            tot[q, l] += np.float64(part[q, l])
            part[q, l] = np.float32(0.0)


@njit(cache=True)
def _row_sums(g, mem, tot):
    """The float64 totals as ``[g.g, m_0.g .. m_{k-1}.g, m_0.m_0 .. m_0.m_{k-1}]``, tail included."""
    k = len(mem)
    n = g.shape[0]
    sums = np.zeros(2 * k + 1)
    for q in range(2 * k + 1):
        for l in range(LANES):
            sums[q] += tot[q, l]
    for i in range(n - n % BLOCK, n):
        x = np.float64(g[i])
        y0 = np.float64(mem[0][i])
        sums[0] += x * x
        for j in range(k):
            y = np.float64(mem[j][i])
            sums[1 + j] += y * x
            sums[1 + k + j] += y0 * y
    return sums


@njit(cache=True)
def _moment_rows_small(mem, padded, g):
    # Up to SMALL entries: len(mem) is a compile-time constant in each specialisation, so every `k > j`
    # test folds away; `padded` is `mem` padded to SMALL entries so that each is a constant index
    # (which vectorises). Accumulators: t0 g.g; t1..t4 m_j.g; t5..t8 m_0.m_j, kept in rows 0, 1 + j and
    # 1 + k + j of `part` and `tot`, so that only the 2k + 1 rows in use are carried over per block.
    k = len(mem)
    m0, m1, m2, m3 = padded
    n = g.shape[0]
    nq = 2 * k + 1
    part = np.zeros((nq, LANES), np.float32)
    tot = np.zeros((nq, LANES))
    zero = np.float32(0.0)
    for blk in range(n // BLOCK):
        base = blk * BLOCK
        for s in range(base, base + BLOCK, UNROLL * LANES):
            for l in range(LANES):
                t0 = part[0, l]
                t1 = part[1, l]
                t5 = part[1 + k, l]
                t2 = part[2, l] if k > 1 else zero
                t6 = part[2 + k, l] if k > 1 else zero
                t3 = part[3, l] if k > 2 else zero
                t7 = part[3 + k, l] if k > 2 else zero
                t4 = part[4, l] if k > 3 else zero
                t8 = part[4 + k, l] if k > 3 else zero
                for u in range(UNROLL):
                    i = s + u * LANES + l
                    x = g[i]
                    y0 = m0[i]
                    t0 += x * x
                    t1 += y0 * x
                    t5 += y0 * y0
                    if k > 1:
                        y1 = m1[i]
                        t2 += y1 * x
                        t6 += y0 * y1
                    if k > 2:
                        y2 = m2[i]
                        t3 += y2 * x
                        t7 += y0 * y2
                    if k > 3:
                        y3 = m3[i]
                        t4 += y3 * x
                        t8 += y0 * y3
                part[0, l] = t0
                part[1, l] = t1
                part[1 + k, l] = t5
                if k > 1:
                    part[2, l] = t2
                    part[2 + k, l] = t6
                if k > 2:
                    part[3, l] = t3
                    part[3 + k, l] = t7
                if k > 3:
                    part[4, l] = t4
                    part[4 + k, l] = t8
        _finish(part, tot, nq)
    return _row_sums(g, mem, tot)


@njit(cache=True)
def _moment_rows_any(mem, g):
    # Any length, the same sums in the same order with the accumulators in memory (slower).
    k = len(mem)
    n = g.shape[0]
    part = np.zeros((2 * k + 1, LANES), np.float32)
    tot = np.zeros((2 * k + 1, LANES))
    m0 = mem[0]
    for blk in range(n // BLOCK):
        base = blk * BLOCK
        for s in range(base, base + BLOCK, LANES):
            for l in range(LANES):
                i = s + l
                x = g[i]
                y0 = m0[i]
                part[0, l] += x * x
                for j in range(k):
                    y = mem[j][i]
                    part[1 + j, l] += y * x
                    part[1 + k + j, l] += y0 * y
        _finish(part, tot, 2 * k + 1)
    return _row_sums(g, mem, tot)


def _moment_rows(mem, g):
    if len(mem) <= SMALL:
        return _moment_rows_small(mem, mem + mem[:1] * (SMALL - len(mem)), g)
    return _moment_rows_any(mem, g)


def gram(mem):
    """``M^T M`` for a memory (a tuple of arrays), one pass per entry: for a memory with no known Gram."""
    k = len(mem)
    G = np.empty((k, k))
    for i in range(k):
        row = _moment_rows(mem[i:], mem[i])[1 + k - i:]
        G[i, i:] = G[i:, i] = row
    return G


def moments(mem, g, tail=None):
    """``(M^T M, M^T g, ||g||^2)`` for a non-empty memory, in one pass over ``g`` and the memory.

    ``tail`` is the Gram of ``mem[1:]`` when the caller knows it (the previous
    round's ``M^T M`` restricted to the entries still in the memory); without
    it, ``gram`` computes it. Either way the result is the same to the bit.
    """
    k = len(mem)
    sums = _moment_rows(mem, g)
    G = np.empty((k, k))
    G[0, :] = G[:, 0] = sums[1 + k:]
    G[1:, 1:] = gram(mem[1:]) if tail is None else tail
    return G, sums[1:1 + k], sums[0]


@njit(cache=True)
def _residual(mem, a, g, out):
    s = 0.0
    for i in range(g.shape[0]):
        r = g[i] - _pred_at(mem, a, i)
        out[i] = r
        s += np.float64(r) * np.float64(r)
    return s


def residual(mem, a, g):
    """``(g - M a, ||g - M a||^2)``: the residual in float32 and its squared norm."""
    out = np.empty_like(g)
    return out, _residual(mem, a, g, out)
