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
    assert ("psfkit deconvolve: well0.tif: no voxel size along y, x; taken as the PSF's "
            "(0.1, 0.1) µm\n") in capsys.readouterr().err
    output = tmp_path / "out" / "well0_deconvolved.tif"
    assert read_image(output).spacing == pytest.approx((0.1, 0.1))
    assert read_sidecar(output)["assumed"] == ("no voxel size along y, x; taken as the "
                                               "PSF's (0.1, 0.1) µm")


def test_a_plate_without_voxel_sizes_says_each_assumption_once_with_its_count(tmp_path,
                                                                             capsys):
    plate, _ = _plate(tmp_path, count=6)
    for index in range(5):  # all but well5 lose their voxel size
        tifffile.imwrite(plate / f"well{index}.tif", tifffile.imread(plate / f"well{index}.tif"))
    save_psf(tmp_path / "plain_psf.tif", PSF)  # a PSF without voxel size
    out = tmp_path / "out"
    assert main(["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif"), "-o", str(out),
                 "--method", "wiener", "-q"]) == EXIT_OK
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "psfkit deconvolve: no voxel size along y, x; taken as the PSF's (0.1, 0.1) µm, for "
        "5 of 6 files: well0.tif, well1.tif, well2.tif and 2 more",
        "psfkit deconvolve: 6 written, 0 skipped, 0 failed"]
    recorded = [read_sidecar(out / f"well{index}_deconvolved.tif")["assumed"]
                for index in range(6)]
    assert recorded == ["no voxel size along y, x; taken as the PSF's (0.1, 0.1) µm"] * 5 + [
        None]
    assert main(["deconvolve", str(plate), "--psf", str(tmp_path / "plain_psf.tif"), "-o",
                 str(out), "--method", "wiener", "-q", "--overwrite"]) == EXIT_OK
    assert capsys.readouterr().err.splitlines()[:2] == [
        "psfkit deconvolve: neither the image nor the PSF gives a voxel size; the PSF is "
        "taken to be sampled like the image, for 5 of 6 files: well0.tif, well1.tif, "
        "well2.tif and 2 more",
        "psfkit deconvolve: well5.tif: the PSF gives no voxel size along y, x; it is taken "
        "to be sampled like the image ((0.1, 0.1) µm)"]


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


# ------------------------------------------------------------------ whole files on a cluster


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread; no dashboard and a free port, so that runs in
    parallel do not clash on 8787 or 8786, and time for the workers to start on a loaded
    machine."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "120s"}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, scheduler_port=0) as cluster:
        yield cluster


def _plate_with_a_bad_file(folder, count=6):
    plate, images = _plate(folder, count=count)
    (plate / "broken.tif").write_bytes(b"not a tiff")
    return plate, images


def _deconvolve_plate(folder, out, *options):
    return main(["deconvolve", str(folder / "plate"), "--psf", str(folder / "psf.tif"),
                 "-o", str(out), "--method", "richardson_lucy", "--iterations", "5", "-q",
                 *options])


def _outputs(out) -> dict:
    return {name: tifffile.imread(out / name) for name in _names(out)
            if name.endswith(".tif")}


def test_a_batch_on_a_cluster_writes_what_the_local_batch_writes_bit_for_bit(
        tmp_path, cluster, capsys):
    _plate_with_a_bad_file(tmp_path)
    assert _deconvolve_plate(tmp_path, tmp_path / "local") == EXIT_USAGE
    capsys.readouterr()
    out = tmp_path / "cluster"
    assert _deconvolve_plate(tmp_path, out, "--scheduler", cluster.scheduler_address) == (
        EXIT_USAGE)  # the bad file, as in the local batch
    err = capsys.readouterr().err
    assert ("psfkit deconvolve: error: broken.tif: cannot read the image TIFF "
            f"{tmp_path / 'plate' / 'broken.tif'}: not a TIFF file") in err
    assert err.splitlines()[-1] == "psfkit deconvolve: 6 written, 0 skipped, 1 failed"
    local, spread = _outputs(tmp_path / "local"), _outputs(out)
    assert sorted(spread) == [f"well{i}_deconvolved.tif" for i in range(6)]
    for name, image in local.items():
        np.testing.assert_array_equal(spread[name], image)
        assert read_sidecar(out / name)["blocks"] is None  # each file at once on a worker
    assert read_sidecar(out / "well2_deconvolved.tif")["command"] == read_sidecar(
        tmp_path / "local" / "well2_deconvolved.tif")["command"].replace(
        str(tmp_path / "local"), str(out))


def test_a_rerun_on_a_cluster_skips_the_finished_outputs_unless_overwrite(
        tmp_path, cluster, capsys):
    _plate_with_a_bad_file(tmp_path, count=3)
    out, address = tmp_path / "out", cluster.scheduler_address
    assert _deconvolve_plate(tmp_path, out, "--scheduler", address) == EXIT_USAGE
    written = {name: (out / name).stat().st_mtime_ns for name in _names(out)}
    capsys.readouterr()
    assert _deconvolve_plate(tmp_path, out, "--scheduler", address) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == (
        "psfkit deconvolve: 0 written, 3 skipped (output exists; --overwrite replaces it), "
        "1 failed")
    assert {name: (out / name).stat().st_mtime_ns for name in _names(out)} == written
    assert _deconvolve_plate(tmp_path, out, "--scheduler", address, "--overwrite") == (
        EXIT_USAGE)
    assert "3 written, 0 skipped, 1 failed" in capsys.readouterr().err
    assert all((out / name).stat().st_mtime_ns != mtime for name, mtime in written.items())


def test_same_choices_on_a_cluster_applies_the_first_written_images_choices_to_all(
        tmp_path, cluster):
    plate, _ = _plate(tmp_path, count=3)
    common = ["deconvolve", str(plate), "--psf", str(tmp_path / "psf.tif"), "-q",
              "--same-choices"]
    assert main([*common, "-o", str(tmp_path / "local")]) == EXIT_OK
    assert main([*common, "-o", str(tmp_path / "cluster"), "--scheduler",
                 cluster.scheduler_address]) == EXIT_OK
    first = read_sidecar(tmp_path / "cluster" / "well0_deconvolved.tif")["parameters"]
    for index in range(3):
        name = f"well{index}_deconvolved.tif"
        assert read_sidecar(tmp_path / "cluster" / name)["parameters"] == first
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "cluster" / name),
                                      tifffile.imread(tmp_path / "local" / name))


def test_a_file_with_frames_too_large_for_a_worker_goes_in_blocks_from_here(
        tmp_path, cluster, monkeypatch):
    plate, _ = _plate(tmp_path, count=2)
    write_image(plate / "large.tif", blurred_pair(PSF, (160, 150), noise=0.01).blurred,
                (0.1, 0.1))
    # here a frame over 64 × 64 float32 is too large; the workers still take the others
    monkeypatch.setattr(psfkit.frames, "CHUNKED_FRAME_BYTES", 4 * 64 * 64)
    out = tmp_path / "out"
    assert _deconvolve_plate(tmp_path, out, "--scheduler", cluster.scheduler_address) == (
        EXIT_OK)
    assert read_sidecar(out / "large_deconvolved.tif")["blocks"] is not None
    assert [read_sidecar(out / f"well{i}_deconvolved.tif")["blocks"] for i in range(2)] == [
        None, None]


def test_run_jobs_on_a_client_runs_each_job_on_a_worker_and_keeps_the_failures_kind(
        tmp_path, cluster):
    from distributed import Client

    from psfkit.batch import JobFailure, run_jobs

    def work(job):  # defined here, so that it travels to the workers by value
        if job.input.endswith("bad"):
            raise JobFailure("the disk is full", usage=False)
        with open(job.output, "w") as handle:
            handle.write(job.input)
        with open(job.output + ".json", "w") as handle:
            handle.write("{}")
        return os.getpid()

    jobs = [Job(name, str(tmp_path / f"{name}.out")) for name in ("a", "b", "bad")]
    finished, lines, counts, again = {}, [], [], []
    with Client(cluster, set_as_default=False) as client:
        result = run_jobs(jobs, work, client=client, report=lines.append,
                          done=lambda job, pid: finished.update({job.input: pid}),
                          progress=lambda done, total: counts.append((done, total)))
        rerun = run_jobs(jobs, work, client=client, report=lines.append,
                         progress=lambda done, total: again.append((done, total)))
    assert rerun.skipped == jobs[:2] and again == [(3, 3)]  # the skipped count as finished
    assert sorted(finished) == ["a", "b"] and os.getpid() not in finished.values()
    assert (tmp_path / "a.out").read_text() == "a"
    assert lines == ["bad: the disk is full"] * 2
    assert result.exit_code() == 1  # a computation failed, not a file: usage travelled
    assert counts == [(1, 3), (2, 3), (3, 3)]  # one call per job, in the order they end


def test_an_interrupted_batch_on_a_client_cancels_the_files_not_started(tmp_path, cluster):
    from distributed import Client

    from psfkit.batch import run_jobs

    release = tmp_path / "release"

    def work(job):  # the first job returns at once, the others wait to be released
        deadline = time.monotonic() + 60
        while job.input != "0" and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return job.input

    def interrupt(job, value):
        raise KeyboardInterrupt

    jobs = [Job(str(index), str(tmp_path / f"{index}.out")) for index in range(8)]
    with Client(cluster, set_as_default=False) as client:
        with pytest.raises(KeyboardInterrupt) as interrupted:  # kept: it holds the batch
            run_jobs(jobs, work, client=client, done=interrupt)
        release.touch()
        deadline = time.monotonic() + 60
        while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
            assert time.monotonic() < deadline, "the batch's tasks were not cancelled"
            time.sleep(0.05)
        assert interrupted.type is KeyboardInterrupt


def _sidecars(folder) -> list[str]:
    return [name for name in _names(folder) if name.endswith(".json")] if folder.exists() \
        else []


def test_ctrl_c_during_a_batch_on_a_cluster_cancels_it_and_a_restart_finishes_it(
        tmp_path, cluster):
    from distributed import Client

    _plate(tmp_path, count=10, shape=(192, 192))
    out = tmp_path / "out"
    command = [*_batch_command(tmp_path), "--scheduler", cluster.scheduler_address]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not _sidecars(out):  # the first output is complete
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err.strip().endswith("psfkit deconvolve: interrupted; the files not yet started "
                                "were cancelled, those a worker had started are finished "
                                "whole (run the command again to go on)")
    with Client(cluster, set_as_default=False) as client:  # those under way finish first
        while any(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finished = _sidecars(out)
    assert 1 <= len(finished) < 10
    restart = subprocess.run(command, env=environment, capture_output=True, text=True,
                             timeout=600)
    assert restart.returncode == EXIT_OK
    assert f"{10 - len(finished)} written, {len(finished)} skipped" in restart.stderr
    assert _names(out) == sorted(f"well{i}_deconvolved.tif{suffix}" for i in range(10)
                                 for suffix in ("", ".json"))
