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
    "two_hot": np.eye(1, D, 3, dtype=np.float32)[0] + np.eye(1, D, 600, dtype=np.float32)[0] * 2,
}
CODECS = [("spherical", {}), ("spherical", {"m": 16, "bits": 9, "gain_bits": 3}),
          ("spherical", {"code": "trellis", "m": 32, "bits": 64, "states": 4, "gain_bits": 2}),
          ("sparse_dither", {}), ("sparse_dither", {"density": 0.2, "levels": 2}),
          ("sparse_dither", {"density": 1.0}), ("sparse_dither", {"density": 0.02, "rotate": False}),
          ("rotated_ternary", {"rate": 0.25, "m": 64}), ("rotated_ternary", {"rate": 0.05, "m": 256}),
          ("rotated_entropy", {"rate": 0.25, "m": 64}), ("rotated_entropy", {"rate": 0.05, "m": 256})]


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


@pytest.mark.parametrize("params", [{"m": 8, "bits": 6}, {"code": "trellis", "m": 64, "bits": 64}])
def test_monte_carlo_bound_detects_a_biased_operator(params):
    x = INPUTS["gaussian"]
    biased = psgrad.codec("spherical", unbiased=False, **params)
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


@pytest.mark.parametrize("code", ["random", "trellis"])
def test_biased_spherical_beats_the_unbiased_error_and_has_no_omega(code):
    x = INPUTS["gaussian"]
    b, u = psgrad.codec("spherical", unbiased=False, code=code), psgrad.codec("spherical", code=code)
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


@pytest.mark.parametrize("rate,states,m,gain_bits,d", [(1, 8, 128, 3, 4096), (2, 4, 32, 2, 1000), (1, 16, 64, 1, 5),
                                                         (1, 8, 4096, 6, 10000)])
def test_trellis_payload_has_exactly_32_bits_plus_gain_and_rate_bits_per_coordinate(rate, states, m, gain_bits, d):
    c = psgrad.codec("spherical", code="trellis", m=m, bits=rate * m, states=states, gain_bits=gain_bits,
                     unbiased=m <= 256)
    n = psgrad.bitstream.padded_length(d, 4096)
    block = min(m, n)
    enc = c.encode(RNG.standard_normal(d).astype(np.float32), psgrad.Key())
    assert enc.nbits == 32 + -(-n // block) * (gain_bits + rate * block) == c.payload_bits(d)
    assert len(enc.data) == (enc.nbits + 7) // 8


def test_default_spherical_is_the_unbiased_trellis_code_at_about_one_bit_per_coordinate_all_included():
    c = psgrad.codec("spherical")
    enc = c.encode(RNG.standard_normal(4096).astype(np.float32))
    assert c.unbiased and c.params["code"] == "trellis"
    assert enc.nbits == 4096 + 32 * 3 + 32  # one bit per coordinate, 3 gain bits per block of 128, one float


def test_haar_turn_is_orthogonal_and_differs_between_rounds():
    from psgrad.codecs.spherical_trellis import haar
    U = haar(np.uint64(psgrad.Key(round=1).stream("spherical.haar")), 64).astype(np.float64)
    V = haar(np.uint64(psgrad.Key(round=2).stream("spherical.haar")), 64).astype(np.float64)
    assert np.abs(U @ U.T - np.eye(64)).max() < 1e-6
    assert np.abs(U - V).max() > 0.1


def test_trellis_viterbi_finds_the_least_error_path_of_an_exhaustive_search():
    from itertools import product
    from psgrad.codecs.trellis import CODES, LEVELS, tcq_block, tcq_levels, trellis_tables
    label, nxt = trellis_tables(4, *CODES[4])
    z = np.random.default_rng(4).standard_normal(10) * 1.3
    codes = np.empty(10, np.int64)
    err = tcq_block(z, LEVELS[1, 4], label, nxt, codes, np.empty((10, 4), np.uint8), np.empty(4), np.empty(4))
    out = np.empty(10)
    best = np.inf
    for path in product((0, 1), repeat=10):
        tcq_levels(np.array(path), LEVELS[1, 4], label, nxt, out)
        best = min(best, np.sum((z - out) ** 2))
    tcq_levels(codes, LEVELS[1, 4], label, nxt, out)
    assert abs(np.sum((z - out) ** 2) - best) < 1e-5 and abs(err - best) < 1e-4


@pytest.mark.parametrize("rate,states", [(1, 8), (2, 4), (1, 64), (2, 256)])
def test_blocks_searched_side_by_side_get_the_paths_of_a_block_by_block_search(rate, states):
    from psgrad.codecs.spherical_trellis import GROUP, encode_blocks
    from psgrad.codecs.trellis import CODES, LEVELS, tcq_block, trellis_tables
    m, B = 24, GROUP + 5  # one full group and a partial one
    label, nxt = trellis_tables(states, *CODES[states])
    y = np.random.default_rng(rate * states).standard_normal(B * m).astype(np.float32)
    y[3 * m:4 * m] = 0.0  # a zero block
    gains, codes = np.empty(B), np.empty(B * m, np.uint8)
    encode_blocks(y, m, np.zeros((0, 0), np.float32), LEVELS[rate, states], label, nxt, True, gains, codes)
    for b in range(B):
        yb = y[b * m:(b + 1) * m].astype(np.float64)
        ref = np.zeros(m, np.int64)
        if yb.any():
            s2 = 0.0
            for v in yb:  # the encoder's sequential float64 sum of squares
                s2 += v * v
            tcq_block(yb * (np.sqrt(m) / np.sqrt(s2)), LEVELS[rate, states], label, nxt, ref,
                      np.empty((m, states), np.uint8), np.empty(states), np.empty(states))
        assert np.array_equal(codes[b * m:(b + 1) * m], ref), b
    assert gains[3] == 0.0 and (gains[np.arange(B) != 3] > 0).all()


def test_turn_of_blocks_adds_its_terms_in_order_like_a_scalar_loop():
    from psgrad.codecs.spherical_trellis import turn_rows
    rng = np.random.default_rng(3)
    V, M = rng.standard_normal((5, 19)).astype(np.float32), rng.standard_normal((19, 7)).astype(np.float32)
    ref = np.zeros((5, 7), np.float32)
    for t in range(19):
        ref += V[:, t:t + 1] * M[t]
    out = np.empty((5, 7), np.float32)
    turn_rows(V, M, out)
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("rate", [1, 2])
def test_every_doubling_of_the_trellis_states_lowers_the_error_on_fresh_gaussian_samples(rate):
    # samples the tables were not searched or trained on; D(R) = 4^-R is the bound
    from psgrad.codecs.trellis import CODES, LEVELS, tcq_block, trellis_tables
    n = 1 << 14
    z = np.random.default_rng(99).standard_normal(n)
    errs = []
    for states in sorted(CODES):
        label, nxt = trellis_tables(states, *CODES[states])
        errs.append(tcq_block(z, LEVELS[rate, states], label, nxt, np.empty(n, np.int64),
                              np.empty((n, states), np.uint8), np.empty(states), np.empty(states)) / n)
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert 1.0 < errs[-1] * 4.0 ** rate < (1.12 if rate == 1 else 1.28), errs


def test_trellis_reaches_its_published_gain_over_scalar_quantization_at_one_bit():
    # Lloyd-Max 1-bit scalar quantization of a Gaussian: 0.363; 8-state TCQ at rate 1 is near 0.30.
    from psgrad.codecs.trellis import CODES, LEVELS, tcq_block, trellis_tables
    z = np.random.default_rng(1).standard_normal(20000)
    label, nxt = trellis_tables(8, *CODES[8])
    err = tcq_block(z, LEVELS[1, 8], label, nxt, np.empty(20000, np.int64), np.empty((20000, 8), np.uint8),
                    np.empty(8), np.empty(8)) / 20000
    assert 0.29 < err < 0.31


def test_sparse_dither_bit_count_is_the_sum_of_its_fields():
    from psgrad.bitstream.codes import delta_len, gamma_len, rice_len
    x = INPUTS["student_t2"]
    c = psgrad.codec("sparse_dither", density=0.05, levels=4, rotate=False)
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


def test_sparse_dither_at_density_one_leaves_out_positions_and_on_equal_magnitudes_levels_too():
    from psgrad.bitstream.codes import delta_len, gamma_len
    flat = np.where(np.arange(D) % 3 == 0, -1.0, 1.0).astype(np.float32)
    c = psgrad.codec("sparse_dither", density=1.0, rotate=False)
    enc = c.encode(flat)
    assert enc.nbits == 64 + delta_len(D + 1) + D  # header, then one sign bit per coordinate
    assert np.array_equal(c.decode(enc.data, enc.nbits, D), flat)
    x = INPUTS["gaussian"]
    enc = c.encode(x, psgrad.Key(round=1))
    out = c.decode(enc.data, enc.nbits, D, psgrad.Key(round=1))
    reader = psgrad.bitstream.BitReader(enc.data, enc.nbits)
    lam, top = np.float32(reader.read_f32()), np.float64(np.float32(reader.read_f32()))
    assert np.count_nonzero(out) == D  # every coordinate kept: no gaps, no Rice parameter
    levels = np.rint((np.abs(out).astype(np.float64) - lam) / ((top - lam) / c.levels)).astype(int)
    assert enc.nbits == 64 + delta_len(D + 1) + sum(1 + gamma_len(j + 1) for j in levels)


def test_sparse_dither_payloads_with_implied_fields_fuzzed_raise_only_decode_error():
    c = psgrad.codec("sparse_dither", density=1.0, rotate=False)
    rng = np.random.default_rng(4)
    for x in (INPUTS["flat"][:300], INPUTS["gaussian"][:300]):
        enc = c.encode(x)
        bits = np.unpackbits(enc.data, bitorder="little")[:enc.nbits]
        for trial in range(600):
            b = bits.copy()
            b[rng.integers(0, enc.nbits, 1 + trial % 3)] ^= 1
            nbits = enc.nbits - (trial % 7 if trial % 2 else 0)
            try:
                out = c.decode(np.packbits(b[:nbits], bitorder="little"), nbits, 300)
            except psgrad.DecodeError:
                continue
            assert out.dtype == np.float32 and out.shape == (300,)


def test_sparse_dither_sends_a_one_hot_vector_exactly_in_a_few_dozen_bits():
    x = INPUTS["onehot"] * np.float32(-3.5)
    c = psgrad.codec("sparse_dither")
    enc = c.encode(x)
    assert enc.nbits < 100
    assert np.array_equal(c.decode(enc.data, enc.nbits, D), x)


@pytest.mark.parametrize("name", ["spherical", "sparse_dither", "rotated_ternary"])
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
                                          ({"gain_bits": 0}, "gain_bits"), ({"rotation_block": 3}, "power of two"),
                                          ({"code": "lattice"}, "code must be"),
                                          ({"code": "trellis", "m": 8, "bits": 12}, "m or 2 m"),
                                          ({"code": "trellis", "states": 5}, "states must be"),
                                          ({"code": "trellis", "m": 512, "bits": 512}, "m must be")])
def test_spherical_rejects_bad_parameters_and_says_why(kwargs, match):
    with pytest.raises(ValueError, match=match):
        psgrad.codec("spherical", **kwargs)


def test_sparse_dither_rejects_bad_parameters_and_says_why():
    with pytest.raises(ValueError, match="density must be"):
        psgrad.codec("sparse_dither", density=0.0)
    with pytest.raises(ValueError, match="levels must be"):
        psgrad.codec("sparse_dither", levels=0)
