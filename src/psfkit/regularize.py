"""Noise estimation, the basis of every automatic regularization choice in psfkit.

Images are modelled as ``signal + noise`` with white noise of standard deviation
``sigma``. Selection rules that turn ``sigma`` into a regularization weight live next to the
algorithm that uses them; the noise estimate itself lives only here.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_float_array

#: 1 / Phi^-1(3/4): turns a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.482602218505602


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of the standard deviation of white noise in ``image``.

    The image is filtered with the second difference ``[1, -2, 1]`` along every axis. The
    filter removes constants, ramps and slowly varying structure and multiplies white
    noise by ``sqrt(6 ** ndim)``; the median absolute deviation of the filtered values then
    ignores the minority of pixels on edges and stars. Works on any dimensionality.

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
    axes_used = 0
    for axis in range(image.ndim):
        if filtered.shape[axis] < 3:
            continue
        n = filtered.shape[axis]
        take = lambda start, stop, a=axis: np.take(filtered, range(start, stop), axis=a)  # noqa: E731
        filtered = take(2, n) - 2.0 * take(1, n - 1) + take(0, n - 2)
        axes_used += 1
    if axes_used == 0:
        raise ValueError(f"image of shape {image.shape} is too small to estimate noise")
    deviation = np.median(np.abs(filtered - np.median(filtered)))
    return float(MAD_TO_SIGMA * deviation / np.sqrt(6.0**axes_used))
