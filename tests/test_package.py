"""The package as users install it: headless core, manifest, entry points, metadata."""

import importlib
import importlib.metadata
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Every module of the core: all of psfkit but the napari face.
CORE_MODULES = ["psfkit", *sorted(
    module.name for module in pkgutil.walk_packages(
        [str(REPO / "src" / "psfkit")], prefix="psfkit.")
    if not module.name.startswith("psfkit._napari"))]


def test_importing_the_core_loads_no_gui_toolkit():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}: importlib.import_module(name)\n"
        "leaks = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6'})\n"
        "print(','.join(leaks))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_manifest_is_found_through_the_entry_point_and_its_commands_resolve():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-psfkit")
    assert manifest.name == "napari-psfkit"
    ids = {command.id for command in manifest.contributions.commands}
    assert {"napari-psfkit.estimate_kernel", "napari-psfkit.deconvolve",
            "napari-psfkit.prepare_psf", "napari-psfkit.sample_blurred_pair"} <= ids
    for command in manifest.contributions.commands:
        module_name, attribute = command.python_name.split(":")
        target = getattr(importlib.import_module(module_name), attribute)
        assert callable(target), command.python_name
    assert len(manifest.contributions.widgets) == 6
    assert len(manifest.contributions.sample_data) == 5
    [reader] = manifest.contributions.readers
    assert reader.command == "napari-psfkit.read_tiff"
    assert reader.filename_patterns == ["*.tif", "*.tiff"]


def test_installed_manifest_is_the_top_level_one():
    installed = Path(importlib.import_module("psfkit").__file__).parent / "napari.yaml"
    assert installed.read_text() == (REPO / "napari.yaml").read_text()


def test_metadata_declares_napari_framework_and_no_qt_binding():
    metadata = importlib.metadata.metadata("napari-psfkit")
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: napari" in classifiers
    assert "Topic :: Scientific/Engineering :: Image Processing" in classifiers
    runtime = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert not any(r.lower().startswith(("pyqt", "pyside")) for r in runtime)
    assert any(r.startswith("napari") for r in runtime)


@pytest.mark.parametrize("command", [["--help"], ["demo", "--help"]])
def test_command_line_entry_point_answers(command):
    result = subprocess.run([sys.executable, "-m", "psfkit.cli", *command],
                            capture_output=True, text=True, check=True)
    assert "psfkit" in result.stdout



def _raw_files_url() -> str:
    """Where the repository's files are served as they are: from pyproject's Homepage."""
    pyproject = (REPO / "pyproject.toml").read_text()
    repository = re.search(r'^Homepage = "https://github\.com/([^"]+)"$', pyproject,
                           re.MULTILINE).group(1)
    return f"https://raw.githubusercontent.com/{repository}/main/"


def test_readme_images_are_absolute_urls_to_files_in_the_repository():
    # the package index and the napari hub show README.md away from the repository, where
    # a relative image path points at nothing
    readme = (REPO / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", readme)
    images += re.findall(r"<img[^>]*\ssrc=[\"']([^\"']+)", readme)
    raw = _raw_files_url()
    assert images, "README.md shows no image"
    for url in images:
        assert url.startswith(raw), f"{url} is not under {raw}"
        assert (REPO / url[len(raw):]).is_file(), f"{url} names no file of the repository"
