"""Tests of the deconvolution's noise model against cameras of known gain and read noise."""

from __future__ import annotations

import numpy as np
import pytest

from psfkit.deconvolution._noise import NoiseModel
from psfkit.noise import noise_model


def test_noise_model_recovers_gain_and_read_noise():
    rng = np.random.default_rng(10)
    level = np.linspace(50, 2000, 256, dtype=np.float64)[None, :] * np.ones((256, 1))
    gain, read = 0.5, 3.0
    image = gain * rng.poisson(level) + rng.normal(0, read, level.shape)
    estimated_gain, intercept = noise_model(image)
    assert estimated_gain == pytest.approx(gain, rel=0.1)
    assert intercept == pytest.approx(read**2, abs=5.0)


def test_a_fully_given_noise_model_estimates_nothing():
    def no_estimate(image):
        raise AssertionError("the noise model was estimated")

    image = np.full((16, 16), np.nan)  # nothing may be read from it
    shot = NoiseModel.estimate(image, background=10.0, read_noise=2.0, gain=0.5,
                               estimator=no_estimate)
    assert shot.poisson and shot.intercept == pytest.approx(4.0 - 5.0)
    assert shot.parameters() == pytest.approx({"background": 10.0, "read_noise": 2.0,
                                               "gain": 0.5})
    gaussian = NoiseModel.estimate(image, background=0.0, read_noise=3.0, gain=0.0,
                                   estimator=no_estimate)
    assert not gaussian.poisson and gaussian.rms == 3.0
    assert gaussian.shift() == 9.0 and gaussian.variance_terms() == (0.0, 9.0)


def test_the_estimator_fills_in_what_is_not_given():
    image = np.full((8, 8), 20.0)
    model = NoiseModel.estimate(image, read_noise=1.0, estimator=lambda image: (0.5, -4.0))
    # background from the intercept: -(-4) / 0.5; read noise replaces the intercept
    assert model.background == 8.0 and model.intercept == pytest.approx(1.0 - 4.0)
    assert model.rms == pytest.approx(np.sqrt(0.5 * 20.0 - 3.0))
