"""Temporal predictive coding (TPC), as psgrad defines it.

Edin, Chen, Kieffer, Johansson, "Temporal Predictive Coding for Gradient
Compression in Distributed Learning" (Allerton 2024, arXiv 2410.02478). The
full algorithm, its parameters and its bit layout are in ``docs/tpc.md``.

Mirrored state: the memory of the last ``k <= p`` **reconstructed** gradients
(newest first) and the number of consecutive rounds without a residual.
Round t:

1. Agent: fit ``a = argmin ||g - M a||^2`` (``predictor.fit``; fewer columns
   during the first ``p`` rounds, none in round 0).
2. Agent: quantize ``a`` to ``a_q`` (``coef_bits`` each; always sent).
3. Agent: the residual energy ``||g - M a_q||^2`` and the trigger decide
   whether the residual is sent.
4. Agent: payload = flag (1 bit) + ``k`` coefficient codes + ``C(r)`` with
   ``r = g - M a_q`` when the flag is 1.
5. Both sides: ``g_hat = M a_q (+ D(C(r)))``; push ``g_hat`` into the memory.

Closed loop (the default), as in DPCM: the predictor works on what the server
holds, so a skipped or lossy residual never makes the two sides drift apart,
and any codec (biased or not) may carry the residual. ``open_loop=True``
fits and predicts on the agent's memory of its *true* gradients while the
server predicts from its reconstructions; it exists only to show the drift
that closed loop avoids, and tracks the true gradients only with a lossless
residual sent every round.
"""
from typing import NamedTuple

import numpy as np

from . import kernels
from .base import Empty, Scheme, frozen
from .frame import FrameReader, frame
from .predictor import CoefficientCode, GramMemo, default_bound, fit, push
from .trigger import Trigger


class TPCState(NamedTuple):
    """Mirrored: ``memory`` (tuple of up to ``p`` read-only float32[d], newest first) and ``silent``."""

    memory: tuple
    silent: int


class OpenLoopPrivate(NamedTuple):
    """Agent only (open loop): the memory of true gradients the coefficients are fitted on."""

    memory: tuple


class TPC(Scheme):
    """Predictor + trigger + any residual codec."""

    name = "tpc"

    def __init__(self, codec, p=3, coef_bits=16, coef_range=None, tau=0.0, eps=0.1, xi=0.0,
                 max_silent=0, ridge=1e-9, open_loop=False):
        if not (isinstance(p, int) and 1 <= p <= 16):
            raise ValueError(f"p (predictor order) must be an int in [1, 16], got {p=}")
        if not (isinstance(ridge, (int, float)) and 0 <= ridge < 1):
            raise ValueError(f"ridge must be in [0, 1), got {ridge=}")
        super().__init__(codec)
        self.p = p
        self.coefs = CoefficientCode(coef_bits, default_bound(p) if coef_range is None else coef_range)
        self.trigger = Trigger(tau, eps, xi, max_silent)
        self.ridge = float(ridge)
        self.open_loop = bool(open_loop)
        self.grams = GramMemo()  # agent-side speed-up only: results are the same without it

    def __repr__(self):
        return (f"tpc({self.codec!r}, p={self.p}, coef_bits={self.coefs.bits}, coef_range={self.coefs.bound}, "
                f"{self.trigger!r}, open_loop={self.open_loop})")

    def header_bits(self, state):
        """Bits before the residual: the flag and one code per memory entry."""
        return 1 + len(state.memory) * self.coefs.bits

    def init(self, d):
        self.check_codec(d)
        return TPCState((), 0), (OpenLoopPrivate(()) if self.open_loop else Empty())

    def encode(self, state, private, g, ctx):
        memory = private.memory if self.open_loop else state.memory
        k = len(memory)
        # Steps 1-3
        if k == 0:
            codes, a_q = [], None
            g_sq = kernels.sq_norm(g)
            r_sq = g_sq
        else:
            G, b, g_sq = self.grams.moments(memory, g)
            codes, a_q = self.coefs.quantize(fit(G, b, self.ridge, self.coefs.bound))
            a = a_q.astype(np.float64)
            # ||g - M a||^2 expanded from the blocked float32-lane sums (docs/tpc.md): about
            # (1 + |a|_1)^2 1e-7 ||g||^2 for typical data, below any useful threshold; the exact value
            # is computed below whenever r is formed.
            r_sq = max(kernels.residual_sq(g_sq, a, b, G), 0.0)
            if r_sq > g_sq:  # quantization or the ridge made the prediction worse than none
                codes, a_q = self.coefs.quantize(np.zeros(k))
                r_sq = g_sq
        fire = self.trigger.fires(r_sq, g_sq, ctx.model_delta_sq, state.silent)
        # Step 4
        fields = [(int(fire), 1)] + [(c, self.coefs.bits) for c in codes]
        body = None
        if fire:
            r, r_sq = (g, g_sq) if k == 0 else kernels.residual(memory, a_q, g)
            body = self.codec.encode(r, ctx.key)
        info = {"triggered": fire, "flag_bits": 1, "coef_bits": k * self.coefs.bits,
                "residual_bits": body.nbits if body is not None else 0,
                "prediction_gain": g_sq / r_sq if r_sq > 0 else float("inf"),
                "residual_sq": r_sq, "grad_sq": g_sq, "silent": state.silent}
        return frame(fields, body, info)

    def reconstruct(self, state, payload, ctx):
        # Step 5
        reader = FrameReader(payload, self.name)
        fired = reader.field(1)
        k = len(state.memory)
        a_q = self.coefs.decode([reader.field(self.coefs.bits) for _ in range(k)], self.name)
        if fired:
            data, nbits = reader.body()
        else:
            reader.finish()
        if k == 0:
            g_hat = self.codec.decode(data, nbits, ctx.d, ctx.key) if fired else np.zeros(ctx.d, np.float32)
        elif fired and not self.codec.adds_in_place:  # one pass adds r_hat as the prediction is formed
            g_hat = kernels.predict(state.memory, a_q, self.codec.decode(data, nbits, ctx.d, ctx.key))
        else:
            # M a_q + r_hat with r_hat added in place, with no r_hat array: qsgd and the sparsifiers visit
            # only the coordinates they decode to non-zero, fp32 and fp16 add from the payload. The float32
            # sums are those of ``pred + r_hat``; the prediction gets +0.0 first, so a -0.0 where the
            # residual is skipped becomes +0.0 as it would by adding r_hat's +0.0. Only where a decoded
            # residual is itself -0.0 (an underflowed level) on a -0.0 prediction is the sum +0.0, not -0.0.
            # A DecodeError may leave g_hat half-updated; it is this call's own array and is discarded.
            g_hat = kernels.predict(state.memory, a_q, plus_zero=fired)
            if fired:
                self.codec.decode_add(data, nbits, ctx.d, ctx.key, g_hat)
        g_hat = frozen(g_hat)
        return g_hat, TPCState(push(state.memory, g_hat, self.p), 0 if fired else state.silent + 1)

    def compensate(self, private, g, g_hat):
        if not self.open_loop:
            return private
        return OpenLoopPrivate(push(private.memory, frozen(g.copy()), self.p))
