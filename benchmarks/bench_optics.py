"""Microscope PSFs from the optics: psfkit.widefield_psf / confocal_psf against the textbook
widths and against psfmodels (Aguet's C++ Gibson–Lanni), and resample_psf's accuracy.

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_optics.py`` (``--quick`` for fewer
repetitions). Prints Markdown tables and writes them to ``benchmarks/results/optics.md``.
psfmodels computes on one thread; one BLAS thread makes the comparison like for like and
keeps a shared, busy machine from oversubscribing its cores (which slowed psfkit's small
least-squares and matrix products tenfold at a load of 9 on 2 cores).

Cases
-----
* **Widths**: in-focus lateral and axial FWHM of ``widefield_psf`` (vectorial, the
  default, and scalar; oil immersion, matched sample, depth 0, λ = 0.52 µm, voxels of 1/8
  of the textbook widths) over NA 0.5–1.4, against ``0.51 λ / NA`` and
  ``0.88 λ / (n − √(n² − NA²))``.
* **psfmodels**: relative L2 difference of the scalar and the vectorial ``widefield_psf``
  to ``psfmodels.scalar_psf`` and ``psfmodels.vectorial_psf`` (the same two models,
  integrated laterally by its 3× oversampling and here axially by averaging 3 planes per
  voxel, as psfkit does) on a 65 × 129 × 129 grid of 0.1 × 0.05 × 0.05 µm, for matched
  and mismatched immersion, at depths up to 10 µm. The confocal row compares with
  ``psfmodels.confocal_psf`` with a vanishing pinhole, which multiplies excitation and
  emission after its lateral integration and samples z at the plane centres, so part of
  that difference is the order of integration.
* **Timing**: the same 65 × 129 × 129 PSF (NA 1.4 oil, and NA 1.4 oil into water at 5 µm),
  best of several runs in one process: psfkit's vectorial and scalar theories,
  psfmodels' scalar and vectorial models as they are usually called
  (``make_psf(model=...)``, planes sampled at their centres); and the 31 × 65 × 65 PSF of
  ``bench_optics_deconvolution.py`` (NA 1.2 water, 0.2 × 0.065 × 0.065 µm).
* **Resampling**: a 4× oversampled PSF (fine grid ``4 n + 1`` voxels per axis) resampled by
  ``resample_psf`` to the coarse grid, against the same model rendered on the coarse grid.

psfmodels is optional (wheels for CPython 3.10 and 3.11); without it its rows say so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from psfkit import confocal_psf, make_psf, resample_psf, widefield_psf
from psfkit.psf import fwhm

try:
    import psfmodels
except ImportError:  # only on Python >= 3.12, where it has no wheels
    psfmodels = None

RESULTS = Path(__file__).parent / "results" / "optics.md"
GREEN, BLUE, OIL = 0.52, 0.488, 1.515
SHAPE, SPACING = (65, 129, 129), (0.1, 0.05, 0.05)


def relative_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def best_time(function, repeats: int, *args, **kwargs) -> float:
    """Shortest of ``repeats`` wall-clock times of ``function(*args, **kwargs)`` (s)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def width_rows() -> list[str]:
    rows = []
    for numerical_aperture in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4):
        lateral = 0.51 * GREEN / numerical_aperture
        axial = 0.88 * GREEN / (OIL - np.sqrt(OIL**2 - numerical_aperture**2))
        spacing = np.array([axial / 8, lateral / 8, lateral / 8])
        cells = [f"{numerical_aperture:.1f}", f"{lateral:.3f}", f"{axial:.3f}"]
        for theory in ("vectorial", "scalar"):
            psf = widefield_psf((41, 33, 33), spacing, numerical_aperture=numerical_aperture,
                                wavelength=GREEN, theory=theory)
            widths = fwhm(psf) * spacing
            cells += [f"{widths[2]:.3f} ({widths[2] / lateral:.3f})",
                      f"{widths[0]:.3f} ({widths[0] / axial:.3f})"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _psfmodels_integrated(render, shape, spacing, numerical_aperture, immersion, sample,
                          depth, wavelength, axial_subsamples):
    """A psfmodels PSF (``render`` is ``scalar_psf`` or ``vectorial_psf``) integrated over
    each voxel like psfkit's: laterally by its own 3× oversampling, axially by averaging
    planes inside each voxel; its coverslip is glass (1.515), psfkit's default."""
    nz, _, nx = shape
    dz, _, dx = spacing
    sub = (np.arange(nz * axial_subsamples) + 0.5) / axial_subsamples - 0.5
    focus = (sub - nz // 2) * dz + depth
    params = {"NA": numerical_aperture, "ni": immersion, "ni0": immersion, "ns": sample}
    planes = render(focus, nx, dx, depth, wavelength, params, normalize=False)
    psf = planes.reshape(nz, axial_subsamples, nx, nx).mean(axis=1)
    return psf / psf.sum()


def psfmodels_scalar(shape, spacing, numerical_aperture, immersion, sample, depth,
                     wavelength=GREEN, axial_subsamples=3):
    """psfmodels' scalar Gibson–Lanni PSF integrated over each voxel like psfkit's (also
    the reference of tests/test_optics.py)."""
    return _psfmodels_integrated(psfmodels.scalar_psf, shape, spacing, numerical_aperture,
                                 immersion, sample, depth, wavelength, axial_subsamples)


def psfmodels_vectorial(shape, spacing, numerical_aperture, immersion, sample, depth,
                        wavelength=GREEN, axial_subsamples=3):
    """psfmodels' vectorial PSF (Aguet) integrated over each voxel like psfkit's (also
    the reference of tests/test_optics.py)."""
    return _psfmodels_integrated(psfmodels.vectorial_psf, shape, spacing,
                                 numerical_aperture, immersion, sample, depth, wavelength,
                                 axial_subsamples)


PSFMODELS_CASES = [
    (1.4, OIL, OIL, 0.0), (1.4, OIL, 1.33, 5.0), (1.2, OIL, 1.33, 3.0),
    (1.3, OIL, 1.45, 2.0), (1.2, 1.33, 1.33, 0.0), (1.0, 1.33, 1.33, 10.0),
    (0.8, 1.0, 1.0, 0.0), (0.5, 1.0, 1.0, 0.0),
]


def psfmodels_rows() -> list[str]:
    if psfmodels is None:
        return ["| psfmodels is not installed | — |"]
    references = {"scalar": psfmodels_scalar, "vectorial": psfmodels_vectorial}
    rows = []
    for numerical_aperture, immersion, sample, depth in PSFMODELS_CASES:
        cells = []
        for theory, reference in references.items():
            ours = widefield_psf(SHAPE, SPACING, numerical_aperture=numerical_aperture,
                                 wavelength=GREEN, immersion_index=immersion,
                                 sample_index=sample, depth=depth, theory=theory)
            theirs = reference(SHAPE, SPACING, numerical_aperture, immersion, sample, depth)
            cells.append(f"{relative_l2(ours, theirs):.4f}")
        rows.append(f"| widefield, NA {numerical_aperture}, n_i {immersion}, "
                    f"n_s {sample}, depth {depth:g} µm | {' | '.join(cells)} |")
    cells = []
    for theory in references:
        ours = confocal_psf(SHAPE, SPACING, numerical_aperture=1.4, wavelength=GREEN,
                            excitation_wavelength=BLUE, theory=theory)
        theirs = psfmodels.confocal_psf(SHAPE[0], SHAPE[2], pinhole_au=0.01,
                                        dxy=SPACING[2], dz=SPACING[0], NA=1.4, ex_wvl=BLUE,
                                        em_wvl=GREEN, ns=OIL, ni=OIL, ni0=OIL, model=theory)
        cells.append(f"{relative_l2(ours, theirs / theirs.sum()):.4f}")
    rows.append(f"| confocal (point pinhole), NA 1.4 oil, 0.488/0.52 µm | "
                f"{' | '.join(cells)} |")
    return rows


def timing_rows(repeats: int) -> list[str]:
    rows = []
    for label, sample, depth in (("NA 1.4 oil", OIL, 0.0),
                                 ("NA 1.4 oil into water, 5 µm deep", 1.33, 5.0)):
        optics = {"numerical_aperture": 1.4, "wavelength": GREEN, "sample_index": sample,
                  "depth": depth}
        ours = [best_time(render, repeats, SHAPE, SPACING, theory=theory, **optics, **extra)
                for render, extra in ((widefield_psf, {}),
                                      (confocal_psf, {"excitation_wavelength": BLUE}))
                for theory in ("vectorial", "scalar")]
        if psfmodels is None:
            scalar = vectorial = "—"
        else:
            common = {"dxy": SPACING[2], "dz": SPACING[0], "pz": depth, "NA": 1.4,
                      "wvl": GREEN, "ns": sample, "ni": OIL, "ni0": OIL}
            seconds = best_time(psfmodels.make_psf, repeats, SHAPE[0], SHAPE[2],
                                model="scalar", **common)
            scalar = f"{seconds:.2f}"
            seconds = best_time(psfmodels.make_psf, max(1, repeats // 2), SHAPE[0],
                                SHAPE[2], model="vectorial", **common)
            vectorial = f"{seconds:.2f}"
        rows.append(f"| {label} | {' | '.join(f'{t:.2f}' for t in ours)} | {scalar} | "
                    f"{vectorial} |")
    return rows


def deconvolution_psf_timing_row(repeats: int) -> str:
    """The 31 × 65 × 65 PSF of bench_optics_deconvolution.py, vectorial and scalar."""
    optics = {"numerical_aperture": 1.2, "wavelength": GREEN, "immersion_index": 1.33}
    seconds = [best_time(widefield_psf, repeats, (31, 65, 65), (0.2, 0.065, 0.065),
                         theory=theory, **optics) for theory in ("vectorial", "scalar")]
    return f"| NA 1.2 water, (31, 65, 65), 0.2 × 0.065² µm | {seconds[0]:.3f} | " \
           f"{seconds[1]:.3f} |"


def resampling_rows() -> list[str]:
    def oversampled(shape):
        return tuple(4 * n + 1 for n in shape)

    optics = {"numerical_aperture": 1.2, "wavelength": GREEN, "immersion_index": 1.33}
    sigma = np.array([0.6, 0.15, 0.12])
    # a PSF holds the light of each voxel: the Gaussians are integrated over their voxels
    integrated = {"pixel_integrated": True}
    cases = [
        ("2D Gaussian σ 1.1 px",
         make_psf("gaussian", oversampled((31, 31)), sigma=4.4, **integrated),
         0.25, 1.0, make_psf("gaussian", (31, 31), sigma=1.1, **integrated)),
        ("2D Airy first zero 2.5 px", make_psf("airy", oversampled((31, 31)), radius=10.0),
         0.25, 1.0, make_psf("airy", (31, 31), radius=2.5)),
        ("3D Gaussian σ (0.6, 0.15, 0.12) µm, 0.1×0.025² → 0.4×0.1² µm",
         make_psf("gaussian", oversampled((11, 21, 21)), sigma=sigma / [0.1, 0.025, 0.025],
                  **integrated),
         (0.1, 0.025, 0.025), (0.4, 0.1, 0.1),
         make_psf("gaussian", (11, 21, 21), sigma=sigma / [0.4, 0.1, 0.1], **integrated)),
        ("3D widefield NA 1.2 water, 0.0625×0.025² → 0.25×0.1² µm",
         widefield_psf(oversampled((21, 33, 33)), (0.0625, 0.025, 0.025), **optics),
         (0.0625, 0.025, 0.025), (0.25, 0.1, 0.1),
         widefield_psf((21, 33, 33), (0.25, 0.1, 0.1), **optics)),
    ]
    rows = []
    for label, fine, fine_spacing, coarse_spacing, truth in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the anisotropic Gaussian is undersampled in z
            start = time.perf_counter()
            resampled = resample_psf(fine, fine_spacing, coarse_spacing)
            seconds = time.perf_counter() - start
        rows.append(f"| {label} | {fine.shape} → {resampled.shape} | "
                    f"{relative_l2(resampled, truth):.5f} | {seconds * 1000:.0f} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    repeats = 2 if parser.parse_args(argv).quick else 5
    version = getattr(psfmodels, "__version__", "not installed")
    lines = [
        "### In-focus widths of `widefield_psf` (oil, λ 0.52 µm) against the textbook", "",
        "FWHM in µm, ratio to the textbook width in brackets.", "",
        "| NA | 0.51 λ/NA (µm) | 0.88 λ/(n − √(n² − NA²)) (µm) | vectorial lateral | "
        "vectorial axial | scalar lateral | scalar axial |",
        "|---|---|---|---|---|---|---|",
        *width_rows(),
        "", f"### Against psfmodels {version} (scalar and vectorial), 65 × 129 × 129 voxels "
        "of 0.1 × 0.05 × 0.05 µm, λ 0.52 µm", "",
        "| case | relative L2, scalar | relative L2, vectorial |", "|---|---|---|",
        *psfmodels_rows(),
        "", f"### Time for one 65 × 129 × 129 PSF (s, best of {repeats})", "",
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.", "",
        "| case | psfkit widefield vectorial | psfkit widefield scalar | "
        "psfkit confocal vectorial | psfkit confocal scalar | psfmodels scalar | "
        "psfmodels vectorial |", "|---|---|---|---|---|---|---|",
        *timing_rows(repeats), "",
        "| case | psfkit widefield vectorial | psfkit widefield scalar |", "|---|---|---|",
        deconvolution_psf_timing_row(repeats),
        "", "### resample_psf: 4× oversampled model → coarse grid, against the coarse "
        "rendering", "",
        "| case | shapes | relative L2 difference | time (ms) |", "|---|---|---|---|",
        *resampling_rows(),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Microscope PSFs from the optics — benchmark results\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
