"""The shift block: a mirrored vector ``h`` that compressed differences move.

Both sides hold ``h``; the agent sends ``C(g - h)``, and both add the decoded
difference (scaled by a step) to ``h``. EF21 is the shift with step 1 and
``g_hat = h``; DIANA keeps ``g_hat = h + D(C(g - h))`` and moves ``h`` by a
smaller step; LAG/CLAG is EF21 behind a trigger.
"""
from typing import NamedTuple

import numpy as np

from . import kernels
from .base import frozen


class ShiftState(NamedTuple):
    """Mirrored: the shift ``h`` (float32[d], read-only, possibly shared with the last ``g_hat``)."""

    h: np.ndarray


def init_shift(d):
    return ShiftState(frozen(np.zeros(d, np.float32)))


def encode_difference(codec, state, g, key, info=None):
    """The agent's payload ``C(g - h)``."""
    enc = codec.encode(kernels.sub(g, state.h), key)
    return enc._replace(info=info) if info is not None else enc


def decode_difference(codec, payload_data, nbits, ctx):
    """Both sides: ``D(C(g - h))``."""
    return codec.decode(payload_data, nbits, ctx.d, ctx.key)


def move(state, delta):
    """``h + delta``: the new shift after a full step (EF21, LAG), shared as ``g_hat``."""
    h = frozen(kernels.add(state.h, delta))
    return h, ShiftState(h)
