"""Noise estimation against known noise levels, on smooth and structured images."""

import numpy as np
import pytest

from psfkit import noise_sigma, samples


@pytest.mark.parametrize("shape", [(256, 256), (24, 96, 96)])
@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_noise_sigma_recovers_white_noise_on_a_ramp(rng, shape, sigma):
    ramp = np.add.outer(np.linspace(0, 3, shape[0]), np.zeros(shape[1:]))
    image = ramp + rng.normal(0, sigma, shape)
    assert noise_sigma(image) == pytest.approx(sigma, rel=0.05)


def test_noise_sigma_is_not_fooled_much_by_a_natural_scene(rng):
    photo = samples.scene("natural", (256, 256))
    image = photo + rng.normal(0, 0.02, photo.shape)
    assert noise_sigma(image) == pytest.approx(0.02, rel=0.2)


def test_noise_sigma_leaves_the_input_untouched(rng):
    image = rng.normal(0, 1, (64, 64)).astype(np.float32)
    before = image.copy()
    noise_sigma(image)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("bad,error", [(np.array([[np.nan, 1.0]] * 4), ValueError),
                                       (np.zeros((0, 4)), ValueError),
                                       (np.ones((4, 4), dtype=complex), TypeError)])
def test_noise_sigma_rejects_bad_input(bad, error):
    with pytest.raises(error):
        noise_sigma(bad)


def test_noise_sigma_of_mostly_flat_quantised_data_is_positive():
    image = np.zeros((64, 64), dtype=np.float32)
    image[::7, ::5] = 1.0  # a few isolated quantisation steps on a flat field
    sigma = noise_sigma(image)
    assert 0 < sigma < 0.5
