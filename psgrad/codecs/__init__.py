"""The codec registry. Adding a codec is one module plus one line here."""
from ..registry import build
from .base import Codec, Encoded, Key
from .floats import Fp16, Fp32
from .sparse_dither import SparseDither
from .spherical import Spherical

REGISTRY = {
    "fp32": Fp32,
    "fp16": Fp16,
    "sparse_dither": SparseDither,
    "spherical": Spherical,
}


def codec(name, **params):
    """Build the codec ``name`` with keyword ``params``; errors list the valid names or parameters."""
    return build("codec", REGISTRY, name, params)


def codecs():
    """Names of all registered codecs."""
    return sorted(REGISTRY)
