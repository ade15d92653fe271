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
random bits per coordinate (draw ``i // 2`` of the shared stream, low half for
even ``i``, high half for odd): the round-up probability is resolved to
``2^-32``, so any bias is below ``2^-32`` of a level step, far under float32
precision. The decoder needs no randomness.

Speed: the encoder first computes every level in one vectorised pass, with a
bitmask of the non-zero ones; the writer then visits only those (``ctz`` over
the mask) and appends gap, sign and level as one field to a register-held word
writer. The reader takes a coordinate's gap, sign and level together by one
table lookup on a 64-bit window (code by code for the rare longer fields).
"""
import numpy as np
from numba import njit

from ..bitstream.bits import field_f32
from ..bitstream.codes import omega_len
from ..bitstream.rng import draw_u64
from ..bitstream.words import (OMEGA_CODE, OMEGA_DEC, OMEGA_LEN, OMEGA_PEEK, OMEGA_TABLE, ctz, get_omega,
                               load_words, omega_code, sink_flush, sink_put)
from ..errors import DecodeError
from .base import SparseDecodeCodec
from .buckets import bucket_count, bucket_l2_f32, bucket_size, check_bucket

_PEEK_MASK = np.uint64((1 << OMEGA_PEEK) - 1)
_ONE = np.uint64(1)
_OVERRUN = "qsgd: read past the end of the payload"
_BAD_LEVEL = "qsgd: level above the number of levels, or in a bucket of norm 0"


@njit(cache=True)
def _bucket_levels(xs, start, n, s, key, lev):
    """Signed stochastic level of each coordinate of one bucket ``xs`` (global offset ``start``,
    norm ``n``). A loop over a 0-based slice, so numba vectorises it."""
    nn = np.float64(n) if n > 0 else 1.0  # a zero norm means a zero bucket: every level is 0
    for i in range(xs.shape[0]):
        j = np.uint64(start + i)
        r = (draw_u64(key, j >> np.uint64(1)) >> ((j & np.uint64(1)) << np.uint64(5))) & np.uint64(0xFFFFFFFF)
        v = abs(np.float64(xs[i])) / nn * s
        lo = np.floor(v)
        l = min(np.int64(lo) + np.int64(np.float64(r) < (v - lo) * 4294967296.0), np.int64(s))
        lev[i] = np.int8(-l if xs[i] < 0 else l)


@njit(cache=True)
def _levels(x, b, norms, s, key, lev, mask):
    """Levels of all coordinates, and ``mask`` with bit ``i % 64`` of word ``i // 64`` set where
    level ``i`` is non-zero (the writer visits only those)."""
    d = x.shape[0]
    for k in range(norms.shape[0]):
        lo = k * b
        hi = min(d, lo + b)
        _bucket_levels(x[lo:hi], lo, norms[k], s, key, lev[lo:hi])
    full = d // 64
    for w in range(full):
        m = np.uint64(0)
        for t in range(64):
            m |= np.uint64(lev[64 * w + t] != 0) << np.uint64(t)
        mask[w] = m
    m = np.uint64(0)
    for t in range(d - 64 * full):
        m |= np.uint64(lev[64 * full + t] != 0) << np.uint64(t)
    if d > 64 * full:
        mask[full] = m


@njit(cache=True, inline="always")
def _omega_field(n):
    """``omega_code(n)`` through the table for small ``n``."""
    if n < OMEGA_TABLE:
        return OMEGA_CODE[n], OMEGA_LEN[n]
    return omega_code(n)


@njit(cache=True)
def _write(lev, mask, b, norm_bits, words):
    """Write the stream from the levels, visiting non-zero levels through ``mask``; return its length.

    A register-held word writer (``sink_put``): one append per non-zero coordinate for its gap, sign
    and level together, and one per bucket boundary."""
    d = lev.shape[0]
    nb = norm_bits.shape[0]
    if nb == 0:
        return 0
    w = 0
    acc = np.uint64(0)
    nacc = 0
    w, acc, nacc = sink_put(words, w, acc, nacc, norm_bits[0], 32)
    k = 0
    start = 0
    stop = min(b, d)
    prev = -1
    for mw in range(mask.shape[0]):
        m = mask[mw]
        while m != 0:
            i = 64 * mw + ctz(m)
            m &= m - np.uint64(1)
            while i >= stop:  # close the bucket: a gap landing just past its end, then the next norm
                gc, gl = _omega_field(stop - start - prev)
                w, acc, nacc = sink_put(words, w, acc, nacc, gc, gl)
                k += 1
                start = stop
                stop = min(stop + b, d)
                prev = -1
                w, acc, nacc = sink_put(words, w, acc, nacc, norm_bits[k], 32)
            j = i - start
            l = np.int64(lev[i])
            gc, gl = _omega_field(j - prev)
            lc, ll = _omega_field(abs(l))
            sign = np.uint64(1) if l < 0 else np.uint64(0)
            if gl + 1 + ll <= 64:
                w, acc, nacc = sink_put(words, w, acc, nacc,
                                        gc | (sign << np.uint64(gl)) | (lc << np.uint64(gl + 1)), gl + 1 + ll)
            else:
                w, acc, nacc = sink_put(words, w, acc, nacc, gc, gl)
                w, acc, nacc = sink_put(words, w, acc, nacc, sign, 1)
                w, acc, nacc = sink_put(words, w, acc, nacc, lc, ll)
            prev = j
    while True:  # close the last bucket with a non-zero level and every bucket after it
        gc, gl = _omega_field(stop - start - prev)
        w, acc, nacc = sink_put(words, w, acc, nacc, gc, gl)
        k += 1
        if k == nb:
            break
        start = stop
        stop = min(stop + b, d)
        prev = -1
        w, acc, nacc = sink_put(words, w, acc, nacc, norm_bits[k], 32)
    return sink_flush(words, w, acc, nacc)


@njit(cache=True, inline="always")
def _peek(words, pos):
    """The 64 bits from ``pos`` (``words`` must hold the word after ``pos``'s word)."""
    w = pos >> 6
    off = np.uint64(pos & 63)
    return (words[w] >> off) | ((words[w + 1] << np.uint64(63) - off) << _ONE)


# One coordinate's gap, sign and level in one lookup: _FIELDS[w] for every FIELD_PEEK-bit window w that
# starts with a whole field (gap omega, sign bit, level omega) is its length | gap << 4 | level << 10
# | sign << 16, and 0 where the field is longer (it is read code by code). 13 bits hold gaps up to 31
# with level 1 (nearly every field at a few bits per coordinate), and the int32 table (32 KiB) stays
# in the L1 cache.
FIELD_PEEK = 13
_FIELD_MASK = np.uint64((1 << FIELD_PEEK) - 1)


def _field_table():
    w = np.arange(1 << FIELD_PEEK, dtype=np.int64)
    g = OMEGA_DEC[w & ((1 << OMEGA_PEEK) - 1)]
    gl = g & 0xFF
    lv = OMEGA_DEC[(w >> (gl + 1)) & ((1 << OMEGA_PEEK) - 1)]
    n = gl + 1 + (lv & 0xFF)
    whole = (g != 0) & (lv != 0) & (n <= FIELD_PEEK)
    return np.where(whole, n | (g >> 8) << 4 | (lv >> 8) << 10 | ((w >> gl) & 1) << 16, 0).astype(np.int32)


_FIELDS = _field_table()


@njit(cache=True, inline="always")
def _emit(out, i, unit, l, negative, add):
    """Coordinate ``i`` of level ``l``: set, or with ``add`` added to ``out[i]``."""
    v = np.float32(unit * l)
    v = -v if negative else v
    out[i] = out[i] + v if add else v


@njit(cache=True)
def _read(words, end, d, b, s, out, add):
    """Decode into the zeroed ``out``, or with ``add`` add the decoded values to ``out`` (only the
    non-zero levels are visited either way).

    Fields are read from a 64-bit window: whole fields by one ``_FIELDS`` lookup each, as many as
    the window surely holds (a field of at most ``FIELD_PEEK`` bits at each step), then one field
    code by code (the bucket's end, or a field too long for the table): one ``OMEGA_DEC`` lookup per
    omega code of at most ``OMEGA_PEEK`` bits, ``get_omega`` for longer ones. Bits past ``end`` are
    zero (``load_words``) and a zero bit reads as the one-bit code of 1, so a field that runs past
    ``end`` leaves the position past ``end``: one check per window catches it (after writes that the
    error makes void), and the next window is only read from a position ``< end``."""
    pos = 0
    for k in range((d + b - 1) // b):
        if pos + 32 > end:
            raise DecodeError(_OVERRUN)
        bits = _peek(words, pos) & np.uint64(0xFFFFFFFF)
        pos += 32
        norm = field_f32(bits)
        if not (np.isfinite(norm) and norm >= 0) or bits >> np.uint64(31):
            raise DecodeError("qsgd: bucket norm is not a finite non-negative float32")
        unit = np.float64(norm) / s
        top = s if norm > 0 else 0  # the largest valid level: none in a bucket of norm 0
        start = k * b
        blen = min(b, d - start)
        prev = -1
        while True:
            if pos >= end:
                raise DecodeError(_OVERRUN)
            win = _peek(words, pos)
            used = 0
            whole = True
            for _ in range(64 // FIELD_PEEK + 1):  # a fixed count, so that the loop exit is predictable
                if used > 64 - FIELD_PEEK:
                    break
                e = _FIELDS[win & _FIELD_MASK]
                n = e & 15
                j = prev + ((e >> 4) & 63)
                if n == 0 or j >= blen:
                    whole = False
                    break
                l = (e >> 10) & 63
                if l > top:
                    raise DecodeError(_BAD_LEVEL)
                _emit(out, start + j, unit, l, (e >> 16) & 1, add)
                prev = j
                used += n
                win >>= np.uint64(n)
            pos += used
            if pos > end:
                raise DecodeError(_OVERRUN)
            if whole:
                continue
            if pos == end:
                raise DecodeError(_OVERRUN)
            win = _peek(words, pos)
            e = OMEGA_DEC[win & _PEEK_MASK]
            if e != 0:
                gap = e >> 8
                base = pos + (e & 0xFF)
                rest = win >> np.uint64(e & 0xFF)
            else:
                gap, base = get_omega(words, end, pos)
                rest = _peek(words, base) if base < end else np.uint64(0)  # no word to read at the end
            j = prev + gap
            if j >= blen:
                pos = base
                if pos > end:
                    raise DecodeError(_OVERRUN)
                if j > blen:
                    raise DecodeError("qsgd: position past the end of its bucket")
                break
            e = OMEGA_DEC[(rest >> _ONE) & _PEEK_MASK]
            if e != 0:
                l = e >> 8
                pos = base + 1 + (e & 0xFF)
            else:
                if base + 1 >= end:
                    raise DecodeError(_OVERRUN)
                l, pos = get_omega(words, end, base + 1)
            if pos > end:
                raise DecodeError(_OVERRUN)
            if l > top:
                raise DecodeError(_BAD_LEVEL)
            _emit(out, start + j, unit, l, rest & _ONE, add)
            prev = j
    if pos != end:
        raise DecodeError("qsgd: trailing bits after the last bucket")


class Qsgd(SparseDecodeCodec):
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
        norms = bucket_l2_f32(x, b)
        lev = np.empty(d, np.int8)
        mask = np.empty((d + 63) // 64, np.uint64)
        _levels(x, b, norms, self.levels, np.uint64(key.stream("qsgd")), lev, mask)
        words = np.empty((self._max_bits(d) + 63) // 64 + 1, np.uint64)  # the writer stores whole words
        return words.view(np.uint8), _write(lev, mask, b, norms.view(np.uint32).astype(np.uint64), words)

    def _min_bits(self, d):
        """Fewest bits of a ``d``-vector's payload: per bucket of length ``n`` the norm and gaps that sum to
        ``n + 1``, whose omega codes take at least ``bit_length(n + 1)`` bits (an omega code of ``g`` takes at
        least ``bit_length(g)``, and ``bit_length(a + b) <= bit_length(a) + bit_length(b)``)."""
        b = bucket_size(d, self.bucket)
        full, last = divmod(d, b)
        return full * (32 + (b + 1).bit_length()) + (32 + (last + 1).bit_length() if last else 0)

    def _check_length(self, nbits, d):
        if nbits > self._max_bits(d):
            raise DecodeError(f"qsgd: {nbits} bits exceed the most a {d}-vector can take")
        if nbits < self._min_bits(d):
            raise DecodeError(f"qsgd: {nbits} bits are fewer than any {d}-vector takes ({self._min_bits(d)})")

    def _decode_nonzero(self, data, nbits, d, key, out, add):
        _read(load_words(data, nbits), nbits, d, bucket_size(d, self.bucket), self.levels, out, add)
