"""Radial and axial PSF profiles against a Gaussian's known profile and FWHM."""

import numpy as np
import pytest

from psfkit import axial_profile, make_psf, radial_profile

GAUSSIAN_FWHM = 2 * np.sqrt(2 * np.log(2))


def _sampled_gaussian(shape, sigma, centre):
    """A Gaussian sampled at pixel centres (peak 1) with per-axis ``sigma``."""
    grids = np.indices(shape, dtype=float)
    exponent = sum((g - c) ** 2 / (2 * s**2) for g, c, s in zip(grids, centre, sigma,
                                                                   strict=True))
    return np.exp(-exponent)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5, 6.0])
def test_radial_profile_of_a_centred_gaussian_is_its_profile_and_fwhm(sigma):
    psf = _sampled_gaussian((51, 51), (sigma, sigma), (25, 25))
    profile = radial_profile(psf)
    np.testing.assert_allclose(profile.value, np.exp(-profile.distance**2 / (2 * sigma**2)),
                               atol=0.005)
    # the centroid of a symmetric core is its centre up to float64 rounding of the sums
    assert profile.distance[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(profile.distance) > 0)
    assert profile.distance[-1] <= 25.5  # rings inside the array only
    assert profile.fwhm == pytest.approx(GAUSSIAN_FWHM * sigma, rel=0.01)
    assert profile.half_maximum_edges == pytest.approx((-profile.fwhm / 2, profile.fwhm / 2))
    assert profile.half_maximum == pytest.approx(0.5)


def test_radial_profile_is_in_the_units_of_the_spacing():
    psf = make_psf("gaussian", (31, 31), sigma=3.0)
    in_pixels, in_microns = radial_profile(psf), radial_profile(psf, spacing=0.065)
    np.testing.assert_allclose(in_microns.distance, 0.065 * in_pixels.distance)
    np.testing.assert_allclose(in_microns.value, in_pixels.value)
    # make_psf integrates over pixels: the width of sigma² + 1/12
    assert in_microns.fwhm == pytest.approx(0.065 * GAUSSIAN_FWHM * np.sqrt(9 + 1 / 12),
                                            rel=0.005)


def test_radial_profile_finds_an_off_centre_source_and_takes_a_given_centre():
    psf = _sampled_gaussian((41, 41), (3.0, 3.0), (17, 23))
    found, given = radial_profile(psf), radial_profile(psf, centre=(17, 23))
    np.testing.assert_allclose(found.value, given.value, atol=1e-9)
    assert found.fwhm == pytest.approx(GAUSSIAN_FWHM * 3.0, rel=0.01)
    between = _sampled_gaussian((41, 41), (3.0, 3.0), (20.3, 19.6))
    assert radial_profile(between, centre=(20.3, 19.6)).fwhm == pytest.approx(
        GAUSSIAN_FWHM * 3.0, rel=0.02)


def test_3d_profiles_give_the_lateral_and_axial_fwhm_in_physical_units():
    centre = (20.4, 7.0, 7.0)
    psf = _sampled_gaussian((41, 15, 15), (4.0, 2.0, 2.0), centre)
    spacing = (0.3, 0.1, 0.1)
    axial = axial_profile(psf, centre=centre, spacing=spacing)
    assert axial.fwhm == pytest.approx(GAUSSIAN_FWHM * 4.0 * 0.3, rel=0.01)
    low, high = axial.half_maximum_edges
    assert low == pytest.approx(-high, rel=1e-6)
    np.testing.assert_allclose(axial.distance, (np.arange(41) - 20.4) * 0.3)
    lateral = radial_profile(psf, centre=centre, spacing=spacing)
    assert lateral.fwhm == pytest.approx(GAUSSIAN_FWHM * 2.0 * 0.1, rel=0.01)
    # the plane of the source, between planes 20 and 21
    in_focus = 0.6 * np.exp(-0.4**2 / 32) + 0.4 * np.exp(-0.6**2 / 32)
    assert lateral.value[0] == pytest.approx(in_focus, rel=1e-9)


def test_a_profile_that_never_falls_to_half_has_no_fwhm():
    profile = radial_profile(np.ones((9, 9)))
    assert np.isnan(profile.fwhm) and np.all(profile.value == 1)


def test_profiles_refuse_bad_input_by_name():
    with pytest.raises(ValueError, match="psf must be 3D"):
        axial_profile(np.ones((9, 9)))
    with pytest.raises(ValueError, match="no positive values"):
        radial_profile(np.zeros((9, 9)))
    with pytest.raises(ValueError, match=r"centre \[20.0, 4.0\] lies outside"):
        radial_profile(np.ones((9, 9)), centre=(20, 4))
    with pytest.raises(ValueError, match="spacing must be one number or 2"):
        radial_profile(np.ones((9, 9)), spacing=(1, 2, 3))
    with pytest.raises(ValueError, match="psf contains NaN"):
        radial_profile(np.full((9, 9), np.nan))


def test_profiles_do_not_modify_the_psf():
    psf = make_psf("gaussian", (9, 15, 15), sigma=(2.0, 1.5, 1.5))
    copy = psf.copy()
    radial_profile(psf)
    axial_profile(psf)
    np.testing.assert_array_equal(psf, copy)
