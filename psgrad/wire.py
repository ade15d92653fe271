"""Messages on the wire: a fixed 32-byte little-endian header, the payload, an optional digest.

Layout (``struct`` format ``<2sBBB3xIIQIf``, 32 bytes)::

    offset size field
    0      2    magic    b"PG"
    2      1    version  WIRE_VERSION
    3      1    kind     Kind (MODEL, UPDATE)
    4      1    flags    Flag bits; which are valid depends on the kind (FLAGS)
    5      3    zero
    8      4    round    uint32
    12     4    agent    uint32 (ALL_AGENTS for a model broadcast)
    16     8    nbits    uint64, exact payload length in bits
    24     4    crc      CRC-32 of the whole frame, computed with this field zero
    28     4    loss     float32 telemetry: the agent's local loss at this round's model

then ``ceil(nbits / 8)`` payload bytes (padding bits zero), then the digest if
flagged. A frame's length is therefore a function of its header, and
``parse`` refuses any frame whose length, magic, version, kind, flags,
padding or CRC disagree with it. The CRC covers header, payload and digest,
so any single flipped bit, and any burst of up to 32, is caught.

Flags of an UPDATE (agent -> server):

    bit 0  DIGEST   a 32-byte SHA-256 digest of the agent's mirrored state follows the payload
    bit 3  SKIPPED  the agent skipped this round (non-finite gradient); the payload is empty
    bit 4  STOP     the agent's rank was asked to stop (SIGTERM): checkpoint and stop at the next round

Flags of a MODEL (server -> workers):

    bit 1  CHECKPOINT  before computing this round, send the server your agents' state for a checkpoint
    bit 2  STOP        after that, stop: the run is being preempted
    bit 5  DROPS       the payload ends with one bit per agent: 1 = the server dropped that agent's
                       previous message, so the agent rolls its scheme state back by one round
"""
import enum
import struct
import zlib
from typing import NamedTuple

import numpy as np

from .errors import WireError

WIRE_VERSION = 2
MAGIC = b"PG"
HEADER = struct.Struct("<2sBBB3xIIQIf")
HEADER_BYTES = HEADER.size
HEADER_BITS = 8 * HEADER_BYTES
DIGEST_BYTES = 32
ALL_AGENTS = 0xFFFFFFFF
FLAG_DIGEST = 1
FLAG_CHECKPOINT = 2
FLAG_STOP = 4
FLAG_SKIPPED = 8
FLAG_STOP_REQUEST = 16
FLAG_DROPS = 32
CRC_OFFSET = 24
MAX_PAYLOAD_BITS = 8 * (2**40)  # 1 TiB: anything larger is a corrupt header


class Kind(enum.IntEnum):
    MODEL = 1   # server -> workers: the current parameters as raw float32
    UPDATE = 2  # agent -> server: one scheme payload


# The flag bits each kind of message may carry
FLAGS = {
    Kind.MODEL: FLAG_CHECKPOINT | FLAG_STOP | FLAG_DROPS,
    Kind.UPDATE: FLAG_DIGEST | FLAG_SKIPPED | FLAG_STOP_REQUEST,
}


class Frame(NamedTuple):
    """A parsed message. ``payload`` and ``digest`` are views into the received buffer."""

    kind: Kind
    round: int
    agent: int
    nbits: int
    loss: float
    payload: np.ndarray
    digest: bytes | None
    flags: int = 0

    @property
    def wire_bytes(self):
        return frame_bytes(self.nbits, self.digest is not None)


def frame_bytes(nbits, with_digest=False):
    """Total bytes of a frame carrying ``nbits`` payload bits."""
    return HEADER_BYTES + (nbits + 7) // 8 + (DIGEST_BYTES if with_digest else 0)


def pack(kind, round_, agent, data, nbits, loss=float("nan"), digest=None, flags=0):
    """Build one frame as a uint8 array: header, payload bytes, optional digest.

    ``flags`` are extra flag bits (FLAG_DIGEST is set from ``digest``).
    """
    data = np.asarray(data, dtype=np.uint8)
    nbytes = (nbits + 7) // 8
    if data.shape[0] != nbytes:
        raise ValueError(f"payload has {data.shape[0]} bytes, {nbits} bits need exactly {nbytes}")
    flags |= FLAG_DIGEST if digest is not None else 0
    if flags & ~FLAGS[Kind(kind)]:
        raise ValueError(f"flags {flags:#x} are not valid on a {Kind(kind).name} message")
    out = np.empty(frame_bytes(nbits, digest is not None), dtype=np.uint8)
    HEADER.pack_into(out, 0, MAGIC, WIRE_VERSION, int(kind), flags, round_, agent, nbits, 0, loss)
    out[HEADER_BYTES:HEADER_BYTES + nbytes] = data
    if digest is not None:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"digest must be {DIGEST_BYTES} bytes, got {len(digest)}")
        out[HEADER_BYTES + nbytes:] = np.frombuffer(digest, dtype=np.uint8)
    out[CRC_OFFSET:CRC_OFFSET + 4] = np.frombuffer(struct.pack("<I", zlib.crc32(out)), np.uint8)
    return out


def frame_crc(buf):
    """CRC-32 of a frame with its CRC field taken as zero."""
    crc = zlib.crc32(buf[:CRC_OFFSET])
    crc = zlib.crc32(b"\0\0\0\0", crc)
    return zlib.crc32(buf[CRC_OFFSET + 4:], crc)


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
    if flags & ~FLAGS[Kind(kind)]:
        raise WireError(f"unknown flags {flags:#x} for a {Kind(kind).name} message {where}")
    if nbits > MAX_PAYLOAD_BITS:
        raise WireError(f"payload length {nbits} bits is implausible {where}")
    has_digest = bool(flags & FLAG_DIGEST)
    expected = frame_bytes(nbits, has_digest)
    if buf.shape[0] != expected:
        raise WireError(f"frame is {buf.shape[0]} bytes, header says {expected} {where}")
    nbytes = (nbits + 7) // 8
    payload = buf[HEADER_BYTES:HEADER_BYTES + nbytes]
    if nbits % 8 and payload[-1] >> (nbits % 8):
        raise WireError(f"nonzero padding bits {where}")
    if frame_crc(buf) != crc:
        raise WireError(f"CRC mismatch: the frame was corrupted {where}")
    if flags & FLAG_SKIPPED and nbits:
        raise WireError(f"a SKIPPED message carries {nbits} payload bits {where}")
    digest = buf[HEADER_BYTES + nbytes:].tobytes() if has_digest else None
    return Frame(Kind(kind), round_, agent, nbits, loss, payload, digest, flags)
