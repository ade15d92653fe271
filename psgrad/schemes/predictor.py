"""The linear predictor block of temporal predictive coding.

A memory ``M = [m_1 .. m_k]`` (newest first, ``k <= p``) predicts the next
gradient as ``M a``. The agent fits ``a`` by least squares, quantizes it with
``CoefficientCode`` and sends the codes; both sides predict from the decoded
(quantized) coefficients, so the prediction is mirrored exactly.

Least squares (agent only): ``(M^T M + lambda I) a = M^T g`` by Cholesky,
``lambda = ridge * trace(M^T M) / k``. A memory that is rank-deficient (the
warm-up, repeated or collinear entries) stays solvable thanks to the ridge;
when the solution leaves the coefficient range ``[-R, R]`` (nearly collinear
entries make it huge and useless) ``lambda`` grows tenfold until it fits,
which approximates the box-constrained fit without ever blowing up.
"""
import math
import weakref

import numpy as np
from numba import njit

from ..errors import DecodeError
from . import kernels


@njit(cache=True)
def _cholesky_solve(A, b):
    """Solve ``A x = b`` for a small symmetric ``A``; returns (x, ok) with ok False if not positive definite."""
    k = A.shape[0]
    L = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1):
            s = A[i, j]
            for l in range(j):
                s -= L[i, l] * L[j, l]
            if i == j:
                if not s > 0.0:
                    return np.zeros(k), False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    y = np.zeros(k)
    for i in range(k):
        s = b[i]
        for l in range(i):
            s -= L[i, l] * y[l]
        y[i] = s / L[i, i]
    x = np.zeros(k)
    for i in range(k - 1, -1, -1):
        s = y[i]
        for l in range(i + 1, k):
            s -= L[l, i] * x[l]
        x[i] = s / L[i, i]
    return x, True


@njit(cache=True)
def fit(G, b, ridge, bound):
    """Ridge least-squares coefficients from ``G = M^T M`` and ``b = M^T g``, kept within ``[-bound, bound]``."""
    k = G.shape[0]
    scale = 0.0
    for i in range(k):
        scale += G[i, i]
    scale /= k
    if not scale > 0.0 or not math.isfinite(scale):
        return np.zeros(k)  # an all-zero memory predicts nothing
    lam = ridge * scale
    if lam < scale * 1e-15:
        lam = scale * 1e-15
    A = G.copy()
    for _ in range(64):
        for i in range(k):
            A[i, i] = G[i, i] + lam
        x, ok = _cholesky_solve(A, b)
        if ok:
            worst = 0.0
            for i in range(k):
                if not math.isfinite(x[i]):
                    worst = math.inf
                elif abs(x[i]) > worst:
                    worst = abs(x[i])
            if worst <= bound:
                return x
        lam *= 10.0
    return np.zeros(k)


class CoefficientCode:
    """Fixed-width codes for predictor coefficients.

    ``bits == 32``: the float32 value (IEEE-754 bits), rounded to nearest.
    ``2 <= bits <= 24``: a uniform midtread grid on ``[-R, R]`` with
    ``L = 2^(bits-1) - 1`` steps each side (step ``R / L``; zero is exact);
    code ``q + L`` for the integer ``q = round(a / step)`` clipped to
    ``[-L, L]``. Code ``2^bits - 1`` is never written and fails to decode.
    """

    def __init__(self, bits, bound):
        if not (bits == 32 or (isinstance(bits, int) and 2 <= bits <= 24)):
            raise ValueError(f"coef_bits must be 32 (float32) or an int in [2, 24], got coef_bits={bits!r}")
        if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ValueError(f"coef_range must be a finite number > 0, got coef_range={bound!r}")
        self.bits = bits
        self.bound = float(bound)
        self.levels = (1 << (bits - 1)) - 1 if bits != 32 else 0
        self.step = self.bound / self.levels if bits != 32 else 0.0

    def quantize(self, a):
        """``(codes, values)``: the integer codes to send and the float32 coefficients they decode to."""
        a = np.asarray(a, np.float64)
        if self.bits == 32:
            values = a.astype(np.float32)
            return [int(c) for c in values.view(np.uint32)], values
        q = np.clip(np.rint(a / self.step), -self.levels, self.levels).astype(np.int64)
        return [int(c) + self.levels for c in q], self._values(q)

    def _values(self, q):
        return (np.asarray(q, np.float64) * self.step).astype(np.float32)

    def decode(self, codes, name):
        """Float32 coefficients from received codes; ``DecodeError`` for codes no encoder writes."""
        if self.bits == 32:
            values = np.array(codes, np.uint32).view(np.float32)
            if not np.all(np.isfinite(values)):
                raise DecodeError(f"{name}: non-finite predictor coefficient {values.tolist()}")
            return values
        q = np.array(codes, np.int64) - self.levels
        if np.any(q > self.levels):
            raise DecodeError(f"{name}: coefficient code {2 * self.levels + 1} is not a grid point")
        return self._values(q)


def default_bound(p):
    """Default coefficient range: twice the largest binomial coefficient C(p, p//2).

    Gradients of gradient descent on a quadratic follow a linear recurrence
    whose slow modes have eigenvalues near 1, for which the best order-p
    predictor approaches the coefficients of ``(1 - z)^p``; their largest
    magnitude is ``C(p, p//2)``.
    """
    return 2.0 * math.comb(p, p // 2)


class GramMemo:
    """``kernels.moments`` that remembers each memory's ``M^T M`` for the next round.

    Pushing ``g_hat`` shifts the memory, so of the next round's Gram only the
    row of the new entry is new; the rest is this round's Gram, bit-identical
    to computing it again (kernels.py). Entries are keyed by the memory's
    newest array and checked by identity of every array (memory entries are
    read-only, so the same array means the same values); an entry goes away
    with its array. A memory it has not seen (after a resume or a rollback)
    is computed in full, so results never depend on the memo. Agent only,
    never mirrored.
    """

    def __init__(self):
        self._grams = {}

    def moments(self, mem, g):
        tail = self._known(mem[1:])
        G, b, gg = kernels.moments(mem, g, tail)
        self._remember(mem, G)
        return G, b, gg

    def _known(self, mem):
        entry = self._grams.get(id(mem[0])) if mem else None
        if entry is None:
            return None if mem else np.empty((0, 0))
        refs, G = entry
        if len(refs) < len(mem) or any(r() is not m for r, m in zip(refs, mem)):
            return None
        return G[:len(mem), :len(mem)]

    def _remember(self, mem, G):
        key = id(mem[0])
        if key not in self._grams:
            weakref.finalize(mem[0], self._grams.pop, key, None)
        self._grams[key] = (tuple(weakref.ref(m) for m in mem), G)


def push(memory, x, p):
    """The memory with ``x`` as its newest entry, keeping the ``p`` newest (shares arrays, copies none)."""
    return (x,) + memory[: p - 1]
