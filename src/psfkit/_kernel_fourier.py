"""The windowed Fourier (Wiener/Tikhonov) kernel estimate, its weight chosen by GCV.

The forward model is ``blurred0 ≈ sharp0 ∗ k`` between the standardised overlap of a pair
aligned at one shift (:class:`psfkit._kernel_fit._AlignedPair`). Both images are faded to
zero at their borders by one Tukey window and the model is solved on a periodic FFT grid,
one frequency at a time: ``K = conj(S) B / (|S|² + λ (|D|² + 10⁻³))``, where ``|D|²`` is the
transfer of the smoothness penalty ``‖∇k‖²`` (:func:`_gradient_spectrum`, which the
least-squares solver shares) and ``λ``, unless given, minimises generalized
cross-validation. It is the fast solver of :func:`psfkit.estimate.estimate_kernel`, the
pilot that chooses the support, and the start of every least-squares fit.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .align import edge_window
from .operators import WORKERS, centre_embed, fast_shape, frequencies, periodic_crop


def _gradient_spectrum(grid_shape):
    """``Σ |D_i(f)|²`` of forward differences on an rfft grid (the penalty's transfer)."""
    total = np.zeros([*grid_shape[:-1], grid_shape[-1] // 2 + 1], dtype=np.float32)
    for freq in frequencies(grid_shape):
        # |1 - exp(-2πif)|² = 4 sin²(πf), in float64 and then cast as the solvers use it
        total = total + (4 * np.sin(np.pi * freq) ** 2).astype(np.float32)
    return total


def _fourier_estimate(pair, shape, regularization):
    """Windowed Wiener/Tikhonov estimate; ``regularization`` None means choose by GCV.

    Both standardised images of the :class:`_AlignedPair` are faded to zero at their borders
    by the same Tukey window, so the periodic model of the FFT sees no jump; the taper is
    wide compared with the kernel so that ``w · (k * s) ≈ k * (w · s)``. The solution on the
    whole periodic grid depends on the shape only through the taper and the grid, so shapes
    that share both (the clipped taper of small kernels, a common fast grid) share it.
    """
    image_shape = pair.sharp0.shape
    alpha = float(np.clip(4.0 * max(shape) / min(image_shape), 0.2, 0.8))
    grid = fast_shape([n + k for n, k in zip(image_shape, shape, strict=True)])

    def solve():
        """The solution on the whole grid, cut to the lags that fit on it."""
        kernel, used = _fourier_solution(pair.sharp0, pair.blurred0, alpha, grid, regularization)
        # a support on this grid has n + k <= grid: keep only the part such supports can use
        reach = [(g - n) | 1 for g, n in zip(grid, image_shape, strict=True)]
        return periodic_crop(kernel, reach), used

    kernel, used = pair.cached(("fourier", alpha, grid, regularization), solve)
    return centre_embed(kernel, shape).astype(np.float32), used


def _fourier_solution(sharp0, blurred0, alpha, grid, regularization):
    """The Wiener/Tikhonov kernel on the periodic ``grid`` (origin at index 0), and its weight."""
    window = edge_window(sharp0.shape, alpha)
    spectrum_sharp = scipy.fft.rfftn(sharp0 * window, grid, workers=WORKERS)
    spectrum_blurred = scipy.fft.rfftn(blurred0 * window, grid, workers=WORKERS)
    power = (spectrum_sharp.real**2 + spectrum_sharp.imag**2).astype(np.float32)
    penalty = _gradient_spectrum(grid) + np.float32(1e-3)
    if regularization is None:
        regularization = _gcv_fourier(power, penalty, spectrum_blurred)
    estimate = np.conj(spectrum_sharp) * spectrum_blurred / (power + regularization * penalty)
    return scipy.fft.irfftn(estimate, grid, workers=WORKERS), float(regularization)


def _gcv_fourier(power, penalty, spectrum_blurred):
    """Minimise generalized cross-validation over a log grid of weights (diagonal case)."""
    data = (spectrum_blurred.real**2 + spectrum_blurred.imag**2).astype(np.float32)
    scale = float(np.mean(power))
    best, best_score = None, np.inf
    for regularization in scale * np.logspace(-8, 1, 25):
        weighted = np.float32(regularization) * penalty
        one_minus = weighted / (power + weighted)
        score = float(np.sum(one_minus**2 * data, dtype=np.float64)) / float(
            np.sum(one_minus, dtype=np.float64)) ** 2
        if score < best_score:
            best, best_score = regularization, score
    return float(best)
