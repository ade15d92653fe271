import numpy as np
import pytest

import psgrad
from psgrad.schemes import codec_mismatch
from psgrad.schemes import kernels
from psgrad.schemes.frame import FrameReader
from psgrad.schemes.tpc import TPCState

from scheme_problems import LeastSquares, Quadratic, RandK, Sign, TopK, train

# Every registered scheme, with parameter sets that exercise each trigger rule and both loops of TPC.
VARIANTS = [
    ("direct", {}), ("ef", {}), ("ef21", {}), ("diana", {}),
    ("lag", {}), ("lag", {"eps": 0.0, "xi": 0.5, "max_silent": 3}),
    ("tpc", {}), ("tpc", {"p": 1, "coef_bits": 32, "eps": 0.0, "tau": 0.05}),
    ("tpc", {"p": 4, "coef_bits": 6, "eps": 0.0, "xi": 2.0, "max_silent": 4}),
    ("tpc", {"p": 2, "open_loop": True}),
]
TEST_CODECS = [TopK(3), RandK(5), Sign()]


def all_codecs():
    return [psgrad.codec(name) for name in psgrad.codecs()] + TEST_CODECS


def test_every_scheme_is_registered():
    assert {"direct", "ef", "ef21", "diana", "lag", "tpc"} <= set(psgrad.schemes())
    # built-ins; plugins test their own; powersgd needs tensor shapes (test_powersgd.py)
    assert {name for name, _ in VARIANTS} | {"powersgd"} == set(psgrad.schemes.REGISTRY)


@pytest.mark.parametrize("name,params", VARIANTS, ids=[f"{n}{p}" for n, p in VARIANTS])
def test_agent_and_server_states_stay_identical_for_300_rounds_with_every_compatible_codec(name, params):
    problem = LeastSquares(n=3, d=16, m=20)
    ran = 0
    for codec in all_codecs():
        scheme = psgrad.scheme(name, codec=codec, **params)
        if codec_mismatch(codec, problem.d, scheme.requires) is not None:
            with pytest.raises(psgrad.ConfigError, match=codec.name):
                scheme.init(problem.d)
            continue
        if name == "diana" and codec.omega(problem.d) is None:
            continue
        x, losses, _, _ = train(scheme, problem, 300, 0.2 / problem.L)  # asserts digests every round
        assert np.all(np.isfinite(x))
        ran += 1
    assert ran >= 2


def test_schemes_refuse_a_codec_of_the_wrong_kind_naming_codec_and_requirement():
    with pytest.raises(psgrad.ConfigError, match=r"'diana' needs a unbiased codec; codec test_topk"):
        psgrad.scheme("diana", codec=TopK(1)).init(10)
    with pytest.raises(psgrad.ConfigError, match=r"'ef21' needs a contractive codec; codec test_sign"):
        psgrad.scheme("ef21", codec=Sign()).init(10)
    with pytest.raises(psgrad.ConfigError, match=r"'ef' needs a contractive codec.*omega\(d\)=9"):
        psgrad.scheme("ef", codec=RandK(1)).init(10)
    assert codec_mismatch(RandK(8), 10, "contractive") is None  # unbiased with omega = 0.25 < 1


def test_scheme_parameters_are_validated_with_the_reason():
    with pytest.raises(ValueError, match="coef_bits must be 32"):
        psgrad.scheme("tpc", coef_bits=40)
    with pytest.raises(ValueError, match="p \\(predictor order\\)"):
        psgrad.scheme("tpc", p=0)
    with pytest.raises(ValueError, match="trigger eps must be"):
        psgrad.scheme("lag", eps=-1.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        psgrad.scheme("diana", alpha=2.0)
    with pytest.raises(psgrad.ConfigError, match="no parameter q; valid: codec, p, coef_bits"):
        psgrad.scheme("tpc", q=1)


def test_tpc_on_a_quadratic_under_exact_gradient_descent_predicts_well_and_rarely_sends_a_residual():
    problem = Quadratic(d=40, mu=0.01)
    _, losses, infos, _ = train(psgrad.scheme("tpc", p=3, eps=0.1), problem, 300, 1.0 / problem.L)
    fired = np.array([i["triggered"] for i in infos])
    gains = np.array([i["prediction_gain"] for i in infos])
    assert losses[-1] < 1e-5 * losses[0]
    assert fired[:3].all()            # warm-up: the memory is still filling
    assert fired[30:].mean() < 0.2    # then the residual is mostly skipped
    assert np.median(gains[30:]) > 100


def test_tpc_with_the_trigger_off_and_an_fp32_residual_follows_uncompressed_training():
    problem = LeastSquares(n=3, d=16, m=20)
    lr = 0.5 / problem.L
    x_ref, loss_ref, _, _ = train(psgrad.scheme("direct"), problem, 200, lr)
    x, loss, infos, history = train(psgrad.scheme("tpc", p=3, eps=0.0), problem, 200, lr)
    assert all(i["triggered"] for i in infos)
    for grads, hats in history:
        for g, g_hat in zip(grads, hats):
            # g_hat = pred + (g - pred) in float32: within two roundings of g
            assert np.all(np.abs(g_hat - g) <= 4 * np.spacing(np.maximum(np.abs(g), np.abs(g_hat - g) + np.abs(g))))
    assert np.allclose(x, x_ref, rtol=1e-5, atol=1e-5)
    assert np.allclose(loss, loss_ref, rtol=1e-5)


@pytest.mark.parametrize("coef_bits", [4, 8, 16, 32])
@pytest.mark.parametrize("p", [1, 3])
def test_tpc_payload_bits_are_flag_plus_coefficients_plus_residual(p, coef_bits):
    problem = Quadratic(d=24, mu=0.02)
    for codec, per in (("fp32", 32), ("fp16", 16)):
        scheme = psgrad.scheme("tpc", codec=codec, p=p, coef_bits=coef_bits, eps=0.5)
        _, _, infos, _ = train(scheme, problem, 60, 1.0 / problem.L)
        assert any(not i["triggered"] for i in infos)
        for i in infos:
            k = min(i["round"], p)
            residual = per * problem.d if i["triggered"] else 0
            assert i["coef_bits"] == k * coef_bits and i["residual_bits"] == residual
            assert i["nbits"] == 1 + k * coef_bits + residual


def test_lag_payload_is_one_flag_bit_plus_the_codec_payload_when_sent():
    problem = Quadratic(d=24, mu=0.02)
    _, _, infos, _ = train(psgrad.scheme("lag", eps=0.2), problem, 60, 1.0 / problem.L)
    assert any(not i["triggered"] for i in infos) and any(i["triggered"] for i in infos)
    for i in infos:
        assert i["nbits"] == 1 + (32 * problem.d if i["triggered"] else 0)


def test_max_silent_forces_a_residual_after_that_many_silent_rounds():
    problem = Quadratic(d=24, mu=0.02)
    scheme = psgrad.scheme("tpc", p=2, eps=0.9, max_silent=2)
    _, _, infos, _ = train(scheme, problem, 80, 1.0 / problem.L)
    fired = [i["triggered"] for i in infos]
    run = 0
    for f in fired:
        run = 0 if f else run + 1
        assert run <= 2
    assert fired.count(False) > 20


def test_ef_with_top1_gets_close_where_direct_with_top1_stalls_on_heterogeneous_least_squares():
    # Beznosikov, Horváth, Richtárik, Safaryan, "On Biased Compression for Distributed Learning" (2020):
    # averaged top-k of heterogeneous local gradients has fixed points away from the optimum.
    problem = LeastSquares(n=4, d=10, m=30, spread=1.0)
    gaps = {}
    for name in ("direct", "ef"):
        for lr in (0.1, 0.05):
            _, losses, _, _ = train(psgrad.scheme(name, codec=TopK(1)), problem, 1000, lr / problem.L)
            gaps[name, lr] = losses[-1] - problem.f_star
    assert gaps["direct", 0.1] > 0.5 and gaps["direct", 0.05] > 0.5     # stalls at any step size
    assert gaps["ef", 0.1] < 0.05 and gaps["ef", 0.05] < 0.02            # EF: a neighbourhood O(lr)


def test_ef21_and_diana_converge_on_heterogeneous_least_squares():
    problem = LeastSquares(n=4, d=16, m=30, spread=1.0)
    _, losses, _, _ = train(psgrad.scheme("ef21", codec=TopK(2)), problem, 800, 0.5 / problem.L)
    assert losses[-1] - problem.f_star < 1e-9 * (losses[0] - problem.f_star)
    x_direct, _, _, _ = train(psgrad.scheme("direct", codec=RandK(4)), problem, 800, 0.1 / problem.L)
    x_diana, _, _, _ = train(psgrad.scheme("diana", codec=RandK(4)), problem, 800, 0.1 / problem.L)
    # rand-k is unbiased, but its variance at the optimum is not zero for direct; DIANA learns the shifts
    assert np.linalg.norm(x_diana - problem.x_star) < 1e-3
    assert np.linalg.norm(x_direct - problem.x_star) > 1e-2


def test_closed_loop_tpc_tracks_gradients_better_than_open_loop_with_a_lossy_residual():
    problem = LeastSquares(n=2, d=16, m=20)
    err = {}
    for open_loop in (False, True):
        scheme = psgrad.scheme("tpc", codec="fp16", p=2, eps=0.0, coef_bits=8, open_loop=open_loop)
        _, _, _, history = train(scheme, problem, 150, 0.3 / problem.L)
        err[open_loop] = max(np.linalg.norm(h - g) / np.linalg.norm(g)
                             for grads, hats in history[100:] for g, h in zip(grads, hats))
    assert err[False] < 1e-3
    assert err[True] > 2 * err[False]


def test_reconstructions_are_read_only_because_the_state_shares_them():
    scheme = psgrad.scheme("tpc")
    state, private = scheme.init(8)
    ctx = psgrad.Context(psgrad.Key(0, 0, 0), 8, 0.0)
    g_hat, state = scheme.reconstruct(state, scheme.encode(state, private, np.ones(8, np.float32), ctx), ctx)
    assert g_hat is state.memory[0]
    with pytest.raises(ValueError, match="read-only"):
        g_hat[0] = 1.0


def test_digest_covers_every_memory_entry():
    a = TPCState((np.zeros(4, np.float32), np.ones(4, np.float32)), 0)
    b = a._replace(memory=(np.zeros(4, np.float32), np.array([1, 1, 1, 2], np.float32)))
    c = a._replace(memory=a.memory[:1])
    assert len({psgrad.digest(a), psgrad.digest(b), psgrad.digest(c)}) == 3
    assert psgrad.digest(a) == psgrad.digest(a._replace(memory=tuple(m.copy() for m in a.memory)))


def _tpc_round(scheme, d, rounds=4):
    state, private = scheme.init(d)
    rng = np.random.default_rng(0)
    for t in range(rounds):
        ctx = psgrad.Context(psgrad.Key(0, 0, t), d, 0.0)
        g = rng.standard_normal(d).astype(np.float32)
        payload = scheme.encode(state, private, g, ctx)
        if t < rounds - 1:
            _, state = scheme.reconstruct(state, payload, ctx)
    return state, payload, ctx


def test_tpc_rejects_truncated_padded_and_invalid_payloads():
    scheme = psgrad.scheme("tpc", p=2, coef_bits=4, eps=0.0)
    state, payload, ctx = _tpc_round(scheme, 10)
    assert payload.nbits == 1 + 2 * 4 + 320
    short = psgrad.Encoded(payload.data, payload.nbits - 1)
    with pytest.raises(psgrad.DecodeError):
        scheme.reconstruct(state, short, ctx)
    skip = psgrad.Encoded(np.array([0b00100010, 0b1], np.uint8), 10)  # flag 0 but one bit too many
    with pytest.raises(psgrad.DecodeError, match="expected 9"):
        scheme.reconstruct(state, skip, ctx)
    bad = psgrad.Encoded(np.array([0b00011110, 0], np.uint8), 9)      # coefficient code 15 is not a grid point
    with pytest.raises(psgrad.DecodeError, match="not a grid point"):
        scheme.reconstruct(state, bad, ctx)


def test_lag_rejects_a_skip_flag_followed_by_bits():
    scheme = psgrad.scheme("lag")
    state, _ = scheme.init(4)
    with pytest.raises(psgrad.DecodeError, match="expected 1"):
        scheme.reconstruct(state, psgrad.Encoded(np.array([0], np.uint8), 3), psgrad.Context(psgrad.Key(), 4))


@pytest.mark.parametrize("codec", ["qsgd", "topk", "fp32", "natural"])  # natural: no in-place add
def test_tpc_reconstruction_is_prediction_plus_decoded_residual_bit_for_bit(codec):
    # zeros of the gradient where the memory is zero: with a negative coefficient the prediction is -0.0
    # there, and the reconstruction must hold the +0.0 of -0.0 + r_hat's +0.0
    d = 1500
    rng = np.random.default_rng(4)
    scheme = psgrad.scheme("tpc", codec, p=3, eps=0.0)
    state, private = scheme.init(d)
    g = rng.standard_normal(d).astype(np.float32)
    g[::7] = 0.0
    zero_preds = 0
    for t in range(8):
        ctx = psgrad.Context(psgrad.Key(0, 1, t), d, 0.0)
        payload = scheme.encode(state, private, g, ctx)
        g_hat, new_state = scheme.reconstruct(state, payload, ctx)
        k = len(state.memory)
        if k:
            reader = FrameReader(payload, "tpc")
            assert reader.field(1) == 1
            a_q = scheme.coefs.decode([reader.field(scheme.coefs.bits) for _ in range(k)], "tpc")
            data, nbits = reader.body()
            pred = kernels.predict(state.memory, a_q)
            zero_preds += np.count_nonzero(pred.view(np.uint32) == np.uint32(0x80000000))
            expected = pred + scheme.codec.decode(data, nbits, d, ctx.key)
            assert np.array_equal(g_hat.view(np.uint32), expected.view(np.uint32))
        state = new_state
        g = (-0.9 * g + 0.05 * rng.standard_normal(d)).astype(np.float32)
        g[::7] = 0.0
    assert zero_preds > 0
