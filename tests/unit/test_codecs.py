"""Properties every registered codec must have, plus closed-form bit counts where they exist.

Codecs are taken from the registry, so a codec registered later is covered
without touching this file; ``CLOSED_FORM`` lists exact payload sizes for the
codecs whose size depends only on ``d`` and their parameters.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import psgrad
from psgrad.bitstream.codes import rice_len, rice_parameter
from psgrad.bitstream.hadamard import padded_length
from psgrad.codecs.buckets import bucket_count, bucket_l2, bucket_size
from psgrad.codecs.qsgd import _levels
from psgrad.codecs.sparse import count_k

NAMES = psgrad.codecs()
KEY = psgrad.Key(seed=11, agent=2, round=5)


def _pad_blocks(c, d):
    n = padded_length(max(1, d), c.block)
    return n + 32 * (n // min(n, c.block))


CLOSED_FORM = {
    "fp32": lambda c, d: 32 * d,
    "fp16": lambda c, d: 16 * d,
    "bf16": lambda c, d: 16 * d,
    "sign": lambda c, d: d,
    "scaled_sign": lambda c, d: d + 32,
    "natural": lambda c, d: 9 * d,
    "natural_dither": lambda c, d: d * (1 + c.levels.bit_length()) + 32 * bucket_count(d, c.bucket),
    "terngrad": lambda c, d: 8 * math.ceil(d / 5) + 32 * bucket_count(d, c.bucket),
    "randk": lambda c, d: 32 * count_k(d, c.k, c.ratio),
    "rotated_sign": _pad_blocks,
}
# codecs whose output does not scale with the input (sign(0) is +1)
SCALE_FREE = {"sign"}
# codecs whose number format cannot hold 1e-30 or 1e30
NARROW_RANGE = {"fp16"}


def roundtrip(c, x, key=KEY):
    enc = c.encode(x, key)
    return enc, c.decode(enc.data, enc.nbits, len(x), key)


vectors = st.integers(0, 300).flatmap(
    lambda d: st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=d, max_size=d))


@pytest.mark.parametrize("name", NAMES)
@given(values=vectors, seed=st.integers(0, 2**31))
@settings(max_examples=25, deadline=None)
def test_payload_is_exact_bytes_with_zero_padding_and_decodes_to_float32_of_length_d(name, values, seed):
    c = psgrad.codec(name)
    x = np.array(values, np.float32)
    x0 = x.copy()
    key = psgrad.Key(seed=seed, agent=1, round=3)
    enc, out = roundtrip(c, x, key)
    assert np.array_equal(x, x0), "encode must not modify its input"
    assert enc.data.dtype == np.uint8 and len(enc.data) == (enc.nbits + 7) // 8
    if enc.nbits % 8:
        assert enc.data[-1] >> (enc.nbits % 8) == 0
    assert out.dtype == np.float32 and out.shape == x.shape
    if name in CLOSED_FORM:
        assert enc.nbits == CLOSED_FORM[name](c, len(x))
    again = c.encode(x, key)
    assert again.nbits == enc.nbits and np.array_equal(again.data, enc.data), "same key, same bytes"


def test_every_codec_in_the_design_is_registered():
    expected = "fp32 fp16 bf16 qsgd natural natural_dither terngrad sign scaled_sign topk randk rotated_sign"
    assert set(expected.split()) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_codec_declares_unbiased_and_a_bound_of_the_right_kind(name):
    c = psgrad.codec(name)
    assert isinstance(c.unbiased, bool)
    if c.unbiased:
        assert c.alpha(1000) is None
    else:
        assert c.omega(1000) is None


@pytest.mark.parametrize("name", NAMES)
def test_zero_vector_and_length_one_and_length_zero_round_trip(name):
    c = psgrad.codec(name)
    for d in (0, 1, 100):
        enc, out = roundtrip(c, np.zeros(d, np.float32))
        assert out.shape == (d,) and np.isfinite(out).all()
        if name not in SCALE_FREE:
            assert not out.any(), f"{name} must decode the zero vector to zero"
    enc, out = roundtrip(c, np.array([-2.5], np.float32))
    assert out.shape == (1,) and np.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NARROW_RANGE])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_tiny_and_huge_magnitudes_decode_finite_with_the_usual_relative_error(name, scale):
    c = psgrad.codec(name)
    base = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    x = (base * np.float32(scale)).astype(np.float32)
    _, out = roundtrip(c, x)
    _, ref = roundtrip(c, base)
    assert np.isfinite(out).all()
    if name in SCALE_FREE:
        return
    # scale invariance up to rounding: the relative error at 1e+-30 matches the one at 1
    rel = np.linalg.norm(out.astype(np.float64) - x) / np.linalg.norm(x.astype(np.float64))
    rel_ref = np.linalg.norm(ref.astype(np.float64) - base) / np.linalg.norm(base)
    assert rel <= 2 * rel_ref + 1e-3


def _inputs(d):
    rng = np.random.default_rng(7)
    onehot = np.zeros(d, np.float32)
    onehot[d // 3] = 1.0
    return {
        "gaussian": rng.standard_normal(d).astype(np.float32),
        "student_t": rng.standard_t(2, d).astype(np.float32),
        "onehot": onehot,
        "flat": np.where(rng.random(d) < 0.5, -1.0, 1.0).astype(np.float32),
    }


def _samples(c, x, n):
    return np.array([roundtrip(c, x, psgrad.Key(seed=1, agent=0, round=r))[1] for r in range(n)], np.float64)


UNBIASED = [n for n in NAMES if psgrad.codec(n).unbiased]


@pytest.mark.parametrize("name", UNBIASED)
@pytest.mark.parametrize("kind", ["gaussian", "student_t"])
def test_unbiased_codecs_have_mean_x_within_a_monte_carlo_bound(name, kind):
    # If E[C(x)] = x, then E||mean_N - x||^2 = E||C(x) - x||^2 / N: the ratio of the two
    # empirical quantities is about 1 (a sum over 96 coordinates), and above 2.5 with
    # probability well below 1e-4. A bias b shows once ||b||^2 > 2.5 E||C(x) - x||^2 / N.
    c = psgrad.codec(name)
    x = _inputs(96)[kind]
    n = 1500
    s = _samples(c, x, n)
    err = ((s - x) ** 2).sum(1).mean()
    if err == 0:
        return
    stat = ((s.mean(0) - x) ** 2).sum() / (err / n)
    assert stat < 2.5, f"{name}: mean of {n} decodes is {stat:.2f} expected squared errors away from x"


@pytest.mark.parametrize("name", UNBIASED)
@pytest.mark.parametrize("kind", ["gaussian", "student_t", "onehot", "flat"])
def test_unbiased_codecs_stay_within_their_declared_omega(name, kind):
    c = psgrad.codec(name)
    d = 256
    if c.omega(d) is None:
        pytest.skip(f"{name} declares no omega")
    x = _inputs(d)[kind]
    e = ((_samples(c, x, 300) - x) ** 2).sum(1) / (x.astype(np.float64) ** 2).sum()
    # one-sided 4-standard-error bound on the mean of 300 samples
    low = e.mean() - 4 * e.std(ddof=1) / np.sqrt(len(e))
    assert low <= c.omega(d) * (1 + 1e-6), f"{name}: empirical omega {e.mean():.4f} > {c.omega(d)}"


BIASED_WITH_ALPHA = [n for n in NAMES if not psgrad.codec(n).unbiased and psgrad.codec(n).alpha(100) is not None]


@pytest.mark.parametrize("name", BIASED_WITH_ALPHA)
@pytest.mark.parametrize("kind", ["gaussian", "student_t", "onehot", "flat"])
def test_biased_codecs_contract_by_their_declared_alpha(name, kind):
    c = psgrad.codec(name)
    d = 256
    x = _inputs(d)[kind]
    s = _samples(c, x, 20)
    err = ((s - x) ** 2).sum(1).mean() / (x.astype(np.float64) ** 2).sum()
    assert err <= (1 - c.alpha(d)) * (1 + 1e-5), f"{name}: error {err} > 1 - alpha"


@pytest.mark.parametrize("name,params,d,bits", [
    ("qsgd", dict(levels=2, bucket=4), 4, 32 + 1 + 1 + 1 + 1),
    ("topk", dict(k=1), 1, 32 + 1),
])
def test_tiny_variable_length_payloads_have_their_hand_counted_size(name, params, d, bits):
    # qsgd, x = e_0: norm 1, level 2 at position 0: omega(1)=1 bit, sign 1, omega(2)=3, end omega(4)=...
    c = psgrad.codec(name, **params)
    x = np.zeros(d, np.float32)
    x[0] = 1.0
    enc, out = roundtrip(c, x)
    if name == "qsgd":
        # norm 32 + gap omega(1) 1 + sign 1 + level omega(2) 3 + end omega(4) 6 bits
        assert enc.nbits == 32 + 1 + 1 + 3 + 6
    else:
        assert enc.nbits == bits
    assert np.array_equal(out, x)


def test_topk_keeps_the_largest_magnitudes_and_codes_gaps_with_the_derived_rice_parameter():
    rng = np.random.default_rng(5)
    d, k = 5000, 50
    x = rng.standard_normal(d).astype(np.float32)
    enc, out = roundtrip(psgrad.codec("topk", k=k), x)
    keep = np.sort(np.argsort(-np.abs(x), kind="stable")[:k])
    assert np.array_equal(np.flatnonzero(out), keep)
    assert np.array_equal(out[keep], x[keep])
    r = rice_parameter(k, d)
    gaps = np.diff(np.concatenate([[-1], keep])) - 1
    assert enc.nbits == sum(int(rice_len(int(g), r)) for g in gaps) + 32 * k


def test_topk_breaks_ties_towards_lower_indices():
    x = np.ones(10, np.float32)
    _, out = roundtrip(psgrad.codec("topk", k=3), x)
    assert np.array_equal(np.flatnonzero(out), [0, 1, 2])


def test_randk_positions_are_k_distinct_and_uniform():
    d, k = 20, 5
    c = psgrad.codec("randk", k=k)
    x = np.arange(1, d + 1, dtype=np.float32)
    counts = np.zeros(d)
    n = 4000
    for r in range(n):
        _, out = roundtrip(c, x, psgrad.Key(round=r))
        nz = np.flatnonzero(out)
        assert len(nz) == k
        np.testing.assert_allclose(out[nz], x[nz] * d / k, rtol=1e-6)
        counts[nz] += 1
    # each position is kept with probability k/d; binomial sd = sqrt(n p (1-p)), 5 sd bound
    p = k / d
    assert np.abs(counts - n * p).max() < 5 * math.sqrt(n * p * (1 - p))


def test_scaled_sign_sends_the_mean_magnitude():
    x = np.array([1.0, -3.0, 0.5, -0.5], np.float32)
    _, out = roundtrip(psgrad.codec("scaled_sign"), x)
    np.testing.assert_array_equal(out, np.float32(1.25) * np.sign(x))


def test_natural_rounds_to_adjacent_powers_of_two_and_keeps_exact_ones():
    x = np.array([1.0, -0.25, 3.0, 0.0, 2.0**-126, 1e-40], np.float32)
    for r in range(50):
        _, out = roundtrip(psgrad.codec("natural"), x, psgrad.Key(round=r))
        assert out[0] == 1.0 and out[1] == -0.25 and out[3] == 0.0 and out[4] == 2.0**-126
        assert out[2] in (2.0, 4.0) and out[5] in (0.0, 2.0**-126)


def test_bf16_matches_torch_rounding():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32) * 1e3
    _, out = roundtrip(psgrad.codec("bf16"), x)
    assert np.array_equal(out, torch.from_numpy(x).bfloat16().float().numpy())


def test_fp16_matches_numpy_rounding_across_the_half_range():
    u = np.arange(0x33000000 - 4096, 0x47800000 + 4096, 997, dtype=np.uint32)
    x = np.concatenate([u, u | 0x80000000]).view(np.float32)
    enc, out = roundtrip(psgrad.codec("fp16"), x)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16)
    assert np.array_equal(enc.data.view(np.uint16), ref.view(np.uint16))
    assert np.array_equal(out, ref.astype(np.float32))


def test_terngrad_sends_five_ternary_digits_per_byte():
    c = psgrad.codec("terngrad")
    x = np.array([1.0, -1.0, 0.0, 1.0, -1.0, 1.0], np.float32)  # all kept with probability 1 or 0
    enc, out = roundtrip(c, x)
    assert enc.data[0] == 1 + 2 * 3 + 0 * 9 + 1 * 27 + 2 * 81 and enc.data[1] == 1
    assert np.array_equal(out, x)


def test_rotated_sign_is_exact_on_a_one_hot_vector():
    x = np.zeros(1024, np.float32)
    x[100] = 3.0
    _, out = roundtrip(psgrad.codec("rotated_sign"), x)
    np.testing.assert_allclose(out, x, atol=1e-5)


@pytest.mark.parametrize("name,params", [
    ("qsgd", dict(levels=0)), ("qsgd", dict(bucket=-1)), ("natural_dither", dict(levels=65)),
    ("topk", dict(ratio=0)), ("randk", dict(k=-1)), ("rotated_sign", dict(block=100)), ("terngrad", dict(bucket=1.5)),
])
def test_bad_hyperparameters_are_refused_with_the_reason(name, params):
    with pytest.raises(ValueError, match=next(iter(params))):
        psgrad.codec(name, **params)


@pytest.mark.parametrize("levels,bucket,d,density,tail,long_codes", [
    (4, 512, 5000, 1.0, 30.0, False),   # the usual stream: nearly every field in one table lookup
    (127, 64, 6000, 1.0, 1.0, True),    # levels up to 127: long level codes
    (2, 2048, 9000, 0.01, 3.0, True),   # sparse: gaps far beyond the table's
    (1, 4, 1001, 0.5, 3.0, False),      # tiny buckets, d not a multiple of the bucket
])
def test_qsgd_decodes_exactly_the_levels_its_encoder_chose(levels, bucket, d, density, tail, long_codes):
    rng = np.random.default_rng(levels)
    x = (rng.standard_t(tail, d) * (rng.random(d) < density)).astype(np.float32)
    c = psgrad.codec("qsgd", levels=levels, bucket=bucket)
    b = bucket_size(d, bucket)
    norms = bucket_l2(x, b).astype(np.float32)
    lev = np.empty(d, np.int8)
    _levels(x, b, norms, levels, np.uint64(KEY.stream("qsgd")), lev, np.empty((d + 63) // 64, np.uint64))
    unit = np.repeat(norms.astype(np.float64) / levels, b)[:d]
    expected = (np.abs(lev) * unit).astype(np.float32) * np.where(lev < 0, np.float32(-1), np.float32(1))
    enc, out = roundtrip(c, x)
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))
    gaps = np.diff(np.flatnonzero(lev))
    assert (np.abs(lev).max() >= 64 or gaps.max() > 64) == long_codes  # beyond the one-lookup fields


def test_qsgd_refuses_a_level_above_its_levels_and_any_level_in_a_bucket_of_norm_zero():
    one_hot = np.array([1, 0, 0, 0], np.float32)
    for levels, short in ((2, True), (127, False)):  # a field in one table lookup, and code by code
        enc = psgrad.codec("qsgd", levels=levels, bucket=4).encode(one_hot, KEY)
        with pytest.raises(psgrad.DecodeError, match="level above"):
            psgrad.codec("qsgd", levels=levels - 1, bucket=4).decode(enc.data, enc.nbits, 4, KEY)
        zero_norm = enc.data.copy()
        zero_norm[:4] = 0
        with pytest.raises(psgrad.DecodeError, match="norm 0"):
            psgrad.codec("qsgd", levels=levels, bucket=4).decode(zero_norm, enc.nbits, 4, KEY)
        assert (enc.nbits - 32 - 6 <= 13) == short  # field after the norm, before the end code omega(4)


F32_MAX = float(np.finfo(np.float32).max)


def _extreme_inputs(d):
    """Finite inputs whose norms, squares or rotated sums overflow float32."""
    mixed = np.full(d, 3e38, np.float32)
    mixed[::2] *= -1
    one = np.full(d, 1e-3, np.float32)
    one[d // 2] = -F32_MAX
    return {"3e38": np.full(d, 3e38, np.float32), "max": np.full(d, F32_MAX, np.float32), "mixed": mixed,
            "one huge": one}


@pytest.mark.parametrize("name", NAMES)
def test_every_finite_input_up_to_float32s_maximum_encodes_and_decodes_without_nan(name):
    import warnings

    c = psgrad.codec(name)
    for d in (1, 2, 3, 7, 64, 1000):
        for what, x in _extreme_inputs(d).items():
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no overflow warning either
                enc = c.encode(x, KEY)
                out = c.decode(enc.data, enc.nbits, d, KEY)
            # inf only where the decoded value itself lies beyond float32 (a fp16 of 3e38, d/k times 3e38)
            assert not np.isnan(out).any(), (d, what)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "fp16"])  # fp16's range ends at 65504
def test_inputs_whose_squares_overflow_float32_decode_to_finite_values(name):
    c = psgrad.codec(name)
    rng = np.random.default_rng(4)
    for d in (1, 5, 300, 5000):
        x = (rng.standard_normal(d) * 1e30).astype(np.float32)
        x[d // 3] = -3e33
        enc = c.encode(x, KEY)
        out = c.decode(enc.data, enc.nbits, d, KEY)
        assert np.isfinite(out).all(), d
        if name == "fp32":
            assert np.array_equal(out, x)
