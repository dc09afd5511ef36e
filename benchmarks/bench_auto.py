"""Validation protocol of the automatic deconvolution: does its choice hold on images it was
not tuned on?

Two sets of cases with a known truth:

* the **tuning set**: the quick quality suite of ``bench_deconvolve.py`` (its scenes,
  PSFs and noise), the only images any constant of the automatic methods may be chosen on;
* the **validation set**: other scenes (``skimage.data`` photographs and micrographs,
  a galaxy field, synthetic star fields, sparse puncta, 3D volumes), other PSF families and
  sizes (measured-like soft defocus disks, Moffat), photon levels from 50 to 1e4 peak,
  read-noise-only images and other seeds.

For each case it reports the error of each automatic method under test (``auto``, the
risk-based choice, and ``rl_mix``, one of its candidates and its fallback for PSF maps), the
best truth-tuned peer (the peers and grids of ``bench_deconvolve.py``) and the best psfkit
method chosen with the truth (each method over its strength grid, Richardson–Lucy at its
best stopping point), and the ratios the issue's bars are about. The error is
``psfkit.metrics.image_error`` (relative L2 after the best affine match).

A third, **held-out set** (``--sets held_out``) holds cases in neither set, for a change
motivated by a validation case: it shows whether the change generalises.

``python benchmarks/bench_auto.py`` (``--quick``: the validation set only at the small
sizes; ``--methods auto`` to run only some automatic methods; ``--sets none --cost`` for
the cost alone, written to ``results/auto_cost.md``; ``--tune FIELD`` to sweep one of
``auto``'s ``AutoTuning`` fields, :data:`TUNED_FIELDS`, written to
``results/auto_tuning_FIELD.md``). The peers' and the
truth-chosen references do not depend on the automatic methods and are cached in
``/tmp/psfkit_bench_auto_cache.json`` (``--fresh`` recomputes them). Results go to stdout
and ``benchmarks/results/auto.md``. ``--cost`` times the whole automatic run against one
accelerated Richardson–Lucy run to its discrepancy stop at 2048² (31² PSF) and 64×256²
(31³ PSF), in the same process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from bench_deconvolve import peers, psf_3d, suite
from psfkit import deconvolve
from psfkit.deconvolution import METHODS
from psfkit.metrics import image_error
from psfkit.models import make_psf
from psfkit.samples import blurred_pair, scene, soft_disk

RESULTS = Path(__file__).parent / "results" / "auto.md"
#: The default cache of the references (``--cache`` chooses another, e.g. one per branch, as
#: the truth-chosen ``rl_mix`` depends on the code that runs it).
CACHE = Path("/tmp/psfkit_bench_auto_cache.json")

SHAPE_2D = (128, 128)
SHAPE_3D = (24, 64, 64)


# ------------------------------------------------------------------------- validation set


def _photo(name: str, shape, zoom: float = 0.5) -> np.ndarray:
    """A ``skimage.data`` image, grey, scaled by ``zoom`` (or more, when the image would be
    too small) and cropped at its centre to ``shape`` plus a margin, in [0.05, 1.05] (a
    camera never reads exactly 0)."""
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 3:
        image = image.mean(axis=2)
    # at least half the margin, which holds the widest PSF of the set
    zoom = max(zoom, *((n + 32) / m for n, m in zip(shape, image.shape, strict=True)))
    image = ndi.zoom(image.astype(np.float32), zoom, order=1)
    need = [n + 64 for n in shape]
    starts = [max((m - n) // 2, 0) for m, n in zip(image.shape, need, strict=True)]
    image = image[tuple(slice(s, s + n) for s, n in zip(starts, need, strict=True))]
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-12)
    return (0.05 + image).astype(np.float32)


def _stars(shape, count: int, rng: int, background: float = 0.02) -> np.ndarray:
    """Point sources on a faint sky: ``count`` pixels with power-law fluxes."""
    generator = np.random.default_rng(rng)
    sky = np.full(shape, background, dtype=np.float32)
    flat = generator.choice(sky.size, count, replace=False)
    sky.flat[flat] += (generator.pareto(1.5, count) + 0.05).astype(np.float32)
    return sky


def _puncta(shape, count: int, rng: int, width: float = 0.8) -> np.ndarray:
    """Sparse diffraction-limited spots: points of similar brightness, slightly spread."""
    generator = np.random.default_rng(rng)
    spots = np.zeros(shape, dtype=np.float32)
    flat = generator.choice(spots.size, count, replace=False)
    spots.flat[flat] = generator.uniform(0.5, 1.0, count).astype(np.float32)
    return (ndi.gaussian_filter(spots, width) * (2 * np.pi * width**2) ** (spots.ndim / 2)
            + 0.01).astype(np.float32)


def _texture_volume(shape, rng: int) -> np.ndarray:
    """A 3D cell-like texture: smoothed noise thresholded into compartments, with a
    low-contrast fine texture on top."""
    generator = np.random.default_rng(rng)
    coarse = ndi.gaussian_filter(generator.standard_normal(shape), (2.0, 4.0, 4.0))
    fine = ndi.gaussian_filter(generator.standard_normal(shape), 1.0)
    volume = 0.3 + (coarse > 0.02) * 0.7 + 0.15 * fine / fine.std()
    return np.clip(volume, 0.05, None).astype(np.float32)


def _moffat_3d():
    return psf_3d("moffat", (13, 19, 19))


def _sizes(quick: bool):
    """The image shapes of the 2D and 3D cases and their scenes' (with a margin)."""
    shape2 = SHAPE_2D if quick else (160, 160)
    shape3 = SHAPE_3D if quick else (28, 72, 72)
    return shape2, shape3, [n + 64 for n in shape2], [n + 40 for n in shape3]


def _psfs():
    """The 2D PSFs of the validation and held-out sets: Gaussian, Moffat, Airy."""
    return (make_psf("gaussian", (15, 15), sigma=2.0),
            make_psf("moffat", (25, 25), alpha=2.5, beta=3.0),
            make_psf("airy", (21, 21), radius=2.5))


def poisson(photons: float) -> dict:
    """``blurred_pair``'s noise keywords for shot noise of ``photons`` at the peak."""
    return dict(noise=0.0, poisson_photons=float(photons))


def validation_set(quick: bool):
    """Yield ``(label, pair)`` cases none of the automatic methods was tuned on."""
    shape2, shape3, margin2, margin3 = _sizes(quick)
    gaussian, moffat, airy = _psfs()
    read = lambda fraction: dict(noise=float(fraction))  # noqa: E731
    cases = [
        ("cell micrograph (low contrast), gaussian, 200 ph", "cell", 0.5, gaussian,
         poisson(200)),
        ("moon (low contrast), airy, 1e4 ph", "moon", 0.5, airy, poisson(1e4)),
        ("brick texture, moffat, 50 ph", "brick", 0.5, moffat, poisson(50)),
        ("camera, soft defocus disk r5, read noise 1 %", "camera", 0.5, soft_disk(5.0),
         read(0.01)),
        ("text (high contrast), gaussian, 1000 ph", "text", 1.0, gaussian, poisson(1000)),
        ("coins, soft defocus disk r3, 2000 ph", "coins", 0.7, soft_disk(3.0),
         poisson(2000)),
        ("galaxies (hubble deep field), moffat, read noise 1 %", "hubble_deep_field", 0.5,
         moffat, read(0.01)),
        ("page, soft defocus disk r3, read noise 2 %", "page", 1.0, soft_disk(3.0),
         read(0.02)),
    ]
    for label, name, zoom, psf, noise in cases:
        yield label, blurred_pair(psf, shape2, scene_image=_photo(name, shape2, zoom),
                                  rng=7, **noise)
    yield "star field, moffat, read noise 0.5 %", blurred_pair(
        moffat, shape2, scene_image=_stars(margin2, 60, rng=3), rng=7, **read(0.005))
    yield "star field, airy, 300 ph", blurred_pair(
        airy, shape2, scene_image=_stars(margin2, 40, rng=4), rng=8, **poisson(300))
    yield "sparse puncta, airy, 50 ph", blurred_pair(
        airy, shape2, scene_image=_puncta(margin2, 30, rng=5), rng=7, **poisson(50))
    yield "natural scene seed 11, gaussian, 1e4 ph", blurred_pair(
        gaussian, shape2, scene_kind="natural", rng=11, **poisson(1e4))
    zero = (0, 0, 0)
    yield "3D puncta, gaussian, 300 ph", blurred_pair(
        psf_3d("gaussian", (13, 17, 17)), shape3, scene_image=_puncta(margin3, 40, rng=6),
        shift=zero, rng=7, **poisson(300))
    yield "3D texture, airy, read noise 1 %", blurred_pair(
        psf_3d("airy", (13, 19, 19)), shape3, scene_image=_texture_volume(margin3, rng=6),
        shift=zero, rng=7, **read(0.01))
    yield "3D stars, moffat, 1e4 ph", blurred_pair(
        _moffat_3d(), shape3, scene_image=_stars(margin3, 50, rng=9, background=0.001),
        shift=zero, rng=7, **poisson(1e4))
    yield "3D blobs seed 12, defocus, 50 ph", blurred_pair(
        psf_3d("defocus", (13, 19, 19)), shape3, scene_kind="blobs", shift=zero, rng=12,
        **poisson(50))


def held_out_set(quick: bool):
    """Yield ``(label, pair)`` cases in neither set, written after the risk was changed for
    the validation set's sparse puncta (``diagnose_auto_risk.py``) and before it was run
    on them, to show whether that change holds on images it was not made on: puncta at
    other photon levels, seeds and PSFs, other ``skimage.data`` scenes, a star field and
    3D cases."""
    shape2, shape3, margin2, margin3 = _sizes(quick)
    gaussian, moffat, airy = _psfs()
    for photons, psf_name, psf, seed in ((30, "airy", airy, 21), (100, "airy", airy, 23),
                                         (300, "gaussian", gaussian, 25),
                                         (50, "moffat", moffat, 27)):
        yield f"sparse puncta seed {seed}, {psf_name}, {photons} ph", blurred_pair(
            psf, shape2, scene_image=_puncta(margin2, 40, rng=seed), rng=seed + 1,
            **poisson(photons))
    yield "star field seed 29, gaussian, 100 ph", blurred_pair(
        gaussian, shape2, scene_image=_stars(margin2, 50, rng=29), rng=30, **poisson(100))
    photos = [("astronaut, airy, 300 ph", "astronaut", 0.5, airy, poisson(300)),
              ("chelsea (cat), soft defocus disk r3, 100 ph", "chelsea", 0.5, soft_disk(3.0),
               poisson(100)),
              ("grass, gaussian, 1000 ph", "grass", 0.5, gaussian, poisson(1000)),
              ("microaneurysms, moffat, 200 ph", "microaneurysms", 2.0, moffat,
               poisson(200)),
              ("immunohistochemistry, gaussian, read noise 1 %", "immunohistochemistry",
               0.5, gaussian, dict(noise=0.01))]
    for label, name, zoom, psf, noise in photos:
        yield label, blurred_pair(psf, shape2, scene_image=_photo(name, shape2, zoom), rng=31,
                                  **noise)
    zero = (0, 0, 0)
    yield "3D puncta seed 33, airy, 50 ph", blurred_pair(
        psf_3d("airy", (13, 19, 19)), shape3, scene_image=_puncta(margin3, 40, rng=33),
        shift=zero, rng=34, **poisson(50))
    yield "3D texture seed 35, gaussian, 200 ph", blurred_pair(
        psf_3d("gaussian", (13, 17, 17)), shape3, scene_image=_texture_volume(margin3, rng=35),
        shift=zero, rng=36, **poisson(200))


# ------------------------------------------------------------- psfkit chosen with the truth


def _quiet(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run()


def _rl_curve(pair, iterations: int = 150) -> tuple[float, int]:
    """Accelerated Richardson–Lucy's least error over its stopping points, and where."""
    errors = []
    _quiet(lambda: deconvolve(pair.blurred, pair.kernel, "richardson_lucy",
                              iterations=iterations,
                              callback=lambda step, total, current: errors.append(
                                  image_error(current, pair.sharp))))
    best = int(np.argmin(errors))
    return float(errors[best]), best + 1


def _grid_best(pair, method: str, weights) -> tuple[float, float]:
    """A method's least error over a grid of regularization weights, and the weight."""
    best = (np.inf, 0.0)
    for weight in weights:
        result = _quiet(lambda weight=weight: deconvolve(pair.blurred, pair.kernel, method,
                                                          regularization=float(weight)))
        error = image_error(result, pair.sharp)
        if np.isfinite(error) and error < best[0]:
            best = (error, float(weight))
    return best


def truth_chosen(pair) -> dict:
    """Each psfkit method at its truth-chosen strength or stopping point:
    ``{method: (error, setting)}``."""
    chosen = {"richardson_lucy": _rl_curve(pair)}
    for method in ("tikhonov", "wiener"):
        chosen[method] = _grid_best(pair, method, np.logspace(-6, 1, 15))
    for method in ("rl_tv", "fista_tv"):
        _, info = _quiet(lambda method=method: deconvolve(pair.blurred, pair.kernel, method,
                                                          return_info=True))
        chosen[method] = _grid_best(pair, method,
                                    info.regularization * np.array([0.25, 1.0, 4.0]))
    result = _quiet(lambda: deconvolve(pair.blurred, pair.kernel, "rl_mix"))
    chosen["rl_mix"] = (image_error(result, pair.sharp), "auto")
    return chosen


def references(label: str, pair, quick_peers: bool, cache: dict) -> dict:
    """The peers' and psfkit's truth-chosen errors of a case (cached by label)."""
    if label not in cache:
        peer = _quiet(lambda: peers(pair, quick_peers))
        name, (error, setting) = min(peer.items(), key=lambda item: item[1][0])
        ours = truth_chosen(pair)
        method, (own_error, own_setting) = min(ours.items(), key=lambda item: item[1][0])
        cache[label] = dict(blurred=image_error(pair.blurred, pair.sharp),
                            peer=[name, float(error), str(setting)],
                            psfkit=[method, float(own_error), str(own_setting)],
                            methods={m: float(e) for m, (e, _) in ours.items()})
    return cache[label]


# ---------------------------------------------------------------------------------- tables


def _describe(info) -> str:
    """What an automatic run chose, in a few words."""
    if info.method in ("wiener", "tikhonov", "rl_tv", "fista_tv"):
        return f"{info.method} {info.regularization:.3g}"
    return f"{info.method} {info.iterations} it"


def evaluate(cases, methods, quick_peers: bool, cache: dict, title: str,
             cache_path: Path = CACHE) -> tuple[str, dict]:
    """One table: per case the blurred error, each automatic method's error and choice, the
    references, and the ratios; then the median and the worst of each ratio."""
    header = ["case", "blurred", *[f"{m}" for m in methods], "best peer (truth-tuned)",
              "best psfkit (truth-chosen)",
              *[f"{m} / peer" for m in methods], *[f"{m} / psfkit" for m in methods]]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratios = {(m, ref): [] for m in methods for ref in ("peer", "psfkit")}
    worse_than_input = {m: 0 for m in methods}
    for label, pair in cases:
        reference = references(label, pair, quick_peers, cache)
        cells = []
        errors = {}
        for method in methods:
            start = time.perf_counter()
            result, info = _quiet(lambda method=method, pair=pair: deconvolve(
                pair.blurred, pair.kernel, method, return_info=True))
            seconds = time.perf_counter() - start
            errors[method] = image_error(result, pair.sharp)
            worse_than_input[method] += errors[method] > reference["blurred"]
            cells.append(f"{errors[method]:.4f} ({_describe(info)}, {seconds:.1f} s)")
        peer_name, peer_error, peer_setting = reference["peer"]
        own_name, own_error, own_setting = reference["psfkit"]
        for method in methods:
            ratios[method, "peer"].append(errors[method] / peer_error)
            ratios[method, "psfkit"].append(errors[method] / own_error)
        rows.append(
            f"| {label} | {reference['blurred']:.4f} | " + " | ".join(cells)
            + f" | {peer_error:.4f} ({peer_name}, {peer_setting})"
            + f" | {own_error:.4f} ({own_name}, {own_setting}) | "
            + " | ".join(f"{ratios[m, 'peer'][-1]:.2f}" for m in methods) + " | "
            + " | ".join(f"{ratios[m, 'psfkit'][-1]:.2f}" for m in methods) + " |")
        print(rows[-1], flush=True)
        cache_path.write_text(json.dumps(cache))
    summary = []
    for method in methods:
        peer, own = np.array(ratios[method, "peer"]), np.array(ratios[method, "psfkit"])
        summary.append(
            f"- `{method}`: / best peer median {np.median(peer):.2f}, worst "
            f"{peer.max():.2f}, cases <= 1.0: {int(np.sum(peer <= 1.0))}/{peer.size}; "
            f"/ best psfkit median {np.median(own):.2f}, worst {own.max():.2f}, cases "
            f"within 5 %: {int(np.sum(own <= 1.05))}/{own.size}; worse than the blurred "
            f"input: {worse_than_input[method]}")
    table = f"## {title}\n\n" + "\n".join(rows) + "\n\n" + "\n".join(summary) + "\n"
    return table, ratios


# ---------------------------------------------------------------------------------- tuning

#: The ``auto`` constants ``--tune`` sweeps, each with its values in order of preference:
#: on a plateau (within 0.2 % of the least geometric mean on the tuning set) the first is
#: taken. ``risk_emphasis`` (None: plain SURE) prefers the largest weight, the least
#: amplified and least noisy risk; ``risk_rl_extension`` the shortest RL path, the cheapest.
TUNED_FIELDS = {
    "risk_emphasis": (None, 1.0, 0.3, 0.1, 0.03, 0.01),
    "risk_rl_extension": (1.5, 2.0, 3.0, 4.0),
}


def tune(cache: dict, sets, field: str) -> str:
    """``auto``'s error over the best truth-chosen psfkit method's, per value of the
    ``AutoTuning`` ``field``, on the tuning set (which picks the value: the first of
    :data:`TUNED_FIELDS` within 0.2 % of the least geometric mean) and, for the record
    only, on the validation set."""
    from psfkit.deconvolution import AutoTuning

    grid = TUNED_FIELDS[field]
    rows = [f"| {field} | set | geometric mean | median | worst | within 5 % |",
            "|---|---|---|---|---|---|"]
    scores = {}
    for name, cases in sets:
        cases = list(cases)
        for value in grid:
            tuning = AutoTuning(**{field: value})
            ratios = []
            for label, pair in cases:
                reference = references(label, pair, True, cache)
                result = _quiet(lambda pair=pair, tuning=tuning: deconvolve(
                    pair.blurred, pair.kernel, "auto", tuning=tuning))
                ratios.append(image_error(result, pair.sharp) / reference["psfkit"][1])
            ratios = np.array(ratios)
            scores[name, value] = float(np.exp(np.mean(np.log(ratios))))
            rows.append(f"| {value} | {name} | {scores[name, value]:.3f} | "
                        f"{np.median(ratios):.3f} | {ratios.max():.3f} | "
                        f"{int(np.sum(ratios <= 1.05))}/{ratios.size} |")
            print(rows[-1], flush=True)
    best = min(scores["tuning", value] for value in grid)
    chosen = next(value for value in grid if scores["tuning", value] <= 1.002 * best)
    return (f"## Tuning `{field}` (error of `auto` / best truth-chosen psfkit method)"
            "\n\n" + "\n".join(rows) + f"\n\nThe tuning set picks {chosen} (the first "
            f"value in order of preference within 0.2 % of the least geometric mean).\n")


# ------------------------------------------------------------------------------------ cost


def cost(methods) -> str:
    """Wall time of each automatic method over one accelerated RL run to its discrepancy
    stop, at the issue's two sizes, in the same process (the least of two runs each)."""
    cases = [("2048² image, 31² PSF", (2048, 2048), make_psf("gaussian", (31, 31), sigma=3.0)),
             ("64×256×256 volume, 31³ PSF", (64, 256, 256),
              make_psf("gaussian", (31, 31, 31), sigma=3.0))]
    rows = ["| case | accelerated RL to its discrepancy stop | "
            + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for label, shape, psf in cases:
        sharp = scene("blobs", shape, rng=0)
        image = np.random.default_rng(0).poisson(
            np.clip(ndi.convolve(sharp, psf, mode="nearest"), 0, None) * 300 / sharp.max()
        ).astype(np.float32)

        def timed(method, image=image, psf=psf):
            best = np.inf
            for _ in range(2):
                start = time.perf_counter()
                _, info = deconvolve(image, psf, method, return_info=True)
                best = min(best, time.perf_counter() - start)
            return best, info

        baseline, info = timed("richardson_lucy")
        cells = []
        for method in methods:
            seconds, chosen = timed(method)
            cells.append(f"{seconds:.1f} s ({seconds / baseline:.2f}×, {_describe(chosen)})")
        rows.append(f"| {label} | {baseline:.1f} s ({info.iterations} it) | "
                    + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return ("## Cost (wall time, least of two runs, over one accelerated RL run to its "
            "discrepancy stop)\n\n" + "\n".join(rows) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--tune", choices=sorted(TUNED_FIELDS),
                        help="sweep this AutoTuning field of auto instead of the tables")
    parser.add_argument("--sets", default="tuning,validation")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help=f"the references' cache (default {CACHE})")
    parser.add_argument("--methods", default=",".join(
        m for m in ("auto", "rl_mix") if m in METHODS))
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    cache = {} if args.fresh or not args.cache.exists() else json.loads(
        args.cache.read_text())
    parts = [f"# Automatic deconvolution: tuning and validation sets\n\nProduced by "
             f"`python benchmarks/bench_auto.py {' '.join(argv or sys.argv[1:])}`. Ratios are "
             f"errors over the best truth-tuned peer's (`/ peer`) and over the best psfkit "
             f"method chosen with the truth (`/ psfkit`).\n"]
    if args.tune:
        sets = [("tuning", suite(quick=True)), ("validation", validation_set(args.quick))]
        text = tune(cache, [(name, cases) for name, cases in sets if name in args.sets],
                    args.tune)
        (RESULTS.parent / f"auto_tuning_{args.tune}.md").write_text(text)
        print(text)
        return 0
    if "tuning" in args.sets:
        table, _ = evaluate(suite(quick=True), methods, True, cache,
                            "Tuning set (the quick quality suite of bench_deconvolve.py)",
                            args.cache)
        parts.append(table)
    if "validation" in args.sets:
        table, _ = evaluate(validation_set(args.quick), methods, True, cache,
                            "Validation set (scenes, PSFs, noise and seeds not in the suite)",
                            args.cache)
        parts.append(table)
    if "held_out" in args.sets:
        table, _ = evaluate(held_out_set(args.quick), methods, True, cache,
                            "Held-out set (cases in neither set, written before the "
                            "change they check was run on them)", args.cache)
        parts.append(table)
    if args.cost:
        parts.append(cost(methods))
    text = "\n".join(parts)
    # a cost-only run keeps the quality tables
    target = RESULTS.parent / "auto_cost.md" if args.sets == "none" else RESULTS
    target.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
