import numpy as np
import pytest

import psgrad
from psgrad.codecs.spherical import expected_cos

D = 1000
RNG = np.random.default_rng(0)
INPUTS = {
    "gaussian": RNG.standard_normal(D).astype(np.float32),
    "onehot": np.eye(1, D, 17, dtype=np.float32)[0],
    "student_t2": RNG.standard_t(2, D).astype(np.float32),
    "flat": np.ones(D, np.float32),
}
CODECS = [("spherical", {}), ("spherical", {"m": 16, "bits": 9, "gain_bits": 3}),
          ("sparse_dither", {}), ("sparse_dither", {"density": 0.2, "levels": 2})]


def _runs(codec, x, trials):
    out = np.empty((trials, len(x)))
    for t in range(trials):
        key = psgrad.Key(seed=5, agent=1, round=t)
        enc = codec.encode(x, key)
        out[t] = codec.decode(enc.data, enc.nbits, len(x), key)
    return out


@pytest.mark.parametrize("name,params", CODECS)
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_unbiased_operators_average_to_the_input_within_a_monte_carlo_confidence_bound(name, params, kind):
    x = INPUTS[kind]
    codec = psgrad.codec(name, **params)
    trials = 300
    runs = _runs(codec, x, trials)
    err = runs - x
    # ||mean error||^2 has expectation sum_i var_i / T; 5x that fails with probability < 1/5 (Markov),
    # and far less in practice since it is a sum of many independent-ish terms.
    var = err.var(axis=0, ddof=1).sum()
    assert np.sum(err.mean(axis=0) ** 2) <= 5 * var / trials + 1e-12
    # the declared omega bounds the measured mean squared error
    assert np.mean(np.sum(err ** 2, axis=1)) <= codec.omega(D) * np.sum(x.astype(np.float64) ** 2) * 1.05


def test_monte_carlo_bound_detects_a_biased_operator():
    x = INPUTS["gaussian"]
    biased = psgrad.codec("spherical", unbiased=False)
    runs = _runs(biased, x, 300)
    err = runs - x
    assert np.sum(err.mean(axis=0) ** 2) > 5 * err.var(axis=0, ddof=1).sum() / 300


def test_expected_cosines_match_a_direct_simulation():
    rng = np.random.default_rng(3)
    for m, bits in [(4, 4), (8, 6), (16, 8)]:
        kappa, cos2 = expected_cos(m, bits)
        C = rng.standard_normal((4000, 2 ** (bits - 1), m))
        t = np.abs(C[:, :, 0]) / np.linalg.norm(C, axis=2)
        best = t.max(axis=1)
        se = best.std() / np.sqrt(len(best))
        assert abs(best.mean() - kappa) < 4 * se
        assert abs((best ** 2).mean() - cos2) < 4 * (best ** 2).std() / np.sqrt(len(best))


def test_biased_spherical_beats_the_unbiased_error_and_has_no_omega():
    x = INPUTS["gaussian"]
    b, u = psgrad.codec("spherical", unbiased=False), psgrad.codec("spherical")
    eb = np.mean(np.sum((_runs(b, x, 30) - x) ** 2, axis=1))
    eu = np.mean(np.sum((_runs(u, x, 30) - x) ** 2, axis=1))
    assert eb < eu and b.omega(D) is None and not b.unbiased and u.unbiased


@pytest.mark.parametrize("m,bits,gain_bits,d", [(8, 6, 2, 1000), (16, 9, 3, 5), (1, 1, 1, 3), (8, 6, 2, 4096)])
def test_spherical_payload_has_exactly_32_bits_plus_gain_and_index_bits_per_block(m, bits, gain_bits, d):
    c = psgrad.codec("spherical", m=m, bits=bits, gain_bits=gain_bits)
    n = psgrad.bitstream.padded_length(d, 4096)
    enc = c.encode(RNG.standard_normal(d).astype(np.float32), psgrad.Key())
    assert enc.nbits == 32 + -(-n // m) * (bits + gain_bits) == c.payload_bits(d)
    assert len(enc.data) == (enc.nbits + 7) // 8


def test_default_spherical_costs_about_one_bit_per_coordinate_all_included():
    enc = psgrad.codec("spherical").encode(RNG.standard_normal(4096).astype(np.float32))
    assert 1.0 <= enc.nbits / 4096 <= 1.01


def test_sparse_dither_bit_count_is_the_sum_of_its_fields():
    from psgrad.bitstream.codes import delta_len, gamma_len, rice_len
    x = INPUTS["student_t2"]
    c = psgrad.codec("sparse_dither", density=0.05, levels=4)
    enc = c.encode(x, psgrad.Key(round=3))
    out = c.decode(enc.data, enc.nbits, D, psgrad.Key(round=3))
    pos = np.flatnonzero(out)
    reader = psgrad.bitstream.BitReader(enc.data, enc.nbits)
    lam = np.float32(reader.read_f32())
    top = np.float64(np.float32(reader.read_f32()))
    assert top == np.abs(x).max()
    step = (top - lam) / 4
    levels = np.rint((np.abs(out[pos]).astype(np.float64) - lam) / step).astype(int)
    reader.pos = 64 + delta_len(len(pos) + 1)
    r = reader.read(6)
    gaps = np.diff(np.concatenate(([-1], pos))) - 1
    expected = 64 + delta_len(len(pos) + 1) + 6 + sum(rice_len(g, r) + 1 + gamma_len(j + 1) for g, j in zip(gaps, levels))
    assert enc.nbits == expected


def test_sparse_dither_sends_a_one_hot_vector_exactly_in_a_few_dozen_bits():
    x = INPUTS["onehot"] * np.float32(-3.5)
    c = psgrad.codec("sparse_dither")
    enc = c.encode(x)
    assert enc.nbits < 100
    assert np.array_equal(c.decode(enc.data, enc.nbits, D), x)


@pytest.mark.parametrize("name", ["spherical", "sparse_dither"])
def test_zero_and_empty_vectors_round_trip(name):
    c = psgrad.codec(name)
    for d in (0, 7):
        enc = c.encode(np.zeros(d, np.float32))
        assert np.array_equal(c.decode(enc.data, enc.nbits, d), np.zeros(d, np.float32))


@pytest.mark.parametrize("name,params", CODECS)
def test_decoders_raise_only_decode_error_on_truncated_flipped_or_random_payloads(name, params):
    codec = psgrad.codec(name, **params)
    rng = np.random.default_rng(11)
    x = INPUTS["student_t2"]
    enc = codec.encode(x, psgrad.Key())
    cases = [(enc.data, n) for n in (0, 1, enc.nbits - 1, enc.nbits // 2, enc.nbits + 1)]
    for _ in range(60):
        flipped = enc.data.copy()
        flipped[rng.integers(len(flipped))] ^= np.uint8(1 << rng.integers(8))
        cases.append((flipped, enc.nbits))
        n = int(rng.integers(0, 2 * enc.nbits + 64))
        cases.append((rng.integers(0, 256, (n + 7) // 8, dtype=np.uint8), n))
    for data, n in cases:
        try:
            out = codec.decode(data[: (n + 7) // 8] if n <= 8 * len(data) else data, n, D, psgrad.Key())
        except psgrad.DecodeError:
            continue
        assert out.shape == (D,) and out.dtype == np.float32


@pytest.mark.parametrize("kwargs,match", [({"m": 0}, "m must be"), ({"bits": 17}, "bits must be"),
                                          ({"gain_bits": 0}, "gain_bits"), ({"rotation_block": 3}, "power of two")])
def test_spherical_rejects_bad_parameters_and_says_why(kwargs, match):
    with pytest.raises(ValueError, match=match):
        psgrad.codec("spherical", **kwargs)


def test_sparse_dither_rejects_bad_parameters_and_says_why():
    with pytest.raises(ValueError, match="density must be"):
        psgrad.codec("sparse_dither", density=0.0)
    with pytest.raises(ValueError, match="levels must be"):
        psgrad.codec("sparse_dither", levels=0)
