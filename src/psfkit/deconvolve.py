"""Deconvolution with a known PSF: Wiener, Tikhonov, Richardson–Lucy (plain, accelerated,
total-variation regularised) and FISTA with total variation, plus an automatic choice.

Every method solves the same forward model, the one a camera obeys::

    image = valid(psf * object) + background + noise

The object is larger than the image by ``psf.shape - 1`` per axis, so the light that enters
the frame from outside it is modelled instead of wrapped around. The blur is evaluated on a
compact periodic grid just large enough for the object (``fast_shape(object_shape)``): on such a
grid the valid part of a circular convolution equals the linear one, so no padding work is
repeated inside the iterations. The iterative methods use boundary-aware normalisation in the
manner of Bertero and Boccacci, so pixels near the border converge like the interior and do
not ring. The returned image is the part of the object seen by the image's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from ._progress import report
from ._validate import as_float_array
from .noise import central_region, noise_model
from .operators import (
    WORKERS,
    Convolver,
    fast_shape,
    inner,
    inverse_rfftn,
    kernel_otf,
    multiply_by_conjugate,
    norm,
)

METHODS = ("auto", "wiener", "tikhonov", "richardson_lucy", "rl_tv", "fista_tv", "rl_mix")
ACCELERATIONS = ("geometric", "biggs_andrews", None)

#: Largest extrapolation step of the accelerated Richardson–Lucy iterations with Biggs and
#: Andrews' projection step rule (the classic form, RL-TV, and ``rl_mix``).
MAX_EXTRAPOLATION = 0.95

#: Largest extrapolation step of the geometric acceleration with the cosine step rule
#: (``method="richardson_lucy"``), whose iterations are stopped early, so their path
#: matters as well as their speed: larger steps (0.9–0.95)
#: go faster on deep runs, but their least error on smooth scenes stays up to 0.8 % above
#: plain RL's best; with 0.8 it is within 0.5 % (benchmark, acceleration part).
MAX_GEOMETRIC_EXTRAPOLATION = 0.8

#: Step rule of ``method="richardson_lucy"``'s acceleration (see ``_richardson_lucy``).
#: ``rl_mix`` keeps Biggs and Andrews' projection rule, with which its
#: ``DISCREPANCY_EXTENSION`` was chosen: with the cosine rule at those factors the benchmark
#: suite's median ratio to the best peer is 0.86 instead of 0.84.
RL_STEP_RULE = "cosine"

#: RL-TV iterations of ``rl_mix``'s last step, started from the TV-smoothed estimate. Fewer
#: favour blobs and more favour photographs (10: blobs 4 % better, photographs 2 % worse on
#: a hold-out set); 30 matches 200 iterations from a flat start on photographs.
RL_TV_REFINEMENT_ITERATIONS = 30

#: Default iteration budgets when neither the user nor a stopping rule decides.
DEFAULT_ITERATIONS = {"richardson_lucy": 100, "rl_tv": 200, "fista_tv": 200,
                      "rl_mix": 300}

#: ``rl_mix`` runs its Richardson–Lucy part this many times the iterations at which the
#: discrepancy principle is first met, before the TV smoothing brings the misfit back to the
#: noise: twice for extended objects, five times for point-like ones (see
#: ``POINT_SOURCE_KURTOSIS``), whose error keeps falling long after the residual reaches the
#: noise as Richardson–Lucy concentrates their light. Chosen once on the benchmark suite.
DISCREPANCY_EXTENSION = {"extended": 2.0, "points": 5.0}

#: An estimate whose excess kurtosis (at the discrepancy stop) is above this is taken to be
#: made of point sources (stars, beads): on the benchmark suite, star fields give 60–20 000,
#: fluorescence-like blobs 1–24 and photographs about -1.
POINT_SOURCE_KURTOSIS = 50.0

#: RL-TV's automatic weight is this times the relative noise ``sqrt(var / level) / level``
#: at the mean level (see ``_NoiseModel.relative_noise``); chosen once on the benchmark suite.
RL_TV_STRENGTH = 0.1

#: The TV smoothing of ``rl_mix``: dual projection iterations of the result (plain, without
#: momentum, which would take one more image per axis), and fast (Beck–Teboulle) ones per
#: weight tried while searching, warm-started from the previous weight's dual; bisection
#: steps on the logarithm of the weight (each halves a range of 4.5 decades); the search
#: looks at a central crop of at most this many samples.
SMOOTHING_ITERATIONS = 80
SMOOTHING_SEARCH_ITERATIONS = 15
SMOOTHING_BISECTIONS = 9
SMOOTHING_SEARCH_SAMPLES = 2**18

#: Regularised iterations stop when an iteration changes the estimate by less than this
#: fraction of its norm.
CONVERGENCE_TOLERANCE = 2e-4


@dataclass
class DeconvolutionInfo:
    """What :func:`deconvolve` did: the method, its settings and how it stopped."""

    method: str
    iterations: int = 0
    regularization: float = 0.0
    #: weight of ``rl_mix``'s total-variation smoothing (0 for the other methods)
    smoothing: float = 0.0
    #: extrapolation step of each accelerated Richardson–Lucy iteration (for ``rl_mix``, of
    #: its Richardson–Lucy part; its RL-TV part is not accelerated)
    steps: list = field(default_factory=list)
    acceleration: str | None = None
    noise_sigma: float = 0.0
    background: float = 0.0
    stopped_by: str = "iterations"
    history: list = field(default_factory=list)
    #: :func:`deconvolve` keyword arguments that repeat this run with no data-driven
    #: choice: ``deconvolve(other, psf, **info.parameters)`` treats another image (a block,
    #: the next frame) exactly like this one (method, iterations, regularization,
    #: acceleration and the noise model: background, read_noise, gain).
    parameters: dict = field(default_factory=dict)


@dataclass
class _NoiseModel:
    """``var(image) = gain * mean + intercept``, and how the RL family shifts the data.

    The shifted-Poisson approximation: ``image + intercept / gain`` has a variance of
    ``gain`` times its mean, so Richardson–Lucy runs on it with the model
    ``H x + background + intercept / gain``. With no signal-dependent noise (``gain`` = 0)
    the noise is Gaussian with variance ``intercept``.
    """

    gain: float
    intercept: float
    background: float
    rms: float
    poisson: bool

    @classmethod
    def estimate(cls, image, background=None, read_noise=None, gain=None) -> _NoiseModel:
        """The noise model of ``image``; the parts given are used as they are.

        With ``gain``, ``read_noise`` and ``background`` all given, nothing is estimated
        and the model does not depend on the image: shot noise when ``gain > 0``,
        Gaussian noise of standard deviation ``read_noise`` when ``gain == 0``.
        """
        if gain is not None and read_noise is not None and background is not None:
            gain, read_noise, background = float(gain), float(read_noise), float(background)
            if gain < 0 or read_noise < 0:
                raise ValueError(f"gain and read_noise must be >= 0, got {gain}, "
                                 f"{read_noise}")
            return cls(gain=gain, intercept=read_noise**2 - gain * background,
                       background=background, rms=read_noise, poisson=gain > 0)
        estimated_gain, intercept = noise_model(image)
        if gain is not None:
            if gain < 0:
                raise ValueError(f"gain must be >= 0, got {gain}")
            gain = float(gain)
        else:
            gain = estimated_gain
        level = float(np.mean(image, dtype=np.float64))
        if background is None:
            background = max(0.0, -intercept / gain) if gain > 0 else 0.0
        background = float(background)
        if read_noise is not None:
            intercept = float(read_noise) ** 2 - gain * background
        variance = max(gain * level + intercept, 1e-30)
        poisson = gain > 0 and gain * max(level - background, 0.0) > 0.5 * variance
        return cls(gain=gain, intercept=intercept, background=background,
                   rms=float(np.sqrt(variance)), poisson=poisson)

    def parameters(self) -> dict:
        """``background``, ``read_noise`` and ``gain`` for :func:`deconvolve` that give
        this model back without estimating anything."""
        if self.poisson:
            read_noise = np.sqrt(max(self.intercept + self.gain * self.background, 0.0))
            return {"background": self.background, "read_noise": float(read_noise),
                    "gain": self.gain}
        return {"background": self.background, "read_noise": self.rms, "gain": 0.0}

    def relative_noise(self, image) -> float:
        """Noise standard deviation over the signal, both at the image's mean level."""
        level = max(float(np.mean(image, dtype=np.float64)) - self.background, 1e-30)
        variance = self.gain * level if self.poisson else self.rms**2
        return float(np.sqrt(variance)) / level

    def shift(self) -> float:
        """What RL adds to the background-subtracted data and model: ``intercept / gain``
        (plus the background) for shot noise; three noise sigmas for Gaussian noise, so
        that few noisy dark pixels are clipped at zero."""
        if self.poisson:
            return max(self.intercept / self.gain + self.background, 0.0)
        return 3.0 * self.rms

    def variance_terms(self) -> tuple[float, float]:
        """``(a, c)`` with ``variance = a * (RL model) + c``."""
        return (self.gain, 0.0) if self.poisson else (0.0, max(self.rms**2, 1e-30))


class BlurOperator:
    """``valid(psf * object)`` and its adjoint on a compact periodic grid, in float32.

    The object occupies grid indices ``[0, N + K - 1)`` per axis and the image the
    ``valid`` slice ``[K - 1, K - 1 + N)``. Because the grid is at least as long as the
    object, the circular convolution equals the linear one on the valid slice, and the
    adjoint (a circular correlation) of anything supported there lands inside the object.
    Arrays passed around are full grid arrays so no re-embedding happens per iteration.
    """

    def __init__(self, psf: np.ndarray, image_shape, *, workers: int | None = None):
        psf = np.asarray(psf, dtype=np.float32)
        self.workers = WORKERS if workers is None else workers
        self.image_shape = tuple(int(n) for n in image_shape)
        self.psf_shape = psf.shape
        self.object_shape = tuple(n + k - 1 for n, k in zip(self.image_shape, psf.shape,
                                                             strict=True))
        self.grid_shape = fast_shape(self.object_shape)
        self.otf = scipy.fft.rfftn(psf, self.grid_shape, workers=self.workers)
        self.valid = tuple(slice(k - 1, k - 1 + n) for n, k in zip(self.image_shape,
                                                                    psf.shape, strict=True))
        self.object = tuple(slice(0, n) for n in self.object_shape)
        # the object pixel seen straight through a centred kernel's origin (shape // 2)
        self.output = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n)
                            for n, k in zip(self.image_shape, psf.shape, strict=True))

    def zeros(self) -> np.ndarray:
        return np.zeros(self.grid_shape, dtype=np.float32)

    def blur(self, grid_object: np.ndarray) -> np.ndarray:
        """Circular blur of a grid array; its ``valid`` slice is ``valid(psf * object)``."""
        spectrum = scipy.fft.rfftn(grid_object, workers=self.workers)
        spectrum *= self.otf
        return self._inverse(spectrum)

    def adjoint(self, grid_residual: np.ndarray) -> np.ndarray:
        """Correlation with the PSF of a grid array that is zero outside ``valid``."""
        spectrum = scipy.fft.rfftn(grid_residual, workers=self.workers)
        del grid_residual  # lets a caller that passed its last reference free the memory
        multiply_by_conjugate(spectrum, self.otf)
        return self._inverse(spectrum)

    def _inverse(self, spectrum: np.ndarray) -> np.ndarray:
        """``irfftn`` of a half spectrum, which it overwrites (no hidden spectrum copy)."""
        return inverse_rfftn(spectrum, self.grid_shape, workers=self.workers)

    def zero_outside_valid(self, grid: np.ndarray) -> None:
        """Set every grid sample outside the ``valid`` slice to zero, in place."""
        for axis, region in enumerate(self.valid):
            before = [slice(None)] * grid.ndim
            before[axis] = slice(0, region.start)
            grid[tuple(before)] = 0
            before[axis] = slice(region.stop, None)
            grid[tuple(before)] = 0

    def sensitivity(self) -> np.ndarray:
        """``H^T 1``: how much of each object pixel's light reaches the image."""
        ones = self.zeros()
        ones[self.valid] = 1
        return self.adjoint(ones)


def _prepare_psf(psf, ndim: int) -> np.ndarray:
    psf = as_float_array(psf, "psf", ndim=(ndim,))
    if psf.ndim != ndim:
        raise ValueError(f"psf must be {ndim}D like the image, got shape {psf.shape}")
    if np.any(psf < 0):
        psf = np.clip(psf, 0, None)
    total = float(psf.sum(dtype=np.float64))
    if not total > 0:
        raise ValueError("psf must have a positive sum")
    return psf / np.float32(total)


# ---------------------------------------------------------------- direct (Fourier) methods


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
    ndim = len(grid_shape)
    total = np.zeros([1] * ndim, dtype=np.float32)
    for axis, n in enumerate(grid_shape):
        freqs = (np.fft.rfftfreq(n) if axis == ndim - 1 else np.fft.fftfreq(n)).astype(
            np.float32)
        term = 2 - 2 * np.cos(2 * np.pi * freqs)
        total = total + term.reshape([-1 if a == axis else 1 for a in range(ndim)])
    return total**2


def _direct(image, psf, method, regularization, noise, info):
    """Regularised inverse filter on a mirrored, faded extension of the image; ``λ`` is
    chosen by the discrepancy principle unless given."""
    extended, inside = _smooth_extension(image, psf.shape)
    grid = extended.shape
    otf = kernel_otf(psf, grid)
    spectrum = scipy.fft.rfftn(extended, workers=WORKERS)
    del extended
    power = (otf.real**2 + otf.imag**2).astype(np.float32)
    penalty = (np.ones(1, dtype=np.float32) if method == "wiener" else _laplacian_power(grid))
    if regularization == "auto":
        regularization = _discrepancy_lambda(spectrum, power, penalty, noise.rms, grid,
                                             inside)
    regularization = float(regularization)
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}")
    denominator = power + np.float32(max(regularization, 1e-12)) * penalty
    multiply_by_conjugate(spectrum, otf)
    spectrum /= denominator
    info.regularization = regularization
    return inverse_rfftn(spectrum, grid)[inside]


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


# ----------------------------------------------------------- Richardson–Lucy family


def _total_variation_gradient_term(estimate: np.ndarray, epsilon: float) -> np.ndarray:
    """``div(∇x / |∇x|)`` with forward differences and Neumann boundaries."""
    gradients = []
    norm = np.full(estimate.shape, np.float32(epsilon**2), dtype=np.float32)
    for axis in range(estimate.ndim):
        g = np.diff(estimate, axis=axis, append=estimate.take([-1], axis=axis))
        gradients.append(g)
        norm += g * g
    np.sqrt(norm, out=norm)
    divergence = np.zeros_like(estimate)
    for axis, g in enumerate(gradients):
        g /= norm
        divergence += np.diff(g, axis=axis, prepend=np.zeros_like(g.take([0], axis=axis)))
    return divergence


def _slab_rows(shape, rows: int | None = None) -> int:
    """How many leading-axis rows a slab-wise loop takes at once: at most 32, and at most
    about 2**18 samples, so a slab of a volume is a few planes, not half of it."""
    if rows is not None:
        return rows
    row_size = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return max(1, min(32, 2**18 // max(row_size, 1)))


def _divide_by_tv_term(factor, estimate, weight: float, epsilon: float, rows: int | None = None):
    """Dey et al.'s RL-TV step: ``factor /= 1 - weight div(∇x/|∇x|)`` (kept above 0.2).

    Computed in slabs along the first axis with a one-sample halo, which gives the same
    values as the whole array at once while keeping the temporaries small.
    """
    rows = _slab_rows(estimate.shape, rows)
    n = estimate.shape[0]
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        low, high = max(start - 1, 0), min(stop + 1, n)
        term = _total_variation_gradient_term(estimate[low:high], epsilon)[start - low:
                                                                           stop - low]
        term *= np.float32(-weight)
        term += 1
        np.maximum(term, np.float32(0.2), out=term)
        factor[start:stop] /= term


@dataclass
class _PoissonData:
    """Data ready for the RL family: ``data ≈ Poisson-like with mean H x + shift``.

    ``variance = slope * mean + floor`` describes the noise for the discrepancy principle.
    The data, ``max(image - background + shift, 0)``, are not stored: they are recomputed
    from ``image`` in slabs where needed, which saves an image-sized array for about 8 % of
    a 2D iteration's time (nothing measurable in 3D).
    """

    shift: float
    slope: float
    floor: float
    image: np.ndarray
    background: float
    mean: float
    max: float

    @classmethod
    def from_image(cls, image, noise: _NoiseModel) -> _PoissonData:
        shift = float(noise.shift())
        slope, floor = noise.variance_terms()
        problem = cls(shift=shift, slope=slope, floor=floor, image=image,
                      background=float(noise.background), mean=0.0, max=0.0)
        rows = _slab_rows(image.shape)
        total, largest = 0.0, 0.0
        for start in range(0, image.shape[0], rows):
            part = problem.slab(start, start + rows)
            total += float(part.sum(dtype=np.float64))
            largest = max(largest, float(part.max()))
        problem.mean, problem.max = total / image.size, largest
        return problem

    def slab(self, start: int, stop: int) -> np.ndarray:
        """``data[start:stop]``, computed from the image."""
        part = self.image[start:stop] - np.float32(self.background)
        part += np.float32(self.shift)
        return np.maximum(part, 0, out=part)

    def divide_into(self, model: np.ndarray, rows: int | None = None) -> None:
        """``model = data / model``, in place, in slabs along the first axis."""
        rows = _slab_rows(model.shape, rows)
        for start in range(0, model.shape[0], rows):
            part = model[start:start + rows]
            np.divide(self.slab(start, start + rows), part, out=part)

    def misfit(self, model: np.ndarray, rows: int | None = None) -> float:
        """Mean squared residual over the noise variance (the discrepancy, 1 at the noise),
        in slabs along the first axis so the temporaries stay small."""
        rows = _slab_rows(model.shape, rows)
        total = 0.0
        for start in range(0, model.shape[0], rows):
            part = model[start:start + rows]
            residual = self.slab(start, start + rows) - part
            residual *= residual
            variance = part * np.float32(self.slope)
            variance += np.float32(self.floor)
            residual /= variance
            total += float(residual.sum(dtype=np.float64))
        return total / model.size


class _BoundaryWeights:
    """Bertero–Boccacci normalisation ``1 / H^T 1``, kept only where it differs from 1.

    ``H^T 1`` is exactly 1 on the object pixels whose whole PSF footprint lands inside the
    image (indices ``[K - 1, N)`` per axis), so only the border band of width ``K - 1`` at
    each end of each axis is stored, as slabs that do not overlap. Object pixels that send
    almost no light into the image get weight 0 (held at zero rather than amplified); grid
    samples outside the object get 0 too.
    """

    def __init__(self, operator: BlurOperator, threshold: float = 1e-3):
        sensitivity = operator.sensitivity()
        floor = np.float32(threshold * float(sensitivity.max()))
        self.object = operator.object
        self.slabs = []
        interior = [slice(0, n) for n in operator.object_shape]
        for axis, (n, k) in enumerate(zip(operator.image_shape, operator.psf_shape,
                                          strict=True)):
            # a PSF longer than the image leaves no pixel with its footprint inside
            bands = ((slice(0, k - 1), slice(n, n + k - 1)) if k - 1 < n
                     else (slice(0, n + k - 1),))
            for band in bands:
                if band.stop <= band.start:
                    continue
                region = list(interior)
                region[axis] = band
                region = tuple(region)
                weights = sensitivity[region]
                seen = weights > floor
                weights = np.reciprocal(weights, where=seen, out=np.zeros_like(weights))
                self.slabs.append((region, weights))
            # later axes' slabs exclude this axis's bands, so no pixel is weighted twice
            interior[axis] = slice(k - 1, n) if k - 1 < n else slice(0, 0)
        del sensitivity

    def apply(self, grid: np.ndarray) -> None:
        """Multiply a grid array by the weights, in place (zero outside the object)."""
        for axis, region in enumerate(self.object):
            outside = [slice(None)] * grid.ndim
            outside[axis] = slice(region.stop, None)
            grid[tuple(outside)] = 0
        for region, weights in self.slabs:
            grid[region] *= weights


def _extrapolate_log(estimate: np.ndarray, log_step: np.ndarray, alpha: float,
                     rows: int | None = None) -> None:
    """``estimate *= exp(alpha * log_step)``, with ``log_step`` (``log(x_k / x_{k-1})``)
    clipped to a factor of 10 either way, and ``log_step`` replaced by the exponent used;
    in place, in slabs along the first axis so the temporaries stay small. Storing
    ``log_step`` instead of the previous estimate spares a division and a power per pixel.
    """
    rows = _slab_rows(log_step.shape, rows)
    if alpha <= 0:
        log_step[...] = 0
        return
    limit, scale = np.float32(np.log(10.0)), np.float32(alpha)
    for start in range(0, log_step.shape[0], rows):
        step = log_step[start:start + rows]
        np.clip(step, -limit, limit, out=step)
        step *= scale
        estimate[start:start + rows] *= np.exp(step)


def _geometric_step(overlap: float, norm: float, previous_norm: float,
                    iteration: int) -> float:
    """Extrapolation step of the geometric acceleration after ``iteration`` steps.

    The cosine between the last two changes of ``log x`` (``overlap`` over the root of the
    product of their squared ``norm``s), not Biggs and Andrews' projection coefficient: it
    measures how steadily the iterations move without depending on how fast the steps
    shrink, and reaches plain RL's best error in fewer iterations on the benchmark cases.
    While the changes agree (positive cosine) the step is at least Nesterov's
    ``(k - 1) / (k + 2)``, which the estimate only reaches after several iterations; a
    negative cosine restarts (no extrapolation). At most ``MAX_GEOMETRIC_EXTRAPOLATION``.
    """
    cosine = overlap / max(np.sqrt(norm * previous_norm), 1e-300)
    if not cosine > 0:
        return 0.0
    return min(max(cosine, (iteration - 1) / (iteration + 2)), MAX_GEOMETRIC_EXTRAPOLATION)


def _richardson_lucy(problem: _PoissonData, operator: BlurOperator, *, iterations,
                     acceleration, regularization, stop_at_noise, callback, info,
                     tolerance=None, extension=1.0, step_offset=0, step_total=None,
                     step_rule="projection", steps=None, initial=None):
    """Richardson–Lucy on the valid geometry with Bertero–Boccacci normalisation.

    The data are ``image - background + shift`` and the model ``H x + shift``, where the
    shift (read-noise variance over the photon gain) is the shifted-Poisson approximation of
    Poisson plus Gaussian read noise. Memory: the estimate, and with acceleration the
    previous estimate and the last change, on the padded grid, besides the
    boundary weights, the OTF and the two transient FFT arrays.

    With ``stop_at_noise``, the iterations stop ``extension`` times later than the first
    iteration whose misfit reaches the noise (the discrepancy principle for 1);
    ``extension`` may be a function of the estimate at that iteration.
    ``step_offset`` and ``step_total`` place these iterations in a longer progress report.

    ``step_rule`` sets the extrapolation step of the accelerated iterations: Biggs and
    Andrews' ``"projection"`` coefficient of the last change on the one before (at most
    ``MAX_EXTRAPOLATION``), or, for the geometric form, ``"cosine"`` (see
    :func:`_geometric_step`), which follows plain RL's path more closely and is meant for
    early-stopped runs without a prior. ``steps``, the extrapolation steps of an earlier run
    (its ``info.steps``), replaces the computed ones iteration by iteration, so another image
    (a block of a larger one) follows the same path; the steps used are appended to
    ``info.steps``. ``initial``, an estimate of the output's shape, replaces the flat start.
    """
    if step_rule not in ("projection", "cosine"):
        raise ValueError(f"step_rule must be 'projection' or 'cosine', got {step_rule!r}")
    last = iterations
    model_offset = np.float32(problem.shift)
    weights = _BoundaryWeights(operator)
    start = max(problem.mean - problem.shift, 1e-6 * max(problem.max, 1e-30))
    estimate = operator.zeros()
    estimate[operator.object] = np.float32(start)
    # pixels that send almost no light into the image start (and stay) at zero
    weights.apply(estimate)
    seen = estimate[operator.object] > 0
    if initial is None:
        estimate[operator.object] = np.float32(start)
    else:
        # the object reaches past the output by the PSF's extent: continue the edge values
        margins = [(o.start - b.start, b.stop - o.stop)
                   for o, b in zip(operator.output, operator.object, strict=True)]
        estimate[operator.object] = np.pad(np.maximum(initial, np.float32(1e-3 * start)),
                                           margins, mode="edge")
    estimate[operator.object] *= seen
    del seen
    accelerate = acceleration is not None
    geometric = acceleration == "geometric"
    previous = change = region = log_step = None
    change_norm = alpha = 0.0
    # an offset far above FFT round-off keeps the model positive by itself (one pass less)
    safe_offset = problem.shift > 1e-4 * max(problem.mean, 1e-30)
    floor = np.float32(max(problem.shift, 1e-7 * max(problem.mean, 1e-30)))
    for iteration in range(1, iterations + 1):
        if not accelerate:
            point = estimate
        elif geometric:
            # point = estimate * (estimate / previous) ** alpha, in place: extrapolating
            # log x keeps the point positive without clipping
            if log_step is not None:
                _extrapolate_log(estimate[operator.object], log_step, alpha)
            point = estimate
        elif previous is None:
            point = estimate.copy()
        else:
            # point = estimate + alpha (estimate - previous), in previous's memory
            point = previous
            point *= np.float32(-alpha / (1 + alpha))
            point += estimate
            point *= np.float32(1 + alpha)
            np.maximum(point, 0, out=point)
        blurred = operator.blur(point)
        model = blurred[operator.valid]
        if safe_offset:
            model += model_offset
        else:
            # FFT round-off can leave zeros or tiny negatives where the model is dark
            np.maximum(model, floor, out=model)
        if stop_at_noise:
            info.history.append(problem.misfit(model))
        problem.divide_into(model)
        operator.zero_outside_valid(blurred)
        del model
        # hand over the last reference so the adjoint can free it after its first FFT
        pending = [blurred]
        del blurred
        factor = operator.adjoint(pending.pop())
        weights.apply(factor)
        if regularization > 0:
            _divide_by_tv_term(factor[operator.object], point[operator.object],
                               regularization, 1e-3 * max(start, 1e-12))
        if accelerate:
            # the change made by this step (of log x, or of x), on the object only
            region = factor[operator.object]
            if geometric:
                point *= factor
                # pixels held at zero (factor 0) keep a zero change
                np.log(region, out=region, where=region > 0)
                # log(new estimate / old estimate): the extrapolation's plus this step's
                if log_step is None:
                    log_step = region.copy()
                else:
                    log_step += region
            else:
                region -= 1
                region *= point[operator.object]
                point[operator.object] += region
            region_norm = inner(region, region)
            if change is not None:
                overlap = inner(region, change)
                if geometric and step_rule == "cosine":
                    alpha = _geometric_step(overlap, region_norm, change_norm, iteration)
                else:
                    alpha = min(max(overlap / max(change_norm, 1e-300), 0.0),
                                MAX_EXTRAPOLATION)
            if steps is not None and iteration <= len(steps):
                alpha = float(steps[iteration - 1])
            info.steps.append(alpha)
            if change is None:
                change = region.copy()
            else:
                np.copyto(change, region)
            change_norm = step_norm = region_norm
            if not geometric:
                previous, estimate = estimate, point
        else:
            if tolerance is not None:
                step = estimate * factor
                step -= estimate
                step_norm = inner(step, step)
                del step
            estimate *= factor
        del factor
        region = None  # a view of the factor: it would keep the factor alive
        info.iterations = iteration
        if tolerance is not None and iteration > 2:
            # relative change: of log x (geometric) or of x
            size = float(change.size) if geometric else inner(estimate, estimate)
            if step_norm <= tolerance**2 * size:
                info.stopped_by = "converged"
                report(callback, step_offset + iteration, step_offset + iteration,
                       estimate[operator.output])
                break
        if stop_at_noise and info.history[-1] <= 1.0:
            info.stopped_by = "discrepancy"
            stop_at_noise = False
            stretch = (extension(estimate[operator.output]) if callable(extension)
                       else extension)
            last = min(max(iteration, round(stretch * iteration)), iterations)
        # the planned total shrinks once the discrepancy stop has fixed the last iteration
        planned = (step_total or (step_offset + iterations)) - (iterations - last)
        if not report(callback, step_offset + iteration, planned, estimate[operator.output]):
            if iteration < last:
                info.stopped_by = "callback"
            break
        if iteration >= last:
            break
    del previous, change, weights, log_step
    return np.array(estimate[operator.output])


def _excess_kurtosis(values: np.ndarray, rows: int | None = None) -> float:
    """Excess kurtosis of the values: about 0 for Gaussian-like, large for sparse peaks.

    Two passes in slabs along the first axis, so the temporaries stay small.
    """
    rows = _slab_rows(values.shape, rows)
    mean = float(np.mean(values, dtype=np.float64))
    second = fourth = 0.0
    for start in range(0, values.shape[0], rows):
        part = values[start:start + rows].astype(np.float64)
        part -= mean
        part *= part
        second += float(part.sum())
        part *= part
        fourth += float(part.sum())
    second, fourth = second / values.size, fourth / values.size
    return fourth / max(second**2, 1e-300) - 3.0


def _smooth_to_noise(estimate, image, psf, noise: _NoiseModel, weight="auto",
                     target: float = 1.0, on_step=None):
    """Total-variation smoothing of an over-fitted estimate until it explains the data
    only down to the noise: the largest TV weight whose reblurred result still has a
    misfit of at most ``target`` noise variances, where the blur is fully defined.

    The weight is searched by bisection of its logarithm on a central region of at most
    ``SMOOTHING_SEARCH_SAMPLES`` samples (the misfit is an average, and a large region
    gives the same weight); the result is then smoothed with it from a cold start, so
    that the weight alone (``smoothing=``) reproduces it. Returns the smoothed estimate and
    the weight (the given one when not ``"auto"``). ``on_step()`` is called after each
    bisection step and each smoothing iteration (:func:`_smoothing_steps` in all); when it returns
    False the work stops, and the estimate is returned as it is then, with weight 0 if the
    search had not finished.
    """
    if weight == "auto":
        weight = _smoothing_weight(estimate, image, psf, noise, target, on_step)
        if weight is None:
            return estimate, 0.0
    weight = float(weight)
    dual = [np.zeros(estimate.shape, dtype=np.float32) for _ in range(estimate.ndim)]
    return _tv_prox(estimate, weight, dual, iterations=SMOOTHING_ITERATIONS,
                    accelerated=False, on_iteration=on_step), weight


def _smoothing_steps(weight) -> int:
    """Progress steps of :func:`_smooth_to_noise` for a ``weight`` (``"auto"`` or a number)."""
    return SMOOTHING_ITERATIONS + (SMOOTHING_BISECTIONS if weight == "auto" else 0)


def _smoothing_weight(estimate, image, psf, noise: _NoiseModel, target: float,
                      on_step=None) -> float | None:
    """The search of :func:`_smooth_to_noise`: the largest TV weight (to 1/2**9 of 4.5
    decades) whose smoothed estimate has a misfit of at most ``target``; None when
    ``on_step()`` returned False."""
    if any(n < k for n, k in zip(image.shape, psf.shape, strict=True)):
        return 0.0  # no pixel sees the whole PSF: no misfit to measure, so no smoothing
    region = central_region(image.shape, SMOOTHING_SEARCH_SAMPLES,
                            [3 * k for k in psf.shape])
    estimate, image = estimate[region], image[region]
    crop = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n - k + 1)
                 for n, k in zip(image.shape, psf.shape, strict=True))
    # the RL family's variance, ``slope * (H x + shift) + floor``, for the unshifted H x
    slope, floor = noise.variance_terms()
    floor = max(floor + slope * noise.shift(), 1e-30)
    blur = Convolver(psf, image.shape)

    def misfit(candidate):
        model = blur.apply(candidate, "valid")
        del candidate
        variance = None
        if slope > 0:
            variance = np.maximum(model, 0)
            variance *= np.float32(slope)
            variance += np.float32(floor)
        model += np.float32(noise.background)
        model -= image[crop]
        model *= model
        if variance is None:
            return float(np.mean(model, dtype=np.float64)) / floor
        model /= variance
        return float(np.mean(model, dtype=np.float64))

    dual = [np.zeros(image.shape, dtype=np.float32) for _ in range(image.ndim)]
    scale = float(np.std(estimate, dtype=np.float64)) or 1.0
    low, high = -4.0, 0.5  # log10 of weight / scale
    for _ in range(SMOOTHING_BISECTIONS):
        middle = 0.5 * (low + high)
        # no name holds the candidate, so it is freed before the next one is made
        if misfit(_tv_prox(estimate, scale * 10.0**middle, dual,
                           iterations=SMOOTHING_SEARCH_ITERATIONS)) <= target:
            low = middle
        else:
            high = middle
        if on_step is not None and not on_step():
            return None
    return scale * 10.0**low


def _rl_mix(problem: _PoissonData, image, psf, noise, *, iterations, acceleration,
            regularization, smoothing, callback, info, steps=None):
    """Richardson–Lucy run past the noise, then TV-smoothed back to it; for extended
    objects averaged with RL-TV.

    1. Richardson–Lucy without a prior, stopped after ``iterations`` or, when that is
       ``None``, at ``DISCREPANCY_EXTENSION`` times the discrepancy principle's stop:
       twice for extended objects, five times for point sources (``POINT_SOURCE_KURTOSIS``).
       These iterations over-fit: they recover detail and amplify noise.
    2. The smallest total-variation smoothing that brings the misfit back to the noise
       removes most of that noise and keeps the edges and peaks (:func:`_smooth_to_noise`,
       weight ``smoothing``).
    3. Unless the object is made of point sources (or ``regularization`` is 0), RL-TV at
       weight ``regularization`` runs ``RL_TV_REFINEMENT_ITERATIONS`` unaccelerated
       iterations from the smoothed estimate, restoring the blur model that the smoothing
       ignores, and the two are averaged. On the benchmark suite this is as good on
       photographs as 200 iterations of RL-TV from a flat start, and better on blobs.

    ``info.iterations`` reports the Richardson–Lucy part's iterations, ``info.regularization``
    the RL-TV weight (0 for point sources) and ``info.smoothing`` the TV smoothing weight.
    The blur operator (its OTF) and the data are dropped during the smoothing, which needs
    room for the dual variables. Progress is reported per RL iteration, per step of the
    smoothing (with no current estimate) and per RL-TV iteration.
    """
    operator = BlurOperator(psf, image.shape)
    budget = iterations or DEFAULT_ITERATIONS["rl_mix"]
    tv_iterations = RL_TV_REFINEMENT_ITERATIONS
    smoothing_steps = _smoothing_steps(smoothing)
    total = budget + smoothing_steps + tv_iterations
    found = {}

    def extension(estimate):
        found["points"] = _excess_kurtosis(estimate) > POINT_SOURCE_KURTOSIS
        return DISCREPANCY_EXTENSION["points" if found["points"] else "extended"]

    info.acceleration = acceleration
    sharp = _richardson_lucy(problem, operator, iterations=budget, acceleration=acceleration,
                             regularization=0.0, stop_at_noise=iterations is None,
                             extension=extension, callback=callback, info=info,
                             step_total=total, steps=steps)
    if info.stopped_by == "callback":
        return sharp
    if regularization == "auto":
        points = found["points"] if "points" in found else (
            _excess_kurtosis(sharp) > POINT_SOURCE_KURTOSIS)
        regularization = 0.0 if points else RL_TV_STRENGTH * noise.relative_noise(image)
    regularization = float(regularization)
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}")
    info.regularization = regularization
    del operator  # room for the smoothing
    done = info.iterations + smoothing_steps
    total = done + (tv_iterations if regularization > 0 else 0)
    progress = [info.iterations]

    def smoothing_step() -> bool:
        progress[0] += 1
        if report(callback, progress[0], total):
            return True
        info.stopped_by = "callback"
        return False

    sharp, info.smoothing = _smooth_to_noise(sharp, image, psf, noise, smoothing,
                                             on_step=smoothing_step)
    if regularization == 0 or info.stopped_by == "callback":
        return sharp
    operator = BlurOperator(psf, image.shape)
    tv_info = DeconvolutionInfo(method="rl_tv")
    # unaccelerated: a short run from a close start, and without extrapolation the run
    # needs two object-sized arrays less
    smooth = _richardson_lucy(problem, operator, iterations=tv_iterations,
                              acceleration=None, regularization=regularization,
                              stop_at_noise=False, callback=callback, info=tv_info,
                              step_offset=done, step_total=total, initial=sharp)
    if tv_info.stopped_by == "callback":
        info.stopped_by = "callback"
    sharp += smooth
    sharp *= np.float32(0.5)
    return sharp


def _forward_difference(field: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """Forward difference along ``axis`` into ``out``, zero across the last sample (Neumann)."""
    inner = [slice(None)] * field.ndim
    inner[axis] = slice(0, -1)
    ahead = [slice(None)] * field.ndim
    ahead[axis] = slice(1, None)
    np.subtract(field[tuple(ahead)], field[tuple(inner)], out=out[tuple(inner)])
    last = [slice(None)] * field.ndim
    last[axis] = slice(-1, None)
    out[tuple(last)] = 0
    return out


def _divergence(parts: list[np.ndarray]) -> np.ndarray:
    """Minus the adjoint of :func:`_gradient`."""
    total = np.zeros_like(parts[0])
    for axis, part in enumerate(parts):
        inner = [slice(None)] * part.ndim
        inner[axis] = slice(0, -1)
        ahead = [slice(None)] * part.ndim
        ahead[axis] = slice(1, None)
        total[tuple(inner)] += part[tuple(inner)]
        total[tuple(ahead)] -= part[tuple(inner)]
    return total


def _dual_ascent(estimate, axis: int, step, momentum_axis, out) -> None:
    """``out = momentum_axis + step * ∂_axis estimate``: the TV dual's ascent point."""
    _forward_difference(estimate, axis, out)
    out *= step
    out += momentum_axis


def _tv_prox(values: np.ndarray, weight: float, dual: list[np.ndarray],
             iterations: int = 10, accelerated: bool = True, on_iteration=None) -> np.ndarray:
    """``argmin_z ½||z - values||² + weight TV(z)`` over ``z >= 0`` by Beck–Teboulle's fast
    gradient projection on the dual (plain projection with ``accelerated=False``); ``dual`` is
    warm-started and updated in place. ``on_iteration()``, if given, is called after each
    iteration; returning False stops the iterations there.

    Memory: the dual, its momentum (one array per axis each; none without momentum) and
    three more arrays; the gradient is recomputed one axis at a time rather than stored.
    """
    if weight <= 0:
        return np.maximum(values, 0)
    step = np.float32(1.0 / (4 * values.ndim * weight))
    momentum = [d.copy() for d in dual] if accelerated else dual
    part = np.empty_like(values)
    magnitude = np.empty_like(values)

    t = 1.0
    for _ in range(iterations):
        estimate = _divergence(momentum)
        estimate *= np.float32(weight)
        estimate += values
        np.maximum(estimate, 0, out=estimate)
        magnitude.fill(0)
        for axis in range(values.ndim):
            _dual_ascent(estimate, axis, step, momentum[axis], part)
            part *= part
            magnitude += part
        np.sqrt(magnitude, out=magnitude)
        np.maximum(magnitude, 1, out=magnitude)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        beta = np.float32((t - 1) / t_next)
        for axis, (old, m) in enumerate(zip(dual, momentum, strict=True)):
            _dual_ascent(estimate, axis, step, momentum[axis], part)
            part /= magnitude
            if not accelerated:
                old[...] = part
                continue
            np.subtract(part, old, out=m)
            m *= beta
            m += part
            old[...] = part
        del estimate
        t = t_next
        if on_iteration is not None and not on_iteration():
            break
    del part, magnitude
    momentum = None  # the final estimate needs only the dual
    estimate = _divergence(dual)
    estimate *= np.float32(weight)
    estimate += values
    return np.maximum(estimate, 0, out=estimate)


def _fista_tv(image, operator: BlurOperator, *, noise: _NoiseModel, iterations,
              regularization, callback, info):
    """FISTA on ``½||valid(H x) + b - y||² + λ TV(x)``, ``x >= 0``, with adaptive restart.

    With ``regularization="auto"``, ``λ`` follows the discrepancy principle during the
    iterations: it is scaled up while the residual is below the noise and down while above.
    """
    data = image - np.float32(noise.background)
    target = noise.rms**2
    automatic = regularization == "auto"
    weight = 0.5 * noise.rms if automatic else float(regularization)
    estimate = operator.zeros()
    estimate[operator.object] = np.float32(max(float(data.mean()), 0.0))
    momentum_point = estimate.copy()
    dual = [np.zeros(operator.object_shape, dtype=np.float32) for _ in range(image.ndim)]
    t = 1.0
    for iteration in range(1, iterations + 1):
        blurred = operator.blur(momentum_point)
        valid = blurred[operator.valid]
        valid -= data
        misfit = float(np.mean(valid * valid, dtype=np.float64))
        info.history.append(misfit / max(target, 1e-30))
        operator.zero_outside_valid(blurred)
        gradient = operator.adjoint(blurred)
        del blurred
        momentum_point -= gradient
        del gradient
        if automatic and iteration > 5 and iteration % 5 == 0:
            weight *= float(np.clip((target / max(misfit, 1e-30)) ** 0.5, 0.5, 2.0))
        new = _tv_prox(momentum_point[operator.object], weight, dual)
        previous_region = estimate[operator.object]
        # O'Donoghue–Candès gradient restart: momentum pointing uphill is dropped
        uphill = inner(momentum_point[operator.object] - new, new - previous_region)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        beta = (t - 1) / t_next
        if uphill > 0:
            t_next, beta = 1.0, 0.0
        momentum_point[operator.object] = new
        momentum_point[operator.object] += np.float32(beta) * (new - previous_region)
        change = norm(new - previous_region) / max(norm(new), 1e-30)
        estimate[operator.object] = new
        t = t_next
        info.iterations = iteration
        if not report(callback, iteration, iterations, estimate[operator.output]):
            info.stopped_by = "callback"
            break
        if change < 1e-4 and iteration > 10:
            info.stopped_by = "converged"
            break
    info.regularization = weight
    return estimate[operator.output] + np.float32(0)


# -------------------------------------------------------------------------------- public


def deconvolve(
    image,
    psf,
    method: str = "auto",
    *,
    iterations: int | None = None,
    regularization="auto",
    smoothing="auto",
    acceleration: str | None = "geometric",
    acceleration_steps=None,
    background: float | None = None,
    read_noise: float | None = None,
    gain: float | None = None,
    callback=None,
    return_info: bool = False,
):
    """Deconvolve ``image`` by a known ``psf``, without edge ringing or noise blow-up.

    Parameters
    ----------
    image : (M, N) or (P, M, N) ndarray
        Blurred image, any real dtype. Not modified.
    psf : ndarray
        Point spread function with the image's dimensionality, origin at its centre pixel
        ``shape // 2``. It is clipped to be nonnegative and normalised to unit sum.
    method : {"auto", "wiener", "tikhonov", "richardson_lucy", "rl_tv", "fista_tv", "rl_mix"}
        ``"auto"`` chooses the method, its regularization and when to stop from the data;
        today it is ``"rl_mix"``: Richardson–Lucy run past the discrepancy principle's stop,
        total-variation smoothed back to the noise level and, unless the object is made of
        point sources, averaged with RL-TV (see ``_rl_mix``).
    iterations : int, optional
        Iteration budget of the iterative methods. When omitted, the discrepancy principle
        stops them (at most ``DEFAULT_ITERATIONS`` for the method).
    regularization : float or "auto"
        Weight of the regulariser; ``"auto"`` chooses it from the noise level. For
        ``"rl_mix"``, the weight of its RL-TV member (0 leaves that member out).
    smoothing : float or "auto"
        ``"rl_mix"`` only: the weight of the total-variation smoothing of its
        Richardson–Lucy member; ``"auto"`` makes the smoothed result fit the data down to the
        noise (the discrepancy principle).
    acceleration : {"geometric", "biggs_andrews", None}
        Richardson–Lucy acceleration by Biggs–Andrews vector extrapolation, of ``log x``
        (``"geometric"``, the default: stays positive without clipping, which keeps point
        sources sharp) or of ``x`` itself (``"biggs_andrews"``, the classic form, with
        clipping at zero). ``None`` gives plain Richardson–Lucy.
    acceleration_steps : sequence of float, optional
        The extrapolation step of each accelerated iteration, as an earlier run reports them
        in ``info.steps``: replays that run's acceleration instead of computing the steps
        from this image, so that blocks of a larger image (:mod:`psfkit.chunked`) or the
        frames of a series follow the same path. ``info.parameters`` includes them.
    background : float, optional
        Constant offset of the image (camera offset, sky level). Estimated when omitted.
    read_noise : float, optional
        Standard deviation of the Gaussian read noise in image units. Estimated with
        ``gain`` from the image when omitted.
    gain : float, optional
        Shot-noise gain: the variance added per unit of signal above the background
        (``var = gain * (mean - background) + read_noise²``); 0 for purely Gaussian noise.
        Estimated from the image when omitted. With ``background``, ``read_noise`` and
        ``gain`` all given, no noise estimate is made.
    callback : callable, optional
        ``callback(step, total, current)`` after each iteration; return ``False`` to stop.
    return_info : bool
        Also return a :class:`DeconvolutionInfo`. Its ``parameters`` are keyword arguments
        that repeat the run without any data-driven choice, e.g. on the blocks of a larger
        image (:func:`psfkit.chunked.deconvolve_chunked` does this).

    Returns
    -------
    (M, N) or (P, M, N) ndarray of float32
        The deconvolved image, on the input's grid. With ``return_info``, a tuple
        ``(image, info)``.

    Notes
    -----
    The model is ``y = valid(h * x) + b + n``, with ``x`` larger than ``y`` by the PSF
    support minus one, so the result has no wrap-around artefacts.

    References
    ----------
    .. [1] W. H. Richardson, "Bayesian-based iterative method of image restoration",
       JOSA 62 (1972); L. B. Lucy, AJ 79 (1974).
    .. [2] M. Bertero and P. Boccacci, "A simple method for the reduction of boundary
       effects in the Richardson-Lucy approach to image deconvolution", A&A 437 (2005).
    .. [3] D. S. C. Biggs and M. Andrews, "Acceleration of iterative image restoration
       algorithms", Applied Optics 36 (1997).
    .. [4] N. Dey et al., "Richardson–Lucy algorithm with total variation regularization
       for 3D confocal microscope deconvolution", Microsc. Res. Tech. 69 (2006).
    .. [5] A. Beck and M. Teboulle, "Fast gradient-based algorithms for constrained total
       variation image denoising and deblurring problems", IEEE TIP 18 (2009);
       B. O'Donoghue and E. Candès, "Adaptive restart for accelerated gradient schemes",
       FoCM 15 (2015).
    """
    image = as_float_array(image, "image")
    psf = _prepare_psf(psf, image.ndim)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if acceleration not in ACCELERATIONS:
        raise ValueError(f"acceleration must be one of {ACCELERATIONS}, got {acceleration!r}")
    if iterations is not None and (int(iterations) != iterations or iterations < 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if acceleration_steps is not None:
        steps = np.asarray(acceleration_steps, dtype=np.float64)
        if steps.ndim != 1 or not np.all(np.isfinite(steps)) or np.any(steps < 0):
            raise ValueError("acceleration_steps must be a sequence of finite numbers >= 0")
        acceleration_steps = steps.tolist()
    if not (regularization == "auto" or np.isscalar(regularization)):
        raise ValueError(f"regularization must be a number or 'auto', got {regularization!r}")
    noise = _NoiseModel.estimate(image, background, read_noise, gain)
    info = DeconvolutionInfo(method=method, noise_sigma=noise.rms, background=noise.background)
    if method == "auto":
        # both RL priors fit both noise kinds through the shifted-Poisson model; their
        # average is never far from the better of the two, whichever suits the scene
        method = "rl_mix"
        info.method = method
    if method in ("wiener", "tikhonov"):
        result = _direct(image, psf, method, regularization, noise, info)
    elif method == "rl_mix":
        if not (smoothing == "auto" or (np.isscalar(smoothing) and float(smoothing) >= 0)):
            raise ValueError(f"smoothing must be a number >= 0 or 'auto', got {smoothing!r}")
        result = _rl_mix(_PoissonData.from_image(image, noise), image, psf, noise,
                         iterations=iterations, acceleration=acceleration,
                         regularization=regularization, smoothing=smoothing,
                         callback=callback, info=info, steps=acceleration_steps)
    elif method in ("richardson_lucy", "rl_tv"):
        lam = 0.0
        if method == "rl_tv":
            lam = (RL_TV_STRENGTH * noise.relative_noise(image) if regularization == "auto"
                   else float(regularization))
            if lam < 0:
                raise ValueError(f"regularization must be >= 0, got {lam}")
        info.acceleration = acceleration
        info.regularization = lam
        automatic_stop = iterations is None
        result = _richardson_lucy(_PoissonData.from_image(image, noise),
                                  BlurOperator(psf, image.shape),
                                  iterations=iterations or DEFAULT_ITERATIONS[method],
                                  acceleration=acceleration, regularization=lam,
                                  stop_at_noise=automatic_stop and lam == 0,
                                  tolerance=CONVERGENCE_TOLERANCE if automatic_stop and lam > 0
                                  else None,
                                  callback=callback, info=info,
                                  step_rule=RL_STEP_RULE if lam == 0 else "projection",
                                  steps=acceleration_steps)
    else:
        result = _fista_tv(image, BlurOperator(psf, image.shape), noise=noise,
                           iterations=iterations or DEFAULT_ITERATIONS[method],
                           regularization=regularization, callback=callback, info=info)
    result = np.ascontiguousarray(result, dtype=np.float32)
    info.parameters = dict(method=info.method, regularization=float(info.regularization),
                           **noise.parameters())
    if info.method not in ("wiener", "tikhonov"):
        info.parameters.update(iterations=max(int(info.iterations), 1),
                               acceleration=info.acceleration)
    if info.method == "rl_mix":
        info.parameters.update(smoothing=float(info.smoothing))
    if info.steps:
        info.parameters.update(acceleration_steps=[float(step) for step in info.steps])
    if return_info:
        return result, info
    return result
