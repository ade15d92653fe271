"""Messages on the wire: a fixed 32-byte little-endian header, the payload, an optional digest.

Layout (``struct`` format ``<2sBBB3xIIQIf``, 32 bytes)::

    offset size field
    0      2    magic    b"PG"
    2      1    version  WIRE_VERSION
    3      1    kind     Kind (MODEL, UPDATE)
    4      1    flags    bit 0: a 32-byte SHA-256 state digest follows the payload
    5      3    zero
    8      4    round    uint32
    12     4    agent    uint32 (ALL_AGENTS for a model broadcast)
    16     8    nbits    uint64, exact payload length in bits
    24     4    crc      CRC-32 of the payload bytes
    28     4    loss     float32 telemetry: the agent's local loss at this round's model

then ``ceil(nbits / 8)`` payload bytes (padding bits zero), then the digest if
flagged. A frame's length is therefore a function of its header, and
``parse`` refuses any frame whose length, magic, version, kind, flags or CRC
disagree with it.
"""
import enum
import struct
import zlib
from typing import NamedTuple

import numpy as np

from .errors import WireError

WIRE_VERSION = 1
MAGIC = b"PG"
HEADER = struct.Struct("<2sBBB3xIIQIf")
HEADER_BYTES = HEADER.size
HEADER_BITS = 8 * HEADER_BYTES
DIGEST_BYTES = 32
ALL_AGENTS = 0xFFFFFFFF
FLAG_DIGEST = 1
MAX_PAYLOAD_BITS = 8 * (2**40)  # 1 TiB: anything larger is a corrupt header


class Kind(enum.IntEnum):
    MODEL = 1   # server -> workers: the current parameters as raw float32
    UPDATE = 2  # agent -> server: one scheme payload


class Frame(NamedTuple):
    """A parsed message. ``payload`` and ``digest`` are views into the received buffer."""

    kind: Kind
    round: int
    agent: int
    nbits: int
    loss: float
    payload: np.ndarray
    digest: bytes | None

    @property
    def wire_bytes(self):
        return frame_bytes(self.nbits, self.digest is not None)


def frame_bytes(nbits, with_digest=False):
    """Total bytes of a frame carrying ``nbits`` payload bits."""
    return HEADER_BYTES + (nbits + 7) // 8 + (DIGEST_BYTES if with_digest else 0)


def pack(kind, round_, agent, data, nbits, loss=float("nan"), digest=None):
    """Build one frame as a uint8 array: header, payload bytes, optional digest."""
    data = np.asarray(data, dtype=np.uint8)
    nbytes = (nbits + 7) // 8
    if data.shape[0] != nbytes:
        raise ValueError(f"payload has {data.shape[0]} bytes, {nbits} bits need exactly {nbytes}")
    flags = FLAG_DIGEST if digest is not None else 0
    out = np.empty(frame_bytes(nbits, digest is not None), dtype=np.uint8)
    HEADER.pack_into(out, 0, MAGIC, WIRE_VERSION, int(kind), flags, round_, agent, nbits,
                     zlib.crc32(data), loss)
    out[HEADER_BYTES:HEADER_BYTES + nbytes] = data
    if digest is not None:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"digest must be {DIGEST_BYTES} bytes, got {len(digest)}")
        out[HEADER_BYTES + nbytes:] = np.frombuffer(digest, dtype=np.uint8)
    return out


def parse(buf):
    """Parse and validate one received frame (a uint8 array of exactly the received length)."""
    buf = np.asarray(buf, dtype=np.uint8)
    if buf.shape[0] < HEADER_BYTES:
        raise WireError(f"frame of {buf.shape[0]} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, kind, flags, round_, agent, nbits, crc, loss = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}, expected {MAGIC!r}")
    where = f"(agent {agent}, round {round_})"
    if version != WIRE_VERSION:
        raise WireError(f"wire format version {version}, this psgrad speaks {WIRE_VERSION} {where}")
    if kind not in Kind.__members__.values():
        raise WireError(f"unknown message kind {kind} {where}")
    if flags & ~FLAG_DIGEST:
        raise WireError(f"unknown flags {flags:#x} {where}")
    if nbits > MAX_PAYLOAD_BITS:
        raise WireError(f"payload length {nbits} bits is implausible {where}")
    has_digest = bool(flags & FLAG_DIGEST)
    expected = frame_bytes(nbits, has_digest)
    if buf.shape[0] != expected:
        raise WireError(f"frame is {buf.shape[0]} bytes, header says {expected} {where}")
    nbytes = (nbits + 7) // 8
    payload = buf[HEADER_BYTES:HEADER_BYTES + nbytes]
    if zlib.crc32(payload) != crc:
        raise WireError(f"payload CRC mismatch {where}")
    if nbits % 8 and payload[-1] >> (nbits % 8):
        raise WireError(f"nonzero padding bits {where}")
    digest = buf[HEADER_BYTES + nbytes:].tobytes() if has_digest else None
    return Frame(Kind(kind), round_, agent, nbits, loss, payload, digest)
