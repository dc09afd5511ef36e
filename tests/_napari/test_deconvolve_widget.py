"""The "Deconvolve" widget in a real viewer: the library's numbers in a layer named after
the input, frames and lazy layers, progress, cancel, and refusals that change no layer."""

import re
import types

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end

import psfkit
from psfkit._napari._common import layer_array
from psfkit._napari._deconvolve_widget import (
    DeconvolveWidget,
    _check_image_layer,
    _regularization_value,
    model_psf,
)
from psfkit.deconvolution import DEFAULT_TUNING
from psfkit.deconvolution._auto import SMOOTHING_BISECTIONS
from psfkit.models import make_psf
from psfkit.samples import blurred_pair


@pytest.fixture
def case():
    psf = make_psf("gaussian", (13, 13), sigma=1.8)
    pair = blurred_pair(psf, (96, 90), noise=0.01)
    return pair, psf


@pytest.fixture
def viewer_widget(make_napari_viewer, case):
    pair, psf = case
    viewer = make_napari_viewer()
    viewer.add_image(pair.blurred, name="cells", scale=(0.2, 0.2), translate=(5, 7))
    viewer.add_image(psf, name="psf", scale=(0.2, 0.2))
    widget = dock(viewer, "Deconvolve")
    assert isinstance(widget, DeconvolveWidget)
    widget.psf.value = viewer.layers["psf"]
    return viewer, widget


def test_result_layer_holds_the_library_result_with_scale_and_parameters(qtbot, viewer_widget,
                                                                          case):
    viewer, widget = viewer_widget
    pair, psf = case
    widget.method.value = "richardson_lucy"
    widget.iterations.value = 10
    run_to_end(qtbot, widget)
    layer = viewer.layers["cells deconvolved"]
    expected = psfkit.deconvolve(pair.blurred, psf, "richardson_lucy", iterations=10)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5, atol=1e-6)
    assert layer.data.dtype == np.float32
    assert tuple(layer.scale) == (0.2, 0.2) and tuple(layer.translate) == (5, 7)
    metadata = layer.metadata
    assert metadata["method"] == "richardson_lucy" and metadata["iterations"] == 10
    assert metadata["psf_layer"] == "psf" and metadata["source"] == "cells"
    assert metadata["requested"]["iterations"] == 10
    assert "10 iterations" in widget.status.value


def test_auto_default_beats_the_blurred_input_and_reruns_update_the_layer(qtbot,
                                                                        viewer_widget, case):
    viewer, widget = viewer_widget
    pair, _ = case
    for _ in range(2):
        run_to_end(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert names.count("cells deconvolved") == 1
    result = viewer.layers["cells deconvolved"].data
    inner = (slice(8, -8), slice(8, -8))
    error = np.linalg.norm(result[inner] - pair.sharp[inner])
    assert error < np.linalg.norm(pair.blurred[inner] - pair.sharp[inner])
    assert viewer.layers["cells deconvolved"].metadata["method"] != "auto"


def test_model_psf_is_used_when_no_psf_layer_is_chosen(qtbot, viewer_widget, case):
    viewer, widget = viewer_widget
    pair, _ = case
    widget.psf_source.value = "model"
    widget.model.value = "gaussian"
    widget.model_size.value = 1.8
    widget.method.value = "wiener"
    widget.regularization.value = "0.01"
    run_to_end(qtbot, widget)
    layer = viewer.layers["cells deconvolved"]
    expected = psfkit.deconvolve(pair.blurred, model_psf("gaussian", 1.8), "wiener",
                                 regularization=0.01)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5, atol=1e-6)
    assert layer.metadata["psf_model"] == "gaussian" and layer.metadata["psf_size"] == 1.8
    assert layer.metadata["regularization"] == pytest.approx(0.01)


def test_frames_of_a_lazy_dask_layer_are_deconvolved_one_by_one(qtbot, viewer_widget, case):
    da = pytest.importorskip("dask.array")
    viewer, widget = viewer_widget
    pair, psf = case
    stack = da.from_array(np.stack([pair.blurred, 0.5 * pair.blurred]), chunks=(1, 96, 90))
    viewer.add_image(stack, name="series", scale=(1, 0.2, 0.2))
    widget.image.value = viewer.layers["series"]
    widget.frames.value = True
    widget.method.value = "wiener"
    widget.regularization.value = "0.01"
    run_to_end(qtbot, widget)
    layer = viewer.layers["series deconvolved"]
    assert isinstance(layer.data, np.ndarray) and layer.data.shape == (2, 96, 90)
    expected = psfkit.deconvolve(pair.blurred, psf, "wiener", regularization=0.01)
    np.testing.assert_allclose(layer.data[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.data[1], 0.5 * expected, rtol=1e-4, atol=1e-5)
    assert len(layer.metadata["frames"]) == 2


def test_automatic_choices_of_the_first_frame_are_repeated_on_the_others(qtbot,
                                                                         viewer_widget, case):
    viewer, widget = viewer_widget
    pair, psf = case
    viewer.add_image(np.stack([pair.blurred, pair.blurred[::-1]]), name="series",
                     scale=(1, 0.2, 0.2))
    widget.image.value = viewer.layers["series"]
    widget.frames.value = True
    run_to_end(qtbot, widget)
    frames = viewer.layers["series deconvolved"].metadata["frames"]
    first, second = frames
    assert first["method"] == second["method"] != "auto"
    assert first["regularization"] == second["regularization"]
    assert first["iterations"] == second["iterations"]
    whole, _ = psfkit.deconvolve(pair.blurred, psf, return_info=True)
    np.testing.assert_allclose(viewer.layers["series deconvolved"].data[0], whole,
                               rtol=1e-5, atol=1e-5)


def _progress_over_frames(viewer_widget, pair, frames, method, iterations=0):
    """The (step, total) reports of a run over a stack of ``frames`` copies, and its
    per-frame reports."""
    viewer, widget = viewer_widget
    viewer.add_image(np.stack([pair.blurred] * frames), name="series", scale=(1, 0.2, 0.2))
    widget.image.value = viewer.layers["series"]
    widget.frames.value = True
    widget.method.value = method
    widget.iterations.value = iterations
    steps = []
    run, *_ = widget.prepare()(lambda step, total, current=None: steps.append((step, total)))
    return steps, run.reports


def test_the_risk_choice_is_said_in_one_sentence_and_kept_in_the_metadata(qtbot,
                                                                        viewer_widget):
    viewer, widget = viewer_widget
    widget.method.value = "auto"
    run_to_end(qtbot, widget)
    choice = viewer.layers["cells deconvolved"].metadata["choice"]
    assert choice["summary"] in widget.status.value
    assert "candidates for the least estimated risk" in widget.status.value
    assert choice["winner"][0] == viewer.layers["cells deconvolved"].metadata["method"]


def test_progress_counts_iterations_over_all_frames(viewer_widget, case):
    steps, _ = _progress_over_frames(viewer_widget, case[0], 3, "richardson_lucy", 4)
    assert [step for step, _ in steps if step % 4 == 0][-1] == 12
    assert {total for _, total in steps} == {12}
    assert [step for step, _ in steps] == sorted(step for step, _ in steps)


@pytest.mark.parametrize("method", ["auto", "rl_mix"])
def test_progress_of_automatic_frames_only_goes_up_and_ends_full(viewer_widget, case,
                                                                 method):
    steps, reports = _progress_over_frames(viewer_widget, case[0], 2, method)
    assert [step for step, _ in steps] == sorted(step for step, _ in steps)
    assert all(step <= total for step, total in steps)
    assert steps[-1][0] == steps[-1][1]
    if method == "auto":  # the first frame's choice has no step count known in advance
        return
    # each frame's steps: its RL iterations, the smoothing's (the first frame searches the
    # weight, the others reuse it) and the RL-TV part's
    per_frame = [report["iterations"] + DEFAULT_TUNING.smoothing_iterations
                 + (SMOOTHING_BISECTIONS if index == 0 else 0)
                 + (DEFAULT_TUNING.rl_tv_refinement_iterations
                    if report["regularization"] > 0 else 0)
                 for index, report in enumerate(reports)]
    assert steps[-1][0] == sum(per_frame)


def test_cancel_changes_no_layer(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    widget.method.value = "richardson_lucy"
    widget.iterations.value = 100_000
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        widget.cancel()
    assert "cells deconvolved" not in viewer.layers
    assert "Cancelled" in widget.status.value


def test_bad_input_gives_an_error_and_changes_no_layer(viewer_widget):
    viewer, widget = viewer_widget
    names = [layer.name for layer in viewer.layers]

    def refused(message):
        assert widget.run() is None
        assert message in widget.last_error
        assert [layer.name for layer in viewer.layers] == names

    widget.regularization.value = "strong"
    refused("number or 'auto'")
    widget.regularization.value = "auto"
    viewer.layers["psf"].scale = (0.1, 0.1)
    widget.resample.value = False
    refused("tick 'resample the PSF")
    widget.resample.value = True
    viewer.layers["psf"].data = np.ones((121, 121), np.float32)
    viewer.layers["psf"].scale = (0.2, 0.2)
    refused("larger than")
    widget.psf_source.value = "model"
    widget.model.value = "airy"
    widget.axial_size.value = 2.0
    refused("Only the Gaussian")
    widget.axial_size.value = 0.0
    data = viewer.layers["cells"].data.copy()
    data[3, 3] = np.nan
    viewer.layers["cells"].data = data
    refused("NaN")


# ------------------------------------------------- issue #17: found by the contract suite


@pytest.mark.parametrize(("arguments", "error", "message"), [
    (("nope", 2.0), ValueError, "The model PSF must be one of"),
    (("gaussian", "x"), TypeError, "size must be a number, got 'x'"),
    (("gaussian", float("inf")), ValueError, "size must be a finite number, got inf"),
    (("gaussian", 1e6), ValueError, "size must satisfy size <= 500"),
    (("gaussian", 2.0, float("nan")), ValueError, "axial_size must be a finite number"),
    (("gaussian", 2.0, -1.0), ValueError, "axial_size must satisfy 0 <= axial_size <= 500"),
])
def test_a_model_psf_of_a_bad_model_or_size_is_refused_by_name(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        model_psf(*arguments)


@pytest.mark.parametrize("text", ["inf", "nan", "-inf"])
def test_the_regularization_field_refuses_a_non_finite_number(text):
    with pytest.raises(ValueError, match="Regularization must be a finite number"):
        _regularization_value(text)


def test_a_masked_layer_is_refused_rather_than_its_mask_ignored():
    data = np.ma.masked_array(np.random.default_rng(0).random((16, 16)), mask=False)
    layer = types.SimpleNamespace(name="masked", data=data, rgb=False, multiscale=False)
    for check in (lambda: _check_image_layer(layer, 2), lambda: layer_array(layer, "image")):
        with pytest.raises(ValueError, match="The image layer 'masked' holds a masked array"):
            check()
