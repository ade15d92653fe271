import numpy as np
import pytest

from psgrad.bitstream import padded_length, rotate, stream_key, unrotate
from psgrad.bitstream.rng import draw_uniform


@pytest.mark.parametrize("d,block", [(1, 8), (5, 8), (8, 8), (9, 8), (1000, 256), (4096, 1024)])
def test_rotation_is_orthogonal_and_exactly_invertible(d, block):
    x = np.random.default_rng(d).standard_normal(d).astype(np.float32)
    key = stream_key(1, 2, 3, "rot")
    y = rotate(x, key, block)
    assert y.shape == (padded_length(d, block),)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-5)
    np.testing.assert_allclose(unrotate(y, d, key, block), x, atol=1e-5 * np.abs(x).max())


def test_rotation_spreads_a_one_hot_vector():
    x = np.zeros(1024, np.float32)
    x[17] = 1.0
    y = rotate(x, stream_key(0, 0, 0, "rot"), 1024)
    np.testing.assert_allclose(np.abs(y), 1 / 32, rtol=1e-6)


def test_streams_differ_by_purpose_and_are_reproducible():
    a = stream_key(7, 1, 2, "dither")
    assert a == stream_key(7, 1, 2, "dither")
    assert a != stream_key(7, 1, 2, "rotation") and a != stream_key(7, 1, 3, "dither")
    u = np.array([draw_uniform(a, i) for i in range(20000)])
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
