"""Shared fixtures: a seeded random generator and tolerance per dtype."""

import numpy as np
import pytest

from psfkit.models import make_psf
from psfkit.samples import blurred_pair


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def small_blurred():
    """A 9×9 Gaussian PSF and a 64×64 image it blurred (``blurred_pair``'s defaults)."""
    psf = make_psf("gaussian", (9, 9), sigma=1.5)
    return psf, blurred_pair(psf, (64, 64)).blurred
