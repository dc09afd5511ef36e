"""The diameter of a defocus blur, read from the cepstrum.

A defocus kernel (a disk or a ring of diameter ``D``) has a transfer function whose zeros
repeat every ``1 / D`` in frequency, so the cepstrum (the inverse transform of the log
power spectrum) dips at radius ``D``. :func:`defocus_diameter` finds that dip in a blurred
image, optionally over the log spectrum of its sharp counterpart.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ._validate import as_float_array, finite_result, real_number, rescaled
from .align import edge_window
from .operators import WORKERS, fast_shape


def defocus_diameter(blurred, *, sharp=None, min_diameter: float = 3.0,
                     max_diameter: float | None = None) -> float:
    """Diameter (px) of a defocus blur, read from the cepstrum of ``blurred``.

    A defocus kernel (a disk or a ring of diameter ``D``) has a transfer function whose
    zeros repeat every ``1 / D`` in frequency, so the log power spectrum ripples with
    that period and its inverse transform, the cepstrum, has a ring at radius ``D``.
    When ``sharp`` is given, its log spectrum is subtracted, which removes the scene's own
    ripples and leaves the kernel's.

    Parameters
    ----------
    blurred : (M, N) ndarray
        The defocused image.
    sharp : (M, N) ndarray, optional
        The same scene in focus.
    min_diameter, max_diameter : float
        Range searched, in pixels (default up to a quarter of the smaller side); finite
        and not negative.

    Returns
    -------
    float
        The diameter, refined to sub-pixel precision by a parabola through the extremum
        of the radially averaged cepstrum.
    """
    blurred = as_float_array(blurred, "blurred", ndim=(2,))
    min_diameter = real_number(min_diameter, "min_diameter", minimum=0.0)
    if max_diameter is not None:
        max_diameter = real_number(max_diameter, "max_diameter", minimum=0.0)
    window = edge_window(blurred.shape, alpha=0.5)
    grid = fast_shape(blurred.shape)

    def log_power(image, name):
        # an exact power of two keeps the squares of an extreme image in float32's range;
        # it only adds a constant to the log spectrum, which the cepstrum's dip ignores
        image, _ = rescaled(image)
        spectrum = scipy.fft.rfftn((image - image.mean()) * window, grid, workers=WORKERS)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float64)
        if not power.mean() > 0:
            raise ValueError(f"{name} is constant: it holds no defocus to measure")
        return np.log(power + 1e-6 * power.mean())

    log_spectrum = log_power(blurred, "blurred")
    if sharp is not None:
        sharp = as_float_array(sharp, "sharp", ndim=(2,))
        if sharp.shape != blurred.shape:
            raise ValueError(f"sharp and blurred differ in shape: {sharp.shape} and "
                             f"{blurred.shape}")
        log_spectrum = log_spectrum - log_power(sharp, "sharp")
    cepstrum = scipy.fft.irfftn(log_spectrum, grid, workers=WORKERS)
    profile = _radial_mean(scipy.fft.fftshift(cepstrum))
    # the profile reaches the grid's corner; the parabola below needs one radius beyond high
    high = min(int(max_diameter or min(blurred.shape) / 4), profile.size - 2)
    low = max(math.ceil(min_diameter), 2)
    if high <= low + 2:
        raise ValueError(f"no diameter to search between min_diameter {min_diameter:g} and "
                         f"{high} px in an image of shape {blurred.shape}: lower "
                         "min_diameter, raise max_diameter or pass a larger image")
    # zeros of the transfer function make the cepstrum dip at quefrency D
    segment = profile[low:high + 1]
    index = int(np.argmin(segment)) + low
    if index <= low or index >= high:
        raise ValueError(f"no defocus ring found in the cepstrum of blurred between "
                         f"{low} and {high} px; widen min_diameter..max_diameter, or the "
                         f"blur is not a defocus disk")
    left, middle, right = profile[index - 1:index + 2]
    curvature = left - 2 * middle + right
    offset = 0.5 * (left - right) / curvature if curvature > 0 else 0.0
    return finite_result(float(index + np.clip(offset, -0.5, 0.5)), "defocus_diameter")


def _radial_mean(image: np.ndarray) -> np.ndarray:
    """Mean of a 2D ``image`` over rings of integer radius (rounded) around its centre
    pixel ``shape // 2``, by radius."""
    centre = np.array(image.shape) // 2
    y, x = np.indices(image.shape, sparse=True)
    bins = np.round(np.hypot(y - centre[0], x - centre[1])).astype(int)
    counts = np.bincount(bins.ravel())
    return np.bincount(bins.ravel(), image.ravel()) / np.maximum(counts, 1)
