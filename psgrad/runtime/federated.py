"""Federated rounds (DESIGN §10): who takes part in a round, local training, and the simulated clock.

Everything here is a function of the config, the task's data sizes and the
round, computed the same way by the server and by every worker rank, so the
server never waits for a message that will not come and no rank needs to be
told who takes part.

- ``Participation.plan(t)``: the round's cohort, ``K`` of the ``N`` agents drawn
  from the counter-based stream ``(seed, round, "cohort")`` (uniformly, or with
  probability proportional to data size by Efraimidis-Spirakis keys), and
  which of them drop out (each with probability ``run.dropout``, from the
  stream ``(seed, agent, round, "dropout")``). The cohort does not depend on
  the number of ranks.
- ``local_update``: ``E`` local SGD steps from the received model; the update
  sent is ``w_received - w_local``, accumulated step by step as
  ``sum_e lr * v_e``, so that one step at ``local_lr = 1`` is the gradient
  itself, bit for bit.
- ``Clock``: each client's simulated seconds for a round, FedScale's model:
  ``samples / speed + downlink bits / downlink bandwidth + uplink bits /
  uplink bandwidth``.
"""
import csv
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from ..bitstream.rng import combine, draw_u64, purpose_id, stream_key
from ..errors import ConfigError

_U53 = 1.0 / (1 << 53)


@njit(cache=True)
def _uniforms(seed, agents, round_, purpose):
    """One uniform in [0, 1) per agent: the first draw of the stream ``(seed, agent, round, purpose)``."""
    out = np.empty(agents.shape[0])
    for i in range(agents.shape[0]):
        key = combine(combine(combine(seed, np.uint64(agents[i])), round_), purpose)
        out[i] = (draw_u64(key, 0) >> np.uint64(11)) * _U53
    return out


@njit(cache=True)
def _stream_uniforms(key, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = (draw_u64(key, i) >> np.uint64(11)) * _U53
    return out


class Plan(NamedTuple):
    """Round ``t``'s participants (sorted agent ids): the cohort, and those of it expected to report."""

    cohort: np.ndarray
    reporting: np.ndarray

    @property
    def dropped(self):
        return np.setdiff1d(self.cohort, self.reporting, assume_unique=True)


class Participation:
    """The cohort of every round (``run.clients_per_round``, ``run.sampling``, ``run.dropout``)."""

    def __init__(self, cfg, sizes):
        self.n = len(sizes)
        self.k = cfg.run.clients_per_round or self.n
        if self.k > self.n:
            raise ConfigError(f"run.clients_per_round={self.k} is more than the {self.n} agents of this run")
        self.seed = np.uint64(cfg.run.seed & 0xFFFFFFFFFFFFFFFF)
        self.dropout = cfg.run.dropout
        sizes = np.asarray(sizes, np.float64)
        self.rates = sizes / sizes.sum() if cfg.run.sampling == "size" else None
        self.everyone = np.arange(self.n)
        self.full = self.k == self.n and not self.dropout

    def cohort(self, t):
        """The sorted agents sampled in round ``t``."""
        if self.k == self.n:
            return self.everyone
        u = _stream_uniforms(stream_key(int(self.seed), 0, t, "cohort"), self.n)
        # The k smallest keys: uniform keys give a uniform k-subset; exponential keys of rate n_i give
        # sampling without replacement proportional to size (Efraimidis and Spirakis, 2006).
        keys = u if self.rates is None else -np.log1p(-u) / self.rates
        return np.sort(np.argsort(keys, kind="stable")[:self.k])

    def plan(self, t):
        cohort = self.cohort(t)
        if not self.dropout:
            return Plan(cohort, cohort)
        u = _uniforms(self.seed, cohort.astype(np.uint64), np.uint64(t), np.uint64(purpose_id("dropout")))
        return Plan(cohort, cohort[u >= self.dropout])


def local_steps(task_cfg, size):
    """The local steps of an agent with ``size`` samples (0: a gradient round)."""
    if task_cfg.local_epochs:
        per_epoch = math.ceil(size / task_cfg.batch_size) if task_cfg.batch_size else 1
        return max(1, math.ceil(task_cfg.local_epochs * per_epoch))
    return task_cfg.local_steps


def local_update(task, agent, params, t, steps, lr, momentum, phases=None):
    """``(f_i(w), w - w_local)`` after ``steps`` local SGD steps from ``w = params`` (float32 throughout).

    Step ``e`` uses the minibatch and forward-pass draws of ``(agent, t, e)``; the update is accumulated
    as ``sum_e lr * v_e`` (``v`` the heavy-ball buffer), and ``w_local = w - update`` after each step.
    """
    lr, mu = np.float32(lr), np.float32(momentum)
    update = np.zeros_like(params)
    v = np.zeros_like(params) if momentum else None
    w, loss = params, float("nan")
    for e in range(steps):
        value, g = task.local_grad(agent, w, t, step=e, phases=phases)
        if e == 0:
            loss = value
        if v is not None:
            v *= mu
            v += g
            g = v
        update += lr * g
        w = params - update
    return loss, update


class Clock:
    """Each client's bandwidths (bit/s) and compute speed (samples/s), from the ``clock`` config."""

    def __init__(self, cfg, sizes):
        c = cfg.clock
        n = len(sizes)
        self.enabled = c.enabled
        if c.trace:
            self.up, self.down, self.speed = read_trace(c.trace, n)
        else:
            spread = np.random.default_rng([cfg.run.seed, purpose_id("clock")]).standard_normal((3, n)) * c.spread
            factor = np.exp(spread)
            self.up = 1e6 * c.uplink_mbps * factor[0]
            self.down = 1e6 * (c.downlink_mbps or c.uplink_mbps) * factor[1]
            self.speed = c.samples_per_s * factor[2]
        # Samples an agent processes in a round: one batch per local step (a gradient round: one step)
        batch = np.minimum(np.asarray(sizes), cfg.task.batch_size) if cfg.task.batch_size else np.asarray(sizes)
        self.samples = batch * np.array([max(1, local_steps(cfg.task, s)) for s in sizes])
        self.deadline = cfg.run.deadline

    def seconds(self, agent, down_bits, up_bits):
        """Agent ``agent``'s round: compute, then the model down, then its message up."""
        if not self.enabled:
            return 0.0
        compute = self.samples[agent] / self.speed[agent] if self.speed[agent] > 0 else 0.0
        return compute + down_bits / self.down[agent] + up_bits / self.up[agent]

    def late(self, seconds):
        return bool(self.deadline) and seconds > self.deadline


def read_trace(path, n):
    """``(uplink bit/s, downlink bit/s, samples/s)`` per client from a CSV trace; ConfigError naming what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"clock.trace {path} does not exist")
    columns = ("client", "uplink_mbps", "downlink_mbps", "samples_per_s")
    rows = {}
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in columns):
            raise ConfigError(f"clock.trace {path}: expected the columns {', '.join(columns)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, 2):
            try:
                client = int(row["client"])
                values = [float(row[c]) for c in columns[1:]]
            except (TypeError, ValueError):
                raise ConfigError(f"clock.trace {path}, line {line}: not a number in {row}") from None
            if not (all(math.isfinite(v) for v in values) and values[0] > 0 and values[1] > 0 and values[2] >= 0):
                raise ConfigError(f"clock.trace {path}, line {line}: bandwidths must be > 0 and speeds >= 0, "
                                  f"got {values}")
            rows[client] = values
    missing = [a for a in range(n) if a not in rows]
    if missing:
        raise ConfigError(f"clock.trace {path} has no row for clients {missing[:10]}"
                          f"{' ...' if len(missing) > 10 else ''} (the run has {n})")
    table = np.array([rows[a] for a in range(n)])
    return 1e6 * table[:, 0], 1e6 * table[:, 1], table[:, 2]
