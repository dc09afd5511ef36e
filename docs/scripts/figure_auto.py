"""Make docs/figures/auto.png: how ``method="auto"`` chooses, one regime per row.

Each row is a case of the validation set of ``benchmarks/bench_auto.py`` (images the
choice was never tuned on): the blurred image, the risk-chosen result, the best
truth-tuned peer (the peers and grids of ``bench_deconvolve.py``), and the risk curve that
made the choice: SURE of every Richardson–Lucy stopping point and every Tikhonov weight
(against its own axis), the ``rl_mix`` candidate, the winner circled, and the true error
of each RL stopping point for comparison. Run ``python docs/scripts/figure_auto.py``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_auto import validation_set  # noqa: E402
from bench_deconvolve import peers  # noqa: E402
from psfkit import deconvolve  # noqa: E402
from psfkit.metrics import image_error  # noqa: E402

OUTPUT = ROOT / "docs" / "figures" / "auto.png"

#: One case per regime: a low-contrast texture, a photo behind a defocus disk, galaxies,
#: a star field.
REGIMES = ("cell micrograph", "page", "galaxies", "star field, airy")


def _shown(image):
    """A 2D view: the middle plane of a volume."""
    return image[image.shape[0] // 2] if image.ndim == 3 else image


def _peer_image(pair, name: str, setting):
    """The image of the peer ``name`` at its truth-tuned ``setting``."""
    import diplib as dip
    from skimage import restoration

    image, psf = pair.blurred, pair.kernel
    positive = np.clip(image, 0, None)
    runs = {
        "skimage richardson_lucy": lambda: restoration.richardson_lucy(
            positive, psf, num_iter=setting, clip=False),
        "skimage wiener": lambda: restoration.wiener(image, psf, setting, clip=False),
        "skimage unsupervised_wiener": lambda: restoration.unsupervised_wiener(
            image, psf, clip=False, rng=np.random.default_rng(0))[0],
        "DIPlib RichardsonLucy": lambda: dip.RichardsonLucy(positive, psf,
                                                            nIterations=setting),
        "DIPlib FISTA": lambda: dip.FastIterativeShrinkageThresholding(
            image, psf, regularization=setting),
        "DIPlib TikhonovMiller": lambda: dip.TikhonovMiller(image, psf,
                                                            regularization=setting),
        "DIPlib WienerDeconvolution": lambda: dip.WienerDeconvolution(
            image, psf, regularization=setting),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(runs[name]())


def _peer_result(pair):
    """The best truth-tuned peer's name, error, setting and image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = peers(pair, quick=True)
    name, (error, setting) = min(table.items(), key=lambda item: item[1][0])
    return name, error, setting, _peer_image(pair, name, setting)


def _risk_panel(axis, pair, info):
    """The candidates' risks and the true error of each RL stopping point."""
    choice = info.choice
    iterations, risks = choice.risks("richardson_lucy")
    axis.semilogx(iterations, risks, "o-", ms=3, color="C0", label="SURE, RL stopping point")
    mixed_iterations, mixed_risk = choice.risks("rl_mix")
    axis.semilogx(mixed_iterations, mixed_risk, "s", color="C2", label="SURE, rl_mix")
    _, tikhonov_risks = choice.risks("tikhonov")
    axis.axhline(tikhonov_risks.min(), color="C1", ls="--",
                 label="least SURE, Tikhonov (any λ)")
    winner = choice.winner
    if winner.method != "tikhonov":
        axis.semilogx([winner.setting], [winner.risk], "o", mfc="none", ms=12, color="k",
                      label="chosen")
    every = np.concatenate([risks, mixed_risk, tikhonov_risks])
    bottom = float(every.min())
    axis.set_ylim(bottom - 0.1 * abs(bottom) - 1e-3, float(np.percentile(risks, 60)) + 1e-3)
    axis.set_xlabel("RL iterations")
    axis.set_ylabel("estimated risk")
    errors = []
    deconvolve(pair.blurred, pair.kernel, "richardson_lucy", iterations=int(iterations[-1]),
               callback=lambda step, total, current: errors.append(
                   image_error(current, pair.sharp)))
    twin = axis.twinx()
    twin.semilogx(np.arange(1, len(errors) + 1), errors, color="0.6", lw=1)
    twin.set_ylabel("true error of RL (grey)", color="0.4")


def main() -> None:
    cases = [(label, pair) for label, pair in validation_set(quick=True)
             if label.startswith(REGIMES)]
    fig, axes = plt.subplots(len(cases), 4, figsize=(15, 3.4 * len(cases)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.5]})
    for row, (label, pair) in zip(axes, cases, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result, info = deconvolve(pair.blurred, pair.kernel, "auto", return_info=True)
        name, peer_error, setting, peer_image = _peer_result(pair)
        ours = image_error(result, pair.sharp)
        # a square-root stretch of the blurred image's range: star fields stay visible
        low, high = np.percentile(_shown(pair.blurred), [0.5, 99.9])
        panels = [(pair.blurred, f"blurred ({image_error(pair.blurred, pair.sharp):.3f})"),
                  (result, f"auto: {info.choice.winner.describe()} ({ours:.3f})"),
                  (peer_image, f"best peer: {name}, {setting:.3g} ({peer_error:.3f})")]
        for axis, (image, title) in zip(row[:3], panels, strict=True):
            axis.imshow(np.sqrt(np.clip((_shown(image) - low) / (high - low), 0, 1)),
                        cmap="gray", vmin=0, vmax=1)
            axis.set_title(title, fontsize=8)
            axis.axis("off")
        row[0].text(-0.05, 0.5, label, transform=row[0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=8)
        _risk_panel(row[3], pair, info)
        row[3].set_title("the risks that made the choice", fontsize=8)
    axes[0, 3].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUTPUT, dpi=90)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
