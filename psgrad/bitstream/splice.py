"""Embedding one bitstream inside another at any bit offset.

Schemes frame a codec's payload behind a few header bits (a trigger flag,
predictor coefficients). ``splice`` copies a payload into a larger zeroed
buffer at bit position ``pos``; ``extract`` copies ``n`` bits starting at
``pos`` out into a fresh buffer whose bit 0 is stream bit ``pos``, with the
padding of its last byte zero, exactly as the codec wrote it. Bit order is the
one of ``bits.py`` (LSB first), so ``extract(splice(x))`` is the identity.
"""
import numpy as np
from numba import njit

from ..errors import DecodeError


@njit(cache=True)
def splice(buf, pos, src, n):
    """OR the first ``n`` bits of ``src`` into zeroed ``buf`` at bit ``pos``; return ``pos + n``.

    ``src`` must hold ``ceil(n / 8)`` bytes with zero padding (as every codec
    writes); ``buf`` must hold ``ceil((pos + n) / 8)`` bytes.
    """
    nbytes = (n + 7) >> 3
    start = pos >> 3
    off = pos & 7
    if off == 0:
        buf[start:start + nbytes] = src[:nbytes]
        return pos + n
    size = buf.shape[0]
    lo = np.uint32(off)
    hi = np.uint32(8 - off)
    for i in range(nbytes):
        b = np.uint32(src[i])
        buf[start + i] |= np.uint8((b << lo) & np.uint32(0xFF))
        if start + i + 1 < size:
            buf[start + i + 1] |= np.uint8(b >> hi)
    return pos + n


@njit(cache=True)
def extract(buf, end, pos, n):
    """The ``n`` bits of ``buf`` at bit ``pos`` as a new zero-padded buffer.

    Raises ``DecodeError`` when ``pos + n > end`` (``end``: valid bits in ``buf``).
    """
    if n < 0 or pos + n > end:
        raise DecodeError("bitstream: read past the end of the payload")
    nbytes = (n + 7) >> 3
    out = np.zeros(nbytes, np.uint8)
    start = pos >> 3
    off = pos & 7
    size = buf.shape[0]
    if off == 0:
        out[:] = buf[start:start + nbytes]
    else:
        lo = np.uint32(off)
        hi = np.uint32(8 - off)
        for i in range(nbytes):
            v = np.uint32(buf[start + i]) >> lo
            if start + i + 1 < size:
                v |= np.uint32(buf[start + i + 1]) << hi
            out[i] = np.uint8(v & np.uint32(0xFF))
    tail = n & 7
    if tail != 0:
        out[nbytes - 1] &= np.uint8((1 << tail) - 1)
    return out
