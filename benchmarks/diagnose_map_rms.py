"""Why the σ map of ``psfkit fit --grid 3 3`` in tests/test_cli_maps.py reads 5.2 % RMS
between the tile centres (its bound there is 6 %), written to
benchmarks/results/maps_cli_rms.md.

The field of that test (160², σ from 1.0 to 3.5 px, 1 % noise, seed 0) is fitted by
``fit_kernel_map`` as the command line fits it, then again with one thing changed at a
time: the pixel-integrated model, fit_kernel's kernel cap at a third of the tile (before
7c717bd) instead of half, one kernel shape for every tile, a plane instead of a quadratic.
Each tile's own fit is listed with the kernel shape it chose and its start.

    python benchmarks/diagnose_map_rms.py
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

import psfkit._fit_models as fit_models
import psfkit._starting_points as starting_points
import psfkit.fit as fit_module
from psfkit.maps import _aligned_pair, _tiles, fit_kernel_map
from psfkit.psf_map import DEFAULT_OVERLAP
from psfkit.samples import field_blurred_pair

SHAPE, SIGMA_RANGE, SPACING = (160, 160), (1.0, 3.5), (0.1, 0.1)
BETWEEN = (slice(40, 120),) * 2  # as in the test: between the tile centres
RESULTS = os.path.join(os.path.dirname(__file__), "results", "maps_cli_rms.md")


def capped_kernel_shape(divisor: int):
    """fit_kernel's kernel shape with the cap at ``1 / divisor`` of the free axis."""
    def kernel_shape(model, v, ndim, image_shape, shift):
        radius = np.broadcast_to(np.ceil(np.asarray(model.extent(v), dtype=float)), (ndim,))
        cap = (np.array(image_shape) - 2 * np.ceil(np.abs(shift)) - 8) // divisor
        radius = np.clip(radius, 1, np.maximum(cap, 1)).astype(int)
        return tuple(int(2 * r + 1) for r in radius)
    return kernel_shape


@contextlib.contextmanager
def kernel_cap(divisor: int):
    """fit_kernel with its kernel cap at ``1 / divisor`` of the axis, in every module."""
    modules = (fit_models, fit_module, starting_points)
    saved = [m._kernel_shape for m in modules]
    for module in modules:
        module._kernel_shape = capped_kernel_shape(divisor)
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module._kernel_shape = original


def field_error(pair, divisor: int, **options) -> tuple[float, float]:
    """RMS and mean relative error of the σ map between the tile centres."""
    with kernel_cap(divisor):
        psf_map = fit_kernel_map(pair.sharp, pair.blurred, "gaussian", (3, 3),
                                 spacing=SPACING, **options)
    sigma = psf_map.parameter_field.images(SHAPE)["sigma"]
    relative = sigma[BETWEEN] / pair.sigma[BETWEEN] - 1
    return float(np.sqrt(np.mean(relative ** 2))), float(relative.mean())


def tile_fits(pair) -> list[str]:
    """Each tile's fit: its kernel shape, start, σ, and σ on a 27-px kernel."""
    aligned = _aligned_pair(pair.sharp, pair.blurred)
    _, tiles = _tiles(aligned, (3, 3), DEFAULT_OVERLAP, None)
    starts = []
    optimise = fit_module._optimise

    def recording(objective, v0, *args):
        starts.append(float(np.asarray(v0)[0]))
        return optimise(objective, v0, *args)

    rows = []
    fit_module._optimise = recording
    try:
        for index, tile in np.ndenumerate(np.array(tiles, dtype=object).reshape(3, 3)):
            starts.clear()
            sharp, blurred = aligned.sharp[tile.region], aligned.blurred[tile.region]
            fit = fit_module.fit_kernel(sharp, blurred, "gaussian", spacing=SPACING)
            first_starts = list(starts)
            fixed = fit_module.fit_kernel(sharp, blurred, "gaussian", shape=27,
                                          spacing=SPACING)
            truth = float(pair.sigma[tuple(np.round(tile.centre).astype(int))])
            rows.append(f"| {index} | {fit.kernel.shape[0]} | "
                        f"{', '.join(f'{s:.2f}' for s in first_starts)} | "
                        f"{fit.params['sigma']:.3f} | {fixed.params['sigma']:.3f} | "
                        f"{truth:.3f} |")
    finally:
        fit_module._optimise = optimise
    return rows


def main() -> None:
    pair = field_blurred_pair(SHAPE, SIGMA_RANGE, rng=0)
    lines = ["# The σ map of `psfkit fit --grid 3 3` (tests/test_cli_maps.py)", "",
             "Written by `benchmarks/diagnose_map_rms.py`: the field of the test, σ map "
             "error between the tile centres.", "",
             "| fit | RMS | mean |", "|---|---|---|"]
    cases = [("as the command line fits (cap at half the tile)", 2, {}),
             ("pixel_integrated=True", 2, {"pixel_integrated": True}),
             ("kernel cap at a third of the tile (before 7c717bd)", 3, {}),
             ("shape=29 on every tile", 2, {"shape": 29}),
             ("degree=1 (a plane)", 2, {"degree": 1})]
    for label, divisor, options in cases:
        rms, mean = field_error(pair, divisor, **options)
        lines.append(f"| {label} | {100 * rms:.2f} % | {100 * mean:+.2f} % |")
        print(lines[-1], flush=True)
    lines += ["", "Each tile's fit (cap at half the tile): the kernel side it chose, the "
              "start(s) of its optimisation, σ, σ on a 27-px kernel, the true σ at the "
              "tile centre.", "",
              "| tile | kernel | start σ | σ | σ (27 px) | true σ |", "|---|---|---|---|---|---|",
              *tile_fits(pair)]
    with open(RESULTS, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines[-11:]))


if __name__ == "__main__":
    main()
