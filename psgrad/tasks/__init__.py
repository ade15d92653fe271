"""Tasks: models, data, partitioning among agents, and evaluation.

::

    from psgrad.tasks import make_task
    task = make_task(cfg.task, n_agents=8, seed=0)
    w = task.init_params()                          # float32[task.d]
    loss, g = task.local_grad(agent, w, round)      # agent's local objective and its gradient
    task.evaluate(w)                                # {"train_loss", "test_loss", ...}

Adding a task is one builder ``(cfg, n_agents, seed) -> Task`` and one line in ``TASKS``, or a builder in
the user's own package named by import path or entry point (docs/extending.md); such a task takes its own
parameters from ``cfg.params`` (``task.params``), which the built-in tasks refuse.

This subpackage is callable: ``psgrad.tasks()`` lists every task name, as ``names()`` does.
"""
import sys

from ..errors import ConfigError
from ..registry import Listing, construct, names as registry_names, resolve
from .charlm import build_charlm
from .classification import build_cnn, build_logreg, build_mlp
from .linreg import LinRegTask, build_linreg
from .partition import PARTITIONS, partition
from .task import Task
from .torch_task import TorchTask

# name -> builder(cfg: TaskConfig, n_agents: int, seed: int) -> Task
TASKS = {
    "linreg": build_linreg,
    "logreg": build_logreg,
    "mlp": build_mlp,
    "cnn": build_cnn,
    "charlm": build_charlm,
}


def make_task(cfg, n_agents, seed):
    """Build task ``cfg.name`` (built-in, ``package.module:attr`` or entry point) for ``n_agents`` agents;
    a deterministic function of ``(cfg, n_agents, seed)``. With ``cfg.eval == "test"`` it evaluates on
    held-out data only (``Task.skip_train_metrics``)."""
    found = resolve("task", TASKS, cfg.name, Task)
    if cfg.params and not found.plugin:
        raise ConfigError(f"task {cfg.name!r} takes no task.params (its parameters are the other task.* keys); "
                          f"got {', '.join(map(str, cfg.params))}")
    if cfg.batch_size < 0:
        raise ConfigError(f"batch_size must be >= 0 (0: full local batch), got batch_size={cfg.batch_size}")
    if cfg.l2 < 0:
        raise ConfigError(f"l2 must be >= 0, got l2={cfg.l2}")
    if n_agents < 1:
        raise ConfigError(f"need at least one agent, got {n_agents=}")
    task = construct(found, Task, cfg, int(n_agents), int(seed))
    if cfg.eval == "test":
        task.skip_train_metrics()
    return task


def names():
    """Every task name this process can see: the built-ins and those of installed plugins."""
    return registry_names("task", TASKS)


sys.modules[__name__].__class__ = Listing

__all__ = ["LinRegTask", "PARTITIONS", "TASKS", "Task", "TorchTask", "make_task", "names",
           "partition"]
