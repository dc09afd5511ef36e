"""Richardson–Lucy on the valid geometry, and the parts its loop is assembled from.

One iteration is a multiplicative RL step ``x ← x · H^T(data / (H x + shift)) / H^T 1``
(Bertero–Boccacci's boundary weights ``1 / H^T 1``), an optional regulariser that edits the
correction factor (:class:`~psfkit.deconvolution._tv.TotalVariationFactor` for RL-TV), an
extrapolation strategy that picks the point of the next step, and the stopping rules.

The extrapolation strategies and their step rules live in
:mod:`psfkit.deconvolution._extrapolation`; an extrapolation has ``predict(estimate)`` and
``advance(point, factor, iteration)``.

A **stopping rule** has ``observe(model)``, called with each iteration's model
``H x + shift``, and ``last_iteration(state) -> int | None``, which names the last
iteration once the rule is met; ``reason`` is what ``stopped_by`` then says. The iteration
budget is the rule that always holds: :class:`DiscrepancyStop` and :class:`ToleranceStop`
can only end the run sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from psfkit._progress import report
from psfkit.operators import BlurOperator

from ._common import DEFAULT_ITERATIONS, MethodResult, Request, slab_rows
from ._extrapolation import NoExtrapolation, make_extrapolation
from ._noise import NoiseModel
from ._tv import TotalVariationFactor

#: Step rule of ``method="richardson_lucy"``'s acceleration, and the default of
#: :func:`run_richardson_lucy`'s ``step_rule``: the cosine rule (:class:`CosineRule`).
#: RL-TV and ``rl_mix`` keep Biggs and Andrews' projection rule, with which ``rl_mix``'s
#: discrepancy extension was chosen: with the cosine rule at those factors the benchmark
#: suite's median ratio to the best peer is 0.86 instead of 0.84.
RL_STEP_RULE = "cosine"

#: Regularised iterations stop when an iteration changes the estimate by less than this
#: fraction of its norm.
CONVERGENCE_TOLERANCE = 2e-4


@dataclass(frozen=True)
class PoissonData:
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
    def from_image(cls, image, noise: NoiseModel) -> PoissonData:
        """The data of ``image`` under ``noise``, with their mean and maximum."""
        shift = float(noise.shift())
        slope, floor = noise.variance_terms()
        # the mean and maximum are measured on the data this instance computes
        problem = cls(shift=shift, slope=slope, floor=floor, image=image,
                      background=float(noise.background), mean=0.0, max=0.0)
        rows = slab_rows(image.shape)
        total, largest = 0.0, 0.0
        for start in range(0, image.shape[0], rows):
            part = problem.slab(start, start + rows)
            total += float(part.sum(dtype=np.float64))
            largest = max(largest, float(part.max()))
        return replace(problem, mean=total / image.size, max=largest)

    def slab(self, start: int, stop: int) -> np.ndarray:
        """``data[start:stop]``, computed from the image."""
        part = self.image[start:stop] - np.float32(self.background)
        part += np.float32(self.shift)
        return np.maximum(part, 0, out=part)

    def flat_level(self) -> float:
        """The level of the flat start: the mean data without the shift (kept positive)."""
        return max(self.mean - self.shift, 1e-6 * max(self.max, 1e-30))

    def add_shift(self, model: np.ndarray) -> None:
        """``model += shift`` in place, or, when the shift is within FFT round-off of 0,
        ``model`` raised to a small floor instead (round-off can leave zeros or tiny
        negatives where the model is dark)."""
        if self.shift > 1e-4 * max(self.mean, 1e-30):
            model += np.float32(self.shift)
        else:
            np.maximum(model, np.float32(max(self.shift, 1e-7 * max(self.mean, 1e-30))),
                       out=model)

    def divide_into(self, model: np.ndarray) -> None:
        """``model = data / model``, in place, in slabs along the first axis."""
        rows = slab_rows(model.shape)
        for start in range(0, model.shape[0], rows):
            part = model[start:start + rows]
            np.divide(self.slab(start, start + rows), part, out=part)

    def misfit(self, model: np.ndarray) -> float:
        """Mean squared residual over the noise variance (the discrepancy, 1 at the noise),
        in slabs along the first axis so the temporaries stay small."""
        rows = slab_rows(model.shape)
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


class BoundaryWeights:
    """Bertero–Boccacci normalisation ``1 / H^T 1``, kept only where it differs from 1.

    ``H^T 1`` is exactly 1 on the object pixels whose whole PSF footprint lands inside the
    image (indices ``[K - 1, N)`` per axis), so only the border band of width ``K - 1`` at
    each end of each axis is stored, as slabs that do not overlap. A varying blur's
    ``H^T 1`` differs from 1 inside too (its columns are not its PSFs), so there every
    pixel is weighted. Object pixels that send
    almost no light into the image get weight 0 (held at zero rather than amplified); grid
    samples outside the object get 0 too.
    """

    def __init__(self, operator: BlurOperator, threshold: float = 1e-3):
        sensitivity = operator.sensitivity()
        floor = np.float32(threshold * float(sensitivity.max()))
        self.object = operator.object
        self.slabs = []
        if not operator.unit_interior_sensitivity:  # a varying blur: weigh every pixel
            weights = sensitivity[self.object]
            self.slabs.append((self.object, np.reciprocal(
                weights, where=weights > floor, out=np.zeros_like(weights))))
            return
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


# ---------------------------------------------------------------------------- stopping rules


@dataclass(frozen=True)
class IterationState:
    """What a stopping rule sees after an iteration: its number, the grid estimate, the
    part of it that is returned, and the extrapolation (for the size of the last change)."""

    iteration: int
    estimate: np.ndarray
    output: np.ndarray
    extrapolation: object


@dataclass
class DiscrepancyStop:
    """The discrepancy principle: met at the first iteration whose misfit reaches the
    noise (1); the run then ends ``extension`` times later. ``extension`` may be a
    function of the returned estimate at that iteration. ``history`` holds the misfit of
    each iteration up to that one."""

    problem: PoissonData
    extension: float | Callable[[np.ndarray], float] = 1.0
    history: list = field(default_factory=list)
    reached: bool = False
    reason = "discrepancy"

    def observe(self, model: np.ndarray) -> None:
        """Record the misfit of the model ``H x + shift`` until the rule is met."""
        if not self.reached:
            self.history.append(self.problem.misfit(model))

    def last_iteration(self, state: IterationState) -> int | None:
        """The last iteration, when this one first reaches the noise."""
        if self.reached or self.history[-1] > 1.0:
            return None
        self.reached = True
        stretch = (self.extension(state.output) if callable(self.extension)
                   else self.extension)
        return max(state.iteration, round(stretch * state.iteration))


@dataclass(frozen=True)
class ToleranceStop:
    """Convergence: met when an iteration (after the second) changes the estimate by less
    than ``tolerance`` of its norm (of ``log x`` for the geometric extrapolation)."""

    tolerance: float = CONVERGENCE_TOLERANCE
    reason = "converged"

    def observe(self, model: np.ndarray) -> None:
        """Nothing: the rule looks at the change of the estimate only."""

    def last_iteration(self, state: IterationState) -> int | None:
        """This iteration, when its change is below the tolerance."""
        extrapolation = state.extrapolation
        if state.iteration > 2 and extrapolation.change_norm <= (
                self.tolerance**2 * extrapolation.scale(state.estimate)):
            return state.iteration
        return None


# ---------------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class ProgressSpan:
    """Where a run's iterations sit in a longer progress report: after ``offset`` steps of
    ``total`` (None: the run is the whole report)."""

    callback: object = None
    offset: int = 0
    total: int | None = None

    def report(self, iteration: int, budget: int, last: int, current) -> bool:
        """Report ``iteration``; the planned total shrinks once a stopping rule has fixed
        the ``last`` iteration below the ``budget``. False when the callback stops."""
        planned = (self.total or (self.offset + budget)) - (budget - last)
        return report(self.callback, self.offset + iteration, planned, current)


@dataclass(frozen=True)
class RichardsonLucyRun:
    """The returned part of the estimate and how the run went."""

    image: np.ndarray
    iterations: int
    stopped_by: str
    steps: tuple


def richardson_lucy(problem: PoissonData, operator: BlurOperator, *, iterations: int,
                    extrapolation=None, regulariser: TotalVariationFactor | None = None,
                    stops=(), progress: ProgressSpan = ProgressSpan(),
                    initial=None) -> RichardsonLucyRun:
    """Richardson–Lucy on the valid geometry with Bertero–Boccacci normalisation.

    The data are ``image - background + shift`` and the model ``H x + shift``, where the
    shift is the shifted-Poisson approximation of Poisson plus Gaussian read noise (see
    :class:`PoissonData`). Each of at most ``iterations`` iterations takes the RL step at
    ``extrapolation``'s point (default none), divides the correction factor by the
    ``regulariser``'s term, advances the estimate and asks the ``stops`` rules for the last
    iteration. ``initial``, an estimate of the output's shape, replaces the flat start.
    Memory: the estimate, the extrapolation's arrays, the boundary weights, the OTF and the
    two transient FFT arrays.
    """
    extrapolation = NoExtrapolation() if extrapolation is None else extrapolation
    weights = BoundaryWeights(operator)
    estimate = _starting_estimate(problem, operator, weights, initial)
    last, stopped_by, iteration = iterations, "iterations", 0
    for iteration in range(1, iterations + 1):
        point = extrapolation.predict(estimate)
        factor = _correction_factor(problem, operator, weights, point, stops)
        if regulariser is not None:
            regulariser.divide(factor[operator.object], point[operator.object])
        estimate = extrapolation.advance(point, factor, iteration)
        del factor, point  # the factor's memory is free for the next iteration's FFTs
        state = IterationState(iteration, estimate, estimate[operator.output], extrapolation)
        for rule in stops:
            proposed = rule.last_iteration(state)
            if proposed is not None:
                last, stopped_by = min(last, proposed), rule.reason
        if not progress.report(iteration, iterations, last, state.output):
            if iteration < last:
                stopped_by = "callback"
            break
        if iteration >= last:
            break
    del weights, state
    return RichardsonLucyRun(image=np.array(estimate[operator.output]), iterations=iteration,
                             stopped_by=stopped_by, steps=tuple(extrapolation.steps))


def _starting_estimate(problem: PoissonData, operator: BlurOperator,
                       weights: BoundaryWeights, initial=None) -> np.ndarray:
    """The grid estimate RL starts from: flat at the data's level, or ``initial`` (of the
    output's shape) continued by its edge values; pixels that send almost no light into
    the image start (and stay) at zero."""
    start = problem.flat_level()
    estimate = operator.zeros()
    estimate[operator.object] = np.float32(start)
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
    return estimate


def _correction_factor(problem: PoissonData, operator: BlurOperator,
                       weights: BoundaryWeights, point: np.ndarray, stops) -> np.ndarray:
    """RL's multiplicative correction at ``point``: ``H^T(data / (H x + shift)) / H^T 1``;
    each stopping rule observes the model ``H x + shift`` on the way."""
    blurred = operator.apply(point)
    model = blurred[operator.valid]
    problem.add_shift(model)
    for rule in stops:
        rule.observe(model)
    problem.divide_into(model)
    operator.zero_outside_valid(blurred)
    del model
    # hand over the last reference so the adjoint can free it after its first FFT
    pending = [blurred]
    del blurred
    factor = operator.adjoint(pending.pop())
    weights.apply(factor)
    return factor


def tv_regulariser(problem: PoissonData, weight: float) -> TotalVariationFactor | None:
    """RL-TV's term at ``weight`` (None for 0), its ``|∇x|`` smoothed at a thousandth of
    the data's level."""
    if not weight > 0:
        return None
    return TotalVariationFactor(weight, 1e-3 * max(problem.flat_level(), 1e-12))


# ---------------------------------------------------------------------------- the methods


def run_richardson_lucy(image, psf, noise: NoiseModel, request: Request, *,
                        step_rule: str = RL_STEP_RULE) -> MethodResult:
    """``method="richardson_lucy"``: plain or accelerated RL without a prior, stopped by the
    discrepancy principle unless ``request.iterations`` is given. ``step_rule`` is the
    geometric acceleration's step rule (see :data:`RL_STEP_RULE`)."""
    return _rl_family(image, psf, noise, request, "richardson_lucy", 0.0, step_rule)


def run_rl_tv(image, psf, noise: NoiseModel, request: Request, *,
              step_rule: str = RL_STEP_RULE) -> MethodResult:
    """``method="rl_tv"``: RL with Dey et al.'s TV prior at weight ``regularization``
    (``"auto"``: ``tuning.rl_tv_strength`` times the relative noise), stopped when it
    converges unless ``request.iterations`` is given; at weight 0 it is
    :func:`run_richardson_lucy` (and ``step_rule`` applies)."""
    weight = (request.tuning.rl_tv_strength * noise.relative_noise(image)
              if request.regularization == "auto" else float(request.regularization))
    if weight < 0:
        raise ValueError(f"regularization must be >= 0, got {weight}")
    return _rl_family(image, psf, noise, request, "rl_tv", weight, step_rule)


def _rl_family(image, psf, noise: NoiseModel, request: Request, method: str, weight: float,
               step_rule: str) -> MethodResult:
    """RL or RL-TV at TV ``weight``: without a prior, the discrepancy principle stops an
    automatic run and ``step_rule`` applies; with one, convergence stops it and Biggs and
    Andrews' projection rule sets the steps."""
    problem = PoissonData.from_image(image, noise)
    operator = request.operators.blur_operator(psf, image.shape)
    automatic_stop = request.iterations is None
    discrepancy = DiscrepancyStop(problem) if automatic_stop and weight == 0 else None
    stops = [discrepancy or ToleranceStop()] if automatic_stop else []
    extrapolation = make_extrapolation(
        request.acceleration, operator, step_rule=step_rule if weight == 0 else "projection",
        replay=request.acceleration_steps, tuning=request.tuning,
        measure_change=automatic_stop and weight > 0)
    run = richardson_lucy(problem, operator,
                          iterations=request.iterations or DEFAULT_ITERATIONS[method],
                          extrapolation=extrapolation,
                          regulariser=tv_regulariser(problem, weight), stops=stops,
                          progress=ProgressSpan(request.callback))
    return MethodResult(image=run.image, method=method, iterations=run.iterations,
                        regularization=weight, steps=run.steps,
                        acceleration=request.acceleration, stopped_by=run.stopped_by,
                        history=tuple(discrepancy.history) if discrepancy else ())
