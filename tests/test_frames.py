"""Frames along leading axes: one function over every frame with one progress count and one
cancel, the first frame's choices repeated on the others, and one size rule for blocks."""

import re

import numpy as np
import pytest

import psfkit
from psfkit.deconvolution import DeconvolutionInfo
from psfkit.frames import (
    CHUNKED_FRAME_BYTES,
    deconvolve_frames,
    explicit_parameters,
    frame_in_blocks,
    map_frames,
)
from psfkit.models import make_psf
from psfkit.samples import blurred_pair


def _doubled_in_three_steps(frame, callback):
    for step in (1, 2, 3):
        if callback(step, 3) is False:
            break
    return 2 * frame, float(frame.sum())


def test_map_frames_applies_the_function_to_every_frame_and_counts_over_all_frames():
    stack = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    steps = []
    run = map_frames(_doubled_in_three_steps, stack, 2,
                     callback=lambda step, total, current=None: steps.append((step, total)))
    np.testing.assert_array_equal(run.result, 2 * stack)
    assert run.result.dtype == np.float32 and run.complete
    assert run.reports == tuple(float(stack[index].sum()) for index in np.ndindex(2, 3))
    assert [step for step, _ in steps] == sorted(step for step, _ in steps)
    assert {total for _, total in steps} == {18}
    assert steps[-1] == (18, 18)


def test_map_frames_stops_where_the_callback_says_and_leaves_the_rest_alone():
    stack = np.ones((4, 6, 6), np.float32)
    out = np.zeros_like(stack)
    run = map_frames(_doubled_in_three_steps, stack, 2, out=out,
                     callback=lambda step, total, current=None: step < 5)
    assert run.result is out and not run.complete
    assert len(run.reports) == 2
    np.testing.assert_array_equal(out[:2], 2.0)
    np.testing.assert_array_equal(out[2:], 0.0)


def test_a_single_image_is_one_frame():
    image = np.full((5, 7), 3.0, np.float32)
    run = map_frames(_doubled_in_three_steps, image, 2)
    np.testing.assert_array_equal(run.result, 6.0)
    assert run.reports == (105.0,)


@pytest.fixture(scope="module")
def case():
    psf = make_psf("gaussian", (11, 11), sigma=1.5)
    pair = blurred_pair(psf, (80, 72), noise=0.01)
    return pair, psf


def test_the_first_frames_automatic_choices_are_repeated_on_the_others(case):
    pair, psf = case
    stack = np.stack([pair.blurred, 3 * pair.blurred[::-1]])
    run = deconvolve_frames(stack, psf, method="wiener")
    first, second = run.reports
    assert first["regularization"] == second["regularization"]
    assert first["background"] == second["background"]
    expected, info = psfkit.deconvolve(pair.blurred, psf, "wiener", return_info=True)
    np.testing.assert_allclose(run.result[0], expected, rtol=1e-6, atol=1e-7)
    repeated = psfkit.deconvolve(stack[1], psf, **info.parameters)
    np.testing.assert_allclose(run.result[1], repeated, rtol=1e-6, atol=1e-7)


def test_frames_in_blocks_match_frames_at_once_within_one_percent(case):
    pair, psf = case
    stack = np.stack([pair.blurred, pair.blurred])
    options = dict(method="richardson_lucy", iterations=10)
    at_once = deconvolve_frames(stack, psf, in_blocks=False, **options)
    in_blocks = deconvolve_frames(stack, psf, in_blocks=True, **options)
    error = np.linalg.norm(in_blocks.result - at_once.result) / np.linalg.norm(at_once.result)
    assert error < 0.01
    assert in_blocks.reports[0]["blocks"] >= 1 and in_blocks.reports[0]["iterations"] == 10


def test_frames_go_in_blocks_above_the_one_size_limit():
    side = int(np.sqrt(CHUNKED_FRAME_BYTES // 4))
    assert not frame_in_blocks((side, side))
    assert frame_in_blocks((side, side + 1))
    assert not frame_in_blocks((64, 64, 64))


def test_explicit_parameters_keep_what_was_given_and_take_the_rest_from_the_run():
    info = DeconvolutionInfo(method="rl_mix", parameters={
        "method": "rl_mix", "regularization": 0.02, "iterations": 17, "background": 1.5,
        "read_noise": 0.1, "gain": 0.0, "smoothing": 0.3})
    request = {"method": "auto", "iterations": 30, "regularization": "auto",
               "background": None}
    assert explicit_parameters(request, info) == {
        "method": "rl_mix", "regularization": 0.02, "iterations": 30, "background": 1.5,
        "read_noise": 0.1, "gain": 0.0, "smoothing": 0.3}


# ---------------------------------------------------- issue #17: choices made on a frame


def test_an_all_zero_first_frame_lets_the_next_frame_with_signal_choose(small_blurred):
    psf, blurred = small_blurred
    run = deconvolve_frames(np.stack([0 * blurred, blurred, blurred]), psf)
    alone = psfkit.deconvolve(blurred, psf)
    np.testing.assert_allclose(run.result[1], alone, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(run.result[2], alone, rtol=1e-6, atol=1e-6)
    assert float(np.abs(run.result[0]).max()) < 1e-3 * float(blurred.max())


def test_a_constant_first_frame_leaves_the_wiener_results_of_the_others_right(small_blurred):
    psf, blurred = small_blurred
    run = deconvolve_frames(np.stack([0 * blurred + 1, blurred]), psf, method="wiener")
    np.testing.assert_allclose(run.result[1], psfkit.deconvolve(blurred, psf, "wiener"),
                               rtol=1e-6, atol=1e-6)


def test_choices_made_on_a_stack_without_signal_are_refused_naming_the_frame(small_blurred):
    psf, _ = small_blurred
    with pytest.raises(ValueError, match=r"automatic choices made on frame \(0,\) are "
                                         r"unusable \(regularization must satisfy"):
        deconvolve_frames(np.zeros((2, 64, 64), np.float32), psf)


@pytest.mark.parametrize(("keywords", "error", "message"), [
    ({"callback": 5}, TypeError, "callback must be a function or None"),
    ({"out": np.zeros((2, 64, 64), np.int16)}, TypeError, "out must have dtype float32"),
    ({"out": np.zeros((3, 64, 64), np.float32)}, ValueError, "out has shape (3, 64, 64)"),
])
def test_a_bad_argument_is_refused_before_any_frame_runs(small_blurred, keywords, error, message):
    import re

    psf, blurred = small_blurred
    with pytest.raises(error, match=re.escape(message)):
        deconvolve_frames(np.stack([blurred, blurred]), psf, **keywords)


def test_map_frames_checks_its_function_and_callback_before_any_frame():
    stack = np.ones((2, 4, 4), np.float32)
    with pytest.raises(TypeError, match=r"function must be callable as "
                                        r"function\(frame, callback\), got 5"):
        map_frames(5, stack, 2)
    with pytest.raises(TypeError, match="callback must be a function or None, got 'x'"):
        map_frames(_doubled_in_three_steps, stack, 2, callback="x")


# ------------------------------------------------- issue #17: found by the contract suite


def _doubled(frame, callback):
    return 2 * frame, None


@pytest.mark.parametrize(("keywords", "error", "message"), [
    ({"spatial_ndim": 4}, ValueError, "spatial_ndim must be an int <= 3, got 4, the number "
                                      "of axes of the stack (2, 3, 4)"),
    ({"spatial_ndim": 0}, ValueError, "spatial_ndim must be an int >= 1, got 0"),
    ({"spatial_ndim": float("nan")}, TypeError, "spatial_ndim must be an int, got nan"),
    ({"spatial_ndim": 2, "steps_per_frame": "x"}, TypeError, "steps_per_frame must be an int"),
    ({"spatial_ndim": 2, "out": np.zeros((3, 3), np.float32)}, ValueError,
     "out has shape (3, 3), expected (2, 3, 4)"),
    ({"spatial_ndim": 2, "out": np.zeros((2, 3, 4), np.int16)}, TypeError,
     "out must have dtype float32 or float64, got int16"),
    ({"spatial_ndim": 2, "out": [0.0]}, TypeError, "out must be an array"),
])
def test_map_frames_names_a_bad_axis_count_step_count_or_output(keywords, error, message):
    stack = np.ones((2, 3, 4), np.float32)
    with pytest.raises(error, match=re.escape(message)):
        map_frames(_doubled, stack, **keywords)


def test_map_frames_refuses_a_function_result_of_another_shape_instead_of_broadcasting_it():
    with pytest.raises(ValueError, match=re.escape("function returned shape (1,) for a frame "
                                                   "of shape (3, 4)")):
        map_frames(lambda frame, callback: (np.zeros(1), None), np.ones((2, 3, 4)), 2)


def test_frames_a_stopped_run_did_not_reach_are_zero_not_uninitialised_memory():
    run = map_frames(_doubled, np.full((3, 4, 4), 5.0), 2, callback=lambda *_: False)
    assert not run.complete
    np.testing.assert_array_equal(run.result[0], 10.0)
    np.testing.assert_array_equal(run.result[1:], 0.0)


def test_deconvolve_frames_takes_a_nested_list_and_names_a_ragged_one():
    psf = make_psf("gaussian", (5, 5), sigma=1.0)
    stack = blurred_pair(psf, (16, 16), noise=0.01).blurred
    listed = deconvolve_frames([stack.tolist()], psf, method="wiener", regularization=1e-2)
    expected = psfkit.deconvolve(stack, psf, "wiener", regularization=1e-2)
    np.testing.assert_array_equal(listed.result[0], expected)
    with pytest.raises(ValueError, match="stack must be one array with a shape"):
        deconvolve_frames([[1.0, 2.0], [3.0]], psf)


@pytest.mark.parametrize(("keywords", "error", "message"), [
    ({"psf": np.ones((3, 3, 3, 3))}, ValueError, "psf must be 2D or 3D, got 4D"),
    ({"psf": np.ones((3, 3, 3))}, ValueError, "psf is 3D but the stack (16, 16) has only 2"),
    ({"in_blocks": "x"}, TypeError, "in_blocks must be True, False or None, got 'x'"),
    ({"iterations": 10**12}, ValueError, "iterations must be an int <= 100000"),
    ({"iterations": 5.0}, TypeError, "iterations must be an int, got 5.0"),
])
def test_deconvolve_frames_names_a_bad_psf_block_choice_or_iteration_count(keywords, error,
                                                                           message):
    arguments = {"psf": make_psf("gaussian", (5, 5), sigma=1.0), **keywords}
    with pytest.raises(error, match=re.escape(message)):
        deconvolve_frames(np.random.default_rng(0).random((16, 16)), **arguments)
