import numpy as np
import pytest

from core.storage.gap_coding import decode_positions, encode_positions


@pytest.mark.parametrize("density", [0.001, 0.06, 0.5, 1.0])
def test_round_trip_random_positions(density):
    rng = np.random.default_rng(1)
    positions = np.flatnonzero(rng.random(200_000) < density)
    stream = encode_positions(positions)
    assert stream.dtype == np.uint8
    assert np.array_equal(decode_positions(stream), positions)


def test_long_gaps_use_escapes_and_short_ones_one_byte():
    positions = np.array([0, 1, 300, 300 + 255 * 3 + 1, 10**6])
    assert np.array_equal(decode_positions(encode_positions(positions)), positions)
    dense = np.arange(0, 1000, 10)
    assert len(encode_positions(dense)) == len(dense)


def test_empty_and_invalid():
    assert decode_positions(encode_positions(np.array([], np.int64))).size == 0
    with pytest.raises(ValueError):
        encode_positions(np.array([5, 5]))
