"""The optimiser of a kernel fit: Levenberg–Marquardt on the normal equations, with the
robust losses of :func:`scipy.optimize.least_squares`.

:class:`_Objective` is the residual ``gain · (kernel ∗ shift(sharp)) + offset - blurred``
of one model on one :class:`~psfkit._fit_problem._Problem`, with its Jacobian, as a
function of the packed vector ``x``; :class:`_Loss` weighs it (robust losses by
iteratively reweighted least squares); :func:`_optimise` is the damped Gauss–Newton loop
and returns an :class:`_Optimum`. Also here: the linear solve for gain and offset and the
statistics a fit is judged by (BIC, reduced chi²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._fit_models import _Model
from ._fit_problem import _Packing, _Problem
from ._progress import report
from .operators import inner

#: The losses :func:`psfkit.fit_kernel` accepts, named as in :func:`scipy.optimize.least_squares`.
LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")

_STOPPED = "stopped by the callback"
_MAX_EVALUATIONS = "maximum number of evaluations reached"


def _gram(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``rows @ other.T`` for a few long rows (symmetric when ``rows is other``), BLAS-free
    for the reason given in :func:`psfkit.operators.inner`."""
    count = len(rows)
    gram = np.empty((count, count))
    for i in range(count):
        for j in range(i, count):
            gram[i, j] = gram[j, i] = inner(rows[i], other[j])
    return gram


def _linear_fit(model: np.ndarray, data: np.ndarray) -> tuple[float, float, float]:
    """Least-squares gain and offset of ``data ≈ gain · model + offset``; and the RSS."""
    m = model.ravel().astype(np.float64, copy=False)
    d = data.ravel().astype(np.float64, copy=False)
    count = m.size
    m_sum, d_sum = float(m.sum()), float(d.sum())
    mm = inner(m, m) - m_sum**2 / count
    md = inner(m, d) - m_sum * d_sum / count
    dd = inner(d, d) - d_sum**2 / count
    gain = md / mm if mm > 0 else 0.0
    offset = (d_sum - gain * m_sum) / count
    return gain, offset, max(dd - gain * md, 0.0)


def _bic(rss: float, count: int, nparams: int) -> float:
    """Bayesian information criterion ``M ln(RSS / M) + P ln(M)`` of ``count`` residuals."""
    return count * math.log(max(rss, 1e-300) / count) + nparams * math.log(count)


def _reduced_chi2(rss: float, count: int, nparams: int, noise: float) -> float:
    """Residual variance (``count - nparams`` degrees of freedom) over ``noise²``."""
    return rss / max(count - nparams, 1) / noise**2


@dataclass(frozen=True)
class _Loss:
    """A loss of :func:`scipy.optimize.least_squares` (``name``), on residuals divided by
    ``scale``."""

    name: str
    scale: float

    def rho(self, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rho(z)`` and ``rho'(z)`` of the squared scaled residual ``z``."""
        z = (residual / self.scale) ** 2
        if self.name == "linear":
            return z, np.ones_like(z)
        if self.name == "soft_l1":
            root = np.sqrt(1 + z)
            return 2 * (root - 1), 1 / root
        if self.name == "huber":
            outer = z > 1
            root = np.sqrt(np.where(outer, z, 1.0))
            return np.where(outer, 2 * root - 1, z), np.where(outer, 1 / root, 1.0)
        if self.name == "cauchy":
            return np.log1p(z), 1 / (1 + z)
        return np.arctan(z), 1 / (1 + z**2)  # arctan

    def cost(self, residual: np.ndarray) -> float:
        """``½ scale² Σ rho``, which is ``½ Σ r²`` for the linear loss."""
        return 0.5 * self.scale**2 * float(self.rho(residual)[0].sum())

    def weighted(self, jacobian: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The (transposed) Jacobian's rows weighted by ``rho'`` (reweighted least squares)."""
        if self.name == "linear":
            return jacobian
        return jacobian * self.rho(residual)[1]


@dataclass(frozen=True)
class _Evaluation:
    """The objective at ``x``: residual, transposed Jacobian (one row per entry of ``x``)
    and cost."""

    x: np.ndarray
    residual: np.ndarray
    jacobian: np.ndarray
    cost: float


class _Objective:
    """The robust least-squares objective of one model on one problem, as a function of the
    packed vector ``x`` (see :class:`_Packing`); each call of :meth:`evaluate` or
    :meth:`start` renders and transforms the model once (one evaluation)."""

    def __init__(self, spec: _Model, problem: _Problem, loss: _Loss):
        self.spec, self.problem, self.loss = spec, problem, loss
        self.packing = _Packing.of(len(spec.lower), len(problem.kernel_shape))
        self.lower, self.upper = self.packing.bounds(spec)
        self.data = problem.data.ravel()

    def _rows(self, x) -> np.ndarray:
        """The model and its kernel- and shift-derivatives at ``x`` (gain 1, offset 0), one
        row each; kernel derivatives are central differences within the bounds."""
        v, shift = x[self.packing.model], x[self.packing.shift]
        shape = self.problem.kernel_shape
        kernels = [self.spec.render(shape, v)]
        steps = 1e-4 * np.maximum(np.abs(v), 1.0)
        for i in range(v.size):
            up, down = v.copy(), v.copy()
            up[i] = min(v[i] + steps[i], self.spec.upper[i])
            down[i] = max(v[i] - steps[i], self.spec.lower[i])
            kernels.append((self.spec.render(shape, up) - self.spec.render(shape, down))
                           / (up[i] - down[i]))
        return self.problem.apply_with_derivatives(np.array(kernels), shift)

    def _assemble(self, x, rows) -> _Evaluation:
        """Residual, Jacobian and cost at ``x`` from the rows of :meth:`_rows`."""
        packing = self.packing
        residual = x[packing.gain] * rows[0] + x[packing.offset] - self.data
        jacobian = np.empty((x.size, self.data.size))
        jacobian[packing.kernel_and_shift] = rows[1:] * x[packing.gain]
        jacobian[packing.gain] = rows[0]
        jacobian[packing.offset] = 1.0
        return _Evaluation(x, residual, jacobian, self.loss.cost(residual))

    def evaluate(self, x) -> _Evaluation:
        """The objective at ``x``."""
        return self._assemble(x, self._rows(x))

    def start(self, v0, shift0) -> _Evaluation:
        """The objective at ``v0``, ``shift0`` (within the bounds), with the gain and offset
        that fit best there solved linearly."""
        packing = self.packing
        x = np.clip(packing.pack(v0, shift0, 1.0, 0.0), self.lower, self.upper)
        rows = self._rows(x)
        x[packing.gain], x[packing.offset], _ = _linear_fit(rows[0], self.data)
        return self._assemble(x, rows)


@dataclass(frozen=True)
class _NormalEquations:
    """``JᵀWJ δ = -JᵀWr`` at one point, with the damping diagonal of Levenberg–Marquardt and
    each parameter's standard error (steps far below it are not worth taking)."""

    matrix: np.ndarray
    gradient: np.ndarray
    diagonal: np.ndarray
    uncertainty: np.ndarray

    @classmethod
    def at(cls, point: _Evaluation, loss: _Loss) -> _NormalEquations:
        """The normal equations of the objective at ``point``."""
        weighted = loss.weighted(point.jacobian, point.residual)
        normal = _gram(weighted, point.jacobian)
        gradient = np.einsum("ik,k->i", weighted, point.residual)
        diagonal = np.maximum(np.diag(normal), 1e-12 * max(np.diag(normal).max(), 1e-300))
        dof = max(point.residual.size - point.x.size, 1)
        uncertainty = np.sqrt(np.abs(np.diag(np.linalg.pinv(normal))) * 2 * point.cost / dof)
        return cls(normal, gradient, diagonal, uncertainty)


@dataclass(frozen=True)
class _Step:
    """The outcome of one damped step: the accepted point (``None`` when no step lowered
    the cost), the damping it was taken with and the evaluations used so far."""

    accepted: _Evaluation | None
    damping: float
    evaluations: int


def _damped_step(objective: _Objective, point: _Evaluation, damping: float, evaluations: int,
                 max_evaluations: int) -> _Step:
    """Raise the damping until a step lowers the cost, the step falls far below the
    parameters' uncertainty, or the evaluations run out."""
    normal = _NormalEquations.at(point, objective.loss)
    while evaluations < max_evaluations and damping < 1e10:
        try:
            step = np.linalg.solve(normal.matrix + damping * np.diag(normal.diagonal),
                                   -normal.gradient)
        except np.linalg.LinAlgError:
            damping *= 10
            continue
        trial = np.clip(point.x + step, objective.lower, objective.upper)
        if np.all(np.abs(trial - point.x) <= 1e-2 * normal.uncertainty):
            break  # the step is far below the parameters' own uncertainty
        # with a good start nearly every step is accepted: get its Jacobian at once
        evaluation = objective.evaluate(trial)
        evaluations += 1
        if evaluation.cost <= point.cost:
            return _Step(evaluation, damping, evaluations)
        damping *= 10
    return _Step(None, damping, evaluations)


@dataclass(frozen=True)
class _Optimum:
    """Where :func:`_optimise` stopped: the parameters (read from ``x`` by ``packing``),
    their covariance ``(JᵀJ)⁻¹ · RSS / (M − P)`` in the order of ``x``, the residual sum of
    squares over ``count`` samples, and how the optimisation ended."""

    v: np.ndarray
    shift: np.ndarray
    gain: np.float64
    offset: np.float64
    packing: _Packing
    covariance: np.ndarray
    rss: float
    count: int
    success: bool
    message: str
    evaluations: int

    @property
    def nparams(self) -> int:
        return self.packing.size

    @property
    def criterion(self) -> float:
        """The BIC of the fit on its own window."""
        return _bic(self.rss, self.count, self.nparams)


def _optimise(objective: _Objective, v0, shift0, max_evaluations, callback) -> _Optimum:
    """Levenberg–Marquardt on the normal equations (robust losses by reweighting).

    The residual has hundreds of thousands of samples but only a handful of parameters, so
    the ``P × P`` normal equations ``JᵀWJ δ = -JᵀWr`` are solved instead of factorising
    ``J``; this keeps a fit of a 512² pair well under a second. Bounds are kept by clipping.
    """
    point = objective.start(v0, shift0)
    evaluations, damping = 1, 1e-3
    success, message = False, _MAX_EVALUATIONS
    while evaluations < max_evaluations:
        step = _damped_step(objective, point, damping, evaluations, max_evaluations)
        evaluations = step.evaluations
        if step.accepted is None:
            success, message = True, "converged"
            break
        point, damping = step.accepted, max(step.damping / 5, 1e-9)
        if not report(callback, evaluations, max_evaluations, None):
            success, message = False, _STOPPED
            break
    rss = inner(point.residual, point.residual)
    count = point.residual.size
    dof = max(count - point.x.size, 1)
    covariance = np.linalg.pinv(_gram(point.jacobian, point.jacobian)) * rss / dof
    x, packing = point.x, objective.packing
    return _Optimum(x[packing.model], x[packing.shift], x[packing.gain], x[packing.offset],
                    packing, covariance, rss, count, success, message, evaluations)
