"""LAG and CLAG: lazily aggregated (compressed) gradients.

LAG: Chen, Giannakis, Sun, Yin, "LAG: Lazily Aggregated Gradient for
Communication-Efficient Distributed Learning" (NeurIPS 2018). CLAG: the
compressed lazy variant of Richtárik, Sokolov, Fatkhullin, Gasanov, Li,
Gorbunov, "3PC: Three Point Compressors for Communication-Efficient
Distributed Training and a Better Theory for Lazy Aggregation" (ICML 2022).

Mirrored state: the last reconstructed gradient ``h`` (zero at start) and the
number of consecutive silent rounds. Round t:

1. Agent: ``r = g - h``; the trigger (``trigger.py``) decides from
   ``||r||^2``, ``||g||^2`` and the model's last move whether to send.
2. Agent: payload = flag bit (1: sent), then ``C(r)`` when the flag is 1.
3. Both sides: ``h <- h + D(C(r))`` when sent, else ``h`` unchanged;
   ``g_hat = h``.

With the ``fp32`` codec this is LAG (the server holds the last upload exactly
up to one float32 rounding of ``h + (g - h)``); with a compressing codec it is
CLAG, i.e. EF21 behind a trigger, which needs a contractive codec. A trigger
with every threshold zero sends every round and gives EF21 plus one flag bit.
"""
from typing import NamedTuple

import numpy as np

from . import kernels
from .base import Empty, Scheme
from .frame import FrameReader, frame
from .shift import decode_difference, init_shift, move
from .trigger import Trigger


class LagState(NamedTuple):
    """Mirrored: ``h`` (float32[d], read-only) and the count of consecutive silent rounds."""

    h: np.ndarray
    silent: int


class Lag(Scheme):
    """Trigger + shift block: send ``C(g - h)`` only when the trigger fires."""

    name = "lag"
    requires = "contractive"

    def __init__(self, codec, tau=0.0, eps=0.1, xi=0.0, max_silent=0):
        super().__init__(codec)
        self.trigger = Trigger(tau, eps, xi, max_silent)

    def __repr__(self):
        return f"lag({self.codec!r}, {self.trigger!r})"

    def init(self, d):
        self.check_codec(d)
        return LagState(init_shift(d).h, 0), Empty()

    def estimate(self, state):
        return state.h  # the last reconstruction, which LAG's server reuses while the agent is silent

    def encode(self, state, private, g, ctx):
        # Step 1
        r_sq, g_sq = kernels.sq_dist_and_norm(g, state.h)
        fire = self.trigger.fires(r_sq, g_sq, ctx.model_delta_sq, state.silent)
        info = {"triggered": fire, "flag_bits": 1, "residual_bits": 0, "change_sq": r_sq, "grad_sq": g_sq}
        if not fire:
            return frame([(0, 1)], None, info)
        # Step 2
        body = self.codec.encode(kernels.sub(g, state.h), ctx.key)
        info["residual_bits"] = body.nbits
        return frame([(1, 1)], body, info)

    def reconstruct(self, state, payload, ctx):
        # Step 3
        reader = FrameReader(payload, self.name)
        if not reader.field(1):
            reader.finish()
            return state.h, state._replace(silent=state.silent + 1)
        data, nbits = reader.body()
        g_hat, shift = move(state, decode_difference(self.codec, data, nbits, ctx))
        return g_hat, LagState(shift.h, 0)
