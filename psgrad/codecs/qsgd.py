"""QSGD with Elias coding (Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD:
communication-efficient SGD via gradient quantization and encoding", NeurIPS 2017).

Each bucket of ``B`` coordinates is scaled by its L2 norm; ``|x_i| / norm * s``
is rounded stochastically to an integer level ``l_i`` in ``[0, s]`` (up with
probability equal to the fractional part), which makes the codec unbiased with
``omega = min(B / s^2, sqrt(B) / s)`` (the paper's Lemma 3.1, per bucket).

Stream, per bucket (the paper's Elias encoding, section 3.2): the norm as
float32; then for every non-zero level, Elias omega of the gap
``position - previous - 1`` plus one (positions within the bucket, previous
starting at -1), one sign bit (1 = negative), and Elias omega of the level;
the bucket ends with Elias omega of ``B - previous`` (a gap that lands just past
the bucket's last coordinate), so no count is sent. Rounding draws use 32
random bits per coordinate from the shared stream; the decoder needs none.
"""
import numpy as np
from numba import njit

from ..bitstream.codes import omega_len
from ..bitstream.rng import draw_u64
from ..bitstream.words import get_checked, get_omega, load_words, new_words, put, put_omega
from ..errors import DecodeError
from .base import Codec
from .buckets import bucket_count, bucket_l2, bucket_size, check_bucket


@njit(cache=True)
def _levels(x, b, norms, s, key, lev):
    """Stochastic level of each coordinate, signed (negative level for negative x)."""
    d = x.shape[0]
    for i in range(d):
        n = norms[i // b]
        r = np.uint32((draw_u64(key, i >> 1) >> np.uint64(32 * (i & 1))) & np.uint64(0xFFFFFFFF))
        if n > 0:
            v = abs(np.float64(x[i])) / np.float64(n) * s
            lo = np.floor(v)
            l = np.int64(lo) + np.int64(np.float64(r) < (v - lo) * 4294967296.0)
            l = min(l, np.int64(s))
        else:
            l = np.int64(0)
        lev[i] = np.int8(-l if x[i] < 0 else l)


@njit(cache=True)
def _write(lev, b, norm_bits, words):
    d = lev.shape[0]
    pos = 0
    for k in range((d + b - 1) // b):
        pos = put(words, pos, norm_bits[k], 32)
        start = k * b
        blen = min(b, d - start)
        prev = -1
        for j in range(blen):
            l = lev[start + j]
            if l != 0:
                pos = put_omega(words, pos, j - prev)
                pos = put(words, pos, 1 if l < 0 else 0, 1)
                pos = put_omega(words, pos, abs(l))
                prev = j
        pos = put_omega(words, pos, blen - prev)
    return pos


@njit(cache=True)
def _read(words, end, d, b, s, out):
    pos = 0
    for k in range((d + b - 1) // b):
        bits, pos = get_checked(words, end, pos, 32)
        nb = np.empty(1, np.uint32)
        nb[0] = np.uint32(bits)
        norm = nb.view(np.float32)[0]
        if not (np.isfinite(norm) and norm >= 0) or bits >> np.uint64(31):
            raise DecodeError("qsgd: bucket norm is not a finite non-negative float32")
        unit = np.float64(norm) / s
        start = k * b
        blen = min(b, d - start)
        prev = -1
        while True:
            gap, pos = get_omega(words, end, pos)
            j = prev + gap
            if j == blen:
                break
            if j > blen:
                raise DecodeError("qsgd: position past the end of its bucket")
            if norm == 0:
                raise DecodeError("qsgd: non-zero level in a bucket of norm 0")
            neg, pos = get_checked(words, end, pos, 1)
            l, pos = get_omega(words, end, pos)
            if l > s:
                raise DecodeError("qsgd: level above the number of levels")
            v = np.float32(unit * l)
            out[start + j] = -v if neg else v
            prev = j
    if pos != end:
        raise DecodeError("qsgd: trailing bits after the last bucket")


class Qsgd(Codec):
    """QSGD with ``levels`` quantization levels per bucket of ``bucket`` coordinates, Elias-coded."""

    name = "qsgd"
    unbiased = True

    def __init__(self, levels=4, bucket=512):
        if not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 127:
            raise ValueError(f"levels must be in [1, 127], got {levels=}")
        check_bucket(bucket)
        super().__init__(levels=levels, bucket=bucket)
        self.levels = int(levels)
        self.bucket = int(bucket)

    def omega(self, d):
        B = bucket_size(d, self.bucket)
        return min(B / self.levels ** 2, np.sqrt(B) / self.levels)

    def _max_bits(self, d):
        B = bucket_size(d, self.bucket)
        per = omega_len(B) + 1 + omega_len(self.levels)
        return bucket_count(d, self.bucket) * (32 + omega_len(B + 1)) + d * per

    def _encode(self, x, key):
        d = x.shape[0]
        b = bucket_size(d, self.bucket)
        norms = bucket_l2(x, b).astype(np.float32)
        lev = np.empty(d, np.int8)
        _levels(x, b, norms, self.levels, np.uint64(key.stream("qsgd")), lev)
        words = new_words(self._max_bits(d))
        return words.view(np.uint8), _write(lev, b, norms.view(np.uint32).astype(np.uint64), words)

    def _decode(self, data, nbits, d, key):
        out = np.zeros(d, np.float32)
        if nbits > self._max_bits(d):
            raise DecodeError(f"qsgd: {nbits} bits exceed the most a {d}-vector can take")
        _read(load_words(data, nbits), nbits, d, bucket_size(d, self.bucket), self.levels, out)
        return out
