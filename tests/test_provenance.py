"""The sidecar of each output: checksums, full parameters, noise model, stopping rule,
time and memory, and a command line and Python call that remake the output bit for bit;
float32 never rescaled, uint16 saturating visibly with its scale recorded."""

import hashlib
import os

import numpy as np
import pytest
import tifffile

import psfkit
from psfkit.cli import EXIT_OK, EXIT_USAGE, main
from psfkit.io import read_sidecar, save_psf, write_image
from psfkit.provenance import sidecar_parameters
from psfkit.samples import blurred_pair

PSF = psfkit.make_psf("gaussian", (11, 11), sigma=1.5)


@pytest.fixture
def files(tmp_path):
    image = 1000.0 * blurred_pair(PSF, (72, 64), noise=0.01, rng=4).blurred
    write_image(tmp_path / "in.tif", image, (0.1, 0.1))
    save_psf(tmp_path / "psf.tif", PSF, spacing=(0.1, 0.1))
    return image, str(tmp_path / "in.tif"), str(tmp_path / "psf.tif"), tmp_path


def _sha256(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_the_sidecar_records_inputs_parameters_noise_and_resources(files):
    image, image_path, psf_path, folder = files
    output = str(folder / "out.tif")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", output, "-q"]) == EXIT_OK
    record = read_sidecar(output)
    _, info = psfkit.deconvolve(image, PSF, return_info=True)
    assert record["psfkit_version"] == psfkit.__version__
    assert record["inputs"] == [{"path": image_path, "sha256": _sha256(image_path)}]
    assert record["psf"]["sha256"] == _sha256(psf_path)
    assert record["psf"]["spacing"] == [0.1, 0.1] and record["spacing"] == [0.1, 0.1]
    assert record["parameters"] == info.parameters
    assert record["noise_model"] == {"background": info.background,
                                     "read_noise": info.parameters["read_noise"],
                                     "gain": info.parameters["gain"],
                                     "noise_sigma": info.noise_sigma}
    assert record["iterations"] == info.iterations
    assert record["stopped_by"] == info.stopped_by
    assert record["seconds"] > 0 and record["peak_memory_bytes"] > 2**20
    assert record["output_type"] == {"dtype": "float32", "scale": 1.0}


def test_a_sidecars_parameters_remake_its_output_bit_for_bit(files, capsys):
    _, image_path, psf_path, folder = files
    output = str(folder / "out.tif")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", output, "-q"]) == EXIT_OK
    record = read_sidecar(output)
    written = tifffile.imread(output)
    again = folder / "again.tif"
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", str(again), "-q",
                 "--parameters", output + ".json"]) == EXIT_OK
    np.testing.assert_array_equal(tifffile.imread(again), written)
    scope = {}
    exec(record["python"], scope)  # the recorded Python call
    np.testing.assert_array_equal(scope["result"], written)
    assert record["command"].startswith(
        f"psfkit deconvolve {image_path} --psf {psf_path} -o {output}.again.tif "
        f"--parameters {output}.json")


def test_float32_output_is_the_result_unscaled(files):
    image, image_path, psf_path, folder = files
    output = str(folder / "out.tif")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", output, "-q",
                 "--method", "wiener"]) == EXIT_OK
    written = tifffile.imread(output)
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, psfkit.deconvolve(image, PSF, "wiener"))


def test_uint16_output_saturates_visibly_and_records_its_scale(files, capsys):
    image, image_path, psf_path, folder = files
    output = str(folder / "out.tif")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", output, "-q",
                 "--method", "wiener", "--dtype", "uint16", "--scale", "100"]) == EXIT_OK
    result = psfkit.deconvolve(image, PSF, "wiener").astype(np.float64) * 100.0
    written = tifffile.imread(output)
    assert written.dtype == np.uint16
    expected = np.clip(np.rint(result), 0, 65535)
    np.testing.assert_array_equal(written, expected)
    saturated = int(np.count_nonzero(result > 65535))
    assert saturated > 0
    record = read_sidecar(output)
    assert record["output_type"]["scale"] == 100.0
    assert record["output_type"]["saturated_pixels"] == saturated
    assert f"{saturated} pixels" in capsys.readouterr().err
    assert sorted(os.listdir(folder)) == ["in.tif", "out.tif", "out.tif.json", "psf.tif"]


def test_a_parameters_file_without_parameters_is_refused_by_name(tmp_path, files, capsys):
    _, image_path, psf_path, folder = files
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds no deconvolution parameters"):
        sidecar_parameters(str(tmp_path / "empty.json"))
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", str(folder / "o.tif"),
                 "--parameters", str(tmp_path / "missing.json")]) == EXIT_USAGE
    assert "cannot read the parameters file" in capsys.readouterr().err


def test_a_run_in_blocks_records_them_and_its_sidecar_remakes_it(files):
    _, image_path, psf_path, folder = files
    output = str(folder / "blocks.tif")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", output, "-q",
                 "--method", "richardson_lucy", "--iterations", "6", "--chunks", "40,40",
                 "--scheduler", "synchronous"]) == EXIT_OK
    record = read_sidecar(output)
    assert record["blocks"]["chunks"] == [40, 40]
    again = str(folder / "again.tif")
    command = record["command"].split()
    assert command[command.index("--chunks") + 1] == "40,40"
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", again, "-q",
                 "--parameters", output + ".json", *command[command.index("--chunks"):],
                 "--scheduler", "synchronous"]) == EXIT_OK
    np.testing.assert_array_equal(tifffile.imread(again), tifffile.imread(output))
