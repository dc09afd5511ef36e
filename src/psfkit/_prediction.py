"""A saved kernel applied to other images: the prediction of their blurred versions and how
well it matches an observed one (seed 001's calibration workflow: estimate the kernel once
on one pair, then predict the blurred image of other sharp ones).

The model is the one :func:`psfkit.estimate_kernel` fits,
``blurred = gain · (kernel ∗ sharp)(x − shift) + offset + noise``, computed the same way
(the sharp image extended by reflection at its edges, the shift band-limited), so that the
estimate's own pair is predicted as its ``reblurred``; the match is the estimate's residual
ratio, the RMS residual over the noise of the observed image where the prediction saw only
real pixels: about 1 when the kernel explains the observation down to its noise.
"""

from __future__ import annotations

import math

import numpy as np

from ._kernel_fit import _shift_image
from .estimate import _reblur
from .noise import floored_noise_sigma


def predict_blurred(sharp: np.ndarray, kernel: np.ndarray, *, gain: float = 1.0,
                    offset: float = 0.0, shift=None) -> np.ndarray:
    """``gain · (kernel ∗ sharp)(x − shift) + offset`` on the frame of ``sharp`` (float32),
    with ``kernel`` centred on its centre pixel and ``shift`` in pixels per axis. A
    prediction beyond float32's range holds infinities or NaN, without a NumPy warning:
    the caller refuses it by name (``psfkit convolve`` writes nothing)."""
    with np.errstate(over="ignore", invalid="ignore"):
        model = _reblur(sharp, kernel, 0.0) * np.float32(gain)
        if shift is not None:
            model = _shift_image(model, np.asarray(shift, dtype=float))
        return (model + np.float32(offset)).astype(np.float32)


def prediction_window(shape, kernel_shape, shift=None) -> tuple[slice, ...]:
    """The region of a prediction that saw only real pixels of the sharp image: half the
    kernel and the whole shift in from every edge."""
    shift = np.zeros(len(shape)) if shift is None else np.asarray(shift, dtype=float)
    margins = [k // 2 + math.ceil(abs(s)) for k, s in zip(kernel_shape, shift, strict=True)]
    return tuple(slice(m, n - m) for m, n in zip(margins, shape, strict=True))


def residual_ratio(observed: np.ndarray, predicted: np.ndarray, window) -> float:
    """RMS of ``observed - predicted`` inside ``window`` over the noise sigma of
    ``observed`` (:func:`psfkit.noise.floored_noise_sigma`)."""
    residual = observed[window].astype(np.float64) - predicted[window]
    if residual.size == 0:
        raise ValueError(f"the images of shape {observed.shape} leave no pixel that the "
                         f"kernel sees whole; use a smaller kernel or larger images")
    sigma = floored_noise_sigma(observed)
    if not sigma > 0:
        raise ValueError("the observed image is constant: it has no noise to compare the "
                         "residual with")
    return float(np.sqrt(np.mean(residual**2)) / sigma)
