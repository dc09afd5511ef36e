"""Re-derive the tuned constants of the automatic deconvolution, and show how much they matter.

Every field of :class:`psfkit.deconvolution.AutoTuning` was chosen once on a benchmark. This
script sweeps each one over a grid of values, the others held at their defaults, and runs
``deconvolve(..., "rl_mix", tuning=AutoTuning(field=value))`` (the ``rl_mix`` constants; the
risk choice's are swept by ``bench_auto.py --tune``) or RL (the step limit) on two sets of
images with a known truth:

* the **tuning set**: the quality suite of ``bench_deconvolve.py`` (for the six ``rl_mix``
  constants) or its acceleration cases (for ``max_geometric_extrapolation``): the images the
  constants were chosen on;
* the **hold-out set**: images the constants were never chosen on: other scene seeds, other
  noise levels (1000 photons, 2 % Gaussian noise) and other sizes (160², 28×56×56), the
  same PSF families.

For each value it prints the geometric mean, the best and the worst of the error relative
to the default's error on each set, and which value the tuning set picks (the lowest
geometric mean; for the iteration counts that set a cost, :data:`COST_FIELDS`, the fewest
within :data:`COST_PLATEAU` of it). A constant whose
hold-out column agrees with the tuning column generalises; one where the two disagree was
fitted to the suite. ``--quick`` uses the quick suite and a small hold-out set, in a few
minutes; the whole run takes about 40 minutes on 2 cores. Results go to stdout and to
``benchmarks/results/tuning.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench_deconvolve import TOLERANCE, acceleration_cases, psf_2d, psf_3d, suite
from psfkit import deconvolve
from psfkit.deconvolution import DEFAULT_TUNING, AutoTuning
from psfkit.metrics import image_error
from psfkit.samples import blurred_pair

RESULTS = Path(__file__).parent / "results" / "tuning.md"

#: The values tried for each ``rl_mix`` constant (the default is always among them).
AUTO_GRID = {
    "extension_extended": (1.0, 1.5, 2.0, 3.0, 4.0),
    "extension_points": (2.0, 3.0, 5.0, 8.0),
    "point_source_kurtosis": (15.0, 25.0, 50.0, 100.0),
    "rl_tv_strength": (0.03, 0.05, 0.1, 0.2, 0.4),
    "rl_tv_refinement_iterations": (5, 10, 15, 20, 30),
    "smoothing_iterations": (10, 15, 20, 30, 40),
}

#: The constants that set a cost (iterations, fewest first in :data:`AUTO_GRID`): the
#: tuning set picks the fewest whose geometric mean is within this fraction of the least,
#: as more iterations there buy no quality.
COST_FIELDS = ("rl_tv_refinement_iterations", "smoothing_iterations")
COST_PLATEAU = 0.002

#: The values tried for the geometric acceleration's largest step.
ACCELERATION_GRID = (0.7, 0.8, 0.9, 0.95)


def holdout(quick: bool):
    """Yield ``(label, pair)`` cases the constants were not chosen on."""
    noises = {"poisson 1000": dict(noise=0.0, poisson_photons=1000.0),
              "gaussian 2%": dict(noise=0.02)}
    psfs = ("airy", "gaussian") if quick else ("defocus", "airy", "moffat", "gaussian")
    for psf_name in psfs:
        for scene_kind in ("natural", "blobs", "stars"):
            for noise_name, noise in noises.items():
                if quick and noise_name != "poisson 1000":
                    continue
                pair = blurred_pair(psf_2d(psf_name), (160, 160), scene_kind=scene_kind,
                                    rng=12, **noise)
                yield f"2D {psf_name} {scene_kind} {noise_name}", pair
    for psf_name in psfs[::3] if quick else psfs:
        for scene_kind, noise_name in (("blobs", "poisson 1000"), ("stars", "gaussian 2%")):
            pair = blurred_pair(psf_3d(psf_name), (28, 56, 56), scene_kind=scene_kind,
                                shift=(0, 0, 0), rng=12, **noises[noise_name])
            yield f"3D {psf_name} {scene_kind} {noise_name}", pair


def auto_errors(cases, tuning: AutoTuning) -> np.ndarray:
    """Error of ``rl_mix`` (whose constants these are; ``auto`` before the risk choice)
    with ``tuning`` on every case, against the truth."""
    return np.array([image_error(deconvolve(pair.blurred, pair.kernel, "rl_mix",
                                            tuning=tuning), pair.sharp)
                     for _, pair in cases])


def sweep_auto(field: str, tuning_cases, holdout_cases) -> list[str]:
    """Rows of one constant's sweep: per value, the error relative to the default's."""
    default = getattr(DEFAULT_TUNING, field)
    sets = {"tuning": tuning_cases, "hold-out": holdout_cases}
    errors = {name: {value: auto_errors(cases, dataclasses.replace(DEFAULT_TUNING,
                                                                   **{field: value}))
                     for value in AUTO_GRID[field]} for name, cases in sets.items()}
    chosen = _chosen(field, {value: errors["tuning"][value] / errors["tuning"][default]
                             for value in AUTO_GRID[field]})
    rows = []
    for value in AUTO_GRID[field]:
        cells = []
        for name in sets:
            ratio = errors[name][value] / errors[name][default]
            cells.append(f"{np.exp(np.mean(np.log(ratio))):.3f} / {np.min(ratio):.3f} / "
                         f"{np.max(ratio):.3f}")
        marks = ("default" if value == default else "") + (" chosen" if value == chosen
                                                            else "")
        rows.append(f"| {field} | {value:g} | {' | '.join(cells)} | {marks.strip()} |")
        print(rows[-1], flush=True)
    return rows


def _chosen(field: str, ratios: dict):
    """The value the tuning set picks from its error ratios to the default's, per value."""
    log_means = {value: float(np.mean(np.log(ratio))) for value, ratio in ratios.items()}
    default = getattr(DEFAULT_TUNING, field)
    if field in COST_FIELDS:
        least = min(log_means.values())
        return next(value for value in AUTO_GRID[field]
                    if log_means[value] <= least + np.log1p(COST_PLATEAU))
    # most values change only some cases (the point-source ones, say), so the choice is the
    # lowest geometric mean of the ratio, which counts every case and cannot tie by accident
    # (a tie within 0.01 % keeps the default)
    return min(AUTO_GRID[field], key=lambda v: (round(log_means[v], 4), v != default))


def _error_curve(pair, iterations, tuning=DEFAULT_TUNING, acceleration="geometric"):
    errors = []

    def track(step, total, current):
        errors.append(image_error(current, pair.sharp))

    deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=iterations,
               acceleration=acceleration, callback=track, tuning=tuning)
    return np.array(errors)


def sweep_acceleration(quick: bool) -> list[str]:
    """Per largest step: the geometric acceleration's least error over plain RL's best, and
    the share of plain RL's iterations it needs to come within ``TOLERANCE`` of it."""
    cases = list(acceleration_cases(quick))
    plain = [_error_curve(pair, 200 if quick else 800, acceleration=None) for _, pair in cases]
    rows = []
    for value in ACCELERATION_GRID:
        tuning = dataclasses.replace(DEFAULT_TUNING, max_geometric_extrapolation=value)
        excess, shares = [], []
        for (_, pair), curve in zip(cases, plain, strict=True):
            best_iteration = int(np.argmin(curve)) + 1
            fast = _error_curve(pair, max(60, best_iteration // 2), tuning)
            excess.append(fast.min() / curve.min() - 1)
            hits = np.nonzero(fast <= (1 + TOLERANCE) * curve.min())[0]
            shares.append((hits[0] + 1) / best_iteration if hits.size else np.inf)
        mark = "default" if value == DEFAULT_TUNING.max_geometric_extrapolation else ""
        rows.append(f"| max_geometric_extrapolation | {value:g} | least error "
                    f"{100 * np.median(excess):+.2f} % median, {100 * np.max(excess):+.2f} % "
                    f"worst | within 0.5 % at {np.median(shares):.2f} of plain RL's "
                    f"iterations (median), {np.max(shares):.2f} worst | {mark} |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=[*AUTO_GRID, "max_geometric_extrapolation"],
                        action="append", help="sweep only these constants")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    fields = args.only or [*AUTO_GRID, "max_geometric_extrapolation"]
    tuning_cases, holdout_cases = list(suite(args.quick)), list(holdout(args.quick))
    start = time.perf_counter()
    lines = [f"# Tuned constants of `auto`{' (quick)' if args.quick else ''}", "",
             f"Tuning set: the quality suite of `bench_deconvolve.py` "
             f"({len(tuning_cases)} cases); hold-out set: {len(holdout_cases)} cases with "
             "other seeds, noise levels and sizes. Each cell: geometric mean / best / worst "
             "of the error relative to the default value's error on that set (below 1 is "
             "better); the tuning set chooses the lowest geometric mean (for the iteration counts "
             "that set a cost, the fewest within 0.2 % of it).", "",
             "| constant | value | tuning set | hold-out set | |", "|---|---|---|---|---|"]
    for field in fields:
        if field in AUTO_GRID:
            lines += sweep_auto(field, tuning_cases, holdout_cases)
    if "max_geometric_extrapolation" in fields:
        lines += ["", "Acceleration cases of `bench_deconvolve.py` (the tuning set of this "
                  "constant):", "", "| constant | value | least error over plain RL's best | "
                  "iterations | |", "|---|---|---|---|---|"]
        lines += sweep_acceleration(args.quick)
    lines += ["", f"{time.perf_counter() - start:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    target = RESULTS.with_name("tuning_quick.md") if args.quick else RESULTS
    target.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
