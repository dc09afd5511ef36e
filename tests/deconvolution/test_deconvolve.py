"""Tests of psfkit.deconvolve, the public function, against known truths made like a camera
makes them."""

from __future__ import annotations

import numpy as np
import pytest

from psfkit import deconvolve
from psfkit.deconvolution import METHOD_RUNNERS, METHODS
from psfkit.deconvolution._noise import NoiseModel
from psfkit.metrics import image_error as relative_error
from psfkit.models import make_psf
from psfkit.samples import blurred_pair


def test_every_module_is_a_plain_import_and_the_public_function_is_the_packages():
    import psfkit
    import psfkit.deconvolution._auto as auto
    import psfkit.deconvolution._richardson_lucy as rl

    assert psfkit.deconvolve is psfkit.deconvolution.deconvolve
    assert rl.richardson_lucy.__module__ == "psfkit.deconvolution._richardson_lucy"
    assert METHOD_RUNNERS["rl_mix"] is auto.rl_mix


def test_every_method_has_a_runner_and_the_default_is_the_risk_choice(natural_pair):
    assert set(METHOD_RUNNERS) == set(METHODS)
    _, info = deconvolve(natural_pair.blurred, natural_pair.kernel, return_info=True)
    assert info.method == info.choice.winner.method and info.stopped_by == "risk"
    assert {c.method for c in info.choice.candidates} == {"richardson_lucy", "tikhonov",
                                                           "rl_mix"}


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
@pytest.mark.parametrize("method", ["auto", "rl_mix", "richardson_lucy"])
def test_progress_ends_at_the_planned_total(scene, method):
    pair = blurred_pair(make_psf("airy", (15, 15), radius=3.0), (96, 96), scene_kind=scene,
                        noise=0.0, poisson_photons=300.0, rng=4)
    calls = []
    _, info = deconvolve(pair.blurred, pair.kernel, method, return_info=True,
                         callback=lambda step, total, current: calls.append((step, total)))
    steps = [step for step, _ in calls]
    assert steps == list(range(1, len(steps) + 1))
    assert all(step <= total for step, total in calls)
    # the run stops by the discrepancy principle (auto: by the least risk), long before
    # the default budget
    assert info.stopped_by == ("risk" if method == "auto" else "discrepancy")
    assert calls[-1][0] == calls[-1][1] and info.iterations < 100
    if method == "rl_mix":  # point sources skip the RL-TV part, which the total counted
        assert (info.regularization == 0) == (scene == "stars")


@pytest.mark.parametrize("method", METHODS)
def test_a_psf_larger_than_the_image_is_refused_naming_both_shapes(method):
    # the rule of the CLI and the chunked path too: no pixel would see the whole PSF
    image = np.random.default_rng(0).random((6, 7)).astype(np.float32) + 1
    with pytest.raises(ValueError, match=r"psf \(9, 9\) is larger than the image's spatial "
                                         r"shape \(6, 7\)"):
        deconvolve(image, make_psf("gaussian", (9, 9), sigma=1.5), method)


def test_regularization_can_be_set_and_is_reported(natural_pair):
    _, info = deconvolve(natural_pair.blurred, natural_pair.kernel, "tikhonov",
                         regularization=0.05, return_info=True)
    assert info.regularization == 0.05
    _, info = deconvolve(natural_pair.blurred, natural_pair.kernel, "wiener",
                         return_info=True)
    assert 0 < info.regularization < 1


@pytest.mark.parametrize("method", ["auto", "wiener", "richardson_lucy"])
def test_reported_parameters_repeat_the_run_without_estimating(blobs_3d_pair, method):
    image, psf = blobs_3d_pair.blurred, blobs_3d_pair.kernel
    expected, info = deconvolve(image, psf, method, return_info=True)
    assert {"method", "regularization", "background", "read_noise", "gain"} <= set(
        info.parameters)
    assert info.parameters["method"] != "auto"

    def no_estimate(*args, **kwargs):
        raise AssertionError("the noise model was estimated")

    noise = {key: info.parameters[key] for key in ("background", "read_noise", "gain")}
    model = NoiseModel.estimate(image, **noise, estimator=no_estimate)
    assert model.parameters() == pytest.approx(noise, rel=1e-6)
    repeated = deconvolve(image, psf, **info.parameters)
    np.testing.assert_allclose(repeated, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


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
