"""Decoder fuzzing: truncated, bit-flipped and random payloads only ever raise DecodeError.

Every registered codec is fuzzed (the registry is read at collection time),
with a few thousand payloads each; a decoder that accepts a payload must still
return float32[d]. Numba does not bounds-check, so an out-of-bounds read would
show as garbage or a crash here rather than an IndexError.
"""
import numpy as np
import pytest

import psgrad
from psgrad.errors import DecodeError

KEY = psgrad.Key(seed=3, agent=1, round=9)
CASES = 1500  # per codec and family; the whole file stays within seconds


def _try(c, data, nbits, d):
    try:
        out = c.decode(data, nbits, d, KEY)
    except DecodeError:
        return False
    assert out.dtype == np.float32 and out.shape == (d,)
    return True


def _valid(name, d, seed=0):
    c = psgrad.codec(name)
    x = np.random.default_rng(seed).standard_t(3, d).astype(np.float32)
    return c, c.encode(x, KEY)


def _inputs(d, seed=0):
    """A heavy-tailed, a sparse and a zero vector: between them they take every branch of the adaptive codecs."""
    rng = np.random.default_rng(seed)
    sparse = np.zeros(d, np.float32)
    sparse[rng.integers(0, d, 2)] = [1.5, -2.0]
    return rng.standard_t(3, d).astype(np.float32), sparse, np.zeros(d, np.float32)


def _resized(enc, nbits):
    """The payload cut to ``nbits`` bits (padding bits cleared) or extended by zero bits to ``nbits``."""
    data = np.zeros((nbits + 7) // 8, np.uint8)
    n = min(len(data), len(enc.data))
    data[:n] = enc.data[:n]
    if nbits < enc.nbits and nbits % 8:
        data[-1] &= np.uint8((1 << (nbits % 8)) - 1)
    return data


# Every built-in codec's payload length is determined by d and the fields the decoder reads, so each wrong
# length must be refused; codecs of installed plugins only have to raise nothing but DecodeError.
BUILT_IN = set(psgrad.codecs.REGISTRY)


@pytest.mark.parametrize("name", psgrad.codecs())
def test_truncated_and_extended_payloads_are_refused(name):
    c = psgrad.codec(name)
    for d in (1, 37, 300):
        for x, (below, above) in zip(_inputs(d), [(300, 70), (24, 24), (24, 24)]):
            enc = c.encode(x, KEY)
            assert _try(c, enc.data, enc.nbits, d)
            for nbits in range(max(0, enc.nbits - below), enc.nbits + above):
                if nbits != enc.nbits:
                    accepted = _try(c, _resized(enc, nbits), nbits, d)
                    assert not (accepted and name in BUILT_IN), f"{name}: {nbits} bits accepted, {enc.nbits} sent"
            for wrong_d in (0, d - 1, d + 1, 2 * d + 5):
                _try(c, enc.data, enc.nbits, wrong_d)


@pytest.mark.parametrize("name", psgrad.codecs())
def test_bit_flipped_payloads_raise_only_decode_error(name):
    rng = np.random.default_rng(1)
    c, enc = _valid(name, 61)
    if enc.nbits == 0:
        return
    for _ in range(CASES):
        data = enc.data.copy()
        for b in rng.integers(0, enc.nbits, rng.integers(1, 4)):
            data[b >> 3] ^= np.uint8(1 << (b & 7))
        _try(c, data, enc.nbits, 61)


@pytest.mark.parametrize("name", psgrad.codecs())
def test_random_payloads_raise_only_decode_error(name):
    rng = np.random.default_rng(2)
    _, enc = _valid(name, 45)
    c = psgrad.codec(name)
    for _ in range(CASES):
        nbits = int(rng.integers(0, 2 * enc.nbits + 64))
        data = rng.integers(0, 256, (nbits + 7) // 8, dtype=np.uint8)
        if nbits % 8 and rng.random() < 0.5:
            data[-1] &= np.uint8((1 << (nbits % 8)) - 1)
        _try(c, data, nbits, int(rng.choice([45, 1, 0, 200])))
    # the same length as a valid payload, random contents: exercises the value checks
    for _ in range(CASES):
        data = rng.integers(0, 256, len(enc.data), dtype=np.uint8)
        _try(c, data, enc.nbits, 45)


@pytest.mark.parametrize("name", psgrad.codecs())
def test_bad_buffers_are_refused_before_decoding(name):
    c = psgrad.codec(name)
    with pytest.raises(DecodeError):
        c.decode(np.zeros(2, np.uint8), 17, 4, KEY)
    with pytest.raises(DecodeError):
        c.decode(np.zeros(4, np.int32), 8, 4, KEY)
    with pytest.raises(DecodeError):
        c.decode(np.zeros(4, np.uint8), -1, 4, KEY)


@pytest.mark.parametrize("name", psgrad.codecs())
def test_an_absurd_length_is_a_decode_error_before_anything_is_allocated(name):
    c, enc = _valid(name, 100)
    lengths = [2**38 + 1, 10**12, 2**63 - 1]  # beyond MAX_LENGTH: refused by every codec
    if name != "sparse_dither":  # its payload does not bound d (a zero vector is 3 fields whatever d is)
        lengths += [10**10, 2**38]  # the payload of a 100-vector cannot be one of these
    for d in lengths:
        with pytest.raises(DecodeError):
            c.decode(enc.data, enc.nbits, d, KEY)


@pytest.mark.parametrize("name,params", [("qsgd", {"bucket": 0}), ("qsgd", {"bucket": 512}), ("topk", {"k": 5})])
def test_a_length_the_payload_is_too_short_for_is_refused_and_every_valid_payload_is_long_enough(name, params):
    c = psgrad.codec(name, **params)
    enc = c.encode(np.zeros(1000, np.float32), KEY)
    with pytest.raises(DecodeError, match="fewer than"):
        c.decode(enc.data, enc.nbits, 10**9, KEY)
    rng = np.random.default_rng(5)
    for d in [0, 1, 2, 3, 511, 512, 513, 1025, *rng.integers(1, 5000, 20)]:  # the lower bound is sound
        for x in (np.zeros(d, np.float32), rng.standard_normal(d).astype(np.float32)):
            enc = c.encode(x, KEY)
            assert c.decode(enc.data, enc.nbits, int(d), KEY).shape == (d,)
