"""The FFT convolution operator against direct convolution, and its adjoint identity."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal

from psfkit.operators import Convolver, convolve, fast_length_at_most, fast_shape, kernel_otf


@pytest.mark.parametrize("shape,kernel_shape", [((40, 50), (7, 9)), ((12, 20, 18), (5, 3, 7))])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_convolve_matches_direct_convolution(rng, shape, kernel_shape, mode):
    image = rng.random(shape)
    kernel = rng.random(kernel_shape)
    expected = scipy.signal.convolve(image, kernel, mode=mode, method="direct")
    result = Convolver(kernel, shape).apply(image.astype(np.float32), mode)
    assert result.dtype == np.float32
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("kernel_is_fixed", [True, False])
def test_adjoint_satisfies_the_inner_product_identity(rng, mode, kernel_is_fixed):
    image = rng.random((33, 41)).astype(np.float32)
    kernel = rng.random((5, 7)).astype(np.float32)
    fixed, other = (kernel, image) if kernel_is_fixed else (image, kernel)
    operator = Convolver(fixed, other.shape)
    forward = operator.apply(other, mode)
    residual = rng.random(forward.shape).astype(np.float32)
    lhs = np.vdot(forward.astype(np.float64), residual)
    rhs = np.vdot(other.astype(np.float64), operator.adjoint(residual, mode))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


def test_same_mode_keeps_a_centred_kernel_in_place(rng):
    image = np.zeros((31, 31), dtype=np.float32)
    image[15, 15] = 1.0
    kernel = rng.random((5, 5)).astype(np.float32)
    result = convolve(image, kernel, mode="same")
    np.testing.assert_allclose(result[13:18, 13:18], kernel, atol=1e-6)


def test_otf_of_a_centred_kernel_blurs_without_shifting(rng):
    image = rng.random((32, 48)).astype(np.float32)
    kernel = rng.random((5, 3)).astype(np.float32)
    otf = kernel_otf(kernel, image.shape)
    periodic = np.fft.irfftn(np.fft.rfftn(image) * otf, image.shape, axes=(0, 1))
    expected = ndi.convolve(image.astype(np.float64), kernel, mode="wrap")
    np.testing.assert_allclose(periodic, expected, rtol=1e-4, atol=1e-4)


def test_fast_shape_is_at_least_the_request_and_fast():
    shape = fast_shape((511, 1031, 97))
    assert all(f >= n for f, n in zip(shape, (511, 1031, 97), strict=True))
    for n in shape:
        remainder = n
        for prime in (2, 3, 5):
            while remainder % prime == 0:
                remainder //= prime
        assert remainder == 1


def test_fast_length_at_most_is_the_largest_fast_length_not_above_the_request():
    # 482 = 2 * 241, 498 = 2 * 3 * 83 and 7 are not 5-smooth; 480, 486, 512 and 6 are
    lengths = [fast_length_at_most(n) for n in (482, 498, 480, 512, 7, 1)]
    assert lengths == [480, 486, 480, 512, 6, 1]


def test_mismatched_dimensionality_is_rejected():
    with pytest.raises(ValueError, match="dimensionality"):
        Convolver(np.ones((3, 3)), (10, 10, 10))


# -- hardening (issue 17) -------------------------------------------------------------------


def test_convolve_refuses_non_finite_operands_by_name(rng):
    image, kernel = rng.random((16, 16)), rng.random((3, 3))
    with pytest.raises(ValueError, match="image contains NaN or infinite values"):
        convolve(np.where(image > 0.5, np.nan, image), kernel)
    with pytest.raises(ValueError, match="kernel contains NaN or infinite values"):
        convolve(image, np.full((3, 3), np.inf))
    with pytest.raises(ValueError, match="mode must be one of"):
        convolve(image, kernel, mode="circular")


@pytest.mark.parametrize("other_shape, error, match", [
    ((-1, 5), ValueError, "other_shape must be an int >= 1, got -1"),
    ((0, 5), ValueError, "other_shape must be an int >= 1, got 0"),
    ((4.5, 5), TypeError, "other_shape must be an int"),
])
def test_convolver_refuses_a_shape_that_is_not_positive_ints(rng, other_shape, error, match):
    with pytest.raises(error, match=match):
        Convolver(rng.random((3, 3)), other_shape)


def test_convolver_refuses_non_finite_operands(rng):
    with pytest.raises(ValueError, match="fixed contains NaN"):
        Convolver(np.full((3, 3), np.nan), (8, 8))
    operator = Convolver(rng.random((3, 3)), (8, 8))
    with pytest.raises(ValueError, match="other contains NaN"):
        operator.apply(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="residual contains NaN"):
        operator.adjoint(np.full((10, 10), np.inf))


def test_convolve_refuses_a_result_beyond_float32(rng):
    image = np.full((8, 8), 3e38, dtype=np.float32)
    with pytest.raises(ValueError, match="convolve computed a non-finite result"):
        convolve(image, np.ones((3, 3)))


def test_convolve_names_the_kernel_when_its_dimensionality_differs_from_the_image():
    with pytest.raises(ValueError, match=r"kernel must have as many axes as image \(2\)"):
        convolve(np.ones((8, 8)), np.ones(3))


def test_convolver_names_its_arguments_when_their_dimensionality_differs():
    with pytest.raises(ValueError, match="fixed and other_shape differ in dimensionality"):
        Convolver(np.ones(3), (8, 8))
