"""EF21: Richtárik, Sokolov, Fatkhullin, "EF21: A New, Simpler, Theoretically
Better, and Practically Faster Error Feedback" (NeurIPS 2021).

Mirrored state: the shift ``h`` (zero at start). Round t:

1. Agent: send ``C(g - h)``.
2. Both sides: ``h <- h + D(C(g - h))``; ``g_hat = h``.

The payload is the codec's, bit for bit. The guarantees need a contractive
codec.
"""
from .base import Empty, Scheme
from .shift import decode_difference, encode_difference, init_shift, move


class EF21(Scheme):
    """The shift block with a full step: ``h += C(g - h)``, ``g_hat = h``."""

    name = "ef21"
    requires = "contractive"

    def init(self, d):
        self.check_codec(d)
        return init_shift(d), Empty()

    def estimate(self, state):
        return state.h  # the shift: EF21 with partial participation aggregates every client's (docs/federated.md)

    def encode(self, state, private, g, ctx):
        # Step 1
        return encode_difference(self.codec, state, g, ctx.key)

    def reconstruct(self, state, payload, ctx):
        # Step 2
        return move(state, decode_difference(self.codec, payload.data, payload.nbits, ctx))
