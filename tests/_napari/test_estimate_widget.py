"""The "Estimate kernel" widget in a real viewer."""

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end

from psfkit import make_psf
from psfkit._napari._estimate_widget import EstimateKernelWidget
from psfkit.samples import blurred_pair


@pytest.fixture
def pair_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    kernel = make_psf("gaussian", (11, 11), sigma=1.5)
    pair = blurred_pair(kernel, (96, 96), noise=0.005, gain=0.9, offset=0.05,
                        shift=(0.5, -0.8), rng=3)
    viewer.add_image(pair.sharp, name="sharp", scale=(0.2, 0.2))
    viewer.add_image(pair.blurred, name="blurred", scale=(0.2, 0.2))
    widget = dock(viewer, "Estimate kernel")
    assert isinstance(widget, EstimateKernelWidget)
    widget.sharp.value = viewer.layers["sharp"]
    widget.blurred.value = viewer.layers["blurred"]
    return viewer, widget, pair


def test_estimate_adds_kernel_residual_and_reblurred_layers(qtbot, pair_viewer):
    viewer, widget, pair = pair_viewer
    widget.size.value = 11
    run_to_end(qtbot, widget)
    kernel_layer = viewer.layers["blurred kernel"]
    assert kernel_layer.data.shape == (11, 11)
    error = np.linalg.norm(kernel_layer.data - pair.kernel) / np.linalg.norm(pair.kernel)
    assert error < 0.12
    np.testing.assert_allclose(kernel_layer.scale, (0.2, 0.2))
    metadata = kernel_layer.metadata
    np.testing.assert_allclose(metadata["shift"], pair.shift, atol=0.1)
    assert metadata["gain"] == pytest.approx(0.9, rel=0.03)
    assert 0.8 < metadata["residual_ratio"] < 1.25
    assert viewer.layers["blurred residual"].data.shape == pair.blurred.shape
    assert viewer.layers["blurred reblurred"].data.shape == pair.blurred.shape
    assert "shift" in widget.status.value and "gain" in widget.status.value
    # a second run updates the same layers instead of adding new ones
    run_to_end(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert names.count("blurred kernel") == 1 and len(names) == 5


def test_a_rectangle_restricts_the_fit_to_its_region(qtbot, pair_viewer):
    viewer, widget, pair = pair_viewer
    # corners in world units (scale 0.2): rows 10..80, columns 12..84 in pixels
    viewer.add_shapes([np.array([[2.0, 2.4], [2.0, 16.8], [16.0, 16.8], [16.0, 2.4]])],
                      shape_type="rectangle", name="roi")
    widget.roi.reset_choices()
    widget.roi.value = viewer.layers["roi"]
    run_to_end(qtbot, widget)
    metadata = viewer.layers["blurred kernel"].metadata
    assert metadata["region"] == [[10, 81], [12, 85]]
    assert viewer.layers["blurred residual"].data.shape == (71, 73)
    np.testing.assert_allclose(viewer.layers["blurred residual"].translate, (2.0, 2.4))
    np.testing.assert_allclose(metadata["shift"], pair.shift, atol=0.1)


def test_bad_input_shows_an_error_and_changes_no_layer(qtbot, pair_viewer):
    viewer, widget, _ = pair_viewer
    viewer.add_image(np.eye(50, dtype=np.float32), name="small")
    widget.blurred.reset_choices()
    widget.blurred.value = viewer.layers["small"]
    before = [layer.name for layer in viewer.layers]
    assert widget.run() is None
    assert "same shape" in widget.last_error
    widget.blurred.value = viewer.layers["blurred"]
    widget.size.value = 61
    run_to_end(qtbot, widget, expect_error=True)  # the core refuses it, in the worker
    assert "too large" in widget.last_error
    assert [layer.name for layer in viewer.layers] == before


def test_cancel_changes_no_layer(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("disk", (15, 15), radius=4.0), (256, 256), noise=0.01, rng=4)
    viewer.add_image(pair.sharp, name="sharp")
    viewer.add_image(pair.blurred, name="blurred")
    widget = dock(viewer, "Estimate kernel")
    assert isinstance(widget, EstimateKernelWidget)
    widget.sharp.value = viewer.layers["sharp"]
    widget.blurred.value = viewer.layers["blurred"]
    worker = widget.run()
    widget.cancel()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert [layer.name for layer in viewer.layers] == ["sharp", "blurred"]
    assert "Cancelled" in widget.status.value
