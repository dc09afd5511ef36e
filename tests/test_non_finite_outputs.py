"""No NaN or infinity is ever written as a success: every output path (the command line's
subcommands and batches, the chunked path, a Deconvolver, the maps) refuses a non-finite
input, result or record with a message naming it, and leaves no output file."""

import os
import re

import numpy as np
import pytest

from psfkit import (
    Deconvolver,
    average_beads,
    deconvolve_chunked,
    estimate_kernel_map,
    fit_kernel_map,
    make_psf,
)
from psfkit._cli_commands import write_output
from psfkit.cli import EXIT_USAGE, main
from psfkit.io import save_psf, write_image
from psfkit.samples import blurred_pair

FLOAT32_MAX = float(np.finfo(np.float32).max)

#: The deconvolution of an image whose bright half is at float32's largest value overflows.
# the automatic choice names the method it ran, whichever won
OVERFLOW = (r"deconvolve's result \(method '\w+'\) contains NaN or infinite values; the "
            r"settings do not suit this image")


@pytest.fixture(scope="module")
def case():
    psf = make_psf("gaussian", (9, 9), sigma=1.5)
    pair = blurred_pair(psf, (96, 96), noise=0.01, rng=1)
    huge = np.where(pair.blurred > 0.5, FLOAT32_MAX, 0).astype(np.float32)
    return psf, pair, huge


@pytest.fixture
def files(tmp_path, case):
    """TIFFs of the PSF, a good image, its sharp scene, an image that overflows and one of
    infinities, in a folder that holds nothing else."""
    psf, pair, huge = case
    arrays = {"psf": psf, "good": pair.blurred, "sharp": pair.sharp, "huge": huge,
              "inf": np.full((96, 96), np.inf, np.float32)}
    for name, array in arrays.items():
        write_image(tmp_path / f"{name}.tif", array)
    return tmp_path


def _run(argv, folder, capsys):
    """Exit code, stderr, and the files the run added to ``folder``."""
    before = set(os.listdir(folder))
    code = main(argv)
    return code, capsys.readouterr().err, sorted(set(os.listdir(folder)) - before)


@pytest.mark.parametrize("blocks", [[], ["--chunks", "48,48"]], ids=["in memory", "blocks"])
def test_the_deconvolve_command_writes_nothing_for_a_result_that_overflows(files, capsys,
                                                                          blocks):
    code, err, added = _run(["deconvolve", str(files / "huge.tif"), "--psf",
                             str(files / "psf.tif"), "-o", str(files / "out.tif"), "-q",
                             *blocks], files, capsys)
    assert code == EXIT_USAGE and "contains NaN or infinite values" in err
    assert "Traceback" not in err and added == []


def test_a_batch_writes_the_good_image_and_nothing_for_the_one_that_overflows(files,
                                                                              capsys):
    code, err, added = _run(["deconvolve", str(files / "good.tif"), str(files / "huge.tif"),
                             "--psf", str(files / "psf.tif"), "--output-pattern",
                             str(files / "{stem}_out.tif"), "-q"], files, capsys)
    assert code == EXIT_USAGE
    assert added == ["good_out.tif", "good_out.tif.json"]
    # the automatic choice names the method it ran, whichever won
    assert re.search(r"huge\.tif: deconvolve's result \(method '(rl_mix|richardson_lucy|"
                     r"tikhonov)'\) contains NaN", err)
    assert "1 written, 0 skipped, 1 failed" in err


def test_a_non_finite_record_leaves_no_deconvolved_file(files, capsys, monkeypatch):
    from psfkit import cli

    record = cli._FileDeconvolution._record
    monkeypatch.setattr(cli._FileDeconvolution, "_record", lambda self, *args: {
        **record(self, *args), "noise_sigma": float("nan")})
    code, err, added = _run(["deconvolve", str(files / "good.tif"), "--psf",
                             str(files / "psf.tif"), "-o", str(files / "out.tif"), "-q"],
                            files, capsys)
    assert code == EXIT_USAGE and added == []
    assert (f"the record of {files / 'out.tif'} holds a NaN or infinite number at "
            f"record['noise_sigma']; nothing was written") in err


def test_a_non_finite_record_is_refused_before_the_image_or_psf_is_written(tmp_path):
    output = tmp_path / "kernel.tif"
    message = (rf"^the record of {output} holds a NaN or infinite number at "
               rf"record\['fit'\]\['errors'\]\[1\]; nothing was written$")
    record = {"fit": {"errors": [0.1, float("inf")]}}
    with pytest.raises(ValueError, match=message):
        write_output(str(output), np.ones((3, 3)), None, record)
    with pytest.raises(ValueError, match=message):
        save_psf(output, np.ones((3, 3)), provenance=record)
    assert os.listdir(tmp_path) == []


def test_convolve_refuses_a_prediction_that_overflows(files, capsys):
    code, err, added = _run(["convolve", str(files / "psf.tif"), str(files / "huge.tif"),
                             "-o", str(files), "-q"], files, capsys)
    assert code == EXIT_USAGE and added == []
    assert (f"the result for {files / 'huge_convolved.tif'} contains NaN or infinite "
            f"values; nothing was written; check the inputs") in err


@pytest.mark.parametrize("command", [
    ["estimate", "{sharp}", "{inf}", "-o", "{out}"],
    ["fit", "{sharp}", "{inf}", "-o", "{out}", "--json", "{out}.fit.json"],
    ["psf", "{inf}", "-o", "{out}"],
    ["beads", "{inf}", "-o", "{out}", "--csv", "{out}.csv"],
    ["convolve", "{inf}", "{sharp}", "-o", "{folder}"],
], ids=lambda command: command[0])
def test_every_subcommand_refuses_an_image_of_infinities_and_writes_nothing(files, capsys,
                                                                            command):
    names = dict(sharp=files / "sharp.tif", inf=files / "inf.tif", out=files / "out.tif",
                 folder=files)
    code, err, added = _run([part.format(**names) for part in command] + ["-q"], files,
                            capsys)
    assert code == EXIT_USAGE and added == []
    assert f"{files / 'inf.tif'} contains NaN or infinite values" in err


def test_a_deconvolver_and_the_chunked_path_refuse_a_result_that_overflows(case, tmp_path):
    psf, _, huge = case
    with pytest.raises(ValueError, match=OVERFLOW):
        Deconvolver(psf)(huge)
    with pytest.raises(ValueError, match=OVERFLOW):
        deconvolve_chunked(huge, psf, chunks=48, scheduler="synchronous")
    nan_psf = psf.copy()
    nan_psf[4, 4] = np.nan
    with pytest.raises(ValueError, match=r"^psf contains NaN or infinite values"):
        deconvolve_chunked(huge, nan_psf, chunks=48)
    with pytest.raises(ValueError, match=r"^psf contains NaN or infinite values"):
        Deconvolver(nan_psf)


@pytest.mark.parametrize("make_map", [
    lambda sharp, image: estimate_kernel_map(sharp, image, grid=(2, 2)),
    lambda sharp, image: fit_kernel_map(sharp, image, grid=(2, 2)),
    lambda sharp, image: average_beads(image, grid=(2, 2)),
], ids=["estimate_kernel_map", "fit_kernel_map", "average_beads(grid=)"])
def test_the_maps_refuse_an_image_of_infinities_by_name(case, make_map):
    _, pair, _ = case
    image = pair.blurred.copy()
    image[40, 40] = np.inf
    with pytest.raises(ValueError, match=r"^(blurred|image) contains NaN or infinite values"):
        make_map(pair.sharp, image)
