"""The scheme registry. A scheme takes a codec plus its own keyword parameters."""
from ..codecs import codec as make_codec
from ..registry import build
from .base import Context, Direct, Empty, Scheme, codec_mismatch, digest
from .diana import Diana
from .ef import EF
from .ef21 import EF21
from .lag import Lag
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
}


def scheme(name, codec="fp32", codec_params=None, **params):
    """Build scheme ``name`` around codec ``codec`` (a name or a Codec instance)."""
    if isinstance(codec, str):
        codec = make_codec(codec, **(codec_params or {}))
    return build("scheme", REGISTRY, name, {"codec": codec, **params})


def schemes():
    """Names of all registered schemes."""
    return sorted(REGISTRY)
