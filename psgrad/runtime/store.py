"""Agents' scheme states held within a memory budget (``run.mirror_memory``), the rest on disk.

With thousands of clients, most of them absent in any round, the server's
mirrors (and a worker's states of its clients) need not all sit in memory: a
``StateStore`` keeps the most recently used within the budget and writes the
others to files in a temporary folder of this process, reading a state back
when its agent is next sampled. An agent never stored has its scheme's initial
state, one value shared by all (states are never changed in place), so a
thousand clients that have not yet taken part cost nothing. Reading a state
back gives the same bytes, so digests and runs do not depend on the budget.
"""
import pickle
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np


def state_bytes(state):
    """The bytes of the arrays in ``state`` (nested tuples of arrays and scalars)."""
    if isinstance(state, np.ndarray):
        return state.nbytes
    if isinstance(state, tuple):
        return sum(state_bytes(x) for x in state)
    return 0


def _freeze(state):
    """``state`` with every array read-only again (as the scheme made it) after a round trip through a file."""
    if isinstance(state, np.ndarray):
        state.setflags(write=False)
    elif isinstance(state, tuple):
        for x in state:
            _freeze(x)
    return state


class StateStore:
    """``store[a]``: agent ``a``'s state; ``default`` until one is stored; at most ``budget`` bytes in memory
    (0: no limit), the least recently used beyond it on disk."""

    def __init__(self, default, budget=0):
        self.default = default
        self.budget = int(budget)
        self.memory = OrderedDict()  # agent -> state, least recently used first
        self.used = 0
        self.on_disk = set()
        self._folder = None

    def __getitem__(self, a):
        if a in self.memory:
            self.memory.move_to_end(a)
            return self.memory[a]
        if a in self.on_disk:
            state = _freeze(pickle.loads(self._path(a).read_bytes()))
            self.on_disk.discard(a)
            self._keep(a, state)
            return state
        return self.default

    def __setitem__(self, a, state):
        if a in self.memory:
            self.used -= state_bytes(self.memory.pop(a))
        self.on_disk.discard(a)
        self._keep(a, state)

    def values(self, agents):
        """The states of ``agents``, in that order, read without changing what is held in memory (a checkpoint
        reads them all)."""
        return tuple(self.memory[a] if a in self.memory else
                     _freeze(pickle.loads(self._path(a).read_bytes())) if a in self.on_disk else self.default
                     for a in agents)

    def replace(self, states):
        """Forget every state; then ``states`` (agent -> state) are stored."""
        self.memory.clear()
        self.on_disk.clear()
        self.used = 0
        for a, state in states.items():
            self[a] = state

    def _keep(self, a, state):
        self.memory[a] = state
        self.used += state_bytes(state)
        while self.budget and self.used > self.budget and len(self.memory) > 1:
            old, value = self.memory.popitem(last=False)
            self.used -= state_bytes(value)
            self._path(old).write_bytes(pickle.dumps(value, protocol=5))
            self.on_disk.add(old)

    def _path(self, a):
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="psgrad-states-")
        return Path(self._folder.name) / f"{a}.pickle"
