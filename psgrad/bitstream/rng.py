"""Counter-based shared randomness, identical on agent and server.

A stream key is a uint64 derived from ``(seed, agent, round, purpose)``; the
``i``-th draw of a stream is ``mix64(key + (i + 1) * GOLDEN)``, the SplitMix64
output function (Steele, Lea, Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014) applied to a counter. Draws are random-access and
need no state, so both sides of a link produce the same numbers by
construction. Nothing here touches a global generator.
"""
import zlib

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True)
def mix64(z):
    """SplitMix64 finaliser: a bijective avalanche of one uint64."""
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def draw_u64(key, i):
    """The ``i``-th uint64 of stream ``key``."""
    return mix64(np.uint64(key) + (np.uint64(i) + np.uint64(1)) * GOLDEN)


@njit(cache=True)
def draw_uniform(key, i):
    """The ``i``-th float64 of stream ``key``, uniform on [0, 1) with 53 random bits."""
    return np.float64(draw_u64(key, i) >> np.uint64(11)) * _INV53


@njit(cache=True)
def draw_normal(key, i):
    """The ``i``-th standard normal of stream ``key`` (Box-Muller on draws 2i and 2i+1)."""
    u1 = 1.0 - draw_uniform(key, 2 * i)  # in (0, 1]
    u2 = draw_uniform(key, 2 * i + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def combine(a, b):
    """Derive a child key from key ``a`` and integer ``b``."""
    return mix64(np.uint64(a) ^ mix64(np.uint64(b) + GOLDEN))


def purpose_id(purpose):
    """A stable integer for a purpose given as an int or a string (never Python's salted hash)."""
    if isinstance(purpose, (int, np.integer)):
        return int(purpose) & 0xFFFFFFFFFFFFFFFF
    return zlib.crc32(str(purpose).encode())


def stream_key(seed, agent, round_, purpose):
    """The uint64 key of the stream for ``(seed, agent, round, purpose)``."""
    k = np.uint64(combine(np.uint64(seed & 0xFFFFFFFFFFFFFFFF), np.uint64(agent)))
    k = np.uint64(combine(k, np.uint64(round_)))
    return np.uint64(combine(k, np.uint64(purpose_id(purpose))))
