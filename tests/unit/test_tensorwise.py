import numpy as np
import pytest

import psgrad
from psgrad import config
from psgrad.codecs.base import Encoded, Key
from psgrad.errors import ConfigError, DecodeError
from psgrad.runtime import checkpoint
from psgrad.schemes import Context, Direct, Tensorwise, Warmup, digest, wrap
from scheme_problems import LeastSquares, Sign, train
from schemes_under_test import representative_codec

SCHEMES = ("direct", "ef", "ef21", "diana", "lag", "tpc")
# A small model: two layers with biases and a scalar; 20 elements in flat order.
SHAPES = [("l1.weight", (3, 4)), ("l1.bias", (3,)), ("l2.weight", (1, 3)), ("l2.bias", (1,)), ("scale", ())]
D = 20


def grad(t, d=D):
    return np.random.default_rng(t).standard_normal(d).astype(np.float32)


def ctx(t, d=D, agent=0):
    return Context(Key(7, agent, t), d, 0.0)


def run(scheme, rounds, d=D):
    """Agent and server copies over ``rounds`` rounds; returns the last ``(payload, g, g_hat)`` and both states."""
    state, private = scheme.init(d)
    server = scheme.init(d)[0]
    out = []
    for t in range(rounds):
        g = grad(t, d)
        payload = scheme.encode(state, private, g, ctx(t, d))
        g_hat, state = scheme.reconstruct(state, payload, ctx(t, d))
        g_srv, server = scheme.reconstruct(server, Encoded(payload.data.copy(), payload.nbits), ctx(t, d))
        assert np.array_equal(g_hat, g_srv) and digest(state) == digest(server), f"round {t}: copies differ"
        private = scheme.compensate(private, g, g_hat)
        out.append((payload, g, g_hat))
    return out, state, private


def test_the_default_settings_return_the_scheme_object_itself():
    s = psgrad.scheme("tpc", "qsgd")
    assert wrap(s, SHAPES) is s and wrap(s, None, "model", 0, 0) is s


def test_tensor_mode_with_direct_fp32_sends_g_bytes_in_order_and_reconstructs_g_exactly():
    s = wrap(psgrad.scheme("direct", "fp32"), SHAPES, granularity="tensor", min_size=4)
    assert s.stateless and s.g_hat_is_payload
    (payload, g, g_hat), = run(s, 1)[0]
    assert payload.nbits == 32 * D and bytes(payload.data) == g.tobytes()
    assert np.array_equal(g_hat, g)


def test_a_payload_out_of_flat_order_is_not_declared_as_g_itself():
    # model granularity: tensors a and c form one part ahead of the fp32 part of b
    shapes = [("a", (5,)), ("b", (1,)), ("c", (5,))]
    s = wrap(psgrad.scheme("direct", "fp32"), shapes, granularity="model", min_size=2)
    assert [(p.name, p.spans) for p in s.parts] == [("model", ((0, 5), (6, 11))), ("b", ((5, 6),))]
    assert not s.g_hat_is_payload
    (payload, g, g_hat), = run(s, 1, d=11)[0]
    assert np.array_equal(g_hat, g) and bytes(payload.data) == g[[*range(5), *range(6, 11), 5]].tobytes()
    # adjacent tensors make one span, so small tensors at the end keep the payload in flat order
    s = wrap(psgrad.scheme("direct", "fp32"), SHAPES, granularity="model", min_size=3)
    assert [(p.name, p.spans) for p in s.parts] == [("model", ((0, 18),)), ("l2.bias", ((18, 19),)),
                                                    ("scale", ((19, 20),))]
    assert s.g_hat_is_payload
    assert not wrap(psgrad.scheme("direct", "qsgd"), SHAPES, granularity="tensor").g_hat_is_payload


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("settings", [dict(granularity="tensor"), dict(granularity="tensor", min_size=3),
                                      dict(granularity="model", min_size=4),
                                      dict(granularity="tensor", min_size=2, warmup_rounds=3)])
def test_agent_and_server_copies_agree_for_every_scheme_and_setting(name, settings):
    problem = LeastSquares(n=3, d=D)
    s = wrap(psgrad.scheme(name, representative_codec(name)), SHAPES, **settings)
    assert s.stateless == (name == "direct")
    _, _, infos, _ = train(s, problem, rounds=8, lr=0.5 / problem.L)  # asserts g_hat and digests every round
    for info in infos:
        assert sum(v for k, v in info.items() if k.startswith("bits/")) == info["nbits"]


@pytest.mark.parametrize("name", SCHEMES)
def test_the_combined_state_round_trips_through_a_checkpoint(name):
    s = wrap(psgrad.scheme(name, representative_codec(name)), SHAPES, granularity="tensor", min_size=2,
             warmup_rounds=1)
    _, state, private = run(s, 4)
    for what, value, template in (("state", state, s.init(D)[0]), ("private", private, s.init(D)[1])):
        arrays = {}
        tree = checkpoint.flatten(value, what, arrays)
        meta, loaded = checkpoint.from_bytes(checkpoint.to_bytes({"tree": tree}, arrays), "test")
        back = checkpoint.fill(template, meta["tree"], loaded, what)
        assert digest(back) == digest(value) and type(back) is type(value)
    # one field per compressed tensor, each the scheme's own state over that tensor
    assert state._fields == ("t0", "t1", "t2")
    if name == "tpc":
        assert [m.shape for m in state.t1.memory] == [(3,)] * 3


def test_a_checkpoint_of_another_layout_does_not_restore():
    s = wrap(psgrad.scheme("ef21", "topk"), SHAPES, granularity="tensor")
    _, state, _ = run(s, 2)
    arrays = {}
    tree = checkpoint.flatten(state, "s", arrays)
    other = wrap(psgrad.scheme("ef21", "topk"), SHAPES, granularity="tensor", min_size=2)
    with pytest.raises(ConfigError, match="fields"):
        checkpoint.fill(other.init(D)[0], tree, arrays, "state")


def test_each_tensor_draws_its_own_random_numbers_from_a_key_both_sides_derive():
    shapes = [("a", (64,)), ("b", (64,))]
    codec = psgrad.codec("randk", k=8)
    s = wrap(psgrad.scheme("direct", codec), shapes, granularity="tensor")
    half = grad(0, 64)
    g = np.concatenate([half, half])
    key = Key(3, 1, 5)
    payload = s.encode(*s.init(128), g, Context(key, 128, 0.0))
    g_hat, _ = s.reconstruct(s.init(128)[0], payload, Context(key, 128, 0.0))
    assert not np.array_equal(g_hat[:64] != 0, g_hat[64:] != 0)  # the same values, other coordinates kept
    # tensor i is the codec's payload under key.child(i + 1)
    for i, part in enumerate((g[:64], g[64:])):
        expected = codec.decode(*codec.encode(part, key.child(i + 1))[:2], 64, key.child(i + 1))
        assert np.array_equal(g_hat[64 * i:64 * (i + 1)], expected)


def test_tensors_below_min_size_are_sent_exactly_as_fp32():
    s = wrap(psgrad.scheme("direct", "qsgd", {"levels": 1}), SHAPES, granularity="tensor", min_size=4)
    (payload, g, g_hat), = run(s, 1)[0]
    for name, (start, stop) in (("l1.bias", (12, 15)), ("l2.weight", (15, 18)), ("l2.bias", (18, 19)),
                                ("scale", (19, 20))):
        assert np.array_equal(g_hat[start:stop], g[start:stop])
        assert payload.info[f"bits/{name}"] == 32 * (stop - start)
    assert not np.array_equal(g_hat[:12], g[:12])  # the large tensor is compressed
    # one variable-length part: no length is sent
    assert payload.info["bits/framing"] == 0


def test_lengths_of_all_variable_parts_but_the_last_are_framed_and_counted():
    s = wrap(psgrad.scheme("tpc", "qsgd"), SHAPES, granularity="tensor", min_size=3)
    (payload, _, _), = run(s, 1)[0]
    parts = ("l1.weight", "l1.bias", "l2.weight")
    assert payload.info["bits/framing"] > 0
    assert payload.nbits == payload.info["bits/framing"] + sum(payload.info[f"bits/{p}"] for p in parts) + 2 * 32
    assert all(f"triggered/{p}" in payload.info for p in parts)


@pytest.mark.parametrize("name", SCHEMES)
def test_warmup_rounds_are_exact_and_cost_32_bits_per_coordinate(name):
    s = wrap(psgrad.scheme(name, representative_codec(name)), SHAPES, granularity="tensor", warmup_rounds=2)
    rounds, state, private = run(s, 3)
    for payload, g, g_hat in rounds[:2]:
        assert np.array_equal(g_hat, g) and payload.nbits == 32 * D and bytes(payload.data) == g.tobytes()
        assert payload.info["warmup"] and payload.info["bits/framing"] == 0
        assert sum(v for k, v in payload.info.items() if k.startswith("bits/")) == payload.nbits
    assert "warmup" not in rounds[2][0].info and s.check_codec(D) is None


@pytest.mark.parametrize("name", ["ef21", "diana", "lag"])
def test_after_warmup_a_shift_starts_at_the_last_warmup_gradient(name):
    s = wrap(psgrad.scheme(name, representative_codec(name)), None, warmup_rounds=2)
    rounds, state, _ = run(s, 2)
    assert np.array_equal(state.h, rounds[-1][1])


def test_after_warmup_tpc_predicts_from_the_warmup_gradients_and_ef_error_is_zero():
    s = wrap(psgrad.scheme("tpc", "qsgd", p=3), SHAPES, granularity="tensor", warmup_rounds=2)
    rounds, state, _ = run(s, 2)
    assert [m.tolist() for m in state.t0.memory] == [rounds[1][1][:12].tolist(), rounds[0][1][:12].tolist()]
    s = wrap(psgrad.scheme("ef", "topk"), SHAPES, granularity="tensor", warmup_rounds=2)
    _, _, private = run(s, 2)
    assert all(not np.any(getattr(private, f).e) for f in private._fields)


def test_a_scheme_that_does_not_define_its_warmup_state_is_refused():
    class Custom(Direct):
        name = "custom"

    with pytest.raises(ConfigError, match="custom.*warm-up"):
        wrap(Custom(psgrad.codec("fp32")), None, warmup_rounds=1)
    assert wrap(Custom(psgrad.codec("fp32")), SHAPES, granularity="tensor").stateless


def test_the_codec_check_still_refuses_what_the_scheme_refuses():
    for settings in (dict(granularity="tensor"), dict(granularity="model", min_size=2), dict(warmup_rounds=2)):
        s = wrap(psgrad.scheme("ef", Sign()), SHAPES, **settings)
        with pytest.raises(ConfigError, match="contractive"):
            s.init(D)


@pytest.mark.parametrize("settings", [dict(granularity="tensor", min_size=2), dict(granularity="model", min_size=4),
                                      dict(granularity="tensor", warmup_rounds=5)])
def test_truncated_padded_or_garbage_payloads_raise_decode_error(settings):
    s = wrap(psgrad.scheme("tpc", "qsgd"), SHAPES, **settings)
    (payload, _, _), = run(s, 1)[0]
    state = s.init(D)[0]
    for nbits in (0, 1, payload.nbits // 2, payload.nbits - 1, payload.nbits + 1):
        data = np.zeros((nbits + 7) // 8, np.uint8)
        n = min(len(data), len(payload.data))
        data[:n] = payload.data[:n]
        try:
            g_hat, _ = s.reconstruct(state, Encoded(data, nbits), ctx(0))
        except DecodeError:
            continue
        assert g_hat.shape == (D,) and nbits != payload.nbits
    rng = np.random.default_rng(0)
    for _ in range(200):
        nbits = int(rng.integers(0, 2 * payload.nbits))
        data = rng.integers(0, 256, (nbits + 7) // 8, dtype=np.uint8)
        try:
            g_hat, _ = s.reconstruct(state, Encoded(data, nbits), ctx(0))
        except DecodeError:
            continue
        assert g_hat.shape == (D,) and g_hat.dtype == np.float32


def test_payloads_whose_parts_all_have_fixed_lengths_must_have_exactly_that_length():
    s = wrap(psgrad.scheme("direct", "fp32"), SHAPES, granularity="tensor", min_size=2)
    for nbits in (32 * D - 1, 32 * D + 1, 0):
        with pytest.raises(DecodeError, match="payload has"):
            s.reconstruct(s.init(D)[0], Encoded(np.zeros(81, np.uint8), nbits), ctx(0))


def test_a_length_code_beyond_the_payload_is_a_decode_error():
    s = wrap(psgrad.scheme("direct", "qsgd"), SHAPES, granularity="tensor")
    data = np.zeros(8, np.uint8)
    data[2] = 1  # delta(...) with a 16-zero-bit gamma prefix: a length far beyond 64 bits
    with pytest.raises(DecodeError):
        s.reconstruct(s.init(D)[0], Encoded(data, 64), ctx(0))


def test_bad_layouts_and_settings_are_config_errors_naming_the_problem():
    s = psgrad.scheme("direct", "fp32")
    for shapes, match in ((None, "layout"), ([("a", (2,)), ("a", (3,))], "twice"), ([("a", (-1,))], "entry"),
                          ([("framing", (2,))], "framing")):
        with pytest.raises(ConfigError, match=match):
            wrap(s, shapes, granularity="tensor")
    with pytest.raises(ConfigError, match="named 'model'"):
        wrap(s, [("model", (3,)), ("b", (1,))], min_size=2)
    with pytest.raises(ConfigError, match="granularity"):
        wrap(s, SHAPES, granularity="layer")
    with pytest.raises(ConfigError, match="min_size"):
        wrap(s, SHAPES, min_size=-1)
    with pytest.raises(ConfigError, match="warmup_rounds"):
        wrap(s, SHAPES, warmup_rounds=-2)
    with pytest.raises(ConfigError, match="layout has 20 elements, the gradient 21"):
        wrap(s, SHAPES, granularity="tensor").init(21)
    assert isinstance(wrap(s, SHAPES, min_size=1, warmup_rounds=1), Warmup)
    assert isinstance(wrap(s, SHAPES, min_size=1).inner, type(s)) and isinstance(wrap(s, SHAPES, min_size=1),
                                                                                  Tensorwise)


def test_empty_tensors_carry_no_bits():
    s = wrap(psgrad.scheme("direct", "qsgd"), [("a", (0, 3)), ("b", (5,))], granularity="tensor")
    (payload, g, g_hat), = run(s, 1, d=5)[0]
    assert payload.info["bits/a"] == 0 and payload.info["bits/framing"] == 0


def test_the_scheme_config_takes_the_three_settings_with_validation():
    cfg = config.load(None, ["scheme.granularity=tensor", "scheme.min_size=100", "scheme.warmup_rounds=5"])
    assert (cfg.scheme.granularity, cfg.scheme.min_size, cfg.scheme.warmup_rounds) == ("tensor", 100, 5)
    default = config.load(None)
    assert (default.scheme.granularity, default.scheme.min_size, default.scheme.warmup_rounds) == ("model", 0, 0)
    for bad, match in (("scheme.granularity=layer", "granularity"), ("scheme.min_size=-1", "min_size"),
                       ("scheme.warmup_rounds=-1", "warmup_rounds"), ("scheme.min_size=1.5", "min_size")):
        with pytest.raises(ConfigError, match=match):
            config.load(None, [bad])


def test_model_granularity_with_no_tensor_below_min_size_sends_the_plain_schemes_bits():
    plain = psgrad.scheme("tpc", "qsgd")
    s = wrap(plain, SHAPES, min_size=1)
    assert [(p.name, p.spans) for p in s.parts] == [("model", ((0, D),))]
    for (payload, _, g_hat), (expected, _, expected_hat) in zip(run(s, 5)[0], run(plain, 5)[0]):
        assert payload.nbits == expected.nbits and bytes(payload.data) == bytes(expected.data)
        assert np.array_equal(g_hat, expected_hat) and payload.info["bits/model"] == payload.nbits
