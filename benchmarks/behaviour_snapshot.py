"""Snapshot of what the public functions return on fixed inputs, to prove a refactor changes
no behaviour.

``python benchmarks/behaviour_snapshot.py --save before.npz`` on the old code, then
``--compare before.npz`` on the new: every array and number is compared, and the largest
relative difference of each entry is printed. A pure restructuring gives zero everywhere;
a reordered floating-point sum gives differences near float32 rounding (about 1e-6), which
the comparison reports and names instead of hiding.

The inputs are psfkit's bundled samples (fixed seeds) and small synthetic cases, chosen to
run every deconvolution method, every fit model, the kernel estimator's automatic and
manual paths in 2D, 3D and RGB, the PSF preparation of one and many beads, and the chunked
path, in about a minute.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

import psfkit
from psfkit import samples
from psfkit.chunked import deconvolve_chunked


def _flatten(prefix: str, value, out: dict) -> None:
    """Store arrays and numbers of a result under dotted names."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float, np.floating, np.integer)) for v in value):
        out[prefix] = np.asarray(value, dtype=np.float64)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        out[prefix] = value
    elif isinstance(value, (int, float, np.floating, np.integer, bool)):
        out[prefix] = np.asarray(float(value))


def _fields(prefix: str, result, names, out: dict) -> None:
    for name in names:
        if hasattr(result, name):
            _flatten(f"{prefix}.{name}", getattr(result, name), out)


def snapshot() -> dict:
    out: dict = {}
    warnings.simplefilter("ignore")
    pair = samples.sample_pair()
    sharp, blurred = pair["sharp"], pair["blurred"]
    estimate_fields = ("kernel", "shift", "gain", "offset", "residual", "reblurred",
                       "regularization", "residual_ratio", "noise_sigma")
    _fields("estimate.auto", psfkit.estimate_kernel(sharp, blurred), estimate_fields, out)
    _fields("estimate.given", psfkit.estimate_kernel(sharp, blurred, 15), estimate_fields, out)
    _fields("estimate.fourier", psfkit.estimate_kernel(sharp, blurred, 15, method="fourier"),
            estimate_fields, out)
    stars = samples.blurred_pair(psfkit.make_psf("motion", (15, 15), length=9, angle=0.5),
                                 (160, 160), scene_kind="stars", noise=0.01, jpeg_quality=90,
                                 rng=7)
    _fields("estimate.stars", psfkit.estimate_kernel(stars.sharp, stars.blurred),
            estimate_fields, out)
    volume_kernel = psfkit.make_psf("gaussian", (7, 7, 7), sigma=(1.5, 1.0, 1.0))
    volume = samples.blurred_pair(volume_kernel, (32, 48, 48), scene_kind="blobs", noise=0.01,
                                  shift=(0.0, 0.4, -0.3), rng=8)
    _fields("estimate.3d", psfkit.estimate_kernel(volume.sharp, volume.blurred, 7),
            estimate_fields, out)
    rgb_sharp = np.stack([sharp[:128, :128]] * 3, axis=-1)
    rgb_blurred = np.stack([blurred[:128, :128], 0.8 * blurred[:128, :128],
                            blurred[:128, :128] + 0.1], axis=-1)
    _fields("estimate.rgb", psfkit.estimate_kernel(rgb_sharp, rgb_blurred, 11),
            estimate_fields, out)

    fit_fields = ("params", "errors", "kernel", "residual", "shift", "gain", "offset")
    for model in psfkit.MODELS:
        truth = {"gaussian": {"sigma": 2.0},
                 "elliptical_gaussian": {"sigma_y": 2.5, "sigma_x": 1.5, "angle": 0.4},
                 "moffat": {"alpha": 2.5, "beta": 2.5}, "airy": {"radius": 3.0},
                 "disk": {"radius": 4.0}, "ring": {"diameter": 8.0, "width": 2.0},
                 "motion": {"length": 9.0, "angle": 0.6}}[model]
        kernel = psfkit.make_psf(model, (21, 21), **truth)
        case = samples.blurred_pair(kernel, (128, 128), scene_kind="natural", noise=0.01,
                                    shift=(0.3, -0.5), rng=9)
        _fields(f"fit.{model}", psfkit.fit_kernel(case.sharp, case.blurred, model),
                fit_fields, out)
    _fields("fit.3d", psfkit.fit_kernel(volume.sharp, volume.blurred, "gaussian"),
            fit_fields, out)
    _fields("fit.robust", psfkit.fit_kernel(sharp, blurred, "gaussian", loss="soft_l1"),
            fit_fields, out)
    out["fit.defocus"] = np.asarray(psfkit.defocus_diameter(
        samples.blurred_pair(psfkit.make_psf("disk", (21, 21), radius=5.0), (128, 128),
                             scene_kind="natural", noise=0.005, rng=10).blurred), dtype=float)

    led = samples.sample_point_source()["image"]
    out["psf.led"] = psfkit.prepare_psf(led)
    psf, report = psfkit.prepare_psf(led, 21, return_info=True)
    out["psf.led21"] = psf
    _fields("psf.report", report, ("centre", "background", "noise_sigma", "fwhm", "snr"), out)
    beads = samples.sample_beads()["image"]
    average = psfkit.average_beads(beads)
    _fields("beads.mean", average, ("psf", "positions", "count", "rejected", "fwhm"), out)
    _fields("beads.median", psfkit.average_beads(beads, method="median", shape=15),
            ("psf", "positions", "count"), out)
    _fields("beads.size", psfkit.average_beads(beads, bead_diameter=1.0),
            ("psf", "positions", "count"), out)

    image_case = samples.sample_blurred_image()
    image, image_psf = image_case["blurred"], image_case["psf"]
    for method in ("auto", "wiener", "tikhonov", "richardson_lucy", "rl_tv", "fista_tv"):
        restored, info = psfkit.deconvolve(image, image_psf, method, return_info=True)
        out[f"deconvolve.{method}"] = restored
        _flatten(f"deconvolve.{method}.parameters", info.parameters, out)
    for acceleration in ("geometric", "biggs_andrews", None):
        out[f"deconvolve.rl.{acceleration}"] = psfkit.deconvolve(
            image, image_psf, "richardson_lucy", iterations=25, acceleration=acceleration)
    airy = psfkit.make_psf("airy", (15, 15), radius=2.0)
    stars_image = samples.blurred_pair(airy, (128, 128), scene_kind="stars", noise=0.002,
                                       poisson_photons=2000.0, rng=11)
    out["deconvolve.stars"] = psfkit.deconvolve(stars_image.blurred, airy)
    vol = samples.sample_blurred_volume()
    out["deconvolve.3d"] = psfkit.deconvolve(vol["blurred"], vol["psf"])
    out["deconvolve.3d.rl"] = psfkit.deconvolve(vol["blurred"], vol["psf"], "richardson_lucy",
                                                iterations=20)
    out["chunked.auto"] = np.asarray(deconvolve_chunked(image, image_psf, chunks=(128, 128)))
    out["chunked.rl"] = np.asarray(deconvolve_chunked(image, image_psf, "richardson_lucy",
                                                      iterations=15, chunks=(96, 128)))
    return out


def compare(before: dict, after: dict) -> int:
    worst = 0.0
    missing = sorted(set(before) ^ set(after))
    for name in missing:
        print(f"only in {'before' if name in before else 'after'}: {name}")
    for name in sorted(set(before) & set(after)):
        a, b = np.asarray(before[name], dtype=np.float64), np.asarray(after[name], np.float64)
        if a.shape != b.shape:
            print(f"{name}: shape {a.shape} -> {b.shape}")
            worst = np.inf
            continue
        scale = max(np.max(np.abs(a)) if a.size else 0.0, 1e-30)
        difference = float(np.max(np.abs(a - b)) / scale) if a.size else 0.0
        worst = max(worst, difference)
        if difference > 0:
            print(f"{name}: largest difference {difference:.2e} of its largest value")
    print(f"{len(before)} entries; largest relative difference {worst:.2e}; "
          f"{len(missing)} not in both")
    return 0 if worst == 0 and not missing else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="NPZ")
    group.add_argument("--compare", metavar="NPZ")
    args = parser.parse_args(argv)
    result = snapshot()
    if args.save:
        np.savez_compressed(args.save, **result)
        print(f"{len(result)} entries saved to {args.save}")
        return 0
    with np.load(args.compare) as before:
        return compare(dict(before), result)


if __name__ == "__main__":
    sys.exit(main())
