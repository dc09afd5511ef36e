"""Fixtures of the deconvolution tests: blurred pairs made like a camera makes them."""

import pytest

from psfkit.models import make_psf
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
