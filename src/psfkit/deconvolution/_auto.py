"""The automatic method, ``rl_mix``: Richardson–Lucy run past the noise, smoothed back to it
by total variation and, for extended objects, averaged with RL-TV started from there.

Its tuned constants (how far past the noise, what counts as point sources, the RL-TV
weight and length) are the fields of :class:`~psfkit.deconvolution._tuning.AutoTuning`,
passed as ``request.tuning``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from psfkit._progress import report
from psfkit.noise import central_region

from ._common import DEFAULT_ITERATIONS, MethodResult, Request, slab_rows
from ._extrapolation import make_extrapolation
from ._noise import NoiseModel
from ._operators import BUILD_FRESH, OperatorCache
from ._richardson_lucy import (
    DiscrepancyStop,
    PoissonData,
    ProgressSpan,
    richardson_lucy,
    tv_regulariser,
)
from ._tuning import DEFAULT_TUNING, AutoTuning
from ._tv import tv_prox
from ._varying import central_psf

#: The TV smoothing of ``rl_mix``'s search: fast (Beck–Teboulle) dual projection
#: iterations per weight tried, warm-started from the previous weight's dual; bisection
#: steps on the logarithm of the weight (each halves a range of 4.5 decades); the search
#: looks at a central crop of at most this many samples. The smoothing of the result runs
#: ``AutoTuning.smoothing_iterations`` fast iterations from a cold start.
SMOOTHING_SEARCH_ITERATIONS = 15
SMOOTHING_BISECTIONS = 9
SMOOTHING_SEARCH_SAMPLES = 2**18


def excess_kurtosis(values: np.ndarray) -> float:
    """Excess kurtosis of the values: about 0 for Gaussian-like, large for sparse peaks.

    Two passes in slabs along the first axis, so the temporaries stay small.
    """
    rows = slab_rows(values.shape)
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


class PointSourceExtension:
    """The discrepancy extension of ``rl_mix``'s RL part, a function of the estimate at
    the discrepancy stop: ``tuning.extension_points`` when its excess kurtosis says point
    sources, else ``tuning.extension_extended``. Remembers the verdict in ``points``."""

    def __init__(self, tuning: AutoTuning):
        self.tuning = tuning
        self.points: bool | None = None

    def is_points(self, estimate: np.ndarray) -> bool:
        """Whether ``estimate`` is made of point sources (stars, beads)."""
        return excess_kurtosis(estimate) > self.tuning.point_source_kurtosis

    def __call__(self, estimate: np.ndarray) -> float:
        """The extension factor for ``estimate``."""
        self.points = self.is_points(estimate)
        return self.tuning.discrepancy_extension(self.points)


def smooth_to_noise(estimate, image, psf, noise: NoiseModel, weight="auto",
                    target: float = 1.0, on_step=None,
                    operators: OperatorCache = BUILD_FRESH,
                    iterations: int = DEFAULT_TUNING.smoothing_iterations):
    """Total-variation smoothing of an over-fitted estimate until it explains the data
    only down to the noise: the largest TV weight whose reblurred result still has a
    misfit of at most ``target`` noise variances, where the blur is fully defined.

    The weight is searched by bisection of its logarithm on a central region of at most
    ``SMOOTHING_SEARCH_SAMPLES`` samples (the misfit is an average, and a large region
    gives the same weight); the result is then smoothed with it by ``iterations`` fast
    dual projection iterations from a cold start, so that the weight alone
    (``smoothing=``) reproduces it. Returns the smoothed estimate and
    the weight (the given one when not ``"auto"``). ``on_step()`` is called after each
    bisection step and each smoothing iteration (:func:`smoothing_steps` in all); when it
    returns False the work stops, and the estimate is returned as it is then, with weight 0
    if the search had not finished.
    """
    if weight == "auto":
        weight = _smoothing_weight(estimate, image, psf, noise, target, on_step, operators)
        if weight is None:
            return estimate, 0.0
    weight = float(weight)
    dual = [np.zeros(estimate.shape, dtype=np.float32) for _ in range(estimate.ndim)]
    return tv_prox(estimate, weight, dual, iterations=iterations,
                   on_iteration=on_step), weight


def smoothing_steps(weight, iterations: int = DEFAULT_TUNING.smoothing_iterations) -> int:
    """Progress steps of :func:`smooth_to_noise` for a ``weight`` (``"auto"`` or a number)
    and its ``iterations``."""
    return iterations + (SMOOTHING_BISECTIONS if weight == "auto" else 0)


def _valid_misfit(psf, image, noise: NoiseModel, operators: OperatorCache = BUILD_FRESH):
    """``misfit(candidate)``: the mean squared residual over the noise variance of
    ``valid(psf * candidate) + background`` against the valid part of ``image`` (the
    candidate has the image's shape and is consumed)."""
    crop = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n - k + 1)
                 for n, k in zip(image.shape, psf.shape, strict=True))
    # the RL family's variance, ``slope * (H x + shift) + floor``, for the unshifted H x
    slope, floor = noise.variance_terms()
    floor = max(floor + slope * noise.shift(), 1e-30)
    blur = operators.convolver(psf, image.shape)

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

    return misfit


def _smoothing_weight(estimate, image, psf, noise: NoiseModel, target: float,
                      on_step=None, operators: OperatorCache = BUILD_FRESH) -> float | None:
    """The search of :func:`smooth_to_noise`: the largest TV weight (to 1/2**9 of 4.5
    decades) whose smoothed estimate has a misfit of at most ``target``; None when
    ``on_step()`` returned False."""
    if any(n < k for n, k in zip(image.shape, psf.shape, strict=True)):
        return 0.0  # no pixel sees the whole PSF: no misfit to measure, so no smoothing
    region = central_region(image.shape, SMOOTHING_SEARCH_SAMPLES,
                            [3 * k for k in psf.shape])
    estimate, image = estimate[region], image[region]
    misfit = _valid_misfit(psf, image, noise, operators)
    dual = [np.zeros(image.shape, dtype=np.float32) for _ in range(image.ndim)]
    scale = float(np.std(estimate, dtype=np.float64)) or 1.0
    low, high = -4.0, 0.5  # log10 of weight / scale
    for _ in range(SMOOTHING_BISECTIONS):
        middle = 0.5 * (low + high)
        # no name holds the candidate, so it is freed before the next one is made
        if misfit(tv_prox(estimate, scale * 10.0**middle, dual,
                          iterations=SMOOTHING_SEARCH_ITERATIONS)) <= target:
            low = middle
        else:
            high = middle
        if on_step is not None and not on_step():
            return None
    return scale * 10.0**low


class _StepCounter:
    """``on_step()`` of the smoothing: reports one more progress step out of ``total``
    and remembers whether the callback stopped the work (``cancelled``)."""

    def __init__(self, callback, done: int, total: int):
        self.callback, self.done, self.total = callback, done, total
        self.cancelled = False

    def __call__(self) -> bool:
        self.done += 1
        if report(self.callback, self.done, self.total):
            return True
        self.cancelled = True
        return False


def rl_mix(image, psf, noise: NoiseModel, request: Request) -> MethodResult:
    """Richardson–Lucy run past the noise, then TV-smoothed back to it; for extended
    objects averaged with RL-TV.

    1. Richardson–Lucy without a prior, stopped after ``iterations`` or, when that is
       ``None``, at ``tuning.discrepancy_extension`` times the discrepancy principle's
       stop: twice for extended objects, five times for point sources
       (``tuning.point_source_kurtosis``). These iterations over-fit: they recover detail
       and amplify noise.
    2. The smallest total-variation smoothing that brings the misfit back to the noise
       removes most of that noise and keeps the edges and peaks (:func:`smooth_to_noise`,
       weight ``smoothing``).
    3. Unless the object is made of point sources (or ``regularization`` is 0), RL-TV at
       weight ``regularization`` runs ``tuning.rl_tv_refinement_iterations`` iterations
       (accelerated as the RL part, with Biggs and Andrews' step rule) from the smoothed
       estimate, restoring the blur model that the smoothing ignores, and the two are
       averaged. On the benchmark suite this is as good on photographs as 200 iterations of
       RL-TV from a flat start, and better on blobs.

    The result's ``iterations`` are the Richardson–Lucy part's, its ``regularization`` the
    RL-TV weight (0 for point sources) and ``smoothing`` the TV smoothing weight. Progress
    is reported per RL iteration, per step of the smoothing (with no current estimate) and
    per RL-TV iteration.
    """
    tuning = request.tuning
    problem = PoissonData.from_image(image, noise)
    steps_of_smoothing = smoothing_steps(request.smoothing, tuning.smoothing_iterations)
    budget = request.iterations or DEFAULT_ITERATIONS["rl_mix"]
    sharp, extension = _overfitted_rl(problem, psf, request, budget, budget
                                      + steps_of_smoothing + tuning.rl_tv_refinement_iterations)
    if sharp.stopped_by == "callback":
        return sharp
    weight = _rl_tv_weight(request.regularization, extension, sharp.image, image, noise)
    total = sharp.iterations + steps_of_smoothing + (
        tuning.rl_tv_refinement_iterations if weight > 0 else 0)
    counter = _StepCounter(request.callback, sharp.iterations, total)
    smooth, smoothing = smooth_to_noise(sharp.image, image, central_psf(psf), noise,
                                        request.smoothing, on_step=counter,
                                        operators=request.operators,
                                        iterations=tuning.smoothing_iterations)
    # the smoothed estimate replaces the over-fitted one, whose memory is freed
    result = replace(sharp, image=smooth, regularization=weight, smoothing=smoothing,
                     stopped_by="callback" if counter.cancelled else sharp.stopped_by)
    del sharp
    if weight == 0 or counter.cancelled:
        return result
    operator = request.operators.blur_operator(psf, image.shape)
    refined = richardson_lucy(
        problem, operator, iterations=tuning.rl_tv_refinement_iterations,
        extrapolation=make_extrapolation(request.acceleration, operator),
        regulariser=tv_regulariser(problem, weight), initial=smooth,
        progress=ProgressSpan(request.callback, result.iterations + steps_of_smoothing, total))
    smooth += refined.image
    smooth *= np.float32(0.5)
    return result if refined.stopped_by != "callback" else replace(result, stopped_by="callback")


def _overfitted_rl(problem: PoissonData, psf, request: Request, budget: int, total: int):
    """Step 1 of :func:`rl_mix`: RL past the discrepancy stop (extended by the point-source
    test) or for ``request.iterations``, at most ``budget`` iterations reported as the
    first steps of ``total``. Returns its result, and the extension, which knows whether
    it saw point sources."""
    operator = request.operators.blur_operator(psf, problem.image.shape)
    extension = PointSourceExtension(request.tuning)
    discrepancy = DiscrepancyStop(problem, extension) if request.iterations is None else None
    run = richardson_lucy(
        problem, operator, iterations=budget,
        extrapolation=make_extrapolation(request.acceleration, operator,
                                         replay=request.acceleration_steps),
        stops=[discrepancy] if discrepancy else [],
        progress=ProgressSpan(request.callback, total=total))
    result = MethodResult(image=run.image, method="rl_mix", iterations=run.iterations,
                          steps=run.steps, acceleration=request.acceleration,
                          stopped_by=run.stopped_by,
                          history=tuple(discrepancy.history) if discrepancy else ())
    return result, extension


def _rl_tv_weight(regularization, extension: PointSourceExtension, sharp, image,
                  noise: NoiseModel) -> float:
    """Step 3's RL-TV weight: the given one, or for ``"auto"`` 0 for point sources and
    ``tuning.rl_tv_strength`` times the relative noise for extended objects."""
    if regularization == "auto":
        points = extension.points
        if points is None:  # the run did not reach the noise: test the estimate it has
            points = extension.is_points(sharp)
        regularization = (0.0 if points else
                          extension.tuning.rl_tv_strength * noise.relative_noise(image))
    regularization = float(regularization)
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}")
    return regularization
