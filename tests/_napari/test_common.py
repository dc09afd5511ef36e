"""The widget machinery every psfkit widget shares: errors, progress, cancel, re-runs."""

import time

import numpy as np
import pytest
from magicgui.widgets import FloatSpinBox

from psfkit._napari._common import (
    OUTPUT_KEY,
    PsfkitWidget,
    layer_array,
    layer_picker,
    upsert_layer,
)


class ScaleWidget(PsfkitWidget):
    """Multiplies an image by a factor in a worker, reporting progress in ten steps."""

    def __init__(self, viewer, delay=0.0):
        self.image = layer_picker(viewer, "Image", "image")
        self.factor = FloatSpinBox(value=2.0, label="factor")
        self.delay = delay
        super().__init__(viewer, [self.image, self.factor])

    def prepare(self):
        data = layer_array(self.image.value, "image")
        factor = self.factor.value

        def job(callback):
            for step in range(1, 11):
                time.sleep(self.delay)
                if callback(step, 10) is False:
                    break
            return data * factor

        return job

    def finish(self, result):
        upsert_layer(self.viewer, result, f"{self.image.value.name} scaled", role="scaled",
                     metadata={"factor": self.factor.value})
        self.status.value = "done"


@pytest.fixture
def viewer_with_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.arange(12, dtype=np.float32).reshape(3, 4), name="ramp")
    widget = ScaleWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_result_is_added_as_a_layer_and_a_rerun_updates_it(qtbot, viewer_with_widget):
    viewer, widget = viewer_with_widget
    for factor in (2.0, 3.0):
        widget.factor.value = factor
        assert widget.run() is not None
        qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    names = [layer.name for layer in viewer.layers]
    assert names.count("ramp scaled") == 1
    np.testing.assert_array_equal(viewer.layers["ramp scaled"].data,
                                  3.0 * np.arange(12).reshape(3, 4))
    assert viewer.layers["ramp scaled"].metadata == {"factor": 3.0, OUTPUT_KEY: "scaled"}


def test_bad_input_is_reported_and_changes_no_layer(viewer_with_widget):
    viewer, widget = viewer_with_widget
    viewer.layers["ramp"].data = np.full((3, 4), np.nan, dtype=np.float32)
    assert widget.run() is None
    assert "NaN" in widget.last_error
    assert [layer.name for layer in viewer.layers] == ["ramp"]


def test_cancel_discards_the_result(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.arange(16, dtype=np.float32).reshape(4, 4), name="ramp")
    widget = ScaleWidget(viewer, delay=0.2)
    viewer.window.add_dock_widget(widget)
    assert widget.run() is not None
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert "Cancelled" in widget.status.value
    assert [layer.name for layer in viewer.layers] == ["ramp"]


def test_layer_array_rejects_an_rgb_layer_for_single_channel_tools(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((8, 8, 3), dtype=np.uint8), rgb=True, name="photo")
    with pytest.raises(ValueError, match="RGB"):
        layer_array(layer, "sharp")
