"""The "Prepare PSF" and "Average beads" widgets in a real viewer."""

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end

from psfkit import make_psf
from psfkit._napari._psf_widget import AverageBeadsWidget, PreparePsfWidget
from psfkit.samples import bead_image, point_source_frame, sample_point_source, soft_disk


@pytest.fixture
def led_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    led = sample_point_source()
    viewer.add_image(led["image"], name="LED")
    widget = dock(viewer, "Prepare PSF")
    assert isinstance(widget, PreparePsfWidget)
    return viewer, widget, led


def test_prepare_psf_adds_a_psf_layer_with_fwhm_and_snr(qtbot, led_viewer):
    viewer, widget, led = led_viewer
    run_to_end(qtbot, widget)
    layer = viewer.layers["LED PSF"]
    assert layer.data.sum() == pytest.approx(1.0, abs=1e-5)
    assert all(n % 2 == 1 for n in layer.data.shape)
    metadata = layer.metadata
    np.testing.assert_allclose(metadata["centre"], led["truth"]["centre"], atol=0.1)
    np.testing.assert_allclose(metadata["fwhm"], 9.0, atol=1.0)  # disk of radius 4.5
    assert metadata["snr"] > 10 and metadata["beads_used"] == 1
    assert metadata["hot_pixels"] == 3
    assert "FWHM" in widget.status.value


def test_a_point_picks_the_source_and_a_shape_crops_the_region(qtbot, led_viewer):
    viewer, widget, led = led_viewer
    image = viewer.layers["LED"].data.copy()
    image[5:20, 5:20] += 3000 * make_psf("gaussian", (15, 15), sigma=1.5) / 0.07
    viewer.layers["LED"].data = image
    viewer.add_points([[30, 34]], name="pick")
    widget.region.reset_choices()
    widget.region.value = viewer.layers["pick"]
    run_to_end(qtbot, widget)
    np.testing.assert_allclose(viewer.layers["LED PSF"].metadata["centre"],
                               led["truth"]["centre"], atol=0.1)
    viewer.add_shapes([np.array([[20, 24], [20, 44], [40, 44], [40, 24]])],
                      shape_type="rectangle", name="box")
    widget.region.reset_choices()
    widget.region.value = viewer.layers["box"]
    run_to_end(qtbot, widget)
    assert [layer.name for layer in viewer.layers].count("LED PSF") == 1
    np.testing.assert_allclose(viewer.layers["LED PSF"].metadata["centre"],
                               led["truth"]["centre"], atol=0.1)


def test_even_size_and_nan_image_give_an_error_and_change_no_layer(led_viewer):
    viewer, widget, _ = led_viewer
    widget.size.value = 20
    assert widget.run() is None
    assert "odd" in widget.last_error
    viewer.add_image(np.full((16, 16), np.nan, dtype=np.float32), name="broken")
    widget.image.value = viewer.layers["broken"]
    widget.size.value = 0
    assert widget.run() is None
    assert "NaN" in widget.last_error
    assert [layer.name for layer in viewer.layers] == ["LED", "broken"]


def test_a_frame_without_a_source_reports_the_failure(qtbot, led_viewer):
    viewer, widget, _ = led_viewer
    viewer.add_image(np.random.default_rng(0).normal(100, 5, (48, 48)).astype(np.float32),
                     name="dark")
    widget.image.value = viewer.layers["dark"]
    run_to_end(qtbot, widget, expect_error=True)
    assert "no point source" in widget.last_error
    assert [layer.name for layer in viewer.layers] == ["LED", "dark"]


def test_average_beads_shows_psf_and_coloured_bead_points(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    truth = make_psf("gaussian", (19, 13, 13), sigma=(2.0, 1.4, 1.4))
    image, centres = bead_image(truth, (40, 100, 100), count=6, peak_snr=25,
                                min_distance=26, rng=3)
    image[20, 50:58, 2:6] += 2000.0  # a bright blob cut by the edge: rejected, not fatal
    viewer.add_image(image, name="beads", scale=(0.3, 0.1, 0.1))
    widget = dock(viewer, "Average beads")
    assert isinstance(widget, AverageBeadsWidget)
    run_to_end(qtbot, widget)
    psf_layer = viewer.layers["beads averaged PSF"]
    assert psf_layer.data.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(psf_layer.scale, (0.3, 0.1, 0.1))
    assert psf_layer.metadata["beads_used"] == len(centres)
    np.testing.assert_allclose(psf_layer.metadata["fwhm"], 2.3548 * np.array([2.0, 1.4, 1.4]),
                               rtol=0.08)
    points = viewer.layers["beads detected"]
    features = points.features
    assert features["accepted"].sum() == len(centres)
    assert "edge" in set(features["reason"])
    np.testing.assert_allclose(points.face_color[~features["accepted"].to_numpy()][:, 0], 1.0)
    used = points.data[features["accepted"].to_numpy()]
    nearest = [np.min(np.linalg.norm(centres - p, axis=1)) for p in used]
    assert max(nearest) < 0.15


def test_a_crop_the_source_fills_says_so_in_the_status(qtbot, make_napari_viewer):
    # a defocus disk of radius 6 (8.5 px with its blur) in a 15 px crop: only the corners
    # are background, which the median start took from the disk
    viewer = make_napari_viewer()
    whole = point_source_frame(soft_disk(6.0), (40.3, 39.8), (81, 81), hot_pixels=(), rng=0)
    viewer.add_image(whole[33:48, 33:48], name="tight LED")
    widget = dock(viewer, "Prepare PSF")
    widget.image.value = viewer.layers["tight LED"]
    run_to_end(qtbot, widget)
    assert "fills the frame" in widget.status.value
    metadata = viewer.layers["tight LED PSF"].metadata
    assert any("pure background" in message for message in metadata["warnings"])
    assert metadata["background"] == pytest.approx(120.0, abs=0.5 * metadata["noise_sigma"])


def test_a_known_background_level_is_used_for_a_source_that_fills_its_crop(
        qtbot, make_napari_viewer):
    # the tight crop above, with the true level (120) given: no warning, the level kept
    viewer = make_napari_viewer()
    whole = point_source_frame(soft_disk(6.0), (40.3, 39.8), (81, 81), hot_pixels=(), rng=0)
    viewer.add_image(whole[33:48, 33:48], name="tight LED")
    widget = dock(viewer, "Prepare PSF")
    widget.image.value = viewer.layers["tight LED"]
    assert not widget.level.enabled
    widget.background.value = "known level"
    assert widget.level.enabled
    widget.level.value = 120.0
    run_to_end(qtbot, widget)
    metadata = viewer.layers["tight LED PSF"].metadata
    assert metadata["background"] == pytest.approx(120.0, abs=1e-3)
    assert not metadata["background_uncertain"] and "fills the frame" not in widget.status.value
    assert "background=120.0" in metadata["reproduce"]["python"]
