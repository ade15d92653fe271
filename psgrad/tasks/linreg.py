"""``linreg``: heterogeneous least squares with an exactly known optimum.

Agent ``i`` holds ``n_i`` samples and the local objective

    f_i(w) = (1/(2 n_i)) ||X_i w - y_i||^2 + (l2/2) ||w||^2,

the training objective is ``f = sum_i (n_i/N) f_i``, and ``f_star = min_w f``
is computed in float64 by least squares on exactly the float32 data the model
sees, so ``suboptimality = f(w) - f_star`` (with ``f(w)`` also evaluated in
float64) is exact for any float32 ``w``, down to float64 rounding.

Where the data comes from (``dataset``):

- ``"synthetic"``, or the name of a bundled classification dataset (the
  configuration's default), selects the synthetic generator: a base vector
  ``w0 ~ N(0, I/dim)``; agent ``i`` has its own feature mean
  ``m_i ~ heterogeneity * N(0, I/dim)`` and its own local optimum
  ``w_i = w0 + heterogeneity * N(0, I/dim)``; its features are
  ``x ~ N(m_i, I)`` and labels ``y = x.w_i + noise * N(0, 1)``. Each agent
  draws ``samples_per_agent`` training samples and, from the same
  distribution, ``round(samples_per_agent * test_fraction / (1 - test_fraction))``
  held-out samples. ``heterogeneity = 0`` makes all agents identically
  distributed. ``partition`` does not apply (each agent has its own generator).
- ``"diabetes"`` (scikit-learn's bundled regression set) or a path to a
  LIBSVM regression file: features and target standardized with training
  statistics, split among agents by the configured partition, which treats
  the target's quartile as the label.
"""
import numpy as np

from ..errors import ConfigError
from .data import BUNDLED, load, split
from .device import resolve_device
from .models import linear, on_meta
from .objectives import SQUARED
from .partition import partition
from .seeding import rng_for
from .task import Task


# dataset names that select the synthetic generator
SYNTHETIC = {"synthetic"} | {name for name, (_, kind) in BUNDLED.items() if kind == "classification"}


class LinRegTask(Task):
    """A least-squares Task with ``f_star``, ``x_star`` (float64) and an exact ``suboptimality`` metric."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.metric_names += ("suboptimality",)
        self._x64 = self._x_train.cpu().numpy().astype(np.float64)
        self._y64 = self._y_train.cpu().numpy().astype(np.float64)
        self.x_star = solve(self._x64, self._y64, self.l2)
        self._f_star = self.objective64(self.x_star)

    @property
    def f_star(self):
        """``min_w f(w)``, exact in float64."""
        return self._f_star

    def objective64(self, w):
        """The training objective ``f(w)`` evaluated in float64."""
        w = np.asarray(w, dtype=np.float64)
        r = self._x64 @ w - self._y64
        return 0.5 * float(r @ r) / len(r) + 0.5 * self.l2 * float(w @ w)

    def _metrics(self, params):
        # train_loss = f(params) in float64, suboptimality = f(params) - f_star; test_loss in float32.
        metrics = super()._metrics(params)
        metrics["train_loss"] = self.objective64(params)
        metrics["suboptimality"] = metrics["train_loss"] - self._f_star
        return metrics


def solve(x, y, l2):
    """``argmin_w (1/(2N))||x w - y||^2 + (l2/2)||w||^2`` in float64 (minimum-norm when not unique).

    Written as one least-squares problem ``min ||A w - b||^2`` with
    ``A = [x / sqrt(N); sqrt(l2) I]`` and ``b = [y / sqrt(N); 0]``, solved by SVD.
    """
    n, dim = x.shape
    a, b = x / np.sqrt(n), y / np.sqrt(n)
    if l2 > 0:
        a = np.vstack([a, np.sqrt(l2) * np.eye(dim)])
        b = np.concatenate([b, np.zeros(dim)])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def synthetic(cfg, n_agents, seed):
    """Per-agent shards and pooled held-out data of the synthetic generator (see the module docstring)."""
    rng = rng_for(seed, "linreg/data")
    dim, n_train = cfg.dim, cfg.samples_per_agent
    n_test = int(round(n_train * cfg.test_fraction / (1.0 - cfg.test_fraction)))
    scale = 1.0 / np.sqrt(dim)
    w0 = rng.normal(size=dim) * scale
    shards, tests = [], []
    for _ in range(n_agents):
        mean = cfg.heterogeneity * scale * rng.normal(size=dim)
        w_local = w0 + cfg.heterogeneity * scale * rng.normal(size=dim)
        x = rng.normal(size=(n_train + n_test, dim)) + mean
        y = x @ w_local + cfg.noise * rng.normal(size=n_train + n_test)
        x, y = x.astype(np.float32), y.astype(np.float32)
        shards.append((x[:n_train], y[:n_train]))
        tests.append((x[n_train:], y[n_train:]))
    return shards, tuple(np.concatenate(part) for part in zip(*tests))


def real(cfg, n_agents, seed):
    """Per-agent shards and held-out data of a regression dataset (diabetes or a LIBSVM file), standardized."""
    data = load(cfg.dataset, "regression")
    quartile = lambda y: np.searchsorted(np.quantile(y, [0.25, 0.5, 0.75]), y)  # noqa: E731
    parts = split(data, cfg.test_fraction, seed, strata=quartile(data.y))
    mu, sd = parts.y_train.mean(), parts.y_train.std()
    y_train = ((parts.y_train - mu) / sd).astype(np.float32)
    y_test = ((parts.y_test - mu) / sd).astype(np.float32)
    owners = partition(cfg.partition, quartile(y_train), n_agents, seed,
                       alpha=cfg.alpha, classes_per_agent=cfg.classes_per_agent)
    return [(parts.x_train[idx], y_train[idx]) for idx in owners], (parts.x_test, y_test)


def build_linreg(cfg, n_agents, seed):
    """The ``linreg`` task: linear model ``w.x`` (no intercept), started at zero."""
    for field in ("dim", "samples_per_agent"):
        if getattr(cfg, field) < 1:
            raise ConfigError(f"{field} must be >= 1, got {field}={getattr(cfg, field)}")
    if cfg.heterogeneity < 0 or cfg.noise < 0:
        raise ConfigError(f"heterogeneity and noise must be >= 0, got {cfg.heterogeneity=}, {cfg.noise=}")
    shards, test = (synthetic if cfg.dataset in SYNTHETIC else real)(cfg, n_agents, seed)
    module = on_meta(linear, shards[0][0].shape[1], 1, bias=False)
    return LinRegTask("linreg", module, SQUARED, shards, test, seed=seed, l2=cfg.l2,
                      batch_size=cfg.batch_size, init="zeros", device=resolve_device(cfg.device))
