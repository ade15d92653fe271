"""Sparsifiers: ``topk`` (largest magnitudes, gap-coded positions) and ``randk``
(shared random positions, zero position bits).

``k`` is given directly or as ``ratio`` of ``d`` (``k = max(1, ceil(ratio d))``,
capped at ``d``); both sides compute it from ``d``.

- ``topk`` (Stich, Cordonnier, Jaggi, "Sparsified SGD with memory", NeurIPS
  2018): a contraction with ``alpha = k / d``. Selection is exact with a
  two-level radix select on the magnitude bits (ties go to the lower index),
  so positions come out sorted. Layout: the ``k`` positions as Golomb-Rice
  codes of the gaps ``position - previous - 1`` (previous starting at -1), with
  the parameter ``rice_parameter(k, d)`` both sides derive; then the ``k``
  values as float32.
- ``randk`` (Stich et al. 2018; unbiased scaling as in Wangni et al.,
  "Gradient sparsification for communication-efficient distributed
  optimization", NeurIPS 2018): ``k`` distinct positions drawn uniformly
  (Floyd's algorithm over the shared stream), values scaled by ``d / k``:
  unbiased with ``omega = d / k - 1``. Payload: the ``k`` values as float32,
  exactly ``32 k`` bits.
"""
import math

import numpy as np
from numba import njit

from ..bitstream.codes import rice_parameter
from ..bitstream.rng import draw_uniform
from ..bitstream.words import ctz, get_rice, load_words, new_words, put, put_rice, put_words, get_words
from ..errors import DecodeError
from .base import SparseDecodeCodec, expect_bits


def count_k(d, k, ratio):
    """Number of coordinates kept out of ``d``."""
    if d == 0:
        return 0
    return min(d, k) if k else min(d, max(1, math.ceil(ratio * d - 1e-9)))


def _check_k(k, ratio):
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer (0: use ratio), got {k=}")
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio=}")


@njit(cache=True)
def topk_indices(x, k):
    """Sorted indices of the ``k`` largest ``|x_i|`` (ties: lower index first), by radix select."""
    u = x.view(np.uint32)
    d = x.shape[0]
    hist = np.zeros(1 << 15, np.int64)
    for i in range(d):
        hist[(u[i] & np.uint32(0x7FFFFFFF)) >> np.uint32(16)] += 1
    above = 0
    hi = (1 << 15) - 1
    while above + hist[hi] < k:
        above += hist[hi]
        hi -= 1
    hist2 = np.zeros(1 << 16, np.int64)
    for i in range(d):
        a = u[i] & np.uint32(0x7FFFFFFF)
        if (a >> np.uint32(16)) == hi:
            hist2[a & np.uint32(0xFFFF)] += 1
    need = k - above
    lo = (1 << 16) - 1
    while hist2[lo] < need:
        need -= hist2[lo]
        lo -= 1
    thr = np.uint32((hi << 16) | lo)
    idx = np.empty(k, np.int64)
    c = 0
    for i in range(d):
        a = u[i] & np.uint32(0x7FFFFFFF)
        if a > thr or (a == thr and need > 0):
            if a == thr:
                need -= 1
            idx[c] = i
            c += 1
    return idx


@njit(cache=True)
def _write_positions(idx, r, words):
    pos = 0
    prev = -1
    for i in idx:
        pos = put_rice(words, pos, i - prev - 1, r)
        prev = i
    return pos


@njit(cache=True)
def _read_positions(words, end, k, d, r, idx):
    pos = 0
    prev = -1
    for j in range(k):
        g, pos = get_rice(words, end, pos, r)
        if g >= d:
            raise DecodeError("topk: position past the end of the vector")
        prev = prev + g + 1
        if prev >= d:
            raise DecodeError("topk: position past the end of the vector")
        idx[j] = prev
    return pos


@njit(cache=True)
def _gather(x, idx, out):
    for j in range(idx.shape[0]):
        out[j] = x[idx[j]]


@njit(cache=True)
def _scatter(vals, idx, scale, out, add):
    """``out[idx] = vals * scale`` in float32, or with ``add`` ``out[idx] += vals * scale``."""
    bad = False
    for j in range(idx.shape[0]):
        v = vals[j]
        bad |= not np.isfinite(v)
        x = np.float32(v * scale)
        out[idx[j]] = out[idx[j]] + x if add else x
    if bad:
        raise DecodeError("sparse: a value is not finite")


class _KOfD(SparseDecodeCodec):
    """Base of the codecs that keep ``k`` of the ``d`` coordinates (``k`` given, or ``ratio * d``)."""

    def __init__(self, k=0, ratio=0.01):
        _check_k(k, ratio)
        super().__init__(k=k, ratio=ratio)
        self.k = int(k)
        self.ratio = float(ratio)


class TopK(_KOfD):
    """Top-k: the ``k`` largest-magnitude coordinates, Rice-coded gaps then float32 values."""

    name = "topk"
    unbiased = False

    def alpha(self, d):
        return count_k(d, self.k, self.ratio) / max(1, d)

    def _encode(self, x, key):
        d = x.shape[0]
        k = count_k(d, self.k, self.ratio)
        r = rice_parameter(k, d)
        idx = topk_indices(x, k)
        vals = np.empty(k, np.float32)
        _gather(x, idx, vals)
        words = new_words(k * (r + 1) + d + 32 * k)  # sum of quotients <= d / 2^r
        pos = _write_positions(idx, r, words)
        vw = np.zeros((k + 1) // 2, np.uint64)
        vw.view(np.uint8)[: 4 * k] = vals.view(np.uint8)
        return words.view(np.uint8), put_words(words, pos, vw, 32 * k)

    def _check_length(self, nbits, d):
        k = count_k(d, self.k, self.ratio)
        least = k * (rice_parameter(k, d) + 1) + 32 * k  # every gap's Rice code, then the values
        if nbits < least:
            raise DecodeError(f"topk: {nbits} bits are fewer than the {least} that {k} of {d} coordinates take")

    def _decode_nonzero(self, data, nbits, d, key, out, add):
        k = count_k(d, self.k, self.ratio)
        r = rice_parameter(k, d)
        words = load_words(data, nbits)
        idx = np.empty(k, np.int64)
        pos = _read_positions(words, nbits, k, d, r, idx)
        expect_bits(self.name, nbits, pos + 32 * k)
        vw = np.empty((k + 1) // 2 + 1, np.uint64)
        get_words(words, pos, 32 * k, vw)
        _scatter(vw.view(np.float32)[:k], idx, 1.0, out, add)


@njit(cache=True)
def randk_indices(d, k, key):
    """``k`` distinct sorted indices, uniform over all k-subsets of ``range(d)`` (Floyd's algorithm:
    for ``j = d-k .. d-1`` take a uniform ``t <= j``, or ``j`` itself if ``t`` is taken)."""
    taken = np.zeros((d + 63) // 64, np.uint64)
    one = np.uint64(1)
    for j in range(d - k, d):
        t = min(np.int64(draw_uniform(key, j) * (j + 1)), j)
        if taken[t >> 6] & (one << np.uint64(t & 63)):
            t = j
        taken[t >> 6] |= one << np.uint64(t & 63)
    idx = np.empty(k, np.int64)
    c = 0
    for w in range(taken.shape[0]):
        v = taken[w]
        while v:
            idx[c] = 64 * w + ctz(v)
            c += 1
            v &= v - one
    return idx


class RandK(_KOfD):
    """Random-k: shared random positions (no position bits), values scaled by ``d / k``; ``32 k`` bits."""

    name = "randk"
    unbiased = True

    def omega(self, d):
        return d / max(1, count_k(d, self.k, self.ratio)) - 1.0

    def _encode(self, x, key):
        d = x.shape[0]
        k = count_k(d, self.k, self.ratio)
        idx = randk_indices(d, k, np.uint64(key.stream("randk")))
        vals = np.empty(k, np.float32)
        _gather(x, idx, vals)
        return vals.view(np.uint8), 32 * k

    def _check_length(self, nbits, d):
        expect_bits(self.name, nbits, 32 * count_k(d, self.k, self.ratio))

    def _decode_nonzero(self, data, nbits, d, key, out, add):
        k = count_k(d, self.k, self.ratio)
        idx = randk_indices(d, k, np.uint64(key.stream("randk")))
        _scatter(data[: 4 * k].copy().view(np.float32), idx, np.float32(d / k) if k else 1.0, out, add)
