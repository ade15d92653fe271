"""rotated_entropy: the quantizer of rotated_ternary, its pattern rANS-coded; layout, length and equality checks."""
import numpy as np

import psgrad
from psgrad.bitstream import rans
from psgrad.bitstream.hadamard import padded_length
from psgrad.codecs.rotated_entropy import SIGN
from psgrad.codecs.rotated_ternary import dense_turn, householder_haar


def test_it_decodes_to_the_vector_rotated_ternary_decodes_for_the_same_key():
    rng = np.random.default_rng(0)
    for d, params in [(3000, dict(rate=0.2, m=256)), (20000, dict(rate=0.1)), (7, dict(rate=0.5, m=8, norm_bits=2))]:
        x = rng.standard_t(3, d).astype(np.float32)
        key = psgrad.Key(seed=2, round=d)
        a, b = psgrad.codec("rotated_ternary", **params), psgrad.codec("rotated_entropy", **params)
        ea, eb = a.encode(x, key), b.encode(x, key)
        assert np.array_equal(a.decode(ea.data, ea.nbits, d, key), b.decode(eb.data, eb.nbits, d, key))


def test_the_payload_is_the_norms_then_the_rans_stream_of_the_live_blocks_symbols():
    d, m = 5000, 256
    x = np.zeros(d, np.float32)
    x[:1000] = np.random.default_rng(1).standard_normal(1000)  # rotation blocks of 4096: the second is zero
    c = psgrad.codec("rotated_entropy", rate=0.25, m=m)
    key = psgrad.Key(seed=4)
    enc = c.encode(x, key)
    n = padded_length(d, c.rotation_block)
    B = n // m
    y = psgrad.codecs.rotated_ternary.rotate(x, np.uint64(key.stream("rotated_ternary.rotation")), c.rotation_block)
    live = np.flatnonzero(np.abs(y.reshape(B, m)).sum(1) > 0)
    assert len(live) == 16  # the zero rotation block sends no symbols
    freq, cum, _, prec = c._model(m)
    # the symbols are those of the decoded vector: U turns it back into a sign pattern times the block scale
    U = dense_turn(*householder_haar(np.uint64(key.stream("rotated_ternary.haar")), m), m)[0]
    z = c.decode(enc.data, enc.nbits, d, key)
    zr = psgrad.codecs.rotated_ternary.rotate(z, np.uint64(key.stream("rotated_ternary.rotation")), c.rotation_block)
    turned = zr.reshape(B, m)[live].astype(np.float64) @ U.astype(np.float64).T  # y_b = v_b U, so v_b = y_b U^T
    scale = np.abs(turned).max(1, keepdims=True)
    symbols = np.where(np.abs(turned) > scale / 2, np.where(turned > 0, 1, 2), 0).astype(np.int8)
    assert np.allclose(SIGN[symbols] * scale, turned, atol=1e-4 * scale.max())
    assert enc.nbits == 64 + B * c.norm_bits + rans.encoded_bits(symbols.ravel(), freq, cum, prec)
    # at its entropy: within the 31-bit state and 1 % of the information content under the model
    info = -np.log2(freq[symbols.ravel()] / 2 ** prec).sum()
    assert info <= enc.nbits - 64 - B * c.norm_bits <= info * 1.01 + 32
