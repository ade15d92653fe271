import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from psgrad.bitstream import bits, codes
from psgrad.bitstream.bits import BitReader, BitWriter, new_buffer
from psgrad.errors import DecodeError

CODES = {
    "gamma": (codes.write_gamma, codes.read_gamma, codes.gamma_len, 1),
    "delta": (codes.write_delta, codes.read_delta, codes.delta_len, 1),
    "omega": (codes.write_omega, codes.read_omega, codes.omega_len, 1),
}


def test_aligned_uint32_has_the_bytes_of_struct_pack():
    w = BitWriter(64).write(0xDEADBEEF, 32).write(7, 32)
    data, nbits = w.getvalue()
    assert nbits == 64
    assert data.tobytes() == struct.pack("<II", 0xDEADBEEF, 7)


def test_float32_round_trips_bit_exactly():
    for v in [0.0, -0.0, 1.5, -3.25e-38, 3.4e38, float("inf")]:
        data, nbits = BitWriter(32).write_f32(v).getvalue()
        assert data.tobytes() == struct.pack("<f", v)
        assert BitReader(data, nbits).read_f32() == np.float32(v)


@given(st.lists(st.tuples(st.integers(0, 64), st.integers(0, 2**64 - 1)), max_size=60))
@settings(max_examples=200, deadline=None)
def test_random_fields_round_trip_and_leave_padding_zero(fields):
    total = sum(n for n, _ in fields)
    w = BitWriter(total)
    for n, v in fields:
        w.write(v & ((1 << n) - 1), n)
    data, nbits = w.getvalue()
    assert nbits == total and len(data) == (total + 7) // 8
    if total % 8:
        assert data[-1] >> (total % 8) == 0
    r = BitReader(data, nbits)
    for n, v in fields:
        assert r.read(n) == v & ((1 << n) - 1)
    with pytest.raises(DecodeError):
        r.read(1)


def test_reader_refuses_a_buffer_shorter_than_the_declared_bits():
    with pytest.raises(DecodeError, match="declares 17 bits"):
        BitReader(np.zeros(2, np.uint8), 17)


def test_gamma_code_of_one_is_a_single_bit():
    buf = new_buffer(8)
    assert codes.write_gamma(buf, 0, 1) == 1
    assert buf[0] == 1


def test_omega_code_of_one_is_a_single_zero_bit():
    buf = new_buffer(8)
    assert codes.write_omega(buf, 0, 1) == 1
    assert buf[0] == 0


@pytest.mark.parametrize("name", sorted(CODES))
def test_integer_codes_are_exhaustively_correct_up_to_4096(name):
    write, read, length, lo = CODES[name]
    vals = list(range(lo, 4097))
    buf = new_buffer(sum(length(v) for v in vals))
    pos = 0
    for v in vals:
        nxt = write(buf, pos, v)
        assert nxt - pos == length(v)
        pos = nxt
    rp = 0
    for v in vals:
        got, rp = read(buf, pos, rp)
        assert got == v
    assert rp == pos


@pytest.mark.parametrize("name", sorted(CODES))
@given(st.lists(st.integers(1, 2**62), min_size=1, max_size=40))
@settings(max_examples=100, deadline=None)
def test_integer_codes_round_trip_large_values(name, vals):
    write, read, length, _ = CODES[name]
    buf = new_buffer(sum(length(v) for v in vals))
    pos = 0
    for v in vals:
        pos = write(buf, pos, v)
    rp = 0
    for v in vals:
        got, rp = read(buf, pos, rp)
        assert got == v


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=40), st.integers(0, 20))
@settings(max_examples=100, deadline=None)
def test_rice_code_round_trips_with_exact_length(vals, k):
    buf = new_buffer(sum(codes.rice_len(v, k) for v in vals))
    pos = 0
    for v in vals:
        nxt = codes.write_rice(buf, pos, v, k)
        assert nxt - pos == codes.rice_len(v, k)
        pos = nxt
    rp = 0
    for v in vals:
        got, rp = codes.read_rice(buf, pos, rp, k)
        assert got == v


@pytest.mark.parametrize("name", sorted(CODES))
def test_truncated_integer_codes_raise_decode_error(name):
    write, read, length, _ = CODES[name]
    buf = new_buffer(200)
    end = write(buf, 0, 123456789)
    for cut in range(end):
        with pytest.raises(DecodeError):
            read(buf, cut, 0)


def test_all_zero_gamma_stream_is_rejected_not_looped():
    with pytest.raises(DecodeError):
        codes.read_gamma(np.zeros(32, np.uint8), 256, 0)
