"""Warm-up rounds: the first ``rounds`` rounds sent uncompressed, then the scheme; and ``wrap``, which
puts a scheme behind the per-tensor and warm-up settings.

In a warm-up round (``ctx.key.round < rounds``) the payload is the gradient's
float32 bytes, 32 bits per coordinate and no framing (both sides know the
round), and ``g_hat = g`` exactly. The scheme's mirrored state takes that
exact reconstruction as an exact codec would give it (``absorb``):

- direct, ef: no mirrored state;
- ef21, lag: ``h = g_hat`` (lag's silent count 0);
- diana: ``h = g_hat``: with an exact codec (``omega = 0``) DIANA's default
  step ``1 / (1 + omega)`` is 1, a full step onto the gradient;
- powersgd: the warm-start ``Q`` is left as it is (zero: the first
  compressed round draws it);
- tpc: ``g_hat`` is pushed into the memory, the silent count is 0, so the
  first compressed round predicts from the last ``p`` warm-up gradients;
- tensorwise: each part's state as its scheme says, from its part of ``g_hat``.

The private state goes through the scheme's own ``compensate`` with
``g_hat = g``: EF's error ``(e + g) - g`` stays zero (it is zero from the
start and the warm-up is the first rounds); open-loop TPC's memory takes
``g``.
"""
from ..codecs.floats import Fp32
from ..errors import ConfigError
from .base import Direct, Scheme, frozen
from .diana import Diana
from .ef import EF
from .ef21 import EF21
from .lag import Lag
from .powersgd import PowerSGD
from .predictor import push
from .shift import ShiftState
from .smooth import Smoothed
from .tensorwise import GRANULARITIES, Tensorwise
from .tpc import TPC


def _keep(scheme, state, g_hat):
    return state


def _shift(scheme, state, g_hat):
    return ShiftState(g_hat)


def _lag(scheme, state, g_hat):
    return state._replace(h=g_hat, silent=0)


def _tpc(scheme, state, g_hat):
    return state._replace(memory=push(state.memory, g_hat, scheme.p), silent=0)


ABSORB = {Direct: _keep, EF: _keep, EF21: _shift, Diana: _shift, Lag: _lag, PowerSGD: _keep, TPC: _tpc}


def absorber(scheme):
    """``fn(state, g_hat)``: the mirrored state of ``scheme`` after a round whose reconstruction was exact."""
    if isinstance(scheme, Tensorwise):
        inner = absorber(scheme.inner)
        return lambda state, g_hat: scheme.map_states(state, g_hat, inner)
    fn = ABSORB.get(type(scheme))
    if fn is None:
        raise ConfigError(f"warmup_rounds: scheme {scheme.name!r} ({type(scheme).__name__}) does not define how its "
                          f"state takes a warm-up round")
    return lambda state, g_hat: fn(scheme, state, g_hat)


class Warmup(Scheme):
    """``inner`` after ``rounds`` uncompressed (fp32) rounds."""

    def __init__(self, inner, rounds):
        if not (isinstance(rounds, int) and not isinstance(rounds, bool) and rounds >= 0):
            raise ConfigError(f"warmup_rounds must be an int >= 0, got {rounds!r}")
        super().__init__(inner.codec)
        self.inner = inner
        self.rounds = rounds
        self.name = inner.name
        self.requires = inner.requires
        self.stateless = inner.stateless
        self.absorb = absorber(inner)
        self.fp32 = Fp32()

    def __repr__(self):
        return f"warmup({self.inner!r}, rounds={self.rounds})"

    @property
    def g_hat_is_payload(self):
        # A warm-up payload is g's float32 bytes, so this holds in every round exactly when it holds for inner.
        return self.inner.g_hat_is_payload

    def check_codec(self, d):
        self.inner.check_codec(d)

    def init(self, d):
        return self.inner.init(d)

    def encode(self, state, private, g, ctx):
        if ctx.key.round >= self.rounds:
            return self.inner.encode(state, private, g, ctx)
        enc = self.fp32.encode(g, copy=False)  # sent within the round, as direct's payload is
        info = self.inner.raw_info() if isinstance(self.inner, Tensorwise) else {}
        return enc._replace(info={"warmup": True, **info})

    def reconstruct(self, state, payload, ctx):
        if ctx.key.round >= self.rounds:
            return self.inner.reconstruct(state, payload, ctx)
        g_hat = frozen(self.fp32.decode(payload.data, payload.nbits, ctx.d))
        return g_hat, self.absorb(state, g_hat)

    def compensate(self, private, g, g_hat):
        return self.inner.compensate(private, g, g_hat)

    def estimate(self, state):
        return self.inner.estimate(state)


def wrap(scheme, shapes=None, granularity="model", min_size=0, warmup_rounds=0, ema=0.0):
    """``scheme`` with the ``scheme.granularity``, ``min_size``, ``warmup_rounds`` and ``ema`` settings.

    ``shapes``: the task's tensor layout ``[(name, shape)]`` in flat order (``task.flat.shapes``); needed
    unless ``granularity="model"`` and ``min_size=0``. Returns ``scheme`` itself for the defaults
    (model, 0, 0, 0), ``Tensorwise`` around it for ``granularity="tensor"`` or ``min_size > 0``, ``Warmup``
    around that for ``warmup_rounds > 0``, and ``Smoothed`` outermost for ``ema > 0``: the agent's moving
    average is what every other layer sees, warm-up rounds included.
    """
    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if granularity == "tensor" or min_size != 0:
        scheme = Tensorwise(scheme, shapes, granularity, min_size)
    if warmup_rounds != 0:
        scheme = Warmup(scheme, warmup_rounds)
    if ema != 0:
        scheme = Smoothed(scheme, ema)
    return scheme
