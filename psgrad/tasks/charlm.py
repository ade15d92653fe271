"""``charlm``: next-character prediction on Shakespeare, one agent per speaking role (LEAF's federated split).

The clients and their data come from ``shakespeare.py``: ``n_agents`` roles
chosen by the seed among those with at least ``samples_per_agent`` training
windows; each agent holds ``samples_per_agent`` windows of 80 characters from
the first ``1 - test_fraction`` of its role's text, and the held-out data are
windows from the rest of each chosen role's text (at most
``ceil(samples_per_agent * test_fraction / (1 - test_fraction))`` per role,
keeping the held-out share). The split among agents is the roles themselves:
``task.partition``, ``alpha`` and ``classes_per_agent`` do not apply.
"""
import math

import numpy as np

from ..errors import ConfigError
from . import models, shakespeare
from .device import resolve_device
from .objectives import CROSS_ENTROPY
from .task import Task


def build_charlm(cfg, n_agents, seed):
    """``models.NextChar`` (embedding 8, one GRU layer of width ``cfg.hidden``) on ``cfg.dataset: shakespeare``,
    softmax cross-entropy over the 95 characters of ``shakespeare.VOCAB``, started from PyTorch's default scale."""
    if cfg.dataset != "shakespeare":
        raise ConfigError(f"task 'charlm' needs a text dataset, got {cfg.dataset!r}; valid: shakespeare")
    if cfg.hidden < 1:
        raise ConfigError(f"hidden must be >= 1, got hidden={cfg.hidden}")
    if cfg.samples_per_agent < 1:
        raise ConfigError(f"samples_per_agent must be >= 1, got samples_per_agent={cfg.samples_per_agent}")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got test_fraction={cfg.test_fraction}")
    device = resolve_device(cfg.device)
    cap = cfg.samples_per_agent
    test_cap = math.ceil(cap * cfg.test_fraction / (1.0 - cfg.test_fraction))
    shards, held_out = [], []
    for role in shakespeare.clients(n_agents, seed, cfg.test_fraction, cap):
        train, test = shakespeare.split_role(role, cfg.test_fraction)
        shards.append(shakespeare.windows(train, cap))
        held_out.append(shakespeare.windows(test, test_cap))
    test = tuple(np.concatenate(parts) for parts in zip(*held_out))
    module = models.on_meta(models.NextChar, len(shakespeare.VOCAB), hidden=cfg.hidden)
    return Task("charlm", module, CROSS_ENTROPY, shards, test, seed=seed, l2=cfg.l2, batch_size=cfg.batch_size,
                init="uniform", device=device)
