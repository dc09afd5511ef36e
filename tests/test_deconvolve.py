"""Tests of psfkit.deconvolve against known truths made like a camera makes them."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from psfkit import deconvolve
from psfkit.deconvolve import (
    DISCREPANCY_EXTENSION,
    METHODS,
    RL_TV_REFINEMENT_ITERATIONS,
    SMOOTHING_BISECTIONS,
    SMOOTHING_ITERATIONS,
    BlurOperator,
    DeconvolutionInfo,
    _BoundaryWeights,
)
from psfkit.metrics import image_error as relative_error
from psfkit.models import make_psf
from psfkit.noise import noise_model
from psfkit.operators import Convolver
from psfkit.samples import blurred_pair


@pytest.fixture(scope="module")
def natural_pair():
    return blurred_pair(make_psf("gaussian", (15, 15), sigma=2.0), (96, 96), noise=0.005,
                        rng=3)


@pytest.fixture(scope="module")
def blobs_3d_pair():
    return blurred_pair(make_psf("gaussian", (9, 11, 11), sigma=(2.0, 1.5, 1.5)),
                        (16, 40, 40), scene_kind="blobs", noise=0.0, poisson_photons=500,
                        shift=(0, 0, 0), rng=4)


def test_blur_operator_matches_linear_convolution_and_its_adjoint():
    rng = np.random.default_rng(0)
    psf = rng.random((5, 7), dtype=np.float32)
    operator = BlurOperator(psf, (20, 23))
    obj = rng.random(operator.object_shape, dtype=np.float32)
    grid = operator.zeros()
    grid[operator.object] = obj
    valid = operator.blur(grid)[operator.valid]
    reference = Convolver(psf, obj.shape).apply(obj, "valid")
    np.testing.assert_allclose(valid, reference, rtol=1e-4, atol=1e-5)
    residual = operator.zeros()
    residual[operator.valid] = rng.random((20, 23), dtype=np.float32)
    back = operator.adjoint(residual)
    # <H x, r> == <x, H^T r>, and H^T r lives inside the object
    assert np.vdot(valid, residual[operator.valid]) == pytest.approx(
        np.vdot(obj, back[operator.object]), rel=1e-4)
    outside = back.copy()
    outside[operator.object] = 0
    assert np.abs(outside).max() < 1e-4 * np.abs(back).max()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("method", [m for m in METHODS if m != "auto"])
def test_output_is_float32_of_input_shape_and_input_untouched(dtype, method):
    image = (np.random.default_rng(1).random((24, 30)) * 1000).astype(dtype)
    psf = make_psf("gaussian", (5, 5), sigma=1.0).astype(np.float64)
    image_copy, psf_copy = image.copy(), psf.copy()
    result = deconvolve(image, psf, method, iterations=3)
    assert result.shape == image.shape and result.dtype == np.float32
    assert np.all(np.isfinite(result))
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(psf, psf_copy)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_beats_the_blurred_image_2d(natural_pair, method):
    blurred_error = relative_error(natural_pair.blurred, natural_pair.sharp)
    result = deconvolve(natural_pair.blurred, natural_pair.kernel, method)
    assert relative_error(result, natural_pair.sharp) < 0.85 * blurred_error


@pytest.mark.parametrize("method", ["auto", "richardson_lucy", "tikhonov"])
def test_deconvolution_recovers_3d_blobs(blobs_3d_pair, method):
    blurred_error = relative_error(blobs_3d_pair.blurred, blobs_3d_pair.sharp)
    result = deconvolve(blobs_3d_pair.blurred, blobs_3d_pair.kernel, method)
    assert result.shape == blobs_3d_pair.blurred.shape
    assert relative_error(result, blobs_3d_pair.sharp) < 0.85 * blurred_error


def test_plain_rl_is_richardson_lucy_with_boundary_weights():
    """Plain RL equals a direct transcription of Bertero–Boccacci's boundary-aware RL."""
    pair = blurred_pair(make_psf("gaussian", (7, 7), sigma=1.2), (32, 36), noise=0.0,
                        rng=5)
    image = pair.blurred - pair.blurred.min() + 0.1
    psf = pair.kernel / pair.kernel.sum()
    ours = deconvolve(image, psf, "richardson_lucy", acceleration=None, iterations=5,
                      background=0.0, read_noise=0.0)
    object_shape = tuple(n + k - 1 for n, k in zip(image.shape, psf.shape, strict=True))
    operator = Convolver(psf, object_shape)
    sensitivity = operator.adjoint(np.ones_like(image), "valid")
    estimate = np.full(operator.other_shape, image.mean(), dtype=np.float64)
    for _ in range(5):
        ratio = image / operator.apply(estimate.astype(np.float32), "valid")
        estimate = estimate * operator.adjoint(ratio.astype(np.float32), "valid") / sensitivity
    reference = estimate[3:-3, 3:-3]
    np.testing.assert_allclose(ours, reference, rtol=2e-3)


def test_edges_do_not_ring(natural_pair):
    """Light from outside the frame is modelled: the border is restored as well as the
    inside, where a circulant filter rings."""
    result = deconvolve(natural_pair.blurred, natural_pair.kernel, "richardson_lucy",
                        iterations=20)
    border = np.ones(result.shape, dtype=bool)
    border[8:-8, 8:-8] = False

    def band_error(estimate):
        return np.sqrt(np.mean((estimate - natural_pair.sharp)[border] ** 2))

    inside_error = np.sqrt(np.mean((result - natural_pair.sharp)[~border] ** 2))
    assert band_error(result) < 1.5 * inside_error
    spectrum = np.fft.rfft2(natural_pair.blurred)
    otf = np.fft.rfft2(np.fft.ifftshift(np.pad(natural_pair.kernel, [(40, 41), (40, 41)])))
    circulant = np.fft.irfft2(spectrum * np.conj(otf) / (np.abs(otf) ** 2 + 1e-2),
                              natural_pair.blurred.shape)
    assert band_error(result) < 0.5 * band_error(circulant)


def test_acceleration_reaches_plain_quality_in_fewer_iterations():
    pair = blurred_pair(make_psf("gaussian", (15, 15), sigma=2.0), (64, 64), noise=0.0,
                        poisson_photons=5000, scene_kind="blobs", rng=6)
    plain = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", acceleration=None,
                       iterations=120)
    fast = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=30)
    classic = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=30,
                         acceleration="biggs_andrews")
    assert relative_error(fast, pair.sharp) <= relative_error(plain, pair.sharp)
    assert relative_error(classic, pair.sharp) <= relative_error(plain, pair.sharp)


def test_geometric_acceleration_stays_positive_and_finite_far_past_the_optimum():
    pair = blurred_pair(make_psf("airy", (21, 21), radius=3.0), (48, 48), noise=0.0,
                        poisson_photons=100, scene_kind="stars", rng=5)
    result = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=300)
    plain = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=300,
                       acceleration=None)
    assert np.all(np.isfinite(result)) and result.min() >= 0
    # no blow-up: where plain RL has converged, the accelerated iterations are as good
    assert relative_error(result, pair.sharp) <= 1.02 * relative_error(plain, pair.sharp)
    assert result.max() <= pair.sharp.max()


@pytest.mark.parametrize(("psf_shape", "image_shape"), [((5, 7), (20, 23)),
                                                         ((9, 3, 5), (6, 12, 4)),
                                                         ((4, 6), (3, 40))])
def test_boundary_weights_equal_the_reciprocal_sensitivity(psf_shape, image_shape):
    """The band-only weights are ``1 / H^T 1`` where it is not tiny, else 0, and 0 off the
    object (a PSF longer than the image included)."""
    rng = np.random.default_rng(2)
    psf = rng.random(psf_shape).astype(np.float32)
    operator = BlurOperator(psf / psf.sum(), image_shape)
    sensitivity = operator.sensitivity()
    seen = sensitivity > 1e-3 * sensitivity.max()
    expected = np.zeros_like(sensitivity)
    np.reciprocal(sensitivity, out=expected, where=seen)
    outside = np.ones(sensitivity.shape, dtype=bool)
    outside[operator.object] = False
    expected[outside] = 0
    grid = rng.random(operator.grid_shape).astype(np.float32)
    weighted = grid.copy()
    _BoundaryWeights(operator).apply(weighted)
    np.testing.assert_allclose(weighted, grid * expected, rtol=1e-5, atol=1e-6)


def test_background_and_read_noise_are_modelled():
    """A camera offset and read noise must not turn into a bright haze or noise."""
    pair = blurred_pair(make_psf("gaussian", (11, 11), sigma=1.5), (64, 64), noise=0.0,
                        poisson_photons=400, scene_kind="blobs", rng=7)
    offset, read = 100.0, 0.02
    rng = np.random.default_rng(8)
    camera = pair.blurred + offset + rng.normal(0, read, pair.blurred.shape)
    blurred_error = relative_error(camera, pair.sharp)
    result, info = deconvolve(camera, pair.kernel, "richardson_lucy", background=offset,
                              read_noise=read, return_info=True)
    assert info.background == offset
    assert relative_error(result, pair.sharp) < 0.85 * blurred_error
    # the offset is removed: a dark pixel of the scene stays dark
    assert np.percentile(result, 1) < 0.2 * np.percentile(result, 99)


def test_auto_is_never_worse_than_the_input_on_pure_noise():
    rng = np.random.default_rng(9)
    truth = np.full((48, 48), 10.0, dtype=np.float32)
    image = truth + rng.normal(0, 1, truth.shape).astype(np.float32)
    result = deconvolve(image, make_psf("gaussian", (9, 9), sigma=1.5))
    assert np.std(result) <= np.std(image)


def test_callback_reports_progress_and_can_stop(natural_pair):
    calls = []

    def callback(step, total, current):
        calls.append((step, total, current.shape))
        return step < 3

    result, info = deconvolve(natural_pair.blurred, natural_pair.kernel, "richardson_lucy",
                              iterations=50, callback=callback, return_info=True)
    assert [c[0] for c in calls] == [1, 2, 3]
    assert calls[0][1] == 50 and calls[0][2] == natural_pair.blurred.shape
    assert info.iterations == 3 and info.stopped_by == "callback"
    assert result.shape == natural_pair.blurred.shape


@pytest.mark.parametrize("scene", ["natural", "stars"])
@pytest.mark.parametrize("method", ["auto", "richardson_lucy"])
def test_progress_ends_at_the_planned_total(scene, method):
    pair = blurred_pair(make_psf("airy", (15, 15), radius=3.0), (96, 96), scene_kind=scene,
                        noise=0.0, poisson_photons=300.0, rng=4)
    calls = []
    _, info = deconvolve(pair.blurred, pair.kernel, method, return_info=True,
                         callback=lambda step, total, current: calls.append((step, total)))
    steps = [step for step, _ in calls]
    assert steps == list(range(1, len(steps) + 1))
    assert all(step <= total for step, total in calls)
    # the run stops by the discrepancy principle, long before the default budget
    assert info.stopped_by == "discrepancy" and calls[-1][0] == calls[-1][1]
    assert info.iterations < 100
    if method == "auto":  # point sources skip the RL-TV part, which the total counted
        assert (info.regularization == 0) == (scene == "stars")


def test_auto_can_be_cancelled_in_every_part(natural_pair):
    image, psf = natural_pair.blurred, natural_pair.kernel
    _, full = deconvolve(image, psf, return_info=True)
    rl = full.iterations
    search, smoothing = SMOOTHING_BISECTIONS, SMOOTHING_ITERATIONS
    # in the RL part, the smoothing weight's search, the final smoothing, the RL-TV part
    for stop_at in (3, rl + 4, rl + search + 5, rl + search + smoothing + 5):
        calls = []

        def callback(step, total, current, calls=calls, stop_at=stop_at):
            calls.append(step)
            return step < stop_at

        result, info = deconvolve(image, psf, callback=callback, return_info=True)
        assert calls[-1] == stop_at and info.stopped_by == "callback"
        assert result.shape == image.shape and result.dtype == np.float32
        assert np.all(np.isfinite(result))
        assert (info.smoothing == 0) == (stop_at < rl + search)


@pytest.mark.parametrize("method", METHODS)
def test_an_image_smaller_than_the_psf_still_deconvolves(method):
    image = np.random.default_rng(0).random((6, 7)).astype(np.float32) + 1
    result = deconvolve(image, make_psf("gaussian", (9, 9), sigma=1.5), method)
    assert result.shape == image.shape and result.dtype == np.float32
    assert np.all(np.isfinite(result))
    if method not in ("wiener", "tikhonov"):  # the linear filters may undershoot
        assert result.min() >= 0


def test_regularization_can_be_set_and_is_reported(natural_pair):
    _, info = deconvolve(natural_pair.blurred, natural_pair.kernel, "tikhonov",
                         regularization=0.05, return_info=True)
    assert info.regularization == 0.05
    _, info = deconvolve(natural_pair.blurred, natural_pair.kernel, "wiener",
                         return_info=True)
    assert 0 < info.regularization < 1


@pytest.mark.parametrize("method", ["auto", "wiener", "richardson_lucy"])
def test_reported_parameters_repeat_the_run_without_estimating(blobs_3d_pair, method,
                                                               monkeypatch):
    image, psf = blobs_3d_pair.blurred, blobs_3d_pair.kernel
    expected, info = deconvolve(image, psf, method, return_info=True)
    assert {"method", "regularization", "background", "read_noise", "gain"} <= set(
        info.parameters)
    assert info.parameters["method"] != "auto"

    def no_estimate(*args, **kwargs):
        raise AssertionError("the noise model was estimated")

    monkeypatch.setattr(sys.modules["psfkit.deconvolve"], "noise_model", no_estimate)
    repeated = deconvolve(image, psf, **info.parameters)
    np.testing.assert_allclose(repeated, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_auto_is_rl_smoothed_to_the_noise_then_refined_by_rl_tv(natural_pair, monkeypatch):
    image, psf = natural_pair.blurred, natural_pair.kernel
    # rl_mix's RL part extrapolates with the projection step rule
    monkeypatch.setattr(sys.modules["psfkit.deconvolve"], "RL_STEP_RULE", "projection")
    result, info = deconvolve(image, psf, return_info=True)
    assert info.method == "rl_mix" and info.stopped_by == "discrepancy"
    assert info.regularization > 0 and info.smoothing > 0  # a photograph: extended
    noise = {key: info.parameters[key] for key in ("background", "read_noise", "gain")}
    _, stop = deconvolve(image, psf, "richardson_lucy", acceleration="geometric",
                         **noise, return_info=True)
    assert info.iterations == round(DISCREPANCY_EXTENSION["extended"] * stop.iterations)
    # the parts, each with no data-driven choice left
    sharp = deconvolve(image, psf, "rl_mix", iterations=info.iterations, regularization=0.0,
                       smoothing=info.smoothing, **noise)
    # RL-TV started from the smoothed estimate, and averaged with it
    module = sys.modules["psfkit.deconvolve"]
    data = image.astype(np.float32)
    kernel = module._prepare_psf(psf, image.ndim)
    model = module._NoiseModel.estimate(data, **noise)
    refined = module._richardson_lucy(
        module._PoissonData.from_image(data, model), module.BlurOperator(kernel, data.shape),
        iterations=RL_TV_REFINEMENT_ITERATIONS, acceleration=None,
        regularization=info.regularization, stop_at_noise=False, callback=None,
        info=DeconvolutionInfo(method="rl_tv"), initial=sharp)
    np.testing.assert_allclose(result, 0.5 * (sharp + refined), rtol=0, atol=1e-5)
    assert np.abs(refined - sharp).max() > 1e-2 * np.abs(sharp).max()
    # the smoothing brings the over-fitted RL result back to the noise level
    over = deconvolve(image, psf, "rl_mix", iterations=info.iterations, regularization=0.0,
                      smoothing=0.0, **noise)
    truth = natural_pair.sharp
    assert relative_error(sharp, truth) < 0.98 * relative_error(over, truth)
    assert relative_error(result, truth) < relative_error(sharp, truth)


def test_auto_runs_point_sources_longer_without_rl_tv(monkeypatch):
    monkeypatch.setattr(sys.modules["psfkit.deconvolve"], "RL_STEP_RULE", "projection")
    psf = make_psf("moffat", (15, 15), alpha=2.0, beta=2.5)
    pair = blurred_pair(psf, (128, 128), scene_kind="stars", noise=0.01, rng=3)
    result, info = deconvolve(pair.blurred, pair.kernel, return_info=True)
    assert info.regularization == 0 and info.smoothing > 0  # point sources: no RL-TV
    _, stop = deconvolve(pair.blurred, pair.kernel, "richardson_lucy",
                         acceleration="geometric", return_info=True,
                         **{key: info.parameters[key]
                            for key in ("background", "read_noise", "gain")})
    assert info.iterations == round(DISCREPANCY_EXTENSION["points"] * stop.iterations)
    assert relative_error(result, pair.sharp) < 0.6 * relative_error(pair.blurred, pair.sharp)


def test_replayed_acceleration_steps_make_a_crop_follow_the_whole_images_path():
    psf = make_psf("moffat", (15, 15), alpha=2.0, beta=2.5)
    pair = blurred_pair(psf, (160, 160), scene_kind="stars", noise=0.01, rng=5)
    whole, info = deconvolve(pair.blurred, psf, "richardson_lucy", iterations=60,
                             return_info=True)
    assert len(info.steps) == 60 and info.parameters["acceleration_steps"] == info.steps
    assert max(info.steps) > 0.3  # the run did extrapolate
    # the central crop, with and without the whole image's steps; compare away from its edges
    crop, inner = (slice(30, 130),) * 2, (slice(50, 110),) * 2
    options = {key: info.parameters[key] for key in ("background", "read_noise", "gain")}
    own = deconvolve(pair.blurred[crop], psf, "richardson_lucy", iterations=60, **options)
    replayed = deconvolve(pair.blurred[crop], psf, "richardson_lucy", iterations=60,
                          acceleration_steps=info.steps, **options)
    reference = whole[inner]
    inside = (slice(20, 80),) * 2
    replayed_error = relative_error(replayed[inside], reference)
    own_error = relative_error(own[inside], reference)
    assert replayed_error < 0.01 and replayed_error < 0.5 * own_error


def test_noise_model_recovers_gain_and_read_noise():
    rng = np.random.default_rng(10)
    level = np.linspace(50, 2000, 256, dtype=np.float64)[None, :] * np.ones((256, 1))
    gain, read = 0.5, 3.0
    image = gain * rng.poisson(level) + rng.normal(0, read, level.shape)
    estimated_gain, intercept = noise_model(image)
    assert estimated_gain == pytest.approx(gain, rel=0.1)
    assert intercept == pytest.approx(read**2, abs=5.0)


@pytest.mark.parametrize(
    ("image", "psf", "kwargs", "error", "match"),
    [
        (np.full((16, 16), np.nan), np.ones((3, 3)), {}, ValueError, "NaN"),
        (np.ones((16, 16)) * 1j, np.ones((3, 3)), {}, TypeError, "real"),
        (np.ones((16, 16)), np.ones((3, 3, 3)), {}, ValueError, "psf must be 2D"),
        (np.ones(16), np.ones(3), {}, ValueError, "2D or 3D"),
        (np.ones((16, 16)), np.zeros((3, 3)), {}, ValueError, "positive sum"),
        (np.ones((16, 16)), np.ones((3, 3)), {"method": "magic"}, ValueError, "method"),
        (np.ones((16, 16)), np.ones((3, 3)), {"iterations": 0}, ValueError, "iterations"),
        (np.ones((16, 16)), np.ones((3, 3)), {"acceleration": "warp"}, ValueError,
         "acceleration"),
        (np.ones((16, 16)), np.ones((3, 3)), {"method": "tikhonov", "regularization": -1.0},
         ValueError, "regularization"),
        (np.ones((16, 16)), np.ones((3, 3)), {"gain": -1.0}, ValueError, "gain"),
        (np.ones((16, 16)), np.ones((3, 3)), {"acceleration_steps": [0.5, -1.0]},
         ValueError, "acceleration_steps"),
        (np.ones((16, 16)), np.ones((3, 3)), {"method": "rl_mix", "smoothing": -1.0},
         ValueError, "smoothing"),
    ],
)
def test_bad_input_gives_a_clear_error(image, psf, kwargs, error, match):
    with pytest.raises(error, match=match):
        deconvolve(image, psf, **kwargs)
