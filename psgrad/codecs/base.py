"""The codec interface: a stateless compressor float32[d] -> bits -> float32[d].

A codec is a small object with hyperparameters fixed at construction and two
pure functions, ``encode(x, key)`` and ``decode(data, nbits, d, key)``.
Randomness comes only from ``key`` (see ``Key.stream``), so the decoder on
another process draws the same numbers as the encoder.
"""
from typing import NamedTuple

import numpy as np

from ..bitstream.bits import check_payload
from ..bitstream.rng import stream_key
from ..errors import DecodeError


# The longest vector a codec decodes: 2^38 float32 (1 TiB), whose fp32 message is the largest the wire carries
# (wire.MAX_PAYLOAD_BITS). A longer ``d`` is refused before anything is allocated.
MAX_LENGTH = 2 ** 38


class Key(NamedTuple):
    """Shared-randomness key of one message: run seed, agent, round (and a sub-stream tag)."""

    seed: int = 0
    agent: int = 0
    round: int = 0
    sub: int = 0

    def stream(self, purpose):
        """The uint64 stream key for ``purpose`` (an int or a string) under this key."""
        return stream_key(self.seed, self.agent, (self.round << 16) ^ self.sub, purpose)

    def child(self, sub):
        """A key for an independent sub-message of the same round (for example a second codec call)."""
        return self._replace(sub=sub)


class Encoded(NamedTuple):
    """An encoded payload: ``data`` holds exactly ``ceil(nbits / 8)`` bytes, padding bits zero."""

    data: np.ndarray
    nbits: int
    info: dict | None = None


class Codec:
    """Base class of all codecs.

    Subclasses set ``name`` and ``unbiased``, take their hyperparameters as
    keyword arguments with defaults (validated in ``__init__``), and implement
    ``_encode(x, key) -> (buf, nbits)`` and ``_decode(data, nbits, d, key) -> x_hat``.
    """

    name = ""
    unbiased = False
    # True when the payload is the decoded vector itself (little-endian float32): a receiver may use the
    # payload's bytes as the decoded vector (the server adds them to its sum as they lie in the message), and
    # an encoder may send the input's own bytes.
    raw_float32 = False

    def omega(self, d):
        """Variance parameter: ``E||C(x) - x||^2 <= omega ||x||^2`` for unbiased codecs; None if unknown."""
        return None

    def alpha(self, d):
        """Contraction: ``||C(x) - x||^2 <= (1 - alpha) ||x||^2`` (in expectation) for biased codecs."""
        return None

    @property
    def params(self):
        """The hyperparameters this codec was built with."""
        return dict(self._params)

    def __init__(self, **params):
        self._params = params

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{self.name}({args})"

    def encode(self, x, key=Key(), copy=True):
        """Encode float32 vector ``x`` (never modified); returns ``Encoded``.

        ``copy=False``: the payload may share memory with ``x`` (a ``raw_float32`` codec's payload is then a
        read-only view of ``x``'s bytes), for a caller that is done with the payload before ``x`` changes.
        """
        x = np.asarray(x)
        if x.dtype != np.float32 or x.ndim != 1:
            raise TypeError(f"{self.name}: x must be a 1-d float32 array, got {x.dtype}[{x.ndim}-d]")
        if not copy and self.raw_float32:
            raw = np.ascontiguousarray(x).view(np.uint8)
            raw.flags.writeable = False
            return Encoded(raw, 32 * x.shape[0])
        buf, nbits = self._encode(np.ascontiguousarray(x), key)
        nbits = int(nbits)
        return Encoded(buf[: (nbits + 7) // 8], nbits)

    def decode(self, data, nbits, d, key=Key()):
        """Decode a payload of ``nbits`` bits into a new float32 vector of length ``d``.

        Raises ``DecodeError`` for a payload that this codec could not have written.
        """
        data, nbits, d = self._checked(data, nbits, d)
        out = self._decode(data, nbits, d, key)
        if out.shape != (d,) or out.dtype != np.float32:
            raise AssertionError(f"{self.name}: decoder returned {out.dtype}{out.shape}, expected float32[{d}]")
        return out

    def decode_add(self, data, nbits, d, key, out):
        """``out += D(payload)`` in float32 (``out[i] = out[i] + x_hat[i]``, rounded as a float32 add), in place.

        ``out``: a writable contiguous float32[d]. The payload is checked as by ``decode`` and a bad one
        raises ``DecodeError``, but possibly after part of ``out`` was already updated: a caller must
        discard ``out`` after an error (decode into an array of its own, not into shared state).
        Codecs whose decoder visits only some coordinates override ``_decode_add`` and skip the others,
        which also saves the zero-filled temporary; the result is the same except that a coordinate
        they skip keeps its value where adding the decoded ``+0.0`` would turn ``-0.0`` into ``+0.0``.
        """
        data, nbits, d = self._checked(data, nbits, d)
        self._check_out(out, d)
        if not out.flags.writeable:
            raise ValueError(f"{self.name}: out must be writable")
        self._decode_add(data, nbits, d, key, out)
        return out

    @property
    def adds_in_place(self):
        """Whether ``decode_add`` adds without decoding into a temporary first (``_decode_add`` is
        overridden): otherwise a caller that also computes ``out`` does better to add ``decode``'s
        result while computing it."""
        return type(self)._decode_add is not Codec._decode_add

    def _checked(self, data, nbits, d):
        """``(data, nbits, d)`` checked and normalised: uint8 payload, int bit length, int length >= 0."""
        nbits = int(nbits)
        data = check_payload(data, nbits)
        d = int(d)
        if not 0 <= d <= MAX_LENGTH:
            raise DecodeError(f"{self.name}: length must be in [0, 2^38], got {d=}")
        return data, nbits, d

    def _check_out(self, out, d):
        if out.dtype != np.float32 or out.shape != (d,) or not out.flags.c_contiguous:
            raise ValueError(f"{self.name}: out must be a contiguous float32[{d}], got {out.dtype}{out.shape}")

    def _encode(self, x, key):
        raise NotImplementedError

    def _decode(self, data, nbits, d, key):
        raise NotImplementedError

    def _decode_add(self, data, nbits, d, key, out):
        """``out += D(payload)`` through a temporary; codecs that can add without one override it."""
        add_into(out, self.decode(data, nbits, d, key))


class SparseDecodeCodec(Codec):
    """Base of codecs whose decoder writes only some coordinates (the others decode to zero).

    Subclasses implement ``_decode_nonzero(data, nbits, d, key, out, add)``, which sets those coordinates
    of the zeroed ``out`` (``add`` False) or adds them to ``out`` (``add`` True); ``decode`` and
    ``decode_add`` both go through it, so ``decode_add`` costs no zero fill and no dense pass.

    A sparse payload can be far shorter than ``d``, so ``d`` is checked against what the payload's length
    allows (``_check_length``) before ``out`` is allocated: an absurd ``d`` is a ``DecodeError``, not a
    ``MemoryError``. Where a length bounds nothing (a zero vector under one bucket, ``k`` fixed), the
    ``d`` given is the receiver's own and is decoded as given, up to ``MAX_LENGTH``.
    """

    def _decode(self, data, nbits, d, key):
        self._check_length(nbits, d)
        out = np.zeros(d, np.float32)
        self._decode_nonzero(data, nbits, d, key, out, False)
        return out

    def _decode_add(self, data, nbits, d, key, out):
        self._check_length(nbits, d)
        self._decode_nonzero(data, nbits, d, key, out, True)

    def _check_length(self, nbits, d):
        """Raise ``DecodeError`` when no ``d``-vector's payload has ``nbits`` bits (nothing allocated yet)."""

    def _decode_nonzero(self, data, nbits, d, key, out, add):
        raise NotImplementedError


def add_into(out, x):
    """``out += x`` in float32, in place; an inf + -inf is NaN with no warning, as in a jitted loop."""
    with np.errstate(all="ignore"):
        np.add(out, x, out=out)


def expect_bits(name, nbits, expected):
    """Raise ``DecodeError`` unless a fixed-length payload has exactly ``expected`` bits."""
    if nbits != expected:
        raise DecodeError(f"{name}: payload has {nbits} bits, expected {expected}")
