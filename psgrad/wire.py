"""Messages on the wire: a fixed 40-byte little-endian header, the payload, an optional digest.

Layout (``struct`` format ``<2sBBB3xIIQf4xQ``, 40 bytes)::

    offset size field
    0      2    magic    b"PG"
    2      1    version  WIRE_VERSION
    3      1    kind     Kind (MODEL, UPDATE)
    4      1    flags    Flag bits; which are valid depends on the kind (FLAGS)
    5      3    zero
    8      4    round    uint32
    12     4    agent    uint32 (ALL_AGENTS for a model broadcast)
    16     8    nbits    uint64, exact payload length in bits
    24     4    loss     float32 telemetry: the agent's local loss at this round's model
    28     4    zero
    32     8    check    uint64 frame check of every other byte of the frame (``frame_check``)

then ``ceil(nbits / 8)`` payload bytes (padding bits zero), then the digest if
flagged. A frame's length is therefore a function of its header, and
``parse`` refuses any frame whose length, magic, version, kind, flags,
zero bytes, padding or check disagree with it.

The check reads the frame without its check field as little-endian 64-bit
words (the last one zero-padded) and deals word k to lane k mod 32; each lane
absorbs its words with ``s = (s ^ w) * M; s ^= s >> 32`` (M odd), and the 32
lanes and the length are folded with a bijective finalizer. Every step is a
bijection of the lane state for a fixed word, and of the word for a fixed
state, so changing any one word (every single flipped bit, every burst inside
an aligned word) changes its lane's final state and therefore the check. Other
corruptions (two flipped bits, swapped or reordered words, several damaged
words) go unnoticed only if 64-bit values collide, or for a few structured
patterns of three or more bits such as bit 63 of word k with bits 63 and 31 of
word k + 32. See docs/wire-format.md.

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
from typing import NamedTuple

import numpy as np
from numba import njit

from .errors import WireError

WIRE_VERSION = 5
MAGIC = b"PG"
HEADER = struct.Struct("<2sBBB3xIIQf4xQ")
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
FLAG_LATE = 64  # the agent's report missed the round's deadline on the simulated clock: no payload
_RESERVED = ((5, 8), (28, 32))  # [lo, hi) of the header's zero bytes (the ``x`` pads of HEADER)
CHECK_OFFSET = 32  # the check is the header's last field: the bytes before it and after it are checked
MAX_PAYLOAD_BITS = 8 * (2**40)  # 1 TiB: anything larger is a corrupt header


class Kind(enum.IntEnum):
    MODEL = 1   # server -> workers: the current parameters as raw float32
    UPDATE = 2  # agent -> server: one scheme payload


# The flag bits each kind of message may carry
FLAGS = {
    Kind.MODEL: FLAG_CHECKPOINT | FLAG_STOP | FLAG_DROPS,
    Kind.UPDATE: FLAG_DIGEST | FLAG_SKIPPED | FLAG_STOP_REQUEST | FLAG_LATE,
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
    check: int = 0

    @property
    def wire_bytes(self):
        return frame_bytes(self.nbits, self.digest is not None)


def frame_bytes(nbits, with_digest=False):
    """Total bytes of a frame carrying ``nbits`` payload bits."""
    return HEADER_BYTES + (nbits + 7) // 8 + (DIGEST_BYTES if with_digest else 0)


# The frame check ------------------------------------------------------------------------------------------------
LANES = 32  # independent lanes: 32 multiply chains (four 8-lane vectors) in flight keep the check at memory speed
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying by it is a bijection of uint64
_SEEDS = (np.arange(1, LANES + 1, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93)).astype(np.uint64)


_BLOCK = 2048  # words (16 KiB): a block checked and then copied or added while it sits in the L1 cache


# A float32 is an infinity or a NaN when its 8 exponent bits are all ones. For a word holding two float32,
# ``(w & _EXPONENTS) + _CARRY`` sets bit 31 (bit 63) exactly when the low (high) half's exponent is all ones.
_EXPONENTS = np.uint64(0x7F8000007F800000)
_CARRY = np.uint64(0x0080000000800000)
_SIGNS = np.uint64(0x8000000080000000)


@njit(cache=True)
def _add_range(acc, x, src, wt, lo, hi):
    """``acc[2 lo:2 hi] += wt * x[2 lo:2 hi]`` in float32, coordinate by coordinate (``x``: the words ``src`` read
    as float32); returns the OR over words ``lo:hi`` of ``(w & _EXPONENTS) + _CARRY``, whose ``_SIGNS`` bits
    say whether one of the float32 added was not finite. A loop of its own, so it vectorises; the test reads
    the words the add has just loaded, which costs a few integer ops per word and no pass of its own."""
    a = acc[2 * lo:2 * hi]
    v = x[2 * lo:2 * hi]
    words = src[lo:hi]
    bits = np.uint64(0)
    for k in range(words.shape[0]):
        a[2 * k] += wt * v[2 * k]
        a[2 * k + 1] += wt * v[2 * k + 1]
        bits |= (words[k] & _EXPONENTS) + _CARRY
    return bits


@njit(cache=True)
def _rows(lanes, src):
    """Absorb the words ``src`` (whole rows, its first word in lane 0) into ``lanes``, row by row.

    A loop of its own, on a local copy of the lanes, bounded by ``src``'s length and over a lane count read
    at run time: in that form it compiles to vector multiplies with all the lanes' chains in flight, which a
    loop that also copies or adds does not.
    """
    m = _MUL
    r = np.uint64(32)
    L = lanes.shape[0]
    s = np.empty(L, np.uint64)
    s[:] = lanes
    n = src.shape[0]
    i = 0
    while i + L <= n:
        for j in range(L):
            t = (s[j] ^ src[i + j]) * m
            s[j] = t ^ (t >> r)
        i += L
    lanes[:] = s


@njit(cache=True)
def _absorb(lanes, k0, src, dst, x, acc, wt):
    """Feed ``src`` (uint64 words k0, k0 + 1, ... of the checked stream) into ``lanes``; word k goes to lane
    k % LANES. Returns False when ``acc`` is not empty and a float32 of ``x`` is not finite, else True.

    When ``dst`` is not empty, each word is also stored in ``dst`` (same length): a copy made block by block
    while the block is in the L1 cache. When ``acc`` is not empty, ``acc += wt * x`` in float32, coordinate
    by coordinate, the same way (``x``: the same bytes as ``src`` read as float32; ``acc``, ``x``: twice
    ``src``'s length), and the block's float32 are tested for NaN and infinity. A step
    ``s = (s ^ w) * M; s ^= s >> 32`` is a bijection of ``s`` for fixed ``w`` and of ``w`` for fixed ``s``.
    """
    m = _MUL
    r = np.uint64(32)
    L = lanes.shape[0]
    n = src.shape[0]
    copy = dst.shape[0] > 0
    add = acc.shape[0] > 0
    wt = np.float32(wt)
    bits = np.uint64(0)
    i = 0
    while i < n:
        if (k0 + i) % L == 0 and i + L <= n:  # whole rows, a cache-sized block at a time
            hi = i + min(n - i, _BLOCK) // L * L
            _rows(lanes, src[i:hi])
            if copy:
                dst[i:hi] = src[i:hi]
            if add:
                bits |= _add_range(acc, x, src, wt, i, hi)
            i = hi
            continue
        w = src[i]  # a single word: before the first lane-0 word, or after the last whole row
        if copy:
            dst[i] = w
        if add:
            acc[2 * i] += wt * x[2 * i]
            acc[2 * i + 1] += wt * x[2 * i + 1]
            bits |= (w & _EXPONENTS) + _CARRY
        j = (k0 + i) % L
        t = (lanes[j] ^ w) * m
        lanes[j] = t ^ (t >> r)
        i += 1
    return bits & _SIGNS == 0


@njit(cache=True)
def _fold(lanes, nbytes):
    """The 64-bit check from the lanes and the checked length; injective in each lane given the others."""
    f = np.uint64(nbytes)
    for j in range(lanes.shape[0]):
        f ^= lanes[j]
        # murmur3's fmix64: xorshifts and odd multiplies, a bijection of uint64
        f ^= f >> np.uint64(33)
        f *= np.uint64(0xFF51AFD7ED558CCD)
        f ^= f >> np.uint64(33)
        f *= np.uint64(0xC4CEB9FE1A85EC53)
        f ^= f >> np.uint64(33)
    return f


_NO_WORDS = np.zeros(0, np.uint64)
_NO_FLOATS = np.zeros(0, np.float32)


def _words(a):
    """The whole little-endian uint64 words at the start of uint8 array ``a``, as a view."""
    return a[:8 * (a.shape[0] // 8)].view("<u8")


def _tail_word(a):
    """The last ``len(a) % 8`` bytes of ``a`` as one zero-padded word (empty when there are none)."""
    rest = a.shape[0] % 8
    if not rest:
        return _NO_WORDS
    w = np.zeros(8, np.uint8)
    w[:rest] = a[a.shape[0] - rest:]
    return w.view("<u8")


def frame_check(buf, payload_src=None, accumulate=None):
    """The 64-bit check of a whole frame ``buf`` (uint8, header included), its check field skipped.

    At most one of these lets the pass that reads the payload's words for the check do a second job:
    ``payload_src``: the payload's first bytes are read from this array instead of ``buf`` and stored into ``buf``
    (a sender's copy of the payload into the frame).
    ``accumulate``: ``(acc, w)`` with ``acc`` a float32[n] and a payload of exactly ``4 n`` bytes (a float32
    vector): ``acc += float32(w) * payload`` in float32, coordinate by coordinate.
    """
    return _check(buf, payload_src, accumulate)[0]


def _check(buf, payload_src, accumulate):
    """``(frame_check(...), finite)``: ``finite`` is False when ``accumulate`` added a NaN or an infinity."""
    lanes = _SEEDS.copy()
    finite = True
    head = buf[:CHECK_OFFSET].view("<u8")
    _absorb(lanes, 0, head, _NO_WORDS, _NO_FLOATS, _NO_FLOATS, 0.0)
    body = buf[HEADER_BYTES:]
    n = 0  # leading body bytes absorbed while doing the second job (whole words)
    if payload_src is not None:
        n = 8 * (payload_src.shape[0] // 8)
        _absorb(lanes, head.shape[0], _words(payload_src[:n]), _words(body[:n]), _NO_FLOATS, _NO_FLOATS, 0.0)
    elif accumulate is not None:
        acc, w = accumulate
        n = 8 * (acc.shape[0] // 2)
        x = body[:4 * acc.shape[0]].view("<f4")
        finite = _absorb(lanes, head.shape[0], _words(body[:n]), _NO_WORDS, x[:n // 4], acc[:n // 4], w)
        if acc.shape[0] % 2:  # the last coordinate does not fill a word
            acc[-1] += np.float32(w) * x[-1]
            finite &= bool(np.isfinite(x[-1]))
    rest = body[n:]
    k = head.shape[0] + n // 8
    _absorb(lanes, k, _words(rest), _NO_WORDS, _NO_FLOATS, _NO_FLOATS, 0.0)
    _absorb(lanes, k + rest.shape[0] // 8, _tail_word(rest), _NO_WORDS, _NO_FLOATS, _NO_FLOATS, 0.0)
    return int(_fold(lanes, buf.shape[0] - 8)), finite


def pack(kind, round_, agent, data, nbits, loss=float("nan"), digest=None, flags=0, out=None):
    """Build one frame as a uint8 array: header, payload bytes, optional digest.

    ``flags`` are extra flag bits (FLAG_DIGEST is set from ``digest``). ``out``: a uint8 array of exactly
    the frame's length to build it in (a model broadcast reuses one buffer instead of allocating ``4d`` bytes
    a round). The payload is copied into the frame by the pass that computes the check.
    """
    data = np.asarray(data, dtype=np.uint8)
    nbytes = (nbits + 7) // 8
    if data.shape != (nbytes,):
        raise ValueError(f"payload has {data.shape[0]} bytes, {nbits} bits need exactly {nbytes}")
    flags |= FLAG_DIGEST if digest is not None else 0
    if flags & ~FLAGS[Kind(kind)]:
        raise ValueError(f"flags {flags:#x} are not valid on a {Kind(kind).name} message")
    size = frame_bytes(nbits, digest is not None)
    if out is None:
        out = np.empty(size, dtype=np.uint8)
    elif out.dtype != np.uint8 or out.shape != (size,):
        raise ValueError(f"out must be uint8[{size}] for this frame, got {out.dtype}{out.shape}")
    HEADER.pack_into(out, 0, MAGIC, WIRE_VERSION, int(kind), flags, round_, agent, nbits, loss, 0)
    whole = 8 * (nbytes // 8)  # the check's pass copies these; the few bytes after them are copied here
    out[HEADER_BYTES + whole:HEADER_BYTES + nbytes] = data[whole:]
    if digest is not None:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"digest must be {DIGEST_BYTES} bytes, got {len(digest)}")
        out[HEADER_BYTES + nbytes:] = np.frombuffer(digest, dtype=np.uint8)
    check = frame_check(out, payload_src=data[:whole])
    out[CHECK_OFFSET:HEADER_BYTES] = np.frombuffer(struct.pack("<Q", check), np.uint8)
    return out


def parse(buf, verify=True):
    """Parse and validate one received frame (a uint8 array of exactly the received length).

    ``verify=False`` validates everything but the check, which the caller then verifies with ``verify_frame``
    (so that the pass computing it can also add a float32 payload to a sum).
    """
    buf = np.asarray(buf, dtype=np.uint8)
    if buf.shape[0] < HEADER_BYTES:
        raise WireError(f"frame of {buf.shape[0]} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, kind, flags, round_, agent, nbits, loss, check = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}, expected {MAGIC!r}")
    where = _where(agent, round_)
    if version != WIRE_VERSION:
        raise WireError(f"wire format version {version}, this psgrad speaks {WIRE_VERSION} {where}")
    if kind not in Kind.__members__.values():
        raise WireError(f"unknown message kind {kind} {where}")
    if flags & ~FLAGS[Kind(kind)]:
        raise WireError(f"unknown flags {flags:#x} for a {Kind(kind).name} message {where}")
    for lo, hi in _RESERVED:
        if buf[lo:hi].any():
            raise WireError(f"reserved header bytes {lo}-{hi - 1} are {buf[lo:hi].tobytes().hex()}, "
                            f"expected zero {where}")
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
    if flags & (FLAG_SKIPPED | FLAG_LATE) and nbits:
        raise WireError(f"a {'SKIPPED' if flags & FLAG_SKIPPED else 'LATE'} message carries {nbits} payload bits "
                        f"{where}")
    digest = buf[HEADER_BYTES + nbytes:].tobytes() if has_digest else None
    frame = Frame(Kind(kind), round_, agent, nbits, loss, payload, digest, flags, check)
    if verify:
        verify_frame(buf, frame)
    return frame


def _where(agent, round_):
    """Where a frame says it is from, for an error: the agent (or the model) and the round, as its header says."""
    return f"({'the model' if agent == ALL_AGENTS else f'agent {agent}'}, round {round_})"


def verify_frame(buf, frame, accumulate=None):
    """Raise ``WireError`` unless ``buf``'s check matches ``frame`` (parsed from it with ``verify=False``).

    ``accumulate`` as in ``frame_check``: the pass that checks the payload also adds it to ``acc``, and tests
    every float32 it adds for NaN and infinity (integer tests on the words the check reads, in the same
    pass). Returns False when one was not finite (True without ``accumulate``); what was added is only
    meaningful when no error is raised and True is returned.
    """
    if accumulate is not None and 4 * accumulate[0].shape[0] != frame.payload.shape[0]:
        raise ValueError(f"accumulate's vector has {accumulate[0].shape[0]} float32, the payload "
                         f"{frame.payload.shape[0]} bytes")
    check, finite = _check(buf, None, accumulate)
    if check != frame.check:
        raise WireError(f"check mismatch: the frame was corrupted {_where(frame.agent, frame.round)}")
    return finite
