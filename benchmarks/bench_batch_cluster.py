"""Cluster benchmark: a plate deconvolved by ``psfkit deconvolve`` on one process, then with
whole files spread over a ``distributed.LocalCluster`` (``--scheduler ADDRESS``).

Run ``python benchmarks/bench_batch_cluster.py`` (``--quick``: 6 images of 256²). The
Markdown table goes to stdout and to ``benchmarks/results/batch_cluster.md``.

Noisy images blurred by one PSF are written as TIFFs with their voxel size and deconvolved
with a fixed method and iteration count: once by the command in this process, then by the
same command with ``--scheduler`` on a cluster of two worker processes of one thread each
(started before the clock runs), once with dask's worker environment and once with
``MALLOC_TRIM_THRESHOLD_`` unset in it (:data:`CLUSTER_RUNS`). The wall times are those of
the whole command (reading, deconvolving, writing outputs and sidecars); the time inside
one file's work is the median of the sidecars' ``seconds``. Every run's outputs are
compared with those of the first, bit for bit. On a machine of two cores shared with other
jobs the speed-up is bounded by the cores the other jobs leave.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import tifffile

import psfkit
from psfkit.cli import main
from psfkit.io import read_sidecar, save_psf, write_image
from psfkit.samples import blurred_pair

RESULTS = Path(__file__).parent / "results" / "batch_cluster.md"

#: The dask configuration of each cluster run. dask's nannies start worker processes with
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``); setting it
#: turns off glibc's adaptive thresholds, so every large temporary array is a fresh
#: mapping: the second run unsets it (``None``) to see what that costs.
CLUSTER_RUNS = {
    "cluster": {},
    "cluster_malloc": {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None},
}

RUN_NAMES = {
    "local": "one process",
    "cluster": "LocalCluster, 2 processes × 1 thread, dask's worker environment",
    "cluster_malloc": "the same, MALLOC_TRIM_THRESHOLD_ unset in the workers",
}


def _plate(folder: Path, count: int, side: int, psf) -> None:
    (folder / "plate").mkdir()
    for index in range(count):
        image = blurred_pair(psf, (side, side), scene_kind="blobs", noise=0.01,
                             rng=index).blurred
        write_image(folder / "plate" / f"well{index:02d}.tif", image, (0.1, 0.1))
    save_psf(folder / "psf.tif", psf, spacing=(0.1, 0.1))


def _timed_command(arguments) -> float:
    """Wall seconds of ``psfkit`` with ``arguments`` (which must succeed)."""
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(arguments)
    assert code == 0, code
    return time.perf_counter() - started


def run(count: int, side: int, iterations: int) -> dict:
    import distributed

    psf = psfkit.make_psf("gaussian", (25, 25), sigma=3.0)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _plate(folder, count, side, psf)
        command = ["deconvolve", str(folder / "plate"), "--psf", str(folder / "psf.tif"),
                   "--method", "richardson_lucy", "--iterations", str(iterations), "-q"]
        wall = {"local": _timed_command([*command, "-o", str(folder / "local")])}
        for run, environment in CLUSTER_RUNS.items():
            with dask.config.set(environment), distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True,
                    dashboard_address=None, scheduler_port=0) as cluster:
                wall[run] = _timed_command([*command, "-o", str(folder / run),
                                            "--scheduler", cluster.scheduler_address])
        names = sorted(name for name in os.listdir(folder / "local") if name.endswith(".tif"))
        rows = []
        for run, seconds in wall.items():
            identical = len(os.listdir(folder / run)) == 2 * count and all(
                np.array_equal(tifffile.imread(folder / "local" / name),
                               tifffile.imread(folder / run / name)) for name in names)
            work = float(np.median([read_sidecar(folder / run / name)["seconds"]
                                    for name in names]))
            rows.append((run, seconds, work, identical))
    return dict(count=count, side=side, iterations=iterations, rows=rows)


def table(row: dict) -> str:
    lines = [
        "# Batch on a dask cluster: whole files over the workers",
        "",
        "Made by `python benchmarks/bench_batch_cluster.py`.",
        "",
        f"{row['count']} images of {row['side']}², PSF (25, 25), Richardson–Lucy with "
        f"{row['iterations']} iterations, read and written as TIFF with sidecars "
        f"(psfkit {psfkit.__version__}, {platform.machine()}, {os.cpu_count()} cores "
        f"shared with other jobs). Wall seconds of the whole command.",
        "",
        "| run | wall s | wall s / file | median s in one file's work (sidecar) | "
        "outputs bit-identical to one process |",
        "|---|---|---|---|---|",
        *(f"| {RUN_NAMES[run]} | {wall:.1f} | {wall / row['count']:.2f} | {work:.2f} | "
          f"{identical} |" for run, wall, work, identical in row["rows"]),
        "",
    ]
    return "\n".join(lines)


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 images of 256²")
    quick = parser.parse_args().quick
    row = run(6, 256, 20) if quick else run(16, 512, 30)
    text = table(row)
    print(text)
    if not quick:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main_benchmark()
