"""Fuzzing: every decoder, every scheme's reconstruct and the wire parser, fed malformed input.

Each hypothesis example draws a seed and a target, then runs a batch of
mutations of a valid message (bit flips, truncation, extension, wrong length
or dimension) and of plain random bytes. The only acceptable outcomes are a
correct-typed result or the documented error (DecodeError; WireError for the
wire, which is a DecodeError). Anything else (IndexError, ValueError, a crash)
fails the test. Sizes (examples x batch) are set so that the suite feeds
tens of thousands of inputs in well under a minute.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import psgrad
from psgrad import wire
from psgrad.codecs.base import Encoded, Key
from psgrad.errors import DecodeError, WireError
from psgrad.schemes import Context

BATCH = 40
EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def mutations(rng, data, nbits):
    """Malformed variants of a valid payload ``(data, nbits)``: ``BATCH`` of them."""
    data = np.asarray(data, np.uint8)
    for _ in range(BATCH):
        kind = rng.integers(6)
        d = data.copy()
        n = nbits
        if kind == 0 and len(d):  # flip a few bits
            for _ in range(rng.integers(1, 4)):
                i = rng.integers(n) if n else 0
                d[i // 8] ^= np.uint8(1 << (i % 8))
        elif kind == 1:  # truncate
            n = int(rng.integers(0, n + 1))
        elif kind == 2:  # extend with random bytes
            extra = rng.integers(0, 256, rng.integers(1, 9), dtype=np.uint8)
            d = np.concatenate([d, extra])
            n = n + int(rng.integers(1, 8 * len(extra) + 1))
        elif kind == 3:  # random bytes of a plausible size
            d = rng.integers(0, 256, len(d) + rng.integers(-2, 3) if len(d) > 2 else 3, dtype=np.uint8)
            n = int(rng.integers(0, 8 * len(d) + 1))
        elif kind == 4:  # a length the data cannot hold, or a negative one
            n = int(rng.choice([-1, 8 * len(d) + 1, 2**40]))
        else:  # all ones or all zeros
            d[:] = rng.choice([0, 255])
        nbytes = (n + 7) // 8 if n >= 0 else 0
        if 0 <= n <= 8 * len(d):
            d = d[:nbytes].copy()
            if n % 8 and len(d):
                d[-1] &= np.uint8((1 << (n % 8)) - 1)  # keep padding zero so the decoder, not check_payload, is tested
        yield d, n


def vector(rng, d):
    x = rng.standard_normal(d).astype(np.float32)
    if d and rng.random() < 0.2:
        x[rng.integers(d, size=min(d, 3))] = 0
    return x


@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(psgrad.codecs()), d=st.integers(0, 130))
@FUZZ
def test_every_decoder_raises_only_decode_error_on_malformed_payloads(seed, name, d):
    rng = np.random.default_rng(seed)
    codec = psgrad.codec(name)
    key = Key(seed % 7, 1, 2)
    enc = codec.encode(vector(rng, d), key)
    for data, nbits in mutations(rng, enc.data, enc.nbits):
        for dd in (d, d + 1, max(d - 1, 0)):
            try:
                out = codec.decode(data, nbits, dd, key)
            except DecodeError:
                continue
            assert out.dtype == np.float32 and out.shape == (dd,)


def scheme_cases():
    cases = []
    for name in psgrad.schemes():
        for codec in ("fp16", "qsgd", "topk"):
            if codec in psgrad.codecs():
                try:
                    psgrad.scheme(name, codec).init(40)
                except ValueError:
                    continue
                cases.append((name, codec))
    return cases


@given(seed=st.integers(0, 2**32 - 1), case=st.sampled_from(scheme_cases()), warm=st.integers(0, 3))
@FUZZ
def test_every_scheme_reconstruct_raises_only_decode_error_on_malformed_payloads(seed, case, warm):
    rng = np.random.default_rng(seed)
    d = 40
    sc = psgrad.scheme(*case)
    state, private = sc.init(d)
    for t in range(warm):  # a state with history (a TPC memory, a shift)
        ctx = Context(Key(0, 0, t), d, 0.01)
        g = vector(rng, d)
        payload = sc.encode(state, private, g, ctx)
        g_hat, state = sc.reconstruct(state, payload, ctx)
        private = sc.compensate(private, g, g_hat)
    ctx = Context(Key(0, 0, warm), d, 0.01)
    payload = sc.encode(state, private, vector(rng, d), ctx)
    for data, nbits in mutations(rng, payload.data, payload.nbits):
        if nbits < 0 or nbits > 8 * len(data):
            continue  # the wire layer never hands a scheme such a length (test_wire covers it)
        try:
            g_hat, new_state = sc.reconstruct(state, Encoded(data, nbits), ctx)
        except DecodeError:
            continue
        assert g_hat.dtype == np.float32 and g_hat.shape == (d,)
        assert type(new_state) is type(state)


@given(seed=st.integers(0, 2**32 - 1), nbits=st.integers(0, 300), digest=st.booleans(),
       kind=st.sampled_from(list(wire.Kind)))
@FUZZ
def test_wire_parse_raises_only_wire_error_on_malformed_frames(seed, nbits, digest, kind):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (nbits + 7) // 8, dtype=np.uint8)
    if nbits % 8:
        data[-1] &= (1 << (nbits % 8)) - 1
    frame = wire.pack(kind, 5, 3, data, nbits, loss=0.5, digest=bytes(32) if digest and kind == wire.Kind.UPDATE
                      else None)
    for _ in range(BATCH):
        buf = frame.copy()
        how = rng.integers(4)
        if how == 0:
            i = rng.integers(8 * len(buf))
            buf[i // 8] ^= np.uint8(1 << (i % 8))
        elif how == 1:
            buf = buf[: rng.integers(len(buf))]
        elif how == 2:
            buf = np.concatenate([buf, rng.integers(0, 256, rng.integers(1, 40), dtype=np.uint8)])
        else:
            buf = rng.integers(0, 256, rng.integers(0, 80), dtype=np.uint8)
            buf[:2] = np.frombuffer(wire.MAGIC, np.uint8)[: len(buf[:2])]
        with pytest.raises(WireError):  # every one of these is detectably wrong
            wire.parse(buf)
