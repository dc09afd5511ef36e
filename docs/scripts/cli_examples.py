"""Run every capability subcommand on the sample data and keep what it prints.

Run ``python docs/scripts/cli_examples.py`` from the repository. In a temporary folder it
writes the sample pair (``psfkit.samples.sample_pair``: a Gaussian blur of sigma 2 px,
shift (0.4, -0.7) px, gain 0.9, offset 0.05, 1 % noise), a second pair of another
photograph (scikit-image's astronaut, in grey) through the same blur, gain, offset and
shift, the sample LED and the sample beads, and a pair blurred by a Gaussian whose sigma
grows across the field (``psfkit.samples.field_blurred_pair``); runs ``psfkit estimate``,
``fit``, ``psf``, ``beads`` and ``convolve`` on them as a user would (``python -m psfkit``),
and the map commands (``fit --grid``, ``deconvolve --psf MAP.tif``) on the field pair; and
writes each command line with its output to ``docs/cli_output/<command>.txt``, which
``docs/cli.md`` includes. Names of examples as arguments run only those. It also draws
``docs/figures/cli_convolve.png``: the second sharp image, the blurred image the estimated
kernel predicts for it, the real one, and their difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tifffile
from skimage import color, data

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from psfkit import noise_sigma, samples  # noqa: E402

OUTPUT = ROOT / "docs" / "cli_output"

#: The command lines shown in docs/cli.md, by the file their output goes to.
EXAMPLES = {
    "estimate": "estimate sharp.tif blurred.tif -o kernel.tif --residual residual.tif",
    "fit": "fit sharp.tif blurred.tif --model gaussian --json fit.json -q",
    "fit_auto": "fit sharp.tif blurred.tif --model auto -q",
    "psf": "psf led.tif -o led_psf.tif --spacing 0.1",
    "beads": "beads beads.tif -o bead_psf.tif --csv beads.csv",
    "convolve": "convolve kernel.tif sharp.tif other_sharp.tif -o predicted "
                "--compare blurred.tif --compare other_blurred.tif",
    "convolve_kernel_only": "convolve kernel.tif other_sharp.tif --compare "
                            "other_blurred.tif --kernel-only -q",
    "fit_grid": "fit field_sharp.tif field_blurred.tif --grid 3 3 -o field_map.tif "
                "--json field_map.json --parameter-maps field -q",
    "deconvolve_map": "deconvolve field_blurred.tif --psf field_map.tif -o field_restored.tif",
}

#: The field pair of the map examples: sigma from 1.2 px (top left) to 3.0 px (bottom right).
FIELD_SHAPE, FIELD_SIGMA = (256, 256), (1.2, 3.0)


def write_samples(folder: Path) -> None:
    """The sample images as TIFFs in ``folder``."""
    pair = samples.sample_pair()
    truth = pair["truth"]
    astronaut = color.rgb2gray(data.astronaut()).astype(np.float32)
    other = samples.blurred_pair(truth["kernel"], pair["sharp"].shape, scene_image=astronaut,
                                 noise=0.01, gain=truth["gain"], offset=truth["offset"],
                                 shift=truth["shift"], rng=11)
    tifffile.imwrite(folder / "sharp.tif", pair["sharp"])
    tifffile.imwrite(folder / "blurred.tif", pair["blurred"])
    tifffile.imwrite(folder / "other_sharp.tif", other.sharp)
    tifffile.imwrite(folder / "other_blurred.tif", other.blurred)
    tifffile.imwrite(folder / "led.tif", samples.sample_point_source()["image"])
    tifffile.imwrite(folder / "beads.tif", samples.sample_beads()["image"])
    field = samples.field_blurred_pair(FIELD_SHAPE, FIELD_SIGMA, rng=0)
    tifffile.imwrite(folder / "field_sharp.tif", field.sharp)
    tifffile.imwrite(folder / "field_blurred.tif", field.blurred)
    (folder / "predicted").mkdir()


def run(arguments: str, folder: Path) -> str:
    """``psfkit ARGUMENTS`` run in ``folder``: the command line and what it printed
    (stderr, then stdout), as a terminal shows them."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run([sys.executable, "-m", "psfkit", *arguments.split()], cwd=folder,
                            capture_output=True, text=True, env=environment, check=True)
    return f"$ psfkit {arguments}\n{result.stderr}{result.stdout}"


def figure(folder: Path) -> None:
    """The second sharp image, its predicted and real blurred versions and the difference
    where the prediction saw only real pixels, on a scale of ±4 noise sigmas."""
    sharp = tifffile.imread(folder / "other_sharp.tif")
    predicted = tifffile.imread(folder / "predicted" / "other_sharp_convolved.tif")
    real = tifffile.imread(folder / "other_blurred.tif")
    inner = (slice(10, -10),) * 2  # half the 17x15 kernel and the shift in from each edge
    sigma = noise_sigma(real)
    panels = [(sharp, "another sharp image", {}), (predicted, "predicted by kernel.tif", {}),
              (real, "its real blurred image", {}),
              ((real - predicted)[inner], "real - predicted (±4 noise σ)",
               dict(vmin=-4 * sigma, vmax=4 * sigma))]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for axis, (image, title, scale) in zip(axes, panels, strict=True):
        axis.imshow(image, cmap="gray", **scale)
        axis.set_title(title)
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "figures" / "cli_convolve.png", dpi=90)


def main(names=()) -> None:
    OUTPUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_samples(folder)
        for name, arguments in EXAMPLES.items():
            if names and name not in names:
                continue
            text = run(arguments, folder)
            if name == "beads":
                text += "$ head -4 beads.csv\n" + "".join(
                    (folder / "beads.csv").read_text().splitlines(keepends=True)[:4])
            if name == "fit":
                text += "$ head -12 fit.json\n" + "".join(
                    (folder / "fit.json").read_text().splitlines(keepends=True)[:12])
            if name == "fit_grid":
                tiles = json.loads((folder / "field_map.json").read_text())["tiles"]
                text += ("$ # the last of the tiles in field_map.json\n"
                         + json.dumps(tiles[-1], indent=2) + "\n")
            (OUTPUT / f"{name}.txt").write_text(text)
            print(text)
        if not names or "convolve" in names:
            figure(folder)


if __name__ == "__main__":
    main(sys.argv[1:])
