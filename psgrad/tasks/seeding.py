"""Independent, reproducible random streams for building a task (data, split, partition, init) and for
the random draws of a model's forward pass.

Each purpose gets its own numpy generator seeded by ``SeedSequence([seed, crc32(purpose)])``,
so changing how one part draws never shifts another part's numbers. Nothing
here leaves numpy's or torch's global generator changed: ``torch_rng`` seeds
torch's generators for the length of a block and restores them after it.
"""
import zlib
from contextlib import contextmanager

import numpy as np
import torch
from numba import njit

from ..bitstream.rng import combine, draw_u64, purpose_id, stream_key

_MASK64 = 0xFFFFFFFFFFFFFFFF


def rng_for(seed, purpose):
    """A numpy Generator for ``(seed, purpose)``; ``purpose`` is a string naming what it draws."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & _MASK64, zlib.crc32(purpose.encode())]))


def torch_seed(seed, purpose):
    """A 63-bit seed for a local ``torch.Generator`` derived from ``(seed, purpose)``."""
    return int(rng_for(seed, purpose).integers(0, 2**63 - 1))


def forward_seed(seed, agent, round_, purpose="forward"):
    """A 63-bit torch seed for the random draws of ``agent``'s forward pass in ``round_`` (dropout masks, ...).

    The first draw of the counter-based stream ``(seed, agent, round, purpose)``:
    any process derives it without shared state.
    """
    return int(_first_draw_63(np.uint64(int(seed) & _MASK64), np.uint64(agent), np.uint64(round_),
                              np.uint64(purpose_id(purpose))))


@njit(cache=True)
def _first_draw_63(seed, agent, round_, purpose):
    # stream_key(seed, agent, round_, purpose) and its first draw, in one compiled call (it runs every round).
    key = combine(combine(combine(seed, agent), round_), purpose)
    return draw_u64(key, 0) >> np.uint64(1)


@contextmanager
def torch_rng(seed_value, device):
    """Run the block with torch's CPU generator, and ``device``'s when it is a GPU, seeded by ``seed_value``.

    Both generators' states are saved before and restored after the block, so
    what the block draws depends on ``seed_value`` alone and the caller's
    random streams are left as they were.
    """
    gpu = device if device.type == "cuda" else None
    # What torch.random.fork_rng does, for the CPU and at most one GPU, at a fraction of its cost per call.
    cpu_state = torch.get_rng_state()
    gpu_state = None if gpu is None else torch.cuda.get_rng_state(gpu)
    try:
        torch.default_generator.manual_seed(seed_value)
        if gpu is not None:
            with torch.cuda.device(gpu):
                torch.cuda.manual_seed(seed_value)
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if gpu is not None:
            torch.cuda.set_rng_state(gpu_state, gpu)


@njit(cache=True)
def _stream_draws(key, n):
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = draw_u64(key, i)
    return out


def step_purpose(purpose, step):
    """The stream purpose of local step ``step`` (step 0, a gradient round's, keeps ``purpose`` itself)."""
    return purpose if step == 0 else f"{purpose}/{step}"


def minibatch(seed, agent, round_, n, batch_size, step=0):
    """Sorted indices of the minibatch of ``agent`` in ``round_``: ``batch_size`` of ``range(n)``, no repeats.

    The sample drawn is the ``batch_size`` indices with the smallest draws of
    the counter-based stream ``(seed, agent, round, "minibatch")`` (``"minibatch/e"`` for local
    step ``e > 0`` of a federated round) — a uniform
    subset that any process derives without shared state, and that does not
    depend on numpy's generator algorithms. ``batch_size == 0`` or
    ``batch_size >= n`` gives the full local batch.
    """
    if batch_size <= 0 or batch_size >= n:
        return np.arange(n, dtype=np.int64)
    draws = _stream_draws(stream_key(seed, agent, round_, step_purpose("minibatch", step)), n)
    return np.sort(np.argsort(draws, kind="stable")[:batch_size]).astype(np.int64)
