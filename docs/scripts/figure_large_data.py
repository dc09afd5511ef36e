"""Figure for docs/large-data.md: does cutting an image into blocks leave seams?

A 512² natural scene blurred by a Gaussian (σ = 2 px) with 1 % noise is deconvolved in
memory (``method="auto"``) and in 4 × 4 blocks three ways: psfkit's default (overlap from
the PSF support, automatic choices made once), blocks without overlap, and blocks with
overlap that each make their own automatic choices. The panels show the differences to
the in-memory result and their RMS against the distance to the nearest block border.

Run ``python docs/scripts/figure_large_data.py``; writes ``docs/figures/large_data.png``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import psfkit
from psfkit.chunked import ChunkPlan, deconvolve_chunked, plan_chunked
from psfkit.models import make_psf
from psfkit.samples import blurred_pair

OUTPUT = Path(__file__).resolve().parents[1] / "figures" / "large_data.png"
SIZE, BLOCK = 512, 128


def distance_to_cut(shape, block):
    """Distance of every pixel to the nearest internal block border (in pixels)."""
    distances = []
    for n in shape:
        index = np.arange(n) + 0.5
        cuts = np.arange(block, n, block)
        distances.append(np.min(np.abs(index[:, None] - cuts[None, :]), axis=1))
    return np.minimum(distances[0][:, None], distances[1][None, :])


def main() -> None:
    psf = make_psf("gaussian", (15, 15), sigma=2.0)
    pair = blurred_pair(psf, (SIZE, SIZE), noise=0.01)
    image = pair.blurred
    whole = psfkit.deconvolve(image, psf)
    plan = plan_chunked(image, psf, chunks=BLOCK)
    variants = {
        "psfkit: overlap, choices made once": plan,
        "no overlap": ChunkPlan(parameters=plan.parameters, depth=(0, 0), chunks=plan.chunks),
        "overlap, choices per block": ChunkPlan(parameters={"method": "auto"},
                                                depth=plan.depth, chunks=plan.chunks),
    }
    differences = {name: deconvolve_chunked(image, psf, plan=p) - whole
                   for name, p in variants.items()}
    distance = distance_to_cut(image.shape, BLOCK)
    noise = pair.noise_sigma

    figure, axes = plt.subplots(1, 4, figsize=(18, 4.8), layout="constrained")
    axes[0].imshow(image, cmap="gray")
    for cut in range(BLOCK, SIZE, BLOCK):
        axes[0].axhline(cut - 0.5, color="tab:orange", lw=0.8)
        axes[0].axvline(cut - 0.5, color="tab:orange", lw=0.8)
    axes[0].set_title(f"blurred input, {SIZE}² in {BLOCK}² blocks\n"
                      f"overlap {plan.depth[0]} px from the PSF support")
    limit = 3 * noise
    for axis, name in zip(axes[1:3], list(differences)[:2], strict=True):
        shown = axis.imshow(differences[name], cmap="RdBu_r", vmin=-limit, vmax=limit)
        relative = np.linalg.norm(differences[name]) / np.linalg.norm(whole)
        axis.set_title(f"{name},\nminus in memory: {100 * relative:.2f} % rel. L2")
    figure.colorbar(shown, ax=axes[2], shrink=0.8, label="difference (±3 noise σ)")
    for axis in axes[:3]:
        axis.set_xticks([])
        axis.set_yticks([])

    bins = np.arange(0, 41, 2)
    centres = 0.5 * (bins[1:] + bins[:-1])
    for name, difference in differences.items():
        rms = [np.sqrt(np.mean(difference[(distance >= a) & (distance < b)] ** 2)) / noise
               for a, b in itertools.pairwise(bins)]
        axes[3].semilogy(centres, rms, marker="o", ms=3, label=name)
    axes[3].axhline(1.0, color="gray", ls="--", lw=1, label="noise σ")
    axes[3].set_xlabel("distance to the nearest block border (px)")
    axes[3].set_ylabel("RMS difference to in-memory / noise σ")
    axes[3].set_title("seams: error against distance to a cut")
    axes[3].legend(fontsize=8)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUTPUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUTPUT}")
    for name, difference in differences.items():
        near = distance < 2
        print(f"{name}: rel {np.linalg.norm(difference) / np.linalg.norm(whole):.4f}, "
              f"seam RMS / noise {np.sqrt(np.mean(difference[near] ** 2)) / noise:.3f}")


if __name__ == "__main__":
    main()
