"""Vector kernels of the schemes, as numba loops with a fixed evaluation order.

Anything that feeds mirrored state is computed here, never by BLAS or numpy
reductions whose summation order may depend on the build, the CPU or the
thread count: agent and server run these very loops, so their results agree
bit for bit. Element-wise results are float32 (the wire type). Reductions
add float64 products of float32 values (exact) one element at a time, in
index order, except the predictor's moment sums, which use a fixed blocked
order of float32 lanes (see ``_moments_small``).

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


@njit(cache=True, inline="always")
def _pred_at(mem, a, i):
    """Prediction ``sum_j a_j m_j[i]`` in float32, j ascending: the one formula both sides use."""
    p = a[0] * mem[0][i]
    for j in range(1, len(mem)):
        p += a[j] * mem[j][i]
    return p


@njit(cache=True)
def _predict(mem, a, r_hat, add_r, out):
    for i in range(out.shape[0]):
        v = _pred_at(mem, a, i)
        if add_r:
            v += r_hat[i]
        out[i] = v


def predict(mem, a, r_hat=None):
    """``M a (+ r_hat if given)`` in float32, for a non-empty memory: the mirrored reconstruction."""
    out = np.empty_like(mem[0])
    add_r = r_hat is not None
    _predict(mem, a, r_hat if add_r else out, add_r, out)
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
LANES = 16
UNROLL = 8  # consecutive lane groups summed per load and store of the lane partials
BLOCK = 512


@njit(cache=True)
def _moments_small(mem, padded, g):
    # Up to 4 entries: len(mem) is a compile-time constant in each specialisation, so every `k > j`
    # test folds away. Row q of `part`/`tot` holds one sum: 0 g.g, then for each entry j the products
    # of m_j with g, m_0 .. m_j (rows of entries >= k are never touched).
    k = len(mem)  # `padded` is `mem` padded to 4 entries, so that each is a constant index (which vectorises)
    m0, m1, m2, m3 = padded
    nq = (k + 1) * (k + 2) // 2
    n = g.shape[0]
    part = np.zeros((15, LANES), np.float32)
    tot = np.zeros((15, LANES))
    zero = np.float32(0.0)
    for blk in range(n // BLOCK):
        base = blk * BLOCK
        for s in range(base, base + BLOCK, UNROLL * LANES):
            for l in range(LANES):
                t0 = part[0, l]
                t1 = part[1, l]
                t2 = part[2, l]
                t3 = part[3, l]
                t4 = part[4, l]
                t5 = part[5, l]
                t6 = part[6, l]
                t7 = part[7, l]
                t8 = part[8, l]
                t9 = part[9, l]
                t10 = part[10, l]
                t11 = part[11, l]
                t12 = part[12, l]
                t13 = part[13, l]
                t14 = part[14, l]
                for u in range(UNROLL):
                    i = s + u * LANES + l
                    x = g[i]
                    y0 = m0[i]
                    t0 += x * x
                    t1 += y0 * x
                    t2 += y0 * y0
                    if k > 1:
                        y1 = m1[i]
                        t3 += y1 * x
                        t4 += y1 * y0
                        t5 += y1 * y1
                    if k > 2:
                        y2 = m2[i]
                        t6 += y2 * x
                        t7 += y2 * y0
                        t8 += y2 * y1
                        t9 += y2 * y2
                    if k > 3:
                        y3 = m3[i]
                        t10 += y3 * x
                        t11 += y3 * y0
                        t12 += y3 * y1
                        t13 += y3 * y2
                        t14 += y3 * y3
                part[0, l] = t0
                part[1, l] = t1
                part[2, l] = t2
                part[3, l] = t3
                part[4, l] = t4
                part[5, l] = t5
                part[6, l] = t6
                part[7, l] = t7
                part[8, l] = t8
                part[9, l] = t9
                part[10, l] = t10
                part[11, l] = t11
                part[12, l] = t12
                part[13, l] = t13
                part[14, l] = t14
        for q in range(nq):
            for l in range(LANES):
                tot[q, l] += np.float64(part[q, l])
                part[q, l] = zero
    sums = np.zeros(15)
    for q in range(nq):
        for l in range(LANES):
            sums[q] += tot[q, l]
    for i in range(n - n % BLOCK, n):
        x = np.float64(g[i])
        y = (np.float64(m0[i]), np.float64(m1[i]), np.float64(m2[i]), np.float64(m3[i]))
        sums[0] += x * x
        for j in range(k):
            row = (j + 1) * (j + 2) // 2
            sums[row] += y[j] * x
            for l in range(j + 1):
                sums[row + 1 + l] += y[j] * y[l]
    G = np.empty((k, k))
    b = np.empty(k)
    for j in range(k):
        row = (j + 1) * (j + 2) // 2
        b[j] = sums[row]
        for l in range(j + 1):
            G[j, l] = G[l, j] = sums[row + 1 + l]
    return G, b, sums[0]


@njit(cache=True)
def _moments_any(mem, g):
    k = len(mem)
    G = np.zeros((k, k))
    b = np.zeros(k)
    y = np.empty(k)
    gg = 0.0
    for i in range(g.shape[0]):
        x = np.float64(g[i])
        gg += x * x
        for j in range(k):
            y[j] = np.float64(mem[j][i])
            b[j] += y[j] * x
            for l in range(j + 1):
                G[j, l] += y[j] * y[l]
    for j in range(k):
        for l in range(j):
            G[l, j] = G[j, l]
    return G, b, gg


def moments(mem, g):
    """``(M^T M, M^T g, ||g||^2)`` for a non-empty memory (a tuple of arrays), in one pass.

    Memories of up to 4 entries take a kernel whose accumulators all live in
    registers; longer ones a general kernel (same sums, same order, slower).
    """
    if len(mem) <= 4:
        return _moments_small(mem, mem + mem[:1] * (4 - len(mem)), g)
    return _moments_any(mem, g)


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
