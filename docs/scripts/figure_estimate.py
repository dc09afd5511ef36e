"""Make docs/figures/estimate.png: true and estimated kernels, and residuals, per method.

Run ``python docs/scripts/figure_estimate.py`` from the repository. The pair is a
camera-like crop of a natural scene blurred by a motion kernel, shifted by a fraction of a
pixel, with 2 % Gaussian noise, a gain and an offset. The peers are those of
``benchmarks/bench_estimate.py``; the residual of each kernel is ``blurred − (a · sharp ∗
kernel + b)`` on the valid region, with ``a, b`` fitted by least squares.
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

from bench_estimate import (  # noqa: E402
    diplib_best,
    diplib_wiener,
    fft_division,
    lsq_valid,
)
from psfkit import estimate_kernel, make_psf, samples  # noqa: E402
from psfkit.metrics import kernel_error  # noqa: E402
from psfkit.operators import (  # noqa: E402
    centre_embed,
    convolve,
    fourier_shift,
)


def residual_of(sharp, blurred, kernel):
    """Residual on the valid region after the best gain and offset for ``kernel``."""
    model = convolve(sharp, kernel.astype(np.float32), "same")
    half = [k // 2 + 2 for k in kernel.shape]
    inner = tuple(slice(h, n - h) for h, n in zip(half, sharp.shape, strict=True))
    design = np.stack([model[inner].ravel(), np.ones(model[inner].size)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, blurred[inner].ravel(), rcond=None)
    return blurred[inner] - (design @ coefficients).reshape(model[inner].shape)


def main() -> None:
    truth = make_psf("motion", (17, 17), length=11.0, angle=0.6)
    pair = samples.blurred_pair(truth, (256, 256), noise=0.02, gain=0.85, offset=0.05,
                                shift=(0.4, -0.7), rng=11)
    shape = truth.shape
    effective = fourier_shift(centre_embed(truth, [n + 6 for n in shape]), pair.shift)
    result = estimate_kernel(pair.sharp, pair.blurred)
    _, best_kernel, best_regularization = diplib_best(pair.sharp, pair.blurred, shape,
                                                      effective)
    panels = [
        ("truth", truth, None, pair.shift),
        ("FFT division", fft_division(pair.sharp, pair.blurred, shape), effective, None),
        ("DIPlib Wiener, default", diplib_wiener(pair.sharp, pair.blurred, shape), effective,
         None),
        (f"DIPlib Wiener, best ({best_regularization:.0e})", best_kernel, effective, None),
        ("least squares, valid", lsq_valid(pair.sharp, pair.blurred, shape), effective, None),
        ("psfkit", result.kernel, truth, result.shift),
    ]
    figure, axes = plt.subplots(2, len(panels), figsize=(3.0 * len(panels), 7.0))
    for column, (title, kernel, reference, shift) in enumerate(panels):
        shown = centre_embed(kernel, shape)
        axes[0, column].imshow(shown, cmap="magma")
        label = title if reference is None else (
            f"{title}\nerror {kernel_error(kernel, reference, normalize=True):.3f}")
        axes[0, column].set_title(label, fontsize=9)
        # centred kernels (the truth, psfkit) come with a shift; the peers' kernels hold it
        sharp = pair.sharp if shift is None else fourier_shift(pair.sharp, shift,
                                                                  edges="mirror")
        residual = residual_of(sharp, pair.blurred, shown)
        rms = float(np.sqrt(np.mean(residual**2)))
        limit = 4 * pair.noise_sigma
        axes[1, column].imshow(residual, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[1, column].set_title(f"residual RMS / noise {rms / pair.noise_sigma:.2f}",
                                  fontsize=9)
        for axis in axes[:, column]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle("Motion kernel (length 11 px) between a sharp and a blurred crop: "
                    "2 % noise, shift (0.4, −0.7) px, gain 0.85, offset 0.05", fontsize=10)
    figure.tight_layout()
    out = ROOT / "docs" / "figures" / "estimate.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
