"""Classification tasks on a real dataset: ``logreg``, ``mlp`` and ``cnn``.

All three minimise the mean per-sample classification loss over an agent's
shard plus ``(l2/2)||w||^2``: binary logistic loss with one logit for two
classes, softmax cross-entropy (multinomial logistic) for more. Features are
standardized with training statistics; the training part is split among agents
by the configured partition.
"""
from ..errors import ConfigError
from . import models
from .data import IMAGE_SHAPES, load, split
from .device import resolve_device
from .objectives import for_classes
from .partition import partition
from .task import Task


def _shards(cfg, n_agents, seed):
    """Load, split and partition ``cfg.dataset``: per-agent ``(x, y)`` shards, held-out data, class count."""
    data = load(cfg.dataset, "classification")
    parts = split(data, cfg.test_fraction, seed)
    owners = partition(cfg.partition, parts.y_train, n_agents, seed,
                       alpha=cfg.alpha, classes_per_agent=cfg.classes_per_agent)
    shards = [(parts.x_train[idx], parts.y_train[idx]) for idx in owners]
    return shards, (parts.x_test, parts.y_test), parts.n_classes


def _task(name, cfg, n_agents, seed, build_module, init):
    device = resolve_device(cfg.device)
    shards, test, n_classes = _shards(cfg, n_agents, seed)
    objective, n_outputs = for_classes(n_classes)
    module = models.on_meta(build_module, shards[0][0].shape[1], n_outputs)
    return Task(name, module, objective, shards, test, seed=seed, l2=cfg.l2, batch_size=cfg.batch_size,
                init=init, device=device)


def build_logreg(cfg, n_agents, seed):
    """Logistic regression ``z = W x + b`` (binary: one logit; multiclass: multinomial), started at zero."""
    return _task("logreg", cfg, n_agents, seed, models.linear, init="zeros")


def build_mlp(cfg, n_agents, seed):
    """One hidden ReLU layer of width ``cfg.hidden``, PyTorch-default-scaled init from the seed."""
    if cfg.hidden < 1:
        raise ConfigError(f"hidden must be >= 1, got hidden={cfg.hidden}")
    return _task("mlp", cfg, n_agents, seed,
                 lambda p, out: models.mlp(p, out, hidden=cfg.hidden), init="uniform")


def build_cnn(cfg, n_agents, seed):
    """The small CNN of ``models.cnn`` on an image dataset (the 8x8 digits)."""
    if cfg.dataset not in IMAGE_SHAPES:
        raise ConfigError(f"task 'cnn' needs an image dataset, got {cfg.dataset!r}; "
                          f"valid: {', '.join(sorted(IMAGE_SHAPES))}")
    shape = IMAGE_SHAPES[cfg.dataset]
    return _task("cnn", cfg, n_agents, seed, lambda p, out: models.cnn(shape, out), init="uniform")
