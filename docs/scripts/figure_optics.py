"""Figure for docs/optics.md: xz and xy sections of a widefield and a confocal PSF from the
optics, the spherical aberration of an oil objective focused into water, and a PSF at a
fine z step resampled to an image's voxels.

Run ``python docs/scripts/figure_optics.py``; writes ``docs/figures/optics.png``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from psfkit import confocal_psf, resample_psf, widefield_psf

OUTPUT = Path(__file__).parents[1] / "figures" / "optics.png"
SHAPE, SPACING = (81, 81, 81), (0.05, 0.025, 0.025)  # µm
OIL = {"numerical_aperture": 1.4, "wavelength": 0.52, "immersion_index": 1.515}


def show_section(axis, section, spacing, title, ylabel) -> None:
    """One section on a log scale (4 decades), with axes in µm from the centre."""
    rows, columns = section.shape
    extent = [-(columns // 2 + 0.5) * spacing[1], (columns // 2 + 0.5) * spacing[1],
              (rows // 2 + 0.5) * spacing[0], -(rows // 2 + 0.5) * spacing[0]]
    image = np.log10(np.maximum(section / section.max(), 1e-4))
    axis.imshow(image, cmap="magma", extent=extent, vmin=-4, vmax=0, aspect="equal")
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("x (µm)")
    axis.set_ylabel(ylabel)


def resampling_panel(axis) -> None:
    """Axial profiles: a bead-like PSF at a 0.05 µm z step, resampled to 0.2 × 0.1 µm."""
    optics = {"numerical_aperture": 1.2, "wavelength": 0.52, "immersion_index": 1.33}
    fine_spacing, image_spacing = (0.05, 0.025, 0.025), (0.2, 0.1, 0.1)
    # 4 n + 1 fine voxels per axis: the stack reaches a little beyond the image's box
    fine = widefield_psf((125, 85, 85), fine_spacing, **optics)
    resampled = resample_psf(fine, fine_spacing, image_spacing)
    direct = widefield_psf(resampled.shape, image_spacing, **optics)
    error = np.linalg.norm(resampled - direct) / np.linalg.norm(direct)

    def axial(psf, spacing):
        centre = tuple(n // 2 for n in psf.shape)
        z = (np.arange(psf.shape[0]) - centre[0]) * spacing[0]
        # light per µm of z, so grids of different steps share one scale
        return z, psf[:, centre[1], centre[2]] / (spacing[0] * spacing[1] * spacing[2])

    axis.plot(*axial(fine, fine_spacing), "k-", lw=1, alpha=0.5,
              label="bead PSF, 0.05 × 0.025² µm voxels")
    axis.plot(*axial(direct, image_spacing), "C0s", mfc="none", ms=7,
              label="model rendered on the image grid")
    axis.plot(*axial(resampled, image_spacing), "C3o", ms=4,
              label=f"resample_psf → 0.2 × 0.1² µm (L2 diff. {error:.1%})")
    axis.set_xlabel("z (µm) through the centre")
    axis.set_ylabel("light density (µm⁻³)")
    axis.set_title("resampling a fine-step bead stack (NA 1.2 water)", fontsize=9)
    axis.legend(fontsize=7)


def main() -> None:
    widefield = widefield_psf(SHAPE, SPACING, **OIL)
    confocal = confocal_psf(SHAPE, SPACING, excitation_wavelength=0.488, **OIL)
    into_water = widefield_psf(SHAPE, SPACING, sample_index=1.33, depth=10.0, **OIL)
    centre = SHAPE[1] // 2
    lateral = (SPACING[1], SPACING[2])

    figure, axes = plt.subplots(2, 3, figsize=(12, 8))
    show_section(axes[0, 0], widefield[:, centre], SPACING,
                 "widefield, NA 1.4 oil, λ 0.52 µm: xz", "z (µm)")
    show_section(axes[0, 1], widefield[SHAPE[0] // 2], lateral, "widefield: xy in focus",
                 "y (µm)")
    show_section(axes[0, 2], into_water[:, centre], SPACING,
                 "same objective, water sample, 10 µm deep: xz", "z (µm)")
    show_section(axes[1, 0], confocal[:, centre], SPACING,
                 "confocal (point pinhole), 0.488 → 0.52 µm: xz", "z (µm)")
    show_section(axes[1, 1], confocal[SHAPE[0] // 2], lateral, "confocal: xy in focus",
                 "y (µm)")
    resampling_panel(axes[1, 2])
    figure.suptitle("Vectorial Gibson–Lanni PSFs (log scale, 4 decades), integrated over "
                    "0.05 × 0.025 × 0.025 µm voxels", fontsize=10)
    figure.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
