"""``decayed_shift(decay)``: compressed differences to a decayed copy of the last reconstruction.

Mirrored state: ``h``, the last ``g_hat`` (zero at start). Round t, with ``beta = decay``:

1. Agent: send ``C(g - beta h)``.
2. Both sides: ``g_hat = beta h + D(C(g - beta h))``; ``h <- g_hat``.

With an unbiased codec ``E[g_hat] = g`` for every ``beta``, and the codec's error scales with
``||g - beta h||`` rather than ``||g||``, which is small while gradients change slowly. ``beta = 0`` is
plain compression; ``beta = 1`` is EF21's shift update. The payload is the codec's, bit for bit, and there
is no private state.

Both steps are float32 element-wise arithmetic in a fixed order, so agent and server compute the same
``h`` bit for bit.
"""
from typing import NamedTuple

import numpy as np

from psgrad import Scheme
from psgrad.schemes import Empty


class ShiftState(NamedTuple):
    """Mirrored: the last reconstructed gradient ``h`` (float32[d], read-only)."""

    h: np.ndarray


class DecayedShift(Scheme):
    """Compressed differences to ``decay * h``, ``h`` the last reconstruction; needs an unbiased codec."""

    name = "decayed_shift"
    requires = "unbiased"

    def __init__(self, codec, decay=0.9):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay=}")
        super().__init__(codec)
        self.decay = np.float32(decay)

    def __repr__(self):
        return f"{self.name}({self.codec!r}, decay={float(self.decay)})"

    def init(self, d):
        self.check_codec(d)
        return ShiftState(np.zeros(d, np.float32)), Empty()

    def encode(self, state, private, g, ctx):
        # Step 1
        return self.codec.encode(g - self.decay * state.h, ctx.key)

    def reconstruct(self, state, payload, ctx):
        # Step 2; g_hat is both the output and the new state, so it is made read-only: a caller that
        # changed it in place would make this side's state differ from the other's
        g_hat = self.decay * state.h + self.codec.decode(payload.data, payload.nbits, ctx.d, ctx.key)
        g_hat.setflags(write=False)
        return g_hat, ShiftState(g_hat)
