"""Make the worked example of docs/batch.md: from a bead image to a deconvolved folder.

Run ``python docs/scripts/figure_batch.py`` from the repository. In a temporary folder it
averages the beads of ``psfkit.samples.sample_beads`` into a PSF (``average_beads``),
saves it with its pixel size and a provenance sidecar (``save_psf``), writes a plate of six
images blurred by the true PSF (with 0.1 µm pixels in their ImageJ metadata), runs
``psfkit deconvolve plate --psf bead_psf.tif -o deconvolved --same-choices``, and runs it
again to show the restart; then once more on a ``distributed.LocalCluster`` of two worker
processes (``--scheduler ADDRESS``), checking that every output is the local one bit for
bit. It writes the command's output to ``docs/batch_output.txt`` (the cluster's to
``docs/batch_cluster_output.txt``, its address written as ``tcp://scheduler:8786``),
one output's sidecar to ``docs/batch_sidecar.json`` (paths made relative) and
``docs/figures/batch.png``: the bead image, the bead PSF against the truth, one well
before and after, and the error of every well against its sharp truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import psfkit
from psfkit.cli import main
from psfkit.io import read_sidecar, save_psf, write_image
from psfkit.operators import centre_embed
from psfkit.samples import blurred_pair, sample_beads

DOCS = Path(__file__).resolve().parents[1]
PIXEL = 0.1  # µm
WELLS = 6


def _run(arguments) -> str:
    """``psfkit`` with ``arguments``; its stderr, as a user sees it."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(arguments)
    print(err.getvalue(), file=sys.stderr)
    assert code == 0, code
    return err.getvalue()


def _run_on_cluster(arguments) -> str:
    """``psfkit`` with ``arguments`` and ``--scheduler`` on a local cluster of two worker
    processes; the command and its stderr, with a generic scheduler address."""
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, scheduler_port=0) as cluster:
        address = cluster.scheduler_address
        err = _run([*arguments, "--scheduler", address])
    generic = "tcp://scheduler:8786"
    return ("$ psfkit " + " ".join(arguments) + f" --scheduler {generic}\n"
            + err.replace(address, generic))


def _relative_error(estimate, truth) -> float:
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def _show(axis, image, title) -> None:
    axis.imshow(image, cmap="magma")
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def main_figure() -> None:
    beads = sample_beads()
    average = psfkit.average_beads(beads["image"], spacing=PIXEL)
    true_psf = beads["truth"]["psf"]
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        save_psf("bead_psf.tif", average.psf, spacing=(PIXEL, PIXEL),
                 provenance={"made_by": "psfkit.average_beads", "beads_used":
                             average.beads_used, "fwhm_um": average.fwhm_physical.tolist()})
        os.mkdir("plate")
        truths, raws = [], []
        for well in range(WELLS):
            pair = blurred_pair(true_psf, (192, 192), scene_kind="blobs", noise=0.002,
                                poisson_photons=1000.0, rng=10 + well)
            write_image(f"plate/well{well}.tif", pair.blurred, (PIXEL, PIXEL))
            truths.append(pair.sharp)
            raws.append(pair.blurred)
        command = ["deconvolve", "plate", "--psf", "bead_psf.tif", "-o", "deconvolved",
                   "--same-choices", "-q"]
        first = _run(command)
        again = _run(command)
        on_cluster = _run_on_cluster([*command[:5], "on_cluster", "--same-choices"])
        for well in range(WELLS):
            name = f"well{well}_deconvolved.tif"
            assert np.array_equal(psfkit.read_image(f"deconvolved/{name}").data,
                                  psfkit.read_image(f"on_cluster/{name}").data), name
        record = read_sidecar("deconvolved/well0_deconvolved.tif")
        results = [psfkit.read_image(f"deconvolved/well{well}_deconvolved.tif").data
                   for well in range(WELLS)]
        listing = sorted(os.listdir("deconvolved"))
    record["output"] = os.path.relpath(record["output"], folder)
    record["inputs"][0]["path"] = os.path.relpath(record["inputs"][0]["path"], folder)
    record["psf"]["path"] = os.path.relpath(record["psf"]["path"], folder)
    record["parameters"]["acceleration_steps"] = (
        [*record["parameters"].get("acceleration_steps", [])[:3], "..."])
    if record.get("choice"):  # the candidates with their risks, shortened like the steps
        record["choice"]["candidates"] = [*record["choice"]["candidates"][:2], "..."]
    (DOCS / "batch_sidecar.json").write_text(json.dumps(record, indent=2,
                                                        ensure_ascii=False) + "\n")
    (DOCS / "batch_output.txt").write_text(
        "$ psfkit " + " ".join(command) + "\n" + first
        + "$ psfkit " + " ".join(command) + "    # again: nothing left to do\n" + again
        + "$ ls deconvolved\n" + "\n".join(listing) + "\n")
    (DOCS / "batch_cluster_output.txt").write_text(on_cluster)
    _figure(beads["image"], average.psf, true_psf, raws[0], results[0], truths, raws, results)


def _figure(bead_image, bead_psf, true_psf, raw, result, truths, raws, results) -> None:
    figure, axes = plt.subplots(1, 5, figsize=(16, 3.4))
    _show(axes[0], bead_image, f"beads ({PIXEL} µm pixels)")
    truth = centre_embed(true_psf, bead_psf.shape)
    _show(axes[1], bead_psf, f"bead PSF (error {_relative_error(bead_psf, truth):.1%} "
                             f"vs truth)")
    _show(axes[2], raw, "well0: raw")
    _show(axes[3], result, "well0: deconvolved")
    before = [_relative_error(r, t) for r, t in zip(raws, truths, strict=True)]
    after = [_relative_error(r, t) for r, t in zip(results, truths, strict=True)]
    wells = np.arange(len(truths))
    axes[4].bar(wells - 0.2, before, 0.4, label="raw")
    axes[4].bar(wells + 0.2, after, 0.4, label="deconvolved")
    axes[4].set_xlabel("well")
    axes[4].set_ylabel("relative L2 error vs sharp truth")
    axes[4].legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(DOCS / "figures" / "batch.png", dpi=110)


if __name__ == "__main__":
    main_figure()
