"""A learning task: a torch model on a flat parameter vector, agents' data shards, and evaluation.

The objective of agent ``i`` with ``n_i`` local samples is

    f_i(w) = (1/n_i) sum_{s in shard i} loss(model_w(x_s), y_s) + (l2/2) ||w||^2

and the training objective is the size-weighted mean of the local ones,
``f(w) = sum_i (n_i/N) f_i(w)``, which equals the mean per-sample loss over
all ``N`` training samples plus the same ``l2`` term. ``local_grad`` returns
``f_i`` and its gradient on the full shard, or on a minibatch of the shard
chosen by ``(seed, agent, round)`` alone, so any process computes the same
batch and a resumed run needs no generator state.

Modes and randomness:

- ``local_grad`` runs the model in training mode (``module.train()``),
  ``evaluate`` in evaluation mode (``module.eval()``): dropout is off and
  BatchNorm normalizes with running statistics when evaluating.
- Every random draw of a forward pass (dropout masks, ...) comes from torch's
  generators seeded by ``(seed, agent, round)`` for that one call and restored
  after it (``seeding.torch_rng``): the same gradient in any process, whatever
  the global generators' state.
- BatchNorm running statistics are not part of the flat vector ``w`` (its
  meaning, and ``d``, are those of the parameters alone) and training never
  sends them: local_grad normalizes with the batch's own statistics, as
  training mode does. ``evaluate(w)`` first recomputes them at ``w`` from the
  whole training set (every BatchNorm layer in training mode with a
  cumulative average, every other layer in evaluation mode, so dropout is
  off), then evaluates. Evaluation is thus a function of ``w`` and the data
  alone, the same on the server as anywhere else ("precise BN"; Wu and
  Johnson, "Rethinking 'Batch' in BatchNorm", 2021).

Initial parameters (``init``): ``"zeros"``, ``"uniform"`` (``models.init_uniform``
from a generator seeded by ``(seed, "init")``), or ``"module"`` (the module's
own parameters, as built).
"""
import hashlib
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .device import determinism_warnings
from .flat import FlatModule
from .models import init_uniform
from .seeding import forward_seed, minibatch, step_purpose, torch_rng, torch_seed

INITS = ("module", "uniform", "zeros")


class Task:
    """Model + objective + per-agent training shards + held-out data. See the module docstring."""

    def __init__(self, name, module, objective, shards, test, *, seed, l2=0.0, batch_size=0, init="uniform",
                 device=torch.device("cpu"), metrics=None):
        """``shards``: one ``(x, y)`` per agent, numpy or torch, ``x`` of shape ``[n_i, ...]``;
        ``test``: ``(x, y)`` held-out data or None; ``metrics``: ``{name: fn(outputs, y) -> float}``
        evaluated on the held-out data as ``test_<name>``.

        Floating-point features become float32, integer ones int64. The model and
        all data are moved to ``device`` (a ``torch.device``).
        """
        if l2 < 0:
            raise ConfigError(f"l2 must be >= 0, got {l2=}")
        if batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0 (0: full local batch), got {batch_size=}")
        if init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        metrics = dict(metrics or {})
        if metrics and test is None:
            raise ConfigError(f"metrics {', '.join(metrics)} are evaluated on held-out data, but test is None")
        for m, fn in metrics.items():
            if m in ("loss", "accuracy") or not callable(fn):
                raise ConfigError(f"metric {m!r} must be a callable (outputs, y) -> float named other than "
                                  f"loss and accuracy")
        self.name = name
        self.objective = objective
        self.seed = int(seed)
        self.l2 = float(l2)
        self.batch_size = int(batch_size)
        self.device = device
        self.extra_metrics = metrics
        self._eval_train = True
        if init == "module" and any(p.is_meta for p in module.parameters()):
            raise ConfigError(f"init='module' needs a module with parameter values, but {name!r} is on the meta "
                              f"device; use init='uniform' or 'zeros'")
        self.flat = FlatModule(module, device)
        self.module = module
        self.d = self.flat.d
        if self.d == 0:
            raise ConfigError(f"task {name!r}: the model has no parameters")
        shards = [(_numpy(x, f"shard {a} x"), _numpy(y, f"shard {a} y")) for a, (x, y) in enumerate(shards)]
        for a, (x, y) in enumerate(shards):
            if len(x) != len(y) or len(y) == 0:
                raise ConfigError(f"agent {a}'s shard must hold one or more samples with as many targets as "
                                  f"features, got {len(x)} features and {len(y)} targets")
        self.n_agents = len(shards)
        self.agent_sizes = np.array([len(y) for _, y in shards], dtype=np.int64)
        # Agents' shards are consecutive row blocks of one training tensor: a shard is a view, and
        # the full training objective is one forward pass.
        self._x_train = _features([x for x, _ in shards]).to(device)
        self._y_train = objective.targets(_concatenate([y for _, y in shards], "targets")).to(device)
        self._offsets = np.concatenate([[0], np.cumsum(self.agent_sizes)])
        self._has_test = test is not None
        if self._has_test:
            self._x_test = _features([_numpy(test[0], "test x")]).to(device)
            self._y_test = objective.targets(_numpy(test[1], "test y")).to(device)
        self.metric_names = ("train_loss", *(("train_accuracy",) if objective.predict else ()),
                             *(("test_loss",) if self._has_test else ()),
                             *(("test_accuracy",) if objective.predict and self._has_test else ()),
                             *(f"test_{m}" for m in metrics))
        if init == "zeros":
            self.flat.params.zero_()
        elif init == "uniform":
            init_uniform(module, torch.Generator().manual_seed(torch_seed(self.seed, "init")))
        self._init = self.flat.params.cpu().numpy().copy()
        self._init_digest = self._digest()
        # The host buffer the gradient reaches the codecs in: the flat gradient itself on the CPU,
        # a reused pinned buffer on a GPU (a device-to-host copy from pinned memory needs no staging).
        self._pinned = None
        if device.type == "cuda":
            self._pinned = torch.empty(self.d, dtype=torch.float32, pin_memory=True)
        self.grad_buffer = (self.flat.grad if self._pinned is None else self._pinned).numpy()

    @property
    def f_star(self):
        """Exact optimal value of the training objective, where known (None here)."""
        return None

    def init_params(self):
        """The initial parameters, float32[d]: a fresh copy on each call, the same for a given seed."""
        return self._init.copy()

    def init_digest(self):
        """SHA-256 (hex) of the initial parameters, their names and shapes, and the module's buffers as built.

        Equal on every rank of a job when each rank built the same model: the
        runtime compares it at start-up (a module instance whose parameters came
        from an unseeded generator gives a different start on each rank).
        """
        return self._init_digest

    def _digest(self):
        h = hashlib.sha256(repr(self.flat.shapes).encode())
        h.update(self._init.tobytes())
        for name, buf in self.module.named_buffers():
            h.update(name.encode())
            h.update(buf.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def determinism_warnings(self):
        """Lines to print at start-up: why this task's gradients may not be bit-identical between runs."""
        return determinism_warnings(self.device)

    def local_data(self, agent):
        """Agent ``agent``'s training features and targets (torch views on the task's device, not copies)."""
        lo, hi = self._offsets[agent], self._offsets[agent + 1]
        return self._x_train[lo:hi], self._y_train[lo:hi]

    def batch(self, agent, round, step=0):
        """Sorted indices into the agent's shard of its batch of round ``round`` and local step ``step`` (all of
        it when batch_size=0)."""
        return minibatch(self.seed, agent, round, int(self.agent_sizes[agent]), self.batch_size, step)

    def local_grad(self, agent, params, round=0, out=None, phases=None, step=0):
        """``(f_i(w), grad f_i(w))`` on agent ``agent``'s batch of round ``round``, at ``w = params``.

        ``step``: the local step of a federated round (its own batch and forward-pass draws; step 0 is a
        gradient round's).

        ``grad`` is a new float32[d] array, or written into ``out`` (float32[d]) when given;
        ``out=task.grad_buffer`` (the reused host buffer) saves a copy. With ``phases``
        (``phases(name)`` a context manager, as ``runtime.phases.Phases``), the forward and
        backward pass is timed as ``"compute"`` and the copy to host memory as ``"copy"``.
        The same arguments give bit-identical results in any process (given the same
        thread count on the CPU; see ``determinism_warnings`` on a GPU).
        """
        if not 0 <= agent < self.n_agents:
            raise ValueError(f"agent must be in [0, {self.n_agents}), got {agent=}")
        phases = phases or _untimed
        with phases("compute"):
            x, y = self.local_data(agent)
            if self.batch_size:
                idx = torch.from_numpy(self.batch(agent, round, step)).to(self.device)
                x, y = x[idx], y[idx]
            self.flat.load(params)
            self.flat.zero_grad()
            self.module.train()
            with torch.enable_grad(), torch_rng(forward_seed(self.seed, agent, round, step_purpose("forward", step)),
                                                  self.device):
                loss = self.objective.loss(self.module(x), y)
                loss.backward()
            self.flat.check_bound()
            value = float(loss.detach())
            grad = self.flat.grad
            if self.l2:
                value += self._l2_term()
                grad.add_(self.flat.params, alpha=self.l2)
            if self._pinned is not None:
                torch.cuda.synchronize(self.device)  # the compute phase ends when the GPU is done
        with phases("copy"):
            if self._pinned is not None:
                self._pinned.copy_(grad)
            if out is None:
                return value, self.grad_buffer.copy()
            if out is not self.grad_buffer:
                out[...] = self.grad_buffer
            return value, out

    def _l2_term(self):
        return 0.5 * self.l2 * float(torch.dot(self.flat.params, self.flat.params))

    def skip_train_metrics(self):
        """Evaluate on held-out data only (``task.eval: test``): no forward pass over the training set, and no
        ``train_loss`` or ``train_accuracy``. On a large training set this makes evaluation several times cheaper."""
        if not self._has_test or len(self._y_test) == 0:
            raise ConfigError(f"task.eval=test evaluates on held-out data only, but task {self.name!r} has none "
                              f"(test_fraction=0?)")
        self._eval_train = False
        self.metric_names = tuple(m for m in self.metric_names if m not in ("train_loss", "train_accuracy"))

    def evaluate(self, params):
        """Metrics at ``params``: training objective ``f`` and accuracy, held-out mean loss and accuracy.

        ``train_loss`` includes the ``l2`` term (it is the training objective);
        ``test_loss`` is the plain mean per-sample loss on held-out data (NaN if
        there is none). The model runs in evaluation mode, after BatchNorm
        statistics are recomputed at ``params`` (module docstring).
        """
        metrics = self._metrics(params)
        return {name: metrics[name] for name in self.metric_names}

    def _metrics(self, params):
        self.flat.load(params)
        with torch.no_grad(), torch_rng(forward_seed(self.seed, 0, 0, "evaluate"), self.device):
            self._recompute_batchnorm()
            self.module.eval()
            metrics = {}
            parts = [("train", self._x_train, self._y_train)] if self._eval_train else []
            if self._has_test:
                parts.append(("test", self._x_test, self._y_test))
            for part, x, y in parts:
                if len(y) == 0:  # only held-out data can be empty (test_fraction=0)
                    metrics.update({f"test_{m}": float("nan") for m in ("loss", "accuracy", *self.extra_metrics)})
                    continue
                outputs = self.module(x)
                metrics[f"{part}_loss"] = float(self.objective.loss(outputs, y))
                if self.objective.predict is not None:
                    hits = self.objective.predict(outputs).reshape(y.shape) == y
                    metrics[f"{part}_accuracy"] = float(hits.double().mean())
                if part == "test":
                    metrics.update({f"test_{m}": float(fn(outputs, y)) for m, fn in self.extra_metrics.items()})
            if self.l2 and self._eval_train:
                metrics["train_loss"] += self._l2_term()
        return metrics

    def _recompute_batchnorm(self):
        """Set every BatchNorm layer's running statistics to those of the training set at the loaded parameters.

        One forward pass over all training samples with BatchNorm layers in
        training mode and cumulative averaging (``momentum=None`` after a reset:
        one batch gives exactly its mean and unbiased variance), every other
        layer in evaluation mode. A model without BatchNorm is not run.
        """
        norms = [m for m in self.module.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not norms:
            return
        self.module.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        self.module(self._x_train)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    def __repr__(self):
        return (f"Task({self.name!r}, d={self.d}, n_agents={self.n_agents}, "
                f"samples={int(self.agent_sizes.sum())}, batch_size={self.batch_size}, device={self.device})")


def _untimed(name):
    return nullcontext()


def _numpy(a, what):
    """``a`` (numpy array, torch tensor, or array-like) as a numpy array; ConfigError if it is none of them."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    try:
        a = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be a numpy array or a torch tensor: {e}") from None
    if a.dtype == object or a.ndim == 0:
        raise ConfigError(f"{what} must be an array with one row per sample, got {a.dtype} of shape {a.shape}")
    return a


def _concatenate(parts, what):
    if len({p.shape[1:] for p in parts}) > 1:
        shapes = ", ".join(str(p.shape[1:]) for p in parts)
        raise ConfigError(f"every agent's {what} must have the same shape per sample, got {shapes}")
    return np.concatenate(parts)


def _features(parts):
    """One torch tensor of all rows of ``parts``: floating point as float32, integers as int64."""
    x = _concatenate(parts, "features")
    if x.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if x.dtype.kind in "iu":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(x))
