"""Many files in one command: inputs from files, globs and folders, outputs by pattern or
into a folder, finished outputs skipped, a bad file reported and skipped, PSFs resampled
to each image's voxels, and a killed batch that restarts where it was."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

import psfkit
from psfkit.batch import DEFAULT_PATTERN, Job, plan_jobs
from psfkit.cli import EXIT_OK, EXIT_USAGE, main
from psfkit.io import read_image, read_sidecar, save_psf, write_image
from psfkit.samples import blurred_pair

PSF = psfkit.make_psf("gaussian", (11, 11), sigma=1.5)


def _plate(folder, count=3, shape=(64, 60), spacing=(0.1, 0.1)):
    """``count`` blurred images in ``folder/plate`` with their voxel size, and the PSF."""
    plate = folder / "plate"
    plate.mkdir()
    images = []
    for index in range(count):
        image = blurred_pair(PSF, shape, noise=0.01, rng=index).blurred
        write_image(plate / f"well{index}.tif", image, spacing)
        images.append(image)
    save_psf(folder / "psf.tif", PSF, spacing=(0.1, 0.1))
    return plate, images


def _names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_plan_jobs_takes_files_globs_and_folders_and_leaves_earlier_outputs_out(tmp_path):
    for name in ("a.tif", "b.tiff", "a_deconvolved.tif", "notes.txt", ".hidden.tif"):
        (tmp_path / name).write_bytes(b"")
    jobs, unmatched = plan_jobs([str(tmp_path), str(tmp_path / "a*.tif"),
                                 str(tmp_path / "none*.tif")])
    assert jobs == [Job(str(tmp_path / "a.tif"), str(tmp_path / "a_deconvolved.tif")),
                    Job(str(tmp_path / "b.tiff"), str(tmp_path / "b_deconvolved.tif"))]
    assert unmatched == [f"{tmp_path / 'none*.tif'} matches no file"]
    jobs, _ = plan_jobs([str(tmp_path / "a.tif")], output_folder="out", pattern="{name}.x.tif")
    assert jobs == [Job(str(tmp_path / "a.tif"), os.path.join("out", "a.tif.x.tif"))]
    assert DEFAULT_PATTERN == "{stem}_deconvolved.tif"


def test_an_output_pattern_with_another_field_is_refused_naming_the_fields(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"")
    with pytest.raises(ValueError, match=r"must use only \{stem\} and \{name\}"):
        plan_jobs([str(tmp_path / "a.tif")], pattern="{index}.tif")


def test_a_folder_is_deconvolved_into_another_and_a_bad_file_is_one_line(tmp_path, capsys):
    plate, images = _plate(tmp_path)
    (plate / "broken.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    code = main(["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif"), "-o", str(out),
                 "--method", "richardson_lucy", "--iterations", "5", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE  # a file was bad, the computation never failed
    assert "error: broken.tif: cannot read the image TIFF" in err and "Traceback" not in err
    assert "3 written, 0 skipped, 1 failed" in err
    assert _names(out) == sorted(f"well{i}_deconvolved.tif{suffix}" for i in range(3)
                                 for suffix in ("", ".json"))
    written = read_image(out / "well1_deconvolved.tif")
    assert written.spacing == pytest.approx((0.1, 0.1)) and written.unit == "µm"
    np.testing.assert_array_equal(written.data, psfkit.deconvolve(
        images[1], PSF, "richardson_lucy", iterations=5))


def test_a_glob_onto_a_file_name_is_refused_and_creates_nothing(tmp_path, capsys):
    plate, _ = _plate(tmp_path, count=2)
    code = main(["deconvolve", str(plate / "*.tif"), "--psf", str(tmp_path / "psf.tif"),
                 "-o", str(tmp_path / "out.tif"), "-q"])
    assert code == EXIT_USAGE
    assert "names a file; for many images (a glob or a folder) name a folder" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out.tif").exists()


def test_a_glob_that_holds_the_psf_file_does_not_deconvolve_the_psf(tmp_path, capsys):
    plate, _ = _plate(tmp_path, count=2)
    save_psf(plate / "psf.tif", PSF, spacing=(0.1, 0.1))
    code = main(["deconvolve", str(plate / "*.tif"), "--psf", str(plate / "psf.tif"),
                 "-o", str(tmp_path / "out"), "--method", "wiener", "-q"])
    assert code == EXIT_OK
    assert _names(tmp_path / "out") == sorted(f"well{i}_deconvolved.tif{suffix}"
                                              for i in range(2) for suffix in ("", ".json"))


def test_finished_outputs_are_skipped_unless_overwrite(tmp_path, capsys):
    plate, _ = _plate(tmp_path, count=2)
    arguments = ["deconvolve", str(plate / "*.tif"), "--psf", str(tmp_path / "psf.tif"),
                 "--output-pattern", "{stem}.out.tif", "--method", "wiener", "-q"]
    assert main(arguments) == EXIT_OK
    first = (plate / "well0.out.tif").stat().st_mtime_ns
    assert main(arguments) == EXIT_OK
    assert "0 written, 2 skipped (output exists; --overwrite replaces it)" in (
        capsys.readouterr().err)
    assert (plate / "well0.out.tif").stat().st_mtime_ns == first
    os.remove(plate / "well1.out.tif.json")  # an output without its sidecar is unfinished
    assert main(arguments) == EXIT_OK
    assert "1 written, 1 skipped" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == EXIT_OK
    assert "2 written, 0 skipped" in capsys.readouterr().err


def test_the_psf_is_resampled_to_an_images_voxels_with_a_line_saying_so(tmp_path, capsys):
    plate, _ = _plate(tmp_path, count=1)
    coarse = blurred_pair(psfkit.resample_psf(PSF, 0.1, 0.15), (64, 60), noise=0.01).blurred
    write_image(plate / "well0.tif", coarse, (0.15, 0.15))
    out = tmp_path / "out"
    assert main(["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif"), "-o",
                 str(out), "--method", "richardson_lucy", "--iterations", "5", "-q"]) == EXIT_OK
    err = capsys.readouterr().err
    assert ("resampled the PSF from (0.1, 0.1) µm voxels to the image's (0.15, 0.15) µm: "
            "shape (11, 11) -> (7, 7)") in err
    expected = psfkit.deconvolve(coarse, psfkit.resample_psf(PSF, 0.1, 0.15),
                                 "richardson_lucy", iterations=5)
    np.testing.assert_array_equal(tifffile.imread(out / "well0_deconvolved.tif"), expected)
    assert read_sidecar(out / "well0_deconvolved.tif")["psf"]["resampled"] == {
        "from": [0.1, 0.1], "to": [0.15, 0.15]}


def test_an_image_without_voxel_size_takes_the_psfs_and_says_so(tmp_path, capsys):
    plate, _ = _plate(tmp_path, count=1)
    tifffile.imwrite(plate / "well0.tif", blurred_pair(PSF, (64, 60), noise=0.01).blurred)
    assert main(["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif"), "-o",
                 str(tmp_path / "out"), "--method", "wiener", "-q"]) == EXIT_OK
    assert ("well0.tif gives no voxel size along y, x; taken as the PSF's (0.1, 0.1) µm"
            in capsys.readouterr().err)
    assert read_image(tmp_path / "out" / "well0_deconvolved.tif").spacing == pytest.approx(
        (0.1, 0.1))


def test_same_choices_applies_the_first_images_choices_to_all(tmp_path):
    plate, images = _plate(tmp_path, count=2)
    out = tmp_path / "out"
    assert main(["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif"), "-o", str(out),
                 "--same-choices", "-q"]) == EXIT_OK
    first = read_sidecar(out / "well0_deconvolved.tif")["parameters"]
    second = read_sidecar(out / "well1_deconvolved.tif")["parameters"]
    assert first == second
    np.testing.assert_array_equal(tifffile.imread(out / "well1_deconvolved.tif"),
                                  psfkit.deconvolve(images[1], PSF, **first))


def test_many_inputs_need_a_folder_or_a_pattern(tmp_path, capsys):
    plate, _ = _plate(tmp_path, count=2)
    assert main(["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif")]) == EXIT_USAGE
    assert "name the output: -o FILE for one image" in capsys.readouterr().err


def _batch_command(folder):
    return [sys.executable, "-m", "psfkit.cli", "deconvolve", str(folder / "plate"),
            "--psf", str(folder / "psf.tif"), "-o", str(folder / "out"),
            "--method", "richardson_lucy", "--iterations", "40", "-q"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_batch_killed_after_its_fourth_output_finishes_the_rest_on_restart(tmp_path, stop):
    _plate(tmp_path, count=10, shape=(192, 192))
    out = tmp_path / "out"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(_batch_command(tmp_path), env=environment,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "well3_deconvolved.tif.json").exists():  # the 4th output's sidecar
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(stop)
    process.communicate(timeout=120)
    finished = [name for name in _names(out) if name.endswith(".json")]
    assert 4 <= len(finished) < 10
    restart = subprocess.run(_batch_command(tmp_path), env=environment, capture_output=True,
                             text=True, timeout=600)
    assert restart.returncode == EXIT_OK
    assert f"{10 - len(finished)} written, {len(finished)} skipped" in restart.stderr
    assert _names(out) == sorted(f"well{i}_deconvolved.tif{suffix}" for i in range(10)
                                 for suffix in ("", ".json"))
