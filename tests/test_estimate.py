"""estimate_kernel against camera-like pairs with a known kernel, shift, gain and offset."""

import numpy as np
import pytest

from psfkit import KernelEstimate, estimate_kernel, make_psf
from psfkit.metrics import kernel_error
from psfkit.samples import blurred_pair


@pytest.fixture(scope="module")
def gaussian_pair():
    kernel = make_psf("gaussian", (15, 15), sigma=2.0)
    return blurred_pair(kernel, (128, 128), noise=0.01, gain=0.8, offset=0.1,
                        shift=(0.6, -1.3), rng=2)


@pytest.fixture(scope="module")
def gaussian_result(gaussian_pair):
    return estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred)


def test_default_recovers_kernel_shift_gain_and_offset(gaussian_pair, gaussian_result):
    result = gaussian_result
    assert isinstance(result, KernelEstimate)
    assert all(n % 2 == 1 for n in result.shape) and result.kernel.shape == result.shape
    assert result.kernel.dtype == np.float32
    assert result.kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.kernel.min() >= 0
    assert kernel_error(result.kernel, gaussian_pair.kernel) < 0.12
    np.testing.assert_allclose(result.shift, gaussian_pair.shift, atol=0.1)
    assert result.gain == pytest.approx(0.8, rel=0.02)
    assert result.kernel_sum == pytest.approx(result.gain)
    assert result.offset == pytest.approx(0.1, abs=0.02)
    assert result.method == "lsq" and result.regularization > 0


def test_residual_is_at_the_noise_level_and_reblurred_matches(gaussian_pair, gaussian_result):
    result = gaussian_result
    assert result.residual.shape == result.reblurred.shape == gaussian_pair.blurred.shape
    assert result.noise_sigma == pytest.approx(gaussian_pair.noise_sigma, rel=0.15)
    assert 0.85 < result.residual_ratio < 1.2
    inside = result.residual[result.valid]
    np.testing.assert_allclose(result.reblurred[result.valid] + inside,
                               gaussian_pair.blurred[result.valid], atol=1e-5)
    assert float(np.std(inside)) < 1.2 * gaussian_pair.noise_sigma


def test_kernel_is_centred_on_its_centre_pixel(gaussian_result):
    kernel = gaussian_result.kernel.astype(np.float64)
    grids = np.indices(kernel.shape)
    centroid = [float((g * kernel).sum()) for g in grids]
    np.testing.assert_allclose(centroid, np.array(kernel.shape) // 2, atol=0.05)


@pytest.mark.parametrize("model, params", [("disk", {"radius": 3.5}),
                                           ("motion", {"length": 9.0, "angle": 0.7})])
@pytest.mark.parametrize("scene, shape", [("stars", 13), ("natural", None)])
def test_sharp_edged_kernels(model, params, scene, shape):
    kernel = make_psf(model, (13, 13), **params)
    pair = blurred_pair(kernel, (128, 128), scene_kind=scene, noise=0.005,
                        shift=(-0.4, 0.9), rng=4)
    result = estimate_kernel(pair.sharp, pair.blurred, shape)
    assert kernel_error(result.kernel, kernel) < 0.12
    np.testing.assert_allclose(result.shift, pair.shift, atol=0.1)


def test_star_field_support_is_trimmed_above_the_noise_spikes():
    # on a star field the survey fit leaves isolated noise spikes all over its support;
    # the trimmed support must follow the elongated core, not the spikes
    kernel = make_psf("elliptical_gaussian", (25, 25), sigma_y=3.0, sigma_x=1.3, angle=0.5)
    pair = blurred_pair(kernel, (128, 128), scene_kind="stars", noise=0.02,
                        shift=(0.7, -0.4), rng=11)
    result = estimate_kernel(pair.sharp, pair.blurred)
    assert kernel_error(result.kernel, kernel) < 0.065
    assert result.shape[0] <= 21 and result.shape[1] <= 17
    np.testing.assert_allclose(result.shift, pair.shift, atol=0.1)


@pytest.mark.parametrize("scene, sparse", [("stars", True), ("natural", False),
                                           ("blobs", False)])
def test_sparse_scenes_are_told_apart(scene, sparse):
    from psfkit._kernel_support import _is_sparse
    from psfkit.samples import scene as make_scene

    assert _is_sparse(make_scene(scene, (128, 128))) is sparse


def test_nonnegativity_leaves_no_mass_surplus_on_a_sparse_jpeg_pair():
    # on a star field with JPEG errors the constrained fit keeps the positive half of the
    # noise all over the support; normalising that surplus away shrank the streak (0.150)
    kernel = make_psf("motion", (17, 17), length=11.0, angle=0.6)
    pair = blurred_pair(kernel, (160, 160), scene_kind="stars", noise=0.002, jpeg_quality=90,
                        shift=(0.4, -0.7), gain=1.1, offset=0.05, rng=2)
    result = estimate_kernel(pair.sharp, pair.blurred)
    assert kernel_error(result.kernel, kernel) < 0.08
    np.testing.assert_allclose(result.shift, pair.shift, atol=0.1)


def test_support_grows_to_keep_faint_rings_on_an_extended_scene():
    # the pilot's noise floor (JPEG) cut the Airy rings to a 13×13 support (error 0.076)
    kernel = make_psf("airy", (21, 21), radius=3.0)
    pair = blurred_pair(kernel, (128, 128), scene_kind="natural", noise=0.002,
                        jpeg_quality=90, shift=(0.4, -0.7), gain=1.1, offset=0.05, rng=2)
    result = estimate_kernel(pair.sharp, pair.blurred)
    assert min(result.shape) >= 19
    assert kernel_error(result.kernel, kernel) < 0.065
    np.testing.assert_allclose(result.shift, pair.shift, atol=0.1)


def test_least_squares_beats_the_fourier_method_on_edges():
    kernel = make_psf("airy", (17, 17), radius=3.0)
    pair = blurred_pair(kernel, (128, 128), noise=0.005, rng=5)
    exact = estimate_kernel(pair.sharp, pair.blurred, 17, method="lsq")
    fourier = estimate_kernel(pair.sharp, pair.blurred, 17, method="fourier")
    assert fourier.method == "fourier" and fourier.iterations == 0
    assert kernel_error(fourier.kernel, kernel) < 0.35
    assert kernel_error(exact.kernel, kernel) < 0.5 * kernel_error(fourier.kernel, kernel)


@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_any_dtype_and_inputs_are_not_modified(dtype):
    kernel = make_psf("gaussian", (11, 11), sigma=1.5)
    pair = blurred_pair(kernel, (96, 96), noise=0.002, rng=6)
    scale = 4000 if dtype == np.uint16 else 1
    sharp = (np.round(pair.sharp * scale) if scale > 1 else pair.sharp).astype(dtype)
    blurred = (np.round(pair.blurred * scale) if scale > 1 else pair.blurred).astype(dtype)
    copies = sharp.copy(), blurred.copy()
    result = estimate_kernel(sharp, blurred, 11)
    np.testing.assert_array_equal(sharp, copies[0])
    np.testing.assert_array_equal(blurred, copies[1])
    assert kernel_error(result.kernel, kernel) < 0.1


def test_3d_volume():
    kernel = make_psf("gaussian", (5, 7, 7), sigma=(1.0, 1.4, 1.4))
    pair = blurred_pair(kernel, (32, 48, 48), scene_kind="blobs", noise=0.005,
                        shift=(0.3, -0.5, 0.2), rng=7)
    result = estimate_kernel(pair.sharp, pair.blurred, (7, 9, 9))
    assert result.kernel.ndim == 3 and all(n % 2 == 1 for n in result.shape)
    assert kernel_error(result.kernel, kernel) < 0.15
    np.testing.assert_allclose(result.shift, pair.shift, atol=0.1)


def test_rgb_gives_one_kernel_per_channel():
    sigmas = (1.0, 1.6, 2.2)
    channels = [blurred_pair(make_psf("gaussian", (13, 13), sigma=s), (96, 96), noise=0.003,
                             rng=8) for s in sigmas]
    sharp = np.stack([c.sharp for c in channels], axis=-1)
    blurred = np.stack([c.blurred for c in channels], axis=-1)
    result = estimate_kernel(sharp, blurred, 13)
    assert result.kernel.shape == (13, 13, 3) and len(result.channels) == 3
    assert result.residual.shape == blurred.shape
    for index, sigma in enumerate(sigmas):
        truth = make_psf("gaussian", (13, 13), sigma=sigma)
        assert kernel_error(result.kernel[..., index], truth) < 0.12


def test_options_keep_sign_sum_and_position(gaussian_pair):
    pair = gaussian_pair
    raw = estimate_kernel(pair.sharp, pair.blurred, 15, nonnegative=False, normalize=False,
                          center=False, regularization=0.5)
    assert raw.regularization == 0.5
    assert raw.kernel.min() < 0  # noise is not clipped away
    assert raw.kernel.sum() == pytest.approx(0.8, rel=0.03)  # the gain stays in the kernel
    assert raw.gain == 1.0


def test_callback_can_stop_early(gaussian_pair):
    steps = []

    def stop_at_first(step, total, current):
        steps.append(step)
        assert current.shape == (15, 15)
        return False

    result = estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred, 15,
                             callback=stop_at_first)
    assert steps == [1] and result.iterations == 1


@pytest.mark.parametrize("sharp, blurred, kwargs, error, match", [
    (np.ones((64, 64)), np.ones((64, 63)), {}, ValueError, "differ in shape"),
    (np.zeros((64, 64)), np.random.default_rng(0).random((64, 64)), {}, ValueError,
     "constant"),
    (np.random.default_rng(0).random(64), np.random.default_rng(1).random(64), {}, ValueError,
     "2D or 3D"),
    (np.full((64, 64), np.nan), np.ones((64, 64)), {}, ValueError, "NaN"),
    (np.ones((64, 64), complex), np.ones((64, 64)), {}, TypeError, "real"),
    (None, None, {"shape": 8}, ValueError, "odd"),
    (None, None, {"shape": 41}, ValueError, "too large"),
    (None, None, {"method": "magic"}, ValueError, "method"),
    (None, None, {"regularization": -1.0}, ValueError, "regularization"),
])
def test_bad_input_gets_a_clear_error(sharp, blurred, kwargs, error, match):
    rng = np.random.default_rng(3)
    sharp = rng.random((64, 64)) if sharp is None else sharp
    blurred = rng.random((64, 64)) if blurred is None else blurred
    with pytest.raises(error, match=match):
        estimate_kernel(sharp, blurred, **kwargs)


def test_refits_at_one_shift_share_their_setup_and_match_a_fresh_fit():
    # _estimate_single fits several supports at one shift on one _AlignedPair; what it caches
    # (the Fourier solution, the autocorrelation) must leave every fit exactly as it would be
    from psfkit._kernel_fit import _AlignedPair, _fit_at_shift, _FitOptions

    pair = blurred_pair(make_psf("gaussian", (15, 15), sigma=2.0), (400, 400),
                        shift=(0.3, -0.4), rng=3)
    options = _FitOptions(method="lsq", manual=None, nonnegative=True, max_iterations=10,
                          tolerance=1e-3)
    shared = _AlignedPair(pair.sharp, pair.blurred, pair.shift)
    _fit_at_shift(shared, (13, 13), options)
    reused = _fit_at_shift(shared, (15, 15), options)
    # both supports share the taper and FFT grids: one Fourier solution, one autocorrelation
    assert len(shared._cache) == 2
    fresh = _fit_at_shift(_AlignedPair(pair.sharp, pair.blurred, pair.shift), (15, 15), options)
    np.testing.assert_array_equal(reused.kernel, fresh.kernel)
    assert reused.regularization == fresh.regularization
    assert reused.iterations == fresh.iterations
    assert kernel_error(reused.kernel / reused.kernel.sum(), pair.kernel) < 0.1


# -- hardening (issue 17): extremes, quantised input, counts ------------------------------


@pytest.fixture(scope="module")
def plain_estimate(gaussian_pair):
    return estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred, 15)


@pytest.mark.parametrize("factor", [2.0**-100, 2.0**100])
def test_estimate_at_a_power_of_two_scale_is_the_same_estimate_scaled(
        gaussian_pair, plain_estimate, factor):
    # the pair is brought back near 1 by an exact power of two, so nothing is rounded
    sharp, blurred = gaussian_pair.sharp, gaussian_pair.blurred
    scaled = estimate_kernel(sharp * np.float32(factor), blurred * np.float32(2 * factor), 15)
    assert np.array_equal(scaled.kernel, plain_estimate.kernel)
    assert scaled.gain == 2 * plain_estimate.gain
    assert scaled.offset == plain_estimate.offset * 2 * factor
    assert scaled.noise_sigma == plain_estimate.noise_sigma * 2 * factor
    assert scaled.residual_ratio == plain_estimate.residual_ratio
    assert np.array_equal(scaled.residual, plain_estimate.residual * np.float32(2 * factor))


@pytest.mark.parametrize("factor", [1e-30, 1e30])
def test_estimate_is_scale_invariant_at_extreme_magnitudes(gaussian_pair, plain_estimate,
                                                           factor):
    # 1e±30 rounds each pixel once (float32), which the nonnegative fit may carry a little
    sharp, blurred = gaussian_pair.sharp, gaussian_pair.blurred
    plain = plain_estimate
    scaled = estimate_kernel(sharp * np.float32(factor), blurred * np.float32(factor), 15)
    assert np.max(np.abs(scaled.kernel - plain.kernel)) < 1e-3 * plain.kernel.max()
    assert scaled.gain == pytest.approx(plain.gain, rel=1e-4)
    assert scaled.offset == pytest.approx(plain.offset * factor, rel=1e-3)
    assert scaled.noise_sigma == pytest.approx(plain.noise_sigma * factor, rel=1e-4)
    assert scaled.residual_ratio == pytest.approx(plain.residual_ratio, rel=1e-3)
    assert np.allclose(scaled.reblurred / np.float32(factor), plain.reblurred, atol=1e-3)


def test_estimate_on_bool_images_reports_a_finite_residual_ratio(gaussian_pair):
    # no noise is measurable in a bool image: its floor is the rounding noise of one step
    sharp, blurred = gaussian_pair.sharp, gaussian_pair.blurred
    result = estimate_kernel(sharp > sharp.mean(), blurred > blurred.mean(), 9)
    assert result.noise_sigma == pytest.approx(1 / np.sqrt(12), rel=1e-6)
    assert np.isfinite(result.residual_ratio) and 0 < result.residual_ratio < 10


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_iterations": np.inf}, TypeError, "max_iterations must be an int, got inf"),
    ({"max_iterations": 5.5}, TypeError, "max_iterations must be an int"),
    ({"max_iterations": -1}, ValueError, "max_iterations must be an int >= 0"),
    ({"tolerance": np.nan}, ValueError, "tolerance must be a finite number"),
])
def test_counts_and_tolerances_are_checked_by_name(gaussian_pair, kwargs, error, match):
    with pytest.raises(error, match=match):
        estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred, **kwargs)


def test_a_single_column_is_refused_by_name():
    column = np.random.default_rng(0).random((64, 1))
    with pytest.raises(ValueError, match=r"sharp and blurred of shape \(64, 1\) are too small"):
        estimate_kernel(column, column)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"shape": np.nan}, TypeError, "shape must be an int, got nan"),
    ({"shape": (15, np.inf)}, TypeError, "shape must be an int, got inf"),
    ({"callback": 5}, TypeError, "callback must be a function or None, got 5"),
])
def test_shape_entries_and_callback_are_checked_before_any_work(gaussian_pair, kwargs, error,
                                                                  match):
    # shape=nan used to fail with "cannot convert float NaN to integer", inf with an
    # OverflowError, and callback=5 with "'int' object is not callable" deep in the solver
    with pytest.raises(error, match=match):
        estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred, **kwargs)


def test_an_overflowing_regularization_is_refused_by_name(gaussian_pair):
    # 1e300 used to make the solver's steps NaN (or the Fourier kernel zero)
    with pytest.raises(ValueError, match="regularization must be at most 1e"):
        estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred, 9, regularization=1e300)


def test_an_inverted_blurred_image_is_named_as_unrelated(gaussian_pair):
    with pytest.raises(ValueError, match="sharp and blurred look unrelated"):
        estimate_kernel(gaussian_pair.sharp, -gaussian_pair.blurred, 9)


def test_a_bool_regularization_is_refused(gaussian_pair):
    with pytest.raises(TypeError, match="regularization must be a number, got True"):
        estimate_kernel(gaussian_pair.sharp, gaussian_pair.blurred, 9, regularization=True)


def test_a_constant_channel_of_an_rgb_pair_is_named(gaussian_pair):
    sharp = np.stack([gaussian_pair.sharp] * 3, axis=-1)
    blurred = np.stack([gaussian_pair.blurred, 0 * gaussian_pair.blurred,
                        gaussian_pair.blurred], axis=-1)
    with pytest.raises(ValueError, match="channel 1 of the RGB pair: the blurred image is const"):
        estimate_kernel(sharp, blurred, 9)


def _peak_difference(kernel, reference):
    """Largest difference of two kernels centred in a common shape, over the reference's
    peak."""
    from psfkit.operators import centre_embed

    shape = tuple(max(a, b) for a, b in zip(kernel.shape, reference.shape, strict=True))
    difference = centre_embed(kernel, shape) - centre_embed(reference, shape)
    return float(np.abs(difference).max() / reference.max())


def test_an_estimate_repeated_with_its_own_choices_stays_well_within_its_error():
    # docs/estimate.md, "Repeating an estimate": the choices are reported, not a recipe;
    # repeated with them the kernel moves by a fraction of its error against the truth
    from psfkit.samples import sample_pair

    pair = sample_pair()
    sharp, blurred, truth = pair["sharp"], pair["blurred"], pair["truth"]["kernel"]
    automatic = estimate_kernel(sharp, blurred)
    error = _peak_difference(automatic.kernel, truth)
    for options in ({}, {"method": automatic.method,
                         "regularization": automatic.regularization}):
        repeated = estimate_kernel(sharp, blurred, automatic.shape, **options)
        assert repeated.shape == automatic.shape
        assert _peak_difference(repeated.kernel, automatic.kernel) < min(0.5 * error, 0.025)
