"""The server's optimizer: SGD with momentum, weight decay and a learning-rate schedule.

Works on the flat float32 parameter vector with elementwise numpy operations
only (no reductions), so a step is bit-for-bit reproducible.
"""
import math
from typing import NamedTuple

import numpy as np


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
