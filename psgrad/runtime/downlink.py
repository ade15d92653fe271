"""The downlink: the model, server -> workers, through a scheme and codec like the uplink's.

- ``direct`` + ``fp32`` (the default): the frame carries the model's float32 bytes and the workers'
  model is the server's, bit for bit.
- Any other scheme and codec: the server runs the scheme on the model ``w`` and the workers compute their
  gradients at the scheme's reconstruction ``w_hat``. The server and every worker run the same
  ``reconstruct`` on the same payload, so their copies of ``w_hat`` agree bit for bit (digested with the
  agents' states).
- ``ef21p`` is ``ef21`` on the downlink: EF21-P (Gruntkowska, Tyurin, Richtárik, "EF21-P and Friends:
  Improved Theoretical Communication Complexity for Distributed Optimization with Bidirectional
  Compression", ICML 2023). The server sends ``C(w - w_hat)`` with a contractive ``C`` and both sides add
  its decoding to ``w_hat``: the compression error stays in ``w - w_hat`` and is sent in later rounds.
  ``direct`` with a lossy codec sends ``C(w)`` with no error feedback.

One frame serves every agent a worker hosts (they share the worker's ``w_hat``). Its shared randomness is
keyed by ``(seed, ALL_AGENTS, round)``, never an agent's key.
"""
import hashlib

import numpy as np

from .. import wire
from ..codecs.base import Encoded, Key
from ..errors import DecodeError
from ..schemes import Context, digest
from ..schemes import scheme as make_scheme
from .accounting import MAX_BITS_PER_COORDINATE, MAX_EXTRA_BITS

ALIASES = {"ef21p": "ef21"}  # downlink names for the uplink schemes they are


class Downlink:
    """One side's end of the downlink: the scheme, its mirrored state (``w_hat``) and, on the server, its
    private state. ``encode`` is the server's, ``decode`` every worker's."""

    def __init__(self, cfg, d):
        c = cfg.downlink
        self.scheme = make_scheme(ALIASES.get(c.scheme, c.scheme), c.codec, c.codec_params, **c.params)
        self.scheme.check_codec(d)
        self.raw = self.scheme.g_hat_is_payload  # direct + fp32: the payload is the model itself
        self.stateless = self.scheme.stateless
        self.d = d
        self.seed = cfg.run.seed
        self.state, self.private = self.scheme.init(d)

    @property
    def max_bits(self):
        """The most payload bits a downlink message may carry."""
        return 32 * self.d if self.raw else MAX_BITS_PER_COORDINATE * self.d + MAX_EXTRA_BITS

    def context(self, t):
        return Context(Key(self.seed, wire.ALL_AGENTS, t), self.d)

    def encode(self, w, t):
        """Server: ``(payload, w_hat)`` of round ``t`` for the model ``w``; the state advances."""
        if self.raw:
            return Encoded(w.view(np.uint8), 32 * self.d), w
        ctx = self.context(t)
        payload = self.scheme.encode(self.state, self.private, w, ctx)
        w_hat, self.state = self.scheme.reconstruct(self.state, payload, ctx)
        self.private = self.scheme.compensate(self.private, w, w_hat)
        return payload, w_hat

    def decode(self, data, nbits, t):
        """Worker: ``w_hat`` of round ``t`` from the payload; the state advances as the server's did."""
        if self.raw:
            if nbits != 32 * self.d:
                raise DecodeError(f"the model frame carries {nbits} payload bits, expected {32 * self.d}")
            return data.view(np.float32)
        w_hat, self.state = self.scheme.reconstruct(self.state, Encoded(data, nbits), self.context(t))
        return w_hat

    def digest(self):
        """Hex SHA-256 of the mirrored state (``w_hat``), or None when it keeps none."""
        return None if self.stateless else digest(self.state)


def link_digest(state_digest, down_digest):
    """The digest an UPDATE frame carries (bytes): the agent's state's, combined with its worker's model copy's
    when the downlink keeps one (``down_digest`` not None)."""
    if down_digest is None:
        return bytes.fromhex(state_digest)
    return hashlib.sha256(f"{state_digest}{down_digest}".encode()).digest()


def with_bits(payload, extra):
    """``(data, nbits)``: ``payload`` (an ``Encoded``) followed by the 0/1 array ``extra``, bit-packed
    little-endian from the payload's last bit (the fp32 model's ``extra`` starts on a byte boundary)."""
    nbits = payload.nbits + len(extra)
    data = np.zeros((nbits + 7) // 8, np.uint8)
    head = (payload.nbits + 7) // 8
    data[:head] = payload.data[:head]
    start, shift = payload.nbits // 8, payload.nbits % 8
    tail = np.packbits(np.concatenate([np.zeros(shift, np.uint8), extra]).astype(np.uint8), bitorder="little")
    data[start:start + len(tail)] |= tail
    return data, nbits


def split_bits(data, nbits, n_extra):
    """``(payload bytes, payload bits, extra)``: undo ``with_bits`` (the payload's padding bits zeroed)."""
    if not n_extra:
        return data, nbits, np.zeros(0, np.uint8)
    pbits = nbits - n_extra
    if pbits < 0:
        raise DecodeError(f"the model frame has {nbits} bits, fewer than its {n_extra} drop bits")
    start, shift = pbits // 8, pbits % 8
    extra = np.unpackbits(data[start:], bitorder="little")[shift:shift + n_extra]
    payload = data[:(pbits + 7) // 8]
    if shift:
        payload = payload.copy()
        payload[-1] &= (1 << shift) - 1
    return payload, pbits, extra
