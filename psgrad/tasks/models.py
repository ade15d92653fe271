"""Model architectures, built without touching torch's global random generator.

Modules are constructed on the ``meta`` device (no memory, no random draws);
``FlatModule`` then binds their parameters to a flat buffer on the task's
device, and ``init_uniform`` fills that buffer from a local ``torch.Generator``. Every
model maps a batch of flat feature vectors ``float32[N, p]`` (``NextChar``: character
ids ``int64[N, T]``) to outputs ``float32[N, out]``.
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
    """A small CNN for small images: two 3x3 conv + ReLU + 2x2 max-pool blocks, then linear.

    Each block halves height and width (rounding down), so the linear layer
    sees ``16 * (H // 4) * (W // 4)`` features. Shapes for the 8x8 digits:
    1x8x8 -> 8x4x4 -> 16x2x2 -> 64 -> ``n_outputs``; for 28x28 MNIST:
    1x28x28 -> 8x14x14 -> 16x7x7 -> 784 -> ``n_outputs``.
    """
    channels, height, width = image_shape
    flat = 16 * (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Unflatten(1, image_shape),
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, n_outputs))


class NextChar(nn.Module):
    """Next-character prediction: embedding, GRU, and a linear read-out of the last hidden state.

    ``int64[N, T]`` character ids -> embeddings ``[N, T, embedding]`` -> GRU
    with ``layers`` layers of width ``hidden`` -> its output at the last step
    ``[N, hidden]`` -> logits ``[N, n_vocab]`` over the next character. A
    smaller version of LEAF's Shakespeare model (an 8-dimensional embedding and
    two LSTM layers of 256; Caldas et al. 2018).
    """

    def __init__(self, n_vocab, embedding=8, hidden=64, layers=1):
        super().__init__()
        self.embed = nn.Embedding(n_vocab, embedding)
        self.rnn = nn.GRU(embedding, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_vocab)

    def forward(self, ids):
        out, _ = self.rnn(self.embed(ids))
        return self.head(out[:, -1])


def on_meta(build, *args, **kwargs):
    """Construct ``build(*args, **kwargs)`` on the meta device: no allocation, no global RNG use."""
    with torch.device("meta"):
        return build(*args, **kwargs)


def init_uniform(module, generator):
    """PyTorch's default initialisation, drawn from ``generator``, layer by layer in ``module.modules()`` order.

    - nn.Linear, nn.Conv2d: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
      (what ``kaiming_uniform_(a=sqrt(5))`` reduces to);
    - nn.GRU, nn.LSTM, nn.RNN: every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden));
    - nn.Embedding: weights ~ N(0, 1).

    Values are drawn on the CPU (``generator`` is a CPU generator) and copied to
    the module's device, so a seed gives the same start on every device.
    Other layers keep their parameters.
    """
    def uniform(params, bound):
        for p in params:
            if p is not None:
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                uniform((layer.weight, layer.bias), 1.0 / math.sqrt(layer.weight[0].numel()))
            elif isinstance(layer, nn.RNNBase):
                uniform(layer.parameters(), 1.0 / math.sqrt(layer.hidden_size))
            elif isinstance(layer, nn.Embedding):
                layer.weight.copy_(torch.empty(layer.weight.shape).normal_(generator=generator))
