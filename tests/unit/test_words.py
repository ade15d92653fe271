import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from psgrad.bitstream import codes, words as W
from psgrad.bitstream.bits import new_buffer, write_bits
from psgrad.bitstream.hadamard import fwht
from psgrad.errors import DecodeError

FIELDS = st.lists(st.tuples(st.sampled_from(["raw", "gamma", "omega", "rice"]), st.integers(1, 2**40),
                            st.integers(0, 12)), max_size=40)


@given(FIELDS)
@settings(max_examples=150, deadline=None)
def test_word_writers_produce_the_bytes_of_the_byte_writers_and_read_back(fields):
    total = sum(max(codes.gamma_len(v), codes.omega_len(v), 64, codes.rice_len(v % 5000, k)) for _, v, k in fields) + 64
    buf = new_buffer(total)
    words = W.new_words(total)
    pb = pw = 0
    for kind, v, k in fields:
        if kind == "raw":
            pb = write_bits(buf, pb, v, 41)
            pw = W.put(words, pw, v, 41)
        elif kind == "gamma":
            pb, pw = codes.write_gamma(buf, pb, v), W.put_gamma(words, pw, v)
        elif kind == "omega":
            pb, pw = codes.write_omega(buf, pb, v), W.put_omega(words, pw, v)
        else:
            v = v % 5000
            pb, pw = codes.write_rice(buf, pb, v, k), W.put_rice(words, pw, v, k)
    assert pb == pw
    assert np.array_equal(W.words_to_bytes(words, pw), buf[: (pb + 7) // 8])
    loaded = W.load_words(buf[: (pb + 7) // 8], pb)
    pos = 0
    for kind, v, k in fields:
        if kind == "raw":
            got, pos = W.get_checked(loaded, pb, pos, 41)
        elif kind == "gamma":
            got, pos = W.get_gamma(loaded, pb, pos)
        elif kind == "omega":
            got, pos = W.get_omega(loaded, pb, pos)
        else:
            v = v % 5000
            got, pos = W.get_rice(loaded, pb, pos, k)
        assert int(got) == v
    assert pos == pb


@pytest.mark.parametrize("reader", [W.get_gamma, W.get_omega, lambda w, e, p: W.get_rice(w, e, p, 3)])
def test_truncated_codes_raise_decode_error_and_never_read_the_zero_tail(reader):
    words = W.new_words(256)
    end = W.put_gamma(words, 0, 1000) if reader is W.get_gamma else (
        W.put_omega(words, 0, 1000) if reader is W.get_omega else W.put_rice(words, 0, 1000, 3))
    for cut in range(end):
        loaded = W.load_words(W.words_to_bytes(words, end), cut)
        with pytest.raises(DecodeError):
            reader(loaded, cut, 0)


@given(st.integers(1, 32), st.integers(0, 300), st.integers(0, 2**32))
@settings(max_examples=100, deadline=None)
def test_fixed_width_fields_pack_and_unpack(width, n, seed):
    vals = np.random.default_rng(seed).integers(0, 2**width, n, dtype=np.uint64)
    out = np.zeros(n * width // 64 + 2, np.uint64)
    assert W.pack_fixed(vals, width, out) == n * width
    back = np.empty(n, np.uint64)
    W.unpack_fixed(out, width, back)
    assert np.array_equal(back, vals)


@given(st.integers(0, 500), st.integers(0, 200), st.integers(0, 2**32))
@settings(max_examples=100, deadline=None)
def test_bulk_word_copy_at_any_offset_round_trips(offset, nbits, seed):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 2**63, (nbits + 63) // 64 + 1, dtype=np.uint64)
    if nbits & 63:
        src[nbits // 64] &= np.uint64((1 << (nbits & 63)) - 1)
    src[(nbits + 63) // 64:] = 0
    words = W.new_words(offset + nbits)
    assert W.put_words(words, offset, src, nbits) == offset + nbits
    dst = np.zeros_like(src)
    W.get_words(words, offset, nbits, dst)
    assert np.array_equal(dst, src)


def test_signs_pack_64_per_word_and_unpack_to_the_magnitude():
    x = np.random.default_rng(0).standard_normal(200).astype(np.float32)
    words = W.new_words(7 + 200)
    assert W.pack_signs(x, words, 7) == 207
    out = np.empty(200, np.float32)
    W.unpack_signs(words, 7, out, 2.5)
    assert np.array_equal(out, np.where(x < 0, -2.5, 2.5).astype(np.float32))


@pytest.mark.parametrize("count,span", [(1, 1000), (10, 1000), (100, 1000), (500, 1000), (1, 10**5), (999, 1000)])
def test_rice_parameter_minimises_the_expected_length_of_geometric_gaps(count, span):
    q = 1 - count / span
    g = np.arange(0, 60 * span // count + 100)
    pmf = (1 - q) * q ** g

    def expected(k):
        return float((pmf * ((g >> k) + 1 + k)).sum())

    k = codes.rice_parameter(count, span)
    assert expected(k) <= min(expected(j) for j in range(30)) + 1e-9


def test_fast_fwht_is_bit_identical_to_the_radix_2_definition():
    for n in [1, 2, 4, 8, 16, 32, 64, 512, 4096]:
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        ref = x.copy()
        h = 1
        while h < n:
            for i in range(0, n, 2 * h):
                a, b = ref[i:i + h].copy(), ref[i + h:i + 2 * h].copy()
                ref[i:i + h], ref[i + h:i + 2 * h] = a + b, a - b
            h *= 2
        fwht(x)
        assert np.array_equal(x, ref)


@given(st.integers(1, 2**49))
@settings(max_examples=200, deadline=None)
def test_omega_code_as_a_value_writes_the_bits_of_put_omega(n):
    a, b = W.new_words(128), W.new_words(128)
    code, length = W.omega_code(n)
    assert length == codes.omega_len(n) == W.put_omega(a, 0, n)
    assert W.put(b, 0, code, length) == length and np.array_equal(a, b)


def test_omega_tables_encode_and_decode_every_small_value():
    for n in range(1, W.OMEGA_TABLE):
        code, length = W.omega_code(n)
        assert (int(W.OMEGA_CODE[n]), int(W.OMEGA_LEN[n])) == (int(code), length)
    rng = np.random.default_rng(0)
    for window in range(1 << W.OMEGA_PEEK):
        words = np.array([window | (int(rng.integers(0, 2**50)) << W.OMEGA_PEEK), 0, 0], np.uint64)
        e = int(W.OMEGA_DEC[window])
        try:
            n, pos = W.get_omega(words, 128, 0)
        except DecodeError:  # a prefix of a code over 63 bits: certainly longer than the window
            n, pos = 0, 64
        if pos <= W.OMEGA_PEEK:
            assert e == (int(n) << 8) | pos
        else:
            assert e == 0


@given(st.lists(st.tuples(st.integers(1, 64), st.integers(0, 2**64 - 1)), max_size=60))
@settings(max_examples=150, deadline=None)
def test_register_writer_produces_the_stream_of_put_into_an_unzeroed_buffer(fields):
    total = sum(n for n, _ in fields)
    ref = W.new_words(total)
    out = np.full(total // 64 + 2, 0xA5A5A5A5A5A5A5A5, np.uint64)  # garbage: the writer must not OR into it
    pos, w, acc, nacc = 0, 0, np.uint64(0), 0
    for n, v in fields:
        v = np.uint64(v & ((1 << n) - 1))
        pos = W.put(ref, pos, v, n)
        w, acc, nacc = W.sink_put(out, w, np.uint64(acc), nacc, v, n)  # numba hands uint64 back as int
    assert W.sink_flush(out, w, acc, nacc) == pos == total
    assert np.array_equal(W.words_to_bytes(out, pos), W.words_to_bytes(ref, pos))
    if pos & 7:
        assert W.words_to_bytes(out, pos)[-1] >> (pos & 7) == 0  # padding bits of the last byte are zero
