"""Every run repeated from its record: ``deconvolve(image, psf, **info.parameters)`` makes
no data-driven choice left, so it returns the first result bit for bit and reports the same
parameters, for every method, noise model and dimensionality, and through a
:class:`psfkit.Deconvolver`, :func:`psfkit.deconvolve_chunked` and a PSF map."""

import numpy as np
import pytest

from psfkit import Deconvolver, deconvolve, deconvolve_chunked, make_psf
from psfkit.chunked import plan_chunked
from psfkit.deconvolution import MAX_REGULARIZATION, METHODS
from psfkit.deconvolution._noise import NoiseModel
from psfkit.psf_map import PsfMap, tile_centres, tiling
from psfkit.samples import blurred_pair

NOISE = {"gaussian": dict(noise=0.01), "poisson": dict(noise=0.0, poisson_photons=300.0)}


def _case(ndim: int, noise: str):
    """A small blurred image (2D natural scene or 3D blobs) and its PSF."""
    if ndim == 2:
        psf, shape, scene = make_psf("gaussian", (9, 9), sigma=1.5), (48, 48), "natural"
    else:
        psf = make_psf("gaussian", (5, 7, 7), sigma=(1.0, 1.2, 1.2))
        shape, scene = (12, 24, 24), "blobs"
    pair = blurred_pair(psf, shape, scene_kind=scene, shift=(0,) * ndim, rng=1,
                        **NOISE[noise])
    return pair.blurred, psf


def _noise_model_of(image, parameters) -> NoiseModel:
    return NoiseModel.estimate(image, **{name: parameters[name]
                                         for name in ("background", "read_noise", "gain")})


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("noise", sorted(NOISE))
@pytest.mark.parametrize("method", METHODS)
def test_the_parameters_repeat_the_run_bit_for_bit_with_nothing_left_to_choose(
        method, noise, ndim):
    image, psf = _case(ndim, noise)
    first, info = deconvolve(image, psf, method, return_info=True)
    again, repeated = deconvolve(image, psf, **info.parameters, return_info=True)
    np.testing.assert_array_equal(again, first)
    assert repeated.parameters == info.parameters
    # the noise model comes back whole, its level at the mean included
    assert repeated.noise_sigma == info.noise_sigma
    assert _noise_model_of(image, info.parameters) == NoiseModel.estimate(image)


def test_the_poisson_cases_are_shot_noise_and_the_gaussian_ones_are_not():
    # the parametrised test covers both branches of the noise model
    assert NoiseModel.estimate(_case(2, "poisson")[0]).poisson
    assert not NoiseModel.estimate(_case(2, "gaussian")[0]).poisson


def test_fista_tv_reports_and_replays_its_automatic_weight_per_iteration():
    image, psf = _case(2, "poisson")
    first, info = deconvolve(image, psf, "fista_tv", return_info=True)
    schedule = info.parameters["regularization_schedule"]
    assert len(schedule) == info.iterations and schedule[-1] == info.regularization
    assert len(set(schedule)) > 1  # the weight did adapt to the noise
    # the final weight alone is another, converging run, not this one
    fixed = dict(info.parameters)
    del fixed["regularization_schedule"]
    assert not np.array_equal(deconvolve(image, psf, **fixed), first)
    # a fixed weight has no schedule to report
    _, constant = deconvolve(image, psf, "fista_tv", regularization=0.01, return_info=True)
    assert "regularization_schedule" not in constant.parameters


def test_fista_tv_runs_exactly_the_iterations_it_is_given():
    image, psf = _case(2, "gaussian")
    _, converging = deconvolve(image, psf, "fista_tv", regularization=0.02,
                               return_info=True)
    assert converging.stopped_by == "converged"
    budget = converging.iterations + 30
    _, info = deconvolve(image, psf, "fista_tv", iterations=budget, regularization=0.02,
                         return_info=True)
    assert info.iterations == budget and info.stopped_by == "iterations"


def test_a_given_background_below_the_estimated_one_keeps_the_read_noise_real():
    # the estimated intercept leaves a negative variance at background 0: read noise 0
    image, _ = _case(2, "poisson")
    model = NoiseModel.estimate(image + 0.1, background=0.0)
    assert model.poisson and model.read_noise == 0.0 and model.intercept == 0.0
    assert _noise_model_of(image + 0.1, model.parameters()) == model


@pytest.mark.parametrize(("option", "value", "error", "match"), [
    ("regularization_schedule", [0.1], ValueError,
     r"regularization_schedule is fista_tv's weight per iteration .*method 'wiener' takes "
     r"none: leave it out or use method='fista_tv'"),
    ("regularization_schedule", 0.1, TypeError,
     r"regularization_schedule must be a sequence of numbers, got 0.1"),
])
def test_a_schedule_for_another_method_or_not_a_sequence_is_refused(option, value, error,
                                                                    match):
    image, psf = _case(2, "gaussian")
    with pytest.raises(error, match=match):
        deconvolve(image, psf, "wiener", **{option: value})


def test_an_empty_schedule_is_refused():
    image, psf = _case(2, "gaussian")
    with pytest.raises(ValueError, match=r"regularization_schedule must hold at least one "
                                         r"weight, got an empty sequence"):
        deconvolve(image, psf, "fista_tv", regularization_schedule=[])


@pytest.mark.parametrize("method", ["auto", "fista_tv", "rl_mix", "wiener"])
def test_a_deconvolver_with_the_same_choices_repeats_the_first_images_parameters(method):
    image, psf = _case(2, "poisson")
    other = image[::-1].copy()
    deconvolver = Deconvolver(psf, method, same_choices=True)
    first, info = deconvolver(image, return_info=True)
    np.testing.assert_array_equal(first, deconvolve(image, psf, method))
    second, second_info = deconvolver(other, return_info=True)
    assert deconvolver.choices == info.parameters
    np.testing.assert_array_equal(second, deconvolve(other, psf, **info.parameters))
    assert second_info.parameters == info.parameters


@pytest.mark.parametrize("method", ["fista_tv", "auto", "tikhonov"])
def test_the_chunked_plan_repeats_itself_and_its_output(method):
    image, psf = _case(2, "poisson")
    image = np.tile(image, (2, 1))
    options = dict(chunks=(48, 48), scheduler="synchronous")
    plan = plan_chunked(image, psf, method, chunks=(48, 48))
    assert plan_chunked(image, psf, chunks=(48, 48), **plan.parameters).parameters == (
        plan.parameters)
    first = np.asarray(deconvolve_chunked(image, psf, method, **options))
    again = np.asarray(deconvolve_chunked(image, psf, **plan.parameters, **options))
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("method", ["wiener", "fista_tv", "rl_mix", "auto"])
def test_a_psf_map_run_is_repeated_by_its_parameters(method):
    image, psf = _case(2, "poisson")
    wider = make_psf("gaussian", psf.shape, sigma=2.0)
    psf_map = PsfMap(psfs=np.stack([psf, wider])[None].astype(np.float32),
                     shape=image.shape,
                     centres=tile_centres(tiling(image.shape, (1, 2), 1.0), (1, 2)))
    first, info = deconvolve(image, psf_map, method, return_info=True)
    again, repeated = deconvolve(image, psf_map, **info.parameters, return_info=True)
    np.testing.assert_array_equal(again, first)
    assert repeated.parameters == info.parameters



def test_the_choices_made_on_an_image_without_signal_are_not_accepted_back():
    # by design (frames.has_signal): an all-zero image's relative noise is 1e15, its RL-TV
    # weight 1e14, which deconvolve refuses, so no choice made on it is applied to others
    image, psf = np.zeros((32, 32), np.float32), make_psf("gaussian", (9, 9), sigma=1.5)
    _, info = deconvolve(image, psf, "rl_tv", return_info=True)
    assert info.parameters["regularization"] > MAX_REGULARIZATION
    with pytest.raises(ValueError, match=r"regularization must satisfy 0 <= regularization "
                                         r"<= 1e\+06, got 1e\+14"):
        deconvolve(image, psf, **info.parameters)
