"""Blur maps in a real viewer: the map mode of Fit PSF model, Estimate kernel and Average
beads (kernel mosaic and parameter maps over the image, colorbars, styling kept on a
re-run), and Deconvolve with a map layer (better than one average PSF on a field whose
blur changes; ``auto`` with a map runs ``rl_mix`` and says why; a map of another image
becomes a notification), and Cancel stopping a map run in the core."""

import importlib

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end

import psfkit
from psfkit import make_psf, samples
from psfkit._napari._common import PSF_MAP_KEY
from psfkit._napari._maps import map_summary
from psfkit.metadata import REPRODUCE_KEY
from psfkit.metrics import image_error
from psfkit.point_source import fwhm

SCALE = (0.5, 0.5)
TRANSLATE = (3.0, -2.0)


@pytest.fixture(scope="module")
def field():
    """A 192² pair blurred per pixel by a Gaussian whose σ grows from 1 px (top left) to
    3 px (bottom right)."""
    return samples.field_blurred_pair((192, 192), (1.0, 3.0), noise=0.01, rng=0)


@pytest.fixture
def fitted(qtbot, make_napari_viewer, field):
    """A viewer with the field, after Fit PSF model in map mode on a 4 × 4 grid."""
    viewer = make_napari_viewer()
    viewer.add_image(field.sharp, name="sharp", scale=SCALE, translate=TRANSLATE)
    viewer.add_image(field.blurred, name="blurred", scale=SCALE, translate=TRANSLATE)
    widget = dock(viewer, "Fit PSF model")
    widget.grid.rows.value, widget.grid.cols.value = 4, 4
    run_to_end(qtbot, widget)
    return viewer, widget


def test_the_sigma_map_is_within_ten_percent_of_the_truth_at_the_tile_centres(fitted,
                                                                              field):
    viewer, widget = fitted
    sigma_layer = viewer.layers["blurred sigma map"]
    psf_map = sigma_layer.metadata[PSF_MAP_KEY]
    assert psf_map.grid == (4, 4)
    for centre in psf_map.tile_centres():
        world = np.asarray(TRANSLATE) + np.asarray(SCALE) * centre
        sample = np.round(sigma_layer.world_to_data(world)).astype(int)
        # the sample's own pixel: sample i of the layer sits at pixel i * step
        pixel = sample * np.asarray(sigma_layer.scale) / np.asarray(SCALE)
        truth = field.sigma[tuple(np.round(pixel).astype(int))]
        assert sigma_layer.data[tuple(sample)] == pytest.approx(truth, rel=0.10)
    assert sigma_layer.colorbar.visible
    assert "sigma from 1." in widget.status.value and "(top left)" in widget.status.value
    assert "(bottom right)" in widget.status.value
    assert "All 16 tiles reliable" in widget.status.value


def test_the_mosaic_overlays_the_image_with_each_kernel_at_its_tile_centre(fitted):
    viewer, _ = fitted
    mosaic = viewer.layers["blurred fitted kernel map"]
    blurred = viewer.layers["blurred"]
    assert mosaic.data.shape == blurred.data.shape and mosaic.data.dtype == np.float32
    np.testing.assert_allclose(mosaic.scale, SCALE)
    np.testing.assert_allclose(mosaic.translate, TRANSLATE)
    assert mosaic.colorbar.visible
    psf_map = mosaic.metadata[PSF_MAP_KEY]
    assert mosaic.data.sum() == pytest.approx(16.0, rel=1e-4)  # 16 unit-sum kernels
    for centre, psf in zip(psf_map.tile_centres(), psf_map.tile_psfs(), strict=True):
        peak = np.floor(centre + 0.5).astype(int)
        assert mosaic.data[tuple(peak)] == pytest.approx(psf.max(), rel=0.05)


def test_map_outputs_are_reproduced_by_their_call(fitted):
    viewer, _ = fitted
    for name in ("blurred fitted kernel map", "blurred sigma map"):
        layer = viewer.layers[name]
        entry = layer.metadata[REPRODUCE_KEY]
        assert entry["python"].startswith(
            "psfkit.fit_kernel_map(sharp, blurred, 'gaussian', (4, 4), ")
        bound = {key: viewer.layers[source].data for key, source in entry["inputs"].items()}
        again = eval(entry["python"], {"psfkit": psfkit, **bound})
        np.testing.assert_array_equal(again, layer.data, err_msg=name)


def test_a_re_run_keeps_a_changed_colormap_and_updates_in_place(qtbot, fitted):
    viewer, widget = fitted
    viewer.layers["blurred sigma map"].colormap = "plasma"
    viewer.layers["blurred fitted kernel map"].colorbar.visible = False
    count = len(viewer.layers)
    run_to_end(qtbot, widget)
    assert len(viewer.layers) == count
    assert viewer.layers["blurred sigma map"].colormap.name == "plasma"
    assert not viewer.layers["blurred fitted kernel map"].colorbar.visible


def _deconvolution_error(viewer, name, field) -> float:
    inner = (slice(16, -16),) * 2
    return image_error(viewer.layers[name].data[inner], field.sharp[inner])


def test_deconvolving_with_the_map_layer_beats_the_average_psf(qtbot, fitted, field):
    viewer, _ = fitted
    psf_map = viewer.layers["blurred fitted kernel map"].metadata[PSF_MAP_KEY]
    average = np.mean(psf_map.tile_psfs(), axis=0)
    viewer.add_image(average, name="average psf", scale=SCALE)
    widget = dock(viewer, "Deconvolve")
    widget.image.value = viewer.layers["blurred"]
    widget.psf_source.value = "layer"
    widget.method.value = "richardson_lucy"
    widget.psf.value = viewer.layers["average psf"]
    run_to_end(qtbot, widget)
    with_average = _deconvolution_error(viewer, "blurred deconvolved", field)
    widget.psf.value = viewer.layers["blurred fitted kernel map"]
    run_to_end(qtbot, widget)
    with_map = _deconvolution_error(viewer, "blurred deconvolved", field)
    assert with_map < 0.95 * with_average
    assert "4 × 4 PSF map of layer 'blurred fitted kernel map'" in widget.status.value
    layer = viewer.layers["blurred deconvolved"]
    entry = layer.metadata[REPRODUCE_KEY]
    assert entry["python"].startswith("psfkit.deconvolve(image, psfkit.fit_kernel_map(")
    assert entry["inputs"] == {"image": "blurred", "sharp": "sharp", "blurred": "blurred"}
    bound = {key: viewer.layers[source].data for key, source in entry["inputs"].items()}
    np.testing.assert_array_equal(eval(entry["python"], {"psfkit": psfkit, **bound}),
                                  layer.data)


def test_automatic_with_a_map_makes_a_risk_choice_and_the_status_says_what_won(qtbot,
                                                                              fitted):
    viewer, _ = fitted
    widget = dock(viewer, "Deconvolve")
    widget.image.value = viewer.layers["blurred"]
    widget.psf_source.value = "layer"
    widget.psf.value = viewer.layers["blurred sigma map"]  # any map output carries the map
    widget.method.value = "auto"
    run_to_end(qtbot, widget)
    layer = viewer.layers["blurred deconvolved"]
    choice = layer.metadata["choice"]
    assert {method for method, _, _ in choice["candidates"]} == {"richardson_lucy", "rl_mix"}
    assert all(np.isfinite(risk) for _, _, risk in choice["candidates"])
    assert layer.metadata["method"] == choice["winner"][0]
    assert choice["summary"] in widget.status.value and "chosen among" in choice["summary"]


def test_a_stack_of_frames_is_deconvolved_frame_by_frame_with_the_map_as_the_core_does(
        qtbot, fitted, field):
    viewer, _ = fitted
    psf_map = viewer.layers["blurred fitted kernel map"].metadata[PSF_MAP_KEY]
    stack = np.stack([field.blurred, 0.5 * field.blurred + 0.1])
    viewer.add_image(stack, name="series", scale=(1.0, *SCALE))
    widget = dock(viewer, "Deconvolve")
    widget.image.value = viewer.layers["series"]
    widget.psf_source.value = "layer"
    widget.psf.value = viewer.layers["blurred fitted kernel map"]
    widget.method.value = "richardson_lucy"
    widget.iterations.value = 15
    assert widget.run() is None  # frames not declared: refused by name
    assert widget.last_error.startswith("The image layer 'series' is 3D but the PSF map of "
                                        "'blurred fitted kernel map' is 2D")
    widget.frames.value = True
    run_to_end(qtbot, widget)
    result = viewer.layers["series deconvolved"].data
    core = psfkit.frames.deconvolve_frames(stack, psf_map, method="richardson_lucy",
                                           iterations=15).result
    assert result.shape == stack.shape and result.dtype == np.float32
    np.testing.assert_array_equal(result, core)
    np.testing.assert_array_equal(result[0], psfkit.deconvolve(
        field.blurred, psf_map, method="richardson_lucy", iterations=15))
    assert "each of the 2 frames along the leading axes deconvolved on its own with the " \
           "2D PSF map" in widget.status.value
    entry = viewer.layers["series deconvolved"].metadata[REPRODUCE_KEY]
    assert entry["python"].startswith("psfkit.frames.deconvolve_frames(image, "
                                      "psfkit.fit_kernel_map(")
    bound = {key: viewer.layers[source].data for key, source in entry["inputs"].items()}
    np.testing.assert_array_equal(eval(entry["python"], {"psfkit": psfkit, **bound}), result)


def test_a_map_of_another_image_is_refused_by_name(qtbot, fitted):
    viewer, _ = fitted
    viewer.add_image(np.random.default_rng(0).random((100, 120), dtype=np.float32),
                     name="other")
    widget = dock(viewer, "Deconvolve")
    widget.image.value = viewer.layers["other"]
    widget.psf_source.value = "layer"
    widget.psf.value = viewer.layers["blurred fitted kernel map"]
    assert widget.run() is None
    assert widget.last_error.startswith(
        "The PSF layer 'blurred fitted kernel map' is a map of an image of shape (192, 192)")


def test_the_kernel_map_of_estimate_kernel_measures_the_growing_blur(qtbot,
                                                                     make_napari_viewer,
                                                                     field):
    viewer = make_napari_viewer()
    viewer.add_image(field.sharp, name="sharp")
    viewer.add_image(field.blurred, name="blurred")
    widget = dock(viewer, "Estimate kernel")
    widget.size.value = 17
    widget.grid.rows.value, widget.grid.cols.value = 2, 2
    run_to_end(qtbot, widget)
    mosaic = viewer.layers["blurred kernel map"]
    psf_map = mosaic.metadata[PSF_MAP_KEY]
    assert mosaic.data.shape == (192, 192) and psf_map.psf_shape == (17, 17)
    width = viewer.layers["blurred fwhm_x map"]
    assert width.colorbar.visible
    # the FWHM of a Gaussian is 2.355 σ; the tiles' own σ are those at their centres
    for centre, psf in zip(psf_map.tile_centres(), psf_map.tile_psfs(), strict=True):
        truth = 2.355 * field.sigma[tuple(np.round(centre).astype(int))]
        assert psfkit.radial_profile(psf).fwhm == pytest.approx(truth, rel=0.15)
    top_left, bottom_right = width.data[0, 0], width.data[-1, -1]
    assert bottom_right > 1.3 * top_left
    assert "Kernel map on a 2 × 2 grid" in widget.status.value


def test_estimate_kernel_map_refuses_a_region(qtbot, make_napari_viewer, field):
    viewer = make_napari_viewer()
    viewer.add_image(field.sharp, name="sharp")
    viewer.add_image(field.blurred, name="blurred")
    widget = dock(viewer, "Estimate kernel")
    widget.roi.value = viewer.add_shapes([np.array([[0, 0], [0, 90], [90, 90], [90, 0]])],
                                         name="roi")
    widget.grid.rows.value = 2
    assert widget.run() is None
    assert widget.last_error.startswith("A kernel map covers the whole image")


def test_average_beads_per_region_shows_the_regional_psfs_and_bead_counts(
        qtbot, make_napari_viewer):
    narrow = make_psf("gaussian", (15, 15), sigma=1.2)
    wide = make_psf("gaussian", (15, 15), sigma=2.2)
    left, _ = samples.bead_image(narrow, (128, 96), count=8, peak_snr=40, rng=0)
    right, _ = samples.bead_image(wide, (128, 96), count=8, peak_snr=40, rng=1)
    viewer = make_napari_viewer()
    viewer.add_image(np.concatenate([left, right], axis=1), name="field beads")
    widget = dock(viewer, "Average beads")
    widget.size.value = 15
    widget.grid.cols.value = 2
    run_to_end(qtbot, widget)
    mosaic = viewer.layers["field beads PSF map"]
    psf_map = mosaic.metadata[PSF_MAP_KEY]
    counts = psf_map.diagnostics["beads_used"]
    assert psf_map.grid == (1, 2) and np.all(counts > 0)
    assert mosaic.metadata["diagnostics"]["beads_used"] == counts.tolist()
    assert f"Beads per region (rows): {counts[0, 0]} {counts[0, 1]}." in widget.status.value
    fwhm = viewer.layers["field beads fwhm_x map"].data
    assert fwhm.shape[0] == 1  # one region along y: one sample
    # FWHM 2.8 px on the left (σ 1.2) and 5.2 px on the right (σ 2.2); the overlapping
    # regions share beads, as in tests/test_psf_map.py
    assert fwhm[0, 0] < 3.4 < fwhm[0, -1]


def test_the_status_sentence_names_the_unreliable_tiles_and_a_constant_parameter():
    narrow = make_psf("gaussian", (15, 15), sigma=(1.5, 1.0))
    wide = make_psf("gaussian", (15, 15), sigma=(1.5, 3.0))  # as wide along y
    psf_map = psfkit.PsfMap(
        psfs=np.stack([np.stack([narrow, wide]), np.stack([narrow, wide])]),
        centres=(np.array([25.0, 75.0]), np.array([20.0, 80.0])), shape=(100, 100),
        diagnostics={"reliable": np.array([[True, True], [False, True]]),
                     "filled": np.array([[False, False], [True, False]])})
    text = map_summary(psf_map, psf_map.parameter_maps(), "Kernel map")
    width = fwhm(narrow)[1]
    assert text.startswith(f"Kernel map on a 2 × 2 grid: fwhm_y {fwhm(narrow)[0]:.3g} px "
                           "everywhere; ")
    assert f"fwhm_x from {width:.3g} px (top left) to {fwhm(wide)[1]:.3g} px (top right)" in text
    assert text.endswith("1 of 4 tiles unreliable, filled from their neighbours: (2, 1) "
                         "(row, column).")


def _bead_field():
    """Beads narrower on the left than on the right, 128 × 192."""
    narrow = make_psf("gaussian", (15, 15), sigma=1.2)
    wide = make_psf("gaussian", (15, 15), sigma=2.2)
    left, _ = samples.bead_image(narrow, (128, 96), count=8, peak_snr=40, rng=0)
    right, _ = samples.bead_image(wide, (128, 96), count=8, peak_snr=40, rng=1)
    return np.concatenate([left, right], axis=1)


#: Per map widget: the widget module's core function, and the diagnostic that marks a tile
#: the core never reached (recorded like a failed one).
MAP_CORES = {
    "Estimate kernel": ("_estimate_widget", "estimate_kernel_map",
                        lambda m: np.isinf(m.diagnostics["residual_ratio"])),
    "Fit PSF model": ("_fit_widget", "fit_kernel_map",
                      lambda m: np.isinf(m.diagnostics["residual_ratio"])),
    "Average beads": ("_psf_widget", "average_beads",
                      lambda m: m.diagnostics["beads_used"] == 0),
}


@pytest.mark.parametrize("widget_name", list(MAP_CORES))
def test_cancel_stops_a_map_run_in_the_core_and_changes_no_layer(
        qtbot, make_napari_viewer, monkeypatch, field, widget_name):
    module_name, function_name, unreached = MAP_CORES[widget_name]
    module = importlib.import_module(f"psfkit._napari.{module_name}")
    core = getattr(module, function_name)
    returned = []
    monkeypatch.setattr(module, function_name,
                        lambda *args, **kwargs: returned.append(core(*args, **kwargs))
                        or returned[-1])
    viewer = make_napari_viewer()
    if widget_name == "Average beads":
        viewer.add_image(_bead_field(), name="beads")
    else:
        viewer.add_image(field.sharp, name="sharp")
        viewer.add_image(field.blurred, name="blurred")
    before = [layer.name for layer in viewer.layers]
    widget = dock(viewer, widget_name)
    widget.grid.rows.value, widget.grid.cols.value = 4, 4
    worker = widget.run()
    assert worker is not None, widget.last_error
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert "Cancelled" in widget.status.value and widget.last_error is None
    assert [layer.name for layer in viewer.layers] == before
    # the core itself stopped: it returned a map on which most tiles were never estimated
    assert len(returned) == 1 and unreached(returned[0]).sum() >= 8
    # and the widget runs again to the end
    widget.grid.rows.value, widget.grid.cols.value = 1, 2
    run_to_end(qtbot, widget)
    assert len(viewer.layers) > len(before)
