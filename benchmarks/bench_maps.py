"""Blur that changes across the field: the bars of issue #16, measured.

Run ``python benchmarks/bench_maps.py`` (``--quick`` for 512² scenes, a 1024² cost case
and a 192² astigmatism case). The Markdown tables go to stdout and to
``benchmarks/results/maps.md``.

- **Recovering the map**: natural and microscopy-like (blobs) scenes blurred exactly per
  pixel by a Gaussian whose σ grows linearly from 1.0 to 3.5 px across the field
  (:func:`psfkit.samples.field_blurred_pair`), 1 % noise; :func:`psfkit.fit_kernel_map`
  on a 4×4 grid; the RMS relative error of ``params_at`` against the true σ on a 16-px
  lattice of positions. Astigmatism: an elliptical Gaussian elongated along the field
  angle, growing with the square of the field height; the errors of the ellipticity
  ``1 - minor/major`` and of the major axis's angle (where the true ellipticity is above
  0.1).
- **Deconvolving with it**: ``method="auto"`` with the fitted map, with the mean of its
  tiles' PSFs and with the PSF at the centre; errors are
  :func:`psfkit.metrics.image_error` against the true scene, 16 px from the border. Seams:
  the RMS error within 4 px of the lines midway between tile centres (where a tiled method
  would have its borders) over that within 4 px of the lines through the tile centres.
- **A constant blur**: one Gaussian (σ 2) given as a 4×4 map of copies, against the single
  PSF: the largest difference over the largest value of the single-PSF result.
- **Cost**: a 2048² image (1024² with ``--quick``), a 4×4 map, wall time of the map path
  over the single-PSF path (Richardson–Lucy, 10 iterations; Wiener).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import psfkit
from psfkit import make_psf
from psfkit.metrics import image_error
from psfkit.samples import blurred_pair, field_blurred_pair

RESULTS = Path(__file__).parent / "results" / "maps.md"
GRID = (4, 4)
SIGMA_RANGE = (1.0, 3.5)
MARGIN = 16
#: Extra width (px) of the astigmatic blur's major axis in the corners.
ASTIGMATISM = 2.5


def lattice(shape, step: int = 16):
    """Positions on a regular lattice over the image, with their indices."""
    return [(y, x) for y in range(0, shape[0], step) for x in range(0, shape[1], step)]


def sigma_error(psf_map, pair) -> float:
    """RMS relative error of the map's sigma against the truth on the lattice."""
    relative = [psf_map.params_at(p)["sigma"] / pair.sigma[p] - 1
                for p in lattice(pair.sigma.shape)]
    return float(np.sqrt(np.mean(np.square(relative))))


def astigmatism_errors(psf_map, pair) -> tuple[float, float]:
    """RMS errors of the ellipticity and of the angle (degrees, where the true
    ellipticity is above 0.1) on the lattice."""
    ellipticity, angle = [], []
    for p in lattice(pair.sigma.shape):
        params = psf_map.params_at(p)
        major = max(params["sigma_x"], params["sigma_y"])
        minor = min(params["sigma_x"], params["sigma_y"])
        true_ellipticity = 1 - pair.sigma[p] / pair.sigma_major[p]
        ellipticity.append((1 - minor / major) - true_ellipticity)
        if true_ellipticity > 0.1:
            direction = params["angle"] + (0 if params["sigma_x"] >= params["sigma_y"]
                                           else np.pi / 2)
            difference = np.mod(direction - pair.angle[p] + np.pi / 2, np.pi) - np.pi / 2
            angle.append(np.degrees(difference))
    return float(np.sqrt(np.mean(np.square(ellipticity)))), float(
        np.sqrt(np.mean(np.square(angle))))


def band_masks(psf_map, width: int = 4):
    """Pixels near the lines midway between tile centres, and near the centre lines."""
    borders = np.zeros(psf_map.shape, bool)
    centres = np.zeros(psf_map.shape, bool)
    for axis, coordinates in enumerate(psf_map.centres):
        index = np.arange(psf_map.shape[axis])
        near_centre = np.min(np.abs(index[:, None] - coordinates[None]), axis=1) <= width
        middles = 0.5 * (coordinates[1:] + coordinates[:-1])
        near_border = np.min(np.abs(index[:, None] - middles[None]), axis=1) <= width
        shape = [-1 if a == axis else 1 for a in range(len(psf_map.shape))]
        borders |= near_border.reshape(shape)
        centres |= near_centre.reshape(shape)
    return borders & ~centres, centres & ~borders


def deconvolution_row(name, pair, psf_map):
    """Errors of the map, average and central PSFs, and the seam ratio."""
    inner = (slice(MARGIN, -MARGIN),) * 2
    truth = pair.sharp
    average = psf_map.psfs.reshape((-1, *psf_map.psf_shape)).mean(axis=0)
    central = psf_map.psf_at([(n - 1) / 2 for n in psf_map.shape])
    results = {label: psfkit.deconvolve(pair.blurred, psf)
               for label, psf in (("map", psf_map), ("average", average),
                                  ("central", central))}
    errors = {label: image_error(result[inner], truth[inner])
              for label, result in results.items()}
    best_single = min(errors["average"], errors["central"])
    borders, centres = band_masks(psf_map)
    squared = (results["map"] - truth) ** 2
    keep = np.zeros(truth.shape, bool)
    keep[inner] = True
    seam = float(np.sqrt(squared[borders & keep].mean() / squared[centres & keep].mean()))
    return (f"| {name} | {errors['map']:.4f} | {errors['average']:.4f} | "
            f"{errors['central']:.4f} | {errors['map'] / best_single:.3f} | {seam:.3f} |")


def constant_rows(size: int):
    """The map path against the single PSF for a blur that does not change."""
    psf = make_psf("gaussian", (17, 17), sigma=2.0)
    pair = blurred_pair(psf, (size, size), noise=0.01, rng=5)
    from psfkit.psf_map import PsfMap, tile_centres, tiling

    copies = PsfMap(psfs=np.broadcast_to(psf, (*GRID, *psf.shape)).copy(),
                    centres=tile_centres(tiling((size, size), GRID, 1.0), GRID),
                    shape=(size, size))
    rows = []
    for method in ("auto", "richardson_lucy", "wiener"):
        single = psfkit.deconvolve(pair.blurred, psf, method)
        mapped = psfkit.deconvolve(pair.blurred, copies, method)
        rows.append(f"| {method} | {np.abs(mapped - single).max() / np.abs(single).max():.2e} |")
    return rows


def cost_rows(size: int):
    """Wall time of the map path over the single-PSF path on a ``size``² image."""
    from psfkit.psf_map import PsfMap, tile_centres, tiling

    centres = tile_centres(tiling((size, size), GRID, 1.0), GRID)
    sigmas = np.linspace(1.0, 3.5, GRID[0] * GRID[1]).reshape(GRID)
    psfs = np.array([[make_psf("gaussian", (29, 29), sigma=s) for s in row] for row in sigmas])
    psf_map = PsfMap(psfs=psfs, centres=centres, shape=(size, size))
    image = blurred_pair(psfs[1, 1], (size, size), noise=0.01, rng=6).blurred
    rows = []
    for method, options in (("richardson_lucy", dict(iterations=10)), ("wiener", {})):
        times = {}
        for label, psf in (("single", psfs[1, 1]), ("map", psf_map)):
            start = time.perf_counter()
            psfkit.deconvolve(image, psf, method, **options)
            times[label] = time.perf_counter() - start
        rows.append(f"| {method} | {size}² | {times['single']:.2f} | {times['map']:.2f} | "
                    f"{times['map'] / times['single']:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller images")
    quick = parser.parse_args().quick
    size, cost_size, astig_size = (512, 1024, 192) if quick else (1024, 2048, 384)
    lines = [f"# Blur that changes across the field ({'quick' if quick else 'full'} run)", "",
             f"σ from {SIGMA_RANGE[0]} to {SIGMA_RANGE[1]} px across {size}² scenes, "
             f"1 % noise, a {GRID[0]}×{GRID[1]} map from fit_kernel_map. "
             "Made by `benchmarks/bench_maps.py`.", "",
             "| scene | σ map RMS error | fit time (s) |", "|---|---|---|"]
    deconvolution = ["", "| scene | error, map | average PSF | central PSF | "
                     "map / best single | seams (border / centre) |",
                     "|---|---|---|---|---|---|"]
    for kind, name in (("natural", "natural"), ("blobs", "microscopy-like (blobs)")):
        pair = field_blurred_pair((size, size), SIGMA_RANGE, scene_kind=kind, noise=0.01, rng=0)
        start = time.perf_counter()
        psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=GRID)
        elapsed = time.perf_counter() - start
        lines.append(f"| {name} | {100 * sigma_error(psf_map, pair):.2f} % | {elapsed:.1f} |")
        deconvolution.append(deconvolution_row(name, pair, psf_map))
        print("\n".join(lines[-1:] + deconvolution[-1:]), flush=True)
    lines += ["", f"Astigmatism: {astig_size}² scenes, Seidel-like (the major axis "
              f"√(σ² + ({ASTIGMATISM} r)²) along the field angle, ellipticity from 0 at the "
              f"centre to 0.63 in the top-left corner), 1 % noise, elliptical_gaussian map "
              f"on {GRID[0]}×{GRID[1]}; the angle error where the true ellipticity is above "
              f"0.1.", "", "| scene | ellipticity RMS error | angle RMS error |",
              "|---|---|---|"]
    for kind, name in (("natural", "natural"), ("blobs", "microscopy-like (blobs)")):
        pair = field_blurred_pair((astig_size, astig_size), SIGMA_RANGE,
                                  astigmatism=ASTIGMATISM, scene_kind=kind, rng=1)
        astig_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "elliptical_gaussian",
                                          grid=GRID)
        ellipticity, angle = astigmatism_errors(astig_map, pair)
        lines.append(f"| {name} | {ellipticity:.3f} | {angle:.1f}° |")
        print(lines[-1], flush=True)
    lines += deconvolution
    lines += ["", "| constant blur, method | largest difference / largest value |",
              "|---|---|", *constant_rows(size // 2)]
    lines += ["", "| cost, method | image | single PSF (s) | 4×4 map (s) | ratio |",
              "|---|---|---|---|---|", *cost_rows(cost_size)]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
