"""``psfkit deconvolve`` on TIFF files: the same numbers as the library, blocks that agree
with the whole, atomic output, and refusals with clear messages and exit codes."""

import io
import os
import shlex
import sys

import numpy as np
import pytest
import tifffile

import psfkit
from psfkit.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from psfkit.io import read_sidecar
from psfkit.models import make_psf
from psfkit.provenance import deconvolve_command
from psfkit.samples import blurred_pair


@pytest.fixture
def files(tmp_path):
    psf = make_psf("gaussian", (15, 15), sigma=2.0)
    pair = blurred_pair(psf, (160, 150), noise=0.01)
    image_path, psf_path = tmp_path / "in.tif", tmp_path / "psf.tif"
    tifffile.imwrite(image_path, pair.blurred)
    tifffile.imwrite(psf_path, psf)
    return pair.blurred, psf, str(image_path), str(psf_path), tmp_path


def _metadata(path) -> dict:
    """The parameters in an output's sidecar, and the name of its input."""
    record = read_sidecar(path)
    return dict(record["parameters"], source=os.path.basename(record["inputs"][0]["path"]))


def test_output_equals_the_library_result_and_records_the_parameters(files, capsys):
    image, psf, image_path, psf_path, folder = files
    output = folder / "out.tif"
    code = main(["deconvolve", image_path, "--psf", psf_path, "-o", str(output),
                 "--method", "richardson_lucy", "--iterations", "12"])
    assert code == EXIT_OK
    written = tifffile.imread(output)
    expected = psfkit.deconvolve(image, psf, "richardson_lucy", iterations=12)
    assert written.dtype == np.float32 and written.shape == image.shape
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    metadata = _metadata(output)
    assert metadata["method"] == "richardson_lucy" and metadata["iterations"] == 12
    assert metadata["source"] == "in.tif"
    err = capsys.readouterr().err
    assert "12/12" in err and "wrote" in err
    assert sorted(os.listdir(folder)) == ["in.tif", "out.tif", "out.tif.json", "psf.tif"]


def test_the_sidecar_of_an_automatic_run_records_the_risk_choice(files):
    image, psf, image_path, psf_path, folder = files
    output = folder / "out.tif"
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", str(output), "-q"]) \
        == EXIT_OK
    record = read_sidecar(output)
    _, info = psfkit.deconvolve(image, psf, return_info=True)
    assert record["choice"]["summary"] == info.choice.summary
    assert record["choice"]["winner"][0] == record["method"] == info.method
    assert len(record["choice"]["candidates"]) == len(info.choice.candidates)
    # an explicit method makes no choice
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", str(output), "-q",
                 "--method", "wiener", "--overwrite"]) == EXIT_OK
    assert read_sidecar(output)["choice"] is None


def test_blocks_on_request_match_the_whole_image_within_one_percent(files):
    _image, _psf, image_path, psf_path, folder = files
    whole, blocks = folder / "whole.tif", folder / "blocks.tif"
    common = ["--psf", psf_path, "--method", "richardson_lucy", "--iterations", "15", "-q"]
    assert main(["deconvolve", image_path, "-o", str(whole), *common]) == EXIT_OK
    assert main(["deconvolve", image_path, "-o", str(blocks), *common, "--chunks", "80,75",
                 "--scheduler", "synchronous"]) == EXIT_OK
    whole, blocks = tifffile.imread(whole), tifffile.imread(blocks)
    assert np.linalg.norm(blocks - whole) / np.linalg.norm(whole) < 0.01


def test_frames_along_a_leading_axis_are_deconvolved_alike(files):
    image, _psf, _, psf_path, folder = files
    stack_path, output = folder / "stack.tif", folder / "out.tif"
    tifffile.imwrite(stack_path, np.stack([image, image]))
    code = main(["deconvolve", str(stack_path), "--psf", psf_path, "-o", str(output),
                 "--method", "wiener", "-q"])
    assert code == EXIT_OK
    result = tifffile.imread(output)
    assert result.shape == (2, *image.shape)
    np.testing.assert_allclose(result[0], result[1], atol=1e-6)


def test_refuses_to_overwrite_its_input_even_when_told_to(files, capsys):
    image, _, image_path, psf_path, _ = files
    code = main(["deconvolve", image_path, "--psf", psf_path, "-o", image_path, "--overwrite"])
    assert code == EXIT_USAGE
    assert "refusing to overwrite the input" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(image_path), image)


def test_an_existing_output_is_kept_without_overwrite(files, capsys):
    _, _, image_path, psf_path, folder = files
    output = folder / "out.tif"
    output.write_bytes(b"precious")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", str(output)]) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"


class _FailingTerminal(io.StringIO):
    """A stderr on which the first progress bar fails, as a full disk or exhausted memory
    would make it fail in the middle of a run."""

    def write(self, text):
        if "[" in text:
            raise MemoryError("out of memory")
        return super().write(text)


def test_a_failed_run_leaves_no_output_and_no_temporary_file(files, monkeypatch):
    _, _, image_path, psf_path, folder = files
    terminal = _FailingTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)  # the run fails inside its progress callback
    code = main(["deconvolve", image_path, "--psf", psf_path, "-o", str(folder / "out.tif"),
                 "--method", "richardson_lucy", "--iterations", "5"])
    assert code == EXIT_FAILED
    assert "MemoryError" in terminal.getvalue()
    assert sorted(os.listdir(folder)) == ["in.tif", "psf.tif"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing image", "image file not found"),
        ("nan", "NaN"),
        ("psf too large", "larger than"),
        ("not a tiff", "cannot read"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_code_2(files, change, message, capsys):
    image, _, image_path, psf_path, folder = files
    if change == "missing image":
        image_path = str(folder / "missing.tif")
    elif change == "nan":
        image = image.copy()
        image[5, 5] = np.nan
        tifffile.imwrite(image_path, image)
    elif change == "psf too large":
        tifffile.imwrite(psf_path, np.ones((201, 201), np.float32))
    else:
        with open(image_path, "wb") as handle:
            handle.write(b"not a tiff at all")
    output = folder / "out.tif"
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", str(output)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not output.exists()
    assert sorted(os.listdir(folder)) == sorted(["in.tif", "psf.tif"])


def test_bad_arguments_are_refused_by_the_parser(files, capsys):
    _, _, image_path, psf_path, folder = files
    with pytest.raises(SystemExit) as stop:
        main(["deconvolve", image_path, "--psf", psf_path, "-o", str(folder / "o.tif"),
              "--regularization", "-1"])
    assert stop.value.code == EXIT_USAGE
    assert "must be >= 0" in capsys.readouterr().err


# ----------------------------------------------------------------------- issue #17


def _run(arguments, folder, capsys):
    """``main(arguments)``'s exit code, its stderr, and whether it left any file but the
    inputs in ``folder``."""
    try:
        code = main(arguments)
    except SystemExit as stop:  # argparse's refusals
        code = stop.code
    err = capsys.readouterr().err
    left = sorted(set(os.listdir(folder)) - {"in.tif", "psf.tif"})
    return code, err, left


def test_an_all_zero_first_frame_of_a_stack_does_not_choose_for_the_others(files):
    image, psf, _, psf_path, folder = files
    stack_path, output = folder / "stack.tif", folder / "out.tif"
    tifffile.imwrite(stack_path, np.stack([0 * image, image, image]), photometric="minisblack")
    code = main(["deconvolve", str(stack_path), "--psf", psf_path, "-o", str(output), "-q"])
    assert code == EXIT_OK
    result = tifffile.imread(output)
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result[1], psfkit.deconvolve(image, psf), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("options", "message"), [
    (["--background", "nan"], "argument --background: value must be a finite number, got nan"),
    (["--background", "inf"], "argument --background: value must be a finite number, got inf"),
    (["--background", "nope"], "argument --background: expected a number, got 'nope'"),
    (["--regularization", "inf", "--method", "tikhonov"],
     "argument --regularization: value must be a finite number, got inf"),
    (["--regularization", "nope"],
     "argument --regularization: expected a number or 'auto', got 'nope'"),
    (["--memory-limit", "0"], "argument --memory-limit: value must be positive, got 0"),
    (["--memory-limit", "nan"], "argument --memory-limit: value must be a finite number"),
    (["--depth", "nan"], "argument --depth: expected an integer, got 'nan'"),
    (["--depth", "-1"], "argument --depth: must be >= 0, got -1"),
    (["--regularization", "1e300", "--method", "rl_tv"],
     "regularization must satisfy 0 <= regularization <= 1e+06, got 1e+300"),
])
def test_a_bad_number_is_one_line_naming_the_option_and_nothing_is_written(files, capsys,
                                                                          options, message):
    _, _, image_path, psf_path, folder = files
    code, err, left = _run(["deconvolve", image_path, "--psf", psf_path, "-o",
                            str(folder / "out.tif"), "-q", *options], folder, capsys)
    assert code == EXIT_USAGE and message in err
    assert "Traceback" not in err and left == []


def test_a_non_finite_result_is_an_error_and_never_a_file(files, capsys):
    image, _, image_path, psf_path, folder = files
    # unregularised, the Wiener filter amplifies a 1e38 image beyond float32's range
    tifffile.imwrite(image_path, (image / image.max() * 1e38).astype(np.float32))
    code, err, left = _run(["deconvolve", image_path, "--psf", psf_path, "-o",
                            str(folder / "out.tif"), "-q", "--method", "wiener",
                            "--regularization", "0", "--background", "0"], folder, capsys)
    assert code == EXIT_USAGE and "NaN or infinite" in err
    assert "Traceback" not in err and left == []


def test_an_output_naming_a_folder_gets_the_output_in_it(files, capsys):
    _, _, image_path, psf_path, folder = files
    (folder / "results").mkdir()
    code, err, left = _run(["deconvolve", image_path, "--psf", psf_path, "-o",
                            str(folder / "results"), "--method", "wiener", "-q"], folder,
                           capsys)
    assert code == EXIT_OK and "1 written, 0 skipped, 0 failed" in err
    assert left == ["results"]
    assert sorted(os.listdir(folder / "results")) == ["in_deconvolved.tif",
                                                       "in_deconvolved.tif.json"]


def _read_only_folder(tmp_path):
    """A folder no file can be created in: a chmod 555 one, or for root (whom permission
    bits do not stop) sysfs, which refuses new files to everyone."""
    if os.geteuid() == 0:
        return "/sys"
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)


def test_an_output_in_a_read_only_folder_is_one_line(files, capsys):
    _, _, image_path, psf_path, folder = files
    output = os.path.join(_read_only_folder(folder), "psfkit-out.tif")
    code, err, _ = _run(["deconvolve", image_path, "--psf", psf_path, "-o", output], folder,
                        capsys)
    assert code == EXIT_USAGE and "output folder" in err and "Traceback" not in err
    assert not os.path.exists(output)


def test_a_dask_worker_killed_for_memory_is_one_line_and_leaves_nothing(tmp_path, capsys):
    import dask
    import distributed

    rng = np.random.default_rng(0)
    image_path, psf_path = tmp_path / "in.tif", tmp_path / "psf.tif"
    tifffile.imwrite(image_path, rng.random((3000, 3000), dtype=np.float32))
    tifffile.imwrite(psf_path, make_psf("gaussian", (9, 9), sigma=1.5))
    # one 3000x3000 block needs ~400 MiB: a 300 MiB worker is killed, and not retried
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "logging.distributed": "critical"}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     memory_limit="300MiB", dashboard_address=None) as cluster:
        code, err, left = _run(
            ["deconvolve", str(image_path), "--psf", str(psf_path), "-o",
             str(tmp_path / "out.tif"), "-q", "--scheduler", cluster.scheduler_address,
             "--chunks", "3000", "--method", "richardson_lucy", "--iterations", "3"],
            tmp_path, capsys)
    assert code == EXIT_FAILED
    assert "failed: KilledWorker" in err and "exceeding its memory" in err
    assert "Traceback" not in err and left == []


def test_demo_onto_a_file_is_one_line_and_keeps_the_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    code, err, _ = _run(["demo", "-o", str(target)], tmp_path, capsys)
    assert code == EXIT_USAGE and "is a file; name a folder" in err
    assert "Traceback" not in err and target.read_text() == "precious"


def test_demo_into_a_read_only_folder_is_one_line(tmp_path, capsys):
    output = os.path.join(_read_only_folder(tmp_path), "psfkit-demo")
    code, err, _ = _run(["demo", "-o", output], tmp_path, capsys)
    assert code == EXIT_USAGE and "psfkit demo: error:" in err and "Traceback" not in err
    assert not os.path.exists(output)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--depth", "nan", "argument --depth: expected an integer, got 'nan'"),
    ("--iterations", "0", "argument --iterations: must be >= 1, got 0"),
    ("--method", "nope", "argument --method: invalid choice: 'nope'"),
])
def test_a_refusal_by_the_parser_is_one_line_pointing_at_help(files, capsys, option, value,
                                                              message):
    _, _, image_path, psf_path, folder = files
    code, err, left = _run(["deconvolve", image_path, "--psf", psf_path,
                            "-o", str(folder / "o.tif"), option, value], folder, capsys)
    assert code == EXIT_USAGE and left == []
    assert err.count("\n") == 1 and err.startswith("psfkit deconvolve: error: ")
    assert message in err and err.rstrip().endswith("(see psfkit deconvolve -h)")


def test_an_absurd_iteration_count_is_one_line_and_nothing_is_written(files, capsys):
    _, _, image_path, psf_path, folder = files
    code, err, left = _run(["deconvolve", image_path, "--psf", psf_path,
                            "-o", str(folder / "o.tif"), "--iterations", "1000000000000"],
                           folder, capsys)
    assert code == EXIT_USAGE and left == []
    assert "iterations must be an int <= 100000" in err and err.count("error:") == 1


@pytest.mark.parametrize("attempt", range(3))
def test_more_ctrl_c_during_the_clean_up_still_leave_no_file_and_exit_130(tmp_path, attempt):
    """A real process, interrupted once its temporary output exists, then again and again
    until it has exited, so that signals land during its clean-up: every later one is
    ignored, the temporary file is removed and the exit code is 130."""
    import signal
    import subprocess
    import time

    psf = make_psf("gaussian", (9, 9), sigma=1.5)
    tifffile.imwrite(tmp_path / "in.tif", blurred_pair(psf, (128, 128)).blurred)
    tifffile.imwrite(tmp_path / "psf.tif", psf)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(
        [sys.executable, "-m", "psfkit.cli", "deconvolve", str(tmp_path / "in.tif"), "--psf",
         str(tmp_path / "psf.tif"), "-o", str(tmp_path / "out.tif"), "--method",
         "richardson_lucy", "--iterations", "100000"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None and not any(
                name.startswith(".out.tif.") for name in os.listdir(tmp_path)):
            time.sleep(0.02)  # polling for the state, not asserting on time
        assert process.poll() is None, process.stderr.read()
        while process.poll() is None:  # Ctrl-C, again and again, until it has exited
            process.send_signal(signal.SIGINT)
            time.sleep(0.001)
        stderr = process.communicate(timeout=300)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "psf.tif"]
    assert stderr.strip().splitlines()[-1].startswith(
        "psfkit deconvolve: interrupted; the output in progress was not written")
    assert "Traceback" not in stderr


@pytest.mark.parametrize("options", [
    [],                                                        # automatic, frame at once
    ["--method", "richardson_lucy", "--iterations", "6", "--chunks", "80,75",
     "--scheduler", "synchronous"],                            # in blocks
    ["--method", "wiener", "--dtype", "uint16", "--scale", "50"],  # an integer output
], ids=["automatic", "blocks", "uint16"])
def test_the_recorded_command_run_again_remakes_the_output_bit_for_bit(files, options):
    _, image_path, psf_path, folder = files[0], files[2], files[3], files[4]
    output = str(folder / "out.tif")
    assert main(["deconvolve", image_path, "--psf", psf_path, "-o", output, "-q",
                 *options]) == EXIT_OK
    command = shlex.split(read_sidecar(output)["command"])
    assert command[:2] == ["psfkit", "deconvolve"]
    assert main([*command[1:], "-q"]) == EXIT_OK  # the recorded words, and -q
    again = tifffile.imread(output + ".again.tif")
    written = tifffile.imread(output)
    assert again.dtype == written.dtype
    np.testing.assert_array_equal(again, written)


def test_the_napari_widgets_command_names_the_request_and_leaves_automatic_choices_out():
    command = deconvolve_command("a b.tif", "psf.tif", "out.tif", request={
        "method": "rl_tv", "iterations": 30, "regularization": "auto", "acceleration": None,
        "background": 2})
    assert command == ("psfkit deconvolve 'a b.tif' --psf psf.tif -o out.tif --method rl_tv "
                       "--iterations 30 --no-acceleration --background 2.0")


def test_a_scheduler_address_where_none_answers_is_one_line_and_writes_nothing(files,
                                                                               capsys):
    import dask

    _, _, image_path, psf_path, folder = files
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, err, left = _run(["deconvolve", image_path, "--psf", psf_path, "-o",
                                str(folder / "out.tif"), "--scheduler", "tcp://127.0.0.1:9"],
                               folder, capsys)
    assert code == EXIT_USAGE
    assert err.startswith("psfkit deconvolve: error: cannot reach the dask scheduler "
                          "tcp://127.0.0.1:9 (")
    assert "check the address, e.g. tcp://host:8786" in err and "Traceback" not in err
    assert left == [] and not (folder / "out.tif").exists()
