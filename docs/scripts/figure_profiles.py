"""Figure for docs/psf.md: the radial and axial profiles (psfkit.radial_profile,
psfkit.axial_profile) of a widefield PSF from the optics and of a Gaussian of the same
FWHM, with the FWHM marked at half maximum, as the napari widgets plot them.

Run ``python docs/scripts/figure_profiles.py``; writes ``docs/figures/profiles.png``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from psfkit import axial_profile, make_psf, radial_profile, widefield_psf

OUTPUT = Path(__file__).parents[1] / "figures" / "profiles.png"
SHAPE, SPACING = (41, 41, 41), (0.1, 0.04, 0.04)  # µm
GAUSSIAN_FWHM = 2 * np.sqrt(2 * np.log(2))


def draw(axis, profiles, labels, title, unit) -> None:
    """Each profile as a line with its FWHM dashed at half maximum (from 0 when radial)."""
    for index, (profile, label) in enumerate(zip(profiles, labels, strict=True)):
        colour = f"C{index}"
        axis.plot(profile.distance, profile.value / profile.value.max(), color=colour,
                  marker="." if index == 0 else None,
                  label=f"{label}: FWHM {profile.fwhm:.3g} {unit}")
        low, high = profile.half_maximum_edges
        half = profile.half_maximum / profile.value.max()
        axis.hlines(half, 0.0 if title == "radial" else low, high, colors=colour,
                    linestyles="dashed", linewidth=1)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel(f"{'radius' if title == 'radial' else 'z'} ({unit})")
    axis.set_ylabel("PSF / peak")
    axis.legend(fontsize=7, frameon=False, loc="upper right")


def main() -> None:
    psf = widefield_psf(SHAPE, SPACING, numerical_aperture=1.2, wavelength=0.52,
                        immersion_index=1.33)
    radial, axial = radial_profile(psf, spacing=SPACING), axial_profile(psf, spacing=SPACING)
    sigma = (axial.fwhm / GAUSSIAN_FWHM / SPACING[0],
             *[radial.fwhm / GAUSSIAN_FWHM / SPACING[1]] * 2)
    gaussian = make_psf("gaussian", SHAPE, sigma=sigma)
    labels = ["widefield NA 1.2", "Gaussian of equal FWHM"]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
    draw(axes[0], [radial, radial_profile(gaussian, spacing=SPACING)], labels, "radial",
         "µm")
    draw(axes[1], [axial, axial_profile(gaussian, spacing=SPACING)], labels, "axial", "µm")
    OUTPUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUTPUT, dpi=120)
    print(f"wrote {OUTPUT}: radial FWHM {radial.fwhm:.3f} µm, axial FWHM {axial.fwhm:.3f} µm")


if __name__ == "__main__":
    main()
