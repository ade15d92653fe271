"""The rANS coder: byte-for-byte against a plain-integer reference, exact lengths, round trips, and fuzzing."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from psgrad.bitstream import rans
from psgrad.bitstream.words import load_words, new_words
from psgrad.errors import DecodeError

R = rans.STATE_BITS


def reference_encode(symbols, freq):
    """The layout of the module docstring, with Python integers and a string of bits: ``(bytes, nbits)``."""
    prec = sum(freq).bit_length() - 1
    cum = [sum(freq[:s]) for s in range(len(freq))]
    x, fields = 1 << R, []
    for s in reversed(symbols):
        f = freq[s]
        n = next(n for n in range(R + 1) if f << (R - prec) <= x >> n < 2 * f << (R - prec))
        fields.append(format(x & ((1 << n) - 1), f"0{n}b")[::-1] if n else "")
        y = x >> n
        x = (y // f << prec) + y % f + cum[s]
    bits = format(x - (1 << R), f"0{R}b")[::-1] + "".join(reversed(fields))  # least significant bit first
    data = bytes(int(bits[i:i + 8][::-1], 2) for i in range(0, len(bits), 8))
    return np.frombuffer(data, np.uint8), len(bits)


def _random_case(rng, n, alphabet, prec):
    p = rng.dirichlet(np.full(alphabet, 0.3))
    freq = rans.frequencies(p, prec)
    live = np.flatnonzero(freq)
    symbols = rng.choice(live, n, p=freq[live] / freq.sum())
    return symbols, freq


def test_a_known_vector():
    # freq (2, 1, 1) of 4, cum (0, 2, 3), coded last to first from x = 2^31:
    # s=0: shift out 1 bit (0), x = 2^31;   s=2: shift out 2 bits (00), x = 2^31 + 3;
    # s=1: shift out 2 bits (11), x = 2^31 + 2;   s=0: shift out 1 bit (0), x = 2^31 + 1.
    # Stream: state 1 in 31 bits, then the fields of symbols 0..3: 0, 11, 00, 0 -> bytes 01 00 00 00 03
    data, nbits = rans.encode_bytes([0, 1, 2, 0], [2, 1, 1])
    assert nbits == R + 1 + 2 + 2 + 1 == 37
    ref, ref_bits = reference_encode([0, 1, 2, 0], [2, 1, 1])
    assert nbits == ref_bits and data.tobytes() == ref.tobytes() == bytes.fromhex("0100000003")
    assert list(rans.decode_bytes(data, nbits, 4, [2, 1, 1])) == [0, 1, 2, 0]


def test_a_uniform_alphabet_of_2_to_the_k_symbols_costs_exactly_k_bits_each():
    rng = np.random.default_rng(0)
    for k in (1, 3, 8):
        symbols = rng.integers(0, 1 << k, 500)
        data, nbits = rans.encode_bytes(symbols, np.full(1 << k, 1 << (12 - k)))
        assert nbits == R + k * 500
        assert len(data) == (nbits + 7) // 8 and (nbits % 8 == 0 or data[-1] >> (nbits % 8) == 0)


def test_a_certain_symbol_costs_nothing_and_the_empty_stream_is_the_state_alone():
    assert rans.encode_bytes(np.zeros(1000, np.int64), [16, 0])[1] == R
    data, nbits = rans.encode_bytes(np.zeros(0, np.int64), [1, 1])
    assert nbits == R and data.tobytes() == bytes(4) and len(rans.decode_bytes(data, nbits, 0, [1, 1])) == 0


@given(st.integers(0, 400), st.integers(1, 40), st.integers(6, 16), st.integers(0, 2**32))
@settings(max_examples=150, deadline=None)
def test_random_streams_match_the_reference_byte_for_byte_and_round_trip(n, alphabet, prec, seed):
    if alphabet > 1 << prec:
        return
    symbols, freq = _random_case(np.random.default_rng(seed), n, alphabet, prec)
    data, nbits = rans.encode_bytes(symbols, freq)
    ref, ref_bits = reference_encode(list(symbols), [int(f) for f in freq])
    f, cum, _, _ = rans.model(freq)
    assert nbits == ref_bits == rans.encoded_bits(symbols.astype(np.int64), f, cum, prec)
    assert data.tobytes() == ref.tobytes()
    assert np.array_equal(rans.decode_bytes(data, nbits, n, freq), symbols)
    # the length is the information content plus at most the state and a rounding of the coder
    info = -sum(math.log2(freq[s] / freq.sum()) for s in symbols)
    assert info - 1 <= nbits - R <= info + 1 + 1e-3 * n


def test_a_long_skewed_stream_has_the_length_encoded_bits_predicts_and_round_trips():
    # long enough for the states where the shift count depends on the cumulative frequencies of earlier symbols
    symbols = np.random.default_rng(3).choice(3, 2 * 10**6, p=[0.96, 0.02, 0.02]).astype(np.int8)
    f, cum, slot_sym, prec = rans.model(rans.frequencies([0.96, 0.02, 0.02], 12))
    nbits = rans.encoded_bits(symbols, f, cum, prec)
    words = new_words(nbits)
    assert rans.encode(symbols, f, cum, prec, words, 0) == nbits
    out = np.empty(len(symbols), np.int8)
    assert rans.decode(words, nbits, 0, f, cum, slot_sym, prec, out) == nbits
    assert np.array_equal(out, symbols)


def test_the_stream_appends_at_any_bit_position_of_a_word_buffer():
    rng = np.random.default_rng(4)
    symbols, freq = _random_case(rng, 300, 5, 12)
    f, cum, slot_sym, prec = rans.model(freq)
    alone, nbits = rans.encode_bytes(symbols, freq)
    for pos in (0, 1, 63, 64, 100):
        words = new_words(pos + nbits)
        assert rans.encode(symbols, f, cum, prec, words, pos) == pos + nbits
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")
        assert not bits[:pos].any() and not bits[pos + nbits:].any()
        assert np.array_equal(bits[pos:pos + nbits], np.unpackbits(alone, bitorder="little")[:nbits])
        out = np.empty(300, np.int64)
        assert rans.decode(words, pos + nbits, pos, f, cum, slot_sym, prec, out) == pos + nbits
        assert np.array_equal(out, symbols)


def test_frequencies_are_deterministic_sum_to_the_total_and_keep_every_possible_symbol():
    p = np.array([0.5, 1e-9, 0.0, 0.3, 0.2 - 1e-9])
    f = rans.frequencies(p, 10)
    assert f.sum() == 1024 and f[1] == 1 and f[2] == 0 and (f[[0, 3, 4]] > 0).all()
    assert np.array_equal(f, rans.frequencies(p.copy(), 10))
    assert abs(f[0] / 1024 - 0.5) < 2 / 1024
    for bad, match in [([-1, 2], "non-negative"), ([0, 0], "not all 0"), ([np.nan], "finite")]:
        with pytest.raises(ValueError, match=match):
            rans.frequencies(bad, 8)
    with pytest.raises(ValueError, match="do not fit"):
        rans.frequencies(np.ones(300), 8)
    with pytest.raises(ValueError, match="sum to 2"):
        rans.model([3, 2])


def test_a_symbol_of_frequency_zero_cannot_be_coded():
    with pytest.raises(ValueError, match="frequency 0"):
        rans.encode_bytes([0, 1], [4, 0])


def test_truncated_extended_and_corrupted_streams_raise_decode_error_only():
    rng = np.random.default_rng(7)
    symbols, freq = _random_case(rng, 200, 6, 12)
    data, nbits = rans.encode_bytes(symbols, freq)
    f, cum, slot_sym, prec = rans.model(freq)
    for cut in range(nbits + 40):
        if cut == nbits:
            continue
        buf = np.zeros((cut + 7) // 8 + 1, np.uint8)
        k = min(len(data), len(buf))
        buf[:k] = data[:k]
        with pytest.raises(DecodeError):
            rans.decode_bytes(buf, cut, 200, freq)
    refused = 0
    for trial in range(2000):
        buf = data.copy()
        for b in rng.integers(0, nbits, rng.integers(1, 4)):
            buf[b >> 3] ^= np.uint8(1 << (b & 7))
        try:
            out = rans.decode_bytes(buf, nbits, 200, freq)
        except DecodeError:
            refused += 1
            continue
        assert out.shape == (200,) and (freq[out] > 0).all()
    assert refused >= 1990  # the final-state check catches damage with probability about 1 - 2^-31
    for trial in range(500):  # random bytes, random lengths: never a read past the end
        n = int(rng.integers(0, 400))
        buf = rng.integers(0, 256, (n + 7) // 8, dtype=np.uint8)
        out = np.empty(int(rng.integers(0, 300)), np.int64)
        try:
            rans.decode(load_words(buf, n), n, 0, f, cum, slot_sym, prec, out)
        except DecodeError:
            pass
