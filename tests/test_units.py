"""resample_psf: an oversampled model, resampled, equals the model rendered on the coarse
grid; flux, centre and shape contract; the undersampling warning; argument errors.

resample_psf takes a PSF's values as the light each voxel collects, so the model PSFs it is
compared with across grids are rendered integrated over pixels (``pixel_integrated=True``;
a Gaussian sampled at pixel centres is a filter's kernel, not a voxel integral)."""

import warnings

import numpy as np
import pytest

from psfkit import UndersamplingWarning, make_psf, resample_psf, widefield_psf
from psfkit.units import resample_axis


def relative_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def oversampled_shape(coarse_shape, factor):
    """A fine grid a little larger than the coarse one (``factor * n + 1`` voxels), the way
    a bead stack is cropped with room to spare; it resamples back to ``coarse_shape``."""
    return tuple(factor * n + 1 for n in coarse_shape)


# -- the bar: 4× oversampled model -> coarse grid within 1 % ------------------------------


@pytest.mark.parametrize(("model", "coarse_params"), [
    ("gaussian", {"sigma": 1.1}),
    ("gaussian", {"sigma": 2.5}),
    ("airy", {"radius": 2.5}),
    ("airy", {"radius": 4.0}),
])
def test_4x_oversampled_2d_model_resampled_matches_the_coarse_rendering(model,
                                                                         coarse_params):
    fine_params = {name: 4 * value for name, value in coarse_params.items()}
    fine = make_psf(model, oversampled_shape((31, 31), 4), pixel_integrated=True,
                    **fine_params)
    resampled = resample_psf(fine, 0.25, 1.0)
    assert resampled.shape == (31, 31)
    coarse = make_psf(model, (31, 31), pixel_integrated=True, **coarse_params)
    assert relative_l2(resampled, coarse) < 0.01


def test_4x_oversampled_anisotropic_3d_gaussian_matches_the_coarse_rendering():
    sigma = np.array([0.6, 0.15, 0.12])  # µm
    fine_spacing, coarse_spacing = np.array([0.1, 0.025, 0.025]), np.array([0.4, 0.1, 0.1])
    fine = make_psf("gaussian", oversampled_shape((11, 21, 21), 4),
                    sigma=sigma / fine_spacing, pixel_integrated=True)
    resampled = resample_psf(fine, fine_spacing, coarse_spacing)
    truth = make_psf("gaussian", (11, 21, 21), sigma=sigma / coarse_spacing,
                     pixel_integrated=True)
    assert resampled.shape == (11, 21, 21)
    assert relative_l2(resampled, truth) < 0.01


def test_4x_oversampled_widefield_psf_matches_the_coarse_rendering():
    optics = {"numerical_aperture": 1.2, "wavelength": 0.52, "immersion_index": 1.33}
    fine_spacing, coarse_spacing = (0.0625, 0.025, 0.025), (0.25, 0.1, 0.1)
    fine = widefield_psf(oversampled_shape((21, 33, 33), 4), fine_spacing, **optics)
    resampled = resample_psf(fine, fine_spacing, coarse_spacing)
    truth = widefield_psf((21, 33, 33), coarse_spacing, **optics)
    assert resampled.shape == (21, 33, 33)
    assert relative_l2(resampled, truth) < 0.01


# -- the contract ---------------------------------------------------------------------------


def test_equal_spacings_return_the_psf_unchanged():
    psf = make_psf("moffat", (25, 25), alpha=3.0, beta=2.5)
    np.testing.assert_allclose(resample_psf(psf, (0.1, 0.1), 0.1), psf, rtol=1e-5,
                               atol=1e-9)


@pytest.mark.parametrize(("psf_spacing", "image_spacing", "expected_shape"), [
    (0.1, 0.37, (11, 11)),      # 41 * 0.1 / 0.37 = 11.08
    (0.3, 0.1, (123, 123)),     # upsampling: 41 * 3 = 123
    ((0.1, 0.2), (0.2, 0.1), (21, 83)),  # 82 is even: the larger odd neighbour
])
def test_output_is_odd_unit_sum_nonnegative_centred_and_keeps_the_extent(
        psf_spacing, image_spacing, expected_shape):
    psf = make_psf("gaussian", (41, 41), sigma=(6.0, 5.0))
    resampled = resample_psf(psf, psf_spacing, image_spacing)
    assert resampled.dtype == np.float32
    assert resampled.shape == expected_shape
    assert resampled.min() >= 0
    assert abs(float(resampled.sum()) - 1) < 1e-5
    grids = np.indices(resampled.shape).reshape(2, -1)
    np.testing.assert_allclose(grids @ resampled.ravel().astype(float),
                               np.array(expected_shape) // 2, atol=1e-4)


def test_non_integer_ratio_matches_the_model_rendered_on_the_target_grid():
    sigma = 0.5  # µm
    psf = make_psf("gaussian", (61, 61), sigma=sigma / 0.07, pixel_integrated=True)
    resampled = resample_psf(psf, 0.07, 0.17)  # 61 * 0.07 / 0.17 = 25.1 -> 25
    truth = make_psf("gaussian", (25, 25), sigma=sigma / 0.17, pixel_integrated=True)
    assert relative_l2(resampled, truth) < 0.01


@pytest.mark.parametrize(("model", "coarse_params", "tolerance"), [
    ("gaussian", {"sigma": 1.5}, 0.005),
    ("gaussian", {"sigma": 2.5}, 0.001),
    ("airy", {"radius": 3.0}, 0.02),
])
def test_upsampling_a_psf_matches_the_fine_rendering(model, coarse_params, tolerance):
    coarse = make_psf(model, (21, 21), pixel_integrated=True, **coarse_params)
    resampled = resample_psf(coarse, 1.0, 0.5)
    assert resampled.shape == (43, 43)  # 42 is even: the larger odd neighbour
    fine_params = {name: 2 * value for name, value in coarse_params.items()}
    fine = make_psf(model, (43, 43), pixel_integrated=True, **fine_params)
    assert relative_l2(resampled, fine) < tolerance


def test_one_axis_resampling_preserves_the_flux_exactly():
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1, size=(7, 15))
    resampled = resample_axis(values, 1, 0.3, 0.7, 7)  # 7 * 0.7 >= 15 * 0.3: all covered
    np.testing.assert_allclose(resampled.sum(axis=1), values.sum(axis=1), rtol=1e-12)


def test_negative_noise_in_the_psf_never_gives_negative_output():
    psf = make_psf("gaussian", (31, 31), sigma=4.0).astype(np.float64)
    psf[3, 5] = -1e-3
    psf[20, 27] = -2e-3
    resampled = resample_psf(psf, 0.1, 0.25)
    assert resampled.min() >= 0


# -- the undersampling warning --------------------------------------------------------------


def test_undersampled_target_grid_warns_and_names_the_axis():
    psf = make_psf("gaussian", (15, 41, 41), sigma=(1.5, 4.0, 4.0))  # FWHM 3.5, 9.4 px
    with pytest.warns(UndersamplingWarning, match=r"FWHM is 1\.2 image voxels on axis 0"):
        resample_psf(psf, (0.1, 0.1, 0.1), (0.3, 0.3, 0.3))


def test_well_sampled_target_grid_does_not_warn():
    psf = make_psf("gaussian", (15, 41, 41), sigma=(1.5, 4.0, 4.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resample_psf(psf, (0.1, 0.1, 0.1), (0.15, 0.3, 0.3))


def test_a_single_plane_psf_resamples_laterally_without_an_undersampling_warning():
    plane = make_psf("gaussian", (31, 31), sigma=4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resampled = resample_psf(plane[None], (0.3, 0.05, 0.05), (0.3, 0.1, 0.1))
    assert resampled.shape == (1, 15, 15)
    np.testing.assert_allclose(resampled[0], resample_psf(plane, 0.05, 0.1), atol=1e-7)


# -- argument errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("psf_spacing", "image_spacing", "match"), [
    (0.0, 0.1, "psf_spacing must be positive and finite"),
    (0.1, -0.2, "image_spacing must be positive and finite"),
    ((0.1, np.nan), 0.1, "psf_spacing must be positive and finite"),
    (0.1, (0.1, 0.1, 0.1), r"image_spacing must have one voxel size per axis of the PSF "
                           r"\(2\), got 3"),
    ("fine", 0.1, "psf_spacing must be a number or one number per axis"),
])
def test_bad_spacings_raise_errors_that_name_the_argument(psf_spacing, image_spacing,
                                                          match):
    psf = make_psf("gaussian", (15, 15), sigma=2.0)
    with pytest.raises(ValueError, match=match):
        resample_psf(psf, psf_spacing, image_spacing)


def test_a_psf_without_light_is_refused():
    with pytest.raises(ValueError, match="psf has no positive values"):
        resample_psf(-np.ones((5, 5)), 0.1, 0.2)


@pytest.mark.parametrize(("psf_spacing", "image_spacing"), [(1e300, 0.1), (1.0, 1e-30),
                                                            (1e300, 1e-300)])
def test_resample_psf_refuses_spacings_that_ask_for_a_huge_psf_by_name(psf_spacing,
                                                                       image_spacing):
    psf = make_psf("gaussian", (5, 5), sigma=1.0)
    with pytest.raises(ValueError, match=r"psf_spacing .* and image_spacing .* same unit"):
        resample_psf(psf, psf_spacing, image_spacing)
