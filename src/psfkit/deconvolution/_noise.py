"""The noise model of the image being deconvolved: ``var(image) = gain * mean + intercept``,
and how each method family reads it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from psfkit.noise import noise_model


@dataclass(frozen=True)
class NoiseModel:
    """``var(image) = gain * mean + intercept``, and how the RL family shifts the data.

    The shifted-Poisson approximation: ``image + intercept / gain`` has a variance of
    ``gain`` times its mean, so Richardson–Lucy runs on it with the model
    ``H x + background + intercept / gain``. With no signal-dependent noise (``gain`` = 0)
    the noise is Gaussian with variance ``intercept``.
    """

    gain: float
    intercept: float
    background: float
    rms: float
    poisson: bool

    @classmethod
    def estimate(cls, image, background=None, read_noise=None, gain=None, *,
                 estimator=noise_model) -> NoiseModel:
        """The noise model of ``image``; the parts given are used as they are.

        With ``gain``, ``read_noise`` and ``background`` all given, nothing is estimated
        and the model does not depend on the image: shot noise when ``gain > 0``,
        Gaussian noise of standard deviation ``read_noise`` when ``gain == 0``. Otherwise
        ``estimator(image)`` gives the ``(gain, intercept)`` of the image.
        """
        if gain is not None and read_noise is not None and background is not None:
            gain, read_noise, background = float(gain), float(read_noise), float(background)
            if gain < 0 or read_noise < 0:
                raise ValueError(f"gain and read_noise must be >= 0, got {gain}, "
                                 f"{read_noise}")
            return cls(gain=gain, intercept=read_noise**2 - gain * background,
                       background=background, rms=read_noise, poisson=gain > 0)
        estimated_gain, intercept = estimator(image)
        if gain is not None:
            if gain < 0:
                raise ValueError(f"gain must be >= 0, got {gain}")
            gain = float(gain)
        else:
            gain = estimated_gain
        level = float(np.mean(image, dtype=np.float64))
        if background is None:
            background = max(0.0, -intercept / gain) if gain > 0 else 0.0
        background = float(background)
        if read_noise is not None:
            intercept = float(read_noise) ** 2 - gain * background
        variance = max(gain * level + intercept, 1e-30)
        poisson = gain > 0 and gain * max(level - background, 0.0) > 0.5 * variance
        return cls(gain=gain, intercept=intercept, background=background,
                   rms=float(np.sqrt(variance)), poisson=poisson)

    def scaled(self, factor: float) -> NoiseModel:
        """The model of the image multiplied by ``factor``."""
        return replace(self, gain=self.gain * factor, intercept=self.intercept * factor**2,
                       background=self.background * factor, rms=self.rms * factor)

    def parameters(self) -> dict:
        """``background``, ``read_noise`` and ``gain`` for :func:`psfkit.deconvolve` that
        give this model back without estimating anything."""
        if self.poisson:
            read_noise = np.sqrt(max(self.intercept + self.gain * self.background, 0.0))
            return {"background": self.background, "read_noise": float(read_noise),
                    "gain": self.gain}
        return {"background": self.background, "read_noise": self.rms, "gain": 0.0}

    def relative_noise(self, image) -> float:
        """Noise standard deviation over the signal, both at the image's mean level."""
        level = max(float(np.mean(image, dtype=np.float64)) - self.background, 1e-30)
        variance = self.gain * level if self.poisson else self.rms**2
        return float(np.sqrt(variance)) / level

    def shift(self) -> float:
        """What RL adds to the background-subtracted data and model: ``intercept / gain``
        (plus the background) for shot noise; three noise sigmas for Gaussian noise, so
        that few noisy dark pixels are clipped at zero."""
        if self.poisson:
            return max(self.intercept / self.gain + self.background, 0.0)
        return 3.0 * self.rms

    def variance_terms(self) -> tuple[float, float]:
        """``(a, c)`` with ``variance = a * (RL model) + c``."""
        return (self.gain, 0.0) if self.poisson else (0.0, max(self.rms**2, 1e-30))
