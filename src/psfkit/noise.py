"""Noise estimation, the basis of every automatic choice in psfkit.

Images are modelled as ``signal + noise`` with white noise of standard deviation
``sigma``. Selection rules that turn ``sigma`` into a regularization weight live next to the
algorithm that uses them; the noise estimate itself lives only here.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from ._validate import as_float_array, finite_result, rescaled

#: 1 / Phi^-1(3/4): turns a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.482602218505602


def central_region(shape, samples: int, minimum=1) -> tuple[slice, ...]:
    """Slices of a centred region of ``shape`` with about ``samples`` samples at most (each
    axis scaled by the same factor), and at least ``minimum`` per axis where the shape
    allows: where a data-driven choice looks when the whole array would cost too much."""
    fraction = min(1.0, (samples / float(np.prod(shape))) ** (1.0 / len(shape)))
    minimum = np.broadcast_to(minimum, (len(shape),))
    sizes = [min(n, max(int(n * fraction), int(m))) for n, m in zip(shape, minimum,
                                                                     strict=True)]
    return tuple(slice((n - size) // 2, (n - size) // 2 + size)
                 for n, size in zip(shape, sizes, strict=True))


def second_difference(image: np.ndarray) -> tuple[np.ndarray, int]:
    """``[1, -2, 1]`` applied along every axis of at least 3 samples, on the interior.

    It removes constants, ramps and slowly varying structure and multiplies white noise by
    ``sqrt(6 ** axes)``. Returns the filtered interior (each filtered axis 2 samples
    shorter) and ``axes``, the number of axes filtered (0: the image is too small).
    """
    filtered = image
    axes = 0
    for axis in range(image.ndim):
        if image.shape[axis] < 3:
            continue
        lead = (slice(None),) * axis
        filtered = (filtered[(*lead, slice(2, None))] - 2.0 * filtered[(*lead, slice(1, -1))]
                    + filtered[(*lead, slice(None, -2))])
        axes += 1
    return filtered, axes


def rim(array: np.ndarray, width: int = 2) -> np.ndarray:
    """The values of ``array`` within ``width`` samples of its border, flattened: where a
    well-sized kernel holds only noise. Empty when the array is no wider than the rim."""
    mask = np.ones(array.shape, bool)
    mask[tuple(slice(width, n - width) for n in array.shape)] = False
    return array[mask]


def rim_noise_mean(array: np.ndarray) -> float:
    """The mean rule: the mean of :func:`rim`'s values, in ``array``'s own precision (0 when
    the rim is empty).

    On a nonnegative fitted kernel it is the positive bias that the clipped noise leaves
    where the true kernel is zero: the floor that is subtracted before its mass is counted.
    """
    values = rim(array)
    return float(values.mean()) if values.size else 0.0


def rim_noise_rms(array: np.ndarray) -> float:
    """The RMS rule: the root mean square of :func:`rim`'s values, in float64 (0 when the rim
    is empty).

    On a fitted kernel it bounds the noise of one value from above (it includes the bias
    the mean rule reads): the scale of the noise spikes a floor must clear.
    """
    values = rim(array)
    return float(np.sqrt(np.mean(values.astype(np.float64) ** 2))) if values.size else 0.0


def rim_zero_fraction(array: np.ndarray) -> float:
    """The clipping rule: the share of :func:`rim`'s values at or below zero (0 when the rim
    is empty).

    A nonnegative fit clips about half of the noise where the true kernel is zero, so a rim
    of noise has a large share at zero, while faint wings keep the rim positive.
    """
    values = rim(array)
    return float(np.mean(values <= 0)) if values.size else 0.0


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
    image = as_float_array(image, "image", ndim=())
    # images of extreme magnitude are brought near 1 exactly, so the squares below neither
    # over- nor underflow in float32
    image, scale = rescaled(image)
    filtered, axes_used = second_difference(image)
    interior = tuple(slice(1, -1) if n >= 3 else slice(None) for n in image.shape)
    if axes_used == 0:
        raise ValueError(f"image of shape {image.shape} is too small to estimate noise: it "
                         "needs at least 3 samples along one axis")
    smooth = ndi.gaussian_filter(image, 2.0, truncate=3.0)
    # an axis of one sample has no gradient (np.gradient refuses it): it adds nothing
    sloped = tuple(axis for axis, n in enumerate(image.shape) if n >= 2)
    gradients = np.gradient(smooth, axis=sloped)
    gradients = list(gradients) if len(sloped) > 1 else [gradients]
    del smooth
    # the squared gradient summed in place, so few image-sized arrays live at once
    slope = gradients.pop(0)
    slope *= slope
    while gradients:
        part = gradients.pop(0)
        part *= part
        slope += part
        del part
    slope = slope[interior]
    flat = filtered[slope <= np.median(slope)].astype(np.float64)
    deviation = np.median(np.abs(flat - np.median(flat)))
    if deviation == 0:
        # quantised data (8-bit, JPEG) can leave most differences exactly zero: fall back to
        # the plain RMS rather than report no noise at all
        sigma = np.sqrt(np.mean(flat**2)) / np.sqrt(6.0**axes_used)
    else:
        sigma = MAD_TO_SIGMA * deviation / np.sqrt(6.0**axes_used)
    return finite_result(float(scale * sigma), "noise_sigma")


def quantisation_sigma(image: np.ndarray) -> float:
    """The noise that rounding to the smallest step between ``image``'s distinct values
    implies, ``step / sqrt(12)`` (0 for a constant image).

    The floor of a noise estimate on quantised data (a bool mask, a few grey levels), whose
    second differences are mostly exact zeros so that :func:`noise_sigma` may find none.
    """
    steps = np.diff(np.unique(np.asarray(image, dtype=np.float64)))
    return float(steps.min() / np.sqrt(12.0)) if steps.size else 0.0


def floored_noise_sigma(image: np.ndarray) -> float:
    """:func:`noise_sigma` of ``image``, or :func:`quantisation_sigma` when that finds no
    noise at all: what a relative measure (a residual over the noise) is divided by."""
    sigma = noise_sigma(image)
    return sigma if sigma > 0 else quantisation_sigma(image)


#: Largest number of samples :func:`noise_model` looks at (a central region beyond that,
#: every axis shrunk by the same factor).
MODEL_SAMPLES = 2**21


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
    image = as_float_array(image, "image", ndim=())
    # a central region holds plenty of samples and keeps memory small
    image = image[central_region(image.shape, MODEL_SAMPLES, minimum=3)]
    image, scale = rescaled(image)  # exact; gain scales with it, the intercept with its square
    filtered, axes_used = second_difference(image)
    level = image
    for axis in range(image.ndim):
        if image.shape[axis] >= 3:  # the local level on the same interior: a 3-sample mean
            lead = (slice(None),) * axis
            level = (level[(*lead, slice(2, None))] + level[(*lead, slice(1, -1))]
                     + level[(*lead, slice(None, -2))]) / 3
    if axes_used == 0:
        raise ValueError(f"image of shape {image.shape} is too small to estimate noise")
    # in place where possible: the peak memory stays a few copies of the samples
    filtered = filtered.ravel().astype(np.float64)
    filtered /= np.sqrt(6.0**axes_used)
    level = level.ravel().astype(np.float64)
    edges = np.quantile(level, np.linspace(0, 1, bins + 1))
    index = np.searchsorted(edges, level, side="right")
    index -= 1
    np.clip(index, 0, bins - 1, out=index)
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
    del filtered, level, index
    overall = noise_sigma(image) ** 2
    if levels.size < 3 or np.ptp(levels) <= 0:
        return 0.0, finite_result(overall * scale**2, "noise_model")
    # robust line: least squares, then refit without the worst quarter of the bins
    keep = np.ones(levels.size, dtype=bool)
    for _ in range(2):
        design = np.stack([levels[keep], np.ones(keep.sum())], axis=1)
        (gain, intercept), *_ = np.linalg.lstsq(design, variances[keep], rcond=None)
        misfit = np.abs(variances - (gain * levels + intercept))
        keep = misfit <= np.quantile(misfit, 0.75)
    if gain <= 0:
        return 0.0, finite_result(overall * scale**2, "noise_model")
    return finite_result((float(gain * scale), float(intercept * scale**2)), "noise_model")
