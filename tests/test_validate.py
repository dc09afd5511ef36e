"""Input validation: the one place user input becomes a float32 array or a clear error."""

import numpy as np
import pytest

import psfkit
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


# ---------------------------------------------- one memory check for every refusal


@pytest.fixture
def quarter_gib(monkeypatch):
    """The machine seen as having 0.25 GiB available."""
    from psfkit import _validate

    monkeypatch.setattr(_validate, "available_memory", lambda: 2**28)


def test_the_memory_check_names_what_needs_how_much_and_the_fix(quarter_gib):
    from psfkit._validate import fits_in_memory

    fits_in_memory(2**28, "an array", "never said")  # exactly what is available fits
    with pytest.raises(ValueError, match=r"^an array needs about 0\.5 GiB, more than the "
                                         r"0\.2 GiB available; use less$"):
        fits_in_memory(2**29, "an array", "use less")
    with pytest.raises(ValueError, match=r"available; use 268435456 bytes$"):
        fits_in_memory(2**29, "an array", lambda available: f"use {available} bytes")


def test_deconvolve_too_large_for_memory_names_a_block_size_that_fits(quarter_gib):
    from psfkit import Deconvolver
    from psfkit.deconvolution import PEAK_IMAGE_COPIES

    image = np.broadcast_to(np.float32(1), (5000, 5000))  # no memory of its own
    psf = np.ones((3, 3), np.float32)
    side = int((0.5 * 2**28 / (4 * PEAK_IMAGE_COPIES)) ** 0.5)
    message = (rf"^deconvolving the image \(5000, 5000\) at once needs about 0\.9 GiB, "
               rf"more than the 0\.2 GiB available; deconvolve it in blocks with "
               rf"psfkit\.deconvolve_chunked\(image, psf, chunks=\({side}, {side}\)\)$")
    with pytest.raises(ValueError, match=message):
        psfkit.deconvolve(image, psf)
    with pytest.raises(ValueError, match=message):
        Deconvolver(psf)(image)


def test_a_chunked_result_too_large_for_memory_points_at_out(quarter_gib):
    import dask.array as da

    lazy = da.zeros((20_000, 20_000), dtype=np.float32, chunks=4096)  # 1.5 GiB, lazily
    with pytest.raises(ValueError, match=r"^the result \(20000, 20000\) needs about 1\.5 GiB, "
                                         r"more than the 0\.2 GiB available; pass out= an "
                                         r"array on disk \(numpy\.memmap, tifffile\.memmap, "
                                         r"zarr\) or compute=False"):
        psfkit.deconvolve_chunked(lazy, np.ones((3, 3), np.float32))
