"""Figure for docs/optics.md: a cell-like volume blurred by psfmodels' vectorial PSF,
deconvolved with the true PSF, with ``widefield_psf`` from the same optics and with a
bead stack at a 4× finer z step resampled to the image's voxels.

Run ``python docs/scripts/figure_optics_deconvolution.py``; writes
``docs/figures/optics_deconvolution.png``. The volume, PSFs and deconvolution are those of
``benchmarks/bench_optics_deconvolution.py`` (seed 0, Richardson–Lucy at its fixed count).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from psfkit import deconvolve

# the volume, the PSFs and the error live with the benchmark that measures them
sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from bench_optics_deconvolution import (
    IMAGE_SHAPE,
    PSF_SHAPE,
    RL_ITERATIONS,
    SPACING,
    WATER,
    blurred_volume,
    psfs,
    relative_l2,
)

OUTPUT = Path(__file__).parents[1] / "figures" / "optics_deconvolution.png"
COLUMNS = {"true": "(a) true PSF", "optics": "(b) widefield_psf",
           "bead stack": "(c) resampled bead stack"}


def show(axis, section, spacing, limits, title) -> None:
    """One section in µm, rows along ``spacing[0]``, on a shared intensity range."""
    rows, columns = section.shape
    extent = [0, columns * spacing[1], rows * spacing[0], 0]
    axis.imshow(section, cmap="magma", extent=extent, vmin=limits[0], vmax=limits[1],
                aspect="equal", interpolation="nearest")
    axis.set_title(title, fontsize=8)
    axis.tick_params(labelsize=7)


def main() -> None:
    candidates = psfs(PSF_SHAPE, SPACING, WATER, rng=0)
    truth, blurred = blurred_volume(candidates["true"], IMAGE_SHAPE, rng=0)
    panels = {"truth": (truth, "truth"),
              "blurred": (blurred, f"blurred + Poisson, error {relative_l2(blurred, truth):.3f}")}
    for name, label in COLUMNS.items():
        restored = deconvolve(blurred, candidates[name], "richardson_lucy",
                              iterations=RL_ITERATIONS)
        panels[name] = (restored, f"{label}, error {relative_l2(restored, truth):.3f}")

    plane, row = IMAGE_SHAPE[0] // 2, IMAGE_SHAPE[1] // 2
    limits = (0.0, float(np.percentile(truth, 99.9)))
    figure, axes = plt.subplots(2, len(panels), figsize=(3.0 * len(panels), 5.2),
                                gridspec_kw={"height_ratios": [IMAGE_SHAPE[1] * SPACING[1],
                                                               IMAGE_SHAPE[0] * SPACING[0]]})
    for column, (volume, title) in enumerate(panels.values()):
        show(axes[0, column], volume[plane], SPACING[1:], limits, title)
        show(axes[1, column], volume[:, row], (SPACING[0], SPACING[2]), limits,
             f"xz at y = {row * SPACING[1]:.1f} µm")
    axes[0, 0].set_ylabel("y (µm)")
    axes[1, 0].set_ylabel("z (µm)")
    for axis in axes[1]:
        axis.set_xlabel("x (µm)")
    figure.suptitle(f"NA 1.2 water, vectorial PSF (psfmodels) as the truth; "
                    f"Richardson–Lucy, {RL_ITERATIONS} iterations; relative L2 error "
                    f"against the truth", fontsize=9)
    figure.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
