import os

import numpy as np
import pytest

import psgrad
from psgrad.codecs.base import Encoded, Key
from psgrad.errors import ConfigError, DecodeError
from psgrad.schemes import Context, digest, wrap
from psgrad.schemes.powersgd import PowerSGDState, orthogonalise

# A small network: a dense layer, its bias, a conv kernel, a layer too small to gain from rank 2, a scalar.
SHAPES = [("fc1.weight", (24, 18)), ("fc1.bias", (24,)), ("conv.weight", (8, 3, 3, 3)), ("tiny.weight", (3, 2)),
          ("scale", ())]
D = 24 * 18 + 24 + 8 * 27 + 6 + 1
# fp32 words per message at rank 2: P and Q of fc1 (2 (24 + 18)) and conv (2 (8 + 27)), the rest whole.
WORDS = 2 * (24 + 18) + 24 + 2 * (8 + 27) + 6 + 1


def powersgd(rank=2, **settings):
    return wrap(psgrad.scheme("powersgd", rank=rank), SHAPES, granularity="tensor", **settings)


def gradients(rounds, seed=0):
    """Gradients that change slowly from round to round: a fixed low-rank part, a drifting one, noise."""
    rng = np.random.default_rng(seed)
    base, drift = rng.standard_normal(D), rng.standard_normal(D)
    return [(base + 0.1 * t * drift + 0.3 * rng.standard_normal(D)).astype(np.float32) for t in range(rounds)]


def run(scheme, grads, state=None):
    """Agent and server copies through ``grads``; asserts they agree every round; returns payloads and g_hats."""
    agent_state, private = scheme.init(D)
    agent_state = agent_state if state is None else state
    server = agent_state
    out = []
    for t, g in enumerate(grads):
        ctx = Context(Key(5, 1, t), D)
        payload = scheme.encode(agent_state, private, g, ctx)
        g_hat, agent_state = scheme.reconstruct(agent_state, payload, ctx)
        g_srv, server = scheme.reconstruct(server, Encoded(payload.data.copy(), payload.nbits), ctx)
        assert np.array_equal(g_hat, g_srv) and digest(agent_state) == digest(server), f"round {t}: copies differ"
        private = scheme.compensate(private, g, g_hat)
        out.append((payload, g_hat))
    return out, agent_state, private


def test_a_message_is_32_bits_per_factor_entry_plus_32_per_element_of_the_tensors_sent_whole():
    (payload, _), = run(powersgd(), gradients(1))[0]
    assert payload.nbits == 32 * WORDS
    assert payload.info == {"bits/fc1.weight": 32 * 2 * 42, "bits/fc1.bias": 32 * 24, "bits/conv.weight": 32 * 2 * 35,
                            "bits/tiny.weight": 32 * 6, "bits/scale": 32, "bits/framing": 0}
    (payload, _), = run(powersgd(rank=1), gradients(1))[0]
    assert payload.nbits == 32 * (42 + 24 + 35 + (3 + 2) + 1)  # rank 1 makes tiny.weight gain too


def test_error_feedback_and_warm_start_keep_agent_and_server_copies_identical_and_send_the_error_later():
    grads = gradients(20)
    rounds, state, private = run(powersgd(warmup_rounds=2), grads)  # asserts the copies every round
    assert state.t0.q.shape == (18, 2) and state.t2.q.shape == (27, 2) and state.t1.q.shape == (1, 0)
    # error feedback: what was sent in all rounds plus the error left is what the agent had to send
    sent = np.sum([g_hat for _, g_hat in rounds], axis=0, dtype=np.float64)
    e = np.concatenate([private.t0.e, private.t1.e, private.t2.e, private.t3.e, private.t4.e])
    assert np.allclose(sent + e, np.sum(grads, axis=0, dtype=np.float64), rtol=0, atol=1e-3)
    assert not np.any(e[24 * 18:24 * 18 + 24]) and np.any(private.t0.e)  # the bias goes whole: no error
    # warm start: the state is the Q of the last message (fc1's P, 24 x 2, then its Q, 18 x 2)
    payload, _ = rounds[-1]
    q = np.frombuffer(payload.data.tobytes(), np.float32)[24 * 2: 42 * 2].reshape(18, 2)
    assert np.array_equal(state.t0.q, q)


def test_a_rank_r_matrix_is_reconstructed_exactly_up_to_float_error():
    rng = np.random.default_rng(1)
    for rank in (1, 2, 3):
        m = (rng.standard_normal((24, rank)) @ rng.standard_normal((rank, 18))).astype(np.float32)
        g = np.zeros(D, np.float32)
        g[:432] = m.ravel()
        (_, g_hat), = run(powersgd(rank=rank), [g])[0]
        assert np.linalg.norm(g_hat[:432] - g[:432]) <= 1e-5 * np.linalg.norm(g[:432])
        assert np.array_equal(g_hat[432:], g[432:])  # conv is zero, the rest goes whole


def test_the_first_q_comes_from_the_key_and_a_zero_gradient_does_not_stall_the_warm_start():
    s = powersgd()
    g = gradients(1)[0]
    state, private = s.init(D)
    a = s.encode(state, private, g, Context(Key(5, 1, 0), D))
    b = s.encode(state, private, g, Context(Key(5, 1, 0), D))
    c = s.encode(state, private, g, Context(Key(6, 1, 0), D))
    assert a.data.tobytes() == b.data.tobytes() != c.data.tobytes()
    zero = np.zeros(D, np.float32)
    rounds, state, _ = run(s, [zero, zero, g])
    assert np.array_equal(rounds[1][1], zero)
    # Q was zeroed by the zero gradients and is drawn again: a stalled Q would send zero (error = |g|)
    assert np.linalg.norm(rounds[2][1][:432] - g[:432]) < 0.95 * np.linalg.norm(g[:432])
    assert np.any(state.t0.q)


def test_orthogonalise_gives_orthonormal_columns_and_leaves_a_zero_column_zero():
    a = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    q = orthogonalise(a)
    assert np.allclose(q.T @ q, np.eye(4), atol=1e-5)
    a[:, 1] = 0
    assert not np.any(orthogonalise(a)[:, 1])


def test_granularity_model_codecs_other_than_fp32_and_bad_ranks_are_config_errors():
    with pytest.raises(ConfigError, match="powersgd.*scheme.granularity=tensor"):
        psgrad.scheme("powersgd").init(D)
    with pytest.raises(ConfigError, match="powersgd.*granularity=tensor"):
        wrap(psgrad.scheme("powersgd"), SHAPES, granularity="model", min_size=10).init(D)
    with pytest.raises(ConfigError, match="fp32.*qsgd"):
        wrap(psgrad.scheme("powersgd", "qsgd"), SHAPES, granularity="tensor").init(D)
    for rank in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="rank must be an int >= 1"):
            psgrad.scheme("powersgd", rank=rank)


def test_truncated_padded_or_garbage_payloads_raise_decode_error():
    s = powersgd()
    (payload, _), = run(s, gradients(1))[0]
    state = s.init(D)[0]
    for nbits in (0, 32, payload.nbits - 32, payload.nbits - 1, payload.nbits + 1, payload.nbits + 32):
        data = np.zeros((nbits + 7) // 8, np.uint8)
        n = min(len(data), len(payload.data))
        data[:n] = payload.data[:n]
        with pytest.raises(DecodeError):
            s.reconstruct(state, Encoded(data, nbits), Context(Key(5, 1, 0), D))


def test_a_short_mlp_run_with_tensor_granularity_trains(tmp_path):
    result = psgrad.run({"run": {"results_dir": str(tmp_path), "log_every": 1000, "rounds": 30, "eval_every": 30,
                                 "workers": 2},
                         "task": {"name": "mlp", "hidden": 16},
                         "scheme": {"name": "powersgd", "codec": "fp32", "granularity": "tensor",
                                    "params": {"rank": 2}}},
                        local=True, log=lambda line: None)
    rows = result.metrics
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert result.summary["compression_vs_fp32"] > 1.5


# The reference: torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook on a one-process gloo group, fed
# the same gradients from the same starting Q.

class Bucket:
    """The parts of ``GradBucket`` that ``powerSGD_hook`` uses (GradBucket has no Python constructor)."""

    def __init__(self, flat):
        self.flat = flat

    def buffer(self):
        return self.flat

    def index(self):
        return 0

    def is_last(self):
        return True

    def gradients(self):
        views, offset = [], 0
        for _, shape in SHAPES:
            n = int(np.prod(shape))
            views.append(self.flat[offset:offset + n].view(shape or (1,)))  # the hook views each as a matrix
            offset += n
        return views


@pytest.fixture(scope="module")
def gloo(tmp_path_factory):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    path = tmp_path_factory.mktemp("gloo") / "rendezvous"
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    yield dist
    dist.destroy_process_group()


def torch_hook_reconstructions(dist, grads, q0, rank):
    """``powerSGD_hook``'s output for each gradient, with error feedback and warm start from ``q0``
    (``{tensor index: Q}``)."""
    import torch
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as hook

    state = hook.PowerSGDState(process_group=None, matrix_approximation_rank=rank, start_powerSGD_iter=2,
                               min_compression_rate=1, use_error_feedback=True, warm_start=True)
    for _ in range(2):  # the hook's uncompressed start (it needs >= 2 rounds for error feedback and warm start)
        hook.powerSGD_hook(state, Bucket(torch.zeros(D))).wait()
    # Its P and Q memory hold the compressed tensors in layout order (their shapes differ): Q seeded with q0
    state.q_memory_dict[0] = torch.from_numpy(np.concatenate([q.ravel() for q in q0.values()]))
    state.p_memory_dict[0] = torch.zeros(sum(SHAPES[i][1][0] * q.shape[1] for i, q in q0.items()))
    return [hook.powerSGD_hook(state, Bucket(torch.from_numpy(g.copy()))).wait().numpy().copy() for g in grads]


def compare_with_torch_hook(dist, rounds=10, rank=2):
    """Per round: ``(|g_hat - g_hat_torch| / |g_hat_torch|, psgrad's |g_hat - g| / |g|, torch's)``."""
    grads = gradients(rounds, seed=3)
    s = powersgd(rank=rank)
    state = s.init(D)[0]
    rng = np.random.default_rng(4)
    q0 = {i: rng.standard_normal(getattr(state, f"t{i}").q.shape).astype(np.float32)
          for i in range(len(SHAPES)) if getattr(state, f"t{i}").q.shape[1]}
    state = state._replace(**{f"t{i}": PowerSGDState(q) for i, q in q0.items()})
    ours = [g_hat for _, g_hat in run(s, grads, state)[0]]
    theirs = torch_hook_reconstructions(dist, grads, q0, rank)
    return [(np.linalg.norm(a - b) / np.linalg.norm(b), np.linalg.norm(a - g) / np.linalg.norm(g),
             np.linalg.norm(b - g) / np.linalg.norm(g)) for a, b, g in zip(ours, theirs, grads)]


@pytest.mark.parametrize("rank", [1, 2])
def test_reconstructions_match_torch_powersgd_hook_over_rounds_of_error_feedback_and_warm_start(gloo, rank):
    rows = compare_with_torch_hook(gloo, rank=rank)
    for diff, ours, theirs in rows:
        assert diff < 1e-4 and abs(ours - theirs) < 1e-4
    assert rows[0][1] > 0.05  # a lossy compression, not a trivially exact one
