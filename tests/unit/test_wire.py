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


def test_header_is_40_bytes_and_frame_length_follows_the_header():
    assert wire.HEADER_BYTES == 40
    assert len(frame(13)) == 40 + 2
    assert len(frame(16, digest=b"x" * 32)) == 40 + 2 + 32


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
    (lambda b: _set(b, 40, b[40] ^ 0x10), "check mismatch"),
    (lambda b: _set(b, 33, b[33] ^ 0x01), "check mismatch"),
])
def test_bad_frames_are_rejected_with_a_reason(mutate, message):
    with pytest.raises(WireError, match=message):
        wire.parse(mutate(frame(13).copy()))


def test_errors_name_the_agent_and_round():
    with pytest.raises(WireError, match=r"agent 3, round 7"):
        wire.parse(_set(frame(13).copy(), 2, 99))


def test_nonzero_padding_is_rejected():
    f = frame(13).copy()
    f[41] |= 0x80
    f[32:40] = np.frombuffer(np.uint64(wire.frame_check(f)).tobytes(), np.uint8)
    with pytest.raises(WireError, match="padding"):
        wire.parse(f)


@pytest.mark.parametrize("offset", [5, 6, 7, 28, 29, 30, 31])
def test_a_nonzero_reserved_header_byte_is_refused_even_with_a_valid_check(offset):
    f = frame(13).copy()
    f[offset] = 0x40
    f[32:40] = np.frombuffer(np.uint64(wire.frame_check(f)).tobytes(), np.uint8)
    with pytest.raises(WireError, match=f"reserved header bytes .*expected zero .agent 3, round 7"):
        wire.parse(f)


def test_pack_refuses_a_payload_of_the_wrong_length():
    with pytest.raises(ValueError, match="need exactly 2"):
        wire.pack(wire.Kind.UPDATE, 0, 0, np.zeros(3, np.uint8), 13)


def _set(b, i, v):
    b[i] = v
    return b


def checked_frame(payload_bytes, digest=True):
    rng = np.random.default_rng(payload_bytes)
    data = rng.integers(0, 256, payload_bytes, dtype=np.uint8)
    return wire.pack(wire.Kind.UPDATE, 9, 4, data, 8 * payload_bytes, loss=0.5,
                     digest=bytes(rng.integers(0, 256, 32, dtype=np.uint8)) if digest else None)


@pytest.mark.parametrize("payload_bytes", [0, 5, 8, 61, 200])
def test_every_single_flipped_bit_of_a_frame_is_caught_by_the_check(payload_bytes):
    good = checked_frame(payload_bytes)
    assert wire.parse(good).nbits == 8 * payload_bytes
    for byte in range(len(good)):
        if byte < wire.CHECK_OFFSET:
            continue  # header fields: parse may refuse them for another reason first, checked below
        for bit in range(8):
            bad = good.copy()
            bad[byte] ^= 1 << bit
            with pytest.raises(WireError, match="check mismatch"):
                wire.parse(bad)
    for byte in range(wire.CHECK_OFFSET):  # the check alone, header included
        for bit in range(8):
            bad = good.copy()
            bad[byte] ^= 1 << bit
            assert wire.frame_check(bad) != wire.frame_check(good)


def test_swapped_words_and_reordered_bytes_are_caught():
    good = checked_frame(400)
    body = good[wire.HEADER_BYTES:]
    n_words = len(body) // 8
    for i in range(n_words):
        L = wire.LANES
        for j in (i + 1, i + L - 1, i + L, i + L + 1, i + 2 * L, n_words - 1):  # same and neighbouring lanes
            if j <= i or j >= n_words or np.array_equal(body[8 * i:8 * i + 8], body[8 * j:8 * j + 8]):
                continue
            bad = good.copy()
            b = bad[wire.HEADER_BYTES:]
            b[8 * i:8 * i + 8], b[8 * j:8 * j + 8] = body[8 * j:8 * j + 8].copy(), body[8 * i:8 * i + 8].copy()
            with pytest.raises(WireError, match="check mismatch"):
                wire.parse(bad)
    for i in range(0, len(body) - 1, 3):  # two neighbouring bytes swapped, words straddled
        if body[i] != body[i + 1]:
            bad = good.copy()
            bad[wire.HEADER_BYTES + i], bad[wire.HEADER_BYTES + i + 1] = body[i + 1], body[i]
            with pytest.raises(WireError, match="check mismatch"):
                wire.parse(bad)


PINNED_CHECK = 13670299392120326803  # wire version 5


def test_the_check_of_a_known_frame_is_pinned():
    # The check is part of the wire format: a change to it must change WIRE_VERSION.
    f = wire.pack(wire.Kind.UPDATE, 1, 2, np.arange(20, dtype=np.uint8), 160, loss=0.0)
    assert int.from_bytes(f[32:40].tobytes(), "little") == wire.frame_check(f) == PINNED_CHECK


def test_packing_into_a_buffer_gives_the_same_bytes_as_packing_anew():
    data = np.random.default_rng(1).integers(0, 256, 4099, dtype=np.uint8)
    fresh = wire.pack(wire.Kind.UPDATE, 3, 1, data, 8 * 4099)
    out = np.full(len(fresh), 7, np.uint8)
    assert np.array_equal(wire.pack(wire.Kind.UPDATE, 3, 1, data, 8 * 4099, out=out), fresh)
    unaligned = np.empty(4100, np.uint8)[1:]  # a payload that does not start on a word boundary
    unaligned[:] = data
    assert np.array_equal(wire.pack(wire.Kind.UPDATE, 3, 1, unaligned, 8 * 4099), fresh)


@pytest.mark.parametrize("d", [0, 1, 7, 512, 513, 5000])
def test_verifying_can_add_a_float32_payload_to_a_sum_in_the_same_pass(d):
    from psgrad.runtime.kernels import axpy

    rng = np.random.default_rng(d)
    x = rng.standard_normal(d).astype(np.float32)
    buf = wire.pack(wire.Kind.UPDATE, 2, 5, x.view(np.uint8), 32 * d, digest=bytes(32))
    f = wire.parse(buf, verify=False)
    acc = rng.standard_normal(d).astype(np.float32)
    expected = acc.copy()
    axpy(expected, 0.3, x)
    assert wire.verify_frame(buf, f, accumulate=(acc, 0.3)) is True
    assert np.array_equal(acc, expected)  # bit for bit the server's axpy
    if d:
        bad = buf.copy()
        bad[wire.HEADER_BYTES + 4 * d - 1] ^= 0x40
        with pytest.raises(WireError, match="check mismatch"):
            wire.verify_frame(bad, wire.parse(bad, verify=False), accumulate=(acc.copy(), 0.3))
    with pytest.raises(ValueError, match="accumulate"):
        wire.verify_frame(buf, f, accumulate=(np.zeros(d + 1, np.float32), 1.0))


@pytest.mark.parametrize("d", [1, 7, 512, 513, 5000])
def test_the_pass_that_adds_a_float32_payload_finds_a_nan_or_an_infinity_anywhere(d):
    rng = np.random.default_rng(d)
    big = np.float32(3e38)  # the largest exponent that is finite
    for i in sorted({i for i in (0, 1, d // 2, d - 2, d - 1) if 0 <= i < d}):  # a word alone, rows, an odd last one
        for bad in (np.nan, np.inf, -np.inf, big):
            x = rng.standard_normal(d).astype(np.float32)
            x[i] = bad
            buf = wire.pack(wire.Kind.UPDATE, 2, 5, x.view(np.uint8), 32 * d)
            finite = wire.verify_frame(buf, wire.parse(buf, verify=False), accumulate=(np.zeros(d, np.float32), 0.5))
            assert finite == (bad == big), (i, bad)


def _assert_every_two_flips_caught(good, bits):
    reference = wire.frame_check(good)
    for i, p in enumerate(bits):
        once = good.copy()
        once[p // 8] ^= 1 << (p % 8)
        for q in bits[i + 1:]:
            twice = once.copy()
            twice[q // 8] ^= 1 << (q % 8)
            assert wire.frame_check(twice) != reference, (p, q)


def test_every_two_flipped_bits_of_a_short_frame_are_caught():
    good = checked_frame(48, digest=False)  # 10 checked words, one per lane
    _assert_every_two_flips_caught(good, [8 * byte + bit for byte in range(len(good))
                                          if not wire.CHECK_OFFSET <= byte < wire.HEADER_BYTES for bit in range(8)])


def test_every_two_flipped_bits_in_two_words_of_one_lane_are_caught():
    good = checked_frame(8 * (wire.LANES + 4), digest=False)
    first = wire.HEADER_BYTES + 8 * 2  # checked word 4 + 2 = 6 and word 6 + LANES share a lane
    second = first + 8 * wire.LANES
    _assert_every_two_flips_caught(good, [8 * byte + bit for start in (first, second)
                                          for byte in range(start, start + 8) for bit in range(8)])


def test_the_documented_blind_spot_is_real():
    # docs/wire-format.md: bit 63 of word k with bits 63 and 31 of word k + LANES (same lane) cancel.
    good = checked_frame(400, digest=False)
    bad = good.copy()
    words = bad[wire.HEADER_BYTES:wire.HEADER_BYTES + 400].view("<u8")
    words[3] ^= np.uint64(1 << 63)
    words[3 + wire.LANES] ^= np.uint64((1 << 63) | (1 << 31))
    assert wire.frame_check(bad) == wire.frame_check(good)
