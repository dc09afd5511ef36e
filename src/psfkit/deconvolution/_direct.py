"""The direct (Fourier) methods: Wiener and Tikhonov regularised inverse filters.

Both divide the image's spectrum by ``|H|² + λ P`` (``P = 1`` for Wiener, the power of the
discrete Laplacian for Tikhonov), on a mirrored extension of the image that fades to its
mean, so the periodic grid has no seam; ``λ`` follows the discrepancy principle unless
given.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from psfkit.operators import (
    WORKERS,
    fast_shape,
    frequencies,
    inverse_rfftn,
    multiply_by_conjugate,
)

from ._common import MethodResult, Request
from ._noise import NoiseModel
from ._operators import OperatorCache


def _smooth_extension(image: np.ndarray, margin):
    """The image centred on a fast periodic grid at least ``margin`` wider on each side,
    surrounded by its mirror image fading to the image mean, so the grid has no seam.

    Returns the extended image and the slices of the image in it.
    """
    grid = fast_shape([n + 2 * m for n, m in zip(image.shape, margin, strict=True)])
    pads = [((g - n) // 2, g - n - (g - n) // 2) for g, n in zip(grid, image.shape,
                                                              strict=True)]
    extended = np.pad(image, pads, mode="symmetric")
    mean = np.float32(image.mean(dtype=np.float64))
    extended -= mean
    for axis, ((before, after), n) in enumerate(zip(pads, image.shape, strict=True)):
        profile = np.ones(grid[axis], dtype=np.float32)
        for length, side in ((before, slice(0, before)), (after, slice(before + n, None))):
            if length == 0:
                continue
            distance = np.arange(1, length + 1, dtype=np.float32)
            fade = 0.5 * (1 + np.cos(np.pi * distance / (length + 1)))
            profile[side] = fade[::-1] if side.start == 0 else fade
        extended *= profile.reshape([-1 if a == axis else 1 for a in range(image.ndim)])
    extended += mean
    inside = tuple(slice(b, b + n) for (b, _), n in zip(pads, image.shape, strict=True))
    return extended, inside


def _laplacian_power(grid_shape) -> np.ndarray:
    """``|L(f)|²`` of the discrete Laplacian on the real-FFT half spectrum."""
    total = np.zeros([1] * len(grid_shape), dtype=np.float32)
    for freqs in frequencies(grid_shape):
        total = total + (2 - 2 * np.cos(2 * np.pi * freqs.astype(np.float32)))
    return total**2


def _inverse_filter(image, psf, penalty_of, regularization, noise: NoiseModel,
                    operators: OperatorCache):
    """``conj(H) Y / (|H|² + λ P)`` on the faded extension of ``image``, cut back to the
    image; ``penalty_of(grid_shape)`` gives ``P``. Returns the result and ``λ``."""
    extended, inside = _smooth_extension(image, psf.shape)
    grid = extended.shape
    otf = operators.otf(psf, grid)
    spectrum = scipy.fft.rfftn(extended, workers=WORKERS)
    del extended
    power = (otf.real**2 + otf.imag**2).astype(np.float32)
    penalty = penalty_of(grid)
    if regularization == "auto":
        regularization = _discrepancy_lambda(spectrum, power, penalty, noise.rms, grid,
                                             inside)
    regularization = float(regularization)
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}")
    denominator = power + np.float32(max(regularization, 1e-12)) * penalty
    multiply_by_conjugate(spectrum, otf)
    spectrum /= denominator
    return inverse_rfftn(spectrum, grid)[inside], regularization


def _discrepancy_lambda(spectrum, power, penalty, sigma, grid_shape, inside) -> float:
    """``λ`` for which the residual inside the image matches the noise (Morozov).

    The residual is measured on the image's own pixels only: the faded extension around
    them is not data, and its seams would otherwise count as misfit.
    """
    target = sigma**2
    residual_spectrum = np.empty_like(spectrum)

    def residual(log_lambda):
        lam = np.float32(10.0**log_lambda)
        ratio = lam * penalty / (power + lam * penalty)
        np.multiply(spectrum, ratio, out=residual_spectrum)
        field = scipy.fft.irfftn(residual_spectrum, grid_shape, workers=WORKERS)[inside]
        return float(np.mean(field * field, dtype=np.float64))

    low, high = -10.0, 4.0
    if residual(high) <= target:
        return 10.0**high
    if residual(low) >= target:
        return 10.0**low
    while high - low > 0.05:  # bisection in log λ to about 12 %
        middle = 0.5 * (low + high)
        if residual(middle) > target:
            high = middle
        else:
            low = middle
    return 10.0 ** (0.5 * (low + high))


def _flat_penalty(grid_shape) -> np.ndarray:
    """Wiener's penalty: the same weight at every frequency."""
    return np.ones(1, dtype=np.float32)


def wiener(image, psf, noise: NoiseModel, request: Request) -> MethodResult:
    """Wiener filter ``conj(H) Y / (|H|² + λ)``."""
    result, weight = _inverse_filter(image, psf, _flat_penalty, request.regularization,
                                     noise, request.operators)
    return MethodResult(image=result, method="wiener", regularization=weight)


def tikhonov(image, psf, noise: NoiseModel, request: Request) -> MethodResult:
    """Tikhonov filter ``conj(H) Y / (|H|² + λ |L|²)`` with the discrete Laplacian ``L``."""
    result, weight = _inverse_filter(image, psf, _laplacian_power, request.regularization,
                                     noise, request.operators)
    return MethodResult(image=result, method="tikhonov", regularization=weight)
