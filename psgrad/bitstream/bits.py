"""Bit-level cursors over byte buffers, as numba kernels.

Bit order: the stream is little-endian at both levels. Stream bit ``i`` is bit
``i % 8`` (least significant first) of byte ``i // 8``, and an ``n``-bit value
is written least significant bit first. Writing a uint32 at a byte-aligned
position therefore gives the same bytes as ``struct.pack('<I', v)``, and a
byte-aligned float32 array gives the same bytes as ``x.tobytes()`` on a
little-endian machine.

Kernels take ``(buf, pos, ...)`` and return the new position. Writers assume
the buffer was zero-initialised (they OR bits in), so the padding after the
last written bit stays zero. Readers take ``end``, the number of valid bits,
and raise ``DecodeError`` rather than read past it.
"""
import numpy as np
from numba import njit

from ..errors import DecodeError

_OVERRUN = "bitstream: read past the end of the payload"


@njit(cache=True)
def write_bits(buf, pos, value, n):
    """Write the low ``n`` bits (0 <= n <= 64) of uint64 ``value``; return ``pos + n``."""
    value = np.uint64(value)
    while n > 0:
        byte = pos >> 3
        off = pos & 7
        take = 8 - off
        if take > n:
            take = n
        chunk = (value & np.uint64((1 << take) - 1)) << np.uint64(off)
        buf[byte] |= np.uint8(chunk)
        value = value >> np.uint64(take)
        pos += take
        n -= take
    return pos


@njit(cache=True)
def read_bits(buf, end, pos, n):
    """Read ``n`` bits (0 <= n <= 64) at ``pos``; return ``(value, pos + n)``.

    Raises ``DecodeError`` when ``pos + n > end``.
    """
    if pos + n > end:
        raise DecodeError(_OVERRUN)
    value = np.uint64(0)
    shift = 0
    while n > 0:
        byte = pos >> 3
        off = pos & 7
        take = 8 - off
        if take > n:
            take = n
        chunk = (np.uint64(buf[byte]) >> np.uint64(off)) & np.uint64((1 << take) - 1)
        value |= chunk << np.uint64(shift)
        shift += take
        pos += take
        n -= take
    return value, pos


@njit(cache=True)
def f32_field(v):
    """The 32 IEEE bits of float32 ``v`` as a uint64 field (inside jitted code)."""
    tmp = np.empty(1, np.float32)
    tmp[0] = v
    return np.uint64(tmp.view(np.uint32)[0])


@njit(cache=True)
def field_f32(u):
    """The float32 whose IEEE bits are the low 32 bits of ``u`` (inverse of ``f32_field``)."""
    tmp = np.empty(1, np.uint32)
    tmp[0] = np.uint32(u & np.uint64(0xFFFFFFFF))
    return tmp.view(np.float32)[0]


@njit(cache=True)
def write_f32(buf, pos, x):
    """Write one float32 as its 32 IEEE-754 bits."""
    return write_bits(buf, pos, f32_field(x), 32)


@njit(cache=True)
def read_f32(buf, end, pos):
    """Read one float32 written by ``write_f32``; return ``(value, pos)``."""
    v, pos = read_bits(buf, end, pos, 32)
    return field_f32(v), pos


@njit(cache=True)
def write_bytes(buf, pos, src):
    """Write the uint8 array ``src`` (8 bits each); byte-aligned ``pos`` is a plain copy."""
    n = src.shape[0]
    if pos & 7 == 0:
        start = pos >> 3
        buf[start:start + n] = src
        return pos + 8 * n
    for i in range(n):
        pos = write_bits(buf, pos, src[i], 8)
    return pos


@njit(cache=True)
def read_bytes(buf, end, pos, out):
    """Fill the uint8 array ``out`` from the stream; return the new position."""
    n = out.shape[0]
    if pos + 8 * n > end:
        raise DecodeError(_OVERRUN)
    if pos & 7 == 0:
        start = pos >> 3
        out[:] = buf[start:start + n]
        return pos + 8 * n
    for i in range(n):
        v, pos = read_bits(buf, end, pos, 8)
        out[i] = np.uint8(v)
    return pos


def new_buffer(max_bits):
    """A zeroed byte buffer that holds ``max_bits`` bits."""
    return np.zeros((int(max_bits) + 7) // 8, dtype=np.uint8)


def check_payload(data, nbits):
    """Validate a payload buffer against its declared bit length; return it as uint8."""
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise DecodeError(f"payload must be a 1-d uint8 array, got {data.dtype}[{data.ndim}-d]")
    if nbits < 0:
        raise DecodeError(f"payload bit length must be >= 0, got {nbits}")
    if data.shape[0] < (nbits + 7) // 8:
        raise DecodeError(f"payload holds {data.shape[0]} bytes but declares {nbits} bits")
    return data


class BitWriter:
    """A Python-level writer for small, non-hot streams (headers, tests)."""

    def __init__(self, max_bits):
        self.buf = new_buffer(max_bits)
        self.pos = 0

    def write(self, value, n):
        if self.pos + n > 8 * self.buf.shape[0]:
            raise OverflowError(f"BitWriter: {n} more bits exceed the {8 * self.buf.shape[0]}-bit buffer")
        self.pos = write_bits(self.buf, self.pos, np.uint64(value), n)
        return self

    def write_f32(self, x):
        if self.pos + 32 > 8 * self.buf.shape[0]:
            raise OverflowError("BitWriter: float32 exceeds the buffer")
        self.pos = write_f32(self.buf, self.pos, np.float32(x))
        return self

    def getvalue(self):
        """Return ``(data, nbits)``: the written bytes (trailing padding zero) and their bit length."""
        return self.buf[: (self.pos + 7) // 8].copy(), self.pos


class BitReader:
    """A Python-level reader matching ``BitWriter``."""

    def __init__(self, data, nbits):
        self.buf = check_payload(data, nbits)
        self.end = int(nbits)
        self.pos = 0

    def read(self, n):
        v, self.pos = read_bits(self.buf, self.end, self.pos, n)
        return int(v)

    def read_f32(self):
        v, self.pos = read_f32(self.buf, self.end, self.pos)
        return float(v)
