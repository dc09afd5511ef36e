"""Deconvolving with PSFs from the optics and from a resampled bead stack, against
deconvolving with the true PSF: issue #14's deconvolution bar.

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_optics_deconvolution.py`` (``--quick``
for one seed). Prints a Markdown table and writes it to
``benchmarks/results/optics_deconvolution.md``.

Forward model. A cell-like volume (``psfkit.samples.scene("blobs")``, structures of several
sizes on a faint floor) of 32 × 96 × 96 voxels of 0.2 × 0.065 × 0.065 µm is blurred by the
*vectorial* PSF of psfmodels (Aguet's implementation, polarisation included: the truth
here) at the image's voxels, for an NA 1.2 water objective at λ 0.52 µm, and
Poisson-sampled with 1000 photons at the brightest voxel. The volume is cut from a
larger scene, so its edges see blur from outside, as a camera's do.

It is deconvolved with a fixed method (``richardson_lucy`` at 40 iterations, near the best
count for the true PSF, and at twice that; and ``auto``) with these PSFs:

(a) the true PSF, the one that blurred it;
(b) ``psfkit.widefield_psf`` regenerated from the same optics (its default vectorial
    Gibson–Lanni model, integrated over each voxel); (b′) the same with
    ``theory="scalar"``, the scalar model;
(c) a *measured bead stack*: the vectorial PSF rendered at a 4× finer z step (0.05 µm),
    in a frame 16 voxels wider per side than the PSF's box, scaled to 20 000 photons at
    its peak on a background of 20 photons, Poisson-sampled, cleaned by
    ``psfkit.prepare_psf`` with that background level (measured away from the beads)
    and moved to the image's voxels by ``psfkit.resample_psf``; (c′) the same with the
    background fitted by ``prepare_psf`` (``"auto"``).

Each result's relative L2 error against the truth is reported with its ratio to (a)'s; the
bar is a ratio ≤ 1.05 for (b) and (c); (b′) shows what the scalar model costs. The z
planes of psfmodels are point samples of the focus (a z-stack moves the stage, it does not
integrate over z), laterally integrated by its 3× oversampling.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench_optics import relative_l2  # the benchmarks run with their folder on the path
from psfkit import deconvolve, prepare_psf, resample_psf, widefield_psf
from psfkit.samples import blurred_pair

try:
    import psfmodels
except ImportError:  # only on Python >= 3.12, where it has no wheels
    psfmodels = None

RESULTS = Path(__file__).parent / "results" / "optics_deconvolution.md"
WATER = {"numerical_aperture": 1.2, "wavelength": 0.52, "immersion_index": 1.33}
IMAGE_SHAPE, SPACING = (32, 96, 96), (0.2, 0.065, 0.065)  # voxels, µm
PSF_SHAPE = (31, 65, 65)
BEAD_Z_FACTOR = 4            # the bead stack's z step is 4× finer than the image's
IMAGE_PHOTONS = 1000.0       # at the brightest voxel of the blurred image
BEAD_PHOTONS, BEAD_BACKGROUND = 20000.0, 20.0
BEAD_FRAME_MARGIN = 16      # voxels of the bead frame beyond the PSF box, per side
RL_ITERATIONS = 40           # near the best count for the true PSF (of 20, 40, 80)
PSF_LABELS = {"true": "(a) true vectorial PSF", "optics": "(b) widefield_psf from the optics",
              "optics, scalar": "(b′) as (b), theory=\"scalar\"",
              "bead stack": "(c) bead stack at 0.05 µm z, resampled",
              "bead stack, fitted background": "(c′) as (c), background fitted by "
                                               "prepare_psf"}


def vectorial_psf(shape, spacing, optics) -> np.ndarray:
    """psfmodels' vectorial PSF of ``optics`` (matched immersion, source at the coverslip)
    on a ``(nz, n, n)`` grid of ``spacing``, z planes sampled at their centres, unit sum."""
    nz, ny, nx = shape
    if ny != nx:
        raise ValueError(f"psfmodels renders square planes; shape {shape} is not")
    index = optics["immersion_index"]
    psf = psfmodels.make_psf(nz, nx, dxy=spacing[2], dz=spacing[0], pz=0.0,
                             NA=optics["numerical_aperture"], wvl=optics["wavelength"],
                             ns=index, ni=index, ni0=index, model="vectorial",
                             normalize=False)
    return (psf / psf.sum()).astype(np.float32)


def bead_stack_psf(shape, spacing, optics, *, background="known", z_factor=BEAD_Z_FACTOR,
                   rng=0) -> np.ndarray:
    """A PSF measured the way a user would: a bead stack of the vectorial PSF at a
    ``z_factor``× finer z step, with background and Poisson noise, cleaned by
    ``prepare_psf`` to the same extent as ``shape`` and resampled by ``resample_psf`` to
    ``spacing``. ``background="known"`` passes the camera's background level (measured
    away from the beads) to ``prepare_psf``; ``"auto"`` lets it fit the level.
    ``prepare_psf`` may warn (``TruncationWarning``) that the bead runs beyond the frame:
    a widefield PSF's defocused light reaches the edge of any finite crop."""
    rng = np.random.default_rng(rng)
    fine_shape = (z_factor * shape[0] + 1, *shape[1:])
    fine_spacing = (spacing[0] / z_factor, *spacing[1:])
    # the recorded frame reaches beyond the PSF's box, as a crop around a bead does
    frame_shape = tuple(n + 2 * BEAD_FRAME_MARGIN for n in fine_shape)
    frame = vectorial_psf(frame_shape, fine_spacing, optics)
    stack = rng.poisson(frame * (BEAD_PHOTONS / frame.max()) + BEAD_BACKGROUND)
    level = BEAD_BACKGROUND if background == "known" else background
    cleaned = prepare_psf(stack.astype(np.float32), shape=fine_shape, background=level)
    return resample_psf(cleaned, fine_spacing, spacing)


def psfs(shape, spacing, optics, *, rng=0) -> dict[str, np.ndarray]:
    """The PSFs (a), (b), (b′), (c), (c′) of the module docstring, keyed as
    ``PSF_LABELS``."""
    return {"true": vectorial_psf(shape, spacing, optics),
            "optics": widefield_psf(shape, spacing, **optics),
            "optics, scalar": widefield_psf(shape, spacing, theory="scalar", **optics),
            "bead stack": bead_stack_psf(shape, spacing, optics, rng=rng),
            "bead stack, fitted background": bead_stack_psf(shape, spacing, optics,
                                                            background="auto", rng=rng)}


def blurred_volume(psf, shape, *, photons=IMAGE_PHOTONS, rng=0):
    """``(truth, blurred)``: a cell-like volume and its blur by ``psf`` with Poisson noise."""
    pair = blurred_pair(psf, shape, scene_kind="blobs", noise=0.0, poisson_photons=photons,
                        shift=(0.0,) * len(shape), rng=rng)
    return pair.sharp, pair.blurred


def deconvolution_errors(truth, blurred, candidates: dict, method: str,
                         iterations: int | None) -> dict[str, tuple[float, str]]:
    """``(relative L2 error against truth, what ran)`` of ``blurred`` deconvolved with each
    PSF: the iterations run, and for ``auto`` the method it chose (an accelerated iteration
    counts as one; a direct method has none)."""
    results = {}
    for name, psf in candidates.items():
        restored, info = deconvolve(blurred, psf, method, iterations=iterations,
                                    return_info=True)
        ran = str(info.parameters.get("iterations", "—"))
        if method == "auto":
            ran = f"{info.parameters['method']} {ran}"
        results[name] = (relative_l2(restored, truth), ran)
    return results


def case_rows(seed: int) -> list[str]:
    """Table rows of one seed: RL at a fixed count and ``auto``, with each PSF."""
    candidates = psfs(PSF_SHAPE, SPACING, WATER, rng=seed)
    truth, blurred = blurred_volume(candidates["true"], IMAGE_SHAPE, rng=seed)
    rows = [f"| {seed} | blurred (no deconvolution) | — | — | "
            f"{relative_l2(blurred, truth):.4f} | — |"]
    for method, iterations in (("richardson_lucy", RL_ITERATIONS),
                               ("richardson_lucy", 2 * RL_ITERATIONS), ("auto", None)):
        start = time.perf_counter()
        errors = deconvolution_errors(truth, blurred, candidates, method, iterations)
        seconds = (time.perf_counter() - start) / len(candidates)
        label = f"{method}, {iterations} iterations" if iterations else method
        for name, (error, count) in errors.items():
            rows.append(f"| {seed} | {label} ({seconds:.1f} s each) | {PSF_LABELS[name]} | "
                        f"{count} | {error:.4f} | {error / errors['true'][0]:.3f} |")
    return rows


def psf_rows(seed: int) -> list[str]:
    """How far the other PSFs are from the true one themselves."""
    candidates = psfs(PSF_SHAPE, SPACING, WATER, rng=seed)
    return [f"| {PSF_LABELS[name]} | {relative_l2(psf, candidates['true']):.4f} |"
            for name, psf in candidates.items() if name != "true"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed instead of three")
    seeds = (0,) if parser.parse_args(argv).quick else (0, 1, 2)
    if psfmodels is None:
        print("psfmodels is not installed: its vectorial PSF is the truth here")
        return 1
    lines = [
        f"NA 1.2 water, λ 0.52 µm; image {IMAGE_SHAPE} voxels of {SPACING} µm, PSF "
        f"{PSF_SHAPE}; truth: psfmodels {psfmodels.__version__} vectorial PSF; "
        f"{IMAGE_PHOTONS:g} photons at the brightest blurred voxel; bead stack "
        f"{BEAD_PHOTONS:g} photons at its peak on {BEAD_BACKGROUND:g}, z step "
        f"{SPACING[0] / BEAD_Z_FACTOR:g} µm.", "",
        "### The PSFs against the true one", "",
        "| PSF | relative L2 difference to (a) |", "|---|---|",
        *psf_rows(seeds[0]), "",
        "### Deconvolution error against the truth (bar: ratio to (a) ≤ 1.05)", "",
        "| seed | method | PSF | iterations run (auto: its choice) | relative L2 error "
        "| ratio to (a) |",
        "|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        lines += case_rows(seed)
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Deconvolution with PSFs from the optics — benchmark results\n\n"
                       + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
