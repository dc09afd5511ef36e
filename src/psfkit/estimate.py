"""Non-parametric kernel estimation between a sharp and a blurred image of the same scene.

The forward model is ``blurred = gain * (kernel * shift(sharp)) + offset + noise`` with a
small kernel of unit sum. It is fitted only on the *valid* region, where the convolution of
the sharp image with the kernel sees no pixel outside the frame, so light that entered the
blurred image from beyond the edges does no harm. Two solvers share one set of helpers: a
windowed Fourier (Wiener/Tikhonov) estimate, chosen by generalized cross-validation
(:mod:`psfkit._kernel_fourier`), and a constrained least-squares fit on the valid region
solved by FISTA with adaptive restart in the metric of a Toeplitz majorizer, whose
regularization weight follows the evidence (marginal likelihood) fixed point
(:mod:`psfkit._kernel_lsq`). The pair aligned at one shift and one fit on it live in
:mod:`psfkit._kernel_fit`, the automatic choice of the support in
:mod:`psfkit._kernel_support`.

This module holds the public :func:`estimate_kernel` and :class:`KernelEstimate`, the RGB
case, and the phases of one estimate, each a function of its own and called in order by
``_estimate_single``: the shift found by cross-correlation is refined on a wide Fourier
pilot, the support chosen and surveyed, the kernel's centroid moved into the shift, the
nonnegativity's flux bias removed, and gain, offset and residuals computed on the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.ndimage as ndi

from ._kernel_fit import _AlignedPair, _fit_at_shift, _FitOptions, _shift_image, _ShiftBounds
from ._kernel_lsq import _unconstrained_sum
from ._kernel_support import (
    _fit_support,
    _kernel_centre,
    _match_unconstrained_mass,
    _pilot,
    _pilot_is_significant,
    _pilot_shape,
    _remove_noise_floor,
)
from ._progress import report
from ._validate import (
    as_float_array,
    finite_result,
    kernel_shape,
    matching_pair,
    optional_callable,
    real_number,
    rescaled,
    whole_number,
)
from .align import centroid, estimate_shift
from .noise import floored_noise_sigma
from .operators import Convolver, fourier_shift

METHODS = ("auto", "fourier", "lsq")

#: Above this many pixels ``method="auto"`` uses the Fourier solver alone.
AUTO_LSQ_MAX_PIXELS = 2**24

#: Largest manual ``regularization``: against standardised images the automatic choices lie
#: many decades below, and far larger weights overflow the solvers' steps.
MAX_REGULARIZATION = 1e12


@dataclass
class KernelEstimate:
    """The kernel relating a sharp and a blurred image, and how well it explains them.

    ``blurred ≈ gain * (kernel * sharp shifted by shift) + offset``. For an RGB pair every
    per-channel field gains a trailing channel axis (``gain``, ``offset``, ... become arrays)
    and ``channels`` holds the per-channel estimates.

    Attributes
    ----------
    kernel : ndarray
        Odd shape, origin at the centre pixel ``shape // 2``; unit sum and recentred on its
        centroid unless ``normalize``/``center`` were turned off.
    shift : (D,) ndarray
        Translation of ``blurred`` relative to ``sharp`` in pixels
        (``blurred(x) ≈ sharp(x - shift)``), sub-pixel.
    gain, offset : float
        Intensity scale (the kernel's sum before normalisation) and additive offset.
    residual, reblurred : ndarray
        ``blurred - reblurred`` and the model's prediction, shape of ``blurred``. Exact inside
        ``valid``; outside it the sharp image is extended by reflection.
    regularization : float
        Weight of the smoothness penalty ``||∇k||²`` used (for normalised images).
    noise_sigma : float
        Robust white-noise estimate of ``blurred``
        (:func:`psfkit.noise.noise_sigma`); for quantised data where it finds no noise at
        all (a bool image), the rounding noise of the smallest step between its values,
        ``step / sqrt(12)``.
    residual_ratio : float
        RMS of the residual on the valid region divided by ``noise_sigma``; about 1 when
        the kernel explains the data down to the noise.
    kernel_sum : float
        Sum of the fitted kernel before normalisation (the flux ratio).
    shape : tuple of int
        Kernel shape (chosen automatically when ``shape=None``).
    method : str
        Solver used: ``"fourier"`` or ``"lsq"``.
    iterations : int
        FISTA iterations run (0 for the Fourier solver).
    valid : tuple of slice
        Region of ``blurred`` where the model is exact and the fit was made.
    """

    kernel: np.ndarray
    shift: np.ndarray
    gain: float
    offset: float
    residual: np.ndarray
    reblurred: np.ndarray
    regularization: float
    noise_sigma: float
    residual_ratio: float
    kernel_sum: float
    shape: tuple
    method: str
    iterations: int = 0
    valid: tuple = ()
    channels: list = field(default_factory=list)

    def summary(self) -> str:
        """One line with the key numbers."""
        shift = ", ".join(f"{s:+.2f}" for s in np.ravel(self.shift))
        gain = np.round(np.atleast_1d(self.gain), 3).tolist()
        ratio = np.round(np.atleast_1d(self.residual_ratio), 2).tolist()
        return (f"kernel {'×'.join(map(str, self.shape))} ({self.method}), shift ({shift}) px, "
                f"gain {gain[0] if len(gain) == 1 else gain}, "
                f"residual/noise {ratio[0] if len(ratio) == 1 else ratio}")


# -- the public function ------------------------------------------------------------------


def estimate_kernel(
    sharp,
    blurred,
    shape=None,
    *,
    method: str = "auto",
    regularization="auto",
    nonnegative: bool = True,
    normalize: bool = True,
    center: bool = True,
    rgb: bool | None = None,
    max_iterations: int = 30,
    tolerance: float = 1e-3,
    callback=None,
) -> KernelEstimate:
    """Estimate the kernel that blurs ``sharp`` into ``blurred``.

    Parameters
    ----------
    sharp, blurred : (N1, ..., ND) ndarray
        Two images of the same scene, same shape, 2D or 3D, any real dtype. With ``rgb``
        (auto: 2D with a last axis of 3 or 4) one kernel is estimated per channel.
    shape : int or tuple of int, optional
        Odd kernel shape. ``None`` chooses it from a wide Fourier pilot estimate (99 % of
        its mass above the noise, with a margin), then trims the empty rim of a quick
        least-squares fit; on an extended scene, a fit whose mass runs up to the edge of
        its support is surveyed again on a support a third larger (at most twice). The
        choice is reported in ``.shape``.
    method : {"auto", "fourier", "lsq"}
        ``"fourier"``: windowed Wiener/Tikhonov estimate (fast, approximate at the edges).
        ``"lsq"``: least squares on the valid region, solved by FISTA with adaptive restart
        and started from the Fourier estimate (exact model, constraints). ``"auto"`` uses
        ``"lsq"`` unless the image has more than ``AUTO_LSQ_MAX_PIXELS`` pixels.
    regularization : "auto" or float
        Weight of the smoothness penalty ``λ ‖∇k‖²`` for images standardised to unit
        variance. ``"auto"``: generalized cross-validation for ``"fourier"``; the evidence
        (marginal likelihood) fixed point for ``"lsq"``. The value used is reported.
    nonnegative : bool
        Constrain the kernel to be ``>= 0`` (a PSF is a PSF).
    normalize : bool
        Return a unit-sum kernel; the sum before normalisation is ``.kernel_sum``/``.gain``.
    center : bool
        Move the kernel's centroid onto its centre pixel and report the whole translation
        in ``.shift``. With ``False`` the kernel is returned as fitted after aligning the
        images by correlation, and ``.shift`` holds that alignment only.
    max_iterations, tolerance : int, float
        Stopping rule of the least-squares solver: at most ``max_iterations`` outer
        iterations, or when the kernel changes by less than ``tolerance`` (relative).
    callback : callable, optional
        ``callback(step, total, current_kernel)``; return ``False`` to stop early.

    Returns
    -------
    KernelEstimate

    Notes
    -----
    Model: ``blurred = gain · (k ∗ sharp(x − shift)) + offset + noise``. The shift is found
    by cross-correlation, refined on a Fourier pilot of the kernel and finally on the
    fitted kernel's centroid; the blurred image (band-limited by the blur) is moved back by
    a sinc interpolator and the fit made on the overlap. The offset is eliminated by
    removing the mean of the residual on the valid region, so it never biases the kernel.
    The least-squares problem

    ``min_k ½ ‖P (sharp ∗ k − blurred)‖²_valid + ½ λ ‖∇k‖²  subject to  k ≥ 0``

    is solved by FISTA with adaptive restart in the metric of a Toeplitz majorizer of its
    curvature (the sharp image's autocorrelation), each step a nonnegative quadratic solved
    by projected Newton–CG on the kernel-sized grid. ``λ`` follows the evidence fixed point
    ``λ = σ̂² γ / ‖∇k‖²`` (MacKay 1992), with ``σ̂²`` the residual variance and ``γ`` the
    effective number of parameters, updated between iterations until it settles.

    Under the nonnegativity constraint the noise where the kernel is zero leaves a positive
    surplus that, once the kernel is normalised, shrinks its core. A short unconstrained
    fit from the constrained one gives the flux without that bias; when the surplus is
    larger than the noise allows, the smallest values are zeroed until the two sums agree.

    References
    ----------
    .. [1] A. Beck and M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for
       linear inverse problems", SIAM J. Imaging Sci. 2 (2009).
    .. [2] B. O'Donoghue and E. Candès, "Adaptive restart for accelerated gradient schemes",
       Found. Comput. Math. 15 (2015).
    .. [3] D. P. Bertsekas, "Projected Newton methods for optimization problems with simple
       constraints", SIAM J. Control Optim. 20 (1982).
    .. [4] D. J. C. MacKay, "Bayesian interpolation", Neural Computation 4 (1992).
    .. [5] G. H. Golub, M. Heath and G. Wahba, "Generalized cross-validation as a method for
       choosing a good ridge parameter", Technometrics 21 (1979).

    Examples
    --------
    >>> from psfkit import estimate_kernel, make_psf, samples
    >>> pair = samples.blurred_pair(make_psf("gaussian", (15, 15), sigma=2.0), (128, 128))
    >>> result = estimate_kernel(pair.sharp, pair.blurred)
    >>> result.kernel.shape[0] % 2 == 1
    True
    """
    regularization = _checked_options(method, regularization)
    max_iterations = whole_number(max_iterations, "max_iterations")
    tolerance = real_number(tolerance, "tolerance", minimum=0.0)
    callback = optional_callable(callback)
    sharp = as_float_array(sharp, "sharp", ndim=(2, 3))
    blurred = as_float_array(blurred, "blurred", ndim=(2, 3))
    if rgb is None:
        rgb = sharp.ndim == 3 and sharp.shape[-1] in (3, 4)
    matching_pair(sharp, blurred, channels=bool(rgb))
    if rgb:
        result = _estimate_rgb(sharp, blurred, shape, method=method,
                               regularization=regularization, nonnegative=nonnegative,
                               normalize=normalize, center=center,
                               max_iterations=max_iterations, tolerance=tolerance,
                               callback=callback)
    else:
        result = _estimate_single(sharp, blurred, shape, method=method,
                                  regularization=regularization, nonnegative=nonnegative,
                                  normalize=normalize, center=center,
                                  max_iterations=max_iterations, tolerance=tolerance,
                                  callback=callback)
    return finite_result(result, "estimate_kernel")


def _checked_options(method, regularization):
    """The regularization as ``"auto"`` or a float, once the options are checked."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(regularization, str) and regularization == "auto"):
        if isinstance(regularization, str):
            raise ValueError(f"regularization must be 'auto' or a number, got {regularization!r}")
        regularization = real_number(regularization, "regularization", minimum=0.0)
        if regularization > MAX_REGULARIZATION:
            raise ValueError(
                f"regularization must be at most {MAX_REGULARIZATION:g}, got "
                f"{regularization:g}: it weighs the kernel's roughness against images "
                "standardised to unit variance, and a larger weight flattens any kernel")
    return regularization


def _estimate_rgb(sharp, blurred, shape, *, callback, **options):
    """One kernel per channel of an RGB(A) pair, stacked along a trailing channel axis.

    Without a ``shape`` the support is chosen once, on the channels' mean, so that every
    channel's kernel has the same shape; the progress of the channels adds up.
    """
    if sharp.ndim != 3:
        raise ValueError(f"an RGB pair must be (rows, columns, channels), got {sharp.shape}")
    if shape is None:
        shape = _estimate_single(sharp.mean(axis=-1), blurred.mean(axis=-1), None,
                                 **{**options, "max_iterations": 0}, callback=None).shape
    channels = []
    count = sharp.shape[-1]
    for channel in range(count):
        def channel_callback(step, total, current, channel=channel):
            """The channel's progress as a step of the whole run."""
            return report(callback, channel * (total or 0) + step,
                          (total or 0) * count or None, current)

        try:
            channels.append(_estimate_single(
                np.ascontiguousarray(sharp[..., channel]), np.ascontiguousarray(
                    blurred[..., channel]), shape, callback=channel_callback, **options))
        except ValueError as error:  # say which channel could not be estimated
            raise ValueError(f"channel {channel} of the RGB pair: {error}") from error
    stack = lambda name: np.stack([getattr(c, name) for c in channels], axis=-1)  # noqa: E731
    array = lambda name: np.array([getattr(c, name) for c in channels])  # noqa: E731
    return KernelEstimate(
        kernel=stack("kernel"), shift=np.mean([c.shift for c in channels], axis=0),
        gain=array("gain"), offset=array("offset"), residual=stack("residual"),
        reblurred=stack("reblurred"), regularization=array("regularization"),
        noise_sigma=array("noise_sigma"), residual_ratio=array("residual_ratio"),
        kernel_sum=array("kernel_sum"), shape=channels[0].shape, method=channels[0].method,
        iterations=int(sum(c.iterations for c in channels)), valid=channels[0].valid,
        channels=channels)


# -- the model on the whole frame ---------------------------------------------------------


def _reblur(sharp, kernel_fit, offset):
    """Model prediction on the whole frame (sharp extended by reflection outside it)."""
    half = [k // 2 for k in kernel_fit.shape]
    mode = "reflect" if all(n > h for n, h in zip(sharp.shape, half, strict=True)) \
        else "edge"
    padded = np.pad(sharp, [(h, h) for h in half], mode=mode)
    blurred = Convolver(kernel_fit, padded.shape).apply(padded, "valid")
    return blurred + np.float32(offset)


# -- the phases of one estimate -----------------------------------------------------------


def _checked_shape(sharp, blurred, shape):
    """The requested kernel ``shape`` made odd (None stays None), once it and the images fit."""
    if shape is not None:
        shape = kernel_shape(shape, sharp.ndim)
        if any(k > (n + 1) // 2 for k, n in zip(shape, sharp.shape, strict=True)):
            raise ValueError(f"kernel shape {shape} is too large for images of shape "
                             f"{sharp.shape}: at most half of each axis")
    if float(sharp.std()) == 0.0:
        raise ValueError("the sharp image is constant: it carries no information on the kernel")
    if float(blurred.std()) == 0.0:
        raise ValueError("the blurred image is constant: it carries no information on the kernel")
    return shape


def _core_centroid(kernel):
    """Centroid of the part of a (noisy) kernel above a fifth of its smoothed maximum."""
    smooth = ndi.gaussian_filter(kernel.astype(np.float32), 1.0)
    core = np.clip(smooth - 0.2 * float(smooth.max()), 0, None)
    if not np.any(core > 0):
        return np.array(kernel.shape, dtype=float) // 2
    return centroid(core)


def _aligned_on_pilot(sharp, blurred, bounds, pilot_shape, manual):
    """The pair aligned at the correlation's shift refined on a wide Fourier pilot.

    Correlation peaks are blunt for flat-topped kernels (a defocus disk), so the shift is
    moved by the pilot's core centroid until the pilot is centred, at most four times. A
    pilot that is mostly noise stops the refinement: the correlation is trusted.
    """
    pair = _AlignedPair(sharp, blurred, bounds.correlation)
    for _ in range(4):
        pilot = _pilot(pair, pilot_shape, manual)
        if not _pilot_is_significant(pilot):
            break
        correction = _core_centroid(pilot) - np.array(pilot_shape) // 2
        pair = _AlignedPair(sharp, blurred, bounds.inside(pair.frame.shift + correction))
        if np.max(np.abs(correction)) < 0.5:
            break
    return pair


def _recentred_fit(sharp, blurred, pair, fit, bounds, options):
    """The pair and fit once the kernel's centroid is absorbed in the shift.

    An asymmetric kernel moves the correlation peak: its centroid above the rim's noise
    (:func:`_kernel_centre`) is moved into the shift and the kernel fitted once more at the
    new shift, at most twice, so that it ends up centred without resampling it.
    """
    if not np.any(fit.kernel > 0) or fit.stopped:
        return pair, fit
    centre = np.array(fit.shape) // 2
    for _ in range(2):
        off_centre = _kernel_centre(fit.kernel) - centre
        if np.max(np.abs(off_centre)) <= 0.05 or fit.stopped:
            break
        moved = bounds.near_correlation(pair.frame.shift + off_centre)
        start = fourier_shift(fit.kernel, -(moved - pair.frame.shift))
        pair = _AlignedPair(sharp, blurred, moved)
        fit = _fit_at_shift(pair, fit.shape, options,
                            start=np.clip(start, 0, None) if options.nonnegative else start)
    return pair, fit


def _debiased_kernel(fit, options):
    """The fitted kernel without the positive bias that nonnegativity leaves where it is zero.

    For a nonnegative least-squares fit only: the rim's noise floor is removed
    (:func:`_remove_noise_floor`) and, unless the run was stopped, the sum brought down to
    that of the unconstrained fit (:func:`_match_unconstrained_mass`), the flux the data hold.
    """
    if not (options.nonnegative and options.method == "lsq"):
        return fit.kernel
    kernel = _remove_noise_floor(fit.kernel)
    if fit.stopped:
        return kernel
    unconstrained_sum = fit.kernel_scale * _unconstrained_sum(
        fit.problem, fit.kernel / np.float32(fit.kernel_scale), fit.regularization)
    return _match_unconstrained_mass(kernel, unconstrained_sum)


def _least_squares_gain(model, data):
    """The factor ``g`` that best fits ``g · model`` to ``data`` once both lose their mean
    (least squares, in float64); 1 when there is no positive one."""
    model, data = model.astype(np.float64), data.astype(np.float64)
    model, data = model - model.mean(), data - data.mean()
    energy = float(np.sum(model * model))
    if energy <= 0:
        return 1.0
    scale = float(np.sum(model * data)) / energy
    return scale if scale > 0 else 1.0


@dataclass(frozen=True)
class _Model:
    """The fitted model of the blurred image (:func:`_calibrated_model`).

    ``kernel`` carries the least-squares gain; ``reblurred`` is its prediction in the
    blurred image's frame with the ``offset`` added; ``fitted`` is the region of the aligned
    frame where the model was fitted.
    """

    kernel: np.ndarray
    reblurred: np.ndarray
    offset: float
    fitted: tuple


def _calibrated_model(sharp, kernel, frame):
    """The model ``gain · (kernel ∗ sharp) + offset`` moved back into the blurred frame.

    The model lives in the sharp image's frame, where the gain that best explains the data
    for this kernel (least squares on the fitted region) and the offset are fitted, so that
    trimming the noise floor does not bias the flux ratio.
    """
    aligned_model = _reblur(sharp, kernel, 0.0)
    fitted = tuple(slice(w.start + k // 2, w.stop - k // 2)
                   for w, k in zip(frame.window, kernel.shape, strict=True))
    data = frame.blurred_aligned[fitted]
    scale = _least_squares_gain(aligned_model[fitted], data)
    if scale != 1.0:
        kernel = (kernel * np.float32(scale)).astype(np.float32)
        aligned_model = aligned_model * np.float32(scale)
    offset = float(np.mean(data - aligned_model[fitted], dtype=np.float64))
    reblurred = _shift_image(aligned_model, frame.shift) + np.float32(offset)
    return _Model(kernel=kernel, reblurred=reblurred, offset=offset, fitted=fitted)


def _centred_kernel(kernel, shift, nonnegative):
    """``kernel`` moved so that its centroid lies on its centre pixel, and ``shift`` grown
    by the same move (a zero kernel stays as it is)."""
    if not np.any(kernel > 0):
        return kernel, shift
    off_centre = _kernel_centre(kernel) - np.array(kernel.shape) // 2
    moved = fourier_shift(kernel, -off_centre)
    return (np.clip(moved, 0, None) if nonnegative else moved), shift + off_centre


def _assembled_estimate(sharp, blurred, kernel, fit, frame, *, method, normalize, center,
                        nonnegative):
    """The :class:`KernelEstimate` of a final ``kernel`` fitted on the aligned ``frame``."""
    model = _calibrated_model(sharp, kernel, frame)
    residual = blurred - model.reblurred
    valid = tuple(slice(max(f.start + int(np.ceil(d)), 0), min(f.stop + int(np.floor(d)), n))
                  for f, d, n in zip(model.fitted, frame.shift, blurred.shape, strict=True))
    kernel_sum = float(model.kernel.sum(dtype=np.float64))
    sigma = floored_noise_sigma(blurred)
    rms = float(np.sqrt(np.mean(residual[valid].astype(np.float64) ** 2)))
    kernel_out, shift = model.kernel, frame.shift
    if center:
        kernel_out, shift = _centred_kernel(kernel_out, shift, nonnegative)
    gain = 1.0
    if normalize:
        total = float(kernel_out.sum(dtype=np.float64))
        if total == 0:
            raise ValueError("the estimated kernel is zero: sharp and blurred look unrelated "
                             "(is one of them inverted, or of another scene?)")
        kernel_out = kernel_out / np.float32(total)
        gain = kernel_sum
    return KernelEstimate(
        kernel=kernel_out.astype(np.float32), shift=np.asarray(shift, dtype=float), gain=gain,
        offset=model.offset, residual=residual.astype(np.float32),
        reblurred=model.reblurred.astype(np.float32), regularization=fit.regularization,
        noise_sigma=sigma, residual_ratio=rms / sigma,
        kernel_sum=kernel_sum, shape=tuple(fit.shape), method=method,
        iterations=fit.iterations, valid=valid)


def _estimate_single(sharp, blurred, shape, **options) -> KernelEstimate:
    """The kernel estimate of one 2D or 3D pair (:func:`_estimate_phases`), computed on the
    pair brought to ordinary magnitudes by exact powers of two
    (:func:`psfkit._validate.rescaled`) and returned in the caller's units."""
    sharp, sharp_scale = rescaled(sharp)
    blurred, blurred_scale = rescaled(blurred)
    estimate = _estimate_phases(sharp, blurred, shape, **options)
    return _in_caller_units(estimate, sharp_scale, blurred_scale, options["normalize"])


def _in_caller_units(estimate: KernelEstimate, sharp_scale: float, blurred_scale: float,
                     normalize: bool) -> KernelEstimate:
    """``estimate`` of the pair divided by ``sharp_scale`` and ``blurred_scale``, in the
    units of the pair as given: intensities grow with ``blurred_scale``, the flux ratio with
    ``blurred_scale / sharp_scale``; shapes, shifts and ratios stay."""
    if sharp_scale == blurred_scale == 1.0:
        return estimate
    ratio = blurred_scale / sharp_scale
    kernel = estimate.kernel if normalize else estimate.kernel * np.float32(ratio)
    return replace(
        estimate, kernel=kernel, gain=estimate.gain * ratio if normalize else estimate.gain,
        offset=estimate.offset * blurred_scale,
        residual=estimate.residual * np.float32(blurred_scale),
        reblurred=estimate.reblurred * np.float32(blurred_scale),
        noise_sigma=estimate.noise_sigma * blurred_scale,
        kernel_sum=estimate.kernel_sum * ratio)


def _estimate_phases(sharp, blurred, shape, *, method, regularization, nonnegative, normalize,
                     center, max_iterations, tolerance, callback) -> KernelEstimate:
    """The kernel estimate of one 2D or 3D pair, phase by phase.

    The cross-correlation's shift is refined on a Fourier pilot (:func:`_aligned_on_pilot`),
    the support chosen and fitted (:func:`_fit_support`), the kernel's centroid moved into
    the shift (:func:`_recentred_fit`), the constraint's flux bias removed
    (:func:`_debiased_kernel`), and gain, offset and residuals computed on the whole frame
    (:func:`_assembled_estimate`).
    """
    shape = _checked_shape(sharp, blurred, shape)
    if method == "auto":
        method = "lsq" if sharp.size <= AUTO_LSQ_MAX_PIXELS else "fourier"
    options = _FitOptions(method=method,
                          manual=None if regularization == "auto" else regularization,
                          nonnegative=nonnegative, max_iterations=max_iterations,
                          tolerance=tolerance, callback=callback)
    bounds = _ShiftBounds.around(estimate_shift(sharp, blurred, upsample=10), sharp.shape)
    pilot_shape = _pilot_shape(sharp.shape, shape)
    pair = _aligned_on_pilot(sharp, blurred, bounds, pilot_shape, options.manual)
    fit = _fit_support(pair, sharp, shape, pilot_shape, options)
    if center:
        pair, fit = _recentred_fit(sharp, blurred, pair, fit, bounds, options)
    # the fits are done: free the standardised crops and the cached grids before the
    # image-sized work below, so that they do not raise the peak memory
    frame = pair.frame
    del pair
    kernel = _debiased_kernel(fit, options)
    fit = replace(fit, problem=None)  # its operator's spectrum and last residual are image-sized
    return _assembled_estimate(sharp, blurred, kernel, fit, frame, method=method,
                               normalize=normalize, center=center, nonnegative=nonnegative)
