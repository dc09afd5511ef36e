"""The "Fit PSF model" and "Model PSF" widgets in a real viewer."""

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end

from psfkit import make_psf
from psfkit._napari._fit_widget import FitModelWidget, ModelPsfWidget
from psfkit.samples import blurred_pair


@pytest.fixture
def pair_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", 17, sigma=2.0), (128, 128), noise=0.01,
                        gain=1.2, offset=0.1, shift=(0.5, -0.4))
    viewer.add_image(pair.sharp, name="sharp")
    viewer.add_image(pair.blurred, name="blurred", scale=(0.2, 0.2))
    widget = dock(viewer, "Fit PSF model")
    assert isinstance(widget, FitModelWidget)
    widget.sharp.value = viewer.layers["sharp"]
    widget.blurred.value = viewer.layers["blurred"]
    return viewer, widget, pair


def test_fit_adds_kernel_and_residual_layers_with_parameters(qtbot, pair_viewer):
    viewer, widget, pair = pair_viewer
    run_to_end(qtbot, widget)
    kernel = viewer.layers["blurred fitted kernel"]
    residual = viewer.layers["blurred fit residual"]
    metadata = kernel.metadata
    assert metadata["model"] == "gaussian"
    assert metadata["params"]["sigma"] == pytest.approx(2.0, rel=0.01)
    assert 0 < metadata["errors"]["sigma"] < 0.05
    np.testing.assert_allclose(metadata["shift"], (0.5, -0.4), atol=0.05)
    assert metadata["gain"] == pytest.approx(1.2, rel=0.02)
    assert metadata["params_physical"]["sigma"] == pytest.approx(0.4, rel=0.01)
    assert float(kernel.data.sum()) == pytest.approx(1.0, abs=1e-5)
    assert tuple(kernel.scale) == (0.2, 0.2)
    assert residual.data.shape == pair.blurred.shape
    inside = residual.data[widget.fit.valid]
    assert float(inside.std()) == pytest.approx(pair.noise_sigma, rel=0.15)
    assert "sigma = 2" in widget.results.value and "±" in widget.results.value
    # a second run with another model updates the same layers
    widget.model.value = "moffat"
    run_to_end(qtbot, widget)
    assert [layer.name for layer in viewer.layers].count("blurred fitted kernel") == 1
    assert viewer.layers["blurred fitted kernel"].metadata["model"] == "moffat"


def test_bad_input_gives_an_error_and_changes_no_layer(qtbot, pair_viewer):
    viewer, widget, _ = pair_viewer
    names = [layer.name for layer in viewer.layers]
    widget.blurred.value = viewer.layers["sharp"]
    assert widget.run() is None
    assert "two different layers" in widget.last_error
    viewer.add_image(np.eye(64, dtype=np.float32), name="small")
    widget.blurred.value = viewer.layers["small"]
    assert widget.run() is None
    assert "differ in shape" in widget.last_error
    viewer.add_image(np.full((128, 128), np.nan, np.float32), name="broken")
    widget.blurred.value = viewer.layers["broken"]
    assert widget.run() is None
    assert "NaN" in widget.last_error
    widget.blurred.value = viewer.layers["blurred"]
    widget.size.value = 20
    run_to_end(qtbot, widget, expect_error=True)  # the core refuses it, in the worker
    assert "odd" in widget.last_error
    assert [layer.name for layer in viewer.layers] == [*names, "small", "broken"]


def test_model_psf_renders_the_chosen_model(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    assert isinstance(widget, ModelPsfWidget)
    widget.model.value = "disk"
    widget.size.value = 15
    widget.parameters["radius"].value = 5.0
    run_to_end(qtbot, widget)
    layer = viewer.layers["disk PSF"]
    np.testing.assert_allclose(layer.data, make_psf("disk", 15, radius=5.0))
    assert layer.metadata["params"] == {"radius": 5.0}
    widget.model.value = "motion"
    widget.parameters["angle"].value = 90.0
    run_to_end(qtbot, widget)
    motion = viewer.layers["motion PSF"].data
    assert motion[:, 7].sum() == pytest.approx(1.0, abs=1e-5)  # vertical: one column
    widget.model.value = "gaussian (3D)"
    widget.depth.value = 11
    run_to_end(qtbot, widget)
    assert viewer.layers["gaussian PSF"].data.shape == (11, 15, 15)


def test_model_psf_rejects_even_sizes_and_nonpositive_sizes(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    assert isinstance(widget, ModelPsfWidget)
    widget.size.value = 14
    assert widget.run() is None
    assert "odd" in widget.last_error
    widget.size.value = 15
    widget.model.value = "airy"
    widget.parameters["radius"].value = 0.0
    assert widget.run() is None
    assert "positive" in widget.last_error
    assert len(viewer.layers) == 0
