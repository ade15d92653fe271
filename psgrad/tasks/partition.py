"""Splitting training samples among agents: iid, Dirichlet(alpha) label skew, k classes per agent.

A partition function takes the training labels, the number of agents and a
numpy Generator, and returns one sorted int64 index array per agent. Every
training sample goes to exactly one agent and every agent gets at least one
sample; a configuration that cannot satisfy both is a ConfigError.
"""
import numpy as np
import torch

from ..errors import ConfigError
from .seeding import rng_for


def iid(labels, n_agents, rng, **_):
    """A uniformly random permutation cut into ``n_agents`` parts whose sizes differ by at most one."""
    order = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, n_agents)]


def dirichlet(labels, n_agents, rng, alpha=0.5, **_):
    """Label skew (Hsu, Qi, Brown, "Measuring the effects of non-identical data distribution", 2019).

    For each class ``c`` draw proportions ``q ~ Dirichlet(alpha * 1_n)`` and
    give agent ``i`` the next ``floor`` share of that class's shuffled samples.
    Small ``alpha`` concentrates each class on few agents; large ``alpha``
    approaches iid. An agent left empty then takes, in agent order, the last
    sample assigned to the currently largest agent (lowest index on ties),
    so the outcome stays a deterministic function of the seed.
    """
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0 for the dirichlet partition, got {alpha=}")
    parts = [[] for _ in range(n_agents)]
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        q = rng.dirichlet(np.full(n_agents, float(alpha)))
        cuts = (np.cumsum(q)[:-1] * len(members)).astype(np.int64)
        for i, chunk in enumerate(np.split(members, cuts)):
            parts[i].extend(chunk.tolist())
    for i in range(n_agents):
        if not parts[i]:
            donor = max(range(n_agents), key=lambda j: (len(parts[j]), -j))
            parts[i].append(parts[donor].pop())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def classes(labels, n_agents, rng, classes_per_agent=2, **_):
    """Pathological label skew: each agent holds exactly ``k = classes_per_agent`` classes.

    Classes are put in a random order ``pi``; agent ``i`` holds classes
    ``pi[(i*k + j) mod C]`` for ``j < k`` (distinct because ``k <= C``), and
    each class's shuffled samples are split evenly among the agents holding
    it. Every class is held by some agent when ``n_agents * k >= C``.
    """
    present = np.unique(labels)
    n_classes, k = len(present), int(classes_per_agent)
    if not 1 <= k <= n_classes:
        raise ConfigError(f"classes_per_agent must be in [1, {n_classes}] for this dataset, got {k}")
    if n_agents * k < n_classes:
        raise ConfigError(f"partition 'classes' with {n_agents} agents x {k} classes leaves some of the "
                          f"{n_classes} classes unused; need n_agents * classes_per_agent >= {n_classes}")
    order = rng.permutation(present)
    holders = {c: [] for c in order}
    for i in range(n_agents):
        for j in range(k):
            holders[order[(i * k + j) % n_classes]].append(i)
    parts = [[] for _ in range(n_agents)]
    for c in order:
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        if len(members) < len(holders[c]):
            raise ConfigError(f"class {c} has {len(members)} training samples but {len(holders[c])} agents "
                              f"hold it; use fewer agents or a larger classes_per_agent")
        for agent, chunk in zip(holders[c], np.array_split(members, len(holders[c]))):
            parts[agent].extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


PARTITIONS = {"iid": iid, "dirichlet": dirichlet, "classes": classes}


def partition(name, labels, n_agents, seed, **params):
    """Indices of each agent's training samples under partition ``name`` (deterministic in ``seed``).

    ``labels``: one label per sample, numpy or torch, of any type ``np.unique``
    sorts (ints, strings); ``params``: ``alpha`` (dirichlet), ``classes_per_agent``
    (classes). A user's own data is split by indexing it::

        parts = psgrad.partition("dirichlet", y, n_agents=8, seed=0, alpha=0.3)
        shards = [(x[idx], y[idx]) for idx in parts]
    """
    if name not in PARTITIONS:
        raise ConfigError(f"unknown partition {name!r}; valid: {', '.join(sorted(PARTITIONS))}")
    if n_agents < 1:
        raise ConfigError(f"need at least one agent, got {n_agents=}")
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"labels must hold one label per sample (one dimension), got shape {labels.shape}")
    if len(labels) < n_agents:
        raise ConfigError(f"{len(labels)} training samples cannot give each of {n_agents} agents one")
    return PARTITIONS[name](labels, n_agents, rng_for(seed, f"partition/{name}"), **params)
