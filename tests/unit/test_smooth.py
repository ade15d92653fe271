import numpy as np
import pytest

import psgrad
from psgrad import config
from psgrad.errors import ConfigError
from psgrad.runtime import checkpoint
from psgrad.schemes import Smoothed, Tensorwise, Warmup, digest, wrap
from scheme_problems import LeastSquares, Quadratic, train
from schemes_under_test import representative_codec

SHAPES = [("w", (4, 5)), ("b", (4,))]
D = 24


class NoisyQuadratic(Quadratic):
    """A quadratic whose every gradient carries fresh Gaussian noise (a minibatch), ``noise`` times ``||x*||``."""

    def __init__(self, noise, **kw):
        super().__init__(**kw)
        self.noise = noise
        self.calls = 0

    def grads(self, x):
        rng = np.random.default_rng(self.calls)
        self.calls += 1
        scale = self.noise * np.linalg.norm(self.x_star) / np.sqrt(self.d)
        return [g + (scale * rng.standard_normal(self.d)).astype(np.float32) for g in super().grads(x)]


def reference_average(grads, beta):
    """The moving average by its definition, in float32: ``m_0 = g_0``, ``m_t = m + (1 - beta) (g_t - m)``."""
    c, m, out = np.float32(1 - beta), None, []
    for g in grads:
        m = g.copy() if m is None else m + c * (g - m)
        out.append(m)
    return out


def test_the_agent_sends_its_moving_average_bit_for_bit():
    problem = LeastSquares(n=2, d=D)
    s = Smoothed(psgrad.scheme("direct", "fp32"), 0.8)
    _, _, _, history = train(s, problem, 12, 0.5 / problem.L)
    for i in range(problem.n):
        grads = [grads[i] for grads, _ in history]
        hats = [hats[i] for _, hats in history]
        for m, g_hat in zip(reference_average(grads, 0.8), hats):
            assert m.tobytes() == g_hat.tobytes()


@pytest.mark.parametrize("name", ["ef21", "diana", "lag", "tpc", "ef"])
def test_agent_and_server_copies_agree_with_the_average_under_every_setting(name):
    problem = LeastSquares(n=3, d=D)
    for settings in (dict(), dict(granularity="tensor", warmup_rounds=2)):
        s = wrap(psgrad.scheme(name, representative_codec(name)), SHAPES, ema=0.9, **settings)
        assert isinstance(s, Smoothed) and not s.stateless
        x, losses, _, _ = train(s, problem, 40, 0.3 / problem.L)  # asserts g_hat and digests every round
        assert np.all(np.isfinite(x)) and losses[-1] < losses[0]


def test_wrap_puts_the_average_outermost_and_leaves_the_default_untouched():
    s = psgrad.scheme("tpc", "qsgd")
    assert wrap(s, SHAPES, ema=0.0) is s
    w = wrap(s, SHAPES, granularity="tensor", warmup_rounds=1, ema=0.5)
    assert isinstance(w, Smoothed) and isinstance(w.inner, Warmup) and isinstance(w.inner.inner, Tensorwise)
    assert w.name == "tpc" and repr(w).startswith("smoothed(warmup(")


def test_the_private_average_round_trips_through_a_checkpoint_and_resumes_the_same_payloads():
    problem = LeastSquares(n=1, d=D)
    s = wrap(psgrad.scheme("tpc", "qsgd", p=2), SHAPES, granularity="tensor", ema=0.9)
    state, private = s.init(D)
    x = np.zeros(D)
    for t in range(5):
        g = problem.grads(x)[0]
        ctx = psgrad.Context(psgrad.Key(3, 0, t), D, 0.0)
        g_hat, state = s.reconstruct(state, s.encode(state, private, g, ctx), ctx)
        private = s.compensate(private, g, g_hat)
        x = x - 0.1 * g_hat
    assert private.started and private.m.shape == (D,)
    arrays = {}
    tree = checkpoint.flatten(private, "private", arrays)
    meta, loaded = checkpoint.from_bytes(checkpoint.to_bytes({"tree": tree}, arrays), "test")
    back = checkpoint.fill(s.init(D)[1], meta["tree"], loaded, "private")
    assert digest(back) == digest(private) and back.started is True
    g = problem.grads(x)[0]
    ctx = psgrad.Context(psgrad.Key(3, 0, 5), D, 0.0)
    a, b = s.encode(state, private, g, ctx), s.encode(state, back, g, ctx)
    assert a.nbits == b.nbits and bytes(a.data) == bytes(b.data)


def test_under_fresh_noise_tpc_predicts_the_average_far_better_than_the_gradient():
    gains = {}
    for beta in (0.0, 0.9):
        problem = NoisyQuadratic(noise=0.5, d=200, mu=0.01)
        s = psgrad.scheme("tpc", "fp32", p=2, eps=0.0)
        s = Smoothed(s, beta) if beta else s
        _, losses, infos, _ = train(s, problem, 150, 0.3)
        gains[beta] = np.median([i["prediction_gain"] for i in infos[20:]])
        assert losses[-1] < 0.5 * losses[0]
    # the noise is new every round: the gradient's prediction gain stays near 1; the average's sampling noise
    # changes by (1 - beta) per round, so its gain approaches 1 / (1 - beta^2) ~ 5 when noise dominates
    assert gains[0.0] < 1.5
    assert gains[0.9] > 3.0


def test_the_decay_is_validated_in_the_config_and_by_the_wrapper():
    assert config.load(None, []).scheme.ema == 0.0
    assert config.load(None, ["scheme.ema=0.9"]).scheme.ema == 0.9
    for bad in ("1.0", "-0.1"):
        with pytest.raises(ConfigError, match="scheme.ema"):
            config.load(None, [f"scheme.ema={bad}"])
    with pytest.raises(ConfigError, match=r"scheme.ema .* \[0, 1\), got 1.5"):
        Smoothed(psgrad.scheme("ef21", "topk"), 1.5)
