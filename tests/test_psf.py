"""prepare_psf against frames made from a known PSF."""

import warnings

import numpy as np
import pytest

from _psf_contract import assert_psf_contract
from psfkit import (
    BackgroundWarning,
    PsfWarning,
    SaturationWarning,
    TruncationWarning,
    make_psf,
    prepare_psf,
)
from psfkit.align import centroid
from psfkit.metrics import kernel_error
from psfkit.operators import fourier_shift
from psfkit.optics import widefield_psf
from psfkit.point_source import fit_background
from psfkit.samples import bead_image, soft_disk
from psfkit.samples import point_source_frame as led_frame


@pytest.fixture(scope="module")
def led():
    truth = soft_disk(5.0)
    centre = np.array([38.3, 41.6])
    return led_frame(truth, centre), truth, centre


def test_led_frame_gives_the_true_kernel_within_ten_percent(led):
    image, truth, centre = led
    before = image.copy()
    psf, info = prepare_psf(image, return_info=True)
    assert_psf_contract(psf)
    assert kernel_error(psf, truth) < 0.10
    np.testing.assert_allclose(info.centre, centre, atol=0.05)
    assert info.hot_pixels == 3
    np.testing.assert_allclose(info.fwhm, 10.0, atol=1.0)  # a disk of radius 5
    assert 20 < info.snr < 200
    assert info.background == pytest.approx(120.0, abs=2.0)
    np.testing.assert_array_equal(image, before)  # input untouched


def test_hot_pixels_on_the_frame_edge_and_corner_are_found():
    truth = soft_disk(5.0)
    image = led_frame(truth, (14.4, 15.7), (29, 29), hot_pixels=((0, 5), (28, 28), (13, 0)), rng=4)
    psf, info = prepare_psf(image, return_info=True)
    assert info.hot_pixels == 3
    assert kernel_error(psf, truth) < 0.10


def test_by_hand_preparation_is_worse_than_prepare_psf(led):
    image, truth, _ = led
    peak = np.unravel_index(np.argmax(image), image.shape)  # a hot pixel, as it happens
    by_hand = image - np.median(image)
    assert kernel_error(prepare_psf(image), truth) < 0.5 * kernel_error(
        by_hand[tuple(slice(p - 9, p + 10) for p in peak)] / by_hand.sum(), truth)


@pytest.mark.parametrize("dtype", [np.uint16, np.float64, np.int32])
def test_integer_and_double_inputs_give_the_same_float32_psf(led, dtype):
    image, truth, _ = led
    psf = prepare_psf(np.round(image).clip(0).astype(dtype))
    assert_psf_contract(psf)
    assert kernel_error(psf, truth) < 0.10


def test_noise_free_source_is_centred_exactly_symmetric_or_not():
    symmetric = make_psf("gaussian", (21, 21), sigma=2.0)
    # a coma-like PSF: a core and a weaker lobe off to one side
    lobe = np.roll(make_psf("gaussian", (21, 21), sigma=(1.5, 3.0)), 4, axis=1)
    asymmetric = 0.7 * symmetric + 0.3 * lobe
    for truth in (symmetric, asymmetric / asymmetric.sum()):
        frame = led_frame(truth, (30.35, 29.8), (60, 60), flux=1e9, background=0,
                          read_noise=0, hot_pixels=(), rng=9)
        psf = prepare_psf(frame)
        assert_psf_contract(psf, centring=0.01)
        offset = centroid(truth) - np.array(truth.shape) // 2
        assert kernel_error(psf, fourier_shift(truth, -offset)) < 0.01


def test_requested_shape_is_returned_and_even_shapes_are_refused(led):
    image, _, _ = led
    assert prepare_psf(image, (31, 25)).shape == (31, 25)
    assert prepare_psf(image, 21).shape == (21, 21)
    with pytest.raises(ValueError, match="odd"):
        prepare_psf(image, (20, 21))


def test_centre_hint_picks_the_fainter_of_two_sources():
    truth = make_psf("gaussian", (15, 15), sigma=1.5)
    frame = (led_frame(truth, (20.2, 20.7), (64, 96), hot_pixels=(), rng=1)
             + led_frame(truth * 0.5, (40.6, 70.1), (64, 96), hot_pixels=(), background=0, rng=2))
    _, info = prepare_psf(frame, centre=(41, 69), return_info=True)
    np.testing.assert_allclose(info.centre, (40.6, 70.1), atol=0.08)
    with pytest.raises(ValueError, match="outside"):
        prepare_psf(frame, centre=(100, 5))


def test_saturated_source_warns(led):
    image, _, _ = led
    clipped = np.minimum(image, 700.0)
    with pytest.warns(SaturationWarning, match="saturated"):
        _, info = prepare_psf(clipped, return_info=True)
    assert info.saturated and info.warnings


def test_source_at_the_frame_edge_warns_truncated(led):
    image, _, _ = led
    with pytest.warns(TruncationWarning, match="frame edge"):
        psf = prepare_psf(image[:, 36:])
    assert_psf_contract(psf)


@pytest.mark.parametrize("shape", [9, (9, 9)])
def test_shape_smaller_than_the_source_warns_truncated_and_is_returned(led, shape):
    image, _, _ = led  # a disk of radius 5: wider than 9 pixels
    with pytest.warns(TruncationWarning, match=r"the requested shape \(9, 9\)"):
        psf, info = prepare_psf(image, shape, return_info=True)
    assert psf.shape == (9, 9)
    assert info.truncated and not info.saturated
    assert_psf_contract(psf)


def test_clean_frame_issues_no_warning(led):
    image, _, _ = led
    with warnings.catch_warnings():
        warnings.simplefilter("error", PsfWarning)
        prepare_psf(image)


def test_pure_noise_and_bad_input_are_refused():
    noise = np.random.default_rng(3).normal(100, 5, (64, 64))
    with pytest.raises(ValueError, match="no point source"):
        prepare_psf(noise)
    with pytest.raises(ValueError, match="NaN"):
        prepare_psf(np.full((9, 9), np.nan))
    with pytest.raises(ValueError, match="2D or 3D"):
        prepare_psf(np.ones(9))
    with pytest.raises(TypeError):
        prepare_psf(np.ones((9, 9), dtype=complex))
    with pytest.raises(ValueError, match="background"):
        prepare_psf(noise, background="sky")


@pytest.mark.parametrize("background", ["constant", 120.0])
def test_constant_or_known_background(led, background):
    image, truth, _ = led
    psf, info = prepare_psf(image, background=background, return_info=True)
    assert info.background == pytest.approx(120.0, abs=2.0)
    assert kernel_error(psf, truth) < 0.10


def test_3d_bead_with_a_sloped_background():
    truth = make_psf("gaussian", (15, 13, 13), sigma=(2.0, 1.3, 1.3))
    image, centres = bead_image(truth, (32, 40, 40), count=1, peak_snr=60, rng=4)
    z, _, x = np.indices(image.shape)
    image = image + 0.5 * z + 0.3 * x  # a gradient the plane fit removes
    psf, info = prepare_psf(image, spacing=(0.3, 0.1, 0.1), return_info=True)
    assert_psf_contract(psf)
    assert kernel_error(psf, truth) < 0.08
    np.testing.assert_allclose(info.centre, centres[0], atol=0.1)
    np.testing.assert_allclose(info.fwhm_physical / info.fwhm, (0.3, 0.1, 0.1))
    _, unknown = prepare_psf(image, return_info=True)
    assert unknown.fwhm_physical is None  # no spacing given: no physical size
    np.testing.assert_allclose(unknown.fwhm, info.fwhm)


# -- hardening (issue 17) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bead_frame():
    frame, _ = bead_image(make_psf("gaussian", (15, 15), sigma=2.0), (48, 48), count=1)
    return frame


@pytest.mark.parametrize("factor", [1e-30, 1e30, 2.0**100])
def test_prepare_psf_is_scale_invariant_at_extreme_magnitudes(bead_frame, factor):
    psf, report = prepare_psf(bead_frame, return_info=True)
    scaled, scaled_report = prepare_psf(bead_frame * np.float32(factor), return_info=True)
    assert scaled.shape == psf.shape
    assert np.max(np.abs(scaled - psf)) < 1e-5 * psf.max()
    assert scaled_report.noise_sigma == pytest.approx(report.noise_sigma * factor, rel=1e-5)
    assert scaled_report.flux == pytest.approx(report.flux * factor, rel=1e-5)
    assert scaled_report.snr == pytest.approx(report.snr, rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"centre": (np.nan, 20.0)}, "centre must be finite"),
    ({"background": np.nan}, "background must be a finite number"),
    ({"background": np.inf}, "background must be a finite number"),
    ({"saturation": np.nan}, "saturation must be a finite number"),
])
def test_non_finite_options_are_refused_by_name(bead_frame, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prepare_psf(bead_frame, **kwargs)


def test_a_frame_without_a_source_names_the_image():
    with pytest.raises(ValueError, match="no point source found in image"):
        prepare_psf(np.zeros((32, 32)))


def test_a_shape_that_is_not_an_int_is_refused_by_name(bead_frame):
    with pytest.raises(TypeError, match="shape must be an int, got nan"):
        prepare_psf(bead_frame, np.nan)


def test_a_background_that_overflows_when_subtracted_is_refused_by_name(bead_frame):
    with pytest.raises(ValueError, match="background 1e\\+300 lies so far"):
        prepare_psf(bead_frame, background=1e300)


@pytest.mark.parametrize("spacing, error, match", [
    ((1.0, 2.0, 3.0), ValueError, r"spacing must be one number or 2 \(one per axis\)"),
    ((1.0, np.nan), ValueError, "spacing must be a finite number"),
    (("a", 1.0), TypeError, "spacing must be a number"),
])
def test_a_spacing_of_the_wrong_length_or_kind_is_refused_by_name(bead_frame, spacing, error,
                                                                   match):
    # a wrong length used to fail in np.broadcast_to with no argument named
    with pytest.raises(error, match=match):
        prepare_psf(bead_frame, spacing=spacing)


@pytest.mark.parametrize("centre", ["x", [None, "y"], {"a": 1}])
def test_prepare_psf_names_a_centre_that_is_not_numbers(centre):
    image, _ = bead_image(make_psf("gaussian", (15, 15), sigma=2.0), (48, 48), count=1)
    with pytest.raises(TypeError, match="centre must be 2 numbers"):
        prepare_psf(image, centre=centre)


def test_prepare_psf_of_a_noise_free_bool_image_gives_a_named_error_not_a_nan_warning():
    image = np.array([[[1, 0, 0], [0, 1, 1], [1, 1, 1]],
                      [[1, 1, 0], [1, 0, 1], [0, 1, 1]],
                      [[0, 0, 0], [0, 1, 1], [1, 0, 1]]], dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)  # saturated at 1, by design of a bool
        with pytest.raises(ValueError, match="the source has no positive flux"):
            prepare_psf(image, background=-1.0)


# -- background in crops a defocused source fills (issue 14) --------------------------------


def _widefield_bead(shape, peak, background=20.0, rng=0):
    """A scalar-model widefield bead stack (NA 1.2 water, λ 0.52 µm) of ``shape`` voxels of
    0.1 × 0.065 × 0.065 µm, ``peak`` photons at its brightest voxel on ``background``
    photons, Poisson-sampled: its defocused planes reach every side of the crop."""
    truth = widefield_psf(shape, (0.1, 0.065, 0.065), numerical_aperture=1.2,
                          wavelength=0.52, immersion_index=1.33, theory="scalar")
    photons = truth * (peak / truth.max()) + background
    return np.random.default_rng(rng).poisson(photons).astype(np.float32), truth


def test_tight_3d_widefield_crop_keeps_the_defocused_light_out_of_the_background():
    # 55 of the 20 photons per voxel were taken for background before the level was
    # settled (PSF 0.15 from the truth); a background region exists at the focal corners
    stack, truth = _widefield_bead((61, 49, 49), 20000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # defocused light leaves any crop
        warnings.simplefilter("error", BackgroundWarning)
        psf, info = prepare_psf(stack, shape=truth.shape, return_info=True)
        known = prepare_psf(stack, shape=truth.shape, background=20.0)
    assert info.background == pytest.approx(20.0, abs=0.25 * info.noise_sigma)
    assert not info.background_uncertain
    assert kernel_error(psf, truth) < 0.05
    assert kernel_error(psf, truth) < 1.5 * kernel_error(known, truth)


def test_3d_widefield_bead_that_fills_its_crop_warns_and_fits_its_darkest_part():
    # no voxel of this crop is pure background: the median start settled at 80 photons
    stack, truth = _widefield_bead((41, 33, 33), 20000.0)
    with warnings.catch_warnings(), pytest.warns(BackgroundWarning, match="fills the frame"):
        warnings.simplefilter("ignore", TruncationWarning)
        psf, info = prepare_psf(stack, shape=truth.shape, return_info=True)
    assert info.background_uncertain
    assert any("pure background" in message for message in info.warnings)
    assert 20.0 - info.noise_sigma < info.background < 20.0 + 0.5 * info.noise_sigma
    assert kernel_error(psf, truth) < 0.06


@pytest.mark.parametrize(("size", "fills"), [(15, True), (41, False)])
def test_defocus_disk_in_a_tight_and_a_loose_crop(size, fills):
    # a disk of radius 6 (8.5 px with its blur) in a 15 px crop leaves only the corners
    truth = soft_disk(6.0)
    whole = led_frame(truth, (40.3, 39.8), (81, 81), hot_pixels=(), rng=0)
    half = size // 2
    frame = whole[40 - half:41 + half, 40 - half:41 + half]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        psf, info = prepare_psf(frame, shape=truth.shape, return_info=True)
    warned = any(issubclass(w.category, BackgroundWarning) for w in caught)
    assert warned == info.background_uncertain == fills
    # before: 379 (3 noise sigmas up) and a PSF 0.34 from the truth in the tight crop
    assert info.background == pytest.approx(120.0, abs=0.5 * info.noise_sigma)
    assert kernel_error(psf, truth) < 0.06


def test_auto_background_tilts_only_along_a_significant_slope():
    rng = np.random.default_rng(5)
    flat = rng.normal(50.0, 2.0, (24, 32, 32)).astype(np.float32)
    level, _, filled = fit_background(flat, 2.0, "auto")
    assert np.ptp(level) == 0.0 and not filled  # noise alone: a constant
    assert np.ptp(fit_background(flat, 2.0, "plane")[0]) > 0.0  # "plane" always tilts
    z = np.arange(24, dtype=np.float32)[:, None, None]
    sloped = flat + 0.2 * z  # 0.1 sigma per plane along z only
    level, _, _ = fit_background(sloped, 2.0, "auto")
    np.testing.assert_allclose(np.ptp(level, axis=0), 0.2 * 23, rtol=0.1)
    assert np.ptp(level, axis=2).max() == 0.0  # no tilt along x
    assert np.ptp(level, axis=1).max() == 0.0  # nor y
