"""Two changes to ``auto``'s risk choice that were measured and not kept, repeatable.

* ``rl_tv`` as one more candidate at its automatic weight (run on the region, then
  repeated on the probe, like ``rl_mix``): ``auto``'s error over the best truth-chosen
  psfkit method (the references of ``bench_auto.py``) with and without it, per case, on
  the tuning set (which decides) and the validation set (for the record).
* Poisson data fission on the 2D shot-noise cases: the counts split by binomial thinning
  (half each), the RL stopping points and ``rl_mix`` run on one half and scored by the
  Poisson deviance of the other half; which candidate it prefers, against the truth's
  ranking of the same candidates on the full data.

``python benchmarks/try_auto_candidates.py`` (``--cache`` as in ``bench_auto.py``) writes
``benchmarks/results/auto_tuning_candidates.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench_auto import CACHE, references, validation_set
from bench_deconvolve import suite
from psfkit import deconvolve
from psfkit.deconvolution import _risk
from psfkit.deconvolution._noise import NoiseModel
from psfkit.deconvolution._richardson_lucy import run_rl_tv
from psfkit.metrics import image_error
from psfkit.operators import Convolver

RESULTS = Path(__file__).parent / "results" / "auto_tuning_candidates.md"

#: The automatic-method candidates of each variant.
VARIANTS = {"rl_mix (kept)": {"rl_mix": _risk.rl_mix},
            "rl_mix + rl_tv": {"rl_mix": _risk.rl_mix, "rl_tv": run_rl_tv}}

#: The RL stopping points the fission experiment scores.
FISSION_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 19, 24, 30, 38, 48, 60)


def _quiet(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run()


def rl_tv_candidate(name: str, cases, cache: dict) -> list[str]:
    """Rows of ``auto``'s ratio to the best truth-chosen psfkit method per variant, and
    the summary lines of each variant on this set."""
    rows, ratios = [], {variant: [] for variant in VARIANTS}
    for label, pair in cases:
        best = references(label, pair, True, cache)["psfkit"][1]
        cells = []
        for variant, candidates in VARIANTS.items():
            _risk.AUTOMATIC_CANDIDATES = candidates
            start = time.perf_counter()
            result, info = _quiet(lambda pair=pair: deconvolve(pair.blurred, pair.kernel,
                                                               return_info=True))
            ratio = image_error(result, pair.sharp) / best
            ratios[variant].append(ratio)
            cells.append(f"{ratio:.3f} ({info.choice.winner.describe()}, "
                         f"{time.perf_counter() - start:.1f} s)")
        rows.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    _risk.AUTOMATIC_CANDIDATES = VARIANTS["rl_mix (kept)"]
    for variant, values in ratios.items():
        values = np.array(values)
        rows.append(f"| **{name}: {variant}** | geometric mean "
                    f"{np.exp(np.mean(np.log(values))):.4f} | median {np.median(values):.3f}"
                    f" | worst {values.max():.3f}, within 5 %: "
                    f"{int(np.sum(values <= 1.05))}/{values.size} |")
    return rows


def _fission_scores(pair, noise: NoiseModel, fraction: float = 0.5) -> dict:
    """The Poisson deviance of the held-out counts for each candidate run on the others."""
    psf = (pair.kernel / pair.kernel.sum()).astype(np.float32)
    counts = np.clip(np.round((pair.blurred - noise.background) / noise.gain), 0, None)
    kept_counts = np.random.default_rng(0).binomial(counts.astype(np.int64), fraction)
    held_out = (counts - kept_counts)
    kept_image = (kept_counts * noise.gain / fraction + noise.background).astype(np.float32)
    blur = Convolver(psf, pair.blurred.shape)
    crop = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n - k + 1)
                 for n, k in zip(pair.blurred.shape, psf.shape, strict=True))
    observed = held_out[crop]

    def deviance(estimate):
        mean = np.maximum(blur.apply(estimate, "valid") / noise.gain * (1 - fraction), 1e-6)
        logs = np.where(observed > 0, observed * np.log(np.maximum(observed, 1) / mean), 0)
        return float(np.mean(mean - observed + logs))

    estimates = {}
    _quiet(lambda: deconvolve(kept_image, psf, "richardson_lucy",
                              iterations=FISSION_STEPS[-1],
                              callback=lambda step, total, current: estimates.__setitem__(
                                  f"RL {step}", np.array(current))
                              if step in FISSION_STEPS else None))
    estimates["rl_mix"] = _quiet(lambda: deconvolve(kept_image, psf, "rl_mix"))
    return {name: deviance(estimate) for name, estimate in estimates.items()}


def _true_errors(pair) -> dict:
    """The error of each fission candidate run on the full data."""
    errors = {}
    _quiet(lambda: deconvolve(pair.blurred, pair.kernel, "richardson_lucy",
                              iterations=FISSION_STEPS[-1],
                              callback=lambda step, total, current: errors.__setitem__(
                                  f"RL {step}", image_error(current, pair.sharp))))
    errors = {name: errors[name] for name in (f"RL {step}" for step in FISSION_STEPS)}
    errors["rl_mix"] = image_error(_quiet(lambda: deconvolve(pair.blurred, pair.kernel,
                                                             "rl_mix")), pair.sharp)
    return errors


def fission(name: str, cases) -> list[str]:
    """Rows: per 2D shot-noise case, fission's pick and the truth's among the same
    candidates, and the deviances of ``rl_mix`` and the best RL stopping point."""
    rows = []
    for label, pair in cases:
        noise = NoiseModel.estimate(pair.blurred)
        if pair.blurred.ndim != 2 or not noise.poisson or noise.gain <= 0:
            continue
        scores, errors = _fission_scores(pair, noise), _true_errors(pair)
        pick, best = min(scores, key=scores.get), min(errors, key=errors.get)
        best_rl = min(value for key, value in scores.items() if key != "rl_mix")
        rows.append(f"| {label} | {name} | {pick} (on half the counts) | {best} | "
                    f"{scores['rl_mix']:.4f} | {best_rl:.4f} |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    cache = json.loads(args.cache.read_text()) if args.cache.exists() else {}
    sets = [("tuning", lambda: suite(quick=True)), ("validation", lambda: validation_set(True))]
    candidate_rows = ["| case | set | " + " | ".join(VARIANTS) + " |", "|---|---|---|---|"]
    fission_rows = ["| case | set | fission picks | truth's best (full data) | "
                    "deviance, rl_mix | deviance, best RL |", "|---|---|---|---|---|---|"]
    for name, cases in sets:
        candidate_rows += rl_tv_candidate(name, cases(), cache)
    for name, cases in sets:
        fission_rows += fission(name, cases())
    args.cache.write_text(json.dumps(cache))
    text = ("# Candidates of `auto` tried and not kept\n\nProduced by `python benchmarks/"
            "try_auto_candidates.py`. See its docstring and docs/deconvolve.md.\n\n"
            "## `rl_tv` as a candidate (error over the best truth-chosen psfkit method; "
            "the choice, its time)\n\n" + "\n".join(candidate_rows)
            + "\n\n## Poisson data fission (2D shot-noise cases)\n\n"
            + "\n".join(fission_rows) + "\n")
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
