"""psgrad: a message-passing parameter server for measuring gradient compression.

The public codec API::

    import psgrad
    c = psgrad.codec("fp16")
    enc = c.encode(x, psgrad.Key(seed=0, agent=3, round=17))
    x_hat = c.decode(enc.data, enc.nbits, len(x), psgrad.Key(seed=0, agent=3, round=17))

``psgrad.codecs``, ``psgrad.schemes`` and ``psgrad.tasks`` are the subpackages, and each lists its names
when called: ``psgrad.codecs()``, ``psgrad.schemes()``, ``psgrad.tasks()`` (built-ins and installed plugins;
each is imported on first use, ``psgrad.tasks`` with torch). ``psgrad.plugins.fingerprint()`` describes the
plugin set.
"""
__version__ = "0.1.0"

import importlib  # noqa: E402

from .errors import ConfigError, DecodeError, MirrorError, PsgradError, WireError  # noqa: E402

# Loaded on first use, so that ``import psgrad`` (and ``python -m psgrad.train`` before it checks its config)
# costs milliseconds: the codecs start numba, the runtime and tasks import torch.
_SUBPACKAGES = {"codecs", "plugins", "schemes", "tasks"}
_LAZY = {"Codec": "codecs", "Encoded": "codecs", "Key": "codecs", "codec": "codecs",
         "Context": "schemes", "Scheme": "schemes", "digest": "schemes", "scheme": "schemes",
         "run": "api", "Result": "api", "TorchTask": "tasks", "partition": "tasks"}


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Codec", "ConfigError", "Context", "DecodeError", "Encoded", "Key", "MirrorError", "PsgradError", "Result",
           "Scheme", "TorchTask", "WireError", "codec", "codecs", "digest", "partition", "plugins", "run", "scheme",
           "schemes", "tasks", "__version__"]
