"""Tests of ``rl_mix`` (one of ``auto``'s candidates, and ``auto`` with a PSF map): its
parts, its progress and cancelling, its point-source rule, and its tuned constants passed as
``tuning``."""

from __future__ import annotations

import numpy as np

from psfkit import deconvolve
from psfkit.deconvolution import DEFAULT_TUNING, AutoTuning, normalise_psf
from psfkit.deconvolution._auto import SMOOTHING_BISECTIONS
from psfkit.deconvolution._common import Request
from psfkit.deconvolution._extrapolation import make_extrapolation
from psfkit.deconvolution._noise import NoiseModel
from psfkit.deconvolution._richardson_lucy import (
    PoissonData,
    richardson_lucy,
    run_richardson_lucy,
    tv_regulariser,
)
from psfkit.metrics import image_error as relative_error
from psfkit.models import make_psf
from psfkit.operators import BlurOperator
from psfkit.samples import blurred_pair


def _discrepancy_stop(image, psf, noise: dict) -> int:
    """The iteration at which geometric RL with Biggs and Andrews' projection step rule
    (the rule of rl_mix's RL part) first reaches the noise."""
    data = image.astype(np.float32)
    model = NoiseModel.estimate(data, **noise)
    result = run_richardson_lucy(data, normalise_psf(psf, data.ndim), model,
                                 Request(acceleration="geometric"), step_rule="projection")
    assert result.stopped_by == "discrepancy"
    return result.iterations


def _noise_parameters(info) -> dict:
    return {key: info.parameters[key] for key in ("background", "read_noise", "gain")}


def test_rl_mix_can_be_cancelled_in_every_part(natural_pair):
    image, psf = natural_pair.blurred, natural_pair.kernel
    _, full = deconvolve(image, psf, "rl_mix", return_info=True)
    rl = full.iterations
    search, smoothing = SMOOTHING_BISECTIONS, DEFAULT_TUNING.smoothing_iterations
    # in the RL part, the smoothing weight's search, the final smoothing, the RL-TV part
    for stop_at in (3, rl + 4, rl + search + 5, rl + search + smoothing + 5):
        calls = []

        def callback(step, total, current, calls=calls, stop_at=stop_at):
            calls.append(step)
            return step < stop_at

        result, info = deconvolve(image, psf, "rl_mix", callback=callback, return_info=True)
        assert calls[-1] == stop_at and info.stopped_by == "callback"
        assert result.shape == image.shape and result.dtype == np.float32
        assert np.all(np.isfinite(result))
        assert (info.smoothing == 0) == (stop_at < rl + search)


def test_rl_mix_is_rl_smoothed_to_the_noise_then_refined_by_rl_tv(natural_pair):
    image, psf = natural_pair.blurred, natural_pair.kernel
    result, info = deconvolve(image, psf, "rl_mix", return_info=True)
    assert info.method == "rl_mix" and info.stopped_by == "discrepancy"
    assert info.regularization > 0 and info.smoothing > 0  # a photograph: extended
    noise = _noise_parameters(info)
    stop = _discrepancy_stop(image, psf, noise)
    assert info.iterations == round(DEFAULT_TUNING.extension_extended * stop)
    # the parts, each with no data-driven choice left
    sharp = deconvolve(image, psf, "rl_mix", iterations=info.iterations, regularization=0.0,
                       smoothing=info.smoothing, **noise)
    # accelerated RL-TV started from the smoothed estimate, and averaged with it
    data = image.astype(np.float32)
    problem = PoissonData.from_image(data, NoiseModel.estimate(data, **noise))
    operator = BlurOperator(normalise_psf(psf, image.ndim), data.shape)
    refined = richardson_lucy(
        problem, operator, iterations=DEFAULT_TUNING.rl_tv_refinement_iterations,
        extrapolation=make_extrapolation("geometric", operator),
        regulariser=tv_regulariser(problem, info.regularization), initial=sharp).image
    np.testing.assert_allclose(result, 0.5 * (sharp + refined), rtol=0, atol=1e-5)
    assert np.abs(refined - sharp).max() > 1e-2 * np.abs(sharp).max()
    # the smoothing brings the over-fitted RL result back to the noise level
    over = deconvolve(image, psf, "rl_mix", iterations=info.iterations, regularization=0.0,
                      smoothing=0.0, **noise)
    truth = natural_pair.sharp
    assert relative_error(sharp, truth) < 0.98 * relative_error(over, truth)
    assert relative_error(result, truth) < relative_error(sharp, truth)


def test_rl_mix_runs_point_sources_longer_without_rl_tv():
    psf = make_psf("moffat", (15, 15), alpha=2.0, beta=2.5)
    pair = blurred_pair(psf, (128, 128), scene_kind="stars", noise=0.01, rng=3)
    result, info = deconvolve(pair.blurred, pair.kernel, "rl_mix", return_info=True)
    assert info.regularization == 0 and info.smoothing > 0  # point sources: no RL-TV
    stop = _discrepancy_stop(pair.blurred, pair.kernel, _noise_parameters(info))
    assert info.iterations == round(DEFAULT_TUNING.extension_points * stop)
    assert relative_error(result, pair.sharp) < 0.6 * relative_error(pair.blurred, pair.sharp)


def test_tuning_reaches_the_discrepancy_extension_and_the_rl_tv_part(natural_pair):
    image, psf = natural_pair.blurred, natural_pair.kernel
    tuning = AutoTuning(extension_extended=1.5, rl_tv_refinement_iterations=4)
    calls = []
    _, info = deconvolve(image, psf, "rl_mix", tuning=tuning, return_info=True,
                         callback=lambda step, total, current: calls.append((step, total)))
    stop = _discrepancy_stop(image, psf, _noise_parameters(info))
    assert info.iterations == round(1.5 * stop)
    # RL, the weight's search, the smoothing and 4 RL-TV iterations
    smoothing = SMOOTHING_BISECTIONS + DEFAULT_TUNING.smoothing_iterations
    assert calls[-1] == (info.iterations + smoothing + 4,) * 2


def test_point_source_threshold_decides_whether_rl_tv_runs(natural_pair):
    image, psf = natural_pair.blurred, natural_pair.kernel
    # a threshold below a photograph's kurtosis (about -1) calls it point sources
    _, info = deconvolve(image, psf, "rl_mix", tuning=AutoTuning(point_source_kurtosis=-10.0),
                         return_info=True)
    assert info.regularization == 0
    stop = _discrepancy_stop(image, psf, _noise_parameters(info))
    assert info.iterations == round(DEFAULT_TUNING.extension_points * stop)
