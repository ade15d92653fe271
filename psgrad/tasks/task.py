"""A learning task: a torch model on a flat parameter vector, agents' data shards, and evaluation.

The objective of agent ``i`` with ``n_i`` local samples is

    f_i(w) = (1/n_i) sum_{s in shard i} loss(model_w(x_s), y_s) + (l2/2) ||w||^2

and the training objective is the size-weighted mean of the local ones,
``f(w) = sum_i (n_i/N) f_i(w)``, which equals the mean per-sample loss over
all ``N`` training samples plus the same ``l2`` term. ``local_grad`` returns
``f_i`` and its gradient on the full shard, or on a minibatch of the shard
chosen by ``(seed, agent, round)`` alone, so any process computes the same
batch and a resumed run needs no generator state.
"""
import numpy as np
import torch

from .flat import FlatModule
from .models import init_uniform
from .seeding import minibatch, torch_seed


class Task:
    """Model + objective + per-agent training shards + held-out data. See the module docstring."""

    metric_names = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")

    def __init__(self, name, module, objective, shards, test, *, seed, l2=0.0, batch_size=0,
                 random_init=True):
        """``shards``: one ``(x float32[n_i, p], y)`` per agent; ``test``: ``(x, y)``.

        ``random_init`` draws the initial parameters with ``init_uniform`` from a
        local generator seeded by ``seed``; otherwise they start at zero (convex models).
        """
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2=}")
        self.name = name
        self.objective = objective
        self.seed = int(seed)
        self.l2 = float(l2)
        self.batch_size = int(batch_size)
        self.flat = FlatModule(module)
        self.module = module
        self.d = self.flat.d
        self.n_agents = len(shards)
        self.agent_sizes = np.array([len(y) for _, y in shards], dtype=np.int64)
        # Agents' shards are consecutive row blocks of one training tensor: a shard is a view, and
        # the full training objective is one forward pass.
        self._x_train = torch.from_numpy(np.ascontiguousarray(np.concatenate([x for x, _ in shards]),
                                                              dtype=np.float32))
        self._y_train = objective.targets(np.concatenate([y for _, y in shards]))
        self._offsets = np.concatenate([[0], np.cumsum(self.agent_sizes)])
        self._x_test = torch.from_numpy(np.ascontiguousarray(test[0], dtype=np.float32))
        self._y_test = objective.targets(test[1])
        if random_init:
            init_uniform(module, torch.Generator().manual_seed(torch_seed(self.seed, "init")))
        self._init = self.flat.params.numpy().copy()

    @property
    def f_star(self):
        """Exact optimal value of the training objective, where known (None here)."""
        return None

    def init_params(self):
        """The initial parameters, float32[d]: a fresh copy on each call, the same for a given seed."""
        return self._init.copy()

    def local_data(self, agent):
        """Agent ``agent``'s training features and targets (torch views, not copies)."""
        lo, hi = self._offsets[agent], self._offsets[agent + 1]
        return self._x_train[lo:hi], self._y_train[lo:hi]

    def batch(self, agent, round):
        """Sorted indices into the agent's shard of its round-``round`` batch (all of it when batch_size=0)."""
        return minibatch(self.seed, agent, round, int(self.agent_sizes[agent]), self.batch_size)

    def local_grad(self, agent, params, round=0, out=None):
        """``(f_i(w), grad f_i(w))`` on agent ``agent``'s batch of round ``round``, at ``w = params``.

        ``grad`` is a new float32[d] array, or written into ``out`` (float32[d]) when given.
        The same arguments give bit-identical results in any process (given the same thread count).
        """
        if not 0 <= agent < self.n_agents:
            raise ValueError(f"agent must be in [0, {self.n_agents}), got {agent=}")
        x, y = self.local_data(agent)
        if self.batch_size:
            idx = torch.from_numpy(self.batch(agent, round))
            x, y = x[idx], y[idx]
        self.flat.load(params)
        self.flat.zero_grad()
        with torch.enable_grad():
            loss = self.objective.loss(self.module(x), y)
            loss.backward()
        self.flat.check_bound()
        value = float(loss.detach())
        grad = self.flat.grad
        if self.l2:
            value += self._l2_term()
            grad.add_(self.flat.params, alpha=self.l2)
        if out is None:
            return value, grad.numpy().copy()
        out[...] = grad.numpy()
        return value, out

    def _l2_term(self):
        return 0.5 * self.l2 * float(torch.dot(self.flat.params, self.flat.params))

    def evaluate(self, params):
        """Metrics at ``params``: training objective ``f`` and accuracy, held-out mean loss and accuracy.

        ``train_loss`` includes the ``l2`` term (it is the training objective);
        ``test_loss`` is the plain mean per-sample loss on held-out data (NaN if there is none).
        """
        metrics = self._metrics(params)
        return {name: metrics[name] for name in self.metric_names}

    def _metrics(self, params):
        self.flat.load(params)
        with torch.no_grad():
            metrics = {}
            for part, x, y in (("train", self._x_train, self._y_train), ("test", self._x_test, self._y_test)):
                if len(y) == 0:
                    metrics[f"{part}_loss"] = metrics[f"{part}_accuracy"] = float("nan")
                    continue
                outputs = self.module(x)
                metrics[f"{part}_loss"] = float(self.objective.loss(outputs, y))
                if self.objective.predict is not None:
                    metrics[f"{part}_accuracy"] = float((self.objective.predict(outputs) == y).double().mean())
            if self.l2:
                metrics["train_loss"] += self._l2_term()
        return metrics

    def __repr__(self):
        return (f"Task({self.name!r}, d={self.d}, n_agents={self.n_agents}, "
                f"samples={int(self.agent_sizes.sum())}, batch_size={self.batch_size})")
