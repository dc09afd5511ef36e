"""Sample data opens in a real viewer with the truth in each layer's metadata."""

import numpy as np
import pytest


@pytest.mark.parametrize(
    "key,names",
    [("blurred_pair", {"sharp", "blurred", "true kernel"}),
     ("beads", {"beads"}),
     ("led_photo", {"LED"}),
     ("blurred_image", {"blurred cells", "psf"}),
     ("blurred_volume", {"blurred volume", "volume psf"})],
)
def test_sample_opens_with_named_layers(make_napari_viewer, key, names):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", key)
    assert {layer.name for layer in viewer.layers} == names
    for layer in viewer.layers:
        assert layer.data.dtype == np.float32
        assert np.all(np.isfinite(layer.data))


def test_pair_metadata_holds_the_true_kernel(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_pair")
    truth = viewer.layers["blurred"].metadata["truth"]
    assert truth["sigma"] == 2.0
    assert truth["kernel"].sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(viewer.layers["true kernel"].data, truth["kernel"])


def test_volume_sample_is_3d_with_anisotropic_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "blurred_volume")
    layer = viewer.layers["blurred volume"]
    assert layer.data.ndim == 3
    np.testing.assert_allclose(layer.scale, (0.3, 0.1, 0.1))


def test_led_photo_is_its_own_sample_and_visible(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "led_photo")
    layer = viewer.layers["LED"]
    assert layer.visible and layer.data.shape == (64, 64)
    assert layer.metadata["truth"]["radius"] == 4.5
