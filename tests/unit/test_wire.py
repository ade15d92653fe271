import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from psgrad import wire
from psgrad.errors import WireError


def frame(nbits=13, digest=None, **kw):
    data = np.zeros((nbits + 7) // 8, np.uint8)
    if nbits:
        data[0] = 0b101
    return wire.pack(kw.get("kind", wire.Kind.UPDATE), kw.get("round", 7), kw.get("agent", 3), data, nbits,
                     loss=1.5, digest=digest)


def test_header_is_32_bytes_and_frame_length_follows_the_header():
    assert wire.HEADER_BYTES == 32
    assert len(frame(13)) == 32 + 2
    assert len(frame(16, digest=b"x" * 32)) == 32 + 2 + 32


@given(st.integers(0, 5000), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.booleans())
@settings(max_examples=100, deadline=None)
def test_frames_round_trip(nbits, round_, agent, with_digest):
    rng = np.random.default_rng(nbits)
    data = rng.integers(0, 256, (nbits + 7) // 8, dtype=np.uint8)
    if nbits % 8:
        data[-1] &= (1 << (nbits % 8)) - 1
    digest = bytes(range(32)) if with_digest else None
    f = wire.parse(wire.pack(wire.Kind.UPDATE, round_, agent, data, nbits, loss=0.25, digest=digest))
    assert (f.kind, f.round, f.agent, f.nbits, f.loss, f.digest) == (wire.Kind.UPDATE, round_, agent, nbits, 0.25,
                                                                     digest)
    assert np.array_equal(f.payload, data)
    assert f.wire_bytes == wire.frame_bytes(nbits, with_digest)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:10], "shorter than"),
    (lambda b: np.concatenate([b, [0]]).astype(np.uint8), "header says"),
    (lambda b: b[:-1], "header says"),
    (lambda b: _set(b, 0, ord("X")), "bad magic"),
    (lambda b: _set(b, 2, 99), "version 99"),
    (lambda b: _set(b, 3, 42), "unknown message kind"),
    (lambda b: _set(b, 4, 6), "unknown flags"),
    (lambda b: _set(b, 32, b[32] ^ 0x10), "CRC mismatch"),
])
def test_bad_frames_are_rejected_with_a_reason(mutate, message):
    with pytest.raises(WireError, match=message):
        wire.parse(mutate(frame(13).copy()))


def test_errors_name_the_agent_and_round():
    with pytest.raises(WireError, match=r"agent 3, round 7"):
        wire.parse(_set(frame(13).copy(), 2, 99))


def test_nonzero_padding_is_rejected():
    f = frame(13).copy()
    f[33] |= 0x80
    f[24:28] = np.frombuffer(np.uint32(__import__("zlib").crc32(f[32:34])).tobytes(), np.uint8)
    with pytest.raises(WireError, match="padding"):
        wire.parse(f)


def test_pack_refuses_a_payload_of_the_wrong_length():
    with pytest.raises(ValueError, match="need exactly 2"):
        wire.pack(wire.Kind.UPDATE, 0, 0, np.zeros(3, np.uint8), 13)


def _set(b, i, v):
    b[i] = v
    return b
