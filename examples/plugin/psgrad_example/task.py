"""``wine_mlp``: a small MLP classifying scikit-learn's wine data (178 samples, 13 features, 3 classes),
split among agents by this plugin itself.

Its own parameters (``task.params``):

- ``hidden`` (int, default 16): width of the hidden ReLU layer;
- ``sort_by`` (str, default ``"alcohol"``): a wine feature; the training samples are sorted by it and
  dealt out in contiguous blocks, so each agent sees a different range of that feature (a feature-skewed,
  non-iid split); ``""`` deals a random permutation instead (iid).

From the rest of ``task.*`` it uses ``test_fraction``, ``batch_size`` and ``l2``. Everything is drawn from
generators seeded by the run's seed, so every process builds the same task.
"""
import numpy as np
import torch
from sklearn.datasets import load_wine
from torch import nn

from psgrad.tasks import Task
from psgrad.tasks.objectives import CROSS_ENTROPY

DEFAULTS = {"hidden": 16, "sort_by": "alcohol"}


def build_wine_mlp(cfg, n_agents, seed):
    """The task for ``n_agents`` agents: ``(cfg: TaskConfig, n_agents, seed) -> Task``."""
    unknown = sorted(set(cfg.params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown task.params {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    params = {**DEFAULTS, **cfg.params}
    hidden, sort_by = params["hidden"], params["sort_by"]
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"task.params.hidden must be an int >= 1, got {hidden!r}")
    data = load_wine()
    features = list(data.feature_names)
    if sort_by and sort_by not in features:
        raise ValueError(f"task.params.sort_by must be a wine feature or '', got {sort_by!r}; "
                         f"valid: {', '.join(features)}")

    # Held-out split, then standardization with training statistics only
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.target))
    n_test = int(round(cfg.test_fraction * len(order)))
    test, train = order[:n_test], order[n_test:]
    if len(train) < n_agents:
        raise ValueError(f"wine has {len(train)} training samples, fewer than the {n_agents} agents")
    mean, std = data.data[train].mean(0), data.data[train].std(0)
    x = ((data.data - mean) / std).astype(np.float32)
    y = data.target.astype(np.int64)

    # This plugin's own partition: contiguous blocks of the training samples sorted by one feature
    if sort_by:
        train = train[np.argsort(data.data[train, features.index(sort_by)], kind="stable")]
    shards = [(x[idx], y[idx]) for idx in np.array_split(train, n_agents)]

    # Built on the meta device: no memory and no draw from torch's global generator; Task binds the
    # parameters to its flat buffer and draws them from a generator seeded by `seed`
    with torch.device("meta"):
        module = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 3))
    return Task("wine_mlp", module, CROSS_ENTROPY, shards, (x[test], y[test]), seed=seed, l2=cfg.l2,
                batch_size=cfg.batch_size)
