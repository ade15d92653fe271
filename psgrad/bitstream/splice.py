"""Embedding one bitstream inside another at any bit offset.

Schemes frame a codec's payload behind a few header bits (a trigger flag,
predictor coefficients). ``splice`` copies a payload into a larger zeroed
buffer at bit position ``pos``; ``extract`` copies ``n`` bits starting at
``pos`` out into a fresh buffer whose bit 0 is stream bit ``pos``, with the
padding of its last byte zero, exactly as the codec wrote it. Bit order is the
one of ``bits.py`` (LSB first), so ``extract(splice(x))`` is the identity.

Unaligned copies shift 64-bit little-endian words (a loop the compiler
vectorises) rather than single bytes; byte-aligned ones are plain copies.
"""
import numpy as np
from numba import njit

from ..errors import DecodeError


@njit(cache=True)
def _shift_up(w, off, out):
    """``out`` = the bit string ``w`` moved ``off`` (1..63) bits towards higher positions."""
    back = np.uint64(64 - off)
    up = np.uint64(off)
    out[0] = w[0] << up
    for i in range(1, w.shape[0]):
        out[i] = (w[i] << up) | (w[i - 1] >> back)


@njit(cache=True)
def _shift_down(w, off, out):
    """``out`` = the bit string ``w`` moved ``off`` (1..63) bits towards lower positions."""
    back = np.uint64(64 - off)
    down = np.uint64(off)
    n = out.shape[0]
    for i in range(n):
        out[i] = (w[i] >> down) | (w[i + 1] << back)


def _words(src, nbytes, nwords):
    """``src[:nbytes]`` in a zero-padded little-endian uint64 array of ``nwords`` words."""
    w = np.zeros(nwords, np.uint64)
    w.view(np.uint8)[:nbytes] = src[:nbytes]
    return w


def splice(buf, pos, src, n):
    """OR the first ``n`` bits of ``src`` into ``buf`` at bit ``pos``; return ``pos + n``.

    ``buf`` must be zero from bit ``pos`` on and hold ``ceil((pos + n) / 8)``
    bytes; ``src`` holds ``ceil(n / 8)`` bytes with zero padding (as every
    codec writes).
    """
    nbytes = (n + 7) // 8
    if nbytes == 0:
        return pos + n
    start, off = pos >> 3, pos & 7
    if off == 0:
        buf[start:start + nbytes] = src[:nbytes]
        return pos + n
    w = _words(src, nbytes, (nbytes + 7) // 8 + 1)
    shifted = np.empty_like(w)
    _shift_up(w, off, shifted)
    b = shifted.view(np.uint8)
    stop = min(buf.shape[0], start + nbytes + 1)  # any bytes past the buffer are padding zeros
    buf[start] |= b[0]
    buf[start + 1:stop] = b[1:stop - start]
    return pos + n


def extract(buf, end, pos, n):
    """The ``n`` bits of ``buf`` at bit ``pos`` as a zero-padded buffer of ``ceil(n / 8)`` bytes.

    Raises ``DecodeError`` when ``pos + n > end`` (``end``: valid bits in ``buf``).
    """
    if n < 0 or pos < 0 or pos + n > end or buf.shape[0] < (end + 7) // 8:
        raise DecodeError(f"bitstream: cannot take {n} bits at {pos} from a payload of {end} bits")
    nbytes = (n + 7) // 8
    start, off = pos >> 3, pos & 7
    if off == 0:
        out = buf[start:start + nbytes].copy()
    else:
        avail = min(buf.shape[0] - start, nbytes + 1)
        nwords = (nbytes + 7) // 8
        w = _words(buf[start:start + avail], avail, nwords + 1)
        shifted = np.empty(nwords, np.uint64)
        _shift_down(w, off, shifted)
        out = shifted.view(np.uint8)[:nbytes]
    if n & 7:
        out[nbytes - 1] &= np.uint8((1 << (n & 7)) - 1)
    return out
