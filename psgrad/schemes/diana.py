"""DIANA: Mishchenko, Gorbunov, Takáč, Richtárik, "Distributed Learning with
Compressed Gradient Differences" (2019).

Mirrored state: the shift ``h`` (zero at start). Round t, with step ``alpha``:

1. Agent: send ``C(g - h)`` (``C`` unbiased with variance ``omega``).
2. Both sides: ``delta = D(C(g - h))``; ``g_hat = h + delta`` (an unbiased
   estimate of ``g``); ``h <- h + alpha * delta``.

``alpha`` defaults to ``1 / (1 + omega(d))``, the largest step of the DIANA
analysis; it must lie in (0, 1]. The payload is the codec's, bit for bit.
"""
import math

from . import kernels
from .base import Empty, Scheme, frozen
from .shift import ShiftState, decode_difference, encode_difference, init_shift
from ..errors import ConfigError


class Diana(Scheme):
    """The shift block with step ``alpha`` and an unbiased codec."""

    name = "diana"
    requires = "unbiased"

    def __init__(self, codec, alpha=None):
        if alpha is not None and not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
            raise ValueError(f"alpha must be in (0, 1] (or None for 1 / (1 + omega)), got {alpha=}")
        super().__init__(codec)
        self.alpha = alpha

    def step(self, d):
        """The shift step used at length ``d``."""
        if self.alpha is not None:
            return float(self.alpha)
        omega = self.codec.omega(d)
        if omega is None or not math.isfinite(omega):
            raise ConfigError(f"scheme 'diana' needs alpha: codec {self.codec!r} declares no omega(d) at d={d}")
        return 1.0 / (1.0 + omega)

    def init(self, d):
        self.check_codec(d)
        self.step(d)
        return init_shift(d), Empty()

    def estimate(self, state):
        return state.h  # the shift: EF21 with partial participation aggregates every client's (docs/federated.md)

    def encode(self, state, private, g, ctx):
        # Step 1
        return encode_difference(self.codec, state, g, ctx.key)

    def reconstruct(self, state, payload, ctx):
        # Step 2
        delta = decode_difference(self.codec, payload.data, payload.nbits, ctx)
        g_hat, h = kernels.add_and_step(state.h, delta, self.step(ctx.d))
        return g_hat, ShiftState(frozen(h))
