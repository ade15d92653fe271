"""Instance-adaptive unbiased code: per message, the construction expected nearest the bound for this ``x``.

Constructions at the budget ``rate`` (bits per coordinate):

0. sparse dithering (``sparse_dither``, ``rotate=False``) at the density whose
   ``sparse_rate`` is ``rate``: exact on sparse inputs, short on heavy tails;
1. the rotated ternary quantizer (``rotated_ternary``) at ``rate``, while
   ``rate <= 1.5``; its pattern sent by whichever of its two coders gives the
   shorter payload for this message: Golomb gaps (index 1) or rANS
   (``rotated_entropy``, index 2);
3. the unbiased spherical trellis code (``spherical``, ``code="trellis"``,
   blocks of 256, 4 gain bits) at ``b = 2`` bits per coordinate when
   ``rate >= 2``, at ``b = 1`` when ``1 <= rate < 2`` (index 1 when there is
   no rotated construction).

Steps (encoder):

1. ``M = max |x_i|`` and sparse dithering's ``lambda`` (``SparseDither.threshold``).
2. Score each construction ``c`` by its predicted error times the bound's
   factor at its predicted rate, ``e_c(x) (4^r_c - 1)``: sparse dithering's
   expected error and rate of ``x`` (``SparseDither.predict``, one pass over
   ``x``); for the rotated and trellis codes, whose error is the same for
   every input thanks to their Haar turn, ``shape_error(d) ||x||^2`` and
   their nominal rate (``rate + 64 / d`` for the rotated code, the exact
   payload length for the trellis). Pick the least score (ties: the lower index).
3. Send the construction's index in a fixed field of ``width`` bits (1 or 2,
   from the number of constructions at this ``rate``), then its payload in
   its own layout.

Why it is unbiased: the choice of step 2 is a deterministic function of ``x``
(never of a random draw), and every construction is unbiased for every fixed
input, so ``E[C(x)] = E[Q_c(x)(x)] = x``. The choice between the two coders
of the rotated pattern does depend on the draws, but both decode to the same
vector, so it changes the bits and never the decoded value. See docs/operators.md.

Bit layout (stream order): the index (``width`` bits), then the payload of
construction ``index`` exactly as that codec writes it. A payload of a wrong
length leaves the index as it was, so the named decoder sees a truncated or
extended payload of its own and refuses it.
"""
import numpy as np

from ..bitstream.words import split_field, with_field
from ..errors import DecodeError
from .base import Codec
from .rotated_entropy import RotatedEntropy
from .rotated_ternary import RotatedTernary
from .sparse_dither import SparseDither, density_for_rate, peak
from .spherical import Spherical


class Adaptive(Codec):
    """``adaptive(rate=0.25, m=1024, states=256)``: unbiased, 0.02 to 3 bits per coordinate.

    ``rate``: the budget in bits per coordinate (each construction is set for
    it; the measured rate depends on the construction chosen); ``m``: block of
    the rotated code's Haar turn; ``states``: states of the trellis code.
    """

    name = "adaptive"
    unbiased = True

    def __init__(self, rate=0.25, m=1024, states=256):
        if not 0.02 <= rate <= 3.0:
            raise ValueError(f"rate must be in [0.02, 3], got {rate=}")
        super().__init__(rate=rate, m=m, states=states)
        self.rate = float(rate)
        self.sparse = SparseDither(density=density_for_rate(self.rate), rotate=False)
        self.constructions = [self.sparse]
        self.rotated = None
        if self.rate <= 1.5:
            self.rotated = RotatedTernary(rate=self.rate, m=m)
            self.constructions += [self.rotated, RotatedEntropy(rate=self.rate, m=m)]
        self.trellis = None
        if self.rate >= 1.0:
            b = 2 if self.rate >= 2.0 else 1
            self.trellis = Spherical(code="trellis", m=256, bits=256 * b, gain_bits=4, states=states)
            self.constructions.append(self.trellis)
        self.width = int(len(self.constructions) - 1).bit_length()

    def omega(self, d):
        # the chosen construction's variance is at most its own omega
        return max(c.omega(d) for c in self.constructions)

    def choose(self, x):
        """``(index, M, lambda)``: the construction for ``x`` (steps 1 and 2; a function of ``x`` alone;
        the rotated code is named by index 1 whichever coder then sends it) and sparse dithering's fields."""
        top = peak(x)
        if not np.isfinite(top):
            raise ValueError("adaptive: input must be finite")
        if top == 0.0:
            return 0, top, 1.0
        d = x.shape[0]
        lam = self.sparse.threshold(x, top)
        err, rate, norm2 = self.sparse.predict(x, top, lam)
        scores = {0: err * (4.0 ** rate - 1.0)}
        if self.rotated is not None:
            scores[1] = self.rotated.shape_error(d) * norm2 * (4.0 ** (self.rate + 64 / d) - 1.0)
        if self.trellis is not None:
            rate = self.trellis.payload_bits(d) / d
            scores[len(self.constructions) - 1] = self.trellis.shape_error(d) * norm2 * (4.0 ** rate - 1.0)
        return min(scores, key=lambda c: (scores[c], c)), top, lam

    def _encode(self, x, key):
        c, top, lam = self.choose(x)
        if c == 0:
            data, nbits = self.sparse.encode_sparse(x, key, top, lam)
        elif self.constructions[c] is self.rotated:
            # one quantization, both coders of its pattern: the shorter is sent (the decoded vector is the same)
            q = self.rotated.quantize(x, key)
            payloads = [self.constructions[i]._payload(*q) for i in (1, 2)]
            c = 1 if payloads[0][1] <= payloads[1][1] else 2
            data, nbits = payloads[c - 1]
        else:
            data, nbits = self.trellis.encode(x, key)[:2]
        return with_field(c, self.width, data, nbits)

    def _decode(self, data, nbits, d, key):
        if nbits < self.width:
            raise DecodeError(f"adaptive: payload has {nbits} bits, fewer than its {self.width}-bit index")
        c, inner, n = split_field(data, nbits, self.width)
        if c >= len(self.constructions):
            raise DecodeError(f"adaptive: construction index {c} out of range")
        return self.constructions[c].decode(inner.view(np.uint8), n, d, key)
