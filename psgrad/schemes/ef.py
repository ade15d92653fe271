"""Error feedback (EF, EF-SGD).

Seide, Fu, Droppo, Li, Yu, "1-bit stochastic gradient descent and its
application to data-parallel distributed training of speech DNNs"
(Interspeech 2014); Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes
SignSGD and other Gradient Compression Schemes" (ICML 2019).

Round t, with the agent's accumulator ``e`` (private: the server never knows it):

1. ``v = e + g``; send ``C(v)``.
2. Both sides: ``g_hat = D(C(v))``.
3. Agent: ``e <- (e + g) - g_hat``, the part of ``v`` not yet delivered.

The mirrored state is empty; the payload is the codec's, bit for bit. The
accumulator lives in gradient units (the server applies the step size), which
equals EF-SGD's ``e + lr g`` form for a constant step.
"""
from typing import NamedTuple

import numpy as np

from . import kernels
from .base import Empty, Scheme


class EFPrivate(NamedTuple):
    """Agent only: the error accumulator ``e`` (float32[d])."""

    e: np.ndarray


class EF(Scheme):
    """Error feedback around a contractive (typically biased) codec."""

    name = "ef"
    requires = "contractive"

    def init(self, d):
        self.check_codec(d)
        return Empty(), EFPrivate(np.zeros(d, np.float32))

    def encode(self, state, private, g, ctx):
        # Step 1
        return self.codec.encode(kernels.add(private.e, g), ctx.key)

    def reconstruct(self, state, payload, ctx):
        # Step 2
        return self.codec.decode(payload.data, payload.nbits, ctx.d, ctx.key), state

    def compensate(self, private, g, g_hat):
        # Step 3: recomputes e + g in the same float32 order as step 1
        return EFPrivate(kernels.add_sub(private.e, g, g_hat))
