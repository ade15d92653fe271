"""Framing: a few fixed-width header fields, then an embedded codec payload.

A framed payload is the concatenation, bit for bit and with no padding in
between, of the header fields (each written LSB first, as in
``bitstream.bits``) and, optionally, a codec's payload. Its length is the sum
of the parts, so bit accounting stays exact.
"""
import numpy as np

from ..bitstream.bits import new_buffer, read_bits, write_bits
from ..bitstream.splice import extract, splice
from ..codecs.base import Encoded
from ..errors import DecodeError


def frame(fields, body=None, info=None):
    """``Encoded`` of header ``fields`` (a list of ``(value, width)``) followed by ``body`` (an Encoded)."""
    header = sum(n for _, n in fields)
    nbits = header + (body.nbits if body is not None else 0)
    buf = new_buffer(nbits)
    pos = 0
    for value, n in fields:
        pos = write_bits(buf, pos, np.uint64(value), n)
    if body is not None:
        splice(buf, pos, body.data, body.nbits)
    return Encoded(buf, nbits, info)


class FrameReader:
    """Reads the header fields of a framed payload, then hands out the embedded body."""

    def __init__(self, payload, name):
        self.data = payload.data
        self.end = int(payload.nbits)
        self.pos = 0
        self.name = name

    def field(self, n):
        value, self.pos = read_bits(self.data, self.end, self.pos, n)
        return int(value)

    def body(self):
        """``(data, nbits)`` of everything after the fields read so far."""
        n = self.end - self.pos
        return extract(self.data, self.end, self.pos, n), n

    def finish(self):
        """Raise ``DecodeError`` unless every bit was consumed (a payload without a body)."""
        if self.pos != self.end:
            raise DecodeError(f"{self.name}: payload has {self.end} bits, expected {self.pos}")
