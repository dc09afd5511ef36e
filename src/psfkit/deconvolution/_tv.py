"""Total variation: its proximal operator (Beck–Teboulle's dual projection), FISTA-TV, and
the TV factor that turns Richardson–Lucy into RL-TV (Dey et al.)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psfkit._progress import report
from psfkit.operators import BlurOperator, inner, norm

from ._common import DEFAULT_ITERATIONS, MethodResult, Request, slab_rows
from ._noise import NoiseModel


def _total_variation_gradient_term(estimate: np.ndarray, epsilon: float) -> np.ndarray:
    """``div(∇x / |∇x|)`` with forward differences and Neumann boundaries."""
    gradients = [_forward_difference(estimate, axis, np.empty_like(estimate))
                 for axis in range(estimate.ndim)]
    magnitude = np.full(estimate.shape, np.float32(epsilon**2), dtype=np.float32)
    square = np.empty_like(estimate)
    for g in gradients:
        magnitude += np.multiply(g, g, out=square)
    np.sqrt(magnitude, out=magnitude)
    divergence = np.zeros_like(estimate)
    for axis, g in enumerate(gradients):
        g /= magnitude
        divergence += _backward_difference(g, axis, out=square)
    return divergence


def _backward_difference(field: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """Backward difference along ``axis`` into ``out``, from 0 before the first sample."""
    first = [slice(None)] * field.ndim
    first[axis] = slice(0, 1)
    out[tuple(first)] = field[tuple(first)]
    before = [slice(None)] * field.ndim
    before[axis] = slice(0, -1)
    ahead = [slice(None)] * field.ndim
    ahead[axis] = slice(1, None)
    np.subtract(field[tuple(ahead)], field[tuple(before)], out=out[tuple(ahead)])
    return out


@dataclass(frozen=True)
class TotalVariationFactor:
    """Dey et al.'s RL-TV prior as a term of the Richardson–Lucy step: the correction
    factor is divided by ``1 - weight div(∇x/|∇x|)`` (kept above 0.2), with ``epsilon``
    smoothing ``|∇x|`` where the estimate is flat."""

    weight: float
    epsilon: float

    def divide(self, factor: np.ndarray, point: np.ndarray) -> None:
        """``factor /= 1 - weight div(∇x/|∇x|)`` at ``x = point``, in place.

        Computed in slabs along the first axis with a one-sample halo, which gives the
        same values as the whole array at once while keeping the temporaries small.
        """
        rows = slab_rows(point.shape)
        n = point.shape[0]
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            low, high = max(start - 1, 0), min(stop + 1, n)
            term = _total_variation_gradient_term(point[low:high], self.epsilon)[
                start - low:stop - low]
            term *= np.float32(-self.weight)
            term += 1
            np.maximum(term, np.float32(0.2), out=term)
            factor[start:stop] /= term


def _forward_difference(field: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """Forward difference along ``axis`` into ``out``, zero across the last sample (Neumann)."""
    before = [slice(None)] * field.ndim
    before[axis] = slice(0, -1)
    ahead = [slice(None)] * field.ndim
    ahead[axis] = slice(1, None)
    np.subtract(field[tuple(ahead)], field[tuple(before)], out=out[tuple(before)])
    last = [slice(None)] * field.ndim
    last[axis] = slice(-1, None)
    out[tuple(last)] = 0
    return out


def _divergence(parts: list[np.ndarray]) -> np.ndarray:
    """Minus the adjoint of the forward-difference gradient (:func:`_forward_difference`)."""
    total = np.zeros_like(parts[0])
    for axis, part in enumerate(parts):
        before = [slice(None)] * part.ndim
        before[axis] = slice(0, -1)
        ahead = [slice(None)] * part.ndim
        ahead[axis] = slice(1, None)
        total[tuple(before)] += part[tuple(before)]
        total[tuple(ahead)] -= part[tuple(before)]
    return total


def _primal(values: np.ndarray, weight: float, dual: list[np.ndarray]) -> np.ndarray:
    """The prox's primal point of a dual: ``max(values + weight div(dual), 0)``."""
    estimate = _divergence(dual)
    estimate *= np.float32(weight)
    estimate += values
    return np.maximum(estimate, 0, out=estimate)


#: A TV weight at most this fraction of the values' largest magnitude (per ``4 * ndim``,
#: the bound of the weight's effect on a sample) changes no value by more than 2**-40 of
#: the largest, far below float32's resolution of 2**-24: the prox is then the projection
#: onto ``z >= 0``. Computing it anyway would square dual-ascent steps of about
#: ``1 / weight`` and overflow float32 once the ratio falls to ~1e-19.
NEGLIGIBLE_TV_WEIGHT = 2.0**-40


def negligible_weight(values: np.ndarray, weight: float) -> bool:
    """Whether TV at ``weight`` cannot change ``values`` in float32 (see
    :data:`NEGLIGIBLE_TV_WEIGHT`); true for any weight on all-zero values, whose prox is
    zero."""
    largest = max(float(values.max()), -float(values.min()))
    return largest == 0 or 4 * values.ndim * weight <= NEGLIGIBLE_TV_WEIGHT * largest


def tv_prox(values: np.ndarray, weight: float, dual: list[np.ndarray],
            iterations: int = 10, accelerated: bool = True, on_iteration=None) -> np.ndarray:
    """``argmin_z ½||z - values||² + weight TV(z)`` over ``z >= 0`` by Beck–Teboulle's fast
    gradient projection on the dual (plain projection with ``accelerated=False``); ``dual`` is
    warm-started and updated: its items are replaced by the final dual. ``on_iteration()``,
    if given, is called after each iteration; returning False stops the iterations there.

    Memory: the dual, its momentum (one array per axis each; none without momentum) and
    two more arrays. Each iteration's ascent ``momentum + step ∇z`` is computed once, in
    the momentum's own arrays, which the projection then turns into the new dual; the
    primal point's array then holds the ascent's magnitude.
    """
    if weight <= 0 or negligible_weight(values, weight):
        return np.maximum(values, 0)
    step = np.float32(1.0 / (4 * values.ndim * weight))
    momentum = [d.copy() for d in dual] if accelerated else list(dual)
    part = np.empty_like(values)
    t = 1.0
    for _ in range(iterations):
        point = _primal(values, weight, momentum)
        for axis, ascent in enumerate(momentum):
            _forward_difference(point, axis, part)
            part *= step
            ascent += part
        # the primal point is spent: its array becomes |ascent| (per sample, over the axes)
        magnitude, point = point, None
        np.multiply(momentum[0], momentum[0], out=magnitude)
        for ascent in momentum[1:]:
            magnitude += np.multiply(ascent, ascent, out=part)
        np.sqrt(magnitude, out=magnitude)
        np.maximum(magnitude, 1, out=magnitude)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        beta = np.float32((t - 1) / t_next)
        for axis, projected in enumerate(momentum):
            projected /= magnitude
            if accelerated:
                _momentum_step(projected, dual[axis], beta)
                # the projection is the new dual, the old dual's array the new momentum
                dual[axis], momentum[axis] = projected, dual[axis]
        del magnitude  # freed before the next primal point is made
        t = t_next
        if on_iteration is not None and not on_iteration():
            break
    del part
    momentum = None  # the final estimate needs only the dual
    return _primal(values, weight, dual)


def _momentum_step(projected: np.ndarray, previous: np.ndarray, beta) -> None:
    """``previous = projected + beta (projected - previous)``, in place: the next ascent's
    base point from the new dual ``projected`` and the dual before it (``previous``)."""
    np.subtract(previous, projected, out=previous)
    previous *= beta
    np.subtract(projected, previous, out=previous)


def fista_tv(image, psf, noise: NoiseModel, request: Request) -> MethodResult:
    """FISTA on ``½||valid(H x) + b - y||² + λ TV(x)``, ``x >= 0``, with adaptive restart.

    With ``regularization="auto"``, ``λ`` follows the discrepancy principle during the
    iterations: it is scaled up while the residual is below the noise and down while above;
    the result's ``regularization_schedule`` holds the weight of each iteration, which
    ``request.regularization_schedule`` replays (the last weight after its end). The run
    stops when an iteration changes the estimate by less than ``1e-4`` of its norm, unless
    ``request.iterations`` is given: then it runs exactly that many iterations.
    """
    operator = request.operators.blur_operator(psf, image.shape)
    iterations = request.iterations or DEFAULT_ITERATIONS["fista_tv"]
    data = image - np.float32(noise.background)
    target = noise.rms**2
    schedule = request.regularization_schedule
    automatic = request.regularization == "auto" and schedule is None
    weight = 0.5 * noise.rms if request.regularization == "auto" else float(
        request.regularization)
    weights = []
    estimate = operator.zeros()
    estimate[operator.object] = np.float32(max(float(data.mean()), 0.0))
    momentum_point = estimate.copy()
    dual = [np.zeros(operator.object_shape, dtype=np.float32) for _ in range(image.ndim)]
    t, history, stopped_by = 1.0, [], "iterations"
    for iteration in range(1, iterations + 1):
        misfit = _gradient_step(operator, momentum_point, data)
        history.append(misfit / max(target, 1e-30))
        if schedule:
            weight = schedule[min(iteration, len(schedule)) - 1]
        elif automatic and iteration > 5 and iteration % 5 == 0:
            weight *= float(np.clip((target / max(misfit, 1e-30)) ** 0.5, 0.5, 2.0))
        weights.append(weight)
        new = tv_prox(momentum_point[operator.object], weight, dual)
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
        if not report(request.callback, iteration, iterations, estimate[operator.output]):
            stopped_by = "callback"
            break
        if request.iterations is None and change < 1e-4 and iteration > 10:
            stopped_by = "converged"
            break
    return MethodResult(image=estimate[operator.output] + np.float32(0), method="fista_tv",
                        iterations=iteration, regularization=weight, stopped_by=stopped_by,
                        history=tuple(history),
                        regularization_schedule=tuple(weights) if automatic or schedule
                        else ())


def _gradient_step(operator: BlurOperator, point: np.ndarray, data: np.ndarray) -> float:
    """``point -= H^T (valid(H point) - data)``, in place (the step size is 1: the PSF
    sums to 1); returns the mean squared residual before the step."""
    blurred = operator.apply(point)
    valid = blurred[operator.valid]
    valid -= data
    misfit = float(np.mean(valid * valid, dtype=np.float64))
    operator.zero_outside_valid(blurred)
    gradient = operator.adjoint(blurred)
    del blurred
    point -= gradient
    return misfit
