"""The synthetic data the tests, benchmarks and demo rely on is what it says it is."""

import numpy as np
import pytest

from psfkit import convolve, make_psf, samples


def test_blurred_pair_without_noise_equals_the_valid_convolution_of_the_scene():
    kernel = make_psf("gaussian", (9, 9), sigma=1.5)
    big = samples.scene("natural", (120, 120))
    pair = samples.blurred_pair(kernel, (96, 96), scene_image=big, noise=0.0, gain=2.0,
                                offset=0.5)
    margin = 4 + 8
    expected = 2.0 * convolve(big, kernel, mode="same")[margin:margin + 96, margin:margin + 96]
    np.testing.assert_allclose(pair.blurred, expected + 0.5, atol=1e-5)
    np.testing.assert_array_equal(pair.sharp, big[margin:margin + 96, margin:margin + 96])


def test_blurred_pair_noise_has_the_requested_level(rng):
    kernel = make_psf("gaussian", (9, 9), sigma=1.5)
    clean = samples.blurred_pair(kernel, (128, 128), noise=0.0, rng=1)
    noisy = samples.blurred_pair(kernel, (128, 128), noise=0.02, rng=1)
    assert np.std(noisy.blurred - clean.blurred) == pytest.approx(noisy.noise_sigma, rel=0.05)


@pytest.mark.parametrize("kind", samples.SCENES)
def test_scenes_have_the_requested_shape_and_dtype(kind):
    image = samples.scene(kind, (64, 80))
    assert image.shape == (64, 80) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 5


def test_bead_image_places_every_bead_inside_the_frame():
    psf = make_psf("airy", (15, 15), radius=2.5)
    image, centres = samples.bead_image(psf, (200, 200), count=10)
    assert centres.shape == (10, 2)
    assert np.all(centres >= 7) and np.all(centres <= 192)
    brightest = image[tuple(np.round(centres).astype(int).T)]
    assert np.all(brightest > 100 + 500)


def test_unknown_scene_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scene"):
        samples.scene("galaxy")


def test_field_blurred_volume_with_a_constant_blur_is_the_convolution_of_its_scene():
    import scipy.signal

    pair = samples.field_blurred_pair((20, 48, 48), (2.0, 2.0), sigma_z=1.5,
                                      scene_kind="blobs", noise=0.0, rng=0)
    assert pair.blurred.shape == pair.sharp.shape == (20, 48, 48)
    assert pair.sigma.shape == (48, 48)
    kernel = make_psf("gaussian", (13, 17, 17), sigma=(1.5, 2.0, 2.0), pixel_integrated=True)
    expected = scipy.signal.fftconvolve(pair.sharp, kernel, mode="same")
    inner = (slice(6, -6), slice(8, -8), slice(8, -8))  # where the scene lies in the frame
    np.testing.assert_allclose(pair.blurred[inner], expected[inner], atol=1e-6)
    with pytest.raises(ValueError, match="shape must be"):
        samples.field_blurred_pair((4, 20, 48, 48))
