"""Rotated entropy-coded code: the Haar-turned ternary grid of ``rotated_ternary``, its symbols rANS-coded.

The quantizer, the scale and the unbiasedness argument are those of
``rotated_ternary`` (randomized Hadamard rotation, one Haar turn ``U`` per
message, keep ``|z_bt| > T ||z_b|| / sqrt(m')`` as its sign, block norms
stochastically rounded on a ``norm_bits`` grid, decode ``U^T (kappa nhat_b
Q_b)``). What differs is how the pattern is sent: every coordinate of every
block whose decoded norm is not zero is one symbol (0 = dropped, 1 = kept
positive, 2 = kept negative), coded with ``psgrad.bitstream.rans`` under the
model ``(1 - P, P/2, P/2)``, ``P`` the exact keep probability for a block
uniform on its sphere (the Haar turn makes every block so). The model is a
closed-form function of ``(m', rate)``, so it costs no bits. A block whose
decoded norm is zero (an all-zero block, or a norm rounded to a zero ``lo``)
decodes to zero whatever its symbols, so they are not sent.

Bit layout (stream order): ``lo`` and ``hi`` float32 (64 bits), ``B`` norm
levels of ``norm_bits`` bits, then the rANS stream of the symbols of the
live blocks in block order (31 bits of final state, then the renormalisation
fields; see ``rans``). Its length is determined by ``d`` and the fields: the
decoder refuses a payload with bits left over, a truncated one and one
whose rANS stream does not end in the coder's initial state.
"""
import numpy as np
from numba import njit

from ..bitstream import rans
from ..bitstream.words import new_words
from ..errors import DecodeError
from .rotated_ternary import GROUP, RotatedTernary, get_norms, put_norms, turn_blocks

PREC = 16  # frequency precision of the model: P/2 >= 2^-16 down to the least rate the codec allows
SIGN = np.array([0.0, 1.0, -1.0], np.float32)  # the value of each symbol, before the block's scale


@njit(cache=True)
def _turn_back(V, turn, Y):
    """``Y_b = U^T V_b`` for every block, ``GROUP`` blocks at a time (``turn_blocks``)."""
    for b0 in range(0, V.shape[0], GROUP):
        b1 = min(V.shape[0], b0 + GROUP)
        turn_blocks(V[b0:b1], turn, True, Y[b0:b1])


class RotatedEntropy(RotatedTernary):
    """``rotated_entropy(rate=0.1, m=1024, norm_bits=3, rotation_block=4096)``: unbiased, 0.02 to 1 bit.

    Parameters as for ``rotated_ternary``; the same threshold for the same
    ``rate``, the pattern sent at its entropy (rANS) instead of as Golomb gaps.
    """

    name = "rotated_entropy"
    least_trailer = rans.STATE_BITS

    def _model(self, mb):
        P = self._shape(mb)[1]
        return rans.model(rans.frequencies([1.0 - P, P / 2, P / 2], PREC))

    def _payload(self, norms, lo, hi, idx, neg, mb, norm_key):
        B = norms.shape[0]
        freq, cum, _, prec = self._model(mb)
        K = idx.shape[0]
        # each symbol shifts out at most prec - floor(log2 f) bits (a symbol of frequency 0 never occurs)
        cost = prec - np.floor(np.log2(np.maximum(freq[:2], 1))).astype(np.int64)
        words = new_words(64 + B * self.norm_bits + rans.STATE_BITS + (B * mb - K) * cost[0] + K * cost[1])
        pos = put_norms(words, norms, lo, hi, self.norm_bits, norm_key)
        live = self._live(words, pos, B)  # read back as the decoder reads it
        symbols = np.zeros((B, mb), np.int8)
        symbols.ravel()[idx] = 1 + neg
        pos = rans.encode(symbols[live].ravel(), freq, cum, prec, words, pos)
        return words.view(np.uint8), pos

    def _live(self, words, end, B):
        """The blocks whose decoded norm is not zero, from the norm fields in ``words``."""
        return np.flatnonzero(get_norms(words, end, B, self.norm_bits, 1.0)[0] != 0)

    def _read(self, words, nbits, B, mb, kappa, turn, y):
        vals, pos = get_norms(words, nbits, B, self.norm_bits, kappa)
        live = np.flatnonzero(vals != 0)
        freq, cum, slot_sym, prec = self._model(mb)
        symbols = np.empty((len(live), mb), np.int8)
        pos = rans.decode(words, nbits, pos, freq, cum, slot_sym, prec, symbols.ravel())
        if pos != nbits:
            raise DecodeError(f"{self.name}: {nbits - pos} bits left after the last symbol")
        V = np.zeros((B, mb), np.float32)
        V[live] = SIGN[symbols] * vals[live, None]
        _turn_back(V, turn, y.reshape((B, mb)))
