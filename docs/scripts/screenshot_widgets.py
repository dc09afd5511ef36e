"""One screenshot per psfkit widget in action, for docs/napari.md.

Run under a virtual display: ``xvfb-run -a python docs/scripts/screenshot_widgets.py``
(followed by names such as ``blur_map`` to make only those).
For each widget it opens a viewer on the widget's sample, docks the widget as the Plugins
menu docks it, runs it with its defaults, shows the inputs and outputs side by side (a
small kernel or PSF magnified to the size of the image beside it) and saves
docs/figures/napari_<widget>.png.
"""

from pathlib import Path

import napari
import numpy as np

FIGURES = Path(__file__).resolve().parents[1] / "figures"
WINDOW_SIZE = (1600, 900)


def settle(rounds: int = 30) -> None:
    """Let Qt draw what changed."""
    app = napari.qt.get_qapp()
    for _ in range(rounds):
        app.processEvents()


def run(widget) -> None:
    """Run ``widget`` and wait until it has shown its result (or its error)."""
    import time

    if widget.run() is None:
        raise RuntimeError(widget.last_error)
    deadline = time.monotonic() + 300
    while widget.worker is not None and time.monotonic() < deadline:
        settle(1)
        time.sleep(0.02)
    if widget.last_error:
        raise RuntimeError(widget.last_error)


def magnify_like(small, large) -> None:
    """Scale the layer ``small`` (a kernel, a PSF) so it spans the extent of ``large``."""
    extent = np.asarray(large.data.shape[-small.ndim:]) * np.asarray(large.scale[-small.ndim:])
    small.scale = tuple(extent / np.asarray(small.data.shape))
    small.translate = tuple(large.translate[-small.ndim:])


def show_noise_of(residual) -> None:
    """Contrast limits of ±4 standard deviations, so a residual that is only noise shows
    its grain (the widget's limits, ±its largest value, leave it almost uniformly grey)."""
    limit = 4 * float(np.std(residual.data))
    residual.contrast_limits = (-limit, limit)


def show_side_by_side(viewer, names) -> None:
    """Show the layers ``names`` in a one-row grid, in that order from the left, and hide
    the others (which the grid places after them)."""
    for index, name in enumerate(names):  # the grid's first cell holds layers[0]
        viewer.layers.move(viewer.layers.index(name), index)
    for layer in viewer.layers:
        layer.visible = layer.name in names
    # napari 0.9 moved the grid to the canvas
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled = True
    grid.shape = (1, len(names))


def screenshot(viewer, widget_name: str) -> None:
    settle()
    viewer.reset_view()
    settle()
    path = FIGURES / f"napari_{widget_name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"saved {path}")


def new_viewer(sample: str | None, widget: str):
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    if sample:
        viewer.open_sample("napari-psfkit", sample)
    _, docked = viewer.window.add_plugin_dock_widget("napari-psfkit", widget)
    return viewer, docked


def estimate_kernel() -> None:
    viewer, widget = new_viewer("blurred_pair", "Estimate kernel")
    run(widget)
    magnify_like(viewer.layers["blurred kernel"], viewer.layers["blurred"])
    show_noise_of(viewer.layers["blurred residual"])
    show_side_by_side(viewer, ["sharp", "blurred", "blurred kernel", "blurred residual"])
    screenshot(viewer, "estimate_kernel")
    viewer.close()


def fit_psf_model() -> None:
    viewer, widget = new_viewer("blurred_pair", "Fit PSF model")
    run(widget)
    magnify_like(viewer.layers["blurred fitted kernel"], viewer.layers["blurred"])
    show_noise_of(viewer.layers["blurred fit residual"])
    show_side_by_side(viewer, ["sharp", "blurred", "blurred fitted kernel",
                               "blurred fit residual"])
    screenshot(viewer, "fit_psf_model")
    viewer.close()


def model_psf() -> None:
    viewer, widget = new_viewer(None, "Model PSF")
    widget.model.value = "widefield_airy"
    run(widget)
    layer = viewer.layers["widefield_airy PSF"]
    layer.gamma = 0.4  # the rings are a few percent of the peak
    screenshot(viewer, "model_psf")
    viewer.close()


def prepare_psf() -> None:
    viewer, widget = new_viewer("led_photo", "Prepare PSF")
    widget.image.value = viewer.layers["LED"]
    run(widget)
    led = viewer.layers["LED"]
    # napari's default limits span the hot pixels; these show the LED itself
    led.contrast_limits = (float(led.data.min()), float(np.percentile(led.data, 99.5)))
    magnify_like(viewer.layers["LED PSF"], led)
    show_side_by_side(viewer, ["LED", "LED PSF"])
    screenshot(viewer, "prepare_psf")
    viewer.close()


def average_beads() -> None:
    viewer, widget = new_viewer("beads", "Average beads")
    widget.image.value = viewer.layers["beads"]
    run(widget)
    beads, psf = viewer.layers["beads"], viewer.layers["beads averaged PSF"]
    # the averaged PSF magnified to half the image's height, right of the image
    height = beads.data.shape[0] * beads.scale[0]
    psf.scale = tuple(np.full(psf.ndim, 0.5 * height / psf.data.shape[0]))
    psf.translate = (0.0, beads.data.shape[1] * beads.scale[1] + 0.05 * height)
    screenshot(viewer, "average_beads")
    viewer.close()


def deconvolve() -> None:
    viewer, widget = new_viewer("blurred_image", "Deconvolve")
    run(widget)
    show_side_by_side(viewer, ["blurred cells", "blurred cells deconvolved"])
    screenshot(viewer, "deconvolve")
    viewer.close()


def blur_map() -> None:
    """Fit PSF model in map mode on a field whose σ grows from 1 px (top left) to 3 px
    (bottom right): the kernel mosaic over the blurred image, and the σ map."""
    from psfkit.samples import field_blurred_pair

    pair = field_blurred_pair((256, 256), (1.0, 3.0), noise=0.01, rng=0)
    viewer, widget = new_viewer(None, "Fit PSF model")
    viewer.add_image(pair.sharp, name="sharp")
    viewer.add_image(pair.blurred, name="blurred")
    widget.sharp.value, widget.blurred.value = viewer.layers["sharp"], viewer.layers["blurred"]
    widget.grid.rows.value, widget.grid.cols.value = 4, 4
    run(widget)
    # the blurred image with the mosaic on it in the first cell, the σ map in the second
    show_side_by_side(viewer, ["blurred", "blurred fitted kernel map", "blurred sigma map"])
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.stride, grid.shape = 2, (1, 2)
    screenshot(viewer, "blur_map")
    viewer.close()


SCREENSHOTS = (estimate_kernel, fit_psf_model, model_psf, prepare_psf, average_beads,
               deconvolve, blur_map)

if __name__ == "__main__":
    import sys

    chosen = sys.argv[1:]  # names of screenshots to make again; none: all of them
    for make in SCREENSHOTS:
        if not chosen or make.__name__ in chosen:
            make()
