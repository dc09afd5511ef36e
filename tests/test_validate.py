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


def test_positive_int_requires_an_int_and_names_the_argument():
    from psfkit._validate import positive_int, whole_number

    assert positive_int(np.int64(3), "iterations") == 3
    with pytest.raises(TypeError, match=r"iterations must be an int, got 5\.0 of type float"):
        positive_int(5.0, "iterations")
    with pytest.raises(TypeError, match="iterations must be an int, got True"):
        positive_int(True, "iterations")
    with pytest.raises(ValueError, match="iterations must be an int >= 1, got 0"):
        positive_int(0, "iterations")
    assert whole_number(0, "depth") == 0


def test_real_number_names_the_argument_and_its_range():
    from psfkit._validate import real_number

    assert real_number(np.float32(0.5), "gain", minimum=0.0) == 0.5
    with pytest.raises(ValueError, match="gain must be a finite number, got nan"):
        real_number(float("nan"), "gain")
    with pytest.raises(ValueError, match=r"gain must satisfy 0 <= gain <= 1, got 2"):
        real_number(2, "gain", minimum=0, maximum=1)
    with pytest.raises(TypeError, match="gain must be a number, got 'x' of type str"):
        real_number("x", "gain")
    with pytest.raises(ValueError, match="memory_limit must be positive, got 0"):
        real_number(0.0, "memory_limit", positive=True)


def test_the_result_check_names_the_result_and_the_fix():
    from psfkit._validate import check_finite_result

    check_finite_result(np.ones(3), "the result", "change x")
    with pytest.raises(ValueError, match="the result contains NaN or infinite values; change x"):
        check_finite_result(np.array([1.0, np.inf]), "the result", "change x")


def test_float_output_refuses_what_would_truncate_the_result():
    from psfkit._validate import float_output

    out = np.zeros((2, 3), ">f4")
    assert float_output(out, (2, 3)) is out
    with pytest.raises(TypeError, match="out must have dtype float32 or float64, got int16"):
        float_output(np.zeros((2, 3), np.int16), (2, 3))
    with pytest.raises(ValueError, match=r"out has shape \(2, 3\), expected \(3, 2\)"):
        float_output(out, (3, 2))


def test_a_psf_larger_than_the_image_is_refused_naming_both_shapes():
    from psfkit._validate import psf_fits

    psf_fits((9, 9), (9, 64))
    with pytest.raises(ValueError, match=r"psf \(9, 9\) is larger than the image's spatial "
                                         r"shape \(8, 64\)"):
        psf_fits((9, 9), (8, 64))


def test_available_memory_is_a_positive_byte_count():
    from psfkit._validate import available_memory

    assert available_memory() > 2**20
