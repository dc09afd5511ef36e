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

    The model is held as :func:`psfkit.deconvolve` takes it, ``background``, ``read_noise``
    and ``gain``, with ``intercept = read_noise**2 - gain * background`` computed from them
    in one place, so that :meth:`parameters` given back to :meth:`estimate` rebuild the
    model bit for bit on the same image. A model that is not ``poisson`` is held as the
    Gaussian model it acts as (``gain`` 0, ``read_noise`` its ``rms``).
    """

    gain: float
    intercept: float
    background: float
    rms: float
    poisson: bool
    read_noise: float = 0.0

    @classmethod
    def estimate(cls, image, background=None, read_noise=None, gain=None, *,
                 estimator=noise_model) -> NoiseModel:
        """The noise model of ``image``; the parts given are used as they are.

        With ``gain``, ``read_noise`` and ``background`` all given, nothing is estimated:
        shot noise when ``gain > 0`` (its ``rms`` the noise at the image's mean level),
        Gaussian noise of standard deviation ``read_noise`` when ``gain == 0``. Otherwise
        ``estimator(image)`` gives the ``(gain, intercept)`` of the image; a shot-noise
        model's read noise is then what the intercept leaves at the background (0 where
        it would leave a negative variance).
        """
        if gain is not None and read_noise is not None and background is not None:
            gain, read_noise, background = float(gain), float(read_noise), float(background)
            if gain < 0 or read_noise < 0:
                raise ValueError(f"gain and read_noise must be >= 0, got {gain}, "
                                 f"{read_noise}")
            if gain == 0:
                return cls._gaussian(read_noise, background)
            return cls._shot(gain, read_noise, background, _level(image))
        estimated_gain, intercept = estimator(image)
        if gain is not None:
            if gain < 0:
                raise ValueError(f"gain must be >= 0, got {gain}")
            gain = float(gain)
        else:
            gain = estimated_gain
        if background is None:
            background = max(0.0, -intercept / gain) if gain > 0 else 0.0
        background = float(background)
        if read_noise is not None:
            intercept = float(read_noise) ** 2 - gain * background
        level = _level(image)
        variance = max(gain * level + intercept, 1e-30)
        if not (gain > 0 and gain * max(level - background, 0.0) > 0.5 * variance):
            return cls._gaussian(float(np.sqrt(variance)), background)
        if read_noise is None:
            read_noise = np.sqrt(max(intercept + gain * background, 0.0))
        return cls._shot(gain, float(read_noise), background, level)

    @classmethod
    def _gaussian(cls, read_noise: float, background: float) -> NoiseModel:
        """Gaussian noise of standard deviation ``read_noise`` around ``background``."""
        return cls(gain=0.0, intercept=read_noise**2, background=background, rms=read_noise,
                   poisson=False, read_noise=read_noise)

    @classmethod
    def _shot(cls, gain: float, read_noise: float, background: float, level: float) -> NoiseModel:
        """Shot noise: ``gain`` times the signal above ``background`` plus ``read_noise``
        squared; its ``rms`` at the mean ``level``."""
        intercept = read_noise**2 - gain * background
        variance = max(gain * level + intercept, 1e-30)
        return cls(gain=gain, intercept=intercept, background=background,
                   rms=float(np.sqrt(variance)), poisson=True, read_noise=read_noise)

    def scaled(self, factor: float) -> NoiseModel:
        """The model of the image multiplied by ``factor``."""
        return replace(self, gain=self.gain * factor, intercept=self.intercept * factor**2,
                       background=self.background * factor, rms=self.rms * factor,
                       read_noise=self.read_noise * factor)

    def parameters(self) -> dict:
        """``background``, ``read_noise`` and ``gain`` for :func:`psfkit.deconvolve` that
        give this model back without estimating anything."""
        return {"background": self.background, "read_noise": self.read_noise,
                "gain": self.gain}

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


def _level(image) -> float:
    """The image's mean, where the model's ``rms`` is measured."""
    return float(np.mean(image, dtype=np.float64))
