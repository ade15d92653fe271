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
def fwht(x):
    """In-place unnormalised fast Walsh-Hadamard transform of a power-of-two-length array."""
    n = x.shape[0]
    h = 1
    while h < n:
        for i in range(0, n, 2 * h):
            for j in range(i, i + h):
                a = x[j]
                b = x[j + h]
                x[j] = a + b
                x[j + h] = a - b
        h *= 2


@njit(cache=True)
def _apply_signs(y, key):
    """Multiply by the shared random signs, 64 coordinates per 64-bit draw."""
    n = y.shape[0]
    for w in range((n + 63) // 64):
        bits = draw_u64(key, w)
        for j in range(w * 64, min(n, w * 64 + 64)):
            if (bits >> np.uint64(j - w * 64)) & np.uint64(1):
                y[j] = -y[j]


@njit(cache=True)
def _rotate_blocks(y, key, block):
    _apply_signs(y, key)
    scale = np.float32(1.0 / np.sqrt(block))
    for s in range(0, y.shape[0], block):
        seg = y[s:s + block]
        fwht(seg)
        for j in range(block):
            seg[j] *= scale


@njit(cache=True)
def _unrotate_blocks(y, key, block):
    scale = np.float32(1.0 / np.sqrt(block))
    for s in range(0, y.shape[0], block):
        seg = y[s:s + block]
        fwht(seg)
        for j in range(block):
            seg[j] *= scale
    _apply_signs(y, key)


def rotate(x, key, block=1 << 16):
    """Rotate float32 ``x``; returns a new array of ``padded_length(len(x), block)``."""
    n = padded_length(x.shape[0], block)
    y = np.zeros(n, np.float32)
    y[: x.shape[0]] = x
    _rotate_blocks(y, np.uint64(key), min(n, block))
    return y


def unrotate(y, d, key, block=1 << 16):
    """Invert ``rotate``: return the first ``d`` coordinates of the inverse rotation of ``y``."""
    n = padded_length(d, block)
    if y.shape[0] != n:
        raise ValueError(f"rotated length {y.shape[0]} does not match d={d}, block={block} (expected {n})")
    z = np.array(y, dtype=np.float32, copy=True)
    _unrotate_blocks(z, np.uint64(key), min(n, block))
    return z[:d]
