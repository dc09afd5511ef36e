"""``psfkit demo`` runs the whole pipeline headless and gets the sample truths right."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from psfkit.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return folder, run_demo(folder, show_table=False)


def test_demo_writes_every_result(demo):
    folder, report = demo
    assert report["exit_code"] == 0
    for name in ("sharp", "blurred", "estimated_kernel", "residual", "fitted_kernel",
                 "prepared_psf", "deconvolved"):
        image = tifffile.imread(folder / f"{name}.tif")
        assert image.dtype == np.float32 and np.all(np.isfinite(image))
    assert (folder / "summary.png").stat().st_size > 10_000


def test_demo_numbers_match_the_sample_truth(demo):
    metrics = demo[1]["metrics"]
    assert metrics["kernel_error"] < 0.15
    assert metrics["shift_error"] < 0.1
    assert 0.8 < metrics["residual_ratio"] < 1.3
    assert metrics["sigma"] == pytest.approx(2.0, rel=0.01)
    assert metrics["psf_error"] < 0.15
    assert metrics["deconvolved_error"] < metrics["blurred_error"]


def test_demo_command_prints_the_table(tmp_path):
    result = subprocess.run([sys.executable, "-m", "psfkit.cli", "demo", "-o", str(tmp_path)],
                            capture_output=True, text=True, check=True)
    for step in ("estimate kernel", "fit Gaussian", "prepare PSF", "deconvolve"):
        assert step in result.stdout
    assert "not built yet" not in result.stdout
