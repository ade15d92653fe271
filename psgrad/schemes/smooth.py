"""Local smoothing: the agent sends, through any scheme, an exponential moving average of its gradients.

``Smoothed(inner, beta)`` keeps, on the agent only, ``m_t = m_{t-1} + (1 - beta) (g_t - m_{t-1})`` (float32,
element-wise; ``m_0 = g_0``: the first gradient the agent computes starts the average at full scale) and hands
``m_t`` to ``inner`` in place of ``g_t``. Round t:

1. Agent: ``m_t`` from its private ``m_{t-1}`` and ``g_t``; ``inner.encode(state, private, m_t)``.
2. Both sides: ``inner.reconstruct``: ``g_hat`` estimates ``m_t``; the mirrored state is ``inner``'s alone.
3. Agent: ``inner.compensate(private, m_t, g_hat)``; the average becomes ``m_t``.

This changes the optimizer, not only the compression: the server's aggregate estimates the average of the agents'
moving averages, which for an exact codec and every agent reporting every round is heavy-ball momentum ``beta``
with dampening ``1 - beta`` (``v_t = beta v_{t-1} + (1 - beta) g_t``). What it buys a predictive scheme: sampling
noise, new every round, reaches ``m_t`` scaled by ``1 - beta``, so consecutive ``m_t`` differ by
``(1 - beta) (g_t - m_{t-1})`` and are far more predictable than the ``g_t``.

A client absent from a round (federated partial participation) keeps its average as it was; it moves only in the
rounds the client reports.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit

from ..errors import ConfigError
from .base import Scheme, frozen


class SmoothedPrivate(NamedTuple):
    """Agent only: the moving average ``m`` (float32[d]; meaningless until ``started``) and ``inner``'s private."""

    m: np.ndarray
    started: bool
    inner: tuple


@njit(cache=True)
def _average(m, g, c, out):
    for i in range(m.shape[0]):
        out[i] = m[i] + c * (g[i] - m[i])


def average(m, g, beta):
    """``m + (1 - beta) (g - m)`` in float32 (``1 - beta`` rounded to float32 once)."""
    out = np.empty_like(g)
    _average(m, g, np.float32(1.0 - beta), out)
    return out


class Smoothed(Scheme):
    """``inner`` applied to the agent's moving average of its gradients (decay ``beta``)."""

    def __init__(self, inner, beta):
        if not (isinstance(beta, (int, float)) and not isinstance(beta, bool) and 0 <= beta < 1):
            raise ConfigError(f"scheme.ema (the agent's gradient average decay) must be in [0, 1), got {beta!r}")
        super().__init__(inner.codec)
        self.inner = inner
        self.beta = float(beta)
        self.name = inner.name
        self.requires = inner.requires

    def __repr__(self):
        return f"smoothed({self.inner!r}, beta={self.beta})"

    def smoothed(self, private, g):
        """``m_t``: the moving average after ``g`` (``g`` itself for the first gradient), read-only."""
        return frozen(average(private.m, g, self.beta) if private.started else g.copy())

    def check_codec(self, d):
        self.inner.check_codec(d)

    def init(self, d):
        return self._with_average(self.inner.init(d), d)

    def init_tensor(self, shape):
        return self._with_average(self.inner.init_tensor(shape), math.prod(shape))

    @staticmethod
    def _with_average(pair, d):
        state, private = pair
        return state, SmoothedPrivate(frozen(np.zeros(d, np.float32)), False, private)

    def payload_bits(self, d, shape=None):
        return self.inner.payload_bits(d, shape)

    def encode(self, state, private, g, ctx):
        # Step 1
        return self.inner.encode(state, private.inner, self.smoothed(private, g), ctx)

    def reconstruct(self, state, payload, ctx):
        # Step 2
        return self.inner.reconstruct(state, payload, ctx)

    def compensate(self, private, g, g_hat):
        # Step 3: the same kernel as in step 1, so the average is the one that was sent
        m = self.smoothed(private, g)
        return SmoothedPrivate(m, True, self.inner.compensate(private.inner, m, g_hat))

    def estimate(self, state):
        return self.inner.estimate(state)

    @property
    def g_hat_is_payload(self):
        return self.inner.g_hat_is_payload
