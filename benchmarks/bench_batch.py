"""Batch benchmark: the set-up a :class:`psfkit.Deconvolver` pays once, against separate
:func:`psfkit.deconvolve` calls.

Run ``python benchmarks/bench_batch.py`` (``--quick``: 6 images of 256²). The Markdown table
goes to stdout and to ``benchmarks/results/batch.md``.

Twenty noisy 512² images blurred by one PSF are deconvolved with a fixed method and
iteration count, in one fresh process: three times by a new Deconvolver each (the first
batch pays every cold cost: the FFT plans, the PSF's preparation, its OTF; the others their
own Deconvolver's set-up), then by twenty separate ``deconvolve`` calls. The *steady
per-image time* is the median time of the images after each batch's first; the bar (issue
#15) is a batch total of at most 1.1 × 20 × that, judged on the best batch since other
jobs on a shared machine only add time. Wall and CPU times are both given. The results of
the two ways are compared bit for bit.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

import psfkit
from psfkit.samples import blurred_pair

RESULTS = Path(__file__).parent / "results" / "batch.md"

#: The bar of issue #15: a batch costs at most this times the steady per-image time.
BAR = 1.1


def _timed(function, images) -> tuple[np.ndarray, list[np.ndarray]]:
    """Wall and CPU seconds of ``function(image)`` per image (rows: wall, CPU), and the
    results."""
    times, results = [], []
    for image in images:
        wall, cpu = time.perf_counter(), time.process_time()
        results.append(function(image))
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return np.asarray(times).T, results


def run_case(method: str, options: dict, psf, images, repeats: int) -> dict:
    """``repeats`` batches of ``images`` through a new Deconvolver each (the first one cold),
    then separate calls; their times (wall and CPU) and agreement."""
    batches = []
    for _ in range(repeats):
        deconvolver = psfkit.Deconvolver(psf, method, **options)
        times, batch_results = _timed(deconvolver, images)
        batches.append(times)
    separate, separate_results = _timed(
        lambda image: psfkit.deconvolve(image, psf, method, **options), images)
    # the steady per-image time: the median over every image but each batch's first
    steady = np.median(np.concatenate([times[:, 1:] for times in batches], axis=1), axis=1)
    totals = np.array([times.sum(axis=1) for times in batches])  # (repeats, wall/CPU)
    ratios = totals / (len(images) * steady)
    return dict(
        case=f"{method} {options}", count=len(images), repeats=repeats, steady=steady,
        first=batches[0][:, 0], cold_ratio=ratios[0], best_ratio=ratios.min(axis=0),
        separate=separate.sum(axis=1), separate_ratio=separate.sum(axis=1)
        / (len(images) * steady),
        identical=all(np.array_equal(a, b) for a, b in zip(batch_results, separate_results,
                                                           strict=True)))


def _pair(values, digits: int = 3) -> str:
    """``wall / CPU`` of a pair of numbers."""
    return f"{values[0]:.{digits}f} / {values[1]:.{digits}f}"


def _table(rows, shape, psf_shape) -> str:
    lines = [
        f"Batches of {rows[0]['count']} images of {shape[0]}x{shape[1]}, PSF {psf_shape}, "
        f"in one fresh process (psfkit {psfkit.__version__}, {platform.machine()}, a "
        f"machine shared with other jobs). Each cell is wall / CPU seconds or ratios; "
        f"the first of {rows[0]['repeats']} Deconvolver batches runs cold (FFT plans, "
        f"PSF, OTF), the others pay only their own Deconvolver's set-up. *steady* is the "
        f"median time of the images after each batch's first; the bar (issue #15) is a "
        f"batch total ≤ {BAR} × n × steady, judged on the best batch's wall time (other "
        f"jobs' load only adds time).",
        "",
        "| case | steady s/image | first image s | cold batch / (n × steady) | best batch "
        "/ (n × steady) | bar | separate calls / (n × steady) | bit-identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = "pass" if row["best_ratio"][0] <= BAR else "FAIL"
        lines.append(
            f"| {row['case']} | {_pair(row['steady'])} | {_pair(row['first'])} | "
            f"{_pair(row['cold_ratio'])} | {_pair(row['best_ratio'])} | ≤ {BAR} {verdict} | "
            f"{_pair(row['separate_ratio'])} | {row['identical']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 images of 256²")
    args = parser.parse_args(argv)
    count, side = (6, 256) if args.quick else (20, 512)
    psf = psfkit.make_psf("gaussian", (25, 25), sigma=3.0)
    images = [blurred_pair(psf, (side, side), noise=0.01, rng=seed).blurred
              for seed in range(count)]
    repeats = 2 if args.quick else 3
    rows = [run_case("richardson_lucy", {"iterations": 20}, psf, images, repeats),
            run_case("wiener", {"regularization": 0.01}, psf, images, repeats)]
    table = _table(rows, (side, side), psf.shape)
    print(table)
    if not args.quick:
        RESULTS.write_text("# Batch deconvolution: set-up paid once\n\n"
                           "Made by `python benchmarks/bench_batch.py`.\n\n" + table)


if __name__ == "__main__":
    main()
