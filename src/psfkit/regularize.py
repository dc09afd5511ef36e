"""Noise estimation, the basis of every automatic regularization choice in psfkit.

Images are modelled as ``signal + noise`` with white noise of standard deviation
``sigma``. Selection rules that turn ``sigma`` into a regularization weight live next to the
algorithm that uses them; the noise estimate itself lives only here.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from ._validate import as_float_array

#: 1 / Phi^-1(3/4): turns a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.482602218505602


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of the standard deviation of white noise in ``image``.

    The image is filtered with the second difference ``[1, -2, 1]`` along every axis. The
    filter removes constants, ramps and slowly varying structure and multiplies white
    noise by ``sqrt(6 ** ndim)``. Only the half of the pixels where the image is flattest
    (lowest gradient at a 2 px scale) is kept, so edges and textures count little, and the
    median absolute deviation of the filtered values there gives the noise level. Works on
    any dimensionality; a texture finer than the noise is counted as noise.

    Parameters
    ----------
    image : (N1, ..., ND) ndarray
        Any real array with at least 3 samples along one axis.

    Returns
    -------
    float
        Estimated noise standard deviation, in the units of ``image``.
    """
    image = as_float_array(image, "image", ndim=()).astype(np.float64)
    filtered = image
    interior = []
    for axis in range(image.ndim):
        n = filtered.shape[axis]
        if n < 3:
            interior.append(slice(None))
            continue
        filtered = (np.take(filtered, range(2, n), axis=axis)
                    - 2.0 * np.take(filtered, range(1, n - 1), axis=axis)
                    + np.take(filtered, range(0, n - 2), axis=axis))
        interior.append(slice(1, -1))
    axes_used = sum(s != slice(None) for s in interior)
    if axes_used == 0:
        raise ValueError(f"image of shape {image.shape} is too small to estimate noise")
    gradient = ndi.gaussian_gradient_magnitude(image, 2.0)[tuple(interior)]
    flat = filtered[gradient <= np.median(gradient)]
    deviation = np.median(np.abs(flat - np.median(flat)))
    return float(MAD_TO_SIGMA * deviation / np.sqrt(6.0**axes_used))


def noise_model(image: np.ndarray, *, bins: int = 16) -> tuple[float, float]:
    """Signal-dependent noise: ``variance ≈ gain * image + intercept``.

    Poisson (shot) noise makes the variance grow with the signal; read noise adds a
    constant. The same second-difference residual as :func:`noise_sigma` is grouped by the
    local signal level (a 3-sample mean per axis) into ``bins`` quantile bins; the robust
    variance of each bin is fitted by a nonnegative straight line in the level.

    Returns
    -------
    gain : float
        Variance per unit of signal (the photon gain in image units per photon); 0 for
        purely additive noise.
    intercept : float
        Variance at zero image value: the read-noise variance minus ``gain`` times any
        camera offset (so it may be negative). ``image + intercept / gain`` then has a
        variance equal to ``gain`` times its mean, the shifted-Poisson approximation.
    """
    image = as_float_array(image, "image", ndim=()).astype(np.float64)
    filtered = image
    level = image
    axes_used = 0
    for axis in range(image.ndim):
        n = filtered.shape[axis]
        if n < 3:
            continue
        take = lambda a_, start, stop, a=axis: np.take(a_, range(start, stop), axis=a)  # noqa: E731
        filtered = take(filtered, 2, n) - 2.0 * take(filtered, 1, n - 1) + take(filtered, 0,
                                                                                n - 2)
        level = (take(level, 2, n) + take(level, 1, n - 1) + take(level, 0, n - 2)) / 3.0
        axes_used += 1
    if axes_used == 0:
        raise ValueError(f"image of shape {image.shape} is too small to estimate noise")
    filtered = filtered.ravel() / np.sqrt(6.0**axes_used)
    level = level.ravel()
    edges = np.quantile(level, np.linspace(0, 1, bins + 1))
    index = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, bins - 1)
    levels, variances, counts = [], [], []
    for b in range(bins):
        chosen = index == b
        if np.count_nonzero(chosen) < 32:
            continue
        values = filtered[chosen]
        deviation = np.median(np.abs(values - np.median(values)))
        levels.append(float(np.median(level[chosen])))
        variances.append(float((MAD_TO_SIGMA * deviation) ** 2))
        counts.append(values.size)
    levels, variances = np.array(levels), np.array(variances)
    overall = noise_sigma(image) ** 2
    if levels.size < 3 or np.ptp(levels) <= 0:
        return 0.0, overall
    # robust line: least squares, then refit without the worst quarter of the bins
    keep = np.ones(levels.size, dtype=bool)
    for _ in range(2):
        design = np.stack([levels[keep], np.ones(keep.sum())], axis=1)
        (gain, intercept), *_ = np.linalg.lstsq(design, variances[keep], rcond=None)
        misfit = np.abs(variances - (gain * levels + intercept))
        keep = misfit <= np.quantile(misfit, 0.75)
    if gain <= 0:
        return 0.0, overall
    return float(gain), float(intercept)
