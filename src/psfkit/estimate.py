"""Non-parametric kernel estimation between a sharp and a blurred image of the same scene.

The forward model is ``blurred = gain * (kernel * shift(sharp)) + offset + noise`` with a
small kernel of unit sum. It is fitted only on the *valid* region, where the convolution of
the sharp image with the kernel sees no pixel outside the frame, so light that entered the
blurred image from beyond the edges does no harm. Two solvers share one set of helpers: a
windowed Fourier (Wiener/Tikhonov) estimate, chosen by generalized cross-validation, and a
constrained least-squares fit on the valid region solved by FISTA with adaptive restart in
the metric of a Toeplitz majorizer, whose regularization weight follows the evidence
(marginal likelihood) fixed point.

One estimate runs in phases, each a function of its own and called in order by
``_estimate_single``: the shift found by cross-correlation is refined on a wide Fourier
pilot, the support chosen and surveyed, the kernel's centroid moved into the shift, the
nonnegativity's flux bias removed, and gain, offset and residuals computed on the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from ._progress import report
from ._validate import as_float_array, odd_shape
from .align import centroid, edge_window, estimate_shift
from .noise import noise_sigma, rim
from .operators import (
    WORKERS,
    Convolver,
    centre_embed,
    fast_shape,
    fourier_shift,
    frequencies,
    inner,
    norm,
    periodic_crop,
)

METHODS = ("auto", "fourier", "lsq")

#: Above this many pixels ``method="auto"`` uses the Fourier solver alone.
AUTO_LSQ_MAX_PIXELS = 2**24


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
        (:func:`psfkit.noise.noise_sigma`).
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


# -- helpers ------------------------------------------------------------------------------


def _valid_slices(image_shape, kernel_shape):
    """Region of an image where its convolution with a centred kernel sees no padding."""
    return tuple(slice(k // 2, n - k + 1 + k // 2)
                 for n, k in zip(image_shape, kernel_shape, strict=True))


def _standardise(image):
    """Mean and standard deviation of ``image``, accumulated in float64."""
    mean = float(image.mean(dtype=np.float64))
    scale = float(image.std(dtype=np.float64))
    return mean, scale


def _gradient_spectrum(grid_shape):
    """``Σ |D_i(f)|²`` of forward differences on an rfft grid (the penalty's transfer)."""
    total = np.zeros([*grid_shape[:-1], grid_shape[-1] // 2 + 1], dtype=np.float32)
    for freq in frequencies(grid_shape):
        # |1 - exp(-2πif)|² = 4 sin²(πf), in float64 and then cast as the solvers use it
        total = total + (4 * np.sin(np.pi * freq) ** 2).astype(np.float32)
    return total


def _penalty_gradient(kernel):
    """``Dᵀ D k`` for forward differences with zero outside the support (−Laplacian)."""
    return -ndi.laplace(kernel, mode="constant")


def _penalty(kernel):
    """``‖∇k‖²``: the squared forward differences of ``kernel``, zero outside its support."""
    total = 0.0
    for axis in range(kernel.ndim):
        padded = np.pad(kernel, [(1, 1) if a == axis else (0, 0) for a in range(kernel.ndim)])
        total += float(np.sum(np.diff(padded, axis=axis).astype(np.float64) ** 2))
    return total


# -- the Fourier (Wiener/Tikhonov) solver -------------------------------------------------


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


# -- choosing the support -----------------------------------------------------------------


def _smoothed_frame(pilot):
    """A pilot kernel smoothed a little, and the smoothed values on its outer frame.

    The frame is an eighth of each axis wide (at least two pixels): a kernel smaller than
    the pilot leaves it empty, so it holds the pilot's noise.
    """
    smooth = ndi.gaussian_filter(pilot.astype(np.float32), 1.0)
    frame = np.ones(pilot.shape, bool)
    frame[tuple(slice(max(2, n // 8), n - max(2, n // 8)) for n in pilot.shape)] = False
    return smooth, smooth[frame]


def _auto_shape(pilot, fraction=0.99):
    """Odd support that holds ``fraction`` of a pilot kernel's mass above its noise, + margin.

    The pilot is smoothed a little; its noise floor is the 99th percentile of the smoothed
    values in an outer frame of the pilot, which a kernel smaller than the pilot leaves
    empty. The extent along each axis is measured around the centre pixel.
    """
    smooth, frame = _smoothed_frame(pilot)
    floor = float(np.percentile(np.abs(frame), 99)) if frame.size else 0.0
    positive = np.clip(smooth - floor, 0, None).astype(np.float64)
    if positive.sum() <= 0:
        return tuple(min(k, 15) | 1 for k in pilot.shape)
    # keep only the connected parts that hold a strong value: the kernel's core, rings or
    # streak, not the scattered noise that would otherwise add up to a wide support
    labels, count = ndi.label(positive > 0)
    if count > 1:
        peaks = ndi.maximum(positive, labels, index=np.arange(1, count + 1))
        strong = np.flatnonzero(peaks >= 0.3 * float(positive.max())) + 1
        positive = np.where(np.isin(labels, strong), positive, 0.0)
    centre = np.array(pilot.shape) // 2
    shape = []
    for axis, n in enumerate(pilot.shape):
        profile = positive.sum(axis=tuple(a for a in range(pilot.ndim) if a != axis))
        distance = np.abs(np.arange(n) - centre[axis])
        order = np.argsort(distance, kind="stable")
        cumulative = np.cumsum(profile[order]) / profile.sum()
        radius = distance[order][min(np.searchsorted(cumulative, fraction), n - 1)]
        half = int(np.ceil(1.2 * radius + 2))
        shape.append(int(min(2 * half + 1, n if n % 2 else n - 1)))
    return tuple(max(s, 3) for s in shape)


def _is_sparse(image, share=0.6):
    """Whether 1 % of the pixels hold more than ``share`` of the image's contrast energy.

    True for star fields and other point-like scenes, false for natural images and
    fluorescence-like blobs.
    """
    contrast = np.ravel(image).astype(np.float64)
    energy = (contrast - np.median(contrast)) ** 2
    top = max(energy.size // 100, 1)
    total = float(energy.sum())
    return total > 0 and float(np.partition(energy, energy.size - top)[-top:].sum()) > \
        share * total


# -- the noise on a kernel's rim, and the supports and floors it sets ---------------------
# The outer two pixels of a well-sized support (noise.rim) hold only noise. Two rules read a
# level from them, the mean and the RMS; a third tells a rim of clipped noise from faint wings.


def _rim_mean(kernel):
    """Mean of the values on ``kernel``'s rim, in the kernel's own precision (0 if none)."""
    values = rim(kernel)
    return float(values.mean()) if values.size else 0.0


def _rim_rms(kernel):
    """Root mean square of the values on ``kernel``'s rim, in float64 (0 if none)."""
    values = rim(kernel)
    return float(np.sqrt(np.mean(values.astype(np.float64) ** 2))) if values.size else 0.0


def _rim_zero_fraction(kernel):
    """Share of ``kernel``'s rim at or below zero (0 if none).

    A nonnegative fit clips about half of the noise where the true kernel is zero, so a rim
    of noise has a large share at zero, while faint wings keep the rim positive.
    """
    values = rim(kernel)
    return float(np.mean(values <= 0)) if values.size else 0.0


def _kernel_centre(kernel):
    """Centroid of a fitted kernel above three times the RMS of its outer two-pixel rim.

    The rim of a well-sized support holds only noise; without this floor the noise spread
    over the support would pull the centroid towards the middle of the support.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    floor = 3.0 * _rim_rms(kernel)
    above = np.clip(kernel - floor, 0, None)
    return centroid(above if above.sum() > 0 else np.clip(kernel, 0, None))


def _remove_noise_floor(kernel, zero_fraction=0.25):
    """Remove the positive bias that nonnegativity leaves where a fitted kernel is zero.

    Where the true kernel is zero, about half of the constrained values sit at zero and the
    rest are positive noise, whose mean adds up over the support, inflates the kernel's sum
    and, once normalised, shrinks its core. When at least ``zero_fraction`` of the outer
    two-pixel rim is at zero (a rim of noise, not of faint wings), the rim's mean is taken as
    that bias, subtracted everywhere, and the kernel clipped at zero again.
    """
    if _rim_zero_fraction(kernel) < zero_fraction:
        return kernel
    return np.clip(kernel - np.float32(_rim_mean(kernel)), 0, None).astype(np.float32)


def _trimmed_shape(kernel, sparse=False, fraction=0.995, zero_fraction=0.25, margin=2):
    """Smallest centred odd box holding ``fraction`` of a fitted kernel's mass, + ``margin``.

    Noise leaves small positive values all over a nonnegative kernel; twice their mean
    level on the outer two-pixel rim is removed before the mass is counted. For a
    ``sparse`` scene (a star field, see :func:`_is_sparse`) whose kernel has at least
    ``zero_fraction`` of that rim at zero (a rim of noise, not of wings), the floor is raised
    to three times the rim's RMS: there the noise leaves isolated spikes all over the
    support, which would otherwise hold more than ``1 - fraction`` of the mass and keep the
    support, and its noise, wide; one more pixel of margin gives back the faint outskirts
    that floor cuts. On extended scenes the smoothness penalty already damps
    those spikes and the higher floor would cut faint wings (Airy rings, Moffat halos).
    """
    kernel = np.clip(kernel, 0, None).astype(np.float64)
    noisy_rim = sparse and _rim_zero_fraction(kernel) >= zero_fraction
    spikes = 3.0 * _rim_rms(kernel) if noisy_rim else 0.0
    positive = np.clip(kernel - max(2.0 * _rim_mean(kernel), spikes), 0, None)
    total = positive.sum()
    if total <= 0:
        return kernel.shape
    shape = []
    for axis, n in enumerate(kernel.shape):
        profile = positive.sum(axis=tuple(a for a in range(kernel.ndim) if a != axis))
        distance = np.abs(np.arange(n) - n // 2)
        mass = np.array([profile[distance <= r].sum() for r in range(n // 2 + 1)]) / total
        radius = int(np.searchsorted(mass, fraction))
        shape.append(min(2 * (radius + margin + int(noisy_rim)) + 1, n))
    return tuple(shape)


def _match_unconstrained_mass(kernel, unconstrained_sum, significance=2.0, cap=0.2):
    """Zero a nonnegative fit's smallest values until its sum is the unconstrained fit's.

    Where the true kernel is zero, the constraint keeps the positive half of the noise and
    clips the negative half, so the constrained kernel's sum exceeds the flux the data
    hold; the unconstrained fit's sum, whose noise averages out, does not. Once normalised,
    that surplus shrinks the kernel's core by the same fraction: on sparse scenes and with
    correlated errors (JPEG) the surplus reaches 5-10 % and dominates the error. When the
    surplus exceeds ``significance`` times the noise of a sum, ``σ √N`` (``σ`` the RMS
    of the outer two-pixel rim, an upper bound of the per-pixel noise), values are zeroed
    from the smallest up until the sums agree, never above ``cap`` times the peak. A
    surplus within the noise (faint real wings, bright scenes) leaves the kernel as it is.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    total = float(kernel.sum(dtype=np.float64))
    sigma = _rim_rms(kernel)
    surplus = total - unconstrained_sum
    if unconstrained_sum <= 0 or surplus <= significance * sigma * np.sqrt(kernel.size):
        return kernel
    values = np.sort(kernel.ravel().astype(np.float64))
    remaining = total - np.cumsum(values)  # the sum left once values[: i + 1] are zeroed
    index = min(int(np.searchsorted(-remaining, -unconstrained_sum)), values.size - 1)
    threshold = min(values[index], cap * float(values[-1]))
    return np.where(kernel > threshold, kernel, 0).astype(np.float32)


def _grown_shape(shape, trimmed, limit):
    """``shape`` enlarged by about a third along every axis where ``trimmed`` kept all of it."""
    return tuple(min(n + 2 * max(2, n // 6), m if m % 2 else m - 1) if t >= n else n
                 for n, t, m in zip(shape, trimmed, limit, strict=True))


# -- the least-squares problem on the valid region and its solvers ------------------------


def _unconstrained_sum(problem, kernel, regularization, steps=3):
    """Sum of the unconstrained minimiser of ``problem``: ``steps`` Newton steps from ``kernel``.

    Each step solves the quadratic model in the majorizer's metric ``T + λL`` (close to the
    exact curvature, see :class:`_ValidProblem`) by one round of preconditioned conjugate
    gradients on the kernel grid: one exact gradient (four image-sized FFTs) and
    kernel-sized products. The sum, a low-frequency quantity, settles long before the
    kernel itself would.
    """
    kernel = kernel.astype(np.float64)
    apply_curvature = problem.hessian(regularization)
    for _ in range(steps):
        gradient = problem.gradient(kernel, regularization).astype(np.float64)
        kernel = kernel + _nonnegative_quadratic(
            apply_curvature, gradient, np.zeros_like(kernel), False,
            threshold=1e-3 * norm(gradient),
            precondition=problem.preconditioner(regularization), rounds=1)
    return float(np.sum(kernel))


def _plus_penalty(product, kernel, regularization):
    """``product + λ L k``, ``L k`` the smoothness penalty's gradient at ``kernel`` (float32)."""
    if regularization > 0:
        product = product + np.float32(regularization) * _penalty_gradient(
            kernel.astype(np.float32))
    return product


def _autocorrelation_lags(pair, blur, shape):
    """Lags ``-(k - 1) … k - 1`` of the sharp overlap's autocorrelation, lag 0 centred.

    They are the entries of the Toeplitz matrix ``T`` of :class:`_ValidProblem` for a kernel
    of ``shape``; ``blur`` is that problem's convolution, whose grid and spectrum of the
    sharp image are reused when the grid holds every lag without wrapping.
    """
    sharp_shape = pair.sharp0.shape
    grid = blur.grid_shape
    if all(g >= n + 2 * k for g, n, k in zip(grid, sharp_shape, shape, strict=True)):
        autocorrelation = pair.autocorrelation(grid, spectrum=blur.fixed_ft)
    else:  # the operator's grid is too small to hold every lag without wrapping
        wide = fast_shape([n + 2 * k for n, k in zip(sharp_shape, shape, strict=True)])
        autocorrelation = pair.autocorrelation(wide)
    return centre_embed(autocorrelation, [2 * k - 1 for k in shape])


class _ValidProblem:
    """Least squares for the kernel ``k`` in the forward model ``blurred0 ≈ sharp0 ∗ k``.

    The model ``X k`` (:meth:`predict`) convolves the standardised, shifted sharp image with
    the kernel and keeps the valid region, where it sees no pixel outside the overlap. With
    ``b`` the standardised blurred image there, ``P`` the removal of the mean (the offset)
    and ``L = Dᵀ D`` the smoothness penalty, the objective is

    ``½ ‖P (X k − b)‖² + ½ λ ‖∇k‖²``,

    its gradient ``Xᵀ P (X k − b) + λ L k`` (:meth:`gradient`, through the convolution's
    ``apply`` and ``adjoint``) and its curvature ``Xᵀ P X + λ L``. :meth:`curvature` applies
    the majorizer ``T + λ L`` instead: ``T = Zᵀ Z`` for the same convolution with the image
    zero-extended, a Toeplitz matrix given by the image's autocorrelation, cheap to apply on
    a kernel-sized grid, and ``T ⪰ Xᵀ P X`` because it only adds the partial windows at the
    edges. :meth:`preconditioner` inverts a circulant approximation of ``T + λ L``.
    """

    def __init__(self, pair, shape):
        """The operators of an :class:`_AlignedPair` for a kernel of ``shape``."""
        sharp0, blurred0 = pair.sharp0, pair.blurred0
        self.shape = tuple(shape)
        self.blur = Convolver(sharp0, shape)  # X, with the sharp image as the fixed operand
        data = np.ascontiguousarray(blurred0[_valid_slices(sharp0.shape, shape)])
        self.data = data - data.mean(dtype=np.float64).astype(np.float32)
        lags = _autocorrelation_lags(pair, self.blur, shape)
        # a kernel-sized grid: one FFT thread is faster than waking a second for it
        self.toeplitz = Convolver(lags.astype(np.float32), shape, workers=1)
        # eigenvalues of the circulant that approximates T, and of the penalty, on the same
        # grid: they give the effective number of parameters for the evidence rule
        self.data_spectrum = np.abs(scipy.fft.rfftn(lags.astype(np.float64)))
        self.penalty_spectrum = _gradient_spectrum(lags.shape).astype(np.float64)
        # Strang's circulant on the kernel grid: the lags up to half the kernel size,
        # wrapped; its inverse preconditions the conjugate-gradient solves
        central = lags[tuple(slice(k // 2, k // 2 + k) for k in shape)].astype(np.float64)
        wrapped = np.fft.ifftshift(central)
        self.circulant = np.real(scipy.fft.rfftn(wrapped))
        self.circulant_penalty = _gradient_spectrum(self.shape).astype(np.float64)
        self._last_residual = None

    def predict(self, kernel):
        """The forward model ``X k``: ``sharp0 ∗ kernel`` on the valid region, float32."""
        return self.blur.apply(kernel, "valid")

    def residual(self, kernel):
        """``P(X k − b)`` on the valid region, as float32 (do not modify it in place).

        The last one is kept: after a momentum restart the solver's next gradient is taken
        at the very kernel whose residual the evidence update has just computed, and each
        costs two FFTs of the image's size.
        """
        kernel = kernel.astype(np.float32)
        if self._last_residual is not None and np.array_equal(self._last_residual[0], kernel):
            return self._last_residual[1]
        residual = self.predict(kernel) - self.data
        residual = residual - residual.mean(dtype=np.float64).astype(np.float32)
        self._last_residual = (kernel, residual)
        return residual

    def gradient(self, kernel, regularization):
        """``Xᵀ P (X k − b) + λ L k``: the objective's gradient at ``kernel``, float32."""
        return _plus_penalty(self.blur.adjoint(self.residual(kernel), "valid"), kernel,
                             regularization)

    def curvature(self, direction, regularization):
        """``(T + λ L) d``: the majorizing curvature applied to ``direction``."""
        product = self.toeplitz.apply(direction.astype(np.float32), "valid")
        return _plus_penalty(product, direction, regularization)

    def hessian(self, regularization):
        """``d ↦ (T + λ L) d`` in float64: the Hessian of the Newton–CG quadratic models."""
        def apply(direction):
            """:meth:`curvature` at this weight, as float64."""
            return self.curvature(direction, regularization).astype(np.float64)

        return apply

    def preconditioner(self, regularization):
        """``r ↦ C⁻¹ r`` for the circulant ``C ≈ T + λL`` on the kernel grid."""
        eigenvalues = self.circulant + regularization * self.circulant_penalty
        eigenvalues = np.maximum(eigenvalues, 1e-3 * float(eigenvalues.max()))
        shape = self.shape

        def apply(residual):
            """``C⁻¹ residual`` by two kernel-sized FFTs."""
            spectrum = scipy.fft.rfftn(residual, workers=1)
            return scipy.fft.irfftn(spectrum / eigenvalues, shape, workers=1)

        return apply


def _nonnegative_quadratic(apply_curvature, linear, start, nonnegative, *, threshold,
                           precondition, rounds=20, cg_iterations=50):
    """Minimise ``½ xᵀHx + cᵀx`` (subject to ``x ≥ 0``) by projected Newton–CG.

    Bertsekas' projected Newton method: the variables at zero whose gradient pushes them
    further down are held fixed, a truncated conjugate-gradient solve gives the Newton step
    on the others (:func:`_newton_step`), and a backtracking search along the projected
    path keeps the objective decreasing (:func:`_projected_search`). Every Hessian product
    is one small FFT convolution. Stops when the projected gradient's norm is below
    ``threshold``.
    """
    x = np.clip(start, 0, None) if nonnegative else start.copy()
    curved = apply_curvature(x)
    value = 0.5 * inner(x, curved) + inner(linear, x)
    for _ in range(rounds):
        gradient = curved + linear
        free = ((x > 0) | (gradient < 0)) if nonnegative else np.ones(x.shape, bool)
        residual = np.where(free, -gradient, 0.0)
        if norm(residual) <= threshold:
            break
        step = _newton_step(apply_curvature, residual, free, precondition, cg_iterations)
        if norm(step) <= 1e-9 * max(norm(x), 1e-30):
            break
        accepted = _projected_search(apply_curvature, linear, x, value, gradient, step,
                                     nonnegative)
        if accepted is None:
            break
        x, curved, value = accepted
    return x


def _newton_step(apply_curvature, residual, free, precondition, iterations):
    """Truncated preconditioned conjugate gradients for ``H s = residual`` on ``free``.

    The variables outside ``free`` stay at zero; the solve stops after ``iterations``, at a
    direction of nonpositive curvature, or once the residual's energy fell by ``10⁶``.
    ``residual`` is used up (changed in place).
    """
    step = np.zeros_like(residual)
    preconditioned = np.where(free, precondition(residual), 0.0)
    direction = preconditioned.copy()
    energy = inner(residual, preconditioned)
    target = inner(residual, residual) * 1e-6
    for _ in range(iterations):
        product = np.where(free, apply_curvature(direction), 0.0)
        curvature = inner(direction, product)
        if curvature <= 0 or energy <= 0:
            break
        alpha = energy / curvature
        step += alpha * direction
        residual -= alpha * product
        if inner(residual, residual) <= target:
            break
        preconditioned = np.where(free, precondition(residual), 0.0)
        new_energy = inner(residual, preconditioned)
        direction = preconditioned + (new_energy / energy) * direction
        energy = new_energy
    return step


def _projected_search(apply_curvature, linear, x, value, gradient, step, nonnegative,
                      halvings=12):
    """Backtracking (Armijo) along the projected path ``max(x + t step, 0)``.

    Returns the accepted point with its curvature product and objective value, or None when
    ``halvings`` halvings of ``t`` found no sufficient decrease.
    """
    length = 1.0
    for _ in range(halvings):
        candidate = x + length * step
        if nonnegative:
            np.maximum(candidate, 0, out=candidate)
        candidate_curved = apply_curvature(candidate)
        candidate_value = (0.5 * inner(candidate, candidate_curved)
                           + inner(linear, candidate))
        if candidate_value <= value + 1e-4 * inner(gradient, candidate - x):
            return candidate, candidate_curved, candidate_value
        length *= 0.5
    return None


def _majorize_minimize(problem, start, regularization, nonnegative, max_iterations, tolerance,
                       callback, auto_regularization, inner_tolerance=1e-3):
    """FISTA with adaptive restart in the metric of a Toeplitz majorizer.

    Each outer step evaluates the exact gradient ``g`` at the extrapolated point ``y`` on the
    valid region (four FFTs of the image size) and minimises the quadratic majorizer
    ``gᵀ(k − y) + ½ (k − y)ᵀ (T + λL)(k − y)`` subject to ``k ≥ 0`` by projected
    Newton–CG, where every product costs two FFTs of the kernel's size. Because ``T`` differs
    from the true curvature only by the partial windows at the edges, the step is close to a
    Newton step; Nesterov momentum with gradient-based restart (O'Donoghue & Candès) makes
    up for the rest.
    """
    kernel = np.clip(start, 0, None) if nonnegative else start.copy()
    kernel = kernel.astype(np.float64)
    extrapolated, momentum = kernel.copy(), 1.0
    reference = None
    done, stopped = 0, False
    for done in range(1, max_iterations + 1):
        apply_curvature = problem.hessian(regularization)
        gradient = problem.gradient(extrapolated, regularization).astype(np.float64)
        if reference is None:  # the inner solves aim at a fraction of the first gradient
            free = (extrapolated > 0) | (gradient < 0) if nonnegative else slice(None)
            reference = max(norm(gradient[free]), 1e-30)
        linear = gradient - apply_curvature(extrapolated)
        updated = _nonnegative_quadratic(apply_curvature, linear, extrapolated, nonnegative,
                                         threshold=inner_tolerance * reference,
                                         precondition=problem.preconditioner(regularization))
        step = updated - kernel
        change = norm(step) / max(norm(updated), 1e-30)
        restart = inner(extrapolated - updated, step) > 0
        kernel = updated
        if not report(callback, done, max_iterations, kernel.astype(np.float32)):
            stopped = True
            break
        if auto_regularization and done <= 6:
            updated_weight = _evidence_regularization(problem, kernel, nonnegative,
                                                      regularization)
            settled = abs(updated_weight - regularization) <= 0.1 * regularization
            regularization = updated_weight
            if not settled:
                restart = True
                change = np.inf
        if change <= tolerance:
            break
        if restart:
            momentum = 1.0
        next_momentum = 0.5 * (1 + np.sqrt(1 + 4 * momentum**2))
        extrapolated = kernel + ((momentum - 1) / next_momentum) * step
        momentum = next_momentum
    return kernel.astype(np.float32), done, regularization, stopped


def _evidence_regularization(problem, kernel, nonnegative, regularization):
    """One step of MacKay's evidence fixed point for the smoothness weight ``λ``.

    ``λ = σ̂² γ / ‖∇k‖²`` with ``σ̂² = ‖r‖² / (m − γ)``, where ``γ`` — the number of
    parameters the data determine — is ``Σ P / (P + λ D)`` over the eigenvalues ``P`` of the
    circulant approximation of the data curvature and ``D`` of the penalty, scaled to the
    number of free kernel values (the positive ones under the nonnegativity constraint).
    """
    kernel = kernel.astype(np.float32)
    residual = problem.residual(kernel)
    free = int(np.count_nonzero(kernel > 0)) if nonnegative else kernel.size
    free = max(free, 1)
    spectrum, penalty = problem.data_spectrum, problem.penalty_spectrum
    determined = float(np.mean(spectrum / (spectrum + regularization * penalty + 1e-30)))
    gamma = max(free * determined, 1.0)
    sigma2 = float(np.sum(residual.astype(np.float64) ** 2)) / max(residual.size - gamma, 1)
    roughness = _penalty(kernel)
    return sigma2 * gamma / max(roughness, 1e-30)


# -- the model on the whole frame ---------------------------------------------------------


def _reblur(sharp, kernel_fit, offset):
    """Model prediction on the whole frame (sharp extended by reflection outside it)."""
    half = [k // 2 for k in kernel_fit.shape]
    mode = "reflect" if all(n > h for n, h in zip(sharp.shape, half, strict=True)) \
        else "edge"
    padded = np.pad(sharp, [(h, h) for h in half], mode=mode)
    blurred = Convolver(kernel_fit, padded.shape).apply(padded, "valid")
    return blurred + np.float32(offset)


def _shift_image(image, shift):
    """``image`` translated by a sub-pixel ``shift`` (band-limited, mirrored at the edges)."""
    if not np.any(np.abs(shift) > 1e-6):
        return image
    return fourier_shift(image, np.asarray(shift, dtype=float), edges="mirror")


def _overlap_window(shape, shift):
    """Region of the frame where an image moved by ``shift`` holds real, not mirrored, data."""
    return tuple(slice(int(np.ceil(max(s, 0))), n - int(np.ceil(max(-s, 0))))
                 for n, s in zip(shape, shift, strict=True))


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
    regularization = _checked_options(method, regularization, max_iterations)
    sharp = as_float_array(sharp, "sharp", ndim=(2, 3))
    blurred = as_float_array(blurred, "blurred", ndim=(2, 3))
    if sharp.shape != blurred.shape:
        raise ValueError(f"sharp and blurred differ in shape: {sharp.shape} and {blurred.shape}")
    if rgb is None:
        rgb = sharp.ndim == 3 and sharp.shape[-1] in (3, 4)
    if rgb:
        return _estimate_rgb(sharp, blurred, shape, method=method,
                             regularization=regularization, nonnegative=nonnegative,
                             normalize=normalize, center=center, max_iterations=max_iterations,
                             tolerance=tolerance, callback=callback)
    return _estimate_single(sharp, blurred, shape, method=method, regularization=regularization,
                            nonnegative=nonnegative, normalize=normalize, center=center,
                            max_iterations=int(max_iterations), tolerance=float(tolerance),
                            callback=callback)


def _checked_options(method, regularization, max_iterations):
    """The regularization as ``"auto"`` or a float, once the options are checked."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(regularization, str) and regularization == "auto"):
        if isinstance(regularization, str) or not np.isscalar(regularization):
            raise ValueError(f"regularization must be 'auto' or a number, got {regularization!r}")
        regularization = float(regularization)
        if not (np.isfinite(regularization) and regularization >= 0):
            raise ValueError(f"regularization must be >= 0, got {regularization}")
    if int(max_iterations) < 0:
        raise ValueError(f"max_iterations must be >= 0, got {max_iterations}")
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

        channels.append(_estimate_single(
            np.ascontiguousarray(sharp[..., channel]), np.ascontiguousarray(
                blurred[..., channel]), shape, callback=channel_callback, **options))
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


# -- the pair aligned at one shift --------------------------------------------------------


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


# -- the phases of one estimate -----------------------------------------------------------


def _checked_shape(sharp, blurred, shape):
    """The requested kernel ``shape`` made odd (None stays None), once it and the images fit."""
    if shape is not None:
        shape = odd_shape(shape, sharp.ndim)
        if any(k > (n + 1) // 2 for k, n in zip(shape, sharp.shape, strict=True)):
            raise ValueError(f"kernel shape {shape} is too large for images of shape "
                             f"{sharp.shape}: at most half of each axis")
    if any(n < 8 for n in sharp.shape):
        raise ValueError(f"images of shape {sharp.shape} are too small: at least 8 pixels "
                         "per axis")
    if float(sharp.std()) == 0.0:
        raise ValueError("the sharp image is constant: it carries no information on the kernel")
    if float(blurred.std()) == 0.0:
        raise ValueError("the blurred image is constant: it carries no information on the kernel")
    return shape


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


def _pilot_shape(image_shape, shape):
    """Support of the wide Fourier pilot: about a third of each axis, at most 63 pixels (31
    in 3D), and at least the requested ``shape`` when one is given."""
    cap = 63 if len(image_shape) == 2 else 31
    return tuple(max(min(2 * (n // 6) + 1, cap), 2 * (k // 2) + 1 if shape else 1)
                 for n, k in zip(image_shape, shape or image_shape, strict=True))


def _pilot(pair, shape, manual):
    """The Fourier estimate on a pilot support of ``shape``, cut to fit in ``pair``'s overlap."""
    shape = tuple(min(k, n - 1 if n % 2 == 0 else n) for k, n in zip(shape, pair.sharp0.shape,
                                                                       strict=True))
    return _fourier_estimate(pair, shape, manual)[0]


def _pilot_is_significant(pilot, factor=6.0):
    """Whether a pilot's smoothed peak stands ``factor`` times above its outer frame's RMS."""
    smooth, frame = _smoothed_frame(pilot)
    if not frame.size:
        return True
    noise = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
    return float(smooth.max()) > factor * noise


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


def _fit_support(pair, sharp, shape, pilot_shape, options):
    """The fit on the requested ``shape``, or on a support chosen from the data (None).

    The automatic support holds the pilot's mass (:func:`_auto_shape`); the least-squares
    solver then surveys it with a rough fit and finishes on the support that fit shows
    (:func:`_surveyed_fit`).
    """
    automatic = shape is None
    if automatic:
        shape = _auto_shape(_pilot(pair, pilot_shape, options.manual))
    survey = automatic and options.method == "lsq"
    fit = _fit_at_shift(pair, shape, options.rough() if survey else options)
    if survey and not fit.stopped:
        fit = _surveyed_fit(pair, fit, pilot_shape, options, sparse=_is_sparse(sharp))
    return fit


def _surveyed_fit(pair, survey, pilot_shape, options, *, sparse):
    """The final fit on the support that a rough ``survey`` fit shows.

    A rough constrained fit is clean enough to show the real support: its empty rim, whose
    noise would otherwise stay in the kernel, is dropped (:func:`_trimmed_shape`) and the
    fit finished there. On an extended scene a kernel whose mass runs up to the edge of the
    survey's support was cut by the pilot's noise floor (faint rings, halos): it is surveyed
    again on a larger support (:func:`_grown_shape`), at most twice. On a ``sparse`` scene
    the rim's noise spikes make every support look full, so it is not grown.
    """
    fit, trimmed = survey, _trimmed_shape(survey.kernel, sparse=sparse)
    for _ in range(2):
        larger = _grown_shape(fit.shape, trimmed, pilot_shape)
        if sparse or larger == fit.shape or fit.stopped:
            break
        fit = _fit_at_shift(pair, larger, options.rough(), start=centre_embed(fit.kernel, larger),
                            start_regularization=fit.regularization)
        trimmed = _trimmed_shape(fit.kernel, sparse=sparse)
    return _fit_at_shift(pair, trimmed, options, start=centre_embed(fit.kernel, trimmed),
                         start_regularization=fit.regularization)


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
    sigma = noise_sigma(blurred)
    rms = float(np.sqrt(np.mean(residual[valid].astype(np.float64) ** 2)))
    kernel_out, shift = model.kernel, frame.shift
    if center:
        kernel_out, shift = _centred_kernel(kernel_out, shift, nonnegative)
    gain = 1.0
    if normalize:
        total = float(kernel_out.sum(dtype=np.float64))
        if total == 0:
            raise ValueError("the estimated kernel is zero: the images look unrelated")
        kernel_out = kernel_out / np.float32(total)
        gain = kernel_sum
    return KernelEstimate(
        kernel=kernel_out.astype(np.float32), shift=np.asarray(shift, dtype=float), gain=gain,
        offset=model.offset, residual=residual.astype(np.float32),
        reblurred=model.reblurred.astype(np.float32), regularization=fit.regularization,
        noise_sigma=sigma, residual_ratio=rms / sigma if sigma > 0 else float("inf"),
        kernel_sum=kernel_sum, shape=tuple(fit.shape), method=method,
        iterations=fit.iterations, valid=valid)


def _estimate_single(sharp, blurred, shape, *, method, regularization, nonnegative, normalize,
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
