"""The contract every measured PSF meets, checked by the tests of prepare_psf and average_beads."""

import numpy as np
import pytest

from psfkit.align import centroid


def assert_psf_contract(psf, centring=0.1):
    """Odd float32, nonnegative, unit sum; centroid on the middle pixel within the noise
    (a symmetric PSF is centred on its centre of symmetry, measured more precisely)."""
    assert psf.dtype == np.float32
    assert all(n % 2 == 1 for n in psf.shape)
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    offset = centroid(psf) - np.array(psf.shape) // 2
    assert np.max(np.abs(offset)) < centring
