"""One bit per coordinate: ``sign`` (signSGD) and ``scaled_sign`` (one scale plus signs).

- ``sign``: Bernstein et al., "signSGD: compressed optimisation for
  non-convex problems", ICML 2018. Decodes to ``+-1``; biased, and not a
  contraction (its error depends on the scale of ``x``), so no ``alpha``.
- ``scaled_sign``: Karimireddy et al., "Error feedback fixes SignSGD and other
  gradient compression schemes", ICML 2019: ``C(x) = ||x||_1 / d * sign(x)``, a
  contraction with ``alpha = ||x||_1^2 / (d ||x||_2^2) >= 1/d``.

Layout: the ``d`` sign bits (1 = negative, ``-0.0`` included) from bit 0, 64
per word; ``scaled_sign`` then appends the scale as one float32, so its
payload is exactly ``d + 32`` bits.
"""
import numpy as np

from ..bitstream.words import get, load_words, new_words, pack_signs, put, unpack_signs
from ..errors import DecodeError
from .base import Codec, expect_bits
from .buckets import abs_sum


def f32_bits(v):
    """The IEEE bits of float32 ``v`` as an int."""
    return int(np.float32(v).view(np.uint32))


def bits_f32(b):
    """The float32 with IEEE bits ``b``."""
    return np.uint32(b).view(np.float32)


def check_scale(name, s):
    """A decoded scale or norm must be a finite non-negative float32."""
    if not (np.isfinite(s) and s >= 0) or np.signbit(s):
        raise DecodeError(f"{name}: scale {s!r} is not a finite non-negative float32")


def check_scales(name, scales):
    """``check_scale`` for a whole float32 array at once (no Python loop over buckets)."""
    bad = ~np.isfinite(scales) | np.signbit(scales)
    if bad.any():
        check_scale(name, scales[np.argmax(bad)])


class Sign(Codec):
    """signSGD: ``C(x) = sign(x)``, one bit per coordinate; biased."""

    name = "sign"
    unbiased = False

    def _encode(self, x, key):
        d = x.shape[0]
        words = new_words(d)
        return words.view(np.uint8), pack_signs(x, words, 0)

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, d)
        out = np.empty(d, np.float32)
        unpack_signs(load_words(data, nbits), 0, out, 1.0)
        return out


class ScaledSign(Codec):
    """``C(x) = (||x||_1 / d) sign(x)``: the signs, then the scale as float32 (``d + 32`` bits)."""

    name = "scaled_sign"
    unbiased = False

    def alpha(self, d):
        return 1.0 / max(1, d)

    def _encode(self, x, key):
        d = x.shape[0]
        words = new_words(d + 32)
        pos = pack_signs(x, words, 0)
        scale = np.float32(abs_sum(x) / d) if d else np.float32(0.0)
        return words.view(np.uint8), put(words, pos, f32_bits(scale), 32)

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, d + 32)
        words = load_words(data, nbits)
        scale = bits_f32(int(get(words, d, 32)[0]))
        check_scale(self.name, scale)
        out = np.empty(d, np.float32)
        unpack_signs(words, 0, out, scale)
        return out
