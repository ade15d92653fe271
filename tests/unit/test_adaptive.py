"""adaptive: the choice is a function of x, every choice is unbiased, the bits are exactly those written."""
import numpy as np
import pytest

import psgrad
from psgrad.bitstream.words import split_field
from psgrad.errors import DecodeError


def _inputs(d, rng):
    sparse = np.zeros(d, np.float32)
    sparse[[3, d // 2]] = [1.5, -2.0]
    return {"sparse": sparse, "gaussian": rng.standard_normal(d).astype(np.float32),
            "student_t2": rng.standard_t(2, d).astype(np.float32)}


def _index(c, enc):
    return split_field(enc.data, enc.nbits, c.width)[0]


@pytest.mark.parametrize("rate", [0.1, 0.5, 1.0, 2.0])
def test_the_choice_depends_on_x_alone_and_the_payload_names_it(rate):
    c = psgrad.codec("adaptive", rate=rate)
    for kind, x in _inputs(2000, np.random.default_rng(0)).items():
        chosen = c.choose(x)[0]
        sent = {_index(c, c.encode(x, psgrad.Key(seed=s, round=r))) for s in range(3) for r in range(3)}
        # the rotated code is index 1 in the choice and 1 or 2 (its coder) in the payload
        assert sent <= ({1, 2} if chosen == 1 and c.rotated is not None else {chosen}), (kind, sent)


def test_sparse_inputs_take_sparse_dithering_and_dense_ones_a_rotated_construction():
    rng = np.random.default_rng(1)
    for rate in (0.1, 0.5, 1.0, 2.0):
        c = psgrad.codec("adaptive", rate=rate)
        x = _inputs(4096, rng)
        assert c.choose(x["sparse"])[0] == 0
        assert c.choose(x["gaussian"])[0] == (1 if rate < 1 else len(c.constructions) - 1)
        enc = c.encode(x["sparse"], psgrad.Key(seed=2))
        assert np.array_equal(c.decode(enc.data, enc.nbits, 4096, psgrad.Key(seed=2)), x["sparse"])  # exact


def _decoded(c, x, trials, shrink=1.0):
    outs = np.empty((trials, x.shape[0]))
    for t in range(trials):
        key = psgrad.Key(seed=5, round=t)
        enc = c.encode(x.astype(np.float32), key)
        outs[t] = shrink * c.decode(enc.data, enc.nbits, x.shape[0], key)
    return outs


def _bias_checks(outs, x):
    """Whether the mean over keys passes both checks: the squared distance to ``x`` within 4 times its
    expectation ``var / trials`` for an unbiased code, and the scale along ``x`` within 4 standard errors of 1."""
    trials = outs.shape[0]
    var = float(((outs - x) ** 2).sum(1).mean())
    scale = outs @ x / (x @ x)  # per key
    near = float(((outs.mean(0) - x) ** 2).sum()) <= 4 * var / trials
    along = abs(scale.mean() - 1.0) <= 4 * scale.std() / np.sqrt(trials)
    return near, along


@pytest.mark.parametrize("rate,kind", [(0.1, "gaussian"), (0.25, "student_t2"), (1.0, "gaussian"),
                                       (2.0, "student_t2"), (0.5, "sparse")])
def test_the_mean_over_keys_is_the_input(rate, kind):
    c = psgrad.codec("adaptive", rate=rate)
    x = _inputs(512, np.random.default_rng(3))[kind].astype(np.float64)
    assert _bias_checks(_decoded(c, x, 400), x) == (True, True)


def test_the_unbiasedness_checks_see_a_ten_percent_shrinkage():
    # the checks above can fail: 10 % shrinkage of every decoded vector is about 12 standard errors along x
    c = psgrad.codec("adaptive", rate=0.25)
    x = np.random.default_rng(3).standard_normal(512)
    assert not _bias_checks(_decoded(c, x, 400, shrink=0.9), x)[1]


@pytest.mark.parametrize("rate", [0.1, 1.0, 2.0])
def test_nbits_is_the_index_field_plus_the_chosen_payload_and_both_sides_decode_alike(rate):
    c = psgrad.codec("adaptive", rate=rate)
    for kind, x in _inputs(3000, np.random.default_rng(4)).items():
        key = psgrad.Key(seed=7, agent=2, round=1)
        enc = c.encode(x, key)
        index, inner, n = split_field(enc.data, enc.nbits, c.width)
        inner_enc = c.constructions[index].encode(x, key)
        assert n == enc.nbits - c.width and (index == 2 or n == inner_enc.nbits)
        assert len(enc.data) == (enc.nbits + 7) // 8
        # the decoder on another process: a fresh codec, the same key
        other = psgrad.codec("adaptive", rate=rate)
        assert np.array_equal(c.decode(enc.data, enc.nbits, 3000, key), other.decode(enc.data, enc.nbits, 3000, key))
        assert np.array_equal(c.decode(enc.data, enc.nbits, 3000, key),
                              c.constructions[index].decode(inner.view(np.uint8), n, 3000, key))


def test_the_rotated_code_is_sent_by_the_shorter_of_its_coders():
    c = psgrad.codec("adaptive", rate=0.25)
    x = np.random.default_rng(6).standard_normal(20000).astype(np.float32)
    for r in range(4):
        key = psgrad.Key(seed=1, round=r)
        enc = c.encode(x, key)
        golomb, rans = c.constructions[1].encode(x, key), c.constructions[2].encode(x, key)
        assert enc.nbits == c.width + min(golomb.nbits, rans.nbits)
        assert _index(c, enc) == (1 if golomb.nbits <= rans.nbits else 2)


def test_wrong_lengths_and_indices_are_refused():
    c = psgrad.codec("adaptive", rate=0.5)  # three constructions: index 3 is not one
    x = np.random.default_rng(8).standard_normal(300).astype(np.float32)
    key = psgrad.Key(seed=1)
    enc = c.encode(x, key)
    for n in (0, 1, enc.nbits - 1, enc.nbits + 1):
        data = np.zeros((n + 7) // 8, np.uint8)
        m = min(len(data), len(enc.data))
        data[:m] = enc.data[:m]
        if n % 8:
            data[-1] &= np.uint8((1 << (n % 8)) - 1)
        with pytest.raises(DecodeError):
            c.decode(data, n, 300, key)
    bad = enc.data.copy()
    bad[0] |= np.uint8(3)
    with pytest.raises(DecodeError, match="index 3"):
        c.decode(bad, enc.nbits, 300, key)


def test_bad_parameters_and_inputs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="rate must be in"):
        psgrad.codec("adaptive", rate=0.01)
    with pytest.raises(ValueError, match="rate must be in"):
        psgrad.codec("adaptive", rate=4.0)
    x = np.ones(10, np.float32)
    x[3] = np.inf
    with pytest.raises(ValueError, match="adaptive: input must be finite"):
        psgrad.codec("adaptive").encode(x)


def test_omega_bounds_the_measured_error_of_every_choice():
    c = psgrad.codec("adaptive", rate=0.25)
    for x in _inputs(2048, np.random.default_rng(9)).values():
        n2 = float(x.astype(np.float64) @ x)
        errs = []
        for r in range(20):
            key = psgrad.Key(seed=3, round=r)
            enc = c.encode(x, key)
            errs.append(float(((c.decode(enc.data, enc.nbits, 2048, key) - x.astype(np.float64)) ** 2).sum()) / n2)
        assert np.mean(errs) <= c.omega(2048)
