"""The prediction of a blurred image from a saved kernel: the estimate's own model, and the
residual ratio against an observation."""

import numpy as np
import pytest

from psfkit import estimate_kernel, make_psf
from psfkit._prediction import predict_blurred, prediction_window, residual_ratio
from psfkit.samples import blurred_pair


@pytest.fixture(scope="module")
def estimated():
    pair = blurred_pair(make_psf("gaussian", (15, 15), sigma=2.0), (128, 128), noise=0.01,
                        gain=0.8, offset=0.1, shift=(0.3, -0.6), rng=2)
    return pair, estimate_kernel(pair.sharp, pair.blurred)


def test_the_estimate_pair_is_predicted_as_its_reblurred_image(estimated):
    pair, estimate = estimated
    predicted = predict_blurred(pair.sharp, estimate.kernel, gain=estimate.gain,
                                offset=estimate.offset, shift=estimate.shift)
    assert predicted.dtype == np.float32 and predicted.shape == pair.sharp.shape
    np.testing.assert_allclose(predicted, estimate.reblurred, atol=0.02 * pair.noise_sigma)


def test_the_residual_ratio_is_the_estimates_on_its_own_pair(estimated):
    pair, estimate = estimated
    predicted = predict_blurred(pair.sharp, estimate.kernel, gain=estimate.gain,
                                offset=estimate.offset, shift=estimate.shift)
    window = prediction_window(pair.sharp.shape, estimate.kernel.shape, estimate.shift)
    assert window == (slice(8, 120), slice(8, 120))
    assert residual_ratio(pair.blurred, predicted, window) == pytest.approx(
        estimate.residual_ratio, rel=0.03)


def test_a_constant_observation_is_refused_by_name():
    flat = np.ones((32, 32), np.float32)
    with pytest.raises(ValueError, match="the observed image is constant"):
        residual_ratio(flat, flat, prediction_window(flat.shape, (5, 5)))


def test_a_kernel_that_leaves_no_whole_pixel_is_refused():
    image = np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="leave no pixel that the kernel sees whole"):
        residual_ratio(image, image, prediction_window(image.shape, (17, 17)))
