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
import math
from typing import NamedTuple

import numpy as np

from ..codecs.base import Key
from ..errors import ConfigError


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
        if isinstance(value, tuple):  # a memory of arrays: its length, then each entry
            h.update(f"tuple{len(value)}".encode())
            for a in value:
                a = np.ascontiguousarray(a)
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(a.tobytes())
            continue
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def frozen(a):
    """``a`` made read-only, for arrays that the state keeps and also hands out as ``g_hat``.

    Sharing instead of copying saves a pass over ``d`` floats per round; the
    flag turns an accidental in-place update by a caller into an error rather
    than a silent divergence of agent and server.
    """
    a.setflags(write=False)
    return a


def codec_mismatch(codec, d, requires):
    """Why ``codec`` does not meet ``requires`` (None, "unbiased" or "contractive") at length ``d``, or None.

    Contractive: ``||C(x) - x||^2 <= (1 - alpha) ||x||^2`` with ``alpha > 0``,
    declared by ``codec.alpha(d)``; an unbiased codec with ``omega(d) < 1`` is
    contractive too (with ``alpha = 1 - omega``).
    """
    if requires is None:
        return None
    omega, alpha = codec.omega(d), codec.alpha(d)
    if requires == "unbiased":
        if codec.unbiased:
            return None
        return "is biased (declares unbiased=False)"
    if requires == "contractive":
        if alpha is not None and alpha > 0:
            return None
        if codec.unbiased and omega is not None and omega < 1:
            return None
        return (f"is not known to be contractive at d={d} "
                f"(unbiased={codec.unbiased}, omega(d)={omega}, alpha(d)={alpha})")
    raise ValueError(f"unknown codec requirement {requires!r}; valid: None, 'unbiased', 'contractive'")


class Scheme:
    """Base class: subclasses implement ``init``, ``encode`` and ``reconstruct``.

    ``requires`` names the kind of codec the scheme's guarantees rest on
    (None, "unbiased" or "contractive"); ``check_codec(d)`` refuses any other.
    """

    name = ""
    requires = None
    # True for a scheme with neither mirrored nor private state (``compensate`` is the identity): nothing the
    # agent keeps depends on ``g_hat`` or on ``g``, so the agent may skip ``reconstruct`` (the server alone
    # runs it; no bit of the run changes) and may reuse its gradient buffer from round to round.
    stateless = False

    def __init__(self, codec):
        self.codec = codec

    def check_codec(self, d):
        """Raise ``ConfigError`` unless the codec meets ``requires`` for gradients of length ``d``."""
        why = codec_mismatch(self.codec, d, self.requires)
        if why is not None:
            raise ConfigError(f"scheme {self.name!r} needs a {self.requires} codec; codec {self.codec!r} {why}")

    def __repr__(self):
        return f"{self.name}({self.codec!r})"

    def init(self, d):
        """Return ``(mirrored_state, private_state)`` for a gradient of length ``d``."""
        return Empty(), Empty()

    def init_tensor(self, shape):
        """``init`` for one tensor of ``shape`` (``Tensorwise``, granularity=tensor); a scheme that uses the
        shape (PowerSGD's matrices) overrides it."""
        return self.init(math.prod(shape))

    def payload_bits(self, d, shape=None):
        """The bits of every payload for ``d`` elements (one tensor of ``shape``; None: a flat vector) when
        they follow from that alone, else None. ``Tensorwise`` sends no length for a part of fixed bits."""
        return 32 * d if self.g_hat_is_payload else None

    def encode(self, state, private, g, ctx):
        """Agent side: the payload (``Encoded``) for gradient ``g`` this round (it may share memory with ``g``)."""
        raise NotImplementedError

    def reconstruct(self, state, payload, ctx):
        """Both sides: ``(g_hat, new_state)`` from the payload."""
        raise NotImplementedError

    def compensate(self, private, g, g_hat):
        """Agent side: the new private state once ``g_hat`` is known (identity by default)."""
        return private

    def estimate(self, state):
        """The server's standing estimate of an agent's gradient in mirrored ``state`` (read-only float32[d]),
        which an agent absent from a round contributes under ``run.absent: stale``; None for a scheme that
        keeps none (the default)."""
        return None

    @property
    def g_hat_is_payload(self):
        """True when ``g_hat`` is the payload's bytes read as float32 and the state never changes: the server
        may add the payload to its sum as it lies in the message, without running ``reconstruct``."""
        return False


class Direct(Scheme):
    """DCGD: ``g_hat = C(g)``, no state."""

    name = "direct"
    stateless = True

    def encode(self, state, private, g, ctx):
        # Without a copy: an agent sends the payload (fp32: g's own bytes) within the round, before g changes.
        return self.codec.encode(g, ctx.key, copy=False)

    def reconstruct(self, state, payload, ctx):
        return self.codec.decode(payload.data, payload.nbits, ctx.d, ctx.key), state

    @property
    def g_hat_is_payload(self):
        return self.codec.raw_float32
