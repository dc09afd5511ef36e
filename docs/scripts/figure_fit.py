"""Figure for docs/fit.md: a fitted defocus ring, its residual, the model ranking, and the
Gaussian-sigma accuracy of psfkit against seed 003's recipe on camera-like pairs.

Run ``python docs/scripts/figure_fit.py``; writes ``docs/figures/fit.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from psfkit import fit_kernel, make_psf
from psfkit.samples import blurred_pair

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from bench_fit import CAMERA, seed003_sigma

OUTPUT = Path(__file__).parents[1] / "figures" / "fit.png"


def main() -> None:
    ring = make_psf("ring", 31, diameter=18.0, width=1.5)
    pair = blurred_pair(ring, (256, 256), noise=0.01, rng=4, **CAMERA)
    fit = fit_kernel(pair.sharp, pair.blurred, "auto")

    sigmas = np.array([0.8, 1.2, 2.0, 3.0, 4.0, 5.0])
    ours, theirs = [], []
    for sigma in sigmas:
        kernel = make_psf("gaussian", 2 * int(np.ceil(4.5 * sigma)) + 1, sigma=sigma)
        gaussian_pair = blurred_pair(kernel, (256, 256), noise=0.02, rng=1, **CAMERA)
        ours.append(fit_kernel(gaussian_pair.sharp, gaussian_pair.blurred).params["sigma"])
        theirs.append(seed003_sigma(gaussian_pair.sharp, gaussian_pair.blurred))

    figure, axes = plt.subplots(2, 3, figsize=(12, 7.6))
    axes[0, 0].imshow(pair.sharp, cmap="gray")
    axes[0, 0].set_title("sharp")
    axes[0, 1].imshow(pair.blurred, cmap="gray")
    axes[0, 1].set_title("blurred (ring, gain, offset, shift, 1 % noise)")
    limit = float(np.abs(fit.residual).max())
    image = axes[0, 2].imshow(fit.residual, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0, 2].set_title(f"'{fit.model}' fit residual, χ²ᵣ = {fit.reduced_chi2:.2f}")
    figure.colorbar(image, ax=axes[0, 2], shrink=0.8)
    for axis in axes[0]:
        axis.set_axis_off()

    centre = ring.shape[0] // 2
    half = fit.kernel.shape[0] // 2
    x_true = np.arange(ring.shape[0]) - centre
    x_fit = np.arange(fit.kernel.shape[0]) - half
    axes[1, 0].plot(x_true, ring[centre], "k-", lw=3, alpha=0.4, label="true ring")
    axes[1, 0].plot(x_fit, fit.kernel[half], "C3.-", label=(
        f"fit: d = {fit.params['diameter']:.2f} ± {fit.errors['diameter']:.2f}, "
        f"w = {fit.params['width']:.2f} px"))
    axes[1, 0].set_xlabel("x (px) through the centre")
    axes[1, 0].set_title("kernel profile")
    axes[1, 0].legend(fontsize=8)

    names = [entry[0] for entry in fit.ranking]
    criteria = np.array([entry[1] for entry in fit.ranking])
    axes[1, 1].barh(names[::-1], (criteria - criteria.min())[::-1] + 1, color="C0")
    axes[1, 1].set_xscale("log")
    axes[1, 1].set_xlabel("BIC − best BIC + 1 (log)")
    axes[1, 1].set_title('model="auto": ranking')

    axes[1, 2].semilogy(sigmas, np.abs(np.array(ours) / sigmas - 1) * 100, "C3o-",
                        label="psfkit fit_kernel")
    axes[1, 2].semilogy(sigmas, np.abs(np.array(theirs) / sigmas - 1) * 100, "ks--",
                        label="seed 003 (sigma only)")
    axes[1, 2].axhline(1.0, color="gray", lw=0.8)
    axes[1, 2].set_xlabel("true sigma (px)")
    axes[1, 2].set_ylabel("relative error (%)")
    axes[1, 2].set_title("Gaussian sigma, camera pairs, 2 % noise")
    axes[1, 2].legend(fontsize=8)

    figure.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
