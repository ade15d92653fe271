"""Per-sample losses: what a task's objective averages over its samples.

Each objective maps model outputs ``float32[N, out]`` and targets to the mean
loss over the ``N`` samples, converts targets to the tensor type it needs,
and (for classification) turns outputs into predicted labels.
"""
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class Objective(NamedTuple):
    name: str
    loss: Callable           # (outputs, targets) -> mean loss, a 0-d tensor
    targets: Callable        # numpy targets -> torch tensor
    predict: Callable | None  # outputs -> int64 labels; None for regression


def _squared(outputs, y):
    # 0.5 * mean_i (f(x_i) - y_i)^2, the least-squares objective.
    return 0.5 * torch.mean((outputs[:, 0] - y) ** 2)


def _binary_logistic(outputs, y):
    # mean_i log(1 + exp(-s_i z_i)) with s_i = +-1 and z_i the logit: binary logistic regression.
    return F.binary_cross_entropy_with_logits(outputs[:, 0], y)


def _as_float(y):
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def _as_long(y):
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


SQUARED = Objective("squared", _squared, _as_float, None)
BINARY_LOGISTIC = Objective("binary_logistic", _binary_logistic, _as_float,
                            lambda out: (out[:, 0] > 0).long())
# mean_i -log softmax(z_i)[y_i]: multinomial logistic regression / softmax cross-entropy.
CROSS_ENTROPY = Objective("cross_entropy", F.cross_entropy, _as_long, lambda out: out.argmax(dim=1))


def _as_given(y):
    # A user loss gets the targets as given, floating point as float32 (the model's precision), integers as int64.
    y = np.ascontiguousarray(y)
    if y.dtype.kind == "f":
        y = y.astype(np.float32, copy=False)
    elif y.dtype.kind in "iu":
        y = y.astype(np.int64, copy=False)
    return torch.from_numpy(y)


def _mse(outputs, y):
    # mean over all elements of (outputs - y)^2; outputs are reshaped to the targets' shape ([N, 1] vs [N]).
    return F.mse_loss(outputs.reshape(y.shape), y)


def _bce(outputs, y):
    # mean over all elements of the logistic loss of logits against 0/1 targets of the same number of elements.
    return F.binary_cross_entropy_with_logits(outputs.reshape(y.shape), y)


# Losses a TorchTask names: mean over samples (and outputs) of the per-element loss.
LOSSES = {
    "cross_entropy": CROSS_ENTROPY,  # outputs float32[N, C] logits, targets int labels [N]
    "mse": Objective("mse", _mse, _as_float, None),
    "bce": Objective("bce", _bce, _as_float, lambda out: (out > 0).long()),  # logits, 0/1 targets
}


def custom(loss):
    """The objective of a user's ``loss(outputs, targets) -> 0-d tensor``: targets as given, no predictions."""
    return Objective(getattr(loss, "__name__", "custom"), loss, _as_given, None)


def for_classes(n_classes):
    """The classification objective for ``n_classes`` classes and the number of model outputs it needs."""
    return (BINARY_LOGISTIC, 1) if n_classes == 2 else (CROSS_ENTROPY, n_classes)
