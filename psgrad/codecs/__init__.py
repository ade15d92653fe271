"""The codec registry. Adding a codec is one module plus one line here."""
from ..registry import build
from .base import Codec, Encoded, Key
from .floats import Bf16, Fp16, Fp32
from .natural import Natural, NaturalDither
from .qsgd import Qsgd
from .rotated import RotatedSign
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
    "sparse_dither": SparseDither,
    "spherical": Spherical,
}


def codec(name, **params):
    """Build the codec ``name`` with keyword ``params``; errors list the valid names or parameters."""
    return build("codec", REGISTRY, name, params)


def codecs():
    """Names of all registered codecs."""
    return sorted(REGISTRY)
