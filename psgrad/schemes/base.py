"""The scheme interface: a stateful uplink algorithm mirrored on agent and server.

Each scheme is written once as pure functions over explicit state::

    state, private   = scheme.init(d)
    payload          = scheme.encode(state, private, g, ctx)      # agent only
    g_hat, new_state = scheme.reconstruct(state, payload, ctx)    # agent AND server
    new_private      = scheme.compensate(private, g, g_hat)       # agent only

``state`` is the mirrored state: the agent runs the same ``reconstruct`` as the
server, so both copies agree bit for bit by construction, and ``digest(state)``
proves it. ``private`` is what only the agent can know (an error-feedback
accumulator); it never crosses the wire. States are NamedTuples of numpy
arrays and Python scalars, returned anew, never mutated in place, which makes
digests and checkpoints a walk over fields.
"""
import hashlib
from typing import NamedTuple

import numpy as np

from ..codecs.base import Key


class Context(NamedTuple):
    """What both sides of one agent's link know about the round.

    ``model_delta_sq`` is ``||theta_t - theta_{t-1}||^2``, computable by the
    server and by every worker from the model it receives.
    """

    key: Key
    d: int
    model_delta_sq: float = 0.0


class Empty(NamedTuple):
    """The state of a scheme that keeps none."""


def digest(state):
    """A hex SHA-256 over every field of a state, in field order, with dtypes and shapes."""
    h = hashlib.sha256()
    for name, value in zip(state._fields, state):
        h.update(name.encode())
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            h.update(digest(value).encode())
            continue
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Scheme:
    """Base class: subclasses implement ``init``, ``encode`` and ``reconstruct``."""

    name = ""

    def __init__(self, codec):
        self.codec = codec

    def __repr__(self):
        return f"{self.name}({self.codec!r})"

    def init(self, d):
        """Return ``(mirrored_state, private_state)`` for a gradient of length ``d``."""
        return Empty(), Empty()

    def encode(self, state, private, g, ctx):
        """Agent side: the payload (``Encoded``) for gradient ``g`` this round."""
        raise NotImplementedError

    def reconstruct(self, state, payload, ctx):
        """Both sides: ``(g_hat, new_state)`` from the payload."""
        raise NotImplementedError

    def compensate(self, private, g, g_hat):
        """Agent side: the new private state once ``g_hat`` is known (identity by default)."""
        return private


class Direct(Scheme):
    """DCGD: ``g_hat = C(g)``, no state."""

    name = "direct"

    def encode(self, state, private, g, ctx):
        return self.codec.encode(g, ctx.key)

    def reconstruct(self, state, payload, ctx):
        return self.codec.decode(payload.data, payload.nbits, ctx.d, ctx.key), state
