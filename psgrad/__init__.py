"""psgrad: a message-passing parameter server for measuring gradient compression.

The public codec API::

    import psgrad
    c = psgrad.codec("fp16")
    enc = c.encode(x, psgrad.Key(seed=0, agent=3, round=17))
    x_hat = c.decode(enc.data, enc.nbits, len(x), psgrad.Key(seed=0, agent=3, round=17))
"""
__version__ = "0.1.0"

from .codecs import Codec, Encoded, Key, codec, codecs  # noqa: E402
from .errors import ConfigError, DecodeError, MirrorError, PsgradError, WireError  # noqa: E402
from .schemes import Context, Scheme, digest, scheme, schemes  # noqa: E402

# Loaded on first use: the runtime and tasks import torch, which the codec API does not need.
_LAZY = {"run": "api", "Result": "api", "TorchTask": "tasks", "partition": "tasks"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'psgrad' has no attribute {name!r}")


__all__ = ["Codec", "ConfigError", "Context", "DecodeError", "Encoded", "Key", "MirrorError", "PsgradError", "Result",
           "Scheme", "TorchTask", "WireError", "codec", "codecs", "digest", "partition", "run", "scheme", "schemes",
           "__version__"]
