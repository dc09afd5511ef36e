"""What a tile of an astigmatism map measures, and the held-out astigmatism cases, written
to benchmarks/results/maps_astigmatism.md.

The case of bench_maps.py (the camera photo, 384², Seidel astigmatism 2.5 px, 1 % noise,
seed 1, a 4×4 elliptical_gaussian map, pixel-integrated fits): for each tile, its fitted
second moments against the true field's moments at the tile centre and against the true
field's information-weighted mean over the tile (:func:`psfkit.maps.tile_information`,
the mean a linearised least-squares fit returns), with the structure-tensor coherence of
the sharp tile (1: detail along one direction only). Then the map's errors on cases that
were not used to choose the method: other crops of the photo, another noise seed, the
pair flipped or turned against the field, other grids, another blobs scene.

    python benchmarks/diagnose_map_astigmatism.py
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

import psfkit
from bench_maps import ASTIGMATISM, FIT, SIGMA_RANGE, astigmatism_errors
from psfkit.fit import fit_kernel
from psfkit.maps import _aligned_pair, _tiles, quantity_vector, tile_information
from psfkit.psf_map import DEFAULT_OVERLAP
from psfkit.samples import field_blurred_pair

RESULTS = Path(__file__).parent / "results" / "maps_astigmatism.md"


def true_moments(pair, points) -> np.ndarray:
    """``(N, 3)`` true ``cxx, cyy, cxy`` at integer ``points`` ``(N, 2)``."""
    y, x = np.round(points).astype(int).T
    minor, major, angle = pair.sigma[y, x], pair.sigma_major[y, x], pair.angle[y, x]
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([major**2 * c * c + minor**2 * s * s, major**2 * s * s + minor**2 * c * c,
                     (major**2 - minor**2) * c * s], axis=1).astype(np.float64)


def coherence(tile) -> float:
    """``(λ1 - λ2) / (λ1 + λ2)`` of the tile's structure tensor (gradients at 1 px)."""
    gy, gx = np.gradient(ndi.gaussian_filter(tile.astype(np.float64), 1.0))
    tensor = np.array([[np.mean(gx * gx), np.mean(gx * gy)], [np.mean(gx * gy), np.mean(gy * gy)]])
    low, high = np.linalg.eigvalsh(tensor)
    return float((high - low) / (high + low))


def tile_rows(pair, grid=(4, 4)) -> list[str]:
    """Per tile: fitted moments, the true ones at the centre and the true weighted mean."""
    aligned = _aligned_pair(pair.sharp, pair.blurred)
    _, tiles = _tiles(aligned, grid, DEFAULT_OVERLAP, None)
    rows = []
    for tile in tiles:
        sharp = aligned.sharp[tile.region]
        fit = fit_kernel(sharp, aligned.blurred[tile.region], "elliptical_gaussian", **FIT)
        start = np.add([r.start for r in tile.region], aligned.offset)
        information = tile_information(fit, sharp, start, (0, 1))
        weighted = np.einsum("nij,nj->i", information.density,
                             true_moments(pair, information.points))
        mean = np.linalg.solve(information.density.sum(axis=0), weighted)
        centre = true_moments(pair, np.add(tile.centre, aligned.offset)[None])[0]
        fitted = quantity_vector("elliptical_gaussian", fit.params)[0]
        text = [" ".join(f"{v:.2f}" for v in m) for m in (fitted, centre, mean)]
        rows.append(f"| {tile.index} | {text[0]} | {text[1]} | {text[2]} | "
                    f"{coherence(sharp):.2f} |")
    return rows


def turned(pair, how: str):
    """The pair and its truth flipped upside down or turned by 180°."""
    if how == "flipped":
        def change(a):
            return np.ascontiguousarray(a[::-1])
        angle = np.mod(np.pi - change(pair.angle), np.pi)
    else:
        def change(a):
            return np.ascontiguousarray(a[::-1, ::-1])
        angle = change(pair.angle)
    return replace(pair, sharp=change(pair.sharp), blurred=change(pair.blurred),
                   sigma=change(pair.sigma), sigma_major=change(pair.sigma_major),
                   angle=angle.astype(np.float32))


HELD_OUT = [("natural", 320, 1, 4, None), ("natural", 448, 1, 4, None),
            ("natural", 384, 2, 4, None), ("natural", 384, 1, 4, "flipped"),
            ("natural", 384, 1, 4, "turned by 180°"), ("natural", 384, 1, 3, None),
            ("natural", 384, 1, 6, None), ("blobs", 384, 2, 4, None),
            ("blobs", 384, 2, 4, "flipped")]


def held_out_rows() -> list[str]:
    rows = []
    for kind, size, seed, grid, how in HELD_OUT:
        pair = field_blurred_pair((size, size), SIGMA_RANGE, astigmatism=ASTIGMATISM,
                                  scene_kind=kind, rng=seed)
        pair = turned(pair, how) if how else pair
        psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "elliptical_gaussian",
                                        grid=(grid, grid), **FIT)
        ellipticity, angle = astigmatism_errors(psf_map, pair)
        rows.append(f"| {kind} | {size}² | {seed} | {how or '-'} | {grid}×{grid} | "
                    f"{ellipticity:.3f} | {angle:.1f}° | "
                    f"{int(psf_map.diagnostics['used'].sum())}/{grid * grid} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    pair = field_blurred_pair((384, 384), SIGMA_RANGE, astigmatism=ASTIGMATISM,
                              scene_kind="natural", rng=1)
    lines = ["# What a tile of an astigmatism map measures", "",
             "The photo, 384², 4×4 tiles (bench_maps.py's case). Moments `cxx cyy cxy` "
             "(px²): the tile's fit, the true field at the tile centre, the true field's "
             "information-weighted mean over the tile. Made by "
             "`benchmarks/diagnose_map_astigmatism.py`.", "",
             "| tile | fitted | true at centre | true weighted mean | coherence |",
             "|---|---|---|---|---|", *tile_rows(pair), "",
             "Held-out cases (`fit_kernel_map`, elliptical_gaussian, pixel-integrated; the "
             "errors of bench_maps.py):", "",
             "| scene | size | seed | pair | grid | ellipticity RMS error | "
             "angle RMS error | tiles used |", "|---|---|---|---|---|---|---|---|",
             *held_out_rows()]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
