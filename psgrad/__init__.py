"""psgrad: a message-passing parameter server for measuring gradient compression.

The public codec API::

    import psgrad
    c = psgrad.codec("fp16")
    enc = c.encode(x, psgrad.Key(seed=0, agent=3, round=17))
    x_hat = c.decode(enc.data, enc.nbits, len(x), psgrad.Key(seed=0, agent=3, round=17))

``psgrad.codecs``, ``psgrad.schemes`` and ``psgrad.tasks`` are the subpackages, and each lists its names
when called: ``psgrad.codecs()``, ``psgrad.schemes()``, ``psgrad.tasks()`` (built-ins and installed plugins;
``psgrad.tasks`` imports torch on first use). ``psgrad.plugins.fingerprint()`` describes the plugin set.
"""
import importlib

from . import codecs, plugins, schemes
from .codecs import Codec, Encoded, Key, codec
from .errors import ConfigError, DecodeError, MirrorError, PsgradError, WireError
from .schemes import Context, Scheme, digest, scheme

__version__ = "0.1.0"

__all__ = ["Codec", "ConfigError", "Context", "DecodeError", "Encoded", "Key", "MirrorError", "PsgradError",
           "Scheme", "WireError", "codec", "codecs", "digest", "plugins", "scheme", "schemes", "tasks",
           "__version__"]


def __getattr__(name):
    # psgrad.tasks on first use: it imports torch, which ``import psgrad`` alone should not
    if name == "tasks":
        return importlib.import_module(".tasks", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
