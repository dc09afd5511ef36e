"""Figure for docs/maps.md: a synthetic blur whose σ grows across the field, the σ map
recovered by fit_kernel_map, and the deconvolution with the single average PSF next to
the one with the map.

Run ``python docs/scripts/figure_maps.py``; writes ``docs/figures/maps.png``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import psfkit
from psfkit.metrics import image_error
from psfkit.samples import field_blurred_pair

OUTPUT = Path(__file__).parents[1] / "figures" / "maps.png"
SIZE = 384


def main() -> None:
    pair = field_blurred_pair((SIZE, SIZE), (1.0, 3.5), noise=0.01, rng=0)
    # pixel-integrated, as the samples' Gaussians are and as benchmarks/bench_maps.py fits
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=(4, 4),
                                    pixel_integrated=True)
    step = 8
    positions = np.arange(0, SIZE, step)
    recovered = np.array([[psf_map.params_at((y, x))["sigma"] for x in positions]
                          for y in positions])
    truth = pair.sigma[::step, ::step]
    average = psf_map.psfs.reshape((-1, *psf_map.psf_shape)).mean(axis=0)
    with_average = psfkit.deconvolve(pair.blurred, average)
    with_map = psfkit.deconvolve(pair.blurred, psf_map)
    inner = (slice(16, -16),) * 2
    errors = [image_error(r[inner], pair.sharp[inner]) for r in (with_average, with_map)]

    figure, axes = plt.subplots(2, 3, figsize=(12, 8))
    extent = (0, SIZE, SIZE, 0)
    for axis, values, title in ((axes[0, 0], truth, "true σ (px)"),
                                (axes[0, 1], recovered, "σ from fit_kernel_map (px)")):
        shown = axis.imshow(values, vmin=1.0, vmax=3.5, cmap="viridis", extent=extent)
        figure.colorbar(shown, ax=axis, fraction=0.046)
        axis.set_title(title)
    for centre_y in psf_map.centres[0]:
        axes[0, 1].plot(psf_map.centres[1], [centre_y] * len(psf_map.centres[1]), "w+")
    relative = 100 * (recovered / truth - 1)
    shown = axes[0, 2].imshow(relative, vmin=-5, vmax=5, cmap="RdBu_r", extent=extent)
    figure.colorbar(shown, ax=axes[0, 2], fraction=0.046)
    axes[0, 2].set_title(f"σ error (%), RMS {np.sqrt(np.mean(relative**2)):.1f} %")
    corner = (slice(SIZE - 160, SIZE - 32), slice(SIZE - 160, SIZE - 32))  # widest blur
    for axis, image, title in ((axes[1, 0], pair.blurred, "blurred (σ about 3 here)"),
                               (axes[1, 1], with_average,
                                f"single average PSF, error {errors[0]:.3f}"),
                               (axes[1, 2], with_map, f"PSF map, error {errors[1]:.3f}")):
        axis.imshow(image[corner], cmap="gray", vmin=0, vmax=1)
        axis.set_title(title)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    OUTPUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUTPUT, dpi=90)
    print(f"wrote {OUTPUT}; σ RMS {np.sqrt(np.mean(relative**2)):.2f} %, errors average "
          f"{errors[0]:.4f}, map {errors[1]:.4f}")


if __name__ == "__main__":
    main()
