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
