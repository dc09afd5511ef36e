"""Chunked deconvolution benchmark: agreement with the in-memory result, seams, overhead and
peak memory of :func:`psfkit.chunked.deconvolve_chunked`.

Run ``python benchmarks/bench_chunked.py`` (``--quick`` for small images and a 256 MiB
volume; ``--memory-gib 2`` for the 2 GiB memory case, which takes a while: run it once).
The Markdown tables go to stdout and to ``benchmarks/results/chunked.md``.

Agreement: each case is deconvolved in memory with ``method="auto"`` and then in blocks,
three ways side by side, all on dask's threaded scheduler in one process:

- *psfkit chunked*: overlap from the PSF support, automatic choices made once on the whole
  image and passed to every block (the default);
- *choices per block*: the same overlap, but every block runs ``method="auto"`` itself
  (what a plain ``map_overlap(deconvolve)`` does);
- *no overlap*: blocks cut without overlap (``depth=0``), choices made once.

"rel. error" is the relative L2 difference to the in-memory result (with ``method="auto"``,
and with the explicit parameters the plan hands to the blocks); "seam / noise" is the
RMS difference within 2 pixels of the block borders divided by the noise sigma (values well
below 1 are invisible); "time ×" is the chunked wall time over the in-memory wall time.

Memory: a float32 volume of the requested size is written to a TIFF on disk, then a child
process runs ``psfkit deconvolve`` on it in blocks (Richardson–Lucy, 5 iterations) while a
thread samples its resident memory; peak RSS (``VmHWM``) and the peak of anonymous memory
(RSS minus file pages of the memory-mapped input and output) are reported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import psfkit
from psfkit.chunked import ChunkPlan, deconvolve_chunked, default_depth, plan_chunked
from psfkit.metrics import block_border_mask
from psfkit.models import make_psf
from psfkit.samples import blurred_pair

RESULTS = Path(__file__).parent / "results" / "chunked.md"


def _cases(quick: bool):
    n2 = 512 if quick else 1024
    z3, n3 = (32, 128) if quick else (64, 256)
    yield ("2D natural, Gaussian σ 2, Gaussian noise",
           make_psf("gaussian", (15, 15), sigma=2.0),
           dict(shape=(n2, n2), noise=0.01), (n2 // 4, n2 // 4))
    yield ("2D stars, Moffat, Poisson noise",
           make_psf("moffat", (31, 31), alpha=3.0, beta=2.5),
           dict(shape=(n2, n2), scene_kind="stars", noise=0.002, poisson_photons=2000.0),
           (n2 // 4, n2 // 4))
    yield ("3D blobs, Gaussian (2.5, 1.5, 1.5), Poisson noise",
           make_psf("gaussian", (15, 11, 11), sigma=(2.5, 1.5, 1.5)),
           dict(shape=(z3, n3, n3), scene_kind="blobs", noise=0.002, poisson_photons=500.0,
                shift=(0.0, 0.0, 0.0)),
           (z3 // 2, n3 // 2, n3 // 2))


def _timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def agreement(quick: bool) -> str:
    rows = ["| case | variant | method used | rel. error vs in-memory auto | "
            "vs in-memory, same parameters | seam / noise | time × |",
            "|---|---|---|---|---|---|---|"]
    for name, psf, pair_options, chunks in _cases(quick):
        pair = blurred_pair(psf, **pair_options)
        image = pair.blurred
        (whole, info), whole_time = _timed(
            lambda image=image, psf=psf: psfkit.deconvolve(image, psf, return_info=True))
        noise = max(pair.noise_sigma, info.noise_sigma)
        cuts = block_border_mask(image.shape, chunks)
        plan, planning = _timed(lambda image=image, psf=psf, chunks=chunks:
                                plan_chunked(image, psf, chunks=chunks))
        # the in-memory run with the parameters the plan passes to every block
        same = psfkit.deconvolve(image, psf, **plan.parameters)
        variants = {
            "psfkit chunked": plan,
            "choices per block": ChunkPlan(
                parameters={"method": "auto"}, depth=plan.depth, chunks=plan.chunks),
            "no overlap": ChunkPlan(parameters=plan.parameters, depth=(0,) * psf.ndim,
                                    chunks=plan.chunks),
        }
        for variant, variant_plan in variants.items():
            result, seconds = _timed(lambda p=variant_plan, image=image, psf=psf:
                                     deconvolve_chunked(image, psf, plan=p))
            if variant != "choices per block":
                seconds += planning  # these reuse the choices made once by the plan
            difference = result - whole
            relative = np.linalg.norm(difference) / np.linalg.norm(whole)
            seam = np.sqrt(np.mean(difference[cuts] ** 2)) / noise
            method = variant_plan.parameters.get("method", "auto")
            relative_same = np.linalg.norm(result - same) / np.linalg.norm(same)
            rows.append(f"| {name} | {variant} | {method} | {100 * relative:.2f} % | "
                        f"{100 * relative_same:.2f} % | {seam:.2f} | "
                        f"{seconds / whole_time:.1f} |")
        print(rows[-3:], flush=True)
    return "\n".join(rows)


def cluster_check(quick: bool) -> str:
    """The 3D case on a dask.distributed LocalCluster with two worker processes."""
    from distributed import Client, LocalCluster

    name, psf, pair_options, chunks = list(_cases(quick))[-1]
    image = blurred_pair(psf, **pair_options).blurred
    whole = psfkit.deconvolve(image, psf)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        result, seconds = _timed(lambda: deconvolve_chunked(image, psf, chunks=chunks,
                                                            scheduler=client))
    relative = np.linalg.norm(result - whole) / np.linalg.norm(whole)
    return ("| case | scheduler | rel. error vs in-memory | wall time (s) |\n|---|---|---|---|\n"
            f"| {name} | LocalCluster, 2 processes × 1 thread | {100 * relative:.2f} % | "
            f"{seconds:.1f} |")


# --------------------------------------------------------------------------- memory


def _write_volume(path: Path, shape, psf) -> None:
    """A blurred blob volume written slab by slab, so this process never holds it all."""
    import tifffile

    out = tifffile.memmap(path, shape=shape, dtype=np.float32)
    rng = np.random.default_rng(0)
    slab = 32
    tile = blurred_pair(psf, (slab, *shape[1:]) if shape[1] <= 512 else (slab, 512, 512),
                        scene_kind="blobs", noise=0.01, shift=(0.0, 0.0, 0.0)).blurred
    for z in range(0, shape[0], slab):
        depth = min(slab, shape[0] - z)
        reps = (1, -(-shape[1] // tile.shape[1]), -(-shape[2] // tile.shape[2]))
        block = np.tile(tile[:depth], reps)[:, :shape[1], :shape[2]]
        out[z:z + depth] = block * rng.uniform(0.8, 1.2)
        out.flush()
    del out


def _child(argv) -> None:
    """Run the CLI while sampling this process's memory; print the peaks."""
    from psfkit.cli import main

    peaks = {"anon": 0}
    running = True

    def sample():
        while running:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peaks["anon"] = max(peaks["anon"], int(line.split()[1]) * 1024)
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = main(argv)
    running = False
    thread.join()
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) * 1024 for line in status
                   if line.startswith("VmHWM:"))
    print(f"RESULT {code} {hwm} {peaks['anon']}", flush=True)


def memory(gib: float) -> str:
    voxels = int(gib * 2**30 / 4)
    side = 1024 if gib >= 1 else 512
    shape = (max(voxels // (side * side), 16), side, side)
    psf = make_psf("gaussian", (15, 11, 11), sigma=(2.5, 1.5, 1.5))
    size = 4 * np.prod(shape) / 2**30
    with tempfile.TemporaryDirectory(dir=os.environ.get("PSFKIT_BENCH_TMP")) as folder:
        folder = Path(folder)
        import tifffile

        tifffile.imwrite(folder / "psf.tif", psf)
        _write_volume(folder / "in.tif", shape, psf)
        argv = ["deconvolve", str(folder / "in.tif"), "--psf", str(folder / "psf.tif"),
                "-o", str(folder / "out.tif"), "--method", "richardson_lucy",
                "--iterations", "5", "--chunks", "auto"]
        start = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--child", *argv],
                               capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        line = next((row for row in child.stdout.splitlines() if row.startswith("RESULT")),
                    None)
        if line is None:
            raise RuntimeError(f"child failed:\n{child.stdout}\n{child.stderr}")
        _, code, hwm, anon = line.split()
        check = tifffile.memmap(folder / "out.tif", mode="r")
        finite = bool(np.isfinite(check[shape[0] // 2]).all())
        del check
    depth = default_depth(psf)
    return (
        "| volume | input size | peak RSS | peak anonymous memory | peak / input | "
        "wall time (s) | exit code |\n|---|---|---|---|---|---|---|\n"
        f"| {' × '.join(map(str, shape))} float32, RL 5 iterations, depth {depth} | "
        f"{size:.2f} GiB | {int(hwm) / 2**30:.2f} GiB | {int(anon) / 2**30:.2f} GiB | "
        f"{int(hwm) / 2**30 / size:.2f} | {seconds:.0f} | {code}{'' if finite else ' (NaN!)'} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images, 256 MiB volume")
    parser.add_argument("--memory-gib", type=float, default=None,
                        help="size of the memory-test volume (default 0.25, or 2 without "
                             "--quick)")
    parser.add_argument("--only", default=None,
                        help="comma-separated parts to run: agreement, cluster, memory")
    args = parser.parse_args(argv)
    parts = set(args.only.split(",")) if args.only else {"agreement", "cluster", "memory"}
    if not parts <= {"agreement", "cluster", "memory"}:
        parser.error(f"unknown part in --only {args.only}")
    gib = args.memory_gib or (0.25 if args.quick else 2.0)
    sections = [f"# Chunked deconvolution benchmark{' (quick)' if args.quick else ''}\n",
                f"Machine: {os.cpu_count()} cores, shared with other jobs: times are "
                "ratios measured in the same process, and noisy.\n"]
    if "agreement" in parts:
        sections += ["## Agreement with the in-memory result\n", agreement(args.quick), ""]
    if "cluster" in parts:
        sections += ["## On a dask.distributed LocalCluster\n", cluster_check(args.quick), ""]
    if "memory" in parts:
        sections += ["## Peak memory of the chunked command line\n", memory(gib), ""]
    text = "\n".join(sections)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.only is None else "_" + "_".join(sorted(parts))
    RESULTS.with_name(f"chunked{suffix}.md").write_text(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        main()
