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
    """The first three butterfly stages (h = 1, 2, 4) as one 8-point transform per group."""
    for i in range(0, x.shape[0], 8):
        a0 = x[i] + x[i + 1]
        a1 = x[i] - x[i + 1]
        a2 = x[i + 2] + x[i + 3]
        a3 = x[i + 2] - x[i + 3]
        a4 = x[i + 4] + x[i + 5]
        a5 = x[i + 4] - x[i + 5]
        a6 = x[i + 6] + x[i + 7]
        a7 = x[i + 6] - x[i + 7]
        b0 = a0 + a2
        b2 = a0 - a2
        b1 = a1 + a3
        b3 = a1 - a3
        b4 = a4 + a6
        b6 = a4 - a6
        b5 = a5 + a7
        b7 = a5 - a7
        x[i] = b0 + b4
        x[i + 4] = b0 - b4
        x[i + 1] = b1 + b5
        x[i + 5] = b1 - b5
        x[i + 2] = b2 + b6
        x[i + 6] = b2 - b6
        x[i + 3] = b3 + b7
        x[i + 7] = b3 - b7


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
    bit-identical to it, but fuses the first three stages into 8-point groups
    and the later ones pairwise (radix 4): half the passes over memory, and
    inner loops over contiguous slices that the compiler vectorises.
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
def signed_scaled_copy(src, dst, key, scale):
    """``dst[j] = scale * s_j * src[j]`` for ``j < len(src)``, zero after, with the shared signs ``s_j``.

    Sign ``s_j`` is bit ``j % 64`` of draw ``j // 64`` of stream ``key`` (1 means
    negative), applied as an XOR of the float sign bit: no branch per coordinate.
    """
    d = src.shape[0]
    n = dst.shape[0]
    u = dst.view(np.uint32)
    for w in range((n + 63) // 64):
        bits = draw_u64(key, w)
        base = w * 64
        for j in range(min(64, n - base)):
            v = src[base + j] * scale if base + j < d else np.float32(0.0)
            dst[base + j] = v
            u[base + j] ^= np.uint32((bits >> np.uint64(j)) & np.uint64(1)) << np.uint32(31)


def rotate(x, key, block=1 << 16):
    """Rotate float32 ``x``; returns a new array of ``padded_length(len(x), block)``."""
    n = padded_length(x.shape[0], block)
    b = min(n, block)
    y = np.empty(n, np.float32)
    signed_scaled_copy(x, y, np.uint64(key), np.float32(1.0 / np.sqrt(b)))
    fwht_blocks(y, b)
    return y


def unrotate(y, d, key, block=1 << 16):
    """Invert ``rotate``: return the first ``d`` coordinates of the inverse rotation of ``y``."""
    n = padded_length(d, block)
    if y.shape[0] != n:
        raise ValueError(f"rotated length {y.shape[0]} does not match d={d}, block={block} (expected {n})")
    b = min(n, block)
    z = np.array(y, dtype=np.float32, copy=True)
    fwht_blocks(z, b)
    out = np.empty(d, np.float32)
    signed_scaled_copy(z[:d], out, np.uint64(key), np.float32(1.0 / np.sqrt(b)))
    return out
