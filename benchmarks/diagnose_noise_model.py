"""The noise model's gain and intercept against cameras of known gain, offset and read noise.

Each scene (a flat field, a ramp, a star field, sparse puncta, a natural photograph, blobs)
is blurred by a Gaussian of sigma 1.5 px and scaled so that its 10th percentile, the
background, collects ``B`` photons per pixel, for ``B`` from 0.5 to 1000. The counts are
Poisson; the ``poisson`` camera reads them as they are (gain 1), the ``camera`` one as
``3.7 * counts + 100`` plus Gaussian read noise of 3 units; ``read only`` images carry read
noise alone (true gain 0). The truth is then ``variance = gain * image + intercept`` with
``intercept = read**2 - gain * offset``.

For each case and noise draw the script prints the estimated gain over the true gain and the
intercept's error over the variance at the background (for ``read only``: the estimated
gain times the mean level over the read-noise variance, 0 when right), as the median and the
range over the draws, for the installed ``psfkit`` and, with ``--reference SRC``, for the
``psfkit/noise.py`` of another source tree (the code before a change).

``python benchmarks/diagnose_noise_model.py [--reference /path/to/src] [--draws 4] [--quick]``
prints the markdown table of ``benchmarks/results/noise_model.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

import bench_auto
from psfkit import samples
from psfkit.noise import noise_model

LEVELS = (0.5, 1.0, 1.5, 5.0, 20.0, 100.0, 1000.0)
SCENES = ("flat", "ramp", "stars", "puncta", "natural", "blobs")
#: name: (gain, offset, read noise), in image units
CAMERAS = {"poisson": (1.0, 0.0, 0.0), "camera": (3.7, 100.0, 3.0)}
READ_NOISE_ONLY = 3.0
BLUR = 1.5


def scene_mean(kind: str, background: float, shape) -> np.ndarray:
    """The noiseless image of ``kind`` in photons per pixel, its 10th percentile at
    ``background``."""
    margin = [n + 32 for n in shape]
    if kind == "flat":
        scene = np.ones(margin)
    elif kind == "ramp":
        scene = np.add.outer(np.linspace(1.0, 4.0, margin[0]), np.ones(margin[1:]))
    elif kind == "stars":
        scene = bench_auto._stars(margin, max(3, margin[0] * margin[1] // 400), rng=3)
    elif kind == "puncta":
        scene = bench_auto._puncta(margin, max(3, margin[0] * margin[1] // 500), rng=5)
    else:
        scene = samples.scene(kind, margin, rng=11) + 0.05
    window = tuple(slice(16, 16 + n) for n in shape)
    mean = ndi.gaussian_filter(np.asarray(scene, np.float64), BLUR, mode="reflect")[window]
    return mean * (background / np.percentile(mean, 10))


def exposure(mean: np.ndarray, camera, seed: int) -> np.ndarray:
    """One image of ``mean`` (photons) through ``camera`` = (gain, offset, read noise)."""
    gain, offset, read = camera
    generator = np.random.default_rng(seed)
    signal = gain * generator.poisson(mean) if gain > 0 else mean  # read only: no shot noise
    image = signal + offset + read * generator.standard_normal(mean.shape)
    return image.astype(np.float32)


def reference_model(source: str):
    """``noise_model`` of the ``psfkit/noise.py`` under ``source`` (its relative imports
    resolved in the installed ``psfkit``)."""
    path = Path(source) / "psfkit" / "noise.py"
    spec = importlib.util.spec_from_file_location("psfkit._reference_noise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.noise_model


def scores(model, mean, camera, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Per draw: the gain over the truth and the intercept's error over the variance at the
    background (read noise only: the apparent shot variance over the read variance)."""
    gain, offset, read = camera
    background = np.percentile(mean, 10)
    ratios, errors = [], []
    for seed in range(draws):
        estimated_gain, intercept = model(exposure(mean, camera, seed))
        if gain == 0:
            ratios.append(estimated_gain * float(mean.mean()) / read**2)
            errors.append((intercept - read**2) / read**2)
        else:
            ratios.append(estimated_gain / gain)
            truth = read**2 - gain * offset
            errors.append((intercept - truth) / (gain**2 * background + read**2))
    return np.array(ratios), np.array(errors)


def summary(values: np.ndarray) -> str:
    return f"{np.median(values):.2f} [{values.min():.2f}, {values.max():.2f}]"


def cases():
    """``(scene, camera name, camera, background photons)`` of the table."""
    for kind in SCENES:
        for name, camera in CAMERAS.items():
            for level in LEVELS:
                yield kind, name, camera, level
        yield kind, "read only", (0.0, 0.0, READ_NOISE_ONLY), 100.0


def table(models: dict, shape, draws: int) -> str:
    names = list(models)
    head = ["scene", "camera", "background ph", "peak ph"]
    head += [f"gain / true ({n})" for n in names] + [f"intercept error ({n})" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    print("\n".join(lines))
    for kind, name, camera, level in cases():
        mean = scene_mean(kind, level, shape)
        results = [scores(model, mean, camera, draws) for model in models.values()]
        row = [kind, name, f"{level:g}", f"{mean.max():.3g}"]
        row += [summary(r) for r, _ in results] + [summary(e) for _, e in results]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="a source tree whose noise_model is 'before'")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="128 x 128 images, not 256")
    args = parser.parse_args(argv)
    models = {}
    if args.reference:
        models["before"] = reference_model(args.reference)
    models["after" if args.reference else "psfkit"] = noise_model
    shape = (128, 128) if args.quick else (256, 256)
    print(f"{shape[0]} x {shape[1]} images, {args.draws} noise draws; median [min, max] over "
          "the draws.\n")
    table(models, shape, args.draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
