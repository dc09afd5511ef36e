"""Input validation: the one place user input becomes a float32 array or a clear error."""

import numpy as np
import pytest

from psfkit._validate import all_finite, as_float_array


def test_float64_values_beyond_float32_range_are_named_as_such():
    with pytest.raises(ValueError, match="beyond float32's range"):
        as_float_array(np.full((4, 4), 1e300))


def test_nan_and_inf_are_refused_with_the_argument_name():
    with pytest.raises(ValueError, match="psf contains NaN or infinite"):
        as_float_array(np.array([[1.0, np.nan], [0.0, 1.0]]), "psf")


def test_a_masked_array_is_refused_rather_than_its_mask_ignored():
    with pytest.raises(TypeError, match="masked array"):
        as_float_array(np.ma.masked_array(np.ones((4, 4)), mask=np.eye(4)))


def test_the_slabbed_finiteness_check_sees_a_nan_in_the_last_slab():
    image = np.zeros((64, 8, 8), dtype=np.float32)
    assert all_finite(image, slab_samples=100)
    image[-1, -1, -1] = np.inf
    assert not all_finite(image, slab_samples=100)
    assert not all_finite(image)


def test_valid_input_is_returned_without_a_copy():
    image = np.ones((8, 8), dtype=np.float32)
    assert as_float_array(image) is image
