"""Sparse dithering: variance-optimal random sparsification with dithered magnitudes and gap-coded positions.

Steps (encoder):

1. Solve ``lambda`` so that ``sum_i min(1, |x_i| / lambda) = density * d``
   (estimated on an evenly strided sample of at most 65536 coordinates; any
   ``lambda`` keeps the operator unbiased, the solve only sets the rate).
2. Keep coordinate ``i`` with probability ``p_i = min(1, |x_i| / lambda)`` by
   systematic sampling: one shared uniform ``u``, keep ``i`` when
   ``floor(u + sum_{j<=i} p_j)`` increases. Each coordinate's marginal keep
   probability is exactly ``p_i``, which is all that unbiasedness and the
   mean squared error depend on (errors of different coordinates are orthogonal).
3. Magnitudes on the grid ``lambda + j (M - lambda) / levels``, ``j = 0..levels``,
   ``M = max |x_i|``. A kept coordinate with ``|x_i| <= lambda`` is sent as
   level 0 (it decodes to ``sign * lambda``: ``p_i * lambda = |x_i|``);
   larger ones are stochastically rounded between adjacent levels.

Bit layout (stream order): ``lambda`` float32, ``M`` float32, Elias delta of
``k + 1`` (``k`` kept coordinates), 6 bits of Rice parameter ``r``; then per
kept coordinate: Rice(r) of the gap to the previous kept position (first gap
from -1, minus one), one sign bit (1 = negative), Elias gamma of ``j + 1``.
"""
import numpy as np
from numba import njit

from ..bitstream.bits import read_bits, read_f32, write_bits, write_f32
from ..bitstream.codes import delta_len, gamma_len, read_delta, read_gamma, read_rice, rice_len, write_delta, \
    write_gamma, write_rice
from ..bitstream.rng import draw_uniform
from ..errors import DecodeError
from .base import Codec


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


@njit(cache=True)
def _select(x, lam, u, out):
    """Systematic sampling with marginals ``min(1, |x_i| / lam)``; returns the number kept."""
    inv = 1.0 / lam
    acc = u
    k = 0
    for i in range(x.shape[0]):
        a = abs(np.float64(x[i]))
        p = a * inv
        if p >= 1.0:
            out[k] = i
            k += 1
            continue
        nxt = acc + p
        if nxt >= 1.0:
            nxt -= 1.0
            out[k] = i
            k += 1
        acc = nxt
    return k


@njit(cache=True)
def _write(x, idx, k, lam, top, levels, r, key):
    step = (top - lam) / levels if top > lam else 1.0
    nbits = 64 + delta_len(k + 1) + 6
    prev = -1
    for t in range(k):
        i = idx[t]
        a = abs(np.float64(x[i]))
        j = 0
        if a > lam:
            f = (a - lam) / step
            j = np.int64(np.floor(f))
            if draw_uniform(key, t) < f - j:
                j += 1
            if j > levels:
                j = levels
        idx[t] = i * (levels + 1) + j  # stash level with position for the write pass
        nbits += rice_len(i - prev - 1, r) + 1 + gamma_len(j + 1)
        prev = i
    buf = np.zeros((nbits + 7) // 8 + 8, np.uint8)
    pos = write_f32(buf, 0, np.float32(lam))
    pos = write_f32(buf, pos, np.float32(top))
    pos = write_delta(buf, pos, k + 1)
    pos = write_bits(buf, pos, r, 6)
    prev = -1
    for t in range(k):
        i = idx[t] // (levels + 1)
        j = idx[t] % (levels + 1)
        pos = write_rice(buf, pos, i - prev - 1, r)
        pos = write_bits(buf, pos, 1 if x[i] < 0 else 0, 1)
        pos = write_gamma(buf, pos, j + 1)
        prev = i
    return buf, pos


@njit(cache=True)
def _read(buf, end, d, levels):
    lam, pos = read_f32(buf, end, 0)
    top, pos = read_f32(buf, end, pos)
    if not (0 < lam < np.inf and 0 <= top < np.inf):
        raise DecodeError("sparse_dither: lambda and the largest magnitude must be finite, lambda > 0")
    k1, pos = read_delta(buf, end, pos)
    k = k1 - 1
    if k > d:
        raise DecodeError("sparse_dither: more kept coordinates than the vector has")
    r, pos = read_bits(buf, end, pos, 6)
    if r > 40:
        raise DecodeError("sparse_dither: Rice parameter out of range")
    step = (np.float64(top) - lam) / levels if top > lam else 1.0
    out = np.zeros(d, np.float32)
    i = -1
    for t in range(k):
        gap, pos = read_rice(buf, end, pos, np.int64(r))
        i += gap + 1
        if i >= d:
            raise DecodeError("sparse_dither: position past the end of the vector")
        s, pos = read_bits(buf, end, pos, 1)
        j1, pos = read_gamma(buf, end, pos)
        if j1 > levels + 1:
            raise DecodeError("sparse_dither: magnitude level out of range")
        v = np.float32(lam + (j1 - 1) * step)
        out[i] = -v if s else v
    if pos != end:
        raise DecodeError("sparse_dither: trailing bits after the last kept coordinate")
    return out


class SparseDither(Codec):
    """Sparse dithering ``sparse_dither(density=0.02, levels=4)``: unbiased, for well under 1 bit per coordinate.

    ``density``: expected fraction of coordinates kept; ``levels``: magnitude
    steps above ``lambda``. Each kept coordinate costs its Rice-coded gap,
    a sign bit and one bit of level 0 (more only for magnitudes above ``lambda``).
    """

    name = "sparse_dither"
    unbiased = True

    def __init__(self, density=0.02, levels=4):
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density=}")
        if not 1 <= levels <= 1 << 20:
            raise ValueError(f"levels must be in [1, 2^20], got {levels=}")
        super().__init__(density=density, levels=levels)
        self.density, self.levels = float(density), int(levels)

    def omega(self, d):
        # sum_{|x_i| <= lambda} |x_i| lambda <= lambda ||x||_1 <= ||x||_1^2 / k <= ||x||^2 / density,
        # plus at most k dithered magnitudes, each of variance <= (M / levels)^2 / 4 <= ||x||^2 / (4 levels^2).
        return 1.0 / self.density + self.density * d / (4.0 * self.levels ** 2)

    def _encode(self, x, key):
        d = x.shape[0]
        a = np.abs(x)
        top = float(a.max()) if d else 0.0
        if not np.isfinite(top):
            raise ValueError("sparse_dither: input must be finite")
        if top == 0.0:
            buf = np.zeros(16, np.uint8)
            pos = write_f32(buf, 0, np.float32(1.0))
            pos = write_f32(buf, pos, np.float32(1.0))
            pos = write_delta(buf, pos, 1)
            return buf, pos + 6
        stride = max(1, d // 65536)
        sample = a[::stride]
        k_target = self.density * len(sample)
        nonzero = np.count_nonzero(sample)
        lam = solve_lambda(sample, k_target) if 0 < k_target < nonzero else float(sample[sample > 0].min())
        lam = float(np.float32(min(max(lam, np.finfo(np.float32).tiny), np.finfo(np.float32).max)))
        idx = np.empty(d, np.int64)
        u = draw_uniform(np.uint64(key.stream("sparse_dither.sample")), 0)
        k = _select(x, lam, u, idx)
        mean_gap = d / max(k, 1)
        r = int(max(0, min(40, np.floor(np.log2(max(mean_gap * np.log(2), 1.0))))))
        return _write(x, idx, k, lam, np.float64(np.float32(top)), self.levels, r,
                      np.uint64(key.stream("sparse_dither.levels")))

    def _decode(self, data, nbits, d, key):
        return _read(data, nbits, d, self.levels)
