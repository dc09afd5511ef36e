"""Every output layer records the Python call that makes it again: evaluated with its inputs
bound to the input layers' data, the call returns the layer's data bit for bit (widgets
docked as the Plugins menu docks them, on the sample data)."""

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end

import psfkit
from psfkit.metadata import REPRODUCE_KEY


def _repeat(viewer, layer):
    """What the call recorded in ``layer``'s metadata returns, its inputs bound to the data
    of the layers they name."""
    entry = layer.metadata[REPRODUCE_KEY]
    bound = {name: viewer.layers[source].data for name, source in entry["inputs"].items()}
    return eval(entry["python"], {"psfkit": psfkit, **bound})


def _assert_reproduced(viewer, names):
    for name in names:
        layer = viewer.layers[name]
        again = np.asarray(_repeat(viewer, layer))
        assert again.dtype == layer.data.dtype, name
        np.testing.assert_array_equal(again, layer.data, err_msg=name)


@pytest.mark.parametrize("with_region", [False, True])
def test_estimate_kernel_outputs_are_reproduced_by_their_call(qtbot, make_napari_viewer,
                                                              with_region):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_pair")
    widget = dock(viewer, "Estimate kernel")
    widget.size.value = 11
    if with_region:
        widget.roi.value = viewer.add_shapes(
            [np.array([[20, 30], [20, 110], [100, 110], [100, 30]])], name="roi")
    run_to_end(qtbot, widget)
    call = viewer.layers["blurred kernel"].metadata[REPRODUCE_KEY]
    assert call["inputs"] == {"sharp": "sharp", "blurred": "blurred"}
    region = "[20:101, 30:111]" if with_region else ""
    assert call["python"] == (f"psfkit.estimate_kernel(sharp{region}, blurred{region}, "
                              "(11, 11), method='auto', rgb=False).kernel")
    _assert_reproduced(viewer, ["blurred kernel", "blurred residual", "blurred reblurred"])


def test_fit_outputs_are_reproduced_by_their_call(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_pair")
    widget = dock(viewer, "Fit PSF model")
    run_to_end(qtbot, widget)
    call = viewer.layers["blurred fitted kernel"].metadata[REPRODUCE_KEY]["python"]
    assert call.startswith("psfkit.fit_kernel(sharp, blurred, 'gaussian', shape=None, ")
    _assert_reproduced(viewer, ["blurred fitted kernel", "blurred fit residual"])


def test_prepared_and_averaged_psfs_are_reproduced_by_their_call(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "beads")
    viewer.open_sample("napari-psfkit", "led_photo")
    prepare = dock(viewer, "Prepare PSF")
    prepare.image.value = viewer.layers["LED"]
    run_to_end(qtbot, prepare)
    average = dock(viewer, "Average beads")
    average.image.value = viewer.layers["beads"]
    run_to_end(qtbot, average)
    assert viewer.layers["LED PSF"].metadata[REPRODUCE_KEY]["inputs"] == {"image": "LED"}
    _assert_reproduced(viewer, ["LED PSF", "beads averaged PSF", "beads detected"])


@pytest.mark.parametrize("model", ["gaussian", "gaussian (3D)", "widefield_airy"])
def test_model_psfs_are_reproduced_by_their_call(qtbot, make_napari_viewer, model):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    widget.model.value = model
    widget.depth.value = 9
    run_to_end(qtbot, widget)
    layer = viewer.layers[-1]
    assert layer.metadata[REPRODUCE_KEY]["python"].startswith("psfkit.make_psf(")
    _assert_reproduced(viewer, [layer.name])


def test_deconvolution_with_a_psf_layer_records_every_choice_and_the_command(
        qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_image")
    widget = dock(viewer, "Deconvolve")
    run_to_end(qtbot, widget)
    layer = viewer.layers["blurred cells deconvolved"]
    entry = layer.metadata[REPRODUCE_KEY]
    used = layer.metadata["parameters"]
    assert entry["inputs"] == {"image": "blurred cells", "psf": "psf"}
    assert entry["python"].startswith(
        f"psfkit.deconvolve(image, psf, method='rl_mix', iterations={used['iterations']}, "
        f"regularization={used['regularization']!r}, ")
    assert entry["command"] == ("psfkit deconvolve 'blurred cells.tif' --psf psf.tif "
                                "-o 'blurred cells deconvolved.tif'")
    _assert_reproduced(viewer, [layer.name])


def test_deconvolution_with_a_model_psf_records_the_model_in_its_call(qtbot,
                                                                      make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_image")
    widget = dock(viewer, "Deconvolve")
    widget.psf_source.value = "model"
    widget.method.value = "richardson_lucy"
    widget.iterations.value = 7
    widget.accelerate.value = False
    run_to_end(qtbot, widget)
    layer = viewer.layers["blurred cells deconvolved"]
    entry = layer.metadata[REPRODUCE_KEY]
    assert entry["inputs"] == {"image": "blurred cells"} and "command" not in entry
    assert entry["python"].startswith(
        "psfkit.deconvolve(image, psfkit.make_psf('gaussian', (17, 17), sigma=2.0), "
        "method='richardson_lucy', iterations=7, regularization=0.0, acceleration=None, ")
    _assert_reproduced(viewer, [layer.name])
