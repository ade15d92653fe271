"""Bulk bitstream kernels over 64-bit words, for the hot loops of codecs.

The stream is the one of ``bits`` (stream bit ``i`` is bit ``i % 8`` of byte
``i // 8``), held in a little-endian uint64 array instead of bytes: stream bit
``i`` is then bit ``i % 64`` of word ``i // 64``, so ``words.view(np.uint8)``
*is* the byte stream and a field is written with at most two word ORs instead
of a loop over bytes. Every buffer carries one spare zero word at the end so
that a field straddling the last word boundary needs no branch on the
buffer's size; callers check ``pos + n <= end`` themselves (readers of
variable-length codes below check it for you and raise ``DecodeError``).

``put`` and ``get`` are inlined into their callers at the numba IR level: a
plain call would pay an atomic reference-count update on the array per field.

``load_words`` copies a received payload into such a buffer and zeroes every
bit at or after ``nbits``, so a decoder never sees stray padding and a scan
for a terminating bit always stops at the buffer's end.
"""
import sys

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from ..errors import DecodeError
from .codes import bit_length, omega_chain, omega_len

if sys.byteorder != "little":  # the word view of the byte stream relies on it
    raise ImportError("psgrad.bitstream.words needs a little-endian machine")

_OVERRUN = "bitstream: read past the end of the payload"
_TOO_BIG = "integer code: value exceeds 63 bits"
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)

def new_words(max_bits):
    """A zeroed word buffer that holds ``max_bits`` bits plus the spare word."""
    return np.zeros((int(max_bits) + 63) // 64 + 1, np.uint64)


def words_to_bytes(words, nbits):
    """The first ``ceil(nbits / 8)`` bytes of a word buffer (a view, no copy)."""
    return words.view(np.uint8)[: (int(nbits) + 7) // 8]


def load_words(data, nbits):
    """Copy a uint8 payload of ``nbits`` bits into a fresh word buffer, zeroing bits past ``nbits``."""
    nbytes = (int(nbits) + 7) // 8
    words = new_words(nbits)
    words.view(np.uint8)[:nbytes] = data[:nbytes]
    if nbits & 63:
        words[nbits >> 6] &= np.uint64((1 << (nbits & 63)) - 1)
    return words


@njit(cache=True, inline="always")
def ctz(x):
    """Number of trailing zero bits of a non-zero uint64 (one ``tzcnt`` instruction)."""
    return np.int64(trailing_zeros(np.uint64(x)))


@njit(cache=True, inline="always")
def put(words, pos, value, n):
    """Write the ``n``-bit value ``value`` (``0 <= n <= 64``, ``value < 2**n``) at bit ``pos``; return ``pos + n``."""
    w = pos >> 6
    off = pos & 63
    v = np.uint64(value)
    words[w] |= v << np.uint64(off)
    if off + n > 64:
        words[w + 1] |= v >> np.uint64(64 - off)
    return pos + n


@njit(cache=True, inline="always")
def get(words, pos, n):
    """Read ``n`` bits (``0 <= n <= 64``) at bit ``pos``; return ``(value, pos + n)``. No end check."""
    w = pos >> 6
    off = pos & 63
    v = words[w] >> np.uint64(off)
    if off + n > 64:
        v |= words[w + 1] << np.uint64(64 - off)
    if n < 64:
        v &= (_ONE << np.uint64(n)) - _ONE
    return v, pos + n


@njit(cache=True)
def get_checked(words, end, pos, n):
    """``get`` that raises ``DecodeError`` when the field would end past ``end``."""
    if pos + n > end:
        raise DecodeError(_OVERRUN)
    return get(words, pos, n)


@njit(cache=True)
def put_gamma(words, pos, n):
    """Elias gamma of ``n >= 1`` (layout as ``codes.write_gamma``)."""
    L = bit_length(n) - 1
    pos += L
    pos = put(words, pos, 1, 1)
    return put(words, pos, np.uint64(n) & ((_ONE << np.uint64(L)) - _ONE), L)


@njit(cache=True)
def _scan_zeros(words, end, pos):
    """Count zero bits from ``pos`` up to a 1 bit; return ``(count, position after the 1)``."""
    count = 0
    while True:
        if pos >= end:
            raise DecodeError(_OVERRUN)
        off = pos & 63
        word = words[pos >> 6] >> np.uint64(off)
        if word != 0:
            t = ctz(word)
            return count + t, pos + t + 1  # bits past end are zero, so pos + t < end
        count += 64 - off
        pos += 64 - off
        if count > 64:
            raise DecodeError(_TOO_BIG)


@njit(cache=True)
def get_gamma(words, end, pos):
    """Read an Elias gamma code; ``DecodeError`` on truncation or a value over 63 bits."""
    L, pos = _scan_zeros(words, end, pos)
    if L > 62:
        raise DecodeError(_TOO_BIG)
    if pos + L > end:
        raise DecodeError(_OVERRUN)
    low, pos = get(words, pos, L)
    return (np.int64(1) << L) | np.int64(low), pos


@njit(cache=True)
def put_omega(words, pos, n):
    """Elias omega of ``n >= 1`` (layout as ``codes.write_omega``)."""
    vals, count = omega_chain(n)
    for j in range(count - 1, -1, -1):
        L = bit_length(vals[j]) - 1
        pos = put(words, pos, 1, 1)
        pos = put(words, pos, np.uint64(vals[j]) & ((_ONE << np.uint64(L)) - _ONE), L)
    return pos + 1


@njit(cache=True)
def omega_code(n):
    """Elias omega of ``n >= 1`` as ``(value, length)``: ``put(words, pos, value, length)`` writes the
    bits of ``put_omega``. ``length <= 64`` for ``n < 2**50``; the caller keeps ``n`` below that."""
    vals, count = omega_chain(n)
    code = np.uint64(0)
    length = 0
    for j in range(count - 1, -1, -1):
        L = bit_length(vals[j]) - 1
        low = np.uint64(vals[j]) & ((_ONE << np.uint64(L)) - _ONE)
        code |= (_ONE | (low << _ONE)) << np.uint64(length)
        length += 1 + L
    return code, length + 1


# Table-driven Elias omega for the small values that dominate gap and level streams:
# OMEGA_CODE[n], OMEGA_LEN[n] for 1 <= n < OMEGA_TABLE (the fields of ``omega_code``), and
# OMEGA_DEC[w] = (n << 8) | length for every 12-bit window ``w`` that starts with a complete omega
# code of at most OMEGA_PEEK bits (n <= 63), 0 where the code is longer (read it with ``get_omega``).
OMEGA_TABLE = 1024
OMEGA_PEEK = 12
OMEGA_CODE = np.zeros(OMEGA_TABLE, np.uint64)
OMEGA_LEN = np.zeros(OMEGA_TABLE, np.int64)
OMEGA_DEC = np.zeros(1 << OMEGA_PEEK, np.int64)


def _build_omega_tables():
    for n in range(1, OMEGA_TABLE):
        code, length = omega_code(n)
        OMEGA_CODE[n], OMEGA_LEN[n] = code, length
        assert length == omega_len(n)
        if length <= OMEGA_PEEK:
            OMEGA_DEC[int(code)::1 << length] = (n << 8) | length


_build_omega_tables()


@njit(cache=True, inline="always")
def sink_put(words, w, acc, nacc, value, n):
    """Append an ``n``-bit value (``1 <= n <= 64``) to a sequential writer held in registers:
    ``acc`` holds ``nacc < 64`` pending bits that belong at word ``w``. Words are only stored, never
    read back, so the buffer need not be zeroed (it needs one word past the last bit). Branch-free:
    ``acc`` is stored every time, and the carry into the next word is selected, not branched on, so an
    unpredictable word boundary costs no misprediction. Returns the new ``(w, acc, nacc)``; the stream
    position is ``64 * w + nacc``. Finish with ``sink_flush``."""
    v = np.uint64(value)
    acc |= v << np.uint64(nacc)
    words[w] = acc
    nacc += n
    full = nacc >> 6  # 1 when the word is complete
    nacc &= 63
    carry = (v >> _ONE) >> np.uint64(n - 1 - nacc)  # the bits of v past the word (two shifts: never by 64)
    acc = carry if full else acc
    return w + full, acc, nacc


@njit(cache=True, inline="always")
def sink_flush(words, w, acc, nacc):
    """Store the pending bits of a ``sink_put`` writer (zero above them); return the stream length."""
    if nacc > 0:
        words[w] = acc
    return 64 * w + nacc


@njit(cache=True)
def get_omega(words, end, pos):
    """Read an Elias omega code; ``DecodeError`` on truncation or a value over 63 bits."""
    n = np.int64(1)
    while True:
        if pos >= end:
            raise DecodeError(_OVERRUN)
        b, pos = get(words, pos, 1)
        if b == 0:
            return n, pos
        if n > 62:
            raise DecodeError(_TOO_BIG)
        if pos + n > end:
            raise DecodeError(_OVERRUN)
        low, pos = get(words, pos, n)
        n = (np.int64(1) << n) | np.int64(low)


@njit(cache=True)
def put_rice(words, pos, n, k):
    """Golomb-Rice code of ``n >= 0`` with parameter ``k`` (layout as ``codes.write_rice``)."""
    q = np.int64(n) >> k
    while q >= 64:
        pos = put(words, pos, _ALL, 64)
        q -= 64
    pos = put(words, pos, (_ONE << np.uint64(q)) - _ONE, q)
    pos += 1
    return put(words, pos, np.uint64(n) & ((_ONE << np.uint64(k)) - _ONE), k)


@njit(cache=True)
def _get_unary(words, end, pos, limit):
    """Count one bits from ``pos`` up to a 0 bit; return ``(count, position after the 0)``.

    ``DecodeError`` on truncation or a count of ``limit`` or more."""
    q = np.int64(0)
    while True:
        if pos >= end:
            raise DecodeError(_OVERRUN)
        off = pos & 63
        inv = ~(words[pos >> 6] >> np.uint64(off))  # ones above the word's end become zeros here
        avail = 64 - off
        t = 64 if inv == 0 else ctz(inv)
        if t < avail:
            if pos + t >= end:  # the 0 found lies in the zeroed tail, not in the payload
                raise DecodeError(_OVERRUN)
            q += t
            pos += t + 1
            break
        q += avail
        pos += avail
        if q >= limit:
            raise DecodeError("integer code: unary quotient too large")
    if q >= limit:
        raise DecodeError("integer code: unary quotient too large")
    return q, pos


@njit(cache=True)
def get_rice(words, end, pos, k):
    """Read a Golomb-Rice code with parameter ``k``; ``DecodeError`` on truncation or overflow."""
    q, pos = _get_unary(words, end, pos, np.int64(1) << (62 - k))
    if pos + k > end:
        raise DecodeError(_OVERRUN)
    low, pos = get(words, pos, k)
    return (q << k) | np.int64(low), pos


@njit(cache=True)
def golomb_remainder(r, M):
    """The remainder field of a Golomb code with parameter ``M >= 1`` for ``0 <= r < M``: ``(value, length)``.

    Truncated binary with ``b = ceil(log2 M)`` and ``u = 2^b - M``: ``r < u``
    takes ``b - 1`` bits (``r``); otherwise, with ``s = r - u``, ``b`` bits:
    ``u + (s >> 1)`` in the low ``b - 1`` bits and ``s & 1`` above them. (The
    low ``b - 1`` bits alone tell which case applies: they are ``< u`` only in
    the first.) ``M = 1`` has no remainder bits.
    """
    if M == 1:
        return np.uint64(0), 0
    b = bit_length(M - 1)
    u = (np.int64(1) << b) - M
    if r < u:
        return np.uint64(r), b - 1
    s = r - u
    return np.uint64(u + (s >> 1)) | (np.uint64(s & 1) << np.uint64(b - 1)), b


@njit(cache=True)
def golomb_len(n, M):
    """Length of the Golomb code of ``n >= 0`` with parameter ``M``."""
    _, length = golomb_remainder(n % M, M)
    return n // M + 1 + length


@njit(cache=True)
def put_golomb(words, pos, n, M):
    """Golomb code of ``n >= 0`` with parameter ``M >= 1`` (Golomb 1966) into a zeroed buffer: ``n // M``
    one bits, a 0 bit, then the remainder field of ``golomb_remainder``. ``M = 2^k`` gives the bits of a
    Rice code with the remainder's low ``k - 1`` bits and top bit swapped."""
    q = np.int64(n) // M
    while q >= 64:
        pos = put(words, pos, _ALL, 64)
        q -= 64
    pos = put(words, pos, (_ONE << np.uint64(q)) - _ONE, q)
    pos += 1
    v, length = golomb_remainder(np.int64(n) % M, M)
    return put(words, pos, v, length)


@njit(cache=True)
def get_golomb(words, end, pos, M):
    """Read a Golomb code with parameter ``M``; ``DecodeError`` on truncation or a value over 62 bits."""
    q, pos = _get_unary(words, end, pos, (np.int64(1) << 62) // M)
    if M == 1:
        return q, pos
    b = bit_length(M - 1)
    u = (np.int64(1) << b) - M
    if pos + b - 1 > end:
        raise DecodeError(_OVERRUN)
    x, pos = get(words, pos, b - 1)
    r = np.int64(x)
    if r >= u:
        if pos + 1 > end:
            raise DecodeError(_OVERRUN)
        e, pos = get(words, pos, 1)
        r = u + 2 * (r - u) + np.int64(e)
    return q * M + r, pos


def golomb_parameter(p):
    """The Golomb parameter of least expected length for gaps of a Bernoulli(``p``) sequence:
    ``M = ceil(log(1 + q) / -log(q))``, ``q = 1 - p`` (Gallager and van Voorhis, 1975)."""
    if not 0.0 < p < 1.0:
        return 1
    q = 1.0 - p
    return max(1, int(np.ceil(np.log1p(q) / -np.log(q))))


@njit(cache=True)
def pack_signs(x, words, pos):
    """Write the IEEE sign bit of each float32 in ``x`` (1 = negative, so -0.0 counts as negative)
    as ``len(x)`` consecutive bits from ``pos``, 64 per word write; return the new position."""
    u = x.view(np.uint32)
    n = x.shape[0]
    full = n // 64
    for w in range(full):
        acc = np.uint64(0)
        base = 64 * w
        for j in range(64):
            acc |= np.uint64(u[base + j] >> np.uint32(31)) << np.uint64(j)
        pos = put(words, pos, acc, 64)
    acc = np.uint64(0)
    for j in range(n - 64 * full):
        acc |= np.uint64(u[64 * full + j] >> np.uint32(31)) << np.uint64(j)
    return put(words, pos, acc, n - 64 * full)


@njit(cache=True)
def unpack_signs(words, pos, out, magnitude):
    """Fill ``out`` with ``+magnitude`` / ``-magnitude`` from ``len(out)`` sign bits at ``pos``
    (1 = negative); return the new position. The caller checks the bits exist."""
    u = out.view(np.uint32)
    mag = np.float32(magnitude)
    m = np.empty(1, np.float32)
    m[0] = mag
    mbits = m.view(np.uint32)[0] & np.uint32(0x7FFFFFFF)
    n = out.shape[0]
    full = n // 64
    for w in range(full):
        bits, pos = get(words, pos, 64)
        base = 64 * w
        for j in range(64):
            u[base + j] = mbits | (np.uint32((bits >> np.uint64(j)) & _ONE) << np.uint32(31))
    rest = n - 64 * full
    bits, pos = get(words, pos, rest)
    for j in range(rest):
        u[64 * full + j] = mbits | (np.uint32((bits >> np.uint64(j)) & _ONE) << np.uint32(31))
    return pos


@njit(cache=True)
def put_words(words, pos, src, nbits):
    """Append the first ``nbits`` bits of word array ``src`` (its bit ``i`` is bit ``i % 64`` of word
    ``i // 64``, bits past ``nbits`` zero) at ``pos``; return ``pos + nbits``. A shifted word copy."""
    n = (nbits + 63) // 64
    w = pos >> 6
    off = pos & 63
    if off == 0:
        for k in range(n):
            words[w + k] = src[k]
    else:
        sh = np.uint64(off)
        back = np.uint64(64 - off)
        for k in range(n):
            v = src[k]
            words[w + k] |= v << sh
            words[w + k + 1] = v >> back
    return pos + nbits


@njit(cache=True)
def get_words(words, pos, nbits, dst):
    """Copy ``nbits`` bits from ``pos`` into word array ``dst`` (aligned at 0, trailing bits zero).
    The caller checks ``pos + nbits <= end``."""
    n = (nbits + 63) // 64
    w = pos >> 6
    off = pos & 63
    if off == 0:
        for k in range(n):
            dst[k] = words[w + k]
    else:
        sh = np.uint64(off)
        back = np.uint64(64 - off)
        for k in range(n):
            dst[k] = (words[w + k] >> sh) | (words[w + k + 1] << back)
    if nbits & 63:
        dst[n - 1] &= (_ONE << np.uint64(nbits & 63)) - _ONE


def with_field(value, width, data, nbits):
    """The payload ``data`` of ``nbits`` bits behind a ``width``-bit field holding ``value`` (stream bits
    ``0..width-1``, least significant first): ``(bytes, nbits + width)``."""
    words = new_words(nbits + width)
    put_words(words, width, load_words(data, nbits), nbits)
    words[0] |= np.uint64(value)
    return words.view(np.uint8), nbits + width


def split_field(data, nbits, width):
    """The inverse of ``with_field`` for a payload of ``nbits >= width`` bits: ``(value, inner payload as
    words, its bit length)``."""
    words = load_words(data, nbits)
    inner = new_words(nbits - width)
    get_words(words, width, nbits - width, inner)
    return int(words[0] & np.uint64((1 << width) - 1)), inner, nbits - width


@njit(cache=True)
def pack_fixed(vals, width, out):
    """Pack ``vals[i] < 2**width`` (``1 <= width <= 32``) as consecutive ``width``-bit fields into the
    zeroed word array ``out`` from bit 0; return the number of bits."""
    n = vals.shape[0]
    w = np.uint64(width)
    if 64 % width == 0:  # whole fields per word: a fixed inner loop the compiler unrolls
        per = 64 // width
        full = n // per
        for k in range(full):
            acc = np.uint64(0)
            for j in range(per):
                acc |= np.uint64(vals[k * per + j]) << np.uint64(j * width)
            out[k] = acc
        acc = np.uint64(0)
        for j in range(n - full * per):
            acc |= np.uint64(vals[full * per + j]) << np.uint64(j * width)
        if n > full * per:
            out[full] = acc
        return n * width
    acc = np.uint64(0)
    nacc = 0
    k = 0
    for i in range(n):
        v = np.uint64(vals[i])
        acc |= v << np.uint64(nacc)
        nacc += width
        if nacc >= 64:
            out[k] = acc
            k += 1
            nacc -= 64
            acc = v >> (w - np.uint64(nacc)) if nacc > 0 else np.uint64(0)
    if nacc > 0:
        out[k] = acc
    return n * width


@njit(cache=True)
def unpack_fixed(src, width, out):
    """Inverse of ``pack_fixed``: fill ``out`` with ``len(out)`` fields of ``width`` bits from word array ``src``."""
    n = out.shape[0]
    mask = (_ONE << np.uint64(width)) - _ONE
    if 64 % width == 0:
        per = 64 // width
        for k in range((n + per - 1) // per):
            v = src[k]
            for j in range(min(per, n - k * per)):
                out[k * per + j] = (v >> np.uint64(j * width)) & mask
        return
    for i in range(n):
        p = i * width
        k = p >> 6
        off = p & 63
        v = src[k] >> np.uint64(off)
        if off + width > 64:
            v |= src[k + 1] << np.uint64(64 - off)
        out[i] = v & mask
