import numpy as np
import pytest

import psgrad
from psgrad.schemes import kernels
from psgrad.schemes.predictor import CoefficientCode, GramMemo, default_bound, fit, push
from psgrad.schemes.trigger import Trigger


def test_least_squares_recovers_exact_coefficients_of_a_combination_in_the_memory():
    rng = np.random.default_rng(0)
    mem = tuple(rng.standard_normal(500).astype(np.float32) for _ in range(3))
    g = (2.0 * mem[0].astype(np.float64) - 1.5 * mem[1] + 0.25 * mem[2]).astype(np.float32)
    G, b, gg = kernels.moments(mem, g)
    assert np.allclose(fit(G, b, 1e-12, 10.0), [2.0, -1.5, 0.25], atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_moment_kernels_agree_with_float64_linear_algebra(k):
    rng = np.random.default_rng(k)
    n = 3 * kernels.BLOCK + 77  # whole blocks and a tail
    mem = tuple(rng.standard_normal(n).astype(np.float32) for _ in range(k))
    g = rng.standard_normal(n).astype(np.float32)
    G, b, gg = kernels.moments(mem, g)
    M = np.stack(mem).astype(np.float64)
    A = np.abs(M)
    # float32 products and BLOCK / LANES float32 additions per lane: within 2e-6 of the sum of magnitudes
    assert np.all(np.abs(G - M @ M.T) <= 2e-6 * (A @ A.T)) and np.all(G == G.T)
    assert np.all(np.abs(b - M @ g) <= 2e-6 * (A @ np.abs(g)))
    assert abs(gg - g.astype(np.float64) @ g) <= 2e-6 * (g.astype(np.float64) @ g)


def blocked_lane_sum(x, y):
    """The documented order of the moment sums, in numpy: float32 lanes per block, float64 across blocks."""
    L, B = kernels.LANES, kernels.BLOCK
    prod = x * y  # float32
    whole = len(x) - len(x) % B
    total = np.zeros(L)
    for base in range(0, whole, B):
        part = np.zeros(L, np.float32)
        for s in range(base, base + B, L):
            part += prod[s:s + L]
        total += part.astype(np.float64)
    s = 0.0
    for v in total:
        s += v
    for i in range(whole, len(x)):
        s += np.float64(x[i]) * np.float64(y[i])
    return s


@pytest.mark.parametrize("k", [1, 3, 4, 5])
def test_moment_sums_follow_the_documented_blocked_lane_order_bit_for_bit(k):
    rng = np.random.default_rng(10 + k)
    n = 5 * kernels.BLOCK + 13
    mem = tuple((rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(np.float32) for _ in range(k))
    g = rng.standard_normal(n).astype(np.float32)
    G, b, gg = kernels.moments(mem, g)
    assert gg == blocked_lane_sum(g, g)
    for j in range(k):
        assert b[j] == blocked_lane_sum(mem[j], g)
        for l in range(j + 1):
            assert G[j, l] == blocked_lane_sum(mem[j], mem[l])


@pytest.mark.parametrize("p", [3, 6])
def test_gram_memo_gives_the_same_moments_bit_for_bit_and_forgets_dropped_entries(p):
    rng = np.random.default_rng(p)
    n = 2 * kernels.BLOCK + 5
    memo, mem, computed = GramMemo(), (), []
    for _ in range(3 * p):
        g = rng.standard_normal(n).astype(np.float32)
        if mem:
            got = memo.moments(mem, g)
            want = kernels.moments(mem, g)  # every sum computed afresh
            assert all(np.array_equal(x, y) for x, y in zip(got, want))
            computed.append(memo._known(mem[1:]) is not None)
        mem = push(mem, rng.standard_normal(n).astype(np.float32), p)
    assert all(computed)  # after the first round only the new row was computed
    assert len(memo._grams) <= p  # entries of arrays that left the memory are gone
    older = mem[1:]  # a rollback to a memory it saw: still exact
    g = rng.standard_normal(n).astype(np.float32)
    assert np.array_equal(memo.moments(older, g)[0], kernels.moments(older, g)[0])


def test_rank_deficient_memories_give_finite_bounded_coefficients():
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    cases = [
        (x, x, x),                                  # one direction three times
        (x, np.float32(1 + 1e-7) * x, 2 * x),      # nearly collinear
        (np.zeros(64, np.float32), x),              # an empty slot from a skipped warm-up round
        (np.zeros(64, np.float32),) * 2,            # nothing at all
    ]
    for mem in cases:
        g = (x + 0.1 * np.cos(7 * x)).astype(np.float32)
        G, b, _ = kernels.moments(mem, g)
        a = fit(G, b, 1e-9, 6.0)
        assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 6.0)
    G, b, _ = kernels.moments((x, x), x)
    assert np.allclose(fit(G, b, 1e-9, 6.0), [0.5, 0.5], atol=1e-6)  # the minimum-norm split


def test_coefficient_grid_is_symmetric_with_an_exact_zero_and_clips_to_the_range():
    code = CoefficientCode(4, 7.0)  # levels -7..7, step 1
    codes, values = code.quantize([0.0, 1.4, -2.6, 100.0, -100.0])
    assert codes == [7, 8, 4, 14, 0]
    assert values.tolist() == [0.0, 1.0, -3.0, 7.0, -7.0]
    assert code.decode(codes, "t").tolist() == values.tolist()
    with pytest.raises(psgrad.DecodeError, match="not a grid point"):
        code.decode([15], "t")


def test_float32_coefficients_round_trip_and_reject_non_finite_codes():
    code = CoefficientCode(32, 6.0)
    codes, values = code.quantize([0.1, -2.5])
    assert values.tolist() == [np.float32(0.1), -2.5]
    assert code.decode(codes, "t").tolist() == values.tolist()
    with pytest.raises(psgrad.DecodeError, match="non-finite"):
        code.decode([0x7FC00000], "t")


def test_default_coefficient_range_covers_the_binomial_predictor():
    assert [default_bound(p) for p in (1, 2, 3, 4)] == [2.0, 4.0, 6.0, 12.0]


def test_prediction_kernel_is_the_float32_sum_in_memory_order():
    rng = np.random.default_rng(3)
    mem = tuple(rng.standard_normal(33).astype(np.float32) for _ in range(3))
    a = np.array([0.5, -1.25, 2.0], np.float32)
    expected = (a[0] * mem[0] + a[1] * mem[1]) + a[2] * mem[2]
    assert np.array_equal(kernels.predict(mem, a), expected)
    r = rng.standard_normal(33).astype(np.float32)
    assert np.array_equal(kernels.predict(mem, a, r), expected + r)
    res, res_sq = kernels.residual(mem, a, r)
    assert np.array_equal(res, r - expected) and np.isclose(res_sq, np.sum((r - expected).astype(np.float64) ** 2))


def test_trigger_threshold_is_the_sum_of_its_terms():
    t = Trigger(tau=1.0, eps=0.5, xi=2.0)
    assert t.threshold_sq(g_sq=4.0, model_delta_sq=0.25) == 1.0 + 1.0 + 0.5
    assert not t.fires(2.5, 4.0, 0.25, silent=0) and t.fires(2.5001, 4.0, 0.25, silent=0)


def test_trigger_with_no_threshold_always_fires_and_max_silent_forces_a_send():
    assert Trigger().always and Trigger().fires(0.0, 0.0, 0.0, 0)
    t = Trigger(eps=1.0, max_silent=3)
    assert not t.fires(0.5, 1.0, 0.0, silent=2) and t.fires(0.5, 1.0, 0.0, silent=3)


def test_prediction_plus_zero_turns_negative_zero_into_positive_zero_and_changes_nothing_else():
    mem = (np.array([0.0, 1.5, -0.0, 2.0, 0.0], np.float32),)
    a = np.array([-1.0], np.float32)
    plain = kernels.predict(mem, a)
    assert np.array_equal(plain.view(np.uint32), np.array([-0.0, -1.5, 0.0, -2.0, -0.0], np.float32).view(np.uint32))
    assert np.array_equal(kernels.predict(mem, a, plus_zero=True).view(np.uint32),
                          (plain + np.float32(0.0)).view(np.uint32))
    assert np.array_equal(kernels.predict(mem, a, plus_zero=True).view(np.uint32),
                          np.array([0.0, -1.5, 0.0, -2.0, 0.0], np.float32).view(np.uint32))
