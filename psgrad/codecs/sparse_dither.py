"""Sparse dithering: variance-optimal random sparsification with dithered magnitudes and gap-coded positions.

Steps (encoder):

1. Solve ``lambda`` so that ``sum_i min(1, |x_i| / lambda) = density * d``
   (estimated on an evenly strided sample of at most 65536 coordinates; any
   ``lambda`` keeps the operator unbiased, the solve only sets the rate).
2. Keep coordinate ``i`` with probability ``p_i = min(1, |x_i| / lambda)`` by
   systematic sampling: one uniform ``u``, keep ``i`` when
   ``floor(u + sum_{j<=i} p_j)`` increases, computed exactly in 64-bit fixed
   point (``u`` a uniform 64-bit fraction, ``p_i < 1`` as ``floor(2^64 p_i)``).
   Each coordinate's marginal keep probability is ``p_i`` (to within ``2^-64``,
   below float32 resolution), which is all that unbiasedness and the
   mean squared error depend on (errors of different coordinates are orthogonal).
3. Magnitudes on the grid ``lambda + j (M - lambda) / levels``, ``j = 0..levels``,
   ``M = max |x_i|``. A kept coordinate with ``|x_i| <= lambda`` is sent as
   level 0 (it decodes to ``sign * lambda``: ``p_i * lambda = |x_i|``);
   larger ones are stochastically rounded between adjacent levels.

Bit layout (stream order): ``lambda`` float32, ``M`` float32, Elias delta of
``k + 1`` (``k`` kept coordinates), 6 bits of Rice parameter ``r``; then per
kept coordinate: Rice(r) of the gap to the previous kept position (first gap
from -1, minus one), one sign bit (1 = negative), Elias gamma of ``j + 1``.
Two fields are left out when the header already implies them: with ``k = d``
(every coordinate kept) the positions and ``r``, whose entropy is zero; with
``M <= lambda`` (no magnitude above ``lambda``, every level 0) the levels. A
vector of equal magnitudes at density 1 thus costs one sign bit per coordinate.

``rotate=True`` (the default) makes the operator instance-adaptive: per
message the encoder predicts, from ``x`` alone, the error of sparse dithering
and of ``rotated_ternary`` at the rate sparse dithering spends on equal
magnitudes (``density (log2(1/density) + 3.5)`` bits per coordinate), and
sends one choice bit (0 = sparse dithering, 1 = rotated) followed by the
payload of the one nearer the bound. The choice never depends on a random
draw, so the operator stays unbiased; sparse inputs keep their exact,
short sparse payload, and dense ones (where sparse dithering is up to 15
times the bound) get the rotated code.
"""
import numpy as np
from numba import njit

from ..bitstream.bits import f32_field, field_f32
from ..bitstream.codes import bit_length
from ..bitstream.rng import draw_u64, draw_uniform
from ..bitstream.words import (ctz, get, get_checked, get_gamma, get_rice, load_words, sink_flush, sink_put,
                               split_field, with_field)
from ..errors import DecodeError
from .base import SparseDecodeCodec, add_into
from .buckets import F32_MAX
from .rotated_ternary import RotatedTernary, shape

_ONE = np.uint64(1)


def sparse_rate(density):
    """Bits per coordinate that sparse dithering spends at ``density`` on equal magnitudes: per kept
    coordinate about ``log2(1 / density) + 1.5`` bits of Rice gap, a sign and a level bit."""
    return density * (np.log2(1.0 / density) + 3.5)


def density_for_rate(rate):
    """The density whose ``sparse_rate`` is ``rate`` (``0 < rate <= 3.5``; ``sparse_rate`` increases on
    ``(0, 1]`` from 0 to 3.5), by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sparse_rate(mid) < rate else (lo, mid)
    return hi


def peak(x):
    """``max |x_i|`` as a float (0 for an empty ``x``), from numpy's reductions (no ``|x|`` array)."""
    return float(max(x.max(), -x.min())) if x.shape[0] else 0.0


def solve_lambda(a, k):
    """The ``lambda`` with ``sum min(1, a_i / lambda) = k`` for magnitudes ``a`` (0 < k < #nonzero)."""
    s = np.sort(a)[::-1].astype(np.float64)
    tail = np.cumsum(s[::-1])[::-1]  # tail[j] = sum_{i >= j} s_i
    j = np.arange(len(s))
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = tail / (k - j)  # j coordinates at p = 1, the rest proportional
    ok = (k - j > 0) & (lam >= s) & ((j == 0) | (lam < np.concatenate(([np.inf], s[:-1]))))
    hits = np.flatnonzero(ok)
    return float(lam[hits[0]]) if len(hits) else float(s[0])


_TWO64 = 18446744073709551616.0  # 2^64


@njit(cache=True)
def _select(x, inv_lam, u, out, kept):
    """Systematic sampling with marginals ``p_i = min(1, |x_i| * inv_lam)``; fills ``out[:k]`` with the kept
    positions and ``kept[:k]`` with their values (read while they are in cache), returns ``k``.

    The running sum ``u + sum_{j<=i} p_j`` is kept modulo 1 as a 64-bit
    fixed-point fraction (``p_i`` as ``floor(2^64 p_i)``, ``u`` a uniform 64-bit
    draw), so keeping ``i`` is the carry out of one integer addition; ``p_i >= 1``
    is always kept and adds nothing. Per 64 coordinates: the fractions in one
    vectorised pass, the carries in a minimal serial loop (one integer add of
    latency per coordinate), the keep bits packed into a word, and the kept
    positions read off it with trailing-zero counts, in increasing order.
    """
    n = x.shape[0]
    frac = np.zeros(64, np.uint64)
    whole = np.zeros(64, np.uint64)
    carry = np.zeros(64, np.uint64)
    acc = np.uint64(u)
    k = 0
    for base in range(0, n, 64):
        cn = min(64, n - base)
        xs = x[base:base + cn]
        for j in range(cn):
            p = abs(np.float64(xs[j])) * inv_lam
            w = p >= 1.0
            frac[j] = np.uint64((0.0 if w else p) * _TWO64)
            whole[j] = np.uint64(w)
        for j in range(cn):
            nxt = acc + frac[j]
            carry[j] = np.uint64(nxt < acc)
            acc = nxt
        bits = np.uint64(0)
        for j in range(cn):
            bits |= (carry[j] | whole[j]) << np.uint64(j)
        while bits != 0:
            t = ctz(bits)
            out[k] = base + t
            kept[k] = xs[t]
            k += 1
            bits &= bits - _ONE
    return k


@njit(cache=True)
def _sink_unary_rice(words, w, acc, nacc, gap, r):
    """Rice(r) of ``gap`` through the sink writer, for quotients of any length."""
    q = gap >> r
    while q >= 63:
        w, acc, nacc = sink_put(words, w, acc, nacc, (_ONE << np.uint64(63)) - _ONE, 63)
        q -= 63
    w, acc, nacc = sink_put(words, w, acc, nacc, (_ONE << np.uint64(q)) - _ONE, q + 1)  # ones, then the 0
    if r > 0:
        w, acc, nacc = sink_put(words, w, acc, nacc, np.uint64(gap) & ((_ONE << np.uint64(r)) - _ONE), r)
    return w, acc, nacc


@njit(cache=True)
def _gamma_field(n):
    """Elias gamma of ``n >= 1`` as ``(value, length)`` (the bits of ``codes.write_gamma``)."""
    L = bit_length(n) - 1
    low = np.uint64(n) & ((_ONE << np.uint64(L)) - _ONE)
    return (_ONE << np.uint64(L)) | (low << np.uint64(L + 1)), 2 * L + 1


@njit(cache=True)
def _write(vals, idx, k, d, lam, top, levels, r, key, words):
    """Header and one field group per kept coordinate (positions ``idx``, values ``vals``) into ``words``
    (not zeroed); returns the bit length.

    A kept coordinate's Rice gap, sign and gamma level are joined into one
    value and appended with a single register-held write when they fit in 64
    bits (always, unless the gap's quotient is long).
    """
    step = (top - lam) / levels if top > lam else 1.0
    w, acc, nacc = 0, np.uint64(0), 0
    w, acc, nacc = sink_put(words, w, acc, nacc, f32_field(np.float32(lam)), 32)
    w, acc, nacc = sink_put(words, w, acc, nacc, f32_field(np.float32(top)), 32)
    L = bit_length(k + 1) - 1  # Elias delta of k + 1: gamma of L + 1, then the low L bits
    gv, gl = _gamma_field(L + 1)
    w, acc, nacc = sink_put(words, w, acc, nacc, gv, gl)
    if L > 0:
        w, acc, nacc = sink_put(words, w, acc, nacc, np.uint64(k + 1) & ((_ONE << np.uint64(L)) - _ONE), L)
    dense = k == d  # positions implied
    flat = not top > lam  # levels implied
    if dense:
        r = 0
    else:
        w, acc, nacc = sink_put(words, w, acc, nacc, np.uint64(r), 6)
    rmask = (_ONE << np.uint64(r)) - _ONE
    prev = -1
    for t in range(k):
        i = np.int64(idx[t])
        a = abs(np.float64(vals[t]))
        j = 0
        if a > lam:
            f = (a - lam) / step
            j = np.int64(np.floor(f))
            if draw_uniform(key, t) < f - j:
                j += 1
            if j > levels:
                j = levels
        gap = i - prev - 1
        prev = i
        sign = _ONE if vals[t] < 0 else np.uint64(0)
        if dense or flat:
            if not dense:
                w, acc, nacc = _sink_unary_rice(words, w, acc, nacc, gap, r)
            w, acc, nacc = sink_put(words, w, acc, nacc, sign, 1)
            if not flat:
                gv, gl = _gamma_field(j + 1)
                w, acc, nacc = sink_put(words, w, acc, nacc, gv, gl)
            continue
        q = gap >> r
        gv, gl = _gamma_field(j + 1)
        n = q + 2 + r + gl
        if n <= 64:
            field = ((_ONE << np.uint64(q)) - _ONE) | ((np.uint64(gap) & rmask) << np.uint64(q + 1))
            field |= sign << np.uint64(q + 1 + r)
            field |= gv << np.uint64(q + 2 + r)
            w, acc, nacc = sink_put(words, w, acc, nacc, field, n)
        else:
            w, acc, nacc = _sink_unary_rice(words, w, acc, nacc, gap, r)
            w, acc, nacc = sink_put(words, w, acc, nacc, sign, 1)
            w, acc, nacc = sink_put(words, w, acc, nacc, gv, gl)
    return sink_flush(words, w, acc, nacc)


@njit(cache=True)
def _read(words, end, d, levels, out, add):
    """Fill the zeroed ``out`` from a payload in word form, or with ``add`` add the kept coordinates to
    ``out``; ``DecodeError`` on any malformed field."""
    lb, pos = get_checked(words, end, 0, 32)
    tb, pos = get_checked(words, end, pos, 32)
    lam = field_f32(lb)
    top = field_f32(tb)
    if not (0 < lam < np.inf and 0 <= top < np.inf):
        raise DecodeError("sparse_dither: lambda and the largest magnitude must be finite, lambda > 0")
    Lp1, pos = get_gamma(words, end, pos)
    L = Lp1 - 1
    if L > 62:
        raise DecodeError("sparse_dither: kept count exceeds 63 bits")
    low, pos = get_checked(words, end, pos, L)
    k = ((np.int64(1) << L) | np.int64(low)) - 1
    if k > d:
        raise DecodeError("sparse_dither: more kept coordinates than the vector has")
    dense = k == d
    flat = not top > lam
    r = 0
    if not dense:
        r, pos = get_checked(words, end, pos, 6)
        r = np.int64(r)
        if r > 40:
            raise DecodeError("sparse_dither: Rice parameter out of range")
    step = (np.float64(top) - lam) / levels if top > lam else 1.0
    rmask = (_ONE << np.uint64(r)) - _ONE
    i = -1
    for t in range(k):
        read = False
        if dense or flat:
            gap = 0
            if not dense:
                gap, pos = get_rice(words, end, pos, r)
            s, pos = get_checked(words, end, pos, 1)
            j1 = 1
            if not flat:
                j1, pos = get_gamma(words, end, pos)
            read = True
        elif pos + 64 <= end:  # the common case: the whole field group lies in the next 64 bits
            w, _ = get(words, pos, 64)
            inv = ~w
            if inv != 0:
                q = ctz(inv)
                used = q + 2 + r
                if used < 64:
                    rest = w >> np.uint64(q + 1)
                    gap = (q << r) | np.int64(rest & rmask)
                    rest >>= np.uint64(r)
                    s = rest & _ONE
                    rest >>= _ONE
                    if rest != 0:
                        Lg = ctz(rest)
                        if used + 2 * Lg + 1 <= 64:
                            j1 = (np.int64(1) << Lg) | np.int64((rest >> np.uint64(Lg + 1))
                                                                & ((_ONE << np.uint64(Lg)) - _ONE))
                            pos += used + 2 * Lg + 1
                            read = True
        if not read:
            gap, pos = get_rice(words, end, pos, r)
            s, pos = get_checked(words, end, pos, 1)
            j1, pos = get_gamma(words, end, pos)
        i += gap + 1
        if i >= d:
            raise DecodeError("sparse_dither: position past the end of the vector")
        if j1 > levels + 1:
            raise DecodeError("sparse_dither: magnitude level out of range")
        v = np.float32(lam + (j1 - 1) * step)
        v = -v if s else v
        out[i] = out[i] + v if add else v
    if pos != end:
        raise DecodeError("sparse_dither: trailing bits after the last kept coordinate")


@njit(cache=True)
def _predict(x, lam, top, levels):
    """Expected squared error and expected kept count of sparse dithering of ``x`` at ``lambda``, and
    ``||x||^2``, in one pass."""
    step = (top - lam) / levels if top > lam else 1.0
    err = 0.0
    k = 0.0
    norm2 = 0.0
    for i in range(x.shape[0]):
        a = abs(np.float64(x[i]))
        norm2 += a * a
        if a <= lam:
            err += a * lam - a * a
            k += a / lam
        else:
            f = (a - lam) / step
            r = f - np.floor(f)
            err += r * (1.0 - r) * step * step
            k += 1.0
    return err, k, norm2


class SparseDither(SparseDecodeCodec):
    """Sparse dithering ``sparse_dither(density=0.02, levels=4)``: unbiased, for well under 1 bit per coordinate.

    ``density``: expected fraction of coordinates kept; ``levels``: magnitude
    steps above ``lambda``. Each kept coordinate costs its Rice-coded gap,
    a sign bit and one bit of level 0 (more only for magnitudes above ``lambda``).
    """

    name = "sparse_dither"
    unbiased = True

    def __init__(self, density=0.02, levels=4, rotate=True):
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density=}")
        if not 1 <= levels <= 1 << 20:
            raise ValueError(f"levels must be in [1, 2^20], got {levels=}")
        super().__init__(density=density, levels=levels, rotate=rotate)
        self.density, self.levels, self.rotate = float(density), int(levels), bool(rotate)
        # the rotated alternative at the rate sparse dithering spends on equal magnitudes: per kept coordinate
        # about log2(1 / density) + 1.5 bits of Rice gap, a sign and a level bit. Blocks of 1024 below 0.2 bit,
        # where the norms' bits weigh most; of 256 above (4 times less work, about 3 % more error)
        rate = min(1.5, sparse_rate(density))
        self.dense = RotatedTernary(rate=rate, m=1024 if rate < 0.2 else 256) if rotate else None

    def omega(self, d):
        # sum_{|x_i| <= lambda} |x_i| lambda <= lambda ||x||_1 <= ||x||_1^2 / k <= ||x||^2 / density,
        # plus at most k dithered magnitudes, each of variance <= (M / levels)^2 / 4 <= ||x||^2 / (4 levels^2).
        sparse = 1.0 / self.density + self.density * d / (4.0 * self.levels ** 2)
        return max(sparse, self.dense.omega(d)) if self.rotate else sparse

    def _encode(self, x, key):
        top = peak(x)
        if not np.isfinite(top):
            raise ValueError("sparse_dither: input must be finite")
        lam = self.threshold(x, top) if top > 0.0 else 1.0
        rotated = self.rotate and top > 0.0 and self._choose_rotated(x, top, lam)
        data, nbits = self.dense.encode(x, key)[:2] if rotated else self.encode_sparse(x, key, top, lam)
        if not self.rotate:
            return data, nbits
        # the choice as the first bit, then the chosen payload in its own layout: a wrong length leaves the
        # choice as it was, so the chosen decoder sees a truncated or extended payload of its own and refuses it
        return with_field(int(rotated), 1, data, nbits)

    def threshold(self, x, top):
        """The ``lambda`` of ``x`` (``top = peak(x)``, finite and > 0), as a float32 value: solved on an
        evenly strided sample of at most 65536 coordinates."""
        d = x.shape[0]
        stride = max(1, d // 65536)
        sample = np.abs(x[::stride])
        k_target = self.density * len(sample)
        nonzero = np.count_nonzero(sample)
        lam = solve_lambda(sample, k_target) if 0 < k_target < nonzero else float(sample[sample > 0].min())
        # bounds as Python floats: comparing with a numpy float32 would cast lam to float32 first (and overflow)
        return float(np.float32(min(max(lam, float(np.finfo(np.float32).tiny)), F32_MAX)))

    def predict(self, x, top, lam):
        """``(expected squared error, predicted rate, ||x||^2)`` of sparse dithering of ``x`` at ``lambda``
        (a function of ``x`` alone): the error and kept count ``k`` exactly, the bits estimated as a
        header of 84 and ``log2(d / k) + 3.5`` per kept coordinate."""
        d = x.shape[0]
        err, k, norm2 = _predict(x, lam, top, self.levels)
        return err, (84 + k * (max(np.log2(d / max(k, 1.0)), 0.0) + 3.5)) / d, norm2

    def _choose_rotated(self, x, top, lam):
        """Whether the rotated code is expected nearer the bound than sparse dithering at ``lambda`` for
        this ``x`` (a function of ``x`` alone, never of the random draws, so either choice stays unbiased):
        compares ``error * (4^rate - 1)`` of both, sparse dithering's from ``predict``, the rotated error
        from its shape term."""
        err, rate, norm2 = self.predict(x, top, lam)
        rot = self.dense.shape_error(x.shape[0]) * (4.0 ** self.dense.rate - 1.0)
        return rot * norm2 < err * (4.0 ** rate - 1.0)

    def encode_sparse(self, x, key, top, lam):
        """The sparse dithering payload of ``x`` at ``lambda`` (``top = peak(x)``; any ``lambda`` when
        ``top`` is 0): ``(bytes, nbits)``."""
        d = x.shape[0]
        if top == 0.0:
            words = np.zeros(3, np.uint64)
            nbits = _write(x[:0], np.zeros(0, np.int32), 0, d, 1.0, 1.0, self.levels, 0, np.uint64(0), words)
            return words.view(np.uint8), nbits
        # numpy allocations: pages are touched only up to the kept count
        idx, kept = np.empty(d, np.int32), np.empty(d, np.float32)
        u = np.uint64(draw_u64(np.uint64(key.stream("sparse_dither.sample")), 0))
        k = _select(x, 1.0 / lam, u, idx, kept)
        mean_gap = d / max(k, 1)
        r = int(max(0, min(40, np.floor(np.log2(max(mean_gap * np.log(2), 1.0))))))
        # bound: header, every quotient bit (the gaps sum to < d), and per coordinate the Rice terminator and
        # remainder, the sign and a gamma code of at most 2 * 21 + 1 bits (levels <= 2^20)
        bound = 200 + (d >> r) + k * (r + 2 + 43 + 1)
        words = np.empty(bound // 64 + 3, np.uint64)
        nbits = _write(kept, idx, k, d, lam, top, self.levels, r,
                       np.uint64(key.stream("sparse_dither.levels")), words)
        return words.view(np.uint8), nbits

    def _decode_nonzero(self, data, nbits, d, key, out, add):
        if not self.rotate:
            _read(load_words(data, nbits), nbits, d, self.levels, out, add)
            return
        if nbits < 1:
            raise DecodeError("sparse_dither: payload lacks its choice bit")
        rotated, inner, n = split_field(data, nbits, 1)
        if rotated:
            y = self.dense.decode(inner.view(np.uint8), n, d, key)
            if add:
                add_into(out, y)
            else:
                out[:] = y
            return
        _read(inner, n, d, self.levels, out, add)
