"""fit_kernel and defocus_diameter against camera-like pairs with a known kernel."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.optimize
import scipy.signal

from psfkit import KernelFit, defocus_diameter, fit_kernel, make_psf
from psfkit._fit_models import SAMPLED_GAUSSIAN_MIN_SIGMA, _gaussian_model
from psfkit._fit_problem import _Packing, _Problem
from psfkit._least_squares import LOSSES, _Loss, _Objective, _optimise
from psfkit.samples import blurred_pair, scene

SHIFT = (0.6, -0.35)


def pair_for(model, params, size, shape=(160, 160), **kwargs):
    kwargs = {"noise": 0.01, "gain": 1.3, "offset": 0.2, "shift": SHIFT, **kwargs}
    return blurred_pair(make_psf(model, size, **params), shape, **kwargs)


@pytest.mark.parametrize("sigma", [0.8, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_gaussian_sigma_gain_offset_and_shift_are_recovered(sigma, dtype):
    pair = pair_for("gaussian", {"sigma": sigma}, 2 * int(4 * sigma + 1) + 1)
    sharp, blurred = pair.sharp, pair.blurred
    scale = 1000 if dtype == np.uint16 else 1  # integer images, as cameras give them
    sharp = np.round(sharp * scale).astype(dtype) if scale > 1 else sharp.astype(dtype)
    blurred = np.round(blurred * scale).astype(dtype) if scale > 1 else blurred.astype(dtype)
    sharp_before, blurred_before = sharp.copy(), blurred.copy()
    fit = fit_kernel(sharp, blurred)
    assert isinstance(fit, KernelFit)
    assert fit.model == "gaussian"
    assert abs(fit.params["sigma"] / sigma - 1) < 0.01
    # the reported error is honest: the truth lies within a few standard errors
    assert abs(fit.params["sigma"] - sigma) < 5 * fit.errors["sigma"] + 1e-3
    np.testing.assert_allclose(fit.shift, SHIFT, atol=0.03)
    # both images scaled alike: the gain is unchanged, the offset scales
    assert fit.gain == pytest.approx(1.3, rel=0.01)
    assert fit.offset == pytest.approx(0.2 * scale, rel=0.01)
    assert 0.8 < fit.reduced_chi2 < 1.25
    assert fit.fwhm == pytest.approx(2.3548 * fit.params["sigma"], rel=1e-3)
    assert fit.ellipticity < 0.01
    np.testing.assert_array_equal(sharp, sharp_before)
    np.testing.assert_array_equal(blurred, blurred_before)


def filter_blurred(sharp, sigma, noise=0.01, rng=0):
    """``sharp`` blurred by ``scipy.ndimage.gaussian_filter`` with ``sigma``, plus Gaussian
    noise of ``noise`` times its range."""
    blurred = ndi.gaussian_filter(sharp.astype(np.float64), sigma)
    scale = noise * float(blurred.max() - blurred.min())
    return blurred + np.random.default_rng(rng).normal(0.0, scale, blurred.shape)


@pytest.mark.parametrize("sigma", [0.8, 1.1, 2.0, 3.5, 5.0])
def test_gaussian_sigma_is_the_sigma_of_scipy_gaussian_filter_2d(sigma):
    # users check a fitted sigma by re-blurring with their filter (scipy, skimage, DIPlib,
    # fspecial all sample the Gaussian at pixel centres): the default fit returns its sigma
    sharp = scene("natural", (256, 256))
    fit = fit_kernel(sharp, filter_blurred(sharp, sigma), "gaussian")
    assert fit.pixel_integrated is False
    assert abs(fit.params["sigma"] / sigma - 1) < 0.005


@pytest.mark.parametrize("sigma", [(0.8, 0.8, 0.8), (2.0, 1.2, 1.2), (3.0, 1.5, 2.5)])
def test_gaussian_sigma_is_the_sigma_of_scipy_gaussian_filter_3d(sigma):
    # (0.2 % noise: a 64³ volume of blobs pins a sigma of 0.8 voxels to about 1 % at 1 %)
    sharp = scene("blobs", (64, 64, 64), rng=1)
    fit = fit_kernel(sharp, filter_blurred(sharp, sigma, noise=0.002), "gaussian")
    np.testing.assert_allclose(fit.params["sigma"], sigma, rtol=0.005)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0])
def test_pixel_integrated_fit_returns_the_sigma_of_a_pixel_integrated_blur(sigma):
    kernel = make_psf("gaussian", 2 * int(4.5 * sigma) + 1, sigma=sigma, pixel_integrated=True)
    pair = blurred_pair(kernel, (256, 256), noise=0.01, rng=3)
    integrated = fit_kernel(pair.sharp, pair.blurred, "gaussian", pixel_integrated=True)
    assert integrated.pixel_integrated is True
    assert abs(integrated.params["sigma"] / sigma - 1) < 0.005
    np.testing.assert_allclose(
        integrated.kernel,
        make_psf("gaussian", integrated.kernel.shape, pixel_integrated=True,
                 **integrated.params), atol=1e-7)
    # the same blur seen by the default (centre-sampled) model: wider by a pixel's variance
    sampled = fit_kernel(pair.sharp, pair.blurred, "gaussian")
    assert sampled.params["sigma"] == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.005)


@pytest.mark.parametrize(("model", "params", "size"), [
    ("elliptical_gaussian", {"sigma_y": 2.8, "sigma_x": 1.4, "angle": 0.5}, 25),
    ("moffat", {"alpha": 3.0, "beta": 2.5}, 41)])
def test_pixel_integrated_option_fits_the_moffat_and_elliptical_gaussian_alike(model, params,
                                                                              size):
    pair = pair_for(model, params, size)
    integrated_pair = blurred_pair(make_psf(model, size, pixel_integrated=True, **params),
                                   (160, 160), noise=0.01, gain=1.3, offset=0.2, shift=SHIFT)
    for blurred, pixel_integrated in ((pair, False), (integrated_pair, True)):
        fit = fit_kernel(blurred.sharp, blurred.blurred, model,
                         pixel_integrated=pixel_integrated)
        for name, truth in params.items():
            assert fit.params[name] == pytest.approx(truth, rel=0.01, abs=0.01), name


def test_a_given_kernel_shape_is_used():
    pair = pair_for("gaussian", {"sigma": 1.0}, 9)
    fit = fit_kernel(pair.sharp, pair.blurred, shape=(21, 15))
    assert fit.kernel.shape == (21, 15)
    assert fit.params["sigma"] == pytest.approx(1.0, rel=0.01)


def test_kernel_and_residual_describe_the_fit():
    pair = pair_for("gaussian", {"sigma": 2.0}, 17)
    fit = fit_kernel(pair.sharp, pair.blurred)
    assert fit.kernel.dtype == np.float32
    assert all(n % 2 == 1 for n in fit.kernel.shape)
    assert float(fit.kernel.sum()) == pytest.approx(1.0, abs=1e-5)
    assert fit.residual.shape == pair.blurred.shape
    assert fit.reblurred.shape == pair.blurred.shape
    inside = fit.residual[fit.valid]
    # the residual is the noise: same RMS as the noise that was added
    assert float(np.sqrt(np.mean(inside**2))) == pytest.approx(pair.noise_sigma, rel=0.1)
    outside = np.ones(pair.blurred.shape, bool)
    outside[fit.valid] = False
    assert np.all(fit.residual[outside] == 0)
    np.testing.assert_allclose(fit.reblurred[fit.valid] + inside, pair.blurred[fit.valid],
                               atol=1e-4)


CASES = [
    ("elliptical_gaussian", {"sigma_y": 2.8, "sigma_x": 1.4, "angle": 0.5}, 25),
    ("moffat", {"alpha": 3.0, "beta": 2.5}, 41),
    ("airy", {"radius": 2.5}, 25),
    ("disk", {"radius": 4.5}, 13),
    ("ring", {"diameter": 12.0, "width": 1.2}, 21),
    ("motion", {"length": 11.0, "angle": 0.6}, 15),
]


@pytest.mark.parametrize(("model", "params", "size"), CASES, ids=[c[0] for c in CASES])
def test_other_models_recover_their_parameters(model, params, size):
    pair = pair_for(model, params, size)
    fit = fit_kernel(pair.sharp, pair.blurred, model)
    assert fit.model == model
    assert set(fit.params) == set(params)
    for name, truth in params.items():
        if name == "angle":
            assert abs(fit.params[name] - truth) < 0.02
        else:
            assert abs(fit.params[name] / truth - 1) < 0.02, (name, fit.params[name])
        assert np.isfinite(fit.errors[name]) and fit.errors[name] > 0
    np.testing.assert_allclose(fit.shift, SHIFT, atol=0.05)
    assert fit.gain == pytest.approx(1.3, rel=0.02)


ELLIPSE = {"sigma_y": 3.6, "sigma_x": 1.6, "angle": 0.5}


@pytest.mark.parametrize("naming", [
    ELLIPSE,
    {"sigma_y": 1.6, "sigma_x": 3.6, "angle": 0.5 + np.pi / 2},
    {"sigma_y": 1.6, "sigma_x": 3.6, "angle": 0.5 - np.pi / 2},
    {"sigma_y": 3.6, "sigma_x": 1.6, "angle": 0.5 - np.pi},
], ids=["canonical", "swapped", "swapped_other_way", "turned_by_pi"])
def test_elliptical_gaussian_comes_back_in_one_canonical_form(naming):
    # the same ellipse under any naming is reported as major axis sigma_y >= sigma_x, with
    # angle in [0, pi) the direction of sigma_x: a canonical truth comes back as itself
    pair = pair_for("elliptical_gaussian", naming, 27, rng=4)
    fit = fit_kernel(pair.sharp, pair.blurred, "elliptical_gaussian")
    assert fit.params["sigma_y"] == pytest.approx(3.6, rel=0.005)
    assert fit.params["sigma_x"] == pytest.approx(1.6, rel=0.005)
    assert fit.params["angle"] == pytest.approx(0.5, abs=0.005)
    assert fit.ellipticity == pytest.approx(1 - 1.6 / 3.6, abs=0.02)
    canonical = pair_for("elliptical_gaussian", ELLIPSE, 27, rng=4)
    reference = fit_kernel(canonical.sharp, canonical.blurred, "elliptical_gaussian")
    for name in ELLIPSE:
        assert fit.params[name] == pytest.approx(reference.params[name], rel=1e-4, abs=1e-5)


def test_motion_angle_is_reported_in_zero_to_pi():
    # a segment and its reverse are one blur: -0.4 rad is reported as pi - 0.4
    pair = pair_for("motion", {"length": 11.0, "angle": -0.4}, 15)
    fit = fit_kernel(pair.sharp, pair.blurred, "motion")
    assert fit.params["angle"] == pytest.approx(np.pi - 0.4, abs=0.02)


def test_gaussian_3d_fits_one_sigma_per_axis_and_reports_physical_units():
    sigma = (2.0, 1.2, 1.2)
    spacing = (0.3, 0.1, 0.1)
    pair = blurred_pair(make_psf("gaussian", (15, 11, 11), sigma=sigma), (32, 64, 64),
                        scene_kind="blobs", noise=0.01, gain=0.8, offset=0.1,
                        shift=(0.4, -0.3, 0.2))
    fit = fit_kernel(pair.sharp, pair.blurred, spacing=spacing)
    np.testing.assert_allclose(fit.params["sigma"], sigma, rtol=0.02)
    np.testing.assert_allclose(fit.params_physical["sigma"],
                               np.multiply(fit.params["sigma"], spacing))
    np.testing.assert_allclose(fit.fwhm_physical, np.multiply(fit.fwhm, spacing))
    np.testing.assert_allclose(fit.shift, (0.4, -0.3, 0.2), atol=0.05)
    assert len(fit.errors["sigma"]) == 3
    assert fit.kernel.ndim == 3



def test_a_long_axial_sigma_is_read_on_a_thin_volume():
    # 24 planes and sigma_z 2.5: a kernel capped at a third of the depth (9 planes, 1.6
    # sigma each side) read 3.13; capped at half the depth less 8 planes it holds 13
    sigma = (2.5, 1.5, 1.5)
    pair = blurred_pair(make_psf("gaussian", (21, 11, 11), sigma=sigma), (24, 64, 64),
                        scene_kind="blobs", noise=0.01, shift=(0, 0, 0), rng=2)
    fit = fit_kernel(pair.sharp, pair.blurred)
    assert fit.kernel.shape[0] == 13
    np.testing.assert_allclose(fit.params["sigma"], sigma, rtol=0.03)

def test_isotropic_gaussian_honours_anisotropic_pixels():
    # pixels twice as tall as wide: one physical sigma is two different pixel sigmas
    pair = pair_for("gaussian", {"sigma": (1.0, 2.0)}, 17)
    fit = fit_kernel(pair.sharp, pair.blurred, spacing=(2.0, 1.0))
    np.testing.assert_allclose(fit.params["sigma"], (1.0, 2.0), rtol=0.01)
    np.testing.assert_allclose(fit.params_physical["sigma"], (2.0, 2.0), rtol=0.01)
    np.testing.assert_allclose(fit.fwhm_physical, (2.3548 * 2.0,) * 2, rtol=0.01)


@pytest.mark.parametrize(("model", "params", "size"), [
    ("gaussian", {"sigma": 2.0}, 17),
    ("moffat", {"alpha": 3.0, "beta": 2.5}, 41),
    ("elliptical_gaussian", {"sigma_y": 2.8, "sigma_x": 1.4, "angle": 0.5}, 25),
    ("ring", {"diameter": 12.0, "width": 1.2}, 21),
    ("motion", {"length": 11.0, "angle": 0.6}, 15)])
def test_physical_sizes_are_the_lengths_times_a_known_square_pixel(model, params, size):
    pair = pair_for(model, params, size)
    unknown = fit_kernel(pair.sharp, pair.blurred, model)
    assert unknown.params_physical is None and unknown.fwhm_physical is None
    fit = fit_kernel(pair.sharp, pair.blurred, model, spacing=0.065)
    lengths = {"sigma", "sigma_y", "sigma_x", "alpha", "diameter", "width", "length"}
    for name, value in fit.params.items():
        expected = value * 0.065 if name in lengths else value  # angles, beta unchanged
        assert fit.params_physical[name] == pytest.approx(expected, rel=1e-12)
    assert fit.fwhm_physical == pytest.approx(fit.fwhm * 0.065, rel=1e-12)
    assert "in the units of spacing" in fit.summary()


def test_a_round_model_on_pixels_that_are_not_square_has_no_physical_size():
    pair = pair_for("disk", {"radius": 4.5}, 13)
    fit = fit_kernel(pair.sharp, pair.blurred, "disk", spacing=(0.2, 0.1))
    assert fit.params_physical is None and fit.fwhm_physical is None


def test_auto_picks_the_model_that_made_the_blur_and_ranks_all():
    pair = pair_for("disk", {"radius": 3.5}, 9, shape=(112, 112))
    fit = fit_kernel(pair.sharp, pair.blurred, "auto")
    assert fit.model == "disk"
    assert fit.params["radius"] == pytest.approx(3.5, rel=0.02)
    names = [entry[0] for entry in fit.ranking]
    assert sorted(names) == sorted(
        ["gaussian", "elliptical_gaussian", "moffat", "airy", "disk", "ring", "motion"])
    criteria = [entry[1] for entry in fit.ranking]
    assert criteria == sorted(criteria)
    assert fit.ranking[0][0] == "disk"


def test_robust_loss_resists_outliers():
    pair = pair_for("gaussian", {"sigma": 1.5}, 13, noise=0.005)
    blurred = pair.blurred.copy()
    rng = np.random.default_rng(3)
    hot = rng.random(blurred.shape) < 0.03
    blurred[hot] += 3.0  # hot pixels, cosmic rays
    robust = fit_kernel(pair.sharp, blurred, loss="cauchy")
    assert robust.params["sigma"] == pytest.approx(1.5, rel=0.01)
    assert robust.gain == pytest.approx(1.3, rel=0.01)


def test_callback_reports_progress_and_can_stop_the_fit():
    pair = pair_for("gaussian", {"sigma": 2.0}, 17)
    steps = []
    fit = fit_kernel(pair.sharp, pair.blurred, callback=lambda s, t, c: steps.append((s, t)))
    assert steps and all(t is not None and s <= t for s, t in steps)
    assert fit.success
    stopped = fit_kernel(pair.sharp, pair.blurred, callback=lambda *args: False)
    assert not stopped.success and "stopped" in stopped.message
    assert np.isfinite(stopped.params["sigma"])


@pytest.mark.parametrize(("pixel_integrated", "smallest"),
                         [(False, SAMPLED_GAUSSIAN_MIN_SIGMA), (True, 0.1)])
def test_no_blur_gives_the_smallest_sigma_and_says_so(pixel_integrated, smallest):
    pair = pair_for("gaussian", {"sigma": 1.0}, 9)
    fit = fit_kernel(pair.sharp, pair.sharp * 2 + 1, pixel_integrated=pixel_integrated)
    assert fit.params["sigma"] == pytest.approx(smallest)
    assert "bound" in fit.message
    assert fit.gain == pytest.approx(2.0, rel=1e-3)


def test_summary_lists_parameters_with_errors():
    pair = pair_for("gaussian", {"sigma": 2.0}, 17)
    text = fit_kernel(pair.sharp, pair.blurred).summary()
    assert "sigma = 2" in text and "±" in text and "reduced chi²" in text


@pytest.mark.parametrize("radius", [4.0, 7.0])
def test_defocus_diameter_from_the_cepstrum(radius):
    pair = pair_for("disk", {"radius": radius}, 2 * int(radius) + 3, shape=(256, 256),
                    noise=0.002)
    assert defocus_diameter(pair.blurred, sharp=pair.sharp) == pytest.approx(2 * radius,
                                                                            rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"blurred": np.zeros((50, 60))}, ValueError, "differ in shape"),
        ({"model": "blob"}, ValueError, "unknown model"),
        ({"loss": "l1"}, ValueError, "loss must be"),
        ({"shape": (10, 11)}, ValueError, "odd"),
        ({"shape": (61, 61)}, ValueError, "no valid region"),
        ({"spacing": (1.0, -1.0)}, ValueError, "spacing"),
        ({"sharp": np.full((64, 64), np.nan)}, ValueError, "NaN"),
        ({"sharp": np.ones((64, 64), complex)}, TypeError, "real"),
        ({"sharp": np.ones((64, 64)), "blurred": np.ones((64, 64))}, ValueError, "constant"),
        ({"sharp": np.ones((8, 8, 8)), "blurred": np.ones((8, 8, 8)), "model": "disk"},
         ValueError, "2D only"),
        ({"pixel_integrated": "no"}, TypeError, "pixel_integrated must be True or False"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs, error, match):
    rng = np.random.default_rng(0)
    arguments = {"sharp": rng.random((64, 64)), "blurred": rng.random((64, 64)), **kwargs}
    with pytest.raises(error, match=match):
        fit_kernel(**arguments)


# -- the pieces inside fit_kernel, against independent references ---------------------------


def small_problem(kernel_shape=(7, 5), margin=(2.0, 3.0)):
    rng = np.random.default_rng(1)
    sharp = rng.random((48, 56)).astype(np.float32)
    return sharp, _Problem(sharp, np.zeros_like(sharp), kernel_shape, margin)


def test_forward_model_is_the_valid_convolution_of_the_shifted_sharp_image():
    sharp, problem = small_problem()
    kernel = make_psf("gaussian", (7, 5), sigma=1.2)
    shift = (2, -3)  # whole pixels: the phase ramp is then an exact translation
    moved = np.roll(sharp, shift, axis=(0, 1))  # wraps only outside what the window reads
    expected = scipy.signal.fftconvolve(moved, kernel, "same")[problem.data_window]
    np.testing.assert_allclose(problem.apply(kernel, shift), expected, atol=1e-5)
    whole = problem.apply_to_image(kernel, shift)
    assert whole.shape == sharp.shape
    np.testing.assert_allclose(whole[problem.data_window], expected, atol=1e-5)


def test_shift_derivative_rows_match_central_differences():
    _, problem = small_problem()
    kernel = make_psf("gaussian", (7, 5), sigma=1.2)
    shift, h = np.array([0.3, -0.2]), 1e-2
    rows = problem.apply_with_derivatives(kernel[None], shift)
    assert rows.shape == (3, problem.data.size)
    np.testing.assert_allclose(rows[0], problem.apply(kernel, shift).ravel(), atol=1e-6)
    for axis in range(2):
        step = np.eye(2)[axis] * h
        numeric = (problem.apply(kernel, shift + step) - problem.apply(kernel, shift - step))
        np.testing.assert_allclose(rows[1 + axis], numeric.ravel() / (2 * h),
                                   atol=2e-3 * np.abs(rows[1 + axis]).max())


def test_packing_reads_back_every_part_of_the_vector():
    packing = _Packing.of(3, 2)
    x = packing.pack([1.0, 2.0, 3.0], [0.5, -0.5], 1.3, 0.2)
    assert x.size == packing.size == 7
    np.testing.assert_array_equal(x[packing.model], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x[packing.shift], [0.5, -0.5])
    assert (x[packing.gain], x[packing.offset]) == (1.3, 0.2)
    np.testing.assert_array_equal(x[packing.intensity], [1.3, 0.2])
    np.testing.assert_array_equal(x[packing.kernel_and_shift], [1.0, 2.0, 3.0, 0.5, -0.5])


@pytest.mark.parametrize("name", LOSSES)
def test_loss_costs_what_scipy_least_squares_reports(name):
    residual = np.array([-3.0, -0.4, 0.0, 0.2, 1.5, 7.0])
    reference = scipy.optimize.least_squares(lambda x: residual + 0 * x[0], x0=[0.0],
                                             loss=name, f_scale=0.7, max_nfev=1)
    assert _Loss(name, 0.7).cost(residual) == pytest.approx(reference.cost, rel=1e-12)


def test_levenberg_marquardt_reaches_the_least_squares_minimum_of_scipy():
    pair = pair_for("gaussian", {"sigma": 1.6}, 13, shape=(64, 64))
    sharp = ((pair.sharp - pair.sharp.mean()) / pair.sharp.std()).astype(np.float32)
    problem = _Problem(sharp, pair.blurred.astype(np.float32), (13, 13), margin=(2.0, 2.0))
    objective = _Objective(_gaussian_model(2, True, (1.0, 1.0), False), problem,
                           _Loss("linear", 1.0))
    optimum = _optimise(objective, np.array([1.0]), np.zeros(2), 100, None)
    assert optimum.success

    def residual(x):
        return objective.evaluate(x).residual

    def jacobian(x):
        return objective.evaluate(x).jacobian.T

    start = objective.start(np.array([1.0]), np.zeros(2)).x
    reference = scipy.optimize.least_squares(residual, start, jac=jacobian,
                                             bounds=(objective.lower, objective.upper))
    packing = optimum.packing
    found = packing.pack(optimum.v, optimum.shift, optimum.gain, optimum.offset)
    errors = np.sqrt(np.diag(optimum.covariance))
    assert np.all(np.abs(found - reference.x) < 0.05 * errors)
    assert optimum.rss == pytest.approx(2 * reference.cost, rel=1e-6)


# -- hardening (issue 17): extremes, quantised input, counts ------------------------------


@pytest.fixture(scope="module")
def small_pair():
    return blurred_pair(make_psf("gaussian", (9, 9), sigma=1.5), (64, 64), rng=0)


def test_fit_of_bool_images_falls_back_to_the_quantisation_noise(small_pair):
    # the noise estimate of a bool image is 0; the fit divides by its floor instead
    sharp, blurred = small_pair.sharp, small_pair.blurred
    fit = fit_kernel(sharp > sharp.mean(), blurred > blurred.mean())
    assert fit.noise_sigma == pytest.approx(1 / np.sqrt(12), rel=1e-5)
    assert np.isfinite(fit.reduced_chi2) and fit.reduced_chi2 > 0
    assert 0.5 < fit.params["sigma"] < 3.0


@pytest.mark.parametrize("factor", [1e-30, 1e30])
def test_fit_is_scale_invariant_at_extreme_magnitudes(small_pair, factor):
    sharp, blurred = small_pair.sharp, small_pair.blurred
    plain = fit_kernel(sharp, blurred)
    only_blurred = fit_kernel(sharp, blurred * factor)
    both = fit_kernel(sharp * factor, blurred * factor)
    assert only_blurred.params["sigma"] == pytest.approx(plain.params["sigma"], rel=1e-5)
    assert both.params["sigma"] == pytest.approx(plain.params["sigma"], rel=1e-5)
    assert only_blurred.gain == pytest.approx(plain.gain * factor, rel=1e-5)
    assert both.gain == pytest.approx(plain.gain, rel=1e-5)
    assert both.offset == pytest.approx(plain.offset * factor, rel=1e-3, abs=1e-6 * factor)
    assert both.noise_sigma == pytest.approx(plain.noise_sigma * factor, rel=1e-5)
    assert both.reduced_chi2 == pytest.approx(plain.reduced_chi2, rel=1e-4)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"max_evaluations": np.inf}, TypeError, "max_evaluations must be an int"),
    ({"max_evaluations": 0}, ValueError, "max_evaluations must be an int >= 1"),
    ({"f_scale": np.nan}, ValueError, "f_scale must be a finite number"),
    ({"f_scale": -1.0}, ValueError, "f_scale must be positive"),
])
def test_fit_counts_and_scales_are_checked_by_name(small_pair, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_kernel(small_pair.sharp, small_pair.blurred, **kwargs)


def test_fit_refuses_a_single_column_by_name(small_pair):
    # np.gradient used to fail deep inside the noise estimate with no argument named
    with pytest.raises(ValueError, match=r"sharp and blurred of shape \(64, 1\) are too small"):
        fit_kernel(small_pair.sharp[:, :1], small_pair.blurred[:, :1])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_diameter": np.inf}, "min_diameter must be a finite number"),
    ({"max_diameter": np.nan}, "max_diameter must be a finite number"),
    ({"min_diameter": -2.0}, "min_diameter must be >= 0"),
])
def test_defocus_range_is_checked_by_name(small_pair, kwargs, match):
    with pytest.raises(ValueError, match=match):
        defocus_diameter(small_pair.blurred, **kwargs)


def test_defocus_of_a_constant_image_is_refused_without_a_warning():
    with pytest.raises(ValueError, match="blurred is constant"):
        defocus_diameter(np.ones((64, 64)))


def test_defocus_is_scale_invariant_at_extreme_magnitudes():
    blurred = pair_for("disk", {"radius": 5.0}, 13, shape=(128, 128), noise=0.002).blurred
    plain = defocus_diameter(blurred)
    assert defocus_diameter(blurred * np.float32(1e-30)) == pytest.approx(plain, rel=1e-6)
    assert defocus_diameter(blurred * np.float32(1e30)) == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"shape": np.nan}, TypeError, "shape must be an int, got nan"),
    ({"callback": "print"}, TypeError, "callback must be a function or None"),
])
def test_fit_shape_and_callback_are_checked_by_name(small_pair, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_kernel(small_pair.sharp, small_pair.blurred, **kwargs)


def test_f_scale_is_in_the_units_of_blurred(small_pair):
    # the same robust fit whatever the units of blurred, once f_scale is given in them
    sharp, blurred = small_pair.sharp, small_pair.blurred
    plain = fit_kernel(sharp, blurred, loss="cauchy", f_scale=0.01)
    scaled = fit_kernel(sharp, blurred * 1000, loss="cauchy", f_scale=10.0)
    assert scaled.params["sigma"] == pytest.approx(plain.params["sigma"], rel=1e-5)
    # a huge scale is the linear loss, not an OverflowError when squared
    linear = fit_kernel(sharp, blurred)
    huge = fit_kernel(sharp, blurred, loss="huber", f_scale=1e300)
    assert huge.params["sigma"] == pytest.approx(linear.params["sigma"], rel=1e-6)


def test_ellipticity_of_an_extreme_spacing_is_finite(small_pair):
    plain = fit_kernel(small_pair.sharp, small_pair.blurred)
    extreme = fit_kernel(small_pair.sharp, small_pair.blurred, spacing=1e300)
    assert extreme.ellipticity == pytest.approx(plain.ellipticity, abs=1e-9)
    assert extreme.params_physical["sigma"] == pytest.approx(plain.params["sigma"] * 1e300,
                                                             rel=1e-6)


def test_defocus_search_range_is_kept_inside_the_cepstrum(small_pair):
    # max_diameter beyond the image used to fail with "not enough values to unpack"
    assert np.isfinite(defocus_diameter(small_pair.blurred, max_diameter=1e300))
    with pytest.raises(ValueError, match="no diameter to search between min_diameter 1e"):
        defocus_diameter(small_pair.blurred, min_diameter=1e300)


def test_fit_spacing_of_the_wrong_length_is_refused_by_name(small_pair):
    with pytest.raises(ValueError, match=r"spacing must be one number or 2 \(one per axis\)"):
        fit_kernel(small_pair.sharp, small_pair.blurred, spacing=(1.0, 2.0, 3.0))


def test_defocus_diameter_without_a_ring_names_blurred_and_the_search_range():
    white_noise = np.random.default_rng(0).random((64, 64))
    with pytest.raises(ValueError, match="no defocus ring found in the cepstrum of blurred "
                                         "between 3 and 16 px; widen min_diameter"):
        defocus_diameter(white_noise)


def test_a_fit_repeated_on_its_own_kernel_shape_is_the_same_fit():
    from psfkit.samples import sample_pair

    pair = sample_pair()
    fit = fit_kernel(pair["sharp"], pair["blurred"], "gaussian")
    repeated = fit_kernel(pair["sharp"], pair["blurred"], "gaussian", shape=fit.kernel.shape)
    assert repeated.params == fit.params
    np.testing.assert_array_equal(repeated.kernel, fit.kernel)
    np.testing.assert_array_equal(repeated.shift, fit.shift)
