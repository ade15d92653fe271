"""Small deterministic problems and a one-process agent/server loop for scheme tests.

``train`` plays a parameter server with ``n`` agents: each agent encodes its
gradient, the agent's copy and the server's copy of the mirrored state both
reconstruct, and the loop asserts that ``g_hat`` and the state digests agree
every round. Test-only codecs (top-k, rand-k, sign) live here too, so the
scheme tests do not wait for the codec library.
"""
import numpy as np

import psgrad
from psgrad.codecs.base import Codec, expect_bits


class Quadratic:
    """``f(x) = 0.5 (x - x*)^T A (x - x*)`` with eigenvalues spread in ``[mu, L]``; one agent."""

    def __init__(self, d=40, mu=0.05, L=1.0, seed=0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        self.A = (q * np.linspace(mu, L, d)) @ q.T
        self.x_star = rng.standard_normal(d)
        self.n, self.d, self.L = 1, d, L

    def grads(self, x):
        return [(self.A @ (x - self.x_star)).astype(np.float32)]

    def loss(self, x):
        r = x - self.x_star
        return 0.5 * r @ self.A @ r


class LeastSquares:
    """Heterogeneous least squares: agent i holds ``(X_i, y_i)`` drawn around its own optimum."""

    def __init__(self, n=4, d=20, m=30, spread=1.0, seed=0):
        rng = np.random.default_rng(seed)
        self.X = [rng.standard_normal((m, d)) / np.sqrt(m) for _ in range(n)]
        centre = rng.standard_normal(d)
        self.y = [X @ (centre + spread * rng.standard_normal(d)) for X in self.X]
        H = sum(X.T @ X for X in self.X) / n
        self.x_star = np.linalg.solve(H, sum(X.T @ y for X, y in zip(self.X, self.y)) / n)
        self.n, self.d = n, d
        self.L = float(np.linalg.eigvalsh(H).max())
        self.f_star = self.loss(self.x_star)

    def grads(self, x):
        return [(X.T @ (X @ x - y)).astype(np.float32) for X, y in zip(self.X, self.y)]

    def loss(self, x):
        return sum(0.5 * np.sum((X @ x - y) ** 2) for X, y in zip(self.X, self.y)) / self.n


def train(scheme, problem, rounds, lr, seed=0, x0=None):
    """Distributed gradient descent through ``scheme``; returns ``(x, losses, infos, history)``.

    ``history`` holds, per round, the true gradients and the reconstructions of every agent.
    """
    d, n = problem.d, problem.n
    agents = [scheme.init(d) for _ in range(n)]
    servers = [scheme.init(d)[0] for _ in range(n)]
    x = np.zeros(d) if x0 is None else x0.copy()
    prev = x.copy()
    losses, infos, history = [], [], []
    for t in range(rounds):
        delta = x.astype(np.float32) - prev.astype(np.float32)
        moved = float(np.dot(delta.astype(np.float64), delta))
        grads = problem.grads(x)
        hats = []
        for i, g in enumerate(grads):
            ctx = psgrad.Context(psgrad.Key(seed, i, t), d, moved)
            state, private = agents[i]
            payload = scheme.encode(state, private, g, ctx)
            wire = psgrad.Encoded(payload.data.copy(), payload.nbits)  # the server sees bits only
            g_hat, state = scheme.reconstruct(state, payload, ctx)
            g_srv, servers[i] = scheme.reconstruct(servers[i], wire, ctx)
            assert np.array_equal(g_hat, g_srv), f"agent {i} round {t}: reconstructions differ"
            assert psgrad.digest(state) == psgrad.digest(servers[i]), f"agent {i} round {t}: digests differ"
            agents[i] = (state, scheme.compensate(private, g, g_hat))
            infos.append(dict(payload.info or {}, nbits=payload.nbits, agent=i, round=t))
            hats.append(g_hat)
        history.append((grads, hats))
        prev = x
        x = x - lr * np.mean(np.asarray(hats, np.float64), axis=0)
        losses.append(problem.loss(x))
    return x, np.array(losses), infos, history


class TopK(Codec):
    """Test codec: the k largest magnitudes (biased, contractive with alpha = k/d); 32-bit index + value each."""

    name = "test_topk"
    unbiased = False

    def __init__(self, k=1):
        super().__init__(k=k)
        self.k = k

    def alpha(self, d):
        return min(self.k, d) / d

    def _encode(self, x, key):
        idx = np.sort(np.argsort(-np.abs(x), kind="stable")[: self.k]).astype(np.uint32)
        return np.concatenate([idx.view(np.uint8), x[idx].view(np.uint8)]), 64 * len(idx)

    def _decode(self, data, nbits, d, key):
        k = min(self.k, d)
        expect_bits(self.name, nbits, 64 * k)
        idx = data[: 4 * k].copy().view(np.uint32)
        out = np.zeros(d, np.float32)
        out[idx] = data[4 * k: 8 * k].copy().view(np.float32)
        return out


class RandK(Codec):
    """Test codec: k shared-random coordinates scaled by d/k (unbiased, omega = d/k - 1); values only."""

    name = "test_randk"
    unbiased = True

    def __init__(self, k=2):
        super().__init__(k=k)
        self.k = k

    def omega(self, d):
        return d / min(self.k, d) - 1

    def _idx(self, d, key):
        return np.sort(np.random.default_rng(key.stream("randk")).choice(d, min(self.k, d), replace=False))

    def _encode(self, x, key):
        idx = self._idx(len(x), key)
        v = (x[idx] * np.float32(len(x) / len(idx))).astype(np.float32)
        return v.view(np.uint8).copy(), 32 * len(idx)

    def _decode(self, data, nbits, d, key):
        idx = self._idx(d, key)
        expect_bits(self.name, nbits, 32 * len(idx))
        out = np.zeros(d, np.float32)
        out[idx] = data[: 4 * len(idx)].copy().view(np.float32)
        return out


class Sign(Codec):
    """Test codec: plain signs, 1 bit each; biased and not contractive (declares neither omega nor alpha)."""

    name = "test_sign"
    unbiased = False

    def _encode(self, x, key):
        return np.packbits(x < 0, bitorder="little"), len(x)

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, d)
        neg = np.unpackbits(data, count=d, bitorder="little").astype(bool)
        return np.where(neg, np.float32(-1), np.float32(1))
