"""Randomized Hadamard rotation with shared random signs, and its exact inverse.

``rotate`` maps x (length d) to ``H D x / sqrt(n)`` per block, where ``D`` is a
diagonal of random signs from the shared stream and ``H`` the Walsh-Hadamard
matrix. Inputs are zero-padded: to the next power of two when ``d <= block``,
else to a multiple of ``block`` (a power of two), each block rotated on its
own. The transform is orthogonal, so ``unrotate(rotate(x)) == x`` up to
float32 rounding, and norms are preserved.
"""
import numpy as np
from numba import njit

from .rng import draw_u64


def padded_length(d, block):
    """Length after padding ``d`` coordinates for a rotation with block size ``block``."""
    if block & (block - 1) or block < 1:
        raise ValueError(f"block must be a power of two, got {block=}")
    if d <= block:
        return 1 << max(0, int(d - 1).bit_length())
    return -(-d // block) * block


@njit(cache=True)
def _fwht8(x):
    """The first three butterfly stages (h = 1, 2, 4), each as its own pass over interleaved pairs.

    Written as fixed-stride groups (2, 4, 8 elements) the compiler vectorises
    each pass with in-register shuffles; the data stay in cache between passes.
    """
    n = x.shape[0]
    for k in range(n >> 1):
        a = x[2 * k]
        b = x[2 * k + 1]
        x[2 * k] = a + b
        x[2 * k + 1] = a - b
    for k in range(n >> 2):
        i = 4 * k
        a0, a1, a2, a3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        x[i], x[i + 1], x[i + 2], x[i + 3] = a0 + a2, a1 + a3, a0 - a2, a1 - a3
    for k in range(n >> 3):
        i = 8 * k
        a0, a1, a2, a3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        a4, a5, a6, a7 = x[i + 4], x[i + 5], x[i + 6], x[i + 7]
        x[i], x[i + 1], x[i + 2], x[i + 3] = a0 + a4, a1 + a5, a2 + a6, a3 + a7
        x[i + 4], x[i + 5], x[i + 6], x[i + 7] = a0 - a4, a1 - a5, a2 - a6, a3 - a7


@njit(cache=True)
def _radix4_stages(x, h):
    """Butterfly stages ``h`` and ``2h`` fused, repeated while they fit; returns the next ``h``."""
    n = x.shape[0]
    while 4 * h <= n:
        for i in range(0, n, 4 * h):
            # slices let the compiler drop index checks and vectorise the k loop
            p0 = x[i:i + h]
            p1 = x[i + h:i + 2 * h]
            p2 = x[i + 2 * h:i + 3 * h]
            p3 = x[i + 3 * h:i + 4 * h]
            for k in range(h):
                a0 = p0[k]
                a1 = p1[k]
                a2 = p2[k]
                a3 = p3[k]
                b0 = a0 + a1
                b1 = a0 - a1
                b2 = a2 + a3
                b3 = a2 - a3
                p0[k] = b0 + b2
                p1[k] = b1 + b3
                p2[k] = b0 - b2
                p3[k] = b1 - b3
        h *= 4
    return h


@njit(cache=True)
def fwht(x):
    """In-place unnormalised fast Walsh-Hadamard transform of a power-of-two-length array.

    Performs exactly the additions of the textbook radix-2 transform (stage
    ``h`` pairs ``j`` with ``j + h``, ``h = 1, 2, 4, ...``), so results are
    bit-identical to it, but runs the first three stages as vectorisable
    interleaved passes and fuses the later ones pairwise (radix 4): inner loops
    over contiguous slices that the compiler vectorises. ``rotate`` and
    ``unrotate`` call it on one cache-resident block at a time.
    """
    n = x.shape[0]
    h = 1
    if n >= 8:
        _fwht8(x)
        h = 8
    h = _radix4_stages(x, h)
    while h < n:
        for i in range(0, n, 2 * h):
            p0 = x[i:i + h]
            p1 = x[i + h:i + 2 * h]
            for k in range(h):
                a = p0[k]
                b = p1[k]
                p0[k] = a + b
                p1[k] = a - b
        h *= 2


@njit(cache=True)
def fwht_blocks(y, block):
    """``fwht`` on each consecutive ``block``-long segment of ``y`` (cache-sized pieces)."""
    for s in range(0, y.shape[0], block):
        fwht(y[s:s + block])


@njit(cache=True)
def signed_scaled_range(src, src0, dst, key, scale, start, stop):
    """``dst[j] = scale * s_j * src[j - src0]`` for ``start <= j < stop`` (zero where ``j - src0 >= len(src)``).

    Sign ``s_j`` is bit ``j % 64`` of draw ``j // 64`` of stream ``key`` (1 means
    negative). It is applied as a multiplication by +-1 after the scaling, which
    is exact (IEEE multiplication is symmetric in sign), so the result equals a
    flip of the float's sign bit; the inner loop has no branch and vectorises.
    """
    d = src0 + src.shape[0]
    for w in range(start >> 6, (stop + 63) >> 6):
        bits = draw_u64(key, w)
        lo = max(start, w << 6)
        hi = min(stop, (w + 1) << 6)
        full = max(lo, min(hi, d))
        off = lo & 63
        a = src[lo - src0:full - src0]  # slices: contiguous, no index arithmetic left in the loop
        o = dst[lo:full]
        for j in range(full - lo):
            f = np.float32(1.0) - np.float32(2.0) * np.float32((bits >> np.uint64(off + j)) & np.uint64(1))
            o[j] = (a[j] * scale) * f
        for j in range(full, hi):
            dst[j] = 0.0


@njit(cache=True)
def signed_scaled_copy(src, dst, key, scale):
    """``dst[j] = scale * s_j * src[j]`` for ``j < len(src)``, zero after, with the shared signs ``s_j``
    (see ``signed_scaled_range``)."""
    signed_scaled_range(src, 0, dst, key, scale, 0, dst.shape[0])


@njit(cache=True)
def _rotate_blocks(x, y, key, scale, b):
    # one block at a time: its signed copy is still in cache when the transform runs
    for s in range(0, y.shape[0], b):
        signed_scaled_range(x, 0, y, key, scale, s, s + b)
        fwht(y[s:s + b])


@njit(cache=True)
def _unrotate_blocks(y, out, key, scale, b):
    # one block at a time through a cache-resident scratch: y is read once and out written once
    scratch = np.empty(b, np.float32)
    d = out.shape[0]
    for s in range(0, d, b):
        scratch[:] = y[s:s + b]
        fwht(scratch)
        signed_scaled_range(scratch, s, out, key, scale, s, min(d, s + b))


def rotate(x, key, block=1 << 16):
    """Rotate float32 ``x``; returns a new array of ``padded_length(len(x), block)``."""
    n = padded_length(x.shape[0], block)
    b = min(n, block)
    y = np.empty(n, np.float32)
    _rotate_blocks(x, y, np.uint64(key), np.float32(1.0 / np.sqrt(b)), b)
    return y


def unrotate(y, d, key, block=1 << 16):
    """Invert ``rotate``: return the first ``d`` coordinates of the inverse rotation of ``y``."""
    n = padded_length(d, block)
    if y.shape[0] != n:
        raise ValueError(f"rotated length {y.shape[0]} does not match d={d}, block={block} (expected {n})")
    b = min(n, block)
    out = np.empty(d, np.float32)
    _unrotate_blocks(np.ascontiguousarray(y, dtype=np.float32), out, np.uint64(key), np.float32(1.0 / np.sqrt(b)), b)
    return out
