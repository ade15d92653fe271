"""Vector kernels of the schemes, as numba loops with a fixed evaluation order.

Anything that feeds mirrored state is computed here, never by BLAS or numpy
reductions whose summation order may depend on the build, the CPU or the
thread count: agent and server run these very loops, so their results agree
bit for bit. Element-wise results are float32 (the wire type). Reductions
add float64 products of float32 values (exact) one element at a time, in
index order.

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


@njit(cache=True)
def _moments_small(mem, g):
    # Up to 4 entries with every accumulator a scalar: len(mem) is a compile-time constant in each
    # specialisation, so the `k > j` tests fold away and nothing is stored to memory per element.
    k = len(mem)
    m0 = mem[0]
    m1 = mem[min(1, k - 1)]
    m2 = mem[min(2, k - 1)]
    m3 = mem[min(3, k - 1)]
    gg = b0 = b1 = b2 = b3 = 0.0
    g00 = g10 = g11 = g20 = g21 = g22 = g30 = g31 = g32 = g33 = 0.0
    for i in range(g.shape[0]):
        x = np.float64(g[i])
        y0 = np.float64(m0[i])
        y1 = y2 = y3 = 0.0
        gg += x * x
        b0 += y0 * x
        g00 += y0 * y0
        if k > 1:
            y1 = np.float64(m1[i])
            b1 += y1 * x
            g10 += y1 * y0
            g11 += y1 * y1
        if k > 2:
            y2 = np.float64(m2[i])
            b2 += y2 * x
            g20 += y2 * y0
            g21 += y2 * y1
            g22 += y2 * y2
        if k > 3:
            y3 = np.float64(m3[i])
            b3 += y3 * x
            g30 += y3 * y0
            g31 += y3 * y1
            g32 += y3 * y2
            g33 += y3 * y3
    full = np.array([[g00, g10, g20, g30], [g10, g11, g21, g31], [g20, g21, g22, g32], [g30, g31, g32, g33]])
    return full[:k, :k].copy(), np.array([b0, b1, b2, b3])[:k].copy(), gg


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
    return (_moments_small if len(mem) <= 4 else _moments_any)(mem, g)


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
