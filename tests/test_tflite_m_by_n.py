import numpy as np

from core.tflite.m_by_n import check_m_by_n


def two_of_four(rows: int, depth: int) -> np.ndarray:
    """Weights with exactly 2 nonzeros in every group of 4 along the last dimension."""
    weight = np.arange(1, rows * depth + 1, dtype=np.float32).reshape(rows, depth)
    weight.reshape(-1, 4)[:, 1::2] = 0
    return weight


def test_pattern_holds():
    check = check_m_by_n(two_of_four(3, 8).reshape(3, 1, 1, 8), 2, 4)
    assert check.applies and check.holds
    assert (check.groups, check.violations, check.max_nonzeros) == (6, 0, 2)


def test_one_extra_nonzero_is_one_violation():
    weight = two_of_four(3, 8)
    weight[1, 5] = 7.0  # group (1, 4..8) now holds 3 nonzeros
    check = check_m_by_n(weight, 2, 4)
    assert check.holds is False
    assert (check.violations, check.max_nonzeros) == (1, 3)


def test_groups_run_along_the_last_dimension_only():
    weight = two_of_four(4, 8).T.copy()  # the pattern now runs along the first dimension
    assert check_m_by_n(weight, 2, 4).holds is False


def test_depth_not_divisible_does_not_apply():
    check = check_m_by_n(np.ones((32, 3, 3, 1), np.float32), 2, 4)
    assert check.applies is False and check.holds is None
    assert check.as_dict()["holds"] is None
