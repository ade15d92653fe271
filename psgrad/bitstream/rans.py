"""A static-model rANS entropy coder with bitwise renormalisation, as numba kernels, with exact bit lengths.

Model: an alphabet ``0..A-1`` with integer frequencies ``freq[s] >= 0`` that
sum to ``M = 2^prec`` (``1 <= prec <= PREC_MAX``); ``cum[s]`` is the sum of the
frequencies below ``s`` and ``slot_sym[j]`` the symbol whose range
``[cum[s], cum[s] + freq[s])`` holds slot ``j``. Both sides build the model
from the same public numbers (``frequencies`` turns probabilities into one),
so a model costs no bits unless its caller sends parameters for it.

Coder (Duda, "Asymmetric numeral systems", 2009/2013): the state ``x`` lies in
``[2^R, 2^(R+1))``, ``R = STATE_BITS``. Coding symbol ``s`` (frequency ``f``,
``F = f 2^(R - prec)``) first shifts out the ``n`` low bits of ``x`` for which
``x >> n`` lies in ``[F, 2F)`` (exactly one ``n`` does), then sets
``x = ((x >> n) // f) 2^prec + (x >> n) mod f + cum[s]``, back in
``[2^R, 2^(R+1))``. The decoder inverts it: ``slot = x mod 2^prec``,
``s = slot_sym[slot]``, ``x = f (x >> prec) + slot - cum[s]``, which lies in
``[F, 2F)``, so ``n = R - floor(log2 x)`` tells how many bits it reads back.

Stream layout (bit order of ``bits``/``words``): symbols are coded last to
first from the initial state ``2^R``; the stream is the final state's low
``R`` bits (its top bit is always 1 and is not sent), then the bits shifted
out for symbol 0, for symbol 1, ... for symbol ``N-1``, each as one
``n``-bit field (``n <= prec``). Its length is ``R + sum_i n_i``, within
``R + 1`` bits of ``sum_i -log2(freq[s_i] / M)`` plus the coder's tiny excess
(``2^(R - prec)`` states per frequency unit; ``R - prec >= 15``).

The decoder reads ``N`` symbols and raises ``DecodeError`` when a field would
end past ``end``, or when the state after the last symbol is not the
initial ``2^R`` (a corrupted or mis-framed stream, detected with probability
about ``1 - 2^-R`` for random damage). It never reads past ``end``.
"""
import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros

from ..errors import DecodeError
from .words import get_checked, get_words, load_words, new_words, put, put_words

STATE_BITS = 31  # R: the state lies in [2^31, 2^32)
PREC_MAX = 16  # frequencies sum to at most 2^16, so R - prec >= 15
_ONE = np.uint64(1)


def frequencies(probs, prec):
    """Integer frequencies summing to ``2^prec`` for probabilities ``probs`` (non-negative, not all 0).

    Every symbol of positive probability gets at least 1; the rest of the
    total goes by largest remainder of ``p_s 2^prec`` (ties to the lower
    symbol), so the result is a deterministic function of ``probs``.
    Symbols of probability 0 get 0 and cannot be coded.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 1 or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ValueError("rans: probabilities must be a 1-d array of finite non-negative numbers, not all 0")
    if not 1 <= prec <= PREC_MAX:
        raise ValueError(f"rans: prec must be in [1, {PREC_MAX}], got {prec=}")
    total = 1 << prec
    live = p > 0
    if live.sum() > total:
        raise ValueError(f"rans: {int(live.sum())} symbols do not fit a total of 2^{prec}")
    scaled = p / p.sum() * (total - live.sum())  # the 1 each live symbol is owed, then the rest by share
    freq = np.floor(scaled).astype(np.int64) + live
    rest = scaled - np.floor(scaled)
    order = np.lexsort((np.arange(len(p)), -rest))  # largest remainder first, lower symbol on ties
    freq[order[: total - int(freq.sum())]] += 1
    return freq


def model(freq):
    """``(freq, cum, slot_sym, prec)`` of a frequency table summing to a power of two ``2^prec``."""
    freq = np.asarray(freq, np.int64)
    total = int(freq.sum())
    prec = total.bit_length() - 1
    if freq.ndim != 1 or (freq < 0).any() or total != 1 << prec or not 1 <= prec <= PREC_MAX:
        raise ValueError(f"rans: frequencies must be >= 0 and sum to 2^prec, prec in [1, {PREC_MAX}]")
    cum = np.concatenate(([0], np.cumsum(freq)[:-1])).astype(np.int64)
    slot_sym = np.repeat(np.arange(len(freq), dtype=np.int32), freq)
    return freq, cum, slot_sym, prec


@njit(cache=True, inline="always")
def _log2(v):
    """``floor(log2 v)`` of a non-zero uint64 (one ``lzcnt`` instruction)."""
    return 63 - np.int64(leading_zeros(np.uint64(v)))


@njit(cache=True, inline="always")
def _push(x, f, c, prec):
    """One coding step of a symbol of frequency ``f`` and cumulative frequency ``c``: ``(state, n)``, ``n`` the
    number of low bits of the old state shifted out."""
    f = np.uint64(f)
    n = STATE_BITS - (_log2(f) + STATE_BITS - prec)  # R - floor(log2 F)
    F = f << np.uint64(STATE_BITS - prec)
    if (x >> np.uint64(n)) < F:
        n -= 1
    y = x >> np.uint64(n)
    return ((y // f) << np.uint64(prec)) + y % f + np.uint64(c), n


@njit(cache=True)
def _check_symbols(symbols, freq):
    for i in range(symbols.shape[0]):
        s = symbols[i]
        if s < 0 or s >= freq.shape[0] or freq[s] <= 0:
            raise ValueError("rans: symbol outside the model or of frequency 0")


@njit(cache=True)
def encoded_bits(symbols, freq, cum, prec):
    """The exact length in bits of the stream of ``symbols`` (as ``encode`` writes it)."""
    _check_symbols(symbols, freq)
    x = _ONE << np.uint64(STATE_BITS)
    total = STATE_BITS
    for i in range(symbols.shape[0] - 1, -1, -1):
        s = symbols[i]
        x, n = _push(x, freq[s], cum[s], prec)
        total += n
    return total


@njit(cache=True)
def encode(symbols, freq, cum, prec, words, pos):
    """Append the rANS stream of ``symbols`` (each of frequency >= 1) to the zeroed word buffer ``words`` at
    bit ``pos``; return the new position. ``words`` must hold ``pos + encoded_bits(...)`` bits and its
    spare word.

    The shifted-out fields are produced last symbol first, so they are laid
    down from the top of a scratch buffer downwards, ending in stream order,
    and then copied behind ``pos``.
    """
    N = symbols.shape[0]
    R = STATE_BITS
    _check_symbols(symbols, freq)
    cap = R + N * prec
    scratch = np.zeros((cap + 63) // 64 + 1, np.uint64)
    top = cap
    x = _ONE << np.uint64(R)
    for i in range(N - 1, -1, -1):
        s = symbols[i]
        low = x
        x, n = _push(x, freq[s], cum[s], prec)
        top -= n
        put(scratch, top, low & ((_ONE << np.uint64(n)) - _ONE), n)
    top -= R
    put(scratch, top, x & ((_ONE << np.uint64(R)) - _ONE), R)
    nbits = cap - top
    get_words(scratch, top, nbits, scratch)  # moved down to bit 0 (each word is read before it is written)
    return put_words(words, pos, scratch, nbits)


@njit(cache=True)
def decode(words, end, pos, freq, cum, slot_sym, prec, out):
    """Fill ``out`` with ``len(out)`` symbols from the stream at ``pos``; return the position after it.

    ``DecodeError`` when a field would end past ``end`` or the final state is
    not the initial one. (No slot lies on a symbol of frequency 0: ``model``
    gives such symbols no slots.)
    """
    R = STATE_BITS
    v, pos = get_checked(words, end, pos, R)
    x = v | (_ONE << np.uint64(R))
    mask = (_ONE << np.uint64(prec)) - _ONE
    for i in range(out.shape[0]):
        slot = x & mask
        s = slot_sym[slot]
        f = np.uint64(freq[s])
        x = f * (x >> np.uint64(prec)) + slot - np.uint64(cum[s])  # in [F, 2F), F >= 2^(R - prec)
        n = R - _log2(x)
        v, pos = get_checked(words, end, pos, n)
        x = (x << np.uint64(n)) | v
        out[i] = s
    if x != _ONE << np.uint64(R):
        raise DecodeError("rans: final state is not the initial one (corrupted stream)")
    return pos


def encode_bytes(symbols, freq):
    """The stream of ``symbols`` under frequency table ``freq`` as ``(bytes, nbits)`` (tests and small uses)."""
    f, cum, _, prec = model(freq)
    symbols = np.ascontiguousarray(symbols, np.int64)
    nbits = encoded_bits(symbols, f, cum, prec)
    words = new_words(nbits)
    end = encode(symbols, f, cum, prec, words, 0)
    assert end == nbits
    return words.view(np.uint8)[: (nbits + 7) // 8].copy(), nbits


def decode_bytes(data, nbits, n, freq):
    """Decode ``n`` symbols from a whole payload written by ``encode_bytes``; ``DecodeError`` if it is not one."""
    f, cum, slot_sym, prec = model(freq)
    out = np.empty(n, np.int64)
    pos = decode(load_words(data, nbits), nbits, 0, f, cum, slot_sym, prec, out)
    if pos != nbits:
        raise DecodeError(f"rans: {nbits - pos} bits left after {n} symbols")
    return out
