import numpy as np

from core.tflite.digits import TEST_FRACTION, load_split


def test_split_is_decided_by_the_seed():
    first, again, other = load_split(0), load_split(0), load_split(1)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
    total = len(first.x_train) + len(first.x_test)
    assert abs(len(first.x_test) / total - TEST_FRACTION) < 0.01
    assert first.x_train.dtype == np.float32 and 0 <= first.x_train.min() and first.x_train.max() <= 1
    assert set(np.unique(first.y_test)) == set(range(10))


def test_upsampled_view_shows_the_same_digits():
    small, large = load_split(3), load_split(3, upscale=4, channels=3)
    assert large.x_test.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(large.y_test, small.y_test)
    np.testing.assert_array_equal(large.x_test[:, ::4, ::4, 0], small.x_test[..., 0])
    np.testing.assert_array_equal(large.x_test[..., 2], large.x_test[..., 0])
