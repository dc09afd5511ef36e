"""One kernel fit at one shift: the pair aligned at that shift, and the fit on it.

The forward model is ``blurred(x) ≈ gain · (k ∗ sharp)(x − shift) + offset``. The blurred
image is moved back by ``shift`` onto the sharp image's frame (:class:`_AlignedFrame`) and
both are standardised on their overlap (:class:`_AlignedPair`, which also keeps the FFT
work that the fits at one shift share), so that ``blurred0 ≈ sharp0 ∗ k`` there.
:func:`_fit_at_shift` fits ``k`` of one shape by the Fourier estimate
(:mod:`psfkit._kernel_fourier`) and, for ``method="lsq"``, by least squares on the valid
region (:mod:`psfkit._kernel_lsq`); :class:`_ShiftBounds` says how far the refinements of
:mod:`psfkit.estimate` may move the shift.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.fft

from ._kernel_fourier import _fourier_estimate
from ._kernel_lsq import _majorize_minimize, _ValidProblem
from .operators import WORKERS, fourier_shift, periodic_crop

# -- the pair aligned at one shift --------------------------------------------------------


def _standardise(image):
    """Mean and standard deviation of ``image``, accumulated in float64."""
    mean = float(image.mean(dtype=np.float64))
    scale = float(image.std(dtype=np.float64))
    return mean, scale


def _shift_image(image, shift):
    """``image`` translated by a sub-pixel ``shift`` (band-limited, mirrored at the edges)."""
    if not np.any(np.abs(shift) > 1e-6):
        return image
    return fourier_shift(image, np.asarray(shift, dtype=float), edges="mirror")


def _overlap_window(shape, shift):
    """Region of the frame where an image moved by ``shift`` holds real, not mirrored, data."""
    return tuple(slice(int(np.ceil(max(s, 0))), n - int(np.ceil(max(-s, 0))))
                 for n, s in zip(shape, shift, strict=True))


@dataclass(frozen=True)
class _AlignedFrame:
    """The blurred image moved back by ``shift`` onto the sharp image's frame.

    ``blurred_aligned`` is ``blurred(x + shift)``, mirrored where it leaves the frame;
    ``window`` is the region of the frame where it holds real, not mirrored, data, the
    overlap of the two images. The blurred image, not the sharp one, is resampled: it is
    band-limited by the blur, so a sinc shift is accurate and keeps white noise white,
    whereas resampling sharp detail (stars, edges) would ring.
    """

    shift: np.ndarray
    blurred_aligned: np.ndarray
    window: tuple

    @classmethod
    def at(cls, blurred, shift):
        """``blurred`` moved back by ``shift`` (a float64 copy of it is kept)."""
        shift = np.array(shift, dtype=float)
        return cls(shift, _shift_image(blurred, -shift), _overlap_window(blurred.shape, -shift))


def _standardised_overlap(sharp, frame):
    """Both images on the overlap of an :class:`_AlignedFrame`, standardised.

    Returns ``sharp0, blurred0, sharp_scale, blurred_scale``: the crops with their mean
    removed and divided by their standard deviation, and those deviations.
    """
    sharp_crop, blurred_crop = sharp[frame.window], frame.blurred_aligned[frame.window]
    if any(n < 3 for n in sharp_crop.shape):
        raise ValueError(f"the images hardly overlap after the shift {np.round(frame.shift, 2)}")
    sharp_mean, sharp_scale = _standardise(sharp_crop)
    blurred_mean, blurred_scale = _standardise(blurred_crop)
    if sharp_scale == 0 or blurred_scale == 0:
        raise ValueError("the images do not overlap in any structured region")
    sharp0 = ((sharp_crop - sharp_mean) / sharp_scale).astype(np.float32)
    blurred0 = ((blurred_crop - blurred_mean) / blurred_scale).astype(np.float32)
    return sharp0, blurred0, sharp_scale, blurred_scale


class _AlignedPair:
    """The pair aligned at one shift, and the work that every fit at that shift shares.

    ``_estimate_single`` fits several kernel shapes at one shift: the pilot that chooses
    the shape, the survey, up to two enlargements and the final fit on the trimmed
    support. All of them need the blurred image moved back by a sinc interpolation of the
    whole frame (:class:`_AlignedFrame`, kept as ``frame``) and the overlap standardised
    (:func:`_standardised_overlap`), which depend on the shift alone; one ``_AlignedPair``
    per shift computes them once.

    It also keeps, through :meth:`cached`, the results of grid-sized FFTs that several
    shapes share: the Fourier solution per taper and FFT grid (:func:`_fourier_estimate`)
    and the sharp overlap's autocorrelation per FFT grid (:class:`_ValidProblem`), each
    cropped to the central part that a kernel on that grid can use, so that the cache stays
    small. A cached value is the one a fresh computation gives, so caching leaves every fit
    unchanged; the cache lives as long as the pair, within one estimate.
    """

    def __init__(self, sharp, blurred, shift):
        """Align ``blurred`` on ``sharp`` at ``shift`` and standardise their overlap."""
        self.frame = _AlignedFrame.at(blurred, shift)
        (self.sharp0, self.blurred0, self.sharp_scale,
         self.blurred_scale) = _standardised_overlap(sharp, self.frame)
        self._cache = {}

    def cached(self, key, compute):
        """``compute()``, run only the first time ``key`` is asked for at this shift."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def autocorrelation(self, grid, spectrum=None):
        """Central lags of ``sharp0``'s periodic autocorrelation on ``grid``, lag 0 centred.

        All the lags that a kernel whose lags fit on ``grid`` without wrapping
        (``n + 2 k <= grid``) can use. ``spectrum`` may hold ``rfftn(sharp0, grid)`` when
        the caller has it already.
        """
        def compute(spectrum=spectrum):
            """The autocorrelation by the Wiener–Khinchin theorem, cut to its usable lags."""
            if spectrum is None:
                spectrum = scipy.fft.rfftn(self.sharp0, grid, workers=WORKERS)
            full = scipy.fft.irfftn(spectrum.real ** 2 + spectrum.imag ** 2, grid,
                                    workers=WORKERS)
            reach = [(g - n - 1) | 1 for g, n in zip(grid, self.sharp0.shape, strict=True)]
            return periodic_crop(full, reach)

        return self.cached(("autocorrelation", tuple(grid)), compute)


# -- one fit at one shift -----------------------------------------------------------------


@dataclass(frozen=True)
class _FitOptions:
    """How every fit of one estimate runs: solver, weight, constraint and stopping rule.

    ``manual`` is the user's regularization weight, or None when the data choose it.
    """

    method: str
    manual: float | None
    nonnegative: bool
    max_iterations: int
    tolerance: float
    callback: object = None

    def rough(self):
        """The options of a survey fit: at most 8 iterations, a tolerance of at least 2 %."""
        return replace(self, max_iterations=min(self.max_iterations, 8),
                       tolerance=max(self.tolerance, 2e-2))


@dataclass(frozen=True)
class _Fit:
    """One kernel fitted at one shift (:func:`_fit_at_shift`).

    ``kernel`` is in the units of the original images: ``kernel_scale`` (``blurred_scale /
    sharp_scale``) times the kernel of the standardised pair. ``stopped`` tells that the
    callback asked to stop; ``problem`` is the least-squares problem solved (None for the
    Fourier solver), kept for the flux correction of the last fit.
    """

    kernel: np.ndarray
    shape: tuple
    regularization: float
    iterations: int
    stopped: bool
    kernel_scale: float
    problem: _ValidProblem | None = None


def _fit_at_shift(pair, shape, options, *, start=None, start_regularization=None):
    """Fit the kernel of ``shape`` between the images of an :class:`_AlignedPair`.

    The fit starts from the Fourier estimate and its weight, or from an earlier fit's
    ``start`` kernel (original units) and ``start_regularization``; the user's weight, when
    given, always wins. The least-squares solver then runs on the valid region.
    """
    manual = options.manual
    sharp_scale, blurred_scale = pair.sharp_scale, pair.blurred_scale
    if any(k > n for k, n in zip(shape, pair.sharp0.shape, strict=True)):
        raise ValueError(f"kernel shape {shape} does not fit in the overlap {pair.sharp0.shape}")
    if start is None or (start_regularization is None and manual is None):
        kernel, used = _fourier_estimate(pair, shape, manual)
    else:  # a start from an earlier fit: no Fourier estimate needed
        kernel, used = None, manual if manual is not None else start_regularization
    if start is not None:
        kernel = start * np.float32(sharp_scale / blurred_scale)
    if start_regularization is not None and manual is None:
        used = start_regularization
    iterations, stopped, problem = 0, False, None
    if options.method == "lsq":
        problem = _ValidProblem(pair, shape)
        kernel, iterations, used, stopped = _majorize_minimize(
            problem, kernel, used if manual is None else manual, options.nonnegative,
            options.max_iterations, options.tolerance, options.callback, manual is None)
    elif options.nonnegative:
        kernel = np.clip(kernel, 0, None)
    kernel_fit = (kernel * np.float32(blurred_scale / sharp_scale)).astype(np.float32)
    return _Fit(kernel=kernel_fit, shape=tuple(shape), regularization=float(used),
                iterations=iterations, stopped=stopped,
                kernel_scale=float(blurred_scale / sharp_scale), problem=problem)


# -- where the refinements may move the shift ---------------------------------------------


#: Largest move, in pixels, of a refined shift away from the cross-correlation's: a blunt
#: correlation peak is off by a few pixels at most, so a pilot or a fit that wants to move
#: further has locked onto noise.
_SHIFT_REACH = 4.0


@dataclass(frozen=True)
class _ShiftBounds:
    """Where the refinements may move the shift found by cross-correlation.

    ``correlation`` is that shift clipped to ``limit``, a quarter of each axis.
    """

    correlation: np.ndarray
    limit: np.ndarray

    @classmethod
    def around(cls, shift, image_shape):
        """The bounds around a cross-correlation ``shift`` in a frame of ``image_shape``."""
        limit = np.array(image_shape) / 4
        return cls(np.clip(shift, -limit, limit), limit)

    def near_correlation(self, shift):
        """``shift`` clipped to within ``_SHIFT_REACH`` pixels of the correlation's."""
        return np.clip(shift, self.correlation - _SHIFT_REACH, self.correlation + _SHIFT_REACH)

    def inside(self, shift):
        """``shift`` clipped to a quarter of the frame, then near the correlation's."""
        return self.near_correlation(np.clip(shift, -self.limit, self.limit))
