"""The codec registry. Adding a codec is one module plus one line here, or a class in the user's own package
named by import path or entry point (docs/extending.md).

This subpackage is callable: ``psgrad.codecs()`` lists every codec name, as ``names()`` does.
"""
import sys

from ..registry import Listing, build, names as registry_names
from .adaptive import Adaptive
from .base import Codec, Encoded, Key
from .floats import Bf16, Fp16, Fp32
from .natural import Natural, NaturalDither
from .qsgd import Qsgd
from .rotated import RotatedSign
from .rotated_entropy import RotatedEntropy
from .rotated_ternary import RotatedTernary
from .signs import ScaledSign, Sign
from .sparse import RandK, TopK
from .sparse_dither import SparseDither
from .spherical import Spherical
from .terngrad import TernGrad

REGISTRY = {
    "fp32": Fp32,
    "fp16": Fp16,
    "bf16": Bf16,
    "qsgd": Qsgd,
    "natural": Natural,
    "natural_dither": NaturalDither,
    "terngrad": TernGrad,
    "sign": Sign,
    "scaled_sign": ScaledSign,
    "topk": TopK,
    "randk": RandK,
    "rotated_sign": RotatedSign,
    "rotated_ternary": RotatedTernary,
    "rotated_entropy": RotatedEntropy,
    "sparse_dither": SparseDither,
    "spherical": Spherical,
    "adaptive": Adaptive,
}


def codec(name, **params):
    """Build codec ``name`` (built-in, ``package.module:attr`` or entry point) with keyword ``params``;
    errors list the valid names or parameters."""
    return build("codec", REGISTRY, name, params, Codec)


def names():
    """Every codec name this process can see: the built-ins and those of installed plugins."""
    return registry_names("codec", REGISTRY)


sys.modules[__name__].__class__ = Listing
