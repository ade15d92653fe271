"""The scheme registry. A scheme takes a codec plus its own keyword parameters; a scheme of the user's own
package is named by import path or entry point (docs/extending.md).

This subpackage is callable: ``psgrad.schemes()`` lists every scheme name, as ``names()`` does.
"""
import sys

from ..codecs import codec as make_codec
from ..registry import Listing, build, names as registry_names
from .base import Context, Direct, Empty, Scheme, codec_mismatch, digest
from .diana import Diana
from .ef import EF
from .ef21 import EF21
from .lag import Lag
from .powersgd import PowerSGD
from .smooth import Smoothed
from .tensorwise import Tensorwise
from .tpc import TPC
from .warmup import Warmup, wrap

REGISTRY = {
    "direct": Direct,
    "ef": EF,
    "ef21": EF21,
    "diana": Diana,
    "lag": Lag,
    "tpc": TPC,
    "powersgd": PowerSGD,
}


def scheme(name, codec="fp32", codec_params=None, **params):
    """Build scheme ``name`` (built-in, ``package.module:attr`` or entry point) around codec ``codec``
    (a name or a Codec instance)."""
    if isinstance(codec, str):
        codec = make_codec(codec, **(codec_params or {}))
    return build("scheme", REGISTRY, name, {"codec": codec, **params}, Scheme)


def names():
    """Every scheme name this process can see: the built-ins and those of installed plugins."""
    return registry_names("scheme", REGISTRY)


sys.modules[__name__].__class__ = Listing
