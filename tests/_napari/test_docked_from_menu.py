"""The widgets docked as the Plugins menu docks them (napari's layer proxies): outputs kept
and updated in place, both Cancel buttons, featureless images refused, wrapping lines."""

import numpy as np
import pytest
from _widget_helpers import activity_cancel_button, dock, run_to_end
from magicgui.widgets import ComboBox, Container

import psfkit
import psfkit.metrics
from psfkit import make_psf
from psfkit._napari._common import DOCS_URL, LayerPicker
from psfkit.samples import blurred_pair


@pytest.fixture
def pair_viewer(make_napari_viewer):
    """A viewer with a sharp and a blurred layer (scaled and translated) and the
    "Estimate kernel" widget docked from the menu."""
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", (11, 11), sigma=1.5), (96, 96), noise=0.005,
                        rng=3)
    viewer.add_image(pair.sharp, name="sharp", scale=(0.2, 0.2), translate=(10.0, -4.0))
    viewer.add_image(pair.blurred, name="blurred", scale=(0.2, 0.2), translate=(10.0, -4.0))
    return viewer, dock(viewer, "Estimate kernel"), pair


def _restyle(layer, colormap):
    layer.colormap = colormap
    layer.contrast_limits = (-0.25, 0.5)
    layer.gamma = 0.6
    layer.opacity = 0.4
    layer.visible = True


def _assert_restyled(layer, colormap):
    assert layer.colormap.name == colormap
    np.testing.assert_allclose(layer.contrast_limits, (-0.25, 0.5))
    assert layer.gamma == pytest.approx(0.6) and layer.opacity == pytest.approx(0.4)
    assert layer.visible


def test_rerun_updates_restyled_outputs_in_place(qtbot, pair_viewer):
    viewer, widget, _ = pair_viewer
    widget.size.value = 11
    run_to_end(qtbot, widget)
    for name, colormap in (("blurred kernel", "viridis"), ("blurred residual", "gray")):
        _restyle(viewer.layers[name], colormap)
    viewer.layers.move(viewer.layers.index("blurred kernel"), 0)
    order = [layer.name for layer in viewer.layers]
    widget.size.value = 7
    run_to_end(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == order
    assert viewer.layers["blurred kernel"].data.shape == (7, 7)
    assert viewer.layers["blurred kernel"].metadata["shape"] == [7, 7]
    _assert_restyled(viewer.layers["blurred kernel"], "viridis")
    _assert_restyled(viewer.layers["blurred residual"], "gray")


def test_model_psf_changes_dimensionality_in_place(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    run_to_end(qtbot, widget)
    _restyle(viewer.layers["gaussian PSF"], "viridis")
    widget.model.value = "gaussian (3D)"
    widget.depth.value = 9
    run_to_end(qtbot, widget)
    layer = viewer.layers["gaussian PSF"]
    assert layer.data.shape == (9, 25, 25) and layer.ndim == 3
    np.testing.assert_allclose(layer.scale, (1.0, 1.0, 1.0))
    widget.model.value = "gaussian"
    run_to_end(qtbot, widget)
    assert len(viewer.layers) == 1 and viewer.layers["gaussian PSF"].data.shape == (25, 25)
    _assert_restyled(viewer.layers["gaussian PSF"], "viridis")


def test_a_users_layer_of_the_same_name_is_never_replaced(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    mine = viewer.add_image(np.eye(5, dtype=np.float32), name="gaussian PSF")
    widget = dock(viewer, "Model PSF")
    for size in (25, 21):  # the second run updates the first run's output
        widget.size.value = size
        run_to_end(qtbot, widget)
    assert len(viewer.layers) == 2 and viewer.layers[0] is mine
    np.testing.assert_array_equal(mine.data, np.eye(5))
    assert viewer.layers[1].data.shape == (21, 21)


def test_pickers_list_each_layer_and_one_empty_entry(pair_viewer):
    viewer, widget, _ = pair_viewer
    viewer.add_shapes([np.array([[0, 0], [0, 10], [10, 10], [10, 0]])], name="roi")
    assert [layer.name for layer in widget.sharp.choices] == ["sharp", "blurred"]
    roi_choices = widget.roi.choices
    assert roi_choices[0] is None and [c.name for c in roi_choices[1:]] == ["roi"]
    assert widget.roi.native.count() == 2  # "(none)" and "roi", no second empty entry


@pytest.mark.parametrize("button", ["activity dock", "widget"])
def test_either_cancel_button_stops_the_job(qtbot, make_napari_viewer, button):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", (13, 13), sigma=1.8), (96, 90), noise=0.01)
    viewer.add_image(pair.blurred, name="cells")
    widget = dock(viewer, "Deconvolve")
    widget.method.value = "richardson_lucy"
    widget.iterations.value = 100_000
    worker = widget.run()
    assert worker is not None, widget.last_error
    cancel = (activity_cancel_button(viewer) if button == "activity dock"
              else widget.cancel_button.native)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        cancel.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert [layer.name for layer in viewer.layers] == ["cells"]
    assert "Cancelled" in widget.status.value


@pytest.mark.parametrize("value,reason", [(0.0, "all zero"), (3.0, "constant")])
@pytest.mark.parametrize("widget_name", ["Deconvolve", "Estimate kernel", "Prepare PSF"])
def test_a_featureless_image_is_refused_and_adds_no_layer(make_napari_viewer, value, reason,
                                                          widget_name):
    viewer = make_napari_viewer()
    viewer.add_image(np.full((64, 64), value, np.float32), name="blank")
    viewer.add_image(np.eye(64, dtype=np.float32), name="sharp")
    widget = dock(viewer, widget_name)
    if widget_name == "Estimate kernel":
        widget.blurred.value = viewer.layers["blank"]
    else:
        widget.image.value = viewer.layers["blank"]
    assert widget.run() is None
    assert reason in widget.last_error and "'blank'" in widget.last_error
    assert [layer.name for layer in viewer.layers] == ["blank", "sharp"]


def test_long_status_lines_wrap_instead_of_widening_the_dock(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Deconvolve")
    width = widget.native.sizeHint().width()
    widget.fail("a very long message " * 40)
    assert widget.status.native.wordWrap()
    assert widget.native.sizeHint().width() <= width + 1


def test_estimate_outputs_sit_where_their_data_came_from(qtbot, pair_viewer):
    viewer, widget, _ = pair_viewer
    run_to_end(qtbot, widget)
    for name in ("blurred kernel", "blurred residual", "blurred reblurred"):
        np.testing.assert_allclose(viewer.layers[name].translate, (10.0, -4.0))
        np.testing.assert_allclose(viewer.layers[name].scale, (0.2, 0.2))
    # pixel rows 10.5..79.5 and columns 12.5..83.5 of the translated layer, in world units
    viewer.add_shapes([np.array([[12.1, -1.5], [12.1, 12.7], [25.9, 12.7], [25.9, -1.5]])],
                      shape_type="rectangle", name="roi")
    widget.roi.value = viewer.layers["roi"]
    run_to_end(qtbot, widget)
    assert viewer.layers["blurred kernel"].metadata["region"] == [[10, 81], [12, 85]]
    for name in ("blurred kernel", "blurred residual", "blurred reblurred"):
        np.testing.assert_allclose(viewer.layers[name].translate, (12.0, -1.6))
    residual = viewer.layers["blurred residual"]
    corner = residual.world_to_data(viewer.layers["blurred"].data_to_world((10, 12)))
    np.testing.assert_allclose(corner, (0.0, 0.0), atol=1e-9)


def test_the_kernel_shows_on_top_of_hidden_diagnostics(qtbot, pair_viewer):
    viewer, widget, _ = pair_viewer
    run_to_end(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert names[-3:] == ["blurred residual", "blurred reblurred", "blurred kernel"]
    assert viewer.layers["blurred kernel"].visible
    assert not viewer.layers["blurred residual"].visible
    assert not viewer.layers["blurred reblurred"].visible
    assert viewer.layers.selection.active.name == "blurred kernel"


def test_estimate_and_fit_residuals_share_one_diverging_colormap_centred_at_zero(
        qtbot, pair_viewer):
    viewer, estimate, _ = pair_viewer
    run_to_end(qtbot, estimate)
    fit = dock(viewer, "Fit PSF model")
    assert (fit.sharp.value.name, fit.blurred.value.name) == ("sharp", "blurred")
    run_to_end(qtbot, fit)
    assert [layer.name for layer in viewer.layers][-1] == "blurred fitted kernel"
    for name in ("blurred residual", "blurred fit residual"):
        layer = viewer.layers[name]
        low, high = layer.contrast_limits
        assert layer.colormap.name == "PiYG" and low == -high and high > 0
        assert high == pytest.approx(float(np.abs(layer.data).max()))


def test_estimate_and_fit_default_to_two_different_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    estimate = dock(viewer, "Estimate kernel")
    fit = dock(viewer, "Fit PSF model")
    viewer.open_sample("napari-psfkit", "blurred_pair")
    for widget in (estimate, fit):
        assert (widget.sharp.value.name, widget.blurred.value.name) == ("sharp", "blurred")


def test_deconvolve_defaults_to_the_samples_psf_layer_and_says_so(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Deconvolve")
    assert widget.psf_source.value == "model" and widget.model.enabled
    viewer.open_sample("napari-psfkit", "blurred_image")
    assert widget.psf_source.value == "layer"
    assert (widget.image.value.name, widget.psf.value.name) == ("blurred cells", "psf")
    assert not widget.model.enabled and not widget.model_size.enabled
    assert widget.psf.enabled
    viewer.layers["psf"].name = "measured"
    assert widget.psf.value.name == "measured"
    widget.method.value = "wiener"
    widget.regularization.value = "0.01"
    run_to_end(qtbot, widget)
    layer = viewer.layers["blurred cells deconvolved"]
    expected = psfkit.deconvolve(viewer.layers["blurred cells"].data,
                                 viewer.layers["measured"].data, "wiener", regularization=0.01)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5, atol=1e-6)
    assert layer.metadata["psf_layer"] == "measured"
    assert "PSF layer 'measured'" in widget.status.value


def test_deconvolve_with_the_model_greys_out_the_psf_layer_and_says_so(qtbot,
                                                                     make_napari_viewer):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", (13, 13), sigma=2.0), (64, 64), noise=0.01)
    viewer.add_image(pair.blurred, name="cells")
    widget = dock(viewer, "Deconvolve")
    assert widget.psf_source.value == "model" and not widget.psf.enabled
    widget.method.value = "wiener"
    widget.regularization.value = "0.01"
    run_to_end(qtbot, widget)
    assert "model PSF gaussian 2 px" in widget.status.value
    assert viewer.layers["cells deconvolved"].metadata["psf_model"] == "gaussian"


def test_a_volume_with_a_2d_model_psf_is_refused_unless_planes_are_frames(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_volume")
    widget = dock(viewer, "Deconvolve")
    widget.psf_source.value = "model"
    assert widget.run() is None
    assert "model PSF is 2D" in widget.last_error and "axial σ" in widget.last_error
    assert len(viewer.layers) == 2
    widget.axial_size.value = 2.0
    assert widget.prepare() is not None


@pytest.mark.parametrize(("model", "theory"), [("widefield", "vectorial"),
                                               ("confocal", "scalar")])
def test_a_microscope_psf_is_rendered_in_physical_units_on_a_layers_voxels(
        qtbot, make_napari_viewer, model, theory):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((16, 48, 48), np.float32),
                     name="cells", scale=(250.0, 80.0, 80.0), units="nm")
    widget = dock(viewer, "Model PSF")
    assert widget.theory.native.isHidden()  # a light model only for the microscope PSFs
    widget.model.value = model
    assert not widget.depth.native.isHidden()
    assert not widget.theory.native.isHidden()
    assert widget.theory.value == "vectorial"  # the default
    widget.theory.value = theory
    assert not widget.parameters["sample_index"].native.isHidden()
    widget.grid.value = viewer.layers["cells"]
    assert not widget.parameters["z_step"].enabled
    widget.size.value, widget.depth.value = 21, 11
    widget.parameters["sample_index"].value = 1.33
    widget.parameters["source_depth"].value = 5.0
    run_to_end(qtbot, widget)
    layer = viewer.layers[f"{model} PSF"]
    np.testing.assert_allclose(layer.scale, (250.0, 80.0, 80.0))  # the layer's own units
    optics = {"numerical_aperture": 1.4, "wavelength": 0.52, "immersion_index": 1.515,
              "sample_index": 1.33, "depth": 5.0, "theory": theory}
    if model == "confocal":
        optics["excitation_wavelength"] = 0.488
    expected = make_psf(model, (11, 21, 21), spacing=(0.25, 0.08, 0.08), **optics)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-6, atol=1e-9)
    assert layer.metadata["params"]["spacing"] == pytest.approx([0.25, 0.08, 0.08])
    assert f"({theory}), voxels 0.25 × 0.08 × 0.08 µm" in widget.status.value
    assert layer.metadata["params"]["theory"] == theory
    deconvolve = dock(viewer, "Deconvolve")
    deconvolve.psf.value = layer
    assert deconvolve.prepare() is not None  # the PSF is on the image's grid


def test_a_microscope_psf_from_typed_voxels_or_a_unitless_layer_says_what_it_assumed(
        qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    widget.model.value = "widefield"
    widget.size.value, widget.depth.value = 15, 9
    run_to_end(qtbot, widget)
    layer = viewer.layers["widefield PSF"]
    np.testing.assert_allclose(layer.scale, (0.2, 0.065, 0.065))
    expected = make_psf("widefield", (9, 15, 15), spacing=(0.2, 0.065, 0.065),
                        numerical_aperture=1.4, wavelength=0.52, depth=0.0,
                        immersion_index=1.515, sample_index=1.515)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-6, atol=1e-9)
    viewer.add_image(np.ones((4, 32, 32), np.float32), name="stack", scale=(0.3, 0.1, 0.1))
    widget.grid.value = viewer.layers["stack"]
    run_to_end(qtbot, widget)
    assert "the scale of 'stack' is taken to be in µm" in widget.status.value
    np.testing.assert_allclose(viewer.layers["widefield PSF"].scale, (0.3, 0.1, 0.1))
    viewer.layers["stack"].units = ("s", "um", "um")
    assert widget.run() is None
    assert "axes are lengths" in widget.last_error


def test_a_2d_psf_layer_on_a_volume_is_refused_unless_planes_are_frames(
        qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    psf = make_psf("gaussian", (9, 9), sigma=1.2)
    volume = np.stack([blurred_pair(psf, (40, 40), noise=0.01, rng=k).blurred
                       for k in range(3)])
    viewer.add_image(volume, name="stack")
    viewer.add_image(psf, name="plane psf")
    widget = dock(viewer, "Deconvolve")
    assert (widget.psf_source.value, widget.psf.value.name) == ("layer", "plane psf")
    assert widget.run() is None
    assert ("'stack' is 3D but the PSF layer 'plane psf' is 2D: choose a 3D PSF, or tick "
            "'leading axes are frames'") in widget.last_error
    assert len(viewer.layers) == 2
    widget.frames.value = True
    widget.method.value = "wiener"
    widget.regularization.value = "0.01"
    run_to_end(qtbot, widget)
    expected = psfkit.deconvolve(volume[1], psf, "wiener", regularization=0.01)
    np.testing.assert_allclose(viewer.layers["stack deconvolved"].data[1], expected,
                               rtol=1e-5, atol=1e-6)
    assert ("each of the 3 frames along the leading axes deconvolved on its own with the "
            "2D PSF") in widget.status.value


def test_a_psf_at_a_finer_z_step_is_resampled_to_the_images_voxels(qtbot,
                                                                   make_napari_viewer):
    viewer = make_napari_viewer()
    # resampling treats values as the light each voxel collects: pixel-integrated models
    coarse = make_psf("gaussian", (9, 13, 13), sigma=(1.2, 1.5, 1.5),
                      pixel_integrated=True)  # z step 0.3
    fine = make_psf("gaussian", (27, 13, 13), sigma=(3.6, 1.5, 1.5),
                    pixel_integrated=True)  # z step 0.1
    volume = blurred_pair(coarse, (24, 40, 40), noise=0.01,
                          shift=(0, 0, 0), scene_kind="blobs", rng=5).blurred
    viewer.add_image(volume, name="cells", scale=(0.3, 0.1, 0.1), units="um")
    viewer.add_image(fine, name="bead psf", scale=(0.1, 0.1, 0.1), units="um")
    widget = dock(viewer, "Deconvolve")
    assert widget.resample.value and widget.psf.value.name == "bead psf"
    widget.method.value = "wiener"
    widget.regularization.value = "0.01"
    run_to_end(qtbot, widget)
    resampled = psfkit.resample_psf(fine, (0.1, 0.1, 0.1), (0.3, 0.1, 0.1))
    assert resampled.shape == (9, 13, 13) and psfkit.metrics.kernel_error(
        resampled, coarse) < 0.02
    layer = viewer.layers["cells deconvolved"]
    expected = psfkit.deconvolve(volume, resampled, "wiener", regularization=0.01)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5, atol=1e-6)
    assert ("PSF layer 'bead psf' resampled from 0.1 × 0.1 × 0.1 µm to 0.3 × 0.1 × 0.1 µm "
            "voxels (27 × 13 × 13 → 9 × 13 × 13)") in widget.status.value
    assert layer.metadata["psf_resampled"]["to_shape"] == [9, 13, 13]
    entry = layer.metadata["reproduce"]  # the recorded call resamples the PSF layer too
    assert "command" not in entry
    np.testing.assert_array_equal(
        eval(entry["python"], {"psfkit": psfkit, "image": volume, "psf": fine}), layer.data)
    widget.resample.value = False
    assert widget.run() is None
    assert "differs from the image's [0.3, 0.1, 0.1]: tick 'resample" in widget.last_error


def test_model_psf_labels_give_the_right_units(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    labels = {name: field.label for name, field in widget.parameters.items()}
    assert labels["numerical_aperture"] == "numerical aperture"
    assert labels["beta"] == "beta (exponent)"
    assert labels["alpha"] == "alpha (px)" and labels["wavelength"] == "wavelength (µm)"


WIDGET_PAGES = {"Estimate kernel": "estimate.md", "Fit PSF model": "fit.md",
                "Model PSF": "psf.md", "Prepare PSF": "psf.md", "Average beads": "psf.md",
                "Deconvolve": "deconvolve.md"}


@pytest.mark.parametrize("display_name", list(WIDGET_PAGES))
def test_every_widget_explains_itself(make_napari_viewer, display_name):
    viewer = make_napari_viewer()
    widget = dock(viewer, display_name)
    assert widget.summary and widget.summary in widget.help.value
    assert f'href="{DOCS_URL}{WIDGET_PAGES[display_name]}"' in widget.help.value
    inputs = [child for child in widget
              if child not in (widget.help, widget.status) and not isinstance(child, Container)]
    untipped = [child.label for child in inputs if not child.tooltip]
    assert inputs and untipped == []
    for child in inputs:
        if isinstance(child, ComboBox) and not isinstance(child, LayerPicker):
            labels = [child.native.itemText(i) for i in range(child.native.count())]
            assert not [text for text in labels if "_" in text.replace("(rl_mix)", "")]


def test_deconvolve_methods_have_readable_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Deconvolve")
    labels = [widget.method.native.itemText(i) for i in range(widget.method.native.count())]
    assert labels[0] == "Automatic"
    assert "Richardson–Lucy" in labels and "Total variation (FISTA)" in labels


def test_physical_inputs_keep_their_precision(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Model PSF")
    assert widget.parameters["pixel_size"].value == pytest.approx(0.065, abs=1e-12)
    widget.model.value = "widefield_airy"
    widget.parameters["wavelength"].value = 0.5125
    run_to_end(qtbot, widget)
    layer = viewer.layers["widefield_airy PSF"]
    np.testing.assert_allclose(layer.scale, (0.065, 0.065))
    assert layer.metadata["params"]["wavelength"] == pytest.approx(0.5125)


@pytest.mark.parametrize("units,shown", [(None, "units of scale"), ("um", "µm")])
def test_fit_widths_are_given_in_the_layers_units_too(qtbot, make_napari_viewer, units,
                                                      shown):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", 17, sigma=2.0), (96, 96), noise=0.01, rng=2)
    placement = {"scale": (0.5, 0.5), "units": (units,) * 2 if units else None}
    viewer.add_image(pair.sharp, name="sharp", **placement)
    viewer.add_image(pair.blurred, name="blurred", **placement)
    widget = dock(viewer, "Fit PSF model")
    run_to_end(qtbot, widget)
    fwhm = float(widget.fit.fwhm)
    assert fwhm == pytest.approx(2.3548 * 2.0, rel=0.02)
    assert f"FWHM = {fwhm:.2f} px ({0.5 * fwhm:.3g} {shown})" in widget.results.value


@pytest.mark.parametrize("display_name,outputs", [
    ("Estimate kernel", ["blurred kernel", "blurred residual", "blurred reblurred"]),
    ("Fit PSF model", ["blurred fitted kernel", "blurred fit residual"]),
    ("Deconvolve", ["blurred deconvolved"]),
    ("Model PSF", ["gaussian PSF"])])
def test_outputs_carry_their_inputs_units(qtbot, make_napari_viewer, display_name, outputs):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", (11, 11), sigma=1.5), (64, 64), noise=0.01)
    for name in ("sharp", "blurred"):
        viewer.add_image(getattr(pair, name), name=name, scale=(0.1, 0.1), units="um")
    widget = dock(viewer, display_name)
    if display_name == "Deconvolve":
        widget.image.value = viewer.layers["blurred"]
    if display_name == "Model PSF":
        widget.grid.value = viewer.layers["blurred"]
    run_to_end(qtbot, widget)
    for name in outputs:
        assert [str(unit) for unit in viewer.layers[name].units] == ["micrometer"] * 2


def test_prepare_and_average_report_widths_in_the_layers_units(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "led_photo")
    viewer.open_sample("napari-psfkit", "beads")
    for layer in viewer.layers:
        layer.scale, layer.units = (0.1, 0.1), ("nm", "nm")
    prepare = dock(viewer, "Prepare PSF")
    prepare.image.value = viewer.layers["LED"]
    run_to_end(qtbot, prepare)
    widths = viewer.layers["LED PSF"].metadata["fwhm"]
    assert f"({0.1 * widths[0]:.3g} × {0.1 * widths[1]:.3g} nm)" in prepare.status.value
    average = dock(viewer, "Average beads")
    average.image.value = viewer.layers["beads"]
    run_to_end(qtbot, average)
    widths = viewer.layers["beads averaged PSF"].metadata["fwhm"]
    assert f"({0.1 * widths[0]:.3g} × {0.1 * widths[1]:.3g} nm)" in average.status.value
    for name in ("LED PSF", "beads averaged PSF", "beads detected"):
        assert [str(unit) for unit in viewer.layers[name].units] == ["nanometer"] * 2


def test_a_model_psf_takes_its_pixel_size_from_a_chosen_layer(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", (13, 13), sigma=2.0), (64, 64), noise=0.01)
    viewer.add_image(pair.blurred, name="cells", scale=(0.1, 0.1))
    widget = dock(viewer, "Model PSF")
    widget.grid.value = viewer.layers["cells"]
    run_to_end(qtbot, widget)
    np.testing.assert_allclose(viewer.layers["gaussian PSF"].scale, (0.1, 0.1))
    widget.model.value = "widefield_airy"
    assert not widget.parameters["pixel_size"].enabled
    run_to_end(qtbot, widget)
    layer = viewer.layers["widefield_airy PSF"]
    np.testing.assert_allclose(layer.scale, (0.1, 0.1))
    assert layer.metadata["params"]["pixel_size"] == pytest.approx(0.1)
    deconvolve = dock(viewer, "Deconvolve")
    deconvolve.image.value = viewer.layers["cells"]
    deconvolve.psf.value = layer
    assert deconvolve.psf_source.value == "layer"
    assert deconvolve.prepare() is not None  # the pixel sizes agree
    widget.model.value = "gaussian (3D)"
    assert widget.run() is None
    assert "'cells' is 2D; a 3D PSF needs a 3D layer" in widget.last_error


def test_the_pixel_integrated_switch_fits_and_renders_the_integrated_model(
        qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    truth = make_psf("gaussian", 17, sigma=2.0, pixel_integrated=True)
    pair = blurred_pair(truth, (96, 96), noise=0.005, rng=3)
    viewer.add_image(pair.sharp, name="sharp")
    viewer.add_image(pair.blurred, name="blurred")
    fit = dock(viewer, "Fit PSF model")
    fit.integrated.value = True
    run_to_end(qtbot, fit)
    assert fit.fit.pixel_integrated and fit.fit.params["sigma"] == pytest.approx(2.0, rel=0.005)
    call = viewer.layers["blurred fitted kernel"].metadata["reproduce"]["python"]
    assert "pixel_integrated=True" in call
    np.testing.assert_array_equal(
        eval(call, {"psfkit": psfkit, "sharp": pair.sharp, "blurred": pair.blurred}),
        viewer.layers["blurred fitted kernel"].data)
    model = dock(viewer, "Model PSF")
    model.parameters["sigma"].value = 2.0
    model.size.value = 17
    model.integrated.value = True
    run_to_end(qtbot, model)
    np.testing.assert_array_equal(viewer.layers["gaussian PSF"].data, truth)
    model.model.value = "airy"  # always integrated: the switch is hidden
    assert not model.integrated.visible
