"""Diagnosis of ``method="auto"``'s risk estimate on cases with a known truth: per candidate,
the estimated risk (SURE) next to the true prediction risk and the true image error.

For each case the noiseless blurred image ``E[y]`` is known, so the risk SURE estimates,
``mean(|B (E[y] − b − H x̂)|²) / v̄`` (``v̄`` the pilot's mean noise variance, ``B`` the
emphasis weighting), is computed exactly for every candidate. Over several noise realisations of
the same blurred image this separates the estimate's bias (its mean against the true
risk's mean) from its spread, and the true risk's ranking from the image error's ranking
(the emphasis, or the region). It also reports the noise model estimated from the image
against the one that made the data.

``python benchmarks/diagnose_auto_risk.py [--cases puncta,cell,coins] [--realisations 4]``
(a case is chosen by a word of its label in ``bench_auto.validation_set``, or with
``--set held_out`` in ``bench_auto.held_out_set``).
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

import bench_auto
from psfkit.deconvolution import _risk as risk
from psfkit.deconvolution import check_parameters, normalise_psf
from psfkit.deconvolution._common import Request
from psfkit.deconvolution._direct import tikhonov
from psfkit.deconvolution._noise import NoiseModel
from psfkit.metrics import image_error
from psfkit.noise import central_region


def _capture_cases(source):
    """The cases of ``source`` (a generator of ``(label, pair)`` that calls
    ``bench_auto.blurred_pair``), each with the noiseless blurred image and the noise
    keywords that made it."""
    calls = []
    original = bench_auto.blurred_pair

    def recording(kernel, shape, **keywords):
        calls.append((kernel, shape, keywords))
        return original(kernel, shape, **keywords)

    bench_auto.blurred_pair = recording
    try:
        for label, pair in source:
            kernel, shape, keywords = calls[-1]
            clean = dict(keywords, noise=0.0, poisson_photons=None)
            mean = original(kernel, shape, **clean).blurred
            yield label, pair, mean, keywords
    finally:
        bench_auto.blurred_pair = original


def realisation(mean: np.ndarray, keywords: dict, seed: int) -> np.ndarray:
    """One noisy image of ``mean`` with the noise of ``keywords`` (as ``blurred_pair``)."""
    generator = np.random.default_rng(seed)
    photons = keywords.get("poisson_photons")
    image = mean
    if photons is not None:
        scale = photons / float(mean.max())
        image = generator.poisson(np.clip(mean, 0, None) * scale).astype(np.float32) / scale
    sigma = keywords.get("noise", 0.0) * float(image.max() - image.min())
    if sigma > 0:
        image = image + generator.normal(0.0, sigma, image.shape).astype(np.float32)
    return image.astype(np.float32)


def candidates_with_truth(image, psf, sharp, mean, request: Request,
                          noise_keywords: dict) -> list[dict]:
    """Every candidate of ``risk_choice`` on ``image`` with its SURE, its parts, the true
    risk and its image error (the region must be the whole image); the noise model from
    ``noise_keywords`` (empty: estimated)."""
    noise = NoiseModel.estimate(image, **noise_keywords)
    region = central_region(image.shape, risk.RISK_SEARCH_SAMPLES, [3 * k for k in psf.shape])
    assert all(r.stop - r.start == n for r, n in zip(region, image.shape, strict=True))
    meter = risk._RiskMeter(image, psf, noise, request.operators, request.tuning.risk_emphasis)
    records = {}
    original = meter.risk

    def recording(model, perturbed_model, scale):
        value = original(model, perturbed_model, scale)
        truth = mean[meter.crop] - np.float32(noise.background)
        records[value] = dict(fit=meter.fit(model),
                              divergence=meter.divergence(perturbed_model - model, scale),
                              true=_true_risk(meter, truth, model))
        return value

    meter.risk = recording
    steps = risk._Steps(None, 10)
    rl, kept, _ = risk._rl_candidates(meter, psf, noise, request, 300, steps)
    rows = [dict(c=c, error=image_error(kept[int(c.setting)], sharp)) for c in rl]
    if image.ndim == 2:
        for c in risk._tikhonov_candidates(meter, psf, request.operators):
            estimate = tikhonov(image, psf, noise, Request(regularization=c.setting)).image
            rows.append(dict(c=c, error=image_error(estimate, sharp)))
    c, result = risk._automatic_candidate("rl_mix", meter, psf, noise, request, steps)
    rows.append(dict(c=c, error=image_error(result.image, sharp)))
    for row in rows:
        row.update(records[row["c"].risk])
    return rows, noise


def _true_risk(meter, truth: np.ndarray, model: np.ndarray) -> float:
    """``mean(|B (truth − H x̂)|²) / v̄``: what SURE estimates, with the truth known."""
    difference = (truth - model) * meter.unit
    if meter.weighting is not None:
        difference = meter.weighting.apply(difference, meter.weighting.root)
    return float(np.mean(difference * difference, dtype=np.float64))


def true_noise(mean: np.ndarray, keywords: dict) -> dict:
    """The noise keywords of the model that made the data (no camera offset)."""
    photons = keywords.get("poisson_photons")
    if photons is not None:
        return dict(gain=float(mean.max()) / photons, read_noise=0.0, background=0.0)
    return dict(gain=0.0, background=0.0,
                read_noise=keywords["noise"] * float(mean.max() - mean.min()))


def diagnose(label, pair, mean, keywords, realisations: int, known: bool) -> None:
    """Print the candidates' risks and errors on ``realisations`` noise draws (with the
    noise model that made them when ``known``)."""
    psf = normalise_psf(pair.kernel, pair.blurred.ndim)
    request, _ = check_parameters("auto")
    print(f"\n## {label}\n")
    photons = keywords.get("poisson_photons")
    if photons is not None:
        print(f"true gain {float(mean.max()) / photons:.4g}, mean level "
              f"{float(mean.mean()):.4g} ({float(mean.mean()) * photons / float(mean.max()):.3g}"
              f" photons per pixel)")
    for seed in range(realisations):
        image = pair.blurred if seed == 0 else realisation(mean, keywords, 1000 + seed)
        rows, noise = candidates_with_truth(image, psf, pair.sharp, mean, request,
                                            true_noise(mean, keywords) if known else {})
        print(f"\nrealisation {seed}: noise gain {noise.gain:.4g}, intercept "
              f"{noise.intercept:.4g}, background {noise.background:.4g}, "
              f"poisson {noise.poisson}")
        print("| candidate | SURE | true risk | SURE − true | fit | divergence | error |")
        print("|---|---|---|---|---|---|---|")
        best = {key: min(rows, key=lambda row, key=key: row[key]) for key in
                ("error", "true")}
        chosen = min(rows, key=lambda row: row["c"].risk)
        for row in rows:
            c = row["c"]
            if c.method == "tikhonov" and row is not best["error"] and row is not chosen \
                    and row is not best["true"] and c.setting not in (1e-4, 1e-3, 1e-2):
                continue
            marks = "".join(mark for key, mark in (("error", " E"), ("true", " T"))
                            if best[key] is row) + (" S" if chosen is row else "")
            print(f"| {c.describe()}{marks} | {c.risk:.4f} | {row['true']:.4f} | "
                  f"{c.risk - row['true']:+.4f} | {row['fit']:.4f} | "
                  f"{row['divergence']:.4f} | {row['error']:.4f} |")
        print(f"chosen by SURE: {chosen['c'].describe()} error {chosen['error']:.4f}; by the "
              f"true risk: {best['true']['c'].describe()} error {best['true']['error']:.4f};"
              f" least error: {best['error']['c'].describe()} {best['error']['error']:.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="puncta,cell,coins")
    parser.add_argument("--realisations", type=int, default=3)
    parser.add_argument("--set", default="validation", choices=["validation", "held_out"])
    parser.add_argument("--true-noise", action="store_true",
                        help="give auto the noise model that made the data")
    args = parser.parse_args(argv)
    words = args.cases.split(",")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, pair, mean, keywords in _capture_cases(
                getattr(bench_auto, f"{args.set}_set")(True)):
            if any(word in label for word in words) and pair.blurred.ndim == 2:
                diagnose(label, pair, mean, keywords, args.realisations, args.true_noise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
