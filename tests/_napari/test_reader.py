"""Opening psfkit's TIFFs in napari: a PSF at its voxel size in µm and in magma, a
deconvolved output at its image's spacing with its sidecar's record, and plain TIFFs left
to napari's own reader."""

import numpy as np
import pytest
import tifffile
from _widget_helpers import dock, run_to_end

from psfkit import deconvolve, make_psf, save_psf, write_image
from psfkit._napari._reader import RECORD_KEY, get_reader
from psfkit.cli import EXIT_OK, main
from psfkit.io import read_sidecar
from psfkit.samples import blurred_pair

PLUGIN = "napari-psfkit"


def test_a_saved_psf_opens_at_its_voxel_size_in_micrometres(make_napari_viewer, tmp_path):
    psf = make_psf("gaussian", (9, 15, 15), sigma=(1.5, 2.0, 2.0))
    path = tmp_path / "bead psf.tif"
    save_psf(path, psf, spacing=(0.2, 0.065, 0.065), provenance={"made_by": "a test"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.name == "bead psf"
    np.testing.assert_allclose(layer.scale, (0.2, 0.065, 0.065))
    assert [str(unit) for unit in layer.units] == ["micrometer"] * 3
    np.testing.assert_array_equal(layer.data, psf)
    assert layer.colormap.name == "magma"
    assert layer.metadata[RECORD_KEY]["made_by"] == "a test"


def test_a_deconvolved_output_opens_at_its_images_spacing_with_its_record(
        make_napari_viewer, tmp_path):
    psf = make_psf("gaussian", (11, 11), sigma=1.5)
    pair = blurred_pair(psf, (64, 60), noise=0.01, rng=2)
    image_path, psf_path = tmp_path / "cells.tif", tmp_path / "psf.tif"
    output = tmp_path / "cells_deconvolved.tif"
    write_image(image_path, pair.blurred, spacing=(0.11, 0.11))
    save_psf(psf_path, psf, spacing=(0.11, 0.11))
    assert main(["deconvolve", str(image_path), "--psf", str(psf_path), "-o", str(output),
                 "--method", "richardson_lucy", "--iterations", "5", "-q"]) == EXIT_OK
    viewer = make_napari_viewer()
    [layer] = viewer.open(output, plugin=PLUGIN)
    assert layer.name == "cells_deconvolved"
    np.testing.assert_allclose(layer.scale, (0.11, 0.11))
    assert [str(unit) for unit in layer.units] == ["micrometer"] * 2
    record = layer.metadata[RECORD_KEY]
    assert record == read_sidecar(output)
    assert record["parameters"]["method"] == "richardson_lucy"
    assert record["parameters"]["iterations"] == 5
    np.testing.assert_allclose(record["spacing"], (0.11, 0.11))
    assert layer.colormap.name == "gray"  # an image, not a PSF
    np.testing.assert_array_equal(layer.data, tifffile.imread(output))


def test_opened_files_feed_the_deconvolve_widget_at_their_scale(qtbot, make_napari_viewer,
                                                               tmp_path):
    psf = make_psf("gaussian", (11, 11), sigma=1.5)
    pair = blurred_pair(psf, (64, 60), noise=0.01, rng=4)
    image_path, psf_path = tmp_path / "cells.tif", tmp_path / "psf.tif"
    write_image(image_path, pair.blurred, spacing=(0.11, 0.11))
    save_psf(psf_path, psf, spacing=(0.11, 0.11))
    viewer = make_napari_viewer()
    viewer.open(image_path, plugin=PLUGIN)
    viewer.open(psf_path, plugin=PLUGIN)
    widget = dock(viewer, "Deconvolve")
    widget.image.value = viewer.layers["cells"]
    widget.psf.value = viewer.layers["psf"]
    widget.method.value = "richardson_lucy"
    widget.iterations.value = 5
    run_to_end(qtbot, widget)
    result = viewer.layers["cells deconvolved"]
    np.testing.assert_allclose(result.scale, (0.11, 0.11))
    assert [str(unit) for unit in result.units] == ["micrometer"] * 2
    np.testing.assert_allclose(result.data, deconvolve(pair.blurred, psf, "richardson_lucy",
                                                       iterations=5), rtol=1e-5, atol=1e-6)


def test_a_sidecar_alone_is_enough_to_claim_a_file_without_a_voxel_size(tmp_path):
    path = tmp_path / "kernel.tif"
    kernel = make_psf("gaussian", (7, 7), sigma=1.0)
    save_psf(path, kernel, provenance={"psfkit_version": "0", "subcommand": "estimate"})
    [(data, keywords, kind)] = get_reader(str(path))(str(path))
    assert kind == "image" and keywords["scale"] == (1.0, 1.0)
    assert "units" not in keywords  # napari's default (pixels)
    assert keywords["colormap"] == "magma"
    assert keywords["metadata"][RECORD_KEY]["subcommand"] == "estimate"
    np.testing.assert_array_equal(data, kernel)


@pytest.mark.parametrize("sidecar", [None, "not json", '{"made_by": "another tool"}'])
def test_a_plain_tiff_is_left_to_napari(tmp_path, sidecar):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(20, dtype=np.float32).reshape(4, 5))
    if sidecar is not None:
        (tmp_path / "plain.tif.json").write_text(sidecar, encoding="utf-8")
    assert get_reader(str(path)) is None


@pytest.mark.parametrize("path", ["missing.tif", "broken.tif", "notes.txt"])
def test_a_file_that_is_not_a_readable_tiff_is_declined(tmp_path, path):
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    assert get_reader(str(tmp_path / path)) is None


def test_a_plain_tiff_forced_onto_this_reader_is_refused_by_name(
        make_napari_viewer, tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.ones((4, 5), dtype=np.float32))
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match=r"'napari-psfkit' was selected .* refused the file"):
        viewer.open(path, plugin=PLUGIN)
    assert len(viewer.layers) == 0


def test_frames_keep_scale_1_and_pixels_on_their_axis(make_napari_viewer, tmp_path):
    path = tmp_path / "series.tif"
    frames = np.random.default_rng(0).random((3, 16, 12)).astype(np.float32)
    write_image(path, frames, spacing=(0.1, 0.1))
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    np.testing.assert_allclose(layer.scale, (1.0, 0.1, 0.1))
    assert [str(unit) for unit in layer.units] == ["pixel", "micrometer", "micrometer"]
    np.testing.assert_array_equal(layer.data, frames)
    assert layer.colormap.name == "gray"
