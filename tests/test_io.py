"""TIFF files with their voxel size: OME, ImageJ and resolution tags read back in
micrometres, every written file readable by Fiji's conventions and by ``read_image``,
PSFs with their spacing, atomic writes and sidecars."""

import os

import numpy as np
import pytest
import tifffile

from psfkit.io import (
    atomic_output,
    create_image,
    file_checksum,
    load_psf,
    read_image,
    read_sidecar,
    save_psf,
    write_image,
)

VOLUME = np.arange(5 * 12 * 10, dtype=np.float32).reshape(5, 12, 10)


def test_an_ome_tiff_gives_its_physical_sizes_in_micrometres(tmp_path):
    path = tmp_path / "ome.tif"
    tifffile.imwrite(path, VOLUME, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 65.0, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 65.0, "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.2})
    image = read_image(path)
    np.testing.assert_array_equal(image.data, VOLUME)
    assert image.axes == "ZYX" and image.unit == "µm"
    np.testing.assert_allclose(image.spacing, (0.2, 0.065, 0.065))


def test_an_imagej_tiff_gives_its_z_spacing_and_resolution_tags(tmp_path):
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, VOLUME, imagej=True, resolution=(1 / 0.11, 1 / 0.1),
                     metadata={"spacing": 0.5, "unit": "micron", "axes": "ZYX"})
    data, spacing, unit = read_image(path)
    np.testing.assert_allclose(spacing, (0.5, 0.1, 0.11))
    assert unit == "µm" and data.shape == VOLUME.shape


def test_resolution_tags_in_centimetres_count_and_a_screens_72_dpi_does_not(tmp_path):
    tifffile.imwrite(tmp_path / "cm.tif", VOLUME[0], resolution=(1e4 / 0.25, 1e4 / 0.25),
                     resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", VOLUME[0], resolution=(72, 72),
                     resolutionunit="INCH")
    np.testing.assert_allclose(read_image(tmp_path / "cm.tif").spacing, (0.25, 0.25))
    screenshot = read_image(tmp_path / "dpi.tif")
    assert screenshot.spacing == (None, None) and screenshot.unit == "pixel"


def test_an_unknown_spacing_says_what_was_assumed(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", VOLUME[0])
    image = read_image(tmp_path / "plain.tif")
    assert image.spatial_spacing(2) is None
    assert image.assumed(2) == "plain.tif gives no voxel size along y, x; taken as 1 pixel"
    write_image(tmp_path / "known.tif", VOLUME[0], (0.1, 0.1))
    assert read_image(tmp_path / "known.tif").assumed(2) == ""


@pytest.mark.parametrize("shape, spacing, axes", [
    ((12, 10), (0.1, 0.2), "YX"),
    ((5, 12, 10), (0.3, 0.1, 0.2), "ZYX"),
    ((3, 12, 10), (0.1, 0.2), "TYX"),
    ((2, 5, 12, 10), (0.3, 0.1, 0.2), "TZYX"),
])
def test_written_files_carry_imagej_spacing_that_reads_back(tmp_path, shape, spacing, axes):
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    path = tmp_path / "out.tif"
    write_image(path, data, spacing)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        x_resolution = tif.pages.first.tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(1 / spacing[-1])
    image = read_image(path)
    np.testing.assert_array_equal(image.data, data)
    assert image.axes == axes
    assert image.spatial_spacing(len(spacing)) == pytest.approx(spacing)


def test_a_layout_imagej_cannot_hold_keeps_its_spacing_in_the_description(tmp_path):
    data = np.zeros((2, 2, 3, 8, 8), dtype=np.float32)
    path = tmp_path / "frames.tif"
    write_image(path, data, (0.3, 0.1, 0.1))
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_imagej
    image = read_image(path, lazy=True)
    assert image.data.shape == data.shape and image.axes == "QQZYX"
    assert image.spacing == (None, None, 0.3, 0.1, 0.1)


def test_a_memory_mapped_output_carries_the_spacing(tmp_path):
    path = tmp_path / "mapped.tif"
    out = create_image(path, (4, 12, 10), spacing=(0.4, 0.1, 0.1))
    out[:] = 2.0
    out.flush()
    del out
    image = read_image(path)
    assert image.spacing == pytest.approx((0.4, 0.1, 0.1))
    np.testing.assert_array_equal(image.data, 2.0)


def test_a_psf_round_trips_with_its_spacing_and_provenance(tmp_path):
    psf = np.random.default_rng(1).random((7, 9, 9), dtype=np.float32)
    path = tmp_path / "psf.tif"
    save_psf(path, psf, spacing=(0.2, 0.05, 0.05), provenance={"made_by": "average_beads"})
    loaded = load_psf(path)
    np.testing.assert_array_equal(loaded.data, psf)
    assert loaded.spacing == pytest.approx((0.2, 0.05, 0.05))
    assert read_sidecar(path) == {"made_by": "average_beads"}


def test_load_psf_drops_leading_single_planes_and_refuses_4d(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", np.ones((1, 5, 5), np.float32))
    assert load_psf(tmp_path / "one.tif").data.shape == (5, 5)
    tifffile.imwrite(tmp_path / "four.tif", np.ones((2, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="must be 2D or 3D, got shape"):
        load_psf(tmp_path / "four.tif")


def test_a_missing_or_broken_file_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"image file not found: .*nothing\.tif"):
        read_image(tmp_path / "nothing.tif")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match=r"cannot read the PSF TIFF .*broken\.tif"):
        load_psf(tmp_path / "broken.tif")


def test_an_interrupted_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "out.tif") as temporary:
        tifffile.imwrite(temporary, VOLUME)
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_checksum_is_the_sha256_of_the_bytes(tmp_path):
    (tmp_path / "file").write_bytes(b"abc")
    assert file_checksum(tmp_path / "file") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_an_imagej_file_calibrated_in_pixels_has_no_voxel_size(tmp_path):
    tifffile.imwrite(tmp_path / "pixels.tif", VOLUME, imagej=True,
                     metadata={"spacing": 1.0, "unit": "pixel", "axes": "ZYX"})
    image = read_image(tmp_path / "pixels.tif")
    assert image.spacing == (None, None, None) and image.unit == "pixel"


# ------------------------------------------------------------------------ PSF map files


def _field_pair(shape=(96, 96)):
    from psfkit.samples import field_blurred_pair

    return field_blurred_pair(shape, (1.2, 3.0), rng=0)


def _assert_same_map(read, written):
    assert read.grid == written.grid and read.shape == written.shape
    assert read.model == written.model
    np.testing.assert_array_equal(read.psfs, written.psfs)
    assert read.psfs.dtype == np.float32
    for a, b in zip(read.centres, written.centres, strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(read.diagnostics) == set(written.diagnostics)
    for name, value in written.diagnostics.items():
        assert read.diagnostics[name].dtype == np.asarray(value).dtype, name
        np.testing.assert_array_equal(read.diagnostics[name], value, err_msg=name)


def test_a_fitted_map_file_gives_back_the_same_map_parameters_spacing_and_record(tmp_path):
    import psfkit
    from psfkit.io import load_psf_map, save_psf_map

    pair = _field_pair()
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=(3, 3))
    path = tmp_path / "map.tif"
    save_psf_map(path, psf_map, spacing=(0.2, 0.1), provenance={"subcommand": "fit"})
    read = load_psf_map(path)
    _assert_same_map(read.psf_map, psf_map)
    assert read.spacing == pytest.approx((0.2, 0.1), rel=1e-6) and read.unit == "µm"
    assert read.provenance == {"subcommand": "fit"}
    for position in [(0, 0), (40.5, 77.25), (95, 3)]:
        assert read.psf_map.params_at(position) == psf_map.params_at(position)
        np.testing.assert_array_equal(read.psf_map.psf_at(position), psf_map.psf_at(position))
    # Fiji sees a stack of the tiles' PSFs, one frame per tile, labelled
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape == (9, *psf_map.psf_shape) and tif.is_imagej
        assert tif.imagej_metadata["Labels"][0].startswith("tile (0, 0) at")


def test_a_kernel_map_with_failed_tiles_keeps_its_nan_and_infinite_diagnostics(tmp_path):
    from psfkit.io import load_psf_map, save_psf_map
    from psfkit.psf_map import PsfMap

    psfs = np.random.default_rng(0).random((1, 2, 3, 5, 5)).astype(np.float32)
    psf_map = PsfMap(psfs=psfs, centres=(np.array([5.0]), np.array([10.0, 30.0]),
                                         np.array([4.0, 20.0, 36.5])), shape=(11, 40, 41),
                     diagnostics={"gain": np.array([[[1.0, np.nan, 2.5], [np.inf, -np.inf,
                                                                          1e-300]]]),
                                  "reliable": np.ones((1, 2, 3), bool),
                                  "beads_used": np.arange(6).reshape(1, 2, 3)})
    save_psf_map(tmp_path / "volume_map.tif", psf_map, spacing=(0.3, 0.1, 0.1))
    read = load_psf_map(tmp_path / "volume_map.tif")
    _assert_same_map(read.psf_map, psf_map)
    assert read.spacing == pytest.approx((0.3, 0.1, 0.1), rel=1e-6)
    assert read.provenance is None


def test_a_map_file_is_refused_as_one_psf_and_a_psf_file_as_a_map(tmp_path):
    import psfkit
    from psfkit.io import is_psf_map_file, load_psf_map, save_psf_map

    pair = _field_pair((64, 64))
    save_psf_map(tmp_path / "map.tif", psfkit.estimate_kernel_map(
        pair.sharp, pair.blurred, (2, 2), shape=11), spacing=0.1)
    save_psf(tmp_path / "psf.tif", np.ones((5, 5), np.float32) / 25)
    assert is_psf_map_file(tmp_path / "map.tif") and not is_psf_map_file(tmp_path / "psf.tif")
    with pytest.raises(ValueError, match=r"map\.tif holds a PSF map .*psfkit.io.load_psf_map"):
        load_psf(tmp_path / "map.tif")
    with pytest.raises(ValueError, match=r"psf\.tif holds no PSF map"):
        load_psf_map(tmp_path / "psf.tif")
    with pytest.raises(ValueError, match="PSF map file not found"):
        load_psf_map(tmp_path / "missing.tif")
    with pytest.raises(TypeError, match=r"psf_map must be a psfkit\.PsfMap, got ndarray"):
        save_psf_map(tmp_path / "bad.tif", np.ones((5, 5)))
