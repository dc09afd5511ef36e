"""Issue #17 for psfkit.deconvolve: every bad keyword is refused by name before any work,
a non-finite result is an error, a tiny TV weight raises no warning, and a call too large
for memory points at the chunked path."""

from __future__ import annotations

import re

import numpy as np
import pytest

from psfkit import deconvolve
from psfkit.deconvolution import MAX_ITERATIONS, MAX_REGULARIZATION
from psfkit.deconvolution._tv import tv_prox
from psfkit.models import make_psf
from psfkit.samples import blurred_pair

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("method", ["auto", "wiener", "tikhonov", "rl_tv"])
@pytest.mark.parametrize(("keywords", "message"), [
    ({"regularization": NAN}, "regularization must be a finite number, got nan"),
    ({"regularization": INF}, "regularization must be a finite number, got inf"),
    ({"regularization": 1e300}, "regularization <= 1e+06"),
    ({"regularization": "nope"}, "regularization must be a number >= 0 or 'auto'"),
    ({"smoothing": INF}, "smoothing must be a finite number"),
    ({"background": NAN}, "background must be a finite number"),
    ({"background": INF}, "background must be a finite number"),
    ({"background": 1e300}, "background <= 3.40282e+38"),
    ({"read_noise": NAN}, "read_noise must be a finite number"),
    ({"read_noise": INF}, "read_noise must be a finite number"),
    ({"gain": NAN}, "gain must be a finite number"),
    ({"gain": INF}, "gain must be a finite number"),
    ({"acceleration_steps": [100.0] * 5}, "acceleration_steps must each be below 1"),
])
def test_a_non_finite_or_out_of_range_keyword_is_refused_by_name(small_blurred, method, keywords,
                                                                 message):
    psf, blurred = small_blurred
    with pytest.raises(ValueError, match=re.escape(message)):
        deconvolve(blurred, psf, method, **keywords)


@pytest.mark.parametrize("method", ["auto", "wiener", "rl_tv"])
@pytest.mark.parametrize(("keywords", "message"), [
    ({"iterations": INF}, "iterations must be an int, got inf"),
    ({"iterations": 5.0}, "iterations must be an int, got 5.0"),
    ({"iterations": NAN}, "iterations must be an int, got nan"),
    ({"callback": 5}, "callback must be a function or None, got 5"),
    ({"tuning": {}}, "tuning must be an AutoTuning"),
    ({"acceleration_steps": ["x"]}, "acceleration_steps[i] must be a number"),
])
def test_a_keyword_of_the_wrong_type_is_a_type_error_naming_it(small_blurred, method, keywords,
                                                               message):
    # wiener ignores iterations and callback, but a wrong value is refused all the same
    psf, blurred = small_blurred
    with pytest.raises(TypeError, match=re.escape(message)):
        deconvolve(blurred, psf, method, **keywords)


def test_the_largest_regularization_gives_a_finite_result_for_every_bounded_method(small_blurred):
    psf, blurred = small_blurred
    for method in ("wiener", "tikhonov", "rl_tv", "rl_mix"):
        result = deconvolve(blurred, psf, method, regularization=MAX_REGULARIZATION,
                            iterations=5)
        assert result.shape == blurred.shape and np.all(np.isfinite(result)), method


def test_a_numpy_integer_iteration_count_is_accepted(small_blurred):
    psf, blurred = small_blurred
    np.testing.assert_array_equal(
        deconvolve(blurred, psf, "richardson_lucy", iterations=np.int64(3)),
        deconvolve(blurred, psf, "richardson_lucy", iterations=3))


def test_a_non_finite_result_is_an_error_that_says_what_to_change(small_blurred):
    # unregularised, the Wiener filter amplifies a 1e38 image beyond float32's range
    psf, blurred = small_blurred
    huge = (blurred / blurred.max() * 1e38).astype(np.float32)
    with pytest.raises(ValueError, match=r"deconvolve's result \(method 'wiener'\) contains "
                                         r"NaN or infinite values; the settings do not suit "
                                         r".*or make the regularization smaller"):
        deconvolve(huge, psf, "wiener", regularization=0.0, background=0.0, read_noise=1.0,
                   gain=0.0)


def test_fista_tv_on_a_stack_of_identical_planes_raises_no_warning():
    # the automatic TV weight falls to ~1e-20 here: the prox must not square 1e20 steps
    psf2d = make_psf("gaussian", (9, 9), sigma=1.5)
    plane = blurred_pair(psf2d, (64, 64)).blurred
    stack = np.stack([plane] * 5)
    result = deconvolve(stack, make_psf("gaussian", (5, 5, 5), sigma=1.0), "fista_tv")
    assert result.shape == stack.shape and np.all(np.isfinite(result))
    assert abs(float(result.mean()) / float(plane.mean()) - 1) < 0.1


def test_fista_tv_on_a_bool_image_raises_no_warning(small_blurred):
    psf, blurred = small_blurred
    mask = blurred > blurred.mean()
    result = deconvolve(mask, psf, "fista_tv")
    assert np.all(np.isfinite(result))
    assert abs(float(result.mean()) - float(mask.mean())) < 0.05


def test_a_negligible_tv_weight_leaves_the_values_projected_onto_the_positives():
    values = np.random.default_rng(1).normal(size=(16, 16)).astype(np.float32)
    dual = [np.zeros_like(values), np.zeros_like(values)]
    np.testing.assert_array_equal(tv_prox(values, 1e-30, dual), np.maximum(values, 0))
    zeros = np.zeros((8, 8), np.float32)
    np.testing.assert_array_equal(tv_prox(zeros, 1e-45, [zeros.copy(), zeros.copy()]), 0)


def test_an_image_too_large_for_memory_is_refused_pointing_at_the_chunked_path():
    volume = np.broadcast_to(np.float32(1), (4000, 4000, 400))  # 24 GiB as float32, no memory
    with pytest.raises(ValueError, match=r"deconvolving the image \(4000, 4000, 400\) at once "
                                         r"needs about 238\.4 GiB.*"
                                         r"psfkit\.deconvolve_chunked\(image, psf, "
                                         r"chunks=\(\d+, \d+, \d+\)\)"):
        deconvolve(volume, make_psf("gaussian", (5, 5, 5), sigma=1.0))


@pytest.mark.parametrize("method", ["wiener", "richardson_lucy", "fista_tv", "auto"])
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_an_image_of_extreme_magnitude_is_deconvolved_as_at_unit_scale(small_blurred,
                                                                       method, scale):
    # was: overflow warnings at 1e30, and richardson_lucy 3e9 off at 1e-30
    psf, blurred = small_blurred
    reference, reference_info = deconvolve(blurred, psf, method, return_info=True)
    result, info = deconvolve((blurred * scale).astype(np.float32), psf, method,
                              return_info=True)
    error = float(np.abs(result / scale - reference).max() / np.abs(reference).max())
    assert error < 1e-2
    assert info.noise_sigma == pytest.approx(reference_info.noise_sigma * scale, rel=1e-3)


def test_a_power_of_two_scale_gives_the_same_result_scaled_exactly(small_blurred):
    psf, blurred = small_blurred
    factor = np.float32(2.0**60)
    np.testing.assert_array_equal(deconvolve(blurred * factor, psf) / factor,
                                  deconvolve(blurred, psf))


@pytest.mark.parametrize("method", ["auto", "richardson_lucy", "fista_tv"])
def test_an_absurd_iteration_count_is_refused_before_any_work(small_blurred, method):
    psf, blurred = small_blurred
    with pytest.raises(ValueError, match=re.escape("iterations must be an int <= 100000, got "
                                                   "1000000000000 (MAX_ITERATIONS")):
        deconvolve(blurred, psf, method, iterations=10**12)
    assert deconvolve(blurred, psf, method, iterations=MAX_ITERATIONS, callback=lambda *_: False
                      ).shape == blurred.shape
