"""The profile plot of Fit PSF model, Prepare PSF and Average beads, docked from the
Plugins menu: the core's profiles drawn with their FWHM, one plot updated by every run."""

import numpy as np
import pytest
from _widget_helpers import dock, run_to_end
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

import psfkit
from psfkit import axial_profile, make_psf, radial_profile
from psfkit.samples import blurred_pair


def _panels(widget):
    """The plot's panels as {title: axes}."""
    return {axes.get_title(): axes for axes in widget.plot.figure.axes}


def _assert_drawn(axes, index, profile, label):
    """Line ``index`` of ``axes`` is ``profile``, its legend names ``label`` and the FWHM,
    and a dashed segment marks the FWHM at half maximum."""
    line = axes.lines[index]
    np.testing.assert_allclose(line.get_xdata(), profile.distance)
    np.testing.assert_allclose(line.get_ydata(), profile.value)
    assert line.get_label().startswith(f"{label}: FWHM {profile.fwhm:.3g} ")
    segment = axes.collections[index].get_segments()[0]
    np.testing.assert_allclose(segment[:, 1], profile.half_maximum)
    assert segment[1, 0] == pytest.approx(profile.half_maximum_edges[1])


@pytest.fixture
def fit_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    pair = blurred_pair(make_psf("gaussian", (13, 13), sigma=1.5), (96, 96), noise=0.005,
                        rng=3)
    viewer.add_image(pair.sharp, name="sharp", scale=(0.2, 0.2), units="um")
    viewer.add_image(pair.blurred, name="blurred", scale=(0.2, 0.2), units="um")
    return viewer, dock(viewer, "Fit PSF model"), pair


def test_fit_plots_the_estimated_kernel_against_the_fitted_model(qtbot, fit_viewer):
    viewer, widget, pair = fit_viewer
    assert widget.plot.canvas.isHidden()
    widget.size.value = 13
    run_to_end(qtbot, widget)
    assert not widget.plot.canvas.isHidden()
    panels = _panels(widget)
    assert list(panels) == ["radial"] and panels["radial"].get_xlabel() == "radius (µm)"
    estimated = psfkit.estimate_kernel(pair.sharp, pair.blurred, (13, 13)).kernel
    model = viewer.layers["blurred fitted kernel"].data
    _assert_drawn(panels["radial"], 0, radial_profile(estimated, spacing=0.2),
                  "estimated kernel")
    fitted = radial_profile(model, spacing=0.2)
    _assert_drawn(panels["radial"], 1, fitted, "fitted gaussian")
    assert "µm" in panels["radial"].lines[1].get_label()
    # the sigma 1.5 px truth, integrated over pixels, is 0.2 * 2.355 * 1.53 µm wide
    assert fitted.fwhm == pytest.approx(0.2 * 2.3548 * np.sqrt(1.5**2 + 1 / 12), rel=0.03)


def test_rerunning_the_fit_redraws_its_one_plot(qtbot, fit_viewer):
    viewer, widget, _ = fit_viewer
    widget.size.value = 13
    run_to_end(qtbot, widget)
    docks = len(viewer.window.dock_widgets)
    widget.size.value = 7
    run_to_end(qtbot, widget)
    assert len(widget.native.findChildren(FigureCanvasQTAgg)) == 1
    assert len(viewer.window.dock_widgets) == docks
    axes = _panels(widget)["radial"]
    assert len(axes.lines) == 2
    fitted = radial_profile(viewer.layers["blurred fitted kernel"].data, spacing=0.2)
    assert viewer.layers["blurred fitted kernel"].data.shape == (7, 7)
    np.testing.assert_allclose(axes.lines[1].get_ydata(), fitted.value)


def test_a_3d_fit_also_plots_the_axial_profile(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    truth = make_psf("gaussian", (11, 9, 9), sigma=(2.0, 1.2, 1.2))
    pair = blurred_pair(truth, (24, 40, 40), noise=0.005, shift=(0, 0, 0),
                        scene_kind="blobs", rng=1)
    viewer.add_image(pair.sharp, name="sharp", scale=(0.3, 0.1, 0.1))
    viewer.add_image(pair.blurred, name="blurred", scale=(0.3, 0.1, 0.1))
    widget = dock(viewer, "Fit PSF model")
    widget.size.value = 11
    run_to_end(qtbot, widget)
    panels = _panels(widget)
    assert list(panels) == ["radial", "axial"]
    assert panels["axial"].get_xlabel() == "z (units of scale)"
    model = viewer.layers["blurred fitted kernel"].data
    axial = axial_profile(model, spacing=(0.3, 0.1, 0.1))
    _assert_drawn(panels["axial"], 1, axial, "fitted gaussian")
    # the truth's axial sigma of 2 planes (integrated over them) is 0.3 * 2.355 * 2.02 wide
    assert axial.fwhm == pytest.approx(0.3 * 2.3548 * np.sqrt(4 + 1 / 12), rel=0.05)


def test_prepare_psf_and_average_beads_plot_their_psfs_profile(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-psfkit", "led_photo")
    viewer.open_sample("napari-psfkit", "beads")
    prepare = dock(viewer, "Prepare PSF")
    prepare.image.value = viewer.layers["LED"]
    run_to_end(qtbot, prepare)
    axes = _panels(prepare)["radial"]
    assert axes.get_xlabel() == "radius (px)" and len(axes.lines) == 1
    psf = viewer.layers["LED PSF"].data
    _assert_drawn(axes, 0, radial_profile(psf), "PSF")
    # a defocus disk of radius 4.5 px softened by the lens: about 9 px at half maximum
    assert radial_profile(psf).fwhm == pytest.approx(9.0, rel=0.1)
    average = dock(viewer, "Average beads")
    average.image.value = viewer.layers["beads"]
    run_to_end(qtbot, average)
    axes = _panels(average)["radial"]
    averaged = radial_profile(viewer.layers["beads averaged PSF"].data)
    _assert_drawn(axes, 0, averaged, "averaged PSF")
    # an Airy PSF with its first zero (1.22 λ/NA) at 2.5 px: FWHM 1.03 λ/NA = 2.11 px
    assert averaged.fwhm == pytest.approx(1.029 / 1.2197 * 2.5, rel=0.05)
