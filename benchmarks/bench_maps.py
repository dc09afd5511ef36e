"""Blur that changes across the field: the bars of issue #16, measured.

Run ``python benchmarks/bench_maps.py`` (``--quick`` for 512² scenes, a 1024² cost case,
192² astigmatism and diagnosis cases and a smaller volume). The Markdown tables go to stdout and to
``benchmarks/results/maps.md``.

- **Recovering the map**: natural and microscopy-like (blobs) scenes blurred exactly per
  pixel by a Gaussian whose σ grows linearly from 1.0 to 3.5 px across the field
  (:func:`psfkit.samples.field_blurred_pair`), 1 % noise; :func:`psfkit.fit_kernel_map`
  on a 4×4 grid; the RMS relative error of ``params_at`` against the true σ on a 16-px
  lattice of positions. Astigmatism: an elliptical Gaussian elongated along the field
  angle, growing with the square of the field height; the errors of the ellipticity
  ``1 - minor/major`` and of the major axis's angle (where the true ellipticity is above
  0.1), on a 4×4 and an 8×8 grid. Every fit is ``pixel_integrated=True``, as the samples'
  blur is.
- **Deconvolving with it**: ``method="auto"`` with the fitted map, with the mean of its
  tiles' PSFs and with the PSF at the centre; errors are
  :func:`psfkit.metrics.image_error` against the true scene, 16 px from the border. The
  map of the true blur (the true σ at the centres of an 8×8 grid) bounds what any map
  can do. Seams: the RMS error within 4 px of the lines midway between tile centres
  (where a tiled method would have its borders) over that within 4 px of the lines
  through the tile centres.
- **Diagnosis of the deconvolution bar** (the smaller astigmatism size): the errors of
  Richardson–Lucy stopped at the best of several iteration counts (chosen with the
  truth), map against the best single PSF; and ``auto`` at a tenth of the noise.
- **auto's risk choice with the map** (the smaller astigmatism size): ``auto``'s error and
  winner with the map, against ``rl_mix`` with the map (what ``auto`` ran before it made a
  risk choice with a map) and Richardson–Lucy with the map stopped at its best iteration
  (chosen with the truth): the two scenes at 1 % noise with the fitted map, and the blobs
  under shot noise (300 and 30 photons at the peak) with the true blur's map.
- **3D**: a blobs volume whose lateral σ grows from 1.0 to 3.5 px across the field, with a
  constant σ_z of 2.0 planes, 1 % noise; ``fit_kernel_map`` on 4×4; the RMS errors of the
  lateral σ and of σ_z; Richardson–Lucy (stopped by the discrepancy principle) with the
  map against the average PSF; the chunked path (four lateral blocks) against the map in
  memory.
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
from psfkit.psf_map import PsfMap, tile_centres, tiling
from psfkit.samples import blurred_pair, field_blurred_pair

RESULTS = Path(__file__).parent / "results" / "maps.md"
GRID = (4, 4)
SIGMA_RANGE = (1.0, 3.5)
MARGIN = 16
#: Extra width (px) of the astigmatic blur's major axis in the corners.
ASTIGMATISM = 2.5
#: The samples' Gaussians are integrated over each pixel; the fits model them so.
FIT = dict(pixel_integrated=True)
#: Axial σ (planes) of the 3D case.
SIGMA_Z = 2.0
#: The 3D case's method: Richardson–Lucy stopped by the discrepancy principle (auto's
#: smoothing search costs minutes on a volume with a map on this shared machine).
VOLUME_METHOD = "richardson_lucy"


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


def true_map(pair, grid, shape) -> PsfMap:
    """The map of the true blur: the true σ at the centres of an even tiling."""
    centres = tile_centres(tiling(pair.sigma.shape, grid, 1.0), grid)
    psfs = [[make_psf("gaussian", shape, sigma=float(pair.sigma[round(y), round(x)]), **FIT)
             for x in centres[1]] for y in centres[0]]
    return PsfMap(psfs=np.array(psfs), centres=centres, shape=pair.sigma.shape)


def single_psfs(psf_map):
    """The two single PSFs of the bar: the mean of the tiles' PSFs and the central PSF."""
    average = psf_map.psfs.reshape((-1, *psf_map.psf_shape)).mean(axis=0)
    return {"average": average,
            "central": psf_map.psf_at([(n - 1) / 2 for n in psf_map.shape])}


def deconvolution_row(name, pair, psf_map):
    """Errors of the map, average and central PSFs and the true blur's map, and the seam
    ratio."""
    inner = (slice(MARGIN, -MARGIN),) * 2
    truth = pair.sharp
    candidates = {"map": psf_map, **single_psfs(psf_map),
                  "true": true_map(pair, (8, 8), psf_map.psf_shape)}
    results = {label: psfkit.deconvolve(pair.blurred, psf)
               for label, psf in candidates.items()}
    errors = {label: image_error(result[inner], truth[inner])
              for label, result in results.items()}
    best_single = min(errors["average"], errors["central"])
    borders, centres = band_masks(psf_map)
    squared = (results["map"] - truth) ** 2
    keep = np.zeros(truth.shape, bool)
    keep[inner] = True
    seam = float(np.sqrt(squared[borders & keep].mean() / squared[centres & keep].mean()))
    return (f"| {name} | {errors['map']:.4f} | {errors['average']:.4f} | "
            f"{errors['central']:.4f} | {errors['map'] / best_single:.3f} | "
            f"{errors['true']:.4f} ({errors['true'] / best_single:.3f}) | {seam:.3f} |")


def diagnosis_rows(size: int):
    """Why the blobs miss the deconvolution bar: Richardson–Lucy stopped at its best
    iteration count (chosen with the truth) for the map and the single PSFs, the blurred
    image's own error, and ``auto`` at a tenth of the noise."""
    inner = (slice(MARGIN, -MARGIN),) * 2
    rows = []
    for noise in (0.01, 0.001):
        pair = field_blurred_pair((size, size), SIGMA_RANGE, scene_kind="blobs", noise=noise,
                                  rng=0)
        psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=GRID, **FIT)
        candidates = {"map": psf_map, **single_psfs(psf_map)}

        def error(result, pair=pair):
            return image_error(result[inner], pair.sharp[inner])

        auto = {label: error(psfkit.deconvolve(pair.blurred, psf))
                for label, psf in candidates.items()}
        best = {label: min(error(psfkit.deconvolve(pair.blurred, psf, "richardson_lucy",
                                                   iterations=n))
                           for n in (10, 20, 40, 80))
                for label, psf in candidates.items()}
        ratio = {kind: values["map"] / min(values["average"], values["central"])
                 for kind, values in (("auto", auto), ("best", best))}
        rows.append(f"| {100 * noise:g} % | {error(pair.blurred):.4f} | {auto['map']:.4f} | "
                    f"{ratio['auto']:.3f} | {best['map']:.4f} | "
                    f"{min(best['average'], best['central']):.4f} | {ratio['best']:.3f} |")
        print(rows[-1], flush=True)
    return rows


#: The cases of ``auto``'s choice with a map: scene, shot noise (photons at the blurred
#: image's peak; None: the 1 % Gaussian noise of the other tables) and the map (fitted,
#: or the true blur's on 8×8 tiles, as a fit at 30 photons is far off: σ 133 % at 192²).
AUTO_CASES = (("natural", None, "fitted"), ("blobs", None, "fitted"),
              ("blobs", 300.0, "true"), ("blobs", 30.0, "true"))


def shot_noise(pair, photons: float, rng=7):
    """The noise-free ``pair``'s blurred image with Poisson noise of ``photons`` at its
    peak, in its own units."""
    scale = photons / float(pair.blurred.max())
    counts = np.random.default_rng(rng).poisson(np.clip(pair.blurred, 0, None) * scale)
    return (counts / scale).astype(np.float32)


def auto_choice_rows(size: int):
    """``method="auto"``'s risk choice with the map, per case of :data:`AUTO_CASES`: its
    error and winner, against ``rl_mix`` with the map (what ``auto`` ran with a map before
    it made a risk choice), Richardson–Lucy with the map stopped at its best of 300
    iterations (chosen with the truth) and ``auto`` with the best single PSF."""
    inner = (slice(MARGIN, -MARGIN),) * 2
    rows = []
    for kind, photons, which in AUTO_CASES:
        pair = field_blurred_pair((size, size), SIGMA_RANGE, scene_kind=kind,
                                  noise=0.01 if photons is None else 0.0, rng=0)
        blurred = pair.blurred if photons is None else shot_noise(pair, photons)
        psf_map = (psfkit.fit_kernel_map(pair.sharp, blurred, "gaussian", grid=GRID, **FIT)
                   if which == "fitted" else true_map(pair, (8, 8), (29, 29)))

        def error(result, pair=pair):
            return image_error(result[inner], pair.sharp[inner])

        auto, info = psfkit.deconvolve(blurred, psf_map, return_info=True)
        path = []
        psfkit.deconvolve(blurred, psf_map, "richardson_lucy", iterations=300,
                          callback=lambda step, total, current, path=path: path.append(
                              error(current)))
        rl_mix = error(psfkit.deconvolve(blurred, psf_map, "rl_mix"))
        single = min(error(psfkit.deconvolve(blurred, psf))
                     for psf in single_psfs(psf_map).values())
        best = int(np.argmin(path))
        noise = "1 %" if photons is None else f"{photons:g} photons"
        rows.append(f"| {kind} | {noise} | {which} | {error(blurred):.4f} | "
                    f"{error(auto):.4f} | {info.choice.winner.describe()} | {rl_mix:.4f} | "
                    f"{path[best]:.4f} ({best + 1}) | {error(auto) / path[best]:.3f} | "
                    f"{error(auto) / single:.3f} |")
        print(rows[-1], flush=True)
    return rows


def volume_rows(shape):
    """A 3D map: lateral σ and σ_z recovered, the map against the average PSF, and the
    chunked path against the map in memory."""
    pair = field_blurred_pair(shape, SIGMA_RANGE, sigma_z=SIGMA_Z, scene_kind="blobs",
                              noise=0.01, rng=0)
    start = time.perf_counter()
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=GRID, **FIT)
    elapsed = time.perf_counter() - start
    lateral, axial = [], []
    middle = shape[0] // 2
    for y, x in lattice(pair.sigma.shape):
        sigma_z, sigma_y, sigma_x = psf_map.params_at((middle, y, x))["sigma"]
        lateral += [sigma_y / pair.sigma[y, x] - 1, sigma_x / pair.sigma[y, x] - 1]
        axial.append(sigma_z / SIGMA_Z - 1)
    inner = (slice(3, -3), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    whole, info = psfkit.deconvolve(pair.blurred, psf_map, VOLUME_METHOD, return_info=True)
    average = single_psfs(psf_map)["average"]
    errors = [image_error(result[inner], pair.sharp[inner])
              for result in (whole, psfkit.deconvolve(pair.blurred, average, VOLUME_METHOD))]
    blocks = psfkit.deconvolve_chunked(pair.blurred, psf_map,
                                       chunks=(shape[0], shape[1] // 2, shape[2] // 2),
                                       **info.parameters)  # with its method
    chunked = np.abs(blocks[inner] - whole[inner]).max() / np.abs(whole[inner]).max()
    row = (f"| {shape[0]}×{shape[1]}×{shape[2]} | "
           f"{100 * np.sqrt(np.mean(np.square(lateral))):.2f} % | "
           f"{100 * np.sqrt(np.mean(np.square(axial))):.2f} % | {elapsed:.1f} | "
           f"{errors[0]:.4f} | {errors[1]:.4f} | {errors[0] / errors[1]:.3f} | "
           f"{chunked:.2e} |")
    print(row, flush=True)
    return [row]


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
    volume = (24, 128, 128) if quick else (32, 192, 192)
    lines = [f"# Blur that changes across the field ({'quick' if quick else 'full'} run)", "",
             f"σ from {SIGMA_RANGE[0]} to {SIGMA_RANGE[1]} px across {size}² scenes, "
             f"1 % noise, a {GRID[0]}×{GRID[1]} map from fit_kernel_map. "
             "Made by `benchmarks/bench_maps.py`.", "",
             "| scene | σ map RMS error | fit time (s) |", "|---|---|---|"]
    deconvolution = ["", "| scene | error, map | average PSF | central PSF | "
                     "map / best single | true blur's map (/ best single) | "
                     "seams (border / centre) |", "|---|---|---|---|---|---|---|"]
    for kind, name in (("natural", "natural"), ("blobs", "microscopy-like (blobs)")):
        pair = field_blurred_pair((size, size), SIGMA_RANGE, scene_kind=kind, noise=0.01, rng=0)
        start = time.perf_counter()
        psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=GRID, **FIT)
        elapsed = time.perf_counter() - start
        lines.append(f"| {name} | {100 * sigma_error(psf_map, pair):.2f} % | {elapsed:.1f} |")
        deconvolution.append(deconvolution_row(name, pair, psf_map))
        print("\n".join(lines[-1:] + deconvolution[-1:]), flush=True)
    lines += ["", f"Astigmatism: {astig_size}² scenes, Seidel-like (the major axis "
              f"√(σ² + ({ASTIGMATISM} r)²) along the field angle, ellipticity from 0 at the "
              f"centre to 0.63 in the top-left corner), 1 % noise, elliptical_gaussian map; "
              f"the angle error where the true ellipticity is above 0.1.", "",
              "| scene | grid | ellipticity RMS error | angle RMS error |", "|---|---|---|---|"]
    for kind, name in (("natural", "natural"), ("blobs", "microscopy-like (blobs)")):
        pair = field_blurred_pair((astig_size, astig_size), SIGMA_RANGE,
                                  astigmatism=ASTIGMATISM, scene_kind=kind, rng=1)
        for grid in (GRID, (8, 8)):
            astig_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "elliptical_gaussian",
                                              grid=grid, **FIT)
            ellipticity, angle = astigmatism_errors(astig_map, pair)
            lines.append(f"| {name} | {grid[0]}×{grid[1]} | {ellipticity:.3f} | {angle:.1f}° |")
            print(lines[-1], flush=True)
    lines += deconvolution
    lines += ["", f"Diagnosis of the deconvolution bar on the blobs, {astig_size}²: the error "
              "of the blurred image itself, auto with the map and its ratio to the best "
              "single PSF, and Richardson–Lucy stopped at the best of 10, 20, 40 and 80 "
              "iterations (chosen with the truth).", "",
              "| noise | blurred | auto, map | auto, map / best single | best RL, map | "
              "best RL, best single | ratio |", "|---|---|---|---|---|---|---|",
              *diagnosis_rows(astig_size)]
    lines += ["", f"auto's risk choice with the map, {astig_size}²: the error of the blurred "
              "image, of auto with the map and its winner, of rl_mix with the map (what "
              "auto ran with a map before its risk choice), of Richardson–Lucy with the map "
              "stopped at its best of 300 iterations (chosen with the truth), and auto with "
              "the map over those and over auto with the best single PSF.", "",
              "| scene | noise | map | blurred | auto, map | winner | rl_mix, map | "
              "best RL, map (iterations) | auto / best RL | auto / best single |",
              "|---|---|---|---|---|---|---|---|---|---|", *auto_choice_rows(astig_size)]
    lines += ["", f"3D: a blobs volume, lateral σ from {SIGMA_RANGE[0]} to {SIGMA_RANGE[1]} px "
              f"across the field, σ_z {SIGMA_Z} planes, 1 % noise, a {GRID[0]}×{GRID[1]} map "
              "from fit_kernel_map; Richardson–Lucy (discrepancy stop) with the map and "
              "with the average PSF; the chunked "
              "path in four lateral blocks against the map in memory (largest difference "
              "over the largest value).", "",
              "| volume | lateral σ RMS error | σ_z RMS error | fit time (s) | error, map | "
              "average PSF | map / average | chunked vs in memory |",
              "|---|---|---|---|---|---|---|---|", *volume_rows(volume)]
    lines += ["", "| constant blur, method | largest difference / largest value |",
              "|---|---|", *constant_rows(size // 2)]
    lines += ["", "| cost, method | image | single PSF (s) | 4×4 map (s) | ratio |",
              "|---|---|---|---|---|", *cost_rows(cost_size)]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
