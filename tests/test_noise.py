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


def test_rim_noise_rules_read_the_mean_rms_and_zero_share_of_the_outer_two_pixels():
    from psfkit.noise import rim_noise_mean, rim_noise_rms, rim_zero_fraction

    # the 32 values of a 6×6 rim: 16 at 3 and 16 at -1; the 2×2 centre is no rim
    kernel = np.where(np.arange(6)[:, None] < 3, 3.0, -1.0) * np.ones((6, 6))
    kernel[2:4, 2:4] = 100.0
    assert rim_noise_mean(kernel) == pytest.approx(1.0)
    assert rim_noise_rms(kernel) == pytest.approx(np.sqrt(5.0))
    assert rim_zero_fraction(kernel) == pytest.approx(0.5)
    empty = np.zeros((0, 0))
    assert (rim_noise_mean(empty), rim_noise_rms(empty), rim_zero_fraction(empty)) == (0, 0, 0)
