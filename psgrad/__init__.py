"""psgrad: a message-passing parameter server for measuring gradient compression.

The public codec API::

    import psgrad
    c = psgrad.codec("fp16")
    enc = c.encode(x, psgrad.Key(seed=0, agent=3, round=17))
    x_hat = c.decode(enc.data, enc.nbits, len(x), psgrad.Key(seed=0, agent=3, round=17))
"""
from .codecs import Codec, Encoded, Key, codec, codecs
from .errors import ConfigError, DecodeError, MirrorError, PsgradError, WireError
from .schemes import Context, Scheme, digest, scheme, schemes
from .tasks import TorchTask, partition

__version__ = "0.1.0"

__all__ = ["Codec", "ConfigError", "Context", "DecodeError", "Encoded", "Key", "MirrorError", "PsgradError",
           "Scheme", "TorchTask", "WireError", "codec", "codecs", "digest", "partition", "scheme", "schemes",
           "__version__"]
