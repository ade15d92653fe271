"""PowerSGD: Vogels, Karimireddy, Jaggi, "PowerSGD: Practical Low-Rank
Gradient Compression for Distributed Optimization" (NeurIPS 2019), Algorithm 1
with error feedback and warm start, one agent per link.

It compresses one tensor at a time, so it runs under ``scheme.granularity:
tensor`` (``Tensorwise`` hands it each tensor's shape); a flat vector is
refused. A tensor of shape ``(n, ...)`` is the matrix ``M`` of ``n`` rows and
``m = size / n`` columns (a conv kernel ``(out, in, kh, kw)`` is ``out x
in*kh*kw``, as in the paper). Its rank is ``r = min(n, m, rank)``; it is
*compressed* when it has two or more dimensions and ``r (n + m) < n m``, and
otherwise sent whole as fp32 (biases, vectors, matrices too small to gain).

Round t for a compressed tensor, with the agent's error ``e`` (private) and the
last sent ``Q`` (mirrored; float32[m, r]):

1. Agent: ``M = reshape(e + g)``. A zero column of ``Q`` (every column before
   the first round) is drawn from ``N(0, 1)`` under the round's key. ``Q <-
   orth(Q)``, ``P = M Q``, ``P <- orth(P)``, ``Q = M^T P``; send ``P`` then
   ``Q``, row-major, as fp32: ``32 r (n + m)`` bits and nothing else.
2. Both sides: ``g_hat = P Q^T`` (one outer product per column, added in
   column order: element-wise float32, the same bits on every machine); the
   state keeps the received ``Q`` for the next round's step 1 (warm start).
3. Agent: ``e <- (e + g) - g_hat``.

``orth`` is modified Gram-Schmidt in float32 (a column of norm zero stays
zero). Orthogonalising ``Q`` before ``P = M Q`` changes nothing in exact
arithmetic (Gram-Schmidt of ``M Q R^-1``, ``R`` upper triangular with a
positive diagonal, is that of ``M Q``) and keeps the numbers of the product
at the scale of ``M``; the reference implementation in PyTorch
(``powerSGD_hook``) does the same. A tensor sent whole costs ``32 n m`` bits,
``g_hat = e + g`` exactly and ``e`` stays zero; its state ``Q`` is float32[m, 0].
"""
import math
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DecodeError
from . import kernels
from .base import Scheme, frozen


class PowerSGDState(NamedTuple):
    """Mirrored: ``q`` float32[m, r], the last ``Q`` sent (zero before the first round; r = 0: sent whole)."""

    q: np.ndarray


class PowerSGDPrivate(NamedTuple):
    """Agent only: the error accumulator ``e`` (float32[n m])."""

    e: np.ndarray


def matrix_shape(shape):
    """``(n, m)``: the rows and columns of the matrix of a tensor of ``shape`` (``n`` its first dimension)."""
    size = math.prod(shape)
    rows = shape[0] if len(shape) else 1
    return rows, size // rows if rows else 0


def orthogonalise(a):
    """The columns of ``a`` (float32[k, r]) made orthonormal by modified Gram-Schmidt, in column order."""
    a = np.array(a, np.float32)
    for i in range(a.shape[1]):
        norm = np.linalg.norm(a[:, i])
        if norm > 0:
            a[:, i] /= norm
        rest = a[:, i + 1:]
        rest -= np.outer(a[:, i], a[:, i] @ rest)
    return a


def outer_sum(p, q):
    """``P Q^T`` flattened row-major (float32[n m]): the column outer products added in column order."""
    out = np.zeros((p.shape[0], q.shape[0]), np.float32)
    term = np.empty_like(out)
    for k in range(p.shape[1]):
        np.multiply(p[:, k:k + 1], q[:, k], out=term)
        out += term
    return out.reshape(-1)


class PowerSGD(Scheme):
    """Rank-``rank`` power-iteration compression of each weight matrix, with error feedback and warm start."""

    name = "powersgd"

    def __init__(self, codec, rank=2):
        if not (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1):
            raise ConfigError(f"scheme 'powersgd': rank must be an int >= 1, got {rank!r}")
        super().__init__(codec)
        self.rank = rank

    def __repr__(self):
        return f"{self.name}({self.codec!r}, rank={self.rank})"

    def check_codec(self, d):
        if not self.codec.raw_float32:
            raise ConfigError(f"scheme 'powersgd' sends its factors as fp32; codec {self.codec!r} is not fp32")

    def matrix_rank(self, shape):
        """The rank of the tensor's factors, 0 when it is sent whole."""
        rows, cols = matrix_shape(shape)
        r = min(rows, cols, self.rank)
        return r if len(shape) >= 2 and r * (rows + cols) < rows * cols else 0

    def init(self, d):
        raise ConfigError(f"scheme 'powersgd' compresses each weight matrix on its own and needs the tensors' "
                          f"shapes: set scheme.granularity=tensor (got one flat vector of {d} elements)")

    def init_tensor(self, shape):
        self.check_codec(math.prod(shape))
        rows, cols = matrix_shape(shape)
        return (PowerSGDState(np.zeros((cols, self.matrix_rank(shape)), np.float32)),
                PowerSGDPrivate(np.zeros(rows * cols, np.float32)))

    def payload_bits(self, d, shape=None):
        if shape is None:
            return None
        rows, cols = matrix_shape(shape)
        r = self.matrix_rank(shape)
        return 32 * (r * (rows + cols) if r else rows * cols)

    def encode(self, state, private, g, ctx):
        v = kernels.add(private.e, g)
        cols, r = state.q.shape
        if r == 0:
            return self.codec.encode(v, ctx.key, copy=False)  # v is this call's own array
        m = v.reshape(-1, cols)
        q = state.q
        zero = ~q.any(axis=0)
        if zero.any():  # the first round, or a column that a rank-deficient M zeroed
            drawn = np.random.default_rng(ctx.key.stream("powersgd")).standard_normal((cols, r)).astype(np.float32)
            q = np.where(zero, drawn, q)
        p = orthogonalise(m @ orthogonalise(q))
        q = m.T @ p
        return self.codec.encode(np.concatenate([p.reshape(-1), q.reshape(-1)]), ctx.key, copy=False)

    def reconstruct(self, state, payload, ctx):
        cols, r = state.q.shape
        rows = ctx.d // cols
        n = r * (rows + cols) if r else ctx.d
        if payload.nbits != 32 * n:
            raise DecodeError(f"powersgd: payload has {payload.nbits} bits, expected {32 * n} "
                              f"(rank {r} factors of a {rows} x {cols} matrix)")
        x = self.codec.decode(payload.data, payload.nbits, n, ctx.key)
        if r == 0:
            return frozen(x), state
        p, q = x[:rows * r].reshape(rows, r), x[rows * r:].reshape(cols, r)
        return frozen(outer_sum(p, q)), PowerSGDState(frozen(q))

    def compensate(self, private, g, g_hat):
        # Step 3: recomputes e + g in the same float32 order as step 1
        return PowerSGDPrivate(kernels.add_sub(private.e, g, g_hat))
