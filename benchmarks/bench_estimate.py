"""Kernel estimation between a sharp and a blurred image: psfkit against the usual recipes.

Every pair is made the way a camera makes it (``psfkit.samples.blurred_pair``: blur and
shift a larger scene, crop both images to one window) with a random sub-pixel shift, gain
and offset, and one corruption: Gaussian noise of 0.5 %, 2 % or 5 %, Poisson noise, or JPEG
compression. Scenes rotate through natural, blobs and stars. The score is the relative L2
error of the unit-sum kernel against the truth.

Peers, side by side in one process:

* ``fft-division``: ``ifft(B / S)`` cropped to the true support;
* ``diplib-default``: ``dip.WienerDeconvolution(blurred, sharp, 1e-4, {"pad"})``;
* ``diplib-best``: the same at the regularization that minimises the error *against the
  truth* (a scan over 19 decades-spaced values), which no user can do;
* ``lsq-valid``: unregularized least squares on the valid region (LSQR with an offset term,
  true support).

The peers are handed the true kernel support and compared with the truth moved by the true
shift (the kernel their recipes actually see); psfkit chooses the support itself, estimates
and removes the shift, and is compared with the centred truth.

Run ``python benchmarks/bench_estimate.py`` (``--quick`` for a small run). Writes
``benchmarks/results/estimate.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.sparse.linalg

from psfkit import estimate_kernel, make_psf, samples
from psfkit.metrics import kernel_error
from psfkit.operators import WORKERS, Convolver, centre_embed, fast_shape, fourier_shift

KERNELS = {
    "gaussian": ("gaussian", (21, 21), {"sigma": 2.0}),
    "elliptical": ("elliptical_gaussian", (25, 25), {"sigma_y": 3.0, "sigma_x": 1.3,
                                                     "angle": 0.5}),
    "disk": ("disk", (15, 15), {"radius": 4.5}),
    "ring": ("ring", (19, 19), {"diameter": 11.0, "width": 1.0}),
    "motion": ("motion", (17, 17), {"length": 11.0, "angle": 0.6}),
    "airy": ("airy", (21, 21), {"radius": 3.0}),
    "moffat": ("moffat", (25, 25), {"alpha": 2.5, "beta": 2.5}),
}

CORRUPTIONS = {
    "noise 0.5%": {"noise": 0.005},
    "noise 2%": {"noise": 0.02},
    "noise 5%": {"noise": 0.05},
    "poisson": {"noise": 0.0, "poisson_photons": 300.0},
    "jpeg q90": {"noise": 0.002, "jpeg_quality": 90},
}

SCENES = ("natural", "blobs", "stars")


def _crop_centre(array, shape):
    return centre_embed(array, shape)


# -- peers --------------------------------------------------------------------------------


def fft_division(sharp, blurred, shape):
    grid = sharp.shape
    spectrum_sharp = scipy.fft.rfftn(sharp, grid, workers=WORKERS)
    spectrum_blurred = scipy.fft.rfftn(blurred, grid, workers=WORKERS)
    tiny = 1e-12 * float(np.max(np.abs(spectrum_sharp)))
    ratio = spectrum_blurred / np.where(np.abs(spectrum_sharp) < tiny, tiny, spectrum_sharp)
    kernel = scipy.fft.irfftn(ratio, grid, workers=WORKERS)
    kernel = np.fft.fftshift(kernel)
    return _crop_centre(kernel, shape)


def diplib_wiener(sharp, blurred, shape, regularization=1e-4):
    import diplib as dip

    out = np.asarray(dip.WienerDeconvolution(dip.Image(blurred), dip.Image(sharp),
                                             regularization, {"pad"}))
    return _crop_centre(out, shape)


DIPLIB_SCAN = np.logspace(-10, 2, 19)


def diplib_best(sharp, blurred, shape, truth_effective):
    best = None
    for regularization in DIPLIB_SCAN:
        kernel = diplib_wiener(sharp, blurred, shape, regularization)
        error = kernel_error(kernel, truth_effective, normalize=True)
        if best is None or error < best[0]:
            best = (error, kernel, regularization)
    return best


def lsq_valid(sharp, blurred, shape, iterations=600):
    """Unregularized least squares ``min ‖sharp ∗ k + c − blurred‖²`` on the valid region."""
    operator = Convolver(sharp, shape)
    valid = tuple(slice(k // 2, n - k + 1 + k // 2)
                  for n, k in zip(sharp.shape, shape, strict=True))
    data = blurred[valid].astype(np.float64).ravel()
    size = int(np.prod(shape))
    rows = data.size
    scale = float(np.sqrt(rows))

    def matvec(v):
        kernel = v[:size].reshape(shape).astype(np.float32)
        return operator.apply(kernel, "valid").astype(np.float64).ravel() + v[size] * scale

    def rmatvec(r):
        gradient = operator.adjoint(r.reshape(operator_shape).astype(np.float32), "valid")
        return np.concatenate([gradient.astype(np.float64).ravel(), [r.sum() * scale]])

    operator_shape = blurred[valid].shape
    linear = scipy.sparse.linalg.LinearOperator((rows, size + 1), matvec=matvec,
                                                rmatvec=rmatvec, dtype=np.float64)
    solution = scipy.sparse.linalg.lsqr(linear, data, atol=1e-10, btol=1e-10,
                                        iter_lim=iterations)[0]
    return solution[:size].reshape(shape)


# -- cases --------------------------------------------------------------------------------


def make_cases(quick: bool, size: int):
    rng = np.random.default_rng(7)
    cases = []
    corruption_names = list(CORRUPTIONS)
    for index, (kernel_name, (model, shape, params)) in enumerate(KERNELS.items()):
        kernel = make_psf(model, shape, **params)
        chosen = corruption_names[:2] if quick else corruption_names
        for offset_index, corruption in enumerate(chosen):
            scene = SCENES[(index + offset_index) % len(SCENES)]
            shift = rng.uniform(-1.5, 1.5, 2)
            gain = rng.uniform(0.7, 1.3)
            offset = rng.uniform(0.0, 0.1)  # a camera bias; Poisson needs a positive signal
            pair = samples.blurred_pair(kernel, (size, size), scene_kind=scene, gain=gain,
                                        offset=offset, shift=shift, rng=rng,
                                        **CORRUPTIONS[corruption])
            cases.append((kernel_name, corruption, scene, pair))
    return cases


def run_quality(quick: bool):
    size = 192 if quick else 256
    rows = []
    for kernel_name, corruption, scene, pair in make_cases(quick, size):
        truth = pair.kernel
        effective = fourier_shift(centre_embed(truth, [n + 6 for n in truth.shape]),
                                  pair.shift)
        shape = truth.shape
        row = {"kernel": kernel_name, "corruption": corruption, "scene": scene}
        start = time.perf_counter()
        result = estimate_kernel(pair.sharp, pair.blurred)
        row["psfkit_time"] = time.perf_counter() - start
        row["psfkit"] = kernel_error(result.kernel, truth, normalize=True)
        row["shift_error"] = float(np.max(np.abs(result.shift - pair.shift)))
        row["psfkit_shape"] = result.shape
        fourier = estimate_kernel(pair.sharp, pair.blurred, method="fourier")
        row["psfkit-fourier"] = kernel_error(fourier.kernel, truth, normalize=True)
        row["fft-division"] = kernel_error(fft_division(pair.sharp, pair.blurred, shape),
                                             effective, normalize=True)
        row["diplib-default"] = kernel_error(
            diplib_wiener(pair.sharp, pair.blurred, shape), effective, normalize=True)
        best_error, _, best_regularization = diplib_best(pair.sharp, pair.blurred, shape,
                                                         effective)
        row["diplib-best"] = best_error
        row["diplib-best-reg"] = best_regularization
        row["lsq-valid"] = kernel_error(lsq_valid(pair.sharp, pair.blurred, shape),
                                          effective, normalize=True)
        peers = [row[name] for name in ("fft-division", "diplib-default", "diplib-best",
                                        "lsq-valid")]
        row["best-peer"] = min(peers)
        rows.append(row)
        print(f"{kernel_name:10s} {corruption:10s} {scene:8s} psfkit {row['psfkit']:.3f} "
              f"(shift err {row['shift_error']:.3f}, {row['psfkit_time']:.2f} s) "
              f"best peer {row['best-peer']:.3f}", flush=True)
    return rows


def _time(function, repeat=1):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _fft_baseline(shape):
    """Seconds for 4 real FFTs (2 forward, 2 inverse) on the padded grid of ``shape``."""
    grid = fast_shape(shape)
    array = np.random.default_rng(0).random(grid, dtype=np.float32)

    def four():
        spectrum = scipy.fft.rfftn(array, workers=WORKERS)
        scipy.fft.irfftn(spectrum, grid, workers=WORKERS)
        spectrum = scipy.fft.rfftn(array, workers=WORKERS)
        scipy.fft.irfftn(spectrum, grid, workers=WORKERS)

    return _time(four, 5)


def run_speed(quick: bool):
    cases = [("512² natural, 31×31 Gaussian σ=4", (512, 512), "natural",
              ("gaussian", (31, 31), {"sigma": 4.0}), (31, 31))]
    if not quick:
        cases += [
            ("2048² natural, 31×31 Gaussian σ=4", (2048, 2048), "natural",
             ("gaussian", (31, 31), {"sigma": 4.0}), (31, 31)),
            ("3D 64×256×256 blobs, 9×15×15 Gaussian", (64, 256, 256), "blobs",
             ("gaussian", (9, 15, 15), {"sigma": (1.5, 2.5, 2.5)}), (9, 15, 15)),
        ]
    rows = []
    for label, shape, scene, (model, kshape, params), given in cases:
        kernel = make_psf(model, kshape, **params)
        pair = samples.blurred_pair(kernel, shape, scene_kind=scene, noise=0.01,
                                    shift=(0.3,) * len(shape), rng=3)
        baseline = _fft_baseline([n + k for n, k in zip(shape, kshape, strict=True)])
        row = {"case": label, "fft4": baseline}
        for name, call in (
            ("psfkit (given shape)",
             lambda p=pair, g=given: estimate_kernel(p.sharp, p.blurred, g)),
            ("psfkit (auto shape)", lambda p=pair: estimate_kernel(p.sharp, p.blurred)),
            ("psfkit fourier", lambda p=pair, g=given: estimate_kernel(
                p.sharp, p.blurred, g, method="fourier")),
            ("diplib-default", lambda p=pair, g=given: diplib_wiener(p.sharp, p.blurred, g)),
            ("fft-division", lambda p=pair, g=given: fft_division(p.sharp, p.blurred, g)),
        ):
            start, cpu = time.perf_counter(), time.process_time()
            result = call()
            row[name] = time.perf_counter() - start
            row[name + " cpu"] = time.process_time() - cpu
            if name == "psfkit (given shape)":
                row["error"] = kernel_error(result.kernel, kernel, normalize=True)
                row["shift_error"] = float(np.max(np.abs(result.shift - pair.shift)))
        rows.append(row)
        print(row, flush=True)
    return rows


def to_markdown(quality, speed) -> str:
    names = ["psfkit", "psfkit-fourier", "fft-division", "diplib-default", "diplib-best",
             "lsq-valid"]
    if not quality:
        return _speed_markdown(speed)
    lines = ["## Kernel error (relative L2 of the unit-sum kernel; lower is better)", "",
             "| kernel | corruption | scene | " + " | ".join(names) + " | psfkit / best peer"
             " | shift error (px) |",
             "|" + "---|" * (len(names) + 5)]
    for row in quality:
        cells = " | ".join(f"{row[name]:.3f}" for name in names)
        lines.append(f"| {row['kernel']} | {row['corruption']} | {row['scene']} | {cells} | "
                     f"{row['psfkit'] / row['best-peer']:.2f} | {row['shift_error']:.3f} |")
    medians = {name: float(np.median([row[name] for row in quality])) for name in names}
    ratios = [row["psfkit"] / row["best-peer"] for row in quality]
    best_peer_median = min(medians[name] for name in names[2:])
    lines += [
        "| **median** | | | " + " | ".join(f"**{medians[n]:.3f}**" for n in names)
        + f" | {np.median(ratios):.2f} | {np.median([r['shift_error'] for r in quality]):.3f} |",
        "",
        f"- median psfkit error / median of the best peer: "
        f"**{medians['psfkit'] / best_peer_median:.2f}**",
        f"- per case psfkit / best peer of that case: median {np.median(ratios):.2f}, "
        f"worst {np.max(ratios):.2f}; psfkit is worse than the best peer in "
        f"{int(np.sum(np.array(ratios) > 1))} of {len(ratios)} cases",
        f"- shift error: median {np.median([r['shift_error'] for r in quality]):.3f} px, "
        f"max {np.max([r['shift_error'] for r in quality]):.3f} px",
        "",
    ]
    return "\n".join(lines) + "\n" + _speed_markdown(speed)


def _speed_markdown(speed) -> str:
    lines = [
        "## Speed (seconds, one run each; ratio to 4 FFTs on the padded grid in brackets)", "",
        "| case | psfkit (given shape) | psfkit (auto shape) | psfkit fourier | diplib-default"
        " | fft-division | 4 FFTs | psfkit CPU s (given shape) | psfkit error | shift error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in speed:
        cells = " | ".join(
            f"{row[name]:.2f} ({row[name] / row['fft4']:.0f}×)"
            for name in ("psfkit (given shape)", "psfkit (auto shape)", "psfkit fourier",
                         "diplib-default", "fft-division"))
        lines.append(f"| {row['case']} | {cells} | {row['fft4'] * 1e3:.1f} ms | "
                     f"{row['psfkit (given shape) cpu']:.2f} | "
                     f"{row['error']:.3f} | {row['shift_error']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the speed table, written to results/estimate_speed.md")
    args = parser.parse_args(argv)
    out = Path(__file__).parent / "results" / "estimate.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.speed_only:
        table = to_markdown([], run_speed(args.quick))
        table = table[table.index("## Speed"):]
        print(table)
        out.with_name("estimate_speed.md").write_text(table)
        return 0
    quality = run_quality(args.quick)
    speed = [] if args.no_speed else run_speed(args.quick)
    table = to_markdown(quality, speed)
    print(table)
    header = ("# Kernel estimation benchmark\n\nMade by `python benchmarks/bench_estimate.py"
              + (" --quick" if args.quick else "") + "` on a shared 2-core machine (timings"
              " are noisy; compare the ratios).\n\n")
    out.write_text(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
