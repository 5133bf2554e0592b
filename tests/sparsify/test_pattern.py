import numpy as np
import pytest

from sparsekit.sparsify.pattern import group_stats, magnitude_mask, retained_magnitude


def test_linear_groups_along_input_axis():
    w = np.array([[1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0]])  # [N=1, K=8]: 2 groups, each 2 zeros
    assert group_stats(w, 1).is_2to4
    assert not group_stats(w.T, 1).is_2to4  # [8, 1]: axis 1 has length 1, no groups


def test_one_bad_group_fails_the_tensor():
    w = np.zeros((4, 8))
    w[:, ::2] = 1.0
    assert group_stats(w, 1).is_2to4
    w[3, 1] = 5.0  # group (row 3, cols 0..3) now holds a single zero
    stats = group_stats(w, 1)
    assert not stats.is_2to4
    assert stats.groups == 8 and stats.conforming == 7


def test_conv_groups_per_kernel_position():
    """TensorRT groups 4 input channels at each (r, s): zeros spread across R*S do not count."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 8, 3, 3))
    mask = magnitude_mask(w, axis=1)
    assert group_stats(w * mask, 1).is_2to4
    # The same number of zeros but grouped along the flattened C*R*S axis is not TensorRT's layout.
    flat = w.reshape(8, -1)
    flat_masked = (flat * magnitude_mask(flat, 1)).reshape(w.shape)
    assert np.count_nonzero(flat_masked == 0) == np.count_nonzero(w * mask == 0)
    assert not group_stats(flat_masked, 1).is_2to4


def test_magnitude_mask_keeps_two_largest():
    w = np.array([[0.1, -5.0, 0.2, 3.0]])
    assert magnitude_mask(w, 1).tolist() == [[False, True, False, True]]
    assert retained_magnitude(w, magnitude_mask(w, 1)) == pytest.approx(8.0 / 8.3)


def test_axis_not_multiple_of_four():
    assert group_stats(np.zeros((4, 6)), 1).groups == 0
    assert not group_stats(np.zeros((4, 6)), 1).is_2to4
    with pytest.raises(ValueError):
        magnitude_mask(np.ones((4, 6)), 1)


def test_int8_and_fp16_weights():
    w = np.array([[0, 3, 0, -2]], dtype=np.int8)
    assert group_stats(w, 1).is_2to4
    assert group_stats(w.astype(np.float16), 1).is_2to4
