"""Screenshot of the psfkit widgets in napari, for the README and the docs.

Run under a virtual display: ``xvfb-run -a python docs/scripts/screenshot_napari.py``.
Opens the sample pair, docks the "Estimate kernel" and "Deconvolve" widgets from the
Plugins menu, runs the kernel estimation and saves docs/figures/napari_widgets.png.
"""

import sys
from pathlib import Path

import napari
from qtpy.QtCore import QEventLoop, QTimer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_widgets import show_noise_of

OUTPUT = Path(__file__).resolve().parents[1] / "figures" / "napari_widgets.png"


def wait_for(worker) -> None:
    loop = QEventLoop()
    worker.finished.connect(loop.quit)
    QTimer.singleShot(120_000, loop.quit)
    loop.exec_()


viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1500, 900)
viewer.open_sample("napari-psfkit", "blurred_pair")
# docked as the Plugins menu docks them; their pickers default to the sample's layers
_, estimate = viewer.window.add_plugin_dock_widget("napari-psfkit", "Estimate kernel")
_, deconvolve = viewer.window.add_plugin_dock_widget("napari-psfkit", "Deconvolve")
deconvolve.image.value = viewer.layers["blurred"]
worker = estimate.run()
if worker is not None:
    wait_for(worker)
shown = ("blurred", "blurred kernel", "blurred residual")
for layer in viewer.layers:
    layer.visible = layer.name in shown
if "blurred kernel" in viewer.layers:
    kernel = viewer.layers["blurred kernel"]
    kernel.scale = (12, 12)  # magnify the small kernel so it reads next to the images
    kernel.colormap = "magma"
if "blurred residual" in viewer.layers:
    show_noise_of(viewer.layers["blurred residual"])
viewer.layers.selection.active = viewer.layers["blurred"]
viewer.grid.enabled = True
viewer.grid.shape = (1, 3)
for _ in range(20):
    napari.qt.get_qapp().processEvents()
viewer.reset_view()
for _ in range(20):
    napari.qt.get_qapp().processEvents()
viewer.screenshot(str(OUTPUT), canvas_only=False, flash=False)
print(f"saved {OUTPUT}")
viewer.close()
