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


def _base_with_signed_zeros(d, rng):
    base = rng.standard_normal(d).astype(np.float32)
    base[::5] = 0.0
    base[1::5] = -0.0
    return base


def _same_add(got, base, expected):
    """``got`` equals ``expected`` bit for bit, except that a ``-0.0`` of ``base`` may stay ``-0.0``
    where ``expected`` has ``+0.0`` (a codec that skips a coordinate adds nothing there)."""
    g, e = got.view(np.uint32), expected.view(np.uint32)
    kept = (base.view(np.uint32) == np.uint32(0x80000000)) & (g == g.dtype.type(0x80000000)) & (e == 0)
    assert np.array_equal(np.where(kept, np.uint32(0), g), e)


@pytest.mark.parametrize("name", psgrad.codecs())
def test_decode_add_adds_the_decoded_vector_as_a_float32_sum(name):
    rng = np.random.default_rng(7)
    c = psgrad.codec(name)
    key = psgrad.Key(seed=1, agent=2, round=3)
    for d in (0, 1, 5, 511, 512, 513, 1300):
        x = rng.standard_t(3, d).astype(np.float32)
        x[: d // 2] = 0.0  # whole zero buckets for the bucketed codecs (d = 1300)
        enc = c.encode(x, key)
        base = _base_with_signed_zeros(d, rng)
        out = base.copy()
        assert c.decode_add(enc.data, enc.nbits, d, key, out) is out
        _same_add(out, base, base + c.decode(enc.data, enc.nbits, d, key))


@pytest.mark.parametrize("name", psgrad.codecs())
def test_decode_add_refuses_exactly_the_payloads_decode_refuses(name):
    rng = np.random.default_rng(8)
    c = psgrad.codec(name)
    key = psgrad.Key(seed=1, agent=2, round=4)
    d = 70
    enc = c.encode(rng.standard_normal(d).astype(np.float32), key)
    cases = [(enc.data, n) for n in (enc.nbits - 1, enc.nbits + 1, enc.nbits + 9) if n >= 0]
    for _ in range(150):
        data = np.append(enc.data, np.uint8(0)).copy()
        b = int(rng.integers(0, max(1, enc.nbits)))
        data[b >> 3] ^= np.uint8(1 << (b & 7))
        cases.append((data, enc.nbits))
    for data, nbits in cases:
        try:
            expected = c.decode(data, nbits, d, key)
        except psgrad.DecodeError:
            with pytest.raises(psgrad.DecodeError):
                c.decode_add(data, nbits, d, key, np.zeros(d, np.float32))
            continue
        base = _base_with_signed_zeros(d, rng)
        with np.errstate(all="ignore"):  # a flipped exponent bit may decode to inf
            _same_add(c.decode_add(data, nbits, d, key, base.copy()), base, base + expected)


def test_decode_add_wants_a_writable_contiguous_float32_of_length_d():
    c = psgrad.codec("qsgd")
    enc = c.encode(np.ones(8, np.float32))
    for out in (np.zeros(7, np.float32), np.zeros(8, np.float64), np.zeros(16, np.float32)[::2]):
        with pytest.raises(ValueError, match="float32\\[8\\]"):
            c.decode_add(enc.data, enc.nbits, 8, psgrad.Key(), out)
    out = np.zeros(8, np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        c.decode_add(enc.data, enc.nbits, 8, psgrad.Key(), out)


def test_codecs_that_decode_into_out_directly_say_that_they_add_in_place():
    in_place = {name for name in psgrad.codecs() if psgrad.codec(name).adds_in_place}
    assert in_place == {"fp32", "fp16", "qsgd", "topk", "randk", "sparse_dither"}
