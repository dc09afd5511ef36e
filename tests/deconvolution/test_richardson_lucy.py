"""Tests of the Richardson–Lucy loop and its parts: the blur operator, the boundary
weights, the extrapolations and their step rules."""

from __future__ import annotations

import numpy as np
import pytest

from psfkit import deconvolve
from psfkit.deconvolution._extrapolation import (
    MAX_EXTRAPOLATION,
    CosineRule,
    NoExtrapolation,
    ProjectionRule,
    ReplayedSteps,
)
from psfkit.deconvolution._richardson_lucy import (
    BoundaryWeights,
    DiscrepancyStop,
    IterationState,
    ToleranceStop,
)
from psfkit.metrics import image_error as relative_error
from psfkit.models import make_psf
from psfkit.operators import BlurOperator, Convolver
from psfkit.samples import blurred_pair


def test_blur_operator_matches_linear_convolution_and_its_adjoint():
    rng = np.random.default_rng(0)
    psf = rng.random((5, 7), dtype=np.float32)
    operator = BlurOperator(psf, (20, 23))
    obj = rng.random(operator.object_shape, dtype=np.float32)
    grid = operator.zeros()
    grid[operator.object] = obj
    valid = operator.apply(grid)[operator.valid]
    reference = Convolver(psf, obj.shape).apply(obj, "valid")
    np.testing.assert_allclose(valid, reference, rtol=1e-4, atol=1e-5)
    residual = operator.zeros()
    residual[operator.valid] = rng.random((20, 23), dtype=np.float32)
    back = operator.adjoint(residual)
    # <H x, r> == <x, H^T r>, and H^T r lives inside the object
    assert np.vdot(valid, residual[operator.valid]) == pytest.approx(
        np.vdot(obj, back[operator.object]), rel=1e-4)
    outside = back.copy()
    outside[operator.object] = 0
    assert np.abs(outside).max() < 1e-4 * np.abs(back).max()


def test_plain_rl_is_richardson_lucy_with_boundary_weights():
    """Plain RL equals a direct transcription of Bertero–Boccacci's boundary-aware RL."""
    pair = blurred_pair(make_psf("gaussian", (7, 7), sigma=1.2), (32, 36), noise=0.0,
                        rng=5)
    image = pair.blurred - pair.blurred.min() + 0.1
    psf = pair.kernel / pair.kernel.sum()
    ours = deconvolve(image, psf, "richardson_lucy", acceleration=None, iterations=5,
                      background=0.0, read_noise=0.0)
    object_shape = tuple(n + k - 1 for n, k in zip(image.shape, psf.shape, strict=True))
    operator = Convolver(psf, object_shape)
    sensitivity = operator.adjoint(np.ones_like(image), "valid")
    estimate = np.full(operator.other_shape, image.mean(), dtype=np.float64)
    for _ in range(5):
        ratio = image / operator.apply(estimate.astype(np.float32), "valid")
        estimate = estimate * operator.adjoint(ratio.astype(np.float32), "valid") / sensitivity
    reference = estimate[3:-3, 3:-3]
    np.testing.assert_allclose(ours, reference, rtol=2e-3)


def test_acceleration_reaches_plain_quality_in_fewer_iterations():
    pair = blurred_pair(make_psf("gaussian", (15, 15), sigma=2.0), (64, 64), noise=0.0,
                        poisson_photons=5000, scene_kind="blobs", rng=6)
    plain = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", acceleration=None,
                       iterations=120)
    fast = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=30)
    classic = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=30,
                         acceleration="biggs_andrews")
    assert relative_error(fast, pair.sharp) <= relative_error(plain, pair.sharp)
    assert relative_error(classic, pair.sharp) <= relative_error(plain, pair.sharp)


def test_geometric_acceleration_stays_positive_and_finite_far_past_the_optimum():
    pair = blurred_pair(make_psf("airy", (21, 21), radius=3.0), (48, 48), noise=0.0,
                        poisson_photons=100, scene_kind="stars", rng=5)
    result = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=300)
    plain = deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=300,
                       acceleration=None)
    assert np.all(np.isfinite(result)) and result.min() >= 0
    # no blow-up: where plain RL has converged, the accelerated iterations are as good
    assert relative_error(result, pair.sharp) <= 1.02 * relative_error(plain, pair.sharp)
    assert result.max() <= pair.sharp.max()


@pytest.mark.parametrize(("psf_shape", "image_shape"), [((5, 7), (20, 23)),
                                                         ((9, 3, 5), (6, 12, 4)),
                                                         ((4, 6), (3, 40))])
def test_boundary_weights_equal_the_reciprocal_sensitivity(psf_shape, image_shape):
    """The band-only weights are ``1 / H^T 1`` where it is not tiny, else 0, and 0 off the
    object (a PSF longer than the image included)."""
    rng = np.random.default_rng(2)
    psf = rng.random(psf_shape).astype(np.float32)
    operator = BlurOperator(psf / psf.sum(), image_shape)
    sensitivity = operator.sensitivity()
    seen = sensitivity > 1e-3 * sensitivity.max()
    expected = np.zeros_like(sensitivity)
    np.reciprocal(sensitivity, out=expected, where=seen)
    outside = np.ones(sensitivity.shape, dtype=bool)
    outside[operator.object] = False
    expected[outside] = 0
    grid = rng.random(operator.grid_shape).astype(np.float32)
    weighted = grid.copy()
    BoundaryWeights(operator).apply(weighted)
    np.testing.assert_allclose(weighted, grid * expected, rtol=1e-5, atol=1e-6)


def test_replayed_acceleration_steps_make_a_crop_follow_the_whole_images_path():
    psf = make_psf("moffat", (15, 15), alpha=2.0, beta=2.5)
    pair = blurred_pair(psf, (160, 160), scene_kind="stars", noise=0.01, rng=5)
    whole, info = deconvolve(pair.blurred, psf, "richardson_lucy", iterations=60,
                             return_info=True)
    assert len(info.steps) == 60 and info.parameters["acceleration_steps"] == info.steps
    assert max(info.steps) > 0.3  # the run did extrapolate
    # the central crop, with and without the whole image's steps; compare away from its edges
    crop, inner = (slice(30, 130),) * 2, (slice(50, 110),) * 2
    options = {key: info.parameters[key] for key in ("background", "read_noise", "gain")}
    own = deconvolve(pair.blurred[crop], psf, "richardson_lucy", iterations=60, **options)
    replayed = deconvolve(pair.blurred[crop], psf, "richardson_lucy", iterations=60,
                          acceleration_steps=info.steps, **options)
    reference = whole[inner]
    inside = (slice(20, 80),) * 2
    replayed_error = relative_error(replayed[inside], reference)
    own_error = relative_error(own[inside], reference)
    assert replayed_error < 0.01 and replayed_error < 0.5 * own_error


def test_projection_rule_is_the_clipped_projection_coefficient():
    rule = ProjectionRule()
    assert rule(1, None, 4.0, 0.0) == 0.0  # one change only: no extrapolation
    assert rule(5, 3.0, 9.0, 4.0) == pytest.approx(0.75)
    assert rule(5, -1.0, 9.0, 4.0) == 0.0
    assert rule(5, 8.0, 9.0, 4.0) == MAX_EXTRAPOLATION


def test_cosine_rule_is_the_cosine_at_least_nesterovs_step_and_restarts_when_negative():
    rule = CosineRule(largest=0.8)
    assert rule(1, None, 4.0, 1.0) == 0.0
    assert rule(2, 1.0, 4.0, 1.0) == pytest.approx(0.5)  # cos = 1 / sqrt(4 * 1)
    assert rule(10, 1.0, 4.0, 1.0) == pytest.approx(9 / 12)  # Nesterov's (k - 1) / (k + 2)
    assert rule(40, 1.9, 4.0, 1.0) == 0.8
    assert rule(10, -1.0, 4.0, 1.0) == 0.0


def test_replayed_steps_come_first_then_the_rule_decides():
    rule = ReplayedSteps((0.3, 0.6), ProjectionRule())
    assert [rule(k, None if k == 1 else 1.0, 1.0, 2.0) for k in (1, 2, 3)] == [0.3, 0.6, 0.5]


def test_discrepancy_stop_extends_the_first_iteration_at_the_noise_once():
    output = np.ones((4, 4), dtype=np.float32)
    rule = DiscrepancyStop(problem=None, extension=lambda estimate: 2.5, history=[1.3])
    assert rule.last_iteration(IterationState(6, output, output, None)) is None
    rule.history.append(0.97)  # the misfit reaches the noise at iteration 7
    assert rule.last_iteration(IterationState(7, output, output, None)) == round(2.5 * 7)
    rule.history.append(0.5)
    assert rule.last_iteration(IterationState(8, output, output, None)) is None
    # an extension below 1 never ends the run before the iteration that met the rule
    early = DiscrepancyStop(problem=None, extension=0.5, history=[0.9])
    assert early.last_iteration(IterationState(4, output, output, None)) == 4


def test_tolerance_stop_compares_the_change_with_the_estimates_norm():
    estimate = np.full((10, 10), 2.0, dtype=np.float32)  # squared norm 400
    extrapolation = NoExtrapolation(measure_change=True)
    rule = ToleranceStop(tolerance=0.01)  # stops at a squared change of 400e-4 = 0.04
    extrapolation.change_norm = 0.039
    assert rule.last_iteration(IterationState(2, estimate, estimate, extrapolation)) is None
    assert rule.last_iteration(IterationState(3, estimate, estimate, extrapolation)) == 3
    extrapolation.change_norm = 0.041
    assert rule.last_iteration(IterationState(3, estimate, estimate, extrapolation)) is None
