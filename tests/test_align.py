"""Sub-pixel shift estimation and kernel centring against known shifts."""

import numpy as np
import pytest

from psfkit import make_psf, samples
from psfkit.align import centroid, estimate_shift
from psfkit.operators import fourier_shift


@pytest.mark.parametrize("shift", [(0.3, -0.7), (-2.25, 1.6)])
def test_estimate_shift_finds_a_subpixel_translation_of_a_natural_scene(shift):
    pair = samples.blurred_pair(make_psf("gaussian", (11, 11), sigma=1.5), (192, 192),
                                noise=0.005, shift=shift)
    estimated = estimate_shift(pair.sharp, pair.blurred)
    np.testing.assert_allclose(estimated, shift, atol=0.1)


def test_fourier_shift_moves_the_centroid_by_the_shift():
    kernel = make_psf("gaussian", (21, 21), sigma=2.0)
    moved = fourier_shift(kernel, (0.4, -1.3))
    np.testing.assert_allclose(centroid(moved) - centroid(kernel), (0.4, -1.3), atol=1e-3)


def test_mirrored_fourier_shift_of_a_ramp_moves_it_without_wrapping():
    ramp = np.tile(np.arange(40, dtype=np.float32), (8, 1))
    moved = fourier_shift(ramp, (0.0, 2.0), edges="mirror")
    np.testing.assert_allclose(moved[:, 10:30], ramp[:, 8:28], atol=0.05)


def test_centroid_of_an_empty_array_is_an_error():
    with pytest.raises(ValueError, match="no positive"):
        centroid(np.zeros((5, 5)))


@pytest.mark.parametrize("upsample", [0, 10**6, 2.5, True])
def test_estimate_shift_refuses_an_upsample_factor_out_of_range(upsample):
    image = np.zeros((16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="upsample must be a whole number from 1 to 1000"):
        estimate_shift(image, image, upsample=upsample)


def test_estimate_shift_takes_2d_and_3d_only():
    with pytest.raises(ValueError, match="reference must be 2D or 3D"):
        estimate_shift(np.zeros((2, 2, 16, 16)), np.zeros((2, 2, 16, 16)))


def test_estimate_shift_names_both_images_when_their_shapes_differ():
    with pytest.raises(ValueError, match=r"reference and moving must have one shape"):
        estimate_shift(np.ones((8, 8)), np.ones((8, 9)))


@pytest.mark.parametrize("constant", ["reference", "moving"])
def test_estimate_shift_refuses_a_constant_image_instead_of_warning(constant):
    textured = np.random.default_rng(0).random((16, 16))
    images = {"reference": textured, "moving": textured, constant: np.zeros((16, 16))}
    with pytest.raises(ValueError, match=f"{constant} has no contrast"):
        estimate_shift(images["reference"], images["moving"])
