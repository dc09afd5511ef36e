"""The capability subcommands (``psfkit estimate``, ``fit``, ``psf``, ``beads``,
``convolve``) end to end on TIFF files: the values written against the known truth, the
exit codes, and one line naming the file for a bad input."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import psfkit
from psfkit.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from psfkit.io import file_checksum, read_image, read_sidecar, write_image
from psfkit.metrics import kernel_error
from psfkit.models import make_psf
from psfkit.samples import bead_image, blurred_pair, sample_point_source

SOURCE = str(Path(__file__).resolve().parents[1] / "src")

TRUE_SHIFT, TRUE_GAIN, TRUE_OFFSET = (0.4, -0.7), 0.9, 0.05


def _record(path, command: str) -> dict:
    """The sidecar of an output, checked to name ``command`` and the psfkit version."""
    record = read_sidecar(path)
    assert record["subcommand"] == command
    assert record["psfkit_version"] == psfkit.__version__
    return record


def _input(record: dict, role: str) -> dict:
    """The entry of the input with ``role`` in a record, its path reduced to the name."""
    entry = next(entry for entry in record["inputs"] if entry["role"] == role)
    return dict(entry, path=os.path.basename(entry["path"]))


def _rows(out: str) -> dict:
    """A printed two-column table (name, two or more spaces, value) as a dict."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines()
                if re.search(r"\s{2,}", line))


def _run_module(*arguments, cwd):
    """``python -m psfkit ARGUMENTS`` in a subprocess, as a user runs it."""
    environment = dict(os.environ, PYTHONPATH=SOURCE)
    return subprocess.run([sys.executable, "-m", "psfkit", *arguments], cwd=cwd,
                          capture_output=True, text=True, env=environment, check=False)


def _pair(kernel, rng, scene_kind="natural"):
    """A pair through ``kernel`` with the gain, offset and shift of one camera pair."""
    return blurred_pair(kernel, (160, 160), scene_kind=scene_kind, noise=0.01,
                        gain=TRUE_GAIN, offset=TRUE_OFFSET, shift=TRUE_SHIFT, rng=rng)


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
    assert _input(record, "sharp") == {"role": "sharp", "path": "sharp.tif",
                                       "sha256": file_checksum(folder / "sharp.tif")}
    assert _input(record, "blurred")["path"] == "blurred.tif"
    np.testing.assert_allclose(record["shift"], TRUE_SHIFT, atol=0.05)
    assert record["gain"] == pytest.approx(TRUE_GAIN, rel=0.02)
    assert abs(record["residual_ratio"] - 1) < 0.1
    lines = _rows(result.stdout)
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
             ("1D", "got 1D with shape (50,)"), ("nan", "contains NaN")]


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
    assert record["model"] == "gaussian" and _input(record, "sharp")["path"] == "sharp.tif"
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
    # the fitted kernel carries its gain, offset and shift to convolve
    assert main(["convolve", str(folder / "kernel.tif"), str(folder / "sharp.tif"),
                 "--compare", str(folder / "blurred.tif"), "-q"]) == EXIT_OK
    ratio = float(_rows(capsys.readouterr().out)["sharp.tif"].split()[1])
    assert ratio == pytest.approx(record["residual_ratio"], abs=0.03)


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


def test_fit_of_an_unknown_model_is_refused_by_the_parser(pair_files, capsys):
    _, folder = pair_files
    with pytest.raises(SystemExit) as stop:
        main(["fit", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
              "--model", "bokeh"])
    assert stop.value.code == EXIT_USAGE
    assert "invalid choice: 'bokeh'" in capsys.readouterr().err


# ------------------------------------------------------------------------ psf and beads


def test_psf_of_the_sample_led_is_within_five_percent_of_the_true_psf_at_its_spacing(
        tmp_path, capsys):
    sample = sample_point_source()
    write_image(tmp_path / "led.tif", sample["image"], spacing=(0.2, 0.2))
    code = main(["psf", str(tmp_path / "led.tif"), "-o", str(tmp_path / "psf.tif")])
    assert code == EXIT_OK
    written = read_image(tmp_path / "psf.tif")
    np.testing.assert_allclose(written.spacing, (0.2, 0.2), rtol=1e-6)
    psf = written.data
    assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1.0, rel=1e-5)
    assert kernel_error(psf, sample["truth"]["psf"]) < 0.05
    record = _record(tmp_path / "psf.tif", "psf")
    np.testing.assert_allclose(record["centre"], sample["truth"]["centre"], atol=0.1)
    assert _input(record, "image")["path"] == "led.tif"
    out, err = capsys.readouterr()
    rows = _rows(out)
    assert rows["hot pixels"] == "3" and float(rows["SNR"]) > 30
    assert rows["centre"].startswith("(30.3")
    np.testing.assert_allclose(json.loads(rows["FWHM (spacing units)"].replace("(", "[")
                                          .replace(")", "]")),
                               np.array(record["fwhm"]) * 0.2, rtol=1e-3)
    assert "wrote" in err


def _beads_with_one_at_the_edge(folder: Path):
    """Six Airy beads (first zero 2.5 px) and a seventh cut by the top edge, centre (3, 87)."""
    psf = make_psf("airy", (15, 15), radius=2.5)
    image, centres = bead_image(psf, (160, 160), count=6, peak_snr=30.0, rng=3)
    image[0:11, 80:95] += (psf / psf.max() * 1000)[4:, :]
    tifffile.imwrite(folder / "beads.tif", image)
    return psf, centres


def test_beads_csv_has_one_row_per_bead_with_positions_and_the_edge_reason(tmp_path, capsys):
    psf, centres = _beads_with_one_at_the_edge(tmp_path)
    code = main(["beads", str(tmp_path / "beads.tif"), "-o", str(tmp_path / "psf.tif"),
                 "--csv", str(tmp_path / "beads.csv"), "--spacing", "0.1"])
    assert code == EXIT_OK
    np.testing.assert_allclose(read_image(tmp_path / "psf.tif").spacing, (0.1, 0.1))
    with open(tmp_path / "beads.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and list(rows[0]) == ["bead", "y", "x", "flux", "snr", "used",
                                                "reason"]
    edge = next(row for row in rows if row["reason"] == "edge")
    assert (float(edge["y"]), float(edge["x"])) == (3.0, 87.0)
    assert edge["used"] == "false" and edge["flux"] == "" and edge["snr"] == ""
    used = [row for row in rows if row["used"] == "true"]
    assert len(used) >= 4 and all(row["reason"] == "accepted" for row in used)
    for row in used:
        position = np.array([float(row["y"]), float(row["x"])])
        assert np.min(np.max(np.abs(centres - position), axis=1)) < 0.2
        assert float(row["flux"]) > 0 and float(row["snr"]) > 20
    assert kernel_error(tifffile.imread(tmp_path / "psf.tif"), psf) < 0.15
    record = _record(tmp_path / "psf.tif", "beads")
    assert record["beads_used"] == len(used) and record["beads_detected"] == 7
    out = capsys.readouterr().out
    assert f"7 detected, {len(used)} used" in out and "1 edge" in out


# ---------------------------------------------------------------------------- convolve


def test_convolve_predicts_another_pair_down_to_the_noise_with_the_estimated_kernel(
        pair_files, capsys):
    pair, folder = pair_files
    other = _pair(pair.kernel, rng=5, scene_kind="blobs")  # another scene, the same cameras
    tifffile.imwrite(folder / "sharp2.tif", other.sharp)
    tifffile.imwrite(folder / "blurred2.tif", other.blurred)
    assert main(["estimate", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
                 "-o", str(folder / "kernel.tif"), "--reblurred", str(folder / "rb.tif"),
                 "-q"]) == EXIT_OK
    (folder / "predicted").mkdir()
    result = _run_module("convolve", "kernel.tif", "sharp.tif", "sharp2.tif",
                         "--compare", "blurred.tif", "--compare", "blurred2.tif",
                         "-o", "predicted", cwd=folder)
    assert result.returncode == EXIT_OK, result.stderr
    rows = _rows(result.stdout)
    ratios = [float(rows[name].split()[1]) for name in ("sharp.tif", "sharp2.tif")]
    assert all(abs(ratio - 1) < 0.1 for ratio in ratios)
    record = _record(folder / "predicted" / "sharp2_convolved.tif", "convolve")
    assert record["calibrated"] and record["residual_ratio"] == pytest.approx(ratios[1],
                                                                              abs=0.01)
    assert _input(record, "compared")["path"] == "blurred2.tif"
    own = tifffile.imread(folder / "predicted" / "sharp_convolved.tif")
    assert own.dtype == np.float32 and own.shape == pair.sharp.shape
    np.testing.assert_allclose(own, tifffile.imread(folder / "rb.tif"),
                               atol=0.02 * pair.noise_sigma)
    capsys.readouterr()
    assert main(["convolve", str(folder / "kernel.tif"), str(folder / "sharp2.tif"),
                 "--compare", str(folder / "blurred2.tif"), "--kernel-only", "--overwrite",
                 "-o", str(folder / "predicted"), "-q"]) == EXIT_OK
    without_calibration = float(_rows(capsys.readouterr().out)["sharp2.tif"].split()[1])
    assert without_calibration > 2  # the gain of 0.9 and the offset are part of the model


def test_convolve_applies_a_plain_kernel_alone_and_says_so(tmp_path, capsys):
    kernel = make_psf("gaussian", (13, 13), sigma=1.5)
    pair = blurred_pair(kernel, (96, 96), noise=0.01, rng=4)
    tifffile.imwrite(tmp_path / "kernel.tif", kernel)
    tifffile.imwrite(tmp_path / "sharp.tif", pair.sharp)
    tifffile.imwrite(tmp_path / "blurred.tif", pair.blurred)
    code = main(["convolve", str(tmp_path / "kernel.tif"), str(tmp_path / "sharp.tif"),
                 "--compare", str(tmp_path / "blurred.tif")])
    assert code == EXIT_OK
    out, err = capsys.readouterr()
    assert "records no gain, offset or shift, so the kernel was applied alone" in err
    assert abs(float(_rows(out)["sharp.tif"].split()[1]) - 1) < 0.1
    inner = (slice(6, -6),) * 2
    predicted = tifffile.imread(tmp_path / "sharp_convolved.tif")
    np.testing.assert_allclose(predicted[inner], psfkit.convolve(pair.sharp, kernel)[inner],
                               atol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--compare", "blurred.tif", "--compare", "blurred.tif"],
      "--compare is given 2 times for 1 images"),
     (["--compare", "small.tif"], "has shape (40, 40)"),
     (["--kernel", "missing.tif"], "kernel file not found: missing.tif")])
def test_convolve_refuses_mismatched_inputs_in_one_line(pair_files, extra, message, capsys,
                                                        monkeypatch):
    _, folder = pair_files
    monkeypatch.chdir(folder)
    tifffile.imwrite("kernel.tif", make_psf("gaussian", (9, 9), sigma=2.0))
    tifffile.imwrite("small.tif", np.ones((40, 40), np.float32))
    kernel = "kernel.tif"
    if extra[0] == "--kernel":
        kernel, extra = extra[1], []
    before = sorted(os.listdir(folder))
    assert main(["convolve", kernel, "sharp.tif", *extra]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("psfkit convolve: error: ") and message in err
    assert err.count("\n") == 1 and sorted(os.listdir(folder)) == before


# -------------------------------------------------------------------------- bad files


def _command(name: str, folder: Path) -> tuple[list[str], str]:
    """The arguments of subcommand ``name`` on the files of ``folder`` and the input that
    the bad-file test spoils."""
    sharp, blurred = str(folder / "sharp.tif"), str(folder / "blurred.tif")
    output = str(folder / "out.tif")
    if name == "convolve":
        tifffile.imwrite(folder / "kernel.tif", make_psf("gaussian", (9, 9), sigma=2.0))
    return {
        "estimate": (["estimate", sharp, blurred, "-o", output], "blurred"),
        "fit": (["fit", sharp, blurred, "-o", output], "sharp"),
        "psf": (["psf", blurred, "-o", output], "blurred"),
        "beads": (["beads", sharp, "-o", output], "sharp"),
        "convolve": (["convolve", str(folder / "kernel.tif"), sharp, "--compare", blurred],
                     "blurred"),
    }[name]


@pytest.mark.parametrize("name", ["estimate", "fit", "psf", "beads", "convolve"])
@pytest.mark.parametrize(("change", "message"), BAD_FILES)
def test_a_bad_input_file_is_one_line_naming_it_and_exit_code_2(
        pair_files, name, change, message, capsys):
    _, folder = pair_files
    arguments, spoiled = _command(name, folder)
    _spoil(folder / f"{spoiled}.tif", change)
    before = sorted(os.listdir(folder))
    assert main(arguments) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"psfkit {name}: error: ") and message in err
    assert f"{spoiled}.tif" in err and err.count("\n") == 1
    assert sorted(os.listdir(folder)) == before


# ------------------------------------------------------------------ help, failures, signals


@pytest.mark.parametrize(("name", "words"), [
    ("estimate", "residual over the noise"), ("fit", "standard errors"),
    ("psf", "point source"), ("beads", "one row per bead"),
    ("convolve", "predicts the blurred version")])
def test_every_subcommand_explains_itself_in_its_help(name, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: psfkit {name}") and words in out
    assert "--quiet" in out and "--overwrite" in out


class _FailingTerminal(io.StringIO):
    """A stderr on which the first progress bar fails, as exhausted memory would make the
    run fail in its middle."""

    def write(self, text):
        if "[" in text:
            raise MemoryError("out of memory")
        return super().write(text)


def test_a_computation_that_fails_is_one_line_exit_code_1_and_writes_nothing(
        pair_files, monkeypatch):
    _, folder = pair_files
    terminal = _FailingTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["estimate", str(folder / "sharp.tif"), str(folder / "blurred.tif"),
                 "-o", str(folder / "kernel.tif")])
    assert code == EXIT_FAILED
    assert terminal.getvalue() == "psfkit estimate: failed: MemoryError: out of memory\n"
    assert sorted(os.listdir(folder)) == ["blurred.tif", "sharp.tif"]


def test_a_terminated_run_exits_130_and_leaves_no_file(tmp_path):
    pair = blurred_pair(make_psf("gaussian", (17, 17), sigma=2.0), (768, 768), rng=3)
    tifffile.imwrite(tmp_path / "sharp.tif", pair.sharp)
    tifffile.imwrite(tmp_path / "blurred.tif", pair.blurred)
    environment = dict(os.environ, PYTHONPATH=SOURCE)
    process = subprocess.Popen(
        [sys.executable, "-m", "psfkit", "estimate", "sharp.tif", "blurred.tif", "-o",
         "kernel.tif", "--method", "lsq"], cwd=tmp_path, env=environment,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    first_progress = process.stderr.readline()  # the run is under way
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait() == EXIT_INTERRUPTED
    assert first_progress.startswith("estimating [")
    assert rest.strip().endswith("psfkit estimate: interrupted; files not yet complete were "
                                 "not written")
    assert "Traceback" not in rest
    assert sorted(os.listdir(tmp_path)) == ["blurred.tif", "sharp.tif"]
