"""The server's optimizer: SGD with momentum (FedAvgM), or an adaptive one (FedAdagrad, FedAdam, FedYogi),
with weight decay and a learning-rate schedule.

The optimizer steps on the aggregate of the round: the weighted mean of the
agents' gradients, or in a federated round of their updates ``w - w_local``
(the "pseudo-gradient" of Reddi et al., "Adaptive Federated Optimization",
ICLR 2021). Works on the flat float32 parameter vector with elementwise numpy
operations only (no reductions), so a step is bit-for-bit reproducible.
"""
import math
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

ADAPTIVE = ("fedadagrad", "fedadam", "fedyogi")


def make(cfg, rounds):
    """The optimizer ``cfg`` (an ``OptimConfig``) names."""
    if cfg.name == "fedavgm" and not cfg.momentum:
        raise ConfigError("optim.name=fedavgm is SGD with server momentum: set optim.momentum (e.g. 0.9)")
    if cfg.name in ADAPTIVE and cfg.momentum:
        raise ConfigError(f"optim.name={cfg.name} keeps its own first moment (optim.beta1); leave optim.momentum at 0")
    return Adaptive(cfg, rounds) if cfg.name in ADAPTIVE else Sgd(cfg, rounds)


class SgdState(NamedTuple):
    momentum: np.ndarray  # float32[d], the heavy-ball buffer


class Sgd:
    """``v = mu v + g + wd theta; theta -= lr_t v`` with lr_t from the schedule."""

    def __init__(self, cfg, rounds):
        self.cfg = cfg
        self.rounds = rounds

    def init(self, d):
        return SgdState(np.zeros(d, np.float32))

    def lr(self, t):
        c = self.cfg
        if c.schedule == "cosine":
            return c.lr * 0.5 * (1.0 + math.cos(math.pi * t / self.rounds))
        if c.schedule == "step":
            return c.lr * c.step_gamma ** (t // c.step_every)
        return c.lr

    def step(self, state, params, grad, t):
        """Return ``(new_params, new_state)`` after one step on ``grad`` at round ``t``."""
        c = self.cfg
        v = grad.copy() if c.momentum == 0 else np.float32(c.momentum) * state.momentum + grad
        if c.weight_decay:
            v += np.float32(c.weight_decay) * params
        return params - np.float32(self.lr(t)) * v, SgdState(v if c.momentum else state.momentum)


class AdaptiveState(NamedTuple):
    m: np.ndarray  # float32[d], the first moment
    v: np.ndarray  # float32[d], the second moment


class Adaptive(Sgd):
    """Reddi et al. (2021), Algorithm 2, on ``g`` = the aggregate (their ``-Delta``)::

        m = beta1 m + (1 - beta1) g
        v = v + g^2                                        (FedAdagrad)
        v = beta2 v + (1 - beta2) g^2                      (FedAdam)
        v = v - (1 - beta2) g^2 sign(v - g^2)              (FedYogi)
        theta -= lr_t m / (sqrt(v) + tau)

    ``v`` starts at ``tau^2``, as the paper's ``v_{-1} >= tau^2``; weight decay is added to ``g``.
    """

    def init(self, d):
        return AdaptiveState(np.zeros(d, np.float32), np.full(d, self.cfg.tau ** 2, np.float32))

    def step(self, state, params, grad, t):
        c = self.cfg
        g = grad + np.float32(c.weight_decay) * params if c.weight_decay else grad
        b1, b2 = np.float32(c.beta1), np.float32(c.beta2)
        m = b1 * state.m + (np.float32(1) - b1) * g
        g2 = g * g
        if c.name == "fedadagrad":
            v = state.v + g2
        elif c.name == "fedadam":
            v = b2 * state.v + (np.float32(1) - b2) * g2
        else:
            v = state.v - (np.float32(1) - b2) * g2 * np.sign(state.v - g2)
        return params - np.float32(self.lr(t)) * m / (np.sqrt(v) + np.float32(c.tau)), AdaptiveState(m, v)
