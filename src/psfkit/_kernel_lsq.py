"""The least-squares kernel fit on the valid region, and its solvers.

The forward model is ``blurred0 ≈ sharp0 ∗ k`` on the *valid* region of the standardised
overlap of an aligned pair, where the convolution sees no pixel outside the overlap. The
objective ``½ ‖P (X k − b)‖² + ½ λ ‖∇k‖²`` (:class:`_ValidProblem`; ``P`` removes the mean,
the offset) is minimised, subject to ``k ≥ 0``, by FISTA with adaptive restart in the
metric of a Toeplitz majorizer of its curvature (:func:`_majorize_minimize`), each step a
nonnegative quadratic solved by projected Newton–CG on the kernel-sized grid
(:func:`_nonnegative_quadratic`). The weight ``λ`` follows MacKay's evidence fixed point
(:func:`_evidence_regularization`); :func:`_unconstrained_sum` gives the flux of the
unconstrained minimiser, which the debiasing in :mod:`psfkit.estimate` matches.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from ._kernel_fourier import _gradient_spectrum
from ._progress import report
from .operators import Convolver, centre_embed, fast_shape, inner, norm

# -- the smoothness penalty ---------------------------------------------------------------


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


def _plus_penalty(product, kernel, regularization):
    """``product + λ L k``, ``L k`` the smoothness penalty's gradient at ``kernel`` (float32)."""
    if regularization > 0:
        product = product + np.float32(regularization) * _penalty_gradient(
            kernel.astype(np.float32))
    return product


# -- the least-squares problem on the valid region ----------------------------------------


def _valid_slices(image_shape, kernel_shape):
    """Region of an image where its convolution with a centred kernel sees no padding."""
    return tuple(slice(k // 2, n - k + 1 + k // 2)
                 for n, k in zip(image_shape, kernel_shape, strict=True))


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


# -- its solvers and the evidence weight --------------------------------------------------


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
