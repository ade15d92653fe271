"""Model architectures, built without touching torch's global random generator.

Modules are constructed on the ``meta`` device (no memory, no random draws);
``FlatModule`` then binds their parameters to a flat buffer on the task's
device, and ``init_uniform`` fills that buffer from a local ``torch.Generator``. Every
model maps a batch of flat feature vectors ``float32[N, p]`` to outputs
``float32[N, out]``.
"""
import math

import torch
from torch import nn


def linear(n_features, n_outputs, bias=True):
    """``x -> W x (+ b)``: linear and logistic regression."""
    return nn.Linear(n_features, n_outputs, bias=bias)


def mlp(n_features, n_outputs, hidden=64):
    """One hidden layer of width ``hidden`` with ReLU: ``x -> W2 relu(W1 x + b1) + b2``."""
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))


def cnn(image_shape, n_outputs):
    """A small CNN for tiny images (8x8 digits): two 3x3 conv + ReLU + 2x2 max-pool blocks, then linear.

    Shapes for ``(1, 8, 8)`` inputs: 1x8x8 -> 8x4x4 -> 16x2x2 -> 64 -> ``n_outputs``.
    """
    channels, height, width = image_shape
    flat = 16 * (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Unflatten(1, image_shape),
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, n_outputs))


def on_meta(build, *args, **kwargs):
    """Construct ``build(*args, **kwargs)`` on the meta device: no allocation, no global RNG use."""
    with torch.device("meta"):
        return build(*args, **kwargs)


def init_uniform(module, generator):
    """PyTorch's default scale, drawn from ``generator``: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (That is what ``kaiming_uniform_(a=sqrt(5))`` reduces to for nn.Linear and nn.Conv2d.)
    Values are drawn on the CPU (``generator`` is a CPU generator) and copied to
    the module's device, so a seed gives the same start on every device.
    Other layers keep their parameters.
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / math.sqrt(layer.weight[0].numel())
                for p in (layer.weight, layer.bias):
                    if p is not None:
                        p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))
