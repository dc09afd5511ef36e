"""The metadata of a run: JSON-safe values that repeat what the core result says."""

import json
import warnings

import numpy as np
import pytest

import psfkit
from psfkit.frames import deconvolve_frames, repeating_call
from psfkit.metadata import Code, plain, python_call, region_of, run_metadata
from psfkit.models import make_psf
from psfkit.samples import blurred_pair, point_source_frame, soft_disk


def test_plain_turns_numpy_values_into_python_ones():
    value = plain({"a": np.float32(1.5), "b": np.arange(3), 1: (np.int64(2), np.bool_(True)),
                   "c": np.float64(0.25) * np.ones((2, 1))})
    assert value == {"a": 1.5, "b": [0, 1, 2], "1": [2, True], "c": [[0.25], [0.25]]}
    assert type(value["a"]) is float and type(value["1"][0]) is int
    assert type(value["1"][1]) is bool


@pytest.fixture(scope="module")
def pair():
    return blurred_pair(make_psf("gaussian", (9, 9), sigma=1.2), (96, 96), noise=0.01, rng=3)


def test_a_deconvolution_records_its_parameters_and_not_its_history(pair):
    _, info = psfkit.deconvolve(pair.blurred, make_psf("gaussian", (9, 9), sigma=1.2),
                                "richardson_lucy", iterations=7, return_info=True)
    metadata = json.loads(json.dumps(run_metadata(info)))
    assert metadata["method"] == "richardson_lucy" and metadata["iterations"] == 7
    assert metadata["parameters"]["iterations"] == 7
    assert metadata["noise_sigma"] == pytest.approx(info.noise_sigma)
    assert "history" not in metadata


def test_a_kernel_estimate_records_shift_gain_and_quality(pair):
    estimate = psfkit.estimate_kernel(pair.sharp, pair.blurred, 9)
    metadata = json.loads(json.dumps(run_metadata(estimate)))
    assert metadata["shift"] == pytest.approx(np.asarray(estimate.shift).tolist())
    assert metadata["gain"] == pytest.approx(float(estimate.gain))
    assert metadata["shape"] == [9, 9] and metadata["method"] == estimate.method
    assert metadata["residual_ratio"] == pytest.approx(float(estimate.residual_ratio))


def test_a_kernel_fit_records_its_model_and_errors(pair):
    fit = psfkit.fit_kernel(pair.sharp, pair.blurred, "gaussian")
    metadata = json.loads(json.dumps(run_metadata(fit)))
    assert metadata["model"] == "gaussian"
    assert metadata["params"]["sigma"] == pytest.approx(1.2, rel=0.1)
    assert set(metadata["errors"]) == set(fit.params)
    assert metadata["converged"] == bool(fit.success)


@pytest.mark.parametrize(("size", "uncertain"), [(15, True), (41, False)])
def test_a_prepared_psf_records_which_warnings_it_raised(size, uncertain):
    # a defocus disk of radius 6 in a 15 px crop leaves no pure background
    whole = point_source_frame(soft_disk(6.0), (40.3, 39.8), (81, 81), hot_pixels=(), rng=0)
    half = size // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, report = psfkit.prepare_psf(whole[40 - half:41 + half, 40 - half:41 + half],
                                       shape=(17, 17), return_info=True)
    metadata = json.loads(json.dumps(run_metadata(report)))
    assert metadata["background_uncertain"] is uncertain
    assert metadata["saturated"] is False
    assert metadata["truncated"] is bool(report.truncated)
    assert len(metadata["warnings"]) == len(report.warnings) >= int(uncertain)


def test_an_unknown_result_is_refused():
    with pytest.raises(TypeError, match="no metadata for a dict"):
        run_metadata({})


def test_python_call_writes_literals_that_evaluate_to_the_arguments():
    call = python_call("f", Code("image"), (17, 17), method="rl", weight=np.float32(0.1),
                       scale=np.array([0.5, 0.25]), axis=(2,), names={"a": None})
    assert call == ("f(image, (17, 17), method='rl', weight=0.10000000149011612, "
                    "scale=[0.5, 0.25], axis=(2,), names={'a': None})")
    args, kwargs = eval(call, {"f": lambda *args, **kwargs: (args, kwargs), "image": "data"})
    assert args == ("data", (17, 17))
    assert kwargs["weight"] == float(np.float32(0.1))  # to the last bit
    assert kwargs["axis"] == (2,) and kwargs["scale"] == [0.5, 0.25]


def test_python_call_refuses_a_value_without_a_literal():
    with pytest.raises(ValueError, match="non-finite value nan"):
        python_call("f", weight=float("nan"))


def test_region_of_cuts_the_box_out_of_a_variable():
    assert region_of("sharp", (slice(2, 40), slice(0, 64))) == "sharp[2:40, 0:64]"
    assert region_of("sharp", ()) == "sharp"


@pytest.mark.parametrize("method", ["auto", "richardson_lucy", "fista_tv", "wiener"])
def test_a_repeating_call_gives_the_deconvolution_bit_for_bit(pair, method):
    psf = make_psf("gaussian", (9, 9), sigma=1.2)
    request = {"method": method, "iterations": None, "regularization": "auto"}
    run = deconvolve_frames(pair.blurred, psf, **request)
    call = repeating_call(request, run.reports[0], 1)
    assert call.startswith("psfkit.deconvolve(image, psf, method=")
    again = eval(call, {"psfkit": psfkit, "image": pair.blurred, "psf": psf})
    np.testing.assert_array_equal(again, run.result)


def test_a_repeating_call_of_frames_repeats_the_first_frames_choices(pair):
    psf = make_psf("gaussian", (9, 9), sigma=1.2)
    stack = np.stack([pair.blurred, pair.blurred[::-1]])
    request = {"method": "auto"}
    run = deconvolve_frames(stack, psf, **request)
    call = repeating_call(request, run.reports[0], 2)
    assert call.startswith("psfkit.frames.deconvolve_frames(image, psf, method='rl_mix'")
    assert f"iterations={run.reports[0]['parameters']['iterations']}" in call
    again = eval(call, {"psfkit": psfkit, "image": stack, "psf": psf})
    np.testing.assert_array_equal(again, run.result)
