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
