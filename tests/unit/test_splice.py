import numpy as np
import pytest

import psgrad
from psgrad.bitstream.bits import new_buffer, write_bits
from psgrad.bitstream.splice import extract, splice


def _stream_bits(buf, n):
    return np.unpackbits(buf, bitorder="little")[:n]


@pytest.mark.parametrize("pos", [0, 1, 3, 7, 8, 9, 15, 16, 33])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 64, 65, 200])
def test_splice_places_bits_at_any_offset_and_extract_undoes_it(pos, n):
    rng = np.random.default_rng(pos * 1000 + n)
    src_bits = rng.integers(0, 2, n).astype(np.uint8)
    src = np.packbits(src_bits, bitorder="little")
    buf = new_buffer(pos + n)
    write_bits(buf, 0, np.uint64(0x5A5A5A5A5A5A5A5A) & np.uint64((1 << min(pos, 63)) - 1), min(pos, 63))
    head = _stream_bits(buf, pos).copy()
    assert splice(buf, pos, src, n) == pos + n
    bits = _stream_bits(buf, 8 * len(buf))
    assert np.array_equal(bits[:pos], head)
    assert np.array_equal(bits[pos:pos + n], src_bits)
    assert not bits[pos + n:].any()                     # padding stays zero
    out = extract(buf, pos + n, pos, n)
    assert len(out) == (n + 7) // 8 and np.array_equal(out, src)


def test_extract_masks_trailing_bits_and_refuses_to_read_past_the_end():
    buf = np.array([0xFF, 0xFF], np.uint8)
    assert extract(buf, 16, 3, 6).tolist() == [0b111111]
    with pytest.raises(psgrad.DecodeError):
        extract(buf, 12, 3, 10)
