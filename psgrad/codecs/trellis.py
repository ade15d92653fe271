"""Trellis-coded quantization (TCQ) of a block of reals, as numba kernels.

Marcellin and Fischer, "Trellis coded quantization of memoryless and
Gauss-Markov sources" (IEEE Trans. Commun. 1990): at ``R`` bits per sample
the reconstruction alphabet has ``2^(R+1)`` levels, sorted and labelled
``j mod 4`` into four subsets ``D0..D3``. A rate-1/2 binary convolutional
code with ``2^nu`` states selects, from each state, one of two subsets; each
sample is sent as the branch bit (which subset) and ``R - 1`` bits naming a
level inside it. The encoder finds the best path with the Viterbi algorithm,
so a block of ``n`` samples costs ``2 * 2^nu`` add-compare-selects per sample,
not a search over ``2^(R n)`` codewords.

The trellis is a feed-forward shift register: state ``s`` (``nu`` bits),
branch bit ``b``, register ``r = (s << 1) | b``, next state ``r mod 2^nu``,
subset label ``parity(g0 & r) + 2 parity(g1 & r)``. ``g0`` has its lowest bit
clear, so both branches of a state use the same union ``D0+D2`` or ``D1+D3``
(Ungerboeck's set-partitioning rule). ``CODES`` lists, per number of states,
the generator pair of least mean squared error on Gaussian samples found by
exhaustive search over all pairs (``search_generators``), and ``LEVELS`` the
reconstruction alphabets for unit-variance Gaussian input trained by the
centroid condition (``train_levels``); both are reproducible with those
functions and a fixed seed.

Code word of one sample (``R`` bits, least significant first): the branch
bit, then the level index inside the subset. Every code word sequence is
valid, so every bit pattern decodes.
"""
import numpy as np
from numba import njit

# states -> (g0, g1): least squared error on 2^14 Gaussian samples (search_generators, seed 0)
CODES = {4: (0b10, 0b111), 8: (0b10, 0b1101), 16: (0b1010, 0b11111), 32: (0b11010, 0b101011),
         64: (0b110010, 0b1001101),
         # 128 and 256 states: search_generators(states, LEVELS[1, 64], n=2**14), the same exhaustive search
         128: (0b1001010, 0b11110001), 256: (0b10000110, 0b101001001)}

# (rate, states) -> positive half of the symmetric alphabet for unit-variance Gaussian input
# (train_levels, 15 iterations on 2^16 samples, seed 0); level j of the full sorted alphabet is in subset j mod 4
_HALF = {
    (1, 4): [0.3854, 1.1872], (1, 8): [0.3435, 1.2031], (1, 16): [0.3311, 1.2044],
    (1, 32): [0.2927, 1.2168], (1, 64): [0.2865, 1.2167],
    (2, 4): [0.2028, 0.6190, 1.0903, 1.8832], (2, 8): [0.1931, 0.6029, 1.0685, 1.8750],
    (2, 16): [0.2061, 0.5876, 1.0745, 1.8752], (2, 32): [0.1924, 0.5899, 1.0615, 1.8807],
    (2, 64): [0.2010, 0.5753, 1.0788, 1.8956],
    # trained from the 64-state alphabet
    (1, 128): [0.2649, 1.2242], (2, 128): [0.1917, 0.5651, 1.0658, 1.8884],
    (1, 256): [0.2507, 1.2246], (2, 256): [0.1802, 0.5709, 1.0629, 1.8898],
}
LEVELS = {k: np.concatenate((-np.array(v[::-1]), np.array(v))) for k, v in _HALF.items()}


@njit(cache=True)
def _parity(v):
    v ^= v >> 16
    v ^= v >> 8
    v ^= v >> 4
    v ^= v >> 2
    v ^= v >> 1
    return v & 1


@njit(cache=True)
def trellis_tables(states, g0, g1):
    """``label[s, b]`` (subset 0..3) and ``nxt[s, b]`` of the shift-register trellis."""
    label = np.empty((states, 2), np.int64)
    nxt = np.empty((states, 2), np.int64)
    for s in range(states):
        for b in range(2):
            r = (s << 1) | b
            label[s, b] = _parity(r & g0) + 2 * _parity(r & g1)
            nxt[s, b] = r & (states - 1)
    return label, nxt


@njit(cache=True)
def nearest_in_subsets(v, levels, per, best_d, best_j):
    """For each subset k: the nearest level to ``v`` (index within the subset) and its squared distance."""
    for k in range(4):
        bd = np.inf
        bj = 0
        for i in range(per):
            e = v - levels[k + 4 * i]
            e = e * e
            if e < bd:
                bd = e
                bj = i
        best_d[k] = bd
        best_j[k] = bj


@njit(cache=True)
def tcq_block(z, levels, label, nxt, codes, decisions, cost, new):
    """Viterbi search from state 0 over ``z`` (already scaled to the alphabet); fills ``codes``.

    ``codes[t]`` is the ``R``-bit word of sample ``t``; returns the squared error of the path.
    ``decisions`` (``len(z) x states`` uint8), ``cost`` and ``new`` (``states``) are scratch.
    Path metrics are float32: the search is the encoder's alone, so its rounding never has to be mirrored.
    """
    n = z.shape[0]
    states = label.shape[0]
    per = levels.shape[0] // 4
    half = states >> 1
    bd = np.empty(4, np.float32)
    bj = np.empty(4, np.int64)
    # the two predecessors of state q are p0 = q >> 1 and p1 = p0 + states/2, both with branch bit q & 1
    l0 = np.empty(states, np.int64)
    l1 = np.empty(states, np.int64)
    for q in range(states):
        l0[q] = label[q >> 1, q & 1]
        l1[q] = label[(q >> 1) + half, q & 1]
    a = np.empty(states, np.float32)
    c = np.empty(states, np.float32)
    for s in range(states):
        a[s] = np.inf
    a[0] = 0.0
    for t in range(n):
        v = z[t]
        if per == 1:
            for k in range(4):
                e = np.float32(v - levels[k])
                bd[k] = e * e
        else:
            nearest_in_subsets(np.float64(v), levels, per, bd, bj)
        for q in range(states):  # branch-free add-compare-select
            c0 = a[q >> 1] + bd[l0[q]]
            c1 = a[(q >> 1) + half] + bd[l1[q]]
            pick = c1 < c0
            c[q] = c1 if pick else c0
            decisions[t, q] = pick
        a, c = c, a
    q = 0
    for s in range(1, states):
        if a[s] < a[q]:
            q = s
    total = a[q]
    for t in range(n - 1, -1, -1):
        b = q & 1
        p = (q >> 1) + half * decisions[t, q]
        k = label[p, b]
        if per == 1:
            codes[t] = b
        else:
            nearest_in_subsets(np.float64(z[t]), levels, per, bd, bj)
            codes[t] = b | (bj[k] << 1)
        q = p
    return total


@njit(cache=True)
def tcq_levels(codes, levels, label, nxt, out):
    """Decode the ``R``-bit words ``codes`` from state 0 into level values ``out``."""
    s = 0
    for t in range(codes.shape[0]):
        c = codes[t]
        b = c & 1
        k = label[s, b]
        out[t] = levels[k + 4 * (c >> 1)]
        s = nxt[s, b]


def _run(z, levels, label, nxt):
    n = len(z)
    codes = np.empty(n, np.int64)
    dec = np.empty((n, label.shape[0]), np.uint8)
    err = tcq_block(z, levels, label, nxt, codes, dec, np.empty(label.shape[0]), np.empty(label.shape[0]))
    return err, codes


def search_generators(states, levels, n=1 << 16, seed=0):
    """The ``(g0, g1)`` pair of least squared error on ``n`` Gaussian samples, over all valid pairs."""
    z = np.random.default_rng(seed).standard_normal(n)
    best = (np.inf, None)
    for g0 in range(2, 2 * states, 2):
        for g1 in range(1, 2 * states, 2):
            label, nxt = trellis_tables(states, g0, g1)
            err = _run(z, levels, label, nxt)[0] / n
            if err < best[0]:
                best = (err, (g0, g1))
    return best[1], best[0]


def train_levels(rate, states, iters=30, n=1 << 17, seed=0):
    """Symmetric TCQ alphabet for unit Gaussian input: alternate Viterbi and per-level centroids."""
    z = np.random.default_rng(seed).standard_normal(n)
    levels = LEVELS[rate, states].copy()
    label, nxt = trellis_tables(states, *CODES[states])
    for _ in range(iters):
        _, codes = _run(z, levels, label, nxt)
        # recover each sample's level index by decoding, then average per level
        idx = np.empty(n, np.int64)
        s = 0
        for t in range(n):
            b = codes[t] & 1
            idx[t] = label[s, b] + 4 * (codes[t] >> 1)
            s = nxt[s, b]
        sums = np.bincount(idx, z, len(levels))
        cnt = np.bincount(idx, minlength=len(levels))
        new = np.where(cnt > 0, sums / np.maximum(cnt, 1), levels)
        levels = (new - new[::-1]) / 2  # keep the alphabet symmetric
    return levels, _run(z, levels, label, nxt)[0] / n
