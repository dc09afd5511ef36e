"""The capability subcommands (``psfkit estimate``, ``fit``, ``psf``, ``beads``,
``convolve``) end to end on TIFF files: the values written against the known truth, the
exit codes, and one line naming the file for a bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from psfkit.cli import EXIT_OK, EXIT_USAGE, main
from psfkit.metrics import kernel_error
from psfkit.models import make_psf
from psfkit.samples import blurred_pair

SOURCE = str(Path(__file__).resolve().parents[1] / "src")

TRUE_SHIFT, TRUE_GAIN, TRUE_OFFSET = (0.4, -0.7), 0.9, 0.05


def _record(path, command: str) -> dict:
    with tifffile.TiffFile(path) as tif:
        return json.loads(tif.shaped_metadata[0][f"psfkit_{command}"])


def _run_module(*arguments, cwd):
    """``python -m psfkit ARGUMENTS`` in a subprocess, as a user runs it."""
    environment = dict(os.environ, PYTHONPATH=SOURCE)
    return subprocess.run([sys.executable, "-m", "psfkit", *arguments], cwd=cwd,
                          capture_output=True, text=True, env=environment, check=False)


def _pair(kernel, rng):
    return blurred_pair(kernel, (160, 160), noise=0.01, gain=TRUE_GAIN, offset=TRUE_OFFSET,
                        shift=TRUE_SHIFT, rng=rng)


@pytest.fixture
def pair_files(tmp_path):
    """A sharp/blurred pair through a Gaussian of sigma 2 px, written as TIFFs."""
    kernel = make_psf("gaussian", (17, 17), sigma=2.0)
    pair = _pair(kernel, rng=1)
    tifffile.imwrite(tmp_path / "sharp.tif", pair.sharp)
    tifffile.imwrite(tmp_path / "blurred.tif", pair.blurred)
    return pair, tmp_path


# ---------------------------------------------------------------------------- estimate


def test_estimate_writes_the_kernel_within_ten_percent_and_prints_the_calibration(
        pair_files):
    pair, folder = pair_files
    result = _run_module("estimate", "sharp.tif", "blurred.tif", "-o", "kernel.tif",
                         "--residual", "residual.tif", "--reblurred", "reblurred.tif",
                         cwd=folder)
    assert result.returncode == EXIT_OK, result.stderr
    kernel = tifffile.imread(folder / "kernel.tif")
    assert kernel.dtype == np.float32
    assert kernel_error(kernel, pair.kernel) < 0.1
    residual = tifffile.imread(folder / "residual.tif")
    reblurred = tifffile.imread(folder / "reblurred.tif")
    np.testing.assert_allclose(reblurred + residual, pair.blurred, atol=1e-5)
    record = _record(folder / "kernel.tif", "estimate")
    assert record["sharp"] == "sharp.tif" and record["blurred"] == "blurred.tif"
    np.testing.assert_allclose(record["shift"], TRUE_SHIFT, atol=0.05)
    assert record["gain"] == pytest.approx(TRUE_GAIN, rel=0.02)
    assert abs(record["residual_ratio"] - 1) < 0.1
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines()
                 if line.startswith(("gain", "offset", "residual/noise")))
    assert float(lines["gain"]) == pytest.approx(record["gain"], rel=1e-3)
    assert float(lines["offset"]) == pytest.approx(TRUE_OFFSET, abs=0.01)
    assert float(lines["residual/noise"]) == pytest.approx(record["residual_ratio"], abs=0.01)
    assert "wrote kernel.tif, residual.tif, reblurred.tif" in result.stderr
    assert "Traceback" not in result.stderr


def test_estimate_with_a_given_shape_and_quiet_writes_that_shape_and_nothing_on_stderr(
        pair_files, capsys):
    _, folder = pair_files
    code = main(["estimate", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
                 "-o", str(folder / "kernel.tif"), "--shape", "13", "-q"])
    assert code == EXIT_OK
    assert tifffile.imread(folder / "kernel.tif").shape == (13, 13)
    out, err = capsys.readouterr()
    assert err == "" and "residual/noise" in out


def _spoil(path: Path, change: str) -> None:
    """Make the TIFF at ``path`` a bad input of kind ``change``."""
    if change == "missing":
        path.unlink()
    elif change == "not a tiff":
        path.write_bytes(b"not a tiff at all")
    elif change == "1D":
        tifffile.imwrite(path, np.ones(50, np.float32))
    else:
        image = tifffile.imread(path).copy()
        image[5, 5] = np.nan
        tifffile.imwrite(path, image)


BAD_FILES = [("missing", "file not found"), ("not a tiff", "cannot read"),
             ("1D", "must be 2D or 3D, got 1D"), ("nan", "contains NaN")]


@pytest.mark.parametrize(("change", "message"), BAD_FILES)
def test_estimate_refuses_a_bad_blurred_file_in_one_line_with_exit_code_2(
        pair_files, change, message, capsys):
    _, folder = pair_files
    _spoil(folder / "blurred.tif", change)
    code = main(["estimate", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
                 "-o", str(folder / "kernel.tif")])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("psfkit estimate: error: ") and message in err
    assert "blurred" in err and err.count("\n") == 1
    assert not (folder / "kernel.tif").exists()


def test_estimate_keeps_an_existing_output_and_never_writes_over_an_input(pair_files, capsys):
    _, folder = pair_files
    (folder / "kernel.tif").write_bytes(b"precious")
    sharp, blurred = str(folder / "sharp.tif"), str(folder / "blurred.tif")
    assert main(["estimate", sharp, blurred, "-o", str(folder / "kernel.tif")]) == EXIT_USAGE
    assert "pass --overwrite" in capsys.readouterr().err
    assert (folder / "kernel.tif").read_bytes() == b"precious"
    before = (folder / "sharp.tif").read_bytes()
    assert main(["estimate", sharp, blurred, "-o", str(folder / "kernel.tif"),
                 "--residual", sharp, "--overwrite"]) == EXIT_USAGE
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert (folder / "sharp.tif").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["blurred.tif", "kernel.tif", "sharp.tif"]


# --------------------------------------------------------------------------------- fit


def test_fit_prints_sigma_within_two_percent_and_writes_the_json(pair_files, capsys):
    _, folder = pair_files
    code = main(["fit", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
                 "--model", "gaussian", "--json", str(folder / "fit.json"),
                 "-o", str(folder / "kernel.tif")])
    assert code == EXIT_OK
    record = json.loads((folder / "fit.json").read_text())
    assert record["model"] == "gaussian" and record["sharp"] == "sharp.tif"
    assert record["params"]["sigma"] == pytest.approx(2.0, rel=0.02)
    assert 0 < record["errors"]["sigma"] < 0.02
    assert record["gain"] == pytest.approx(TRUE_GAIN, rel=0.02)
    np.testing.assert_allclose(record["shift"], TRUE_SHIFT, atol=0.05)
    assert record["residual_ratio"] == pytest.approx(np.sqrt(record["reduced_chi2"]))
    assert abs(record["residual_ratio"] - 1) < 0.1
    kernel = tifffile.imread(folder / "kernel.tif")
    assert kernel_error(kernel, make_psf("gaussian", kernel.shape, sigma=2.0)) < 0.05
    out, err = capsys.readouterr()
    sigma_row = next(line for line in out.splitlines() if line.startswith("sigma"))
    value, error = sigma_row.split(None, 1)[1].split(" ± ")
    assert float(value) == pytest.approx(record["params"]["sigma"], rel=1e-4)
    assert float(error) == pytest.approx(record["errors"]["sigma"], rel=0.05)
    assert "wrote" in err and "fit.json" in err


def test_fit_defocus_is_the_disk_model_and_its_radius_is_found(tmp_path, capsys):
    pair = _pair(make_psf("disk", (15, 15), radius=4.0), rng=2)
    tifffile.imwrite(tmp_path / "sharp.tif", pair.sharp)
    tifffile.imwrite(tmp_path / "blurred.tif", pair.blurred)
    code = main(["fit", str(tmp_path / "sharp.tif"), str(tmp_path / "blurred.tif"),
                 "--model", "defocus", "--json", str(tmp_path / "fit.json"), "-q"])
    assert code == EXIT_OK
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["model"] == "disk"
    assert record["params"]["radius"] == pytest.approx(4.0, abs=0.1)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("change", "message"), BAD_FILES)
def test_fit_refuses_a_bad_sharp_file_in_one_line_with_exit_code_2(
        pair_files, change, message, capsys):
    _, folder = pair_files
    _spoil(folder / "sharp.tif", change)
    code = main(["fit", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
                 "--json", str(folder / "fit.json")])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("psfkit fit: error: ") and message in err
    assert "sharp" in err and err.count("\n") == 1
    assert not (folder / "fit.json").exists()


def test_fit_of_an_unknown_model_is_refused_by_the_parser(pair_files, capsys):
    _, folder = pair_files
    with pytest.raises(SystemExit) as stop:
        main(["fit", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
              "--model", "bokeh"])
    assert stop.value.code == EXIT_USAGE
    assert "invalid choice: 'bokeh'" in capsys.readouterr().err
