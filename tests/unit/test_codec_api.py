import numpy as np
import pytest

import psgrad


def test_every_registered_codec_builds_with_defaults_and_round_trips_shape():
    x = np.random.default_rng(0).standard_normal(300).astype(np.float32)
    for name in psgrad.codecs():
        c = psgrad.codec(name)
        enc = c.encode(x, psgrad.Key(seed=0, agent=1, round=2))
        assert len(enc.data) == (enc.nbits + 7) // 8
        out = c.decode(enc.data, enc.nbits, len(x), psgrad.Key(seed=0, agent=1, round=2))
        assert out.dtype == np.float32 and out.shape == x.shape


def test_unknown_codec_lists_the_known_ones():
    with pytest.raises(psgrad.ConfigError, match="known: .*fp32"):
        psgrad.codec("nope")


def test_unknown_codec_parameter_lists_the_valid_ones():
    with pytest.raises(psgrad.ConfigError, match="no parameter levels"):
        psgrad.codec("fp32", levels=3)


@pytest.mark.parametrize("name,bits", [("fp32", 32), ("fp16", 16)])
def test_float_codecs_cost_exactly_their_width_per_coordinate(name, bits):
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    enc = psgrad.codec(name).encode(x)
    assert enc.nbits == bits * 101


def test_fp32_is_lossless_and_fp16_rounds_to_half():
    x = np.random.default_rng(1).standard_normal(64).astype(np.float32)
    e = psgrad.codec("fp32").encode(x)
    assert np.array_equal(psgrad.codec("fp32").decode(e.data, e.nbits, 64), x)
    e = psgrad.codec("fp16").encode(x)
    assert np.array_equal(psgrad.codec("fp16").decode(e.data, e.nbits, 64), x.astype(np.float16).astype(np.float32))


def test_fixed_width_decoders_reject_a_wrong_length():
    with pytest.raises(psgrad.DecodeError, match="expected 320"):
        psgrad.codec("fp32").decode(np.zeros(40, np.uint8), 312, 10)


def test_fp32_decodes_into_a_given_buffer_even_in_place_and_other_codecs_ignore_it():
    x = np.random.default_rng(2).standard_normal(64).astype(np.float32)
    fp32 = psgrad.codec("fp32")
    e = fp32.encode(x)
    out = np.full(64, np.nan, np.float32)
    assert fp32.decode(e.data, e.nbits, 64, out=out) is out and np.array_equal(out, x)
    in_place = np.empty(64, np.float32)
    in_place.view(np.uint8)[:] = e.data  # the payload already lies in the output buffer
    assert fp32.decode(in_place.view(np.uint8), e.nbits, 64, out=in_place) is in_place
    assert np.array_equal(in_place, x)
    with pytest.raises(ValueError, match=r"out must be a contiguous float32\[64\]"):
        fp32.decode(e.data, e.nbits, 64, out=np.empty(63, np.float32))
    fp16 = psgrad.codec("fp16")
    e = fp16.encode(x)
    got = fp16.decode(e.data, e.nbits, 64, out=out)
    assert got is not out and np.array_equal(got, fp16.decode(e.data, e.nbits, 64))


def test_encoding_without_a_copy_gives_the_same_payload_and_fp32_shares_memory_read_only():
    x = np.random.default_rng(3).standard_normal(50).astype(np.float32)
    for name in psgrad.codecs():
        c = psgrad.codec(name)
        key = psgrad.Key(seed=1, agent=2, round=3)
        a, b = c.encode(x, key), c.encode(x, key, copy=False)
        assert a.nbits == b.nbits and np.array_equal(a.data, b.data)
    view = psgrad.codec("fp32").encode(x, copy=False).data
    assert np.shares_memory(view, x) and not view.flags.writeable
    assert not np.shares_memory(psgrad.codec("fp32").encode(x).data, x)
