"""Make docs/figures/psf.png: an LED frame and beads, prepared by hand and by psfkit.

Run ``python docs/scripts/figure_psf.py`` from the repository. Top row: a frame of an
out-of-focus LED (soft defocus disk of radius 6 px at a sub-pixel position, background,
shot and read noise, hot pixels; the ``benchmarks/bench_psf.py`` case), the by-hand PSF
(median background, crop at the brightest pixel, normalise), ``prepare_psf``, the true
kernel, and profiles through the centre. Bottom row: 20 beads at peak SNR 20 with the beads
``average_beads`` used (green) and rejected (red, with the reason), the by-hand average, the
psfkit average, the truth, and profiles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_psf import (  # noqa: E402
    by_hand,
    by_hand_average,
)
from psfkit import average_beads, make_psf, prepare_psf  # noqa: E402
from psfkit.metrics import kernel_error as relative_error  # noqa: E402
from psfkit.samples import (  # noqa: E402
    bead_image,
    point_source_frame,
    soft_disk,
)


def centre_pad(array, shape):
    pad = [((n - a) // 2, n - a - (n - a) // 2) for a, n in zip(array.shape, shape,
                                                                strict=True)]
    return np.pad(array, pad)


def show(axis, image, title, vmax=None):
    axis.imshow(image, cmap="magma", vmin=0, vmax=vmax)
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def profiles(axis, curves, title):
    for label, image, style in curves:
        middle = image.shape[0] // 2
        x = np.arange(image.shape[1]) - image.shape[1] // 2
        axis.plot(x, image[middle], style, label=label, lw=1.2)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, frameon=False)
    axis.set_xlabel("pixels from centre", fontsize=8)
    axis.tick_params(labelsize=7)


def main():
    figure, axes = plt.subplots(2, 5, figsize=(15, 6.4))

    truth = soft_disk(6.0)
    half = [n // 2 for n in truth.shape]
    centre = np.array([60.37, 65.78])
    frame = point_source_frame(truth, centre, (128, 128), hot_pixels=3, hot_value=4000.0,
                               rng=3)
    hand = by_hand(frame, half)
    psf = prepare_psf(frame)
    shape = [max(a, b, c) for a, b, c in zip(truth.shape, psf.shape, hand.shape,
                                              strict=True)]
    truth_p, psf_p, hand_p = (centre_pad(a, shape) for a in (truth, psf, hand))
    top = float(truth.max()) * 1.3
    show(axes[0, 0], frame[30:92, 35:97], "LED frame (crop; 3 hot pixels in the frame)")
    show(axes[0, 1], hand_p, f"by hand: error {relative_error(hand, truth):.2f}\n"
         "(brightest pixel = a hot pixel)", vmax=top)
    show(axes[0, 2], psf_p, f"prepare_psf: error {relative_error(psf, truth):.3f}", vmax=top)
    show(axes[0, 3], truth_p, "true kernel", vmax=top)
    clean_hand = by_hand(frame * (frame < 3000) + np.median(frame) * (frame >= 3000), half)
    profiles(axes[0, 4], [("truth", truth_p, "k-"), ("prepare_psf", psf_p, "C1-"),
                          ("by hand, hot pixels masked", centre_pad(clean_hand, shape),
                           "C0--")], "profile through the centre")

    bead_truth = make_psf("gaussian", (21, 21), sigma=1.5)
    image, _ = bead_image(bead_truth, (256, 256), count=20, peak_snr=20.0, rng=101)
    image = image.copy()
    image[120:123, 3:6] += 2000.0  # something bright at the edge, to show a rejection
    result = average_beads(image)
    axes[1, 0].imshow(image, cmap="gray")
    accepted = result.beads["accepted"]
    positions = result.beads["position"]
    axes[1, 0].scatter(positions[accepted, 1], positions[accepted, 0], s=60,
                       facecolors="none", edgecolors="lime", lw=1)
    axes[1, 0].scatter(positions[~accepted, 1], positions[~accepted, 0], s=60,
                       facecolors="none", edgecolors="red", lw=1)
    for (y, x), reason in zip(positions[~accepted], result.beads["reason"][~accepted],
                              strict=True):
        axes[1, 0].annotate(reason, (x, y), color="red", fontsize=7, xytext=(6, -6),
                            textcoords="offset points")
    axes[1, 0].set_title(f"20 beads, SNR 20: {result.beads_used} used", fontsize=9)
    axes[1, 0].set_xticks([])
    axes[1, 0].set_yticks([])
    bead_half = [n // 2 for n in bead_truth.shape]
    hand_average = by_hand_average(image, positions[accepted], bead_half)
    shape = bead_truth.shape
    average_p = centre_pad(result.psf, shape)
    top = float(bead_truth.max()) * 1.1
    show(axes[1, 1], hand_average,
         f"by hand, beads averaged: error {relative_error(hand_average, bead_truth):.3f}",
         vmax=top)
    show(axes[1, 2], average_p,
         f"average_beads: error {relative_error(result.psf, bead_truth):.3f}", vmax=top)
    show(axes[1, 3], bead_truth, "true PSF (Gaussian σ 1.5 px)", vmax=top)
    profiles(axes[1, 4], [("truth", bead_truth, "k-"), ("average_beads", average_p, "C1-"),
                          ("by hand, averaged", hand_average, "C0--")],
             "profile through the centre")
    figure.tight_layout()
    output = ROOT / "docs" / "figures" / "psf.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
