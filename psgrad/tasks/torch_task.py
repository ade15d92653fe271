"""``TorchTask``: a task from any torch model, loss and per-agent data, with no subclassing.

::

    import psgrad
    from torch import nn

    parts = psgrad.partition("dirichlet", y_train, n_agents=8, seed=0, alpha=0.3)
    task = psgrad.TorchTask(
        lambda: nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 3)),
        "cross_entropy", [(x_train[i], y_train[i]) for i in parts], test=(x_test, y_test),
        batch_size=32, seed=0)
    w = task.init_params()
    loss, g = task.local_grad(agent=3, params=w, round=0)
    task.evaluate(w)    # {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}

The result is a ``Task`` (see ``task.py``): training mode in ``local_grad``,
evaluation mode in ``evaluate``, forward-pass randomness keyed by
``(seed, agent, round)``, BatchNorm statistics recomputed for evaluation.
"""
import torch
from torch import nn

from ..errors import ConfigError
from .device import resolve_device
from .objectives import LOSSES, custom
from .seeding import torch_rng, torch_seed
from .task import Task


class TorchTask(Task):
    """A task from a torch model and data. See the module docstring for an example.

    - ``model``: a zero-argument factory returning an ``nn.Module`` (called with
      torch's generators seeded by ``(seed, "init")``, so every rank builds the
      same parameters whatever its global generator state), or an ``nn.Module``
      instance (its parameters as given: every rank must build it identically;
      ``task.init_digest()`` lets the runtime check that they did). The task
      takes the module over: its parameters become views of one flat vector
      ``w`` of length ``task.d`` (``named_parameters()`` order) and it moves to
      ``device``.
    - ``loss``: ``"cross_entropy"`` (logits ``[N, C]``, integer labels ``[N]``),
      ``"mse"`` (mean squared error), ``"bce"`` (logits against 0/1 targets), or
      a callable ``loss(outputs, y) -> 0-d tensor``, the mean over the batch;
      a callable gets ``y`` as given (float as float32, integers as int64).
    - ``shards``: one ``(x, y)`` per agent (numpy or torch, ``x`` of shape
      ``[n_i, ...]``), or a function ``agent -> (x, y)`` together with ``n_agents``.
    - ``test``: held-out ``(x, y)``, or None (then only training metrics).
    - ``batch_size``: 0 for the full local shard, else the size of each round's
      minibatch, drawn by ``(seed, agent, round)``.
    - ``l2``: adds ``(l2/2)||w||^2`` to every local objective.
    - ``init``: ``"module"`` (the module's parameters), ``"uniform"``
      (``models.init_uniform`` on its Linear and Conv2d layers), ``"zeros"``.
    - ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    - ``metrics``: ``{name: fn(outputs, y) -> float}``, evaluated on held-out data as
      ``test_<name>``; ``"cross_entropy"`` and ``"bce"`` also report accuracy.
    """

    def __init__(self, model, loss, shards, test=None, *, n_agents=None, name="custom", batch_size=0, seed=0,
                 l2=0.0, init="module", device="cpu", metrics=None):
        device = resolve_device(device)
        super().__init__(name, _module(model, seed, device), _objective(loss), _agent_shards(shards, n_agents),
                         test, seed=seed, l2=l2, batch_size=batch_size, init=init, device=device, metrics=metrics)


def _module(model, seed, device):
    """The module ``model`` is, or builds with torch's generators seeded by ``(seed, "init")``."""
    if isinstance(model, nn.Module):
        return model
    if not callable(model):
        raise ConfigError(f"model must be an nn.Module or a function returning one, got {type(model).__name__}")
    with torch_rng(torch_seed(seed, "init"), device):
        module = model()
    if not isinstance(module, nn.Module):
        raise ConfigError(f"the model factory must return an nn.Module, got {type(module).__name__}")
    return module


def _objective(loss):
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; valid: {', '.join(sorted(LOSSES))}, or a callable")
        return LOSSES[loss]
    if not callable(loss):
        raise ConfigError(f"loss must be a name or a callable (outputs, y) -> tensor, got {type(loss).__name__}")
    return custom(loss)


def _agent_shards(shards, n_agents):
    """The list of per-agent ``(x, y)``: ``shards`` itself, or ``shards(agent)`` for each of ``n_agents``."""
    if callable(shards):
        if n_agents is None or n_agents < 1:
            raise ConfigError(f"shards given as a function agent -> (x, y) need n_agents >= 1, got {n_agents=}")
        shards = [shards(a) for a in range(n_agents)]
    else:
        shards = list(shards)
        if n_agents is not None and n_agents != len(shards):
            raise ConfigError(f"n_agents={n_agents} but {len(shards)} shards were given")
    if not shards:
        raise ConfigError("need the shard of at least one agent")
    for a, shard in enumerate(shards):
        if not (isinstance(shard, (tuple, list)) and len(shard) == 2):
            raise ConfigError(f"agent {a}'s shard must be a pair (x, y), got {type(shard).__name__}")
    return shards
