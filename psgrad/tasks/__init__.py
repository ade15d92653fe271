"""Tasks: models, data, partitioning among agents, and evaluation.

::

    from psgrad.tasks import make_task
    task = make_task(cfg.task, n_agents=8, seed=0)
    w = task.init_params()                          # float32[task.d]
    loss, g = task.local_grad(agent, w, round)      # agent's local objective and its gradient
    task.evaluate(w)                                # {"train_loss", "test_loss", ...}

Adding a task is one builder ``(cfg, n_agents, seed) -> Task`` and one line in ``TASKS``.
"""
from ..errors import ConfigError
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
}


def make_task(cfg, n_agents, seed):
    """Build task ``cfg.name`` for ``n_agents`` agents; a deterministic function of ``(cfg, n_agents, seed)``."""
    if cfg.name not in TASKS:
        raise ConfigError(f"unknown task {cfg.name!r}; valid: {', '.join(sorted(TASKS))}")
    if cfg.batch_size < 0:
        raise ConfigError(f"batch_size must be >= 0 (0: full local batch), got batch_size={cfg.batch_size}")
    if cfg.l2 < 0:
        raise ConfigError(f"l2 must be >= 0, got l2={cfg.l2}")
    if n_agents < 1:
        raise ConfigError(f"need at least one agent, got {n_agents=}")
    return TASKS[cfg.name](cfg, int(n_agents), int(seed))


__all__ = ["LinRegTask", "PARTITIONS", "TASKS", "Task", "TorchTask", "make_task", "partition"]
