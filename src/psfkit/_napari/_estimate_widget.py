"""The "Estimate kernel" widget: the kernel between a sharp and a blurred Image layer.

It adds (or updates in place) three layers named after the blurred layer —
``"<blurred> residual"`` and ``"<blurred> reblurred"``, added hidden, and on top of them
``"<blurred> kernel"`` — each placed where its data came from (the blurred layer's scale
and translate plus the offset of the region) and carrying the diagnostics of
:func:`psfkit.estimate_kernel` in its ``metadata``, and shows the key numbers (shift,
gain, residual/noise) in its status line. An optional Shapes layer restricts the fit to
the bounding box of its first shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from magicgui.widgets import ComboBox, SpinBox

from psfkit.estimate import estimate_kernel
from psfkit.maps import estimate_kernel_map
from psfkit.metadata import (
    REPRODUCE_KEY,
    Code,
    python_call,
    region_of,
    reproduction,
    run_metadata,
)
from psfkit.psf_map import PsfMap

from ._common import (
    MapGrid,
    PsfkitWidget,
    layer_pair,
    layer_picker,
    residual_style,
    shape_box,
    sharp_and_blurred_pickers,
    units_of,
    upsert_layer,
)
from ._maps import map_summary, show_psf_map

if TYPE_CHECKING:
    import napari

METHOD_CHOICES = [("Automatic", "auto"), ("Least squares (valid region)", "lsq"),
                  ("Fourier (fast)", "fourier")]


#: Smallest region, in pixels per axis, that the kernel estimate is made on.
MINIMUM_REGION = 16


class EstimateKernelWidget(PsfkitWidget):
    """Estimate the kernel that turns a sharp layer into a blurred one."""

    description = "Estimating kernel"
    summary = "The blur kernel that turns the sharp layer into the blurred one."
    docs_page = "estimate.md"
    tooltips: ClassVar[dict[str, str]] = {
        "roi": "A Shapes layer: the kernel is estimated inside the box of its first shape.",
        "size": "The kernel's width in pixels (odd); 0 chooses it from the data.",
        "method": "How the kernel is solved for; Automatic picks one for the data.",
    }

    def __init__(self, viewer: napari.viewer.Viewer):
        self.sharp, self.blurred = sharp_and_blurred_pickers(viewer)
        self.roi = layer_picker(viewer, "Shapes", "region (optional)", optional=True)
        self.size = SpinBox(value=0, min=0, max=255, step=2, label="kernel size (0 = auto)")
        self.method = ComboBox(value="auto", choices=METHOD_CHOICES, label="method")
        self.grid = MapGrid()
        super().__init__(viewer, [self.sharp, self.blurred, self.roi, self.size, self.method,
                                  self.grid], run_text="Estimate kernel")

    def _map_job(self, sharp_layer, blurred_layer):
        """The job of the map mode: a kernel per tile of the grid over the whole pair."""
        if self.roi.value is not None:
            raise ValueError("A kernel map covers the whole image: set the region to "
                             "'(none)', or the map grid to 1 × 1 for one kernel in the "
                             "region.")
        sharp, blurred = layer_pair(sharp_layer, blurred_layer)
        size, grid, method = int(self.size.value), self.grid.grid, self.method.value
        shape = (size,) * blurred.ndim if size else None
        call = python_call("psfkit.estimate_kernel_map", Code("sharp"), Code("blurred"),
                           grid, shape, method=method)
        inputs = {"sharp": sharp_layer.name, "blurred": blurred_layer.name}

        def job(callback):
            psf_map = estimate_kernel_map(sharp, blurred, grid, shape, method=method,
                                          callback=callback)
            return psf_map, blurred_layer, call, inputs

        return job

    def prepare(self):
        sharp_layer, blurred_layer = self.sharp.value, self.blurred.value
        if self.grid.is_map:
            return self._map_job(sharp_layer, blurred_layer)
        sharp, blurred = layer_pair(sharp_layer, blurred_layer, allow_rgb=True)
        rgb = bool(getattr(blurred_layer, "rgb", False))
        spatial_shape = blurred.shape[:-1] if rgb else blurred.shape
        ndim = len(spatial_shape)
        size = int(self.size.value)
        shape = (size,) * ndim if size else None  # the core checks it against the region
        box = tuple(slice(0, n) for n in spatial_shape)
        if self.roi.value is not None:
            box = shape_box(self.roi.value, blurred_layer, spatial_shape,
                            minimum=MINIMUM_REGION)
        region = box + ((slice(None),) if rgb else ())
        method = self.method.value
        sharp_region, blurred_region = sharp[region], blurred[region]
        scale = tuple(float(s) for s in blurred_layer.scale[-ndim:])
        # the region's corner in world coordinates: the layer's placement plus the offset
        origin = tuple(float(t) + b.start * s for t, b, s in
                       zip(blurred_layer.translate[-ndim:], box, scale, strict=True))
        name = blurred_layer.name
        cut = box if self.roi.value is not None else ()
        call = python_call("psfkit.estimate_kernel", region_of("sharp", cut),
                           region_of("blurred", cut), shape, method=method, rgb=rgb)
        inputs = {"sharp": sharp_layer.name, "blurred": name}
        units = units_of(blurred_layer, ndim)

        def job(callback):
            result = estimate_kernel(sharp_region, blurred_region, shape, method=method,
                                     rgb=rgb, callback=callback)
            return result, name, scale, origin, units, box, rgb, (call, inputs)

        return job

    def finish(self, result) -> None:
        if isinstance(result[0], PsfMap):
            psf_map, layer, call, inputs = result
            parameters = show_psf_map(self.viewer, psf_map, layer,
                                      mosaic_name=f"{layer.name} kernel map", role="kernel",
                                      call=call, inputs=inputs,
                                      metadata={"source": layer.name})
            self.status.value = map_summary(psf_map, parameters, "Kernel map")
            return
        estimate, name, scale, origin, units, box, rgb, (call, inputs) = result
        metadata = {**run_metadata(estimate), "region": [[b.start, b.stop] for b in box]}
        # each layer's call ends with the attribute it shows (channels first for RGB)
        channels_first = (f".transpose({len(box)}, {', '.join(map(str, range(len(box))))})"
                          if rgb else "")

        def reproducing(attribute: str) -> dict:
            python = f"{call}.{attribute}{channels_first}"
            return {**metadata, REPRODUCE_KEY: reproduction(python, inputs)}

        kernel, residual, reblurred = estimate.kernel, estimate.residual, estimate.reblurred
        placement = {"scale": scale, "translate": origin, "units": units}
        if rgb:  # one kernel per channel: show the channels as a stack
            kernel, residual, reblurred = (np.moveaxis(a, -1, 0)
                                           for a in (kernel, residual, reblurred))
            placement = {"scale": (1.0, *scale), "translate": (0.0, *origin),
                         "units": ("pixel", *units)}
        # the diagnostics hidden and the kernel added last, so the kernel is what shows
        upsert_layer(self.viewer, residual, f"{name} residual", "image", role="residual",
                     metadata=reproducing("residual"), **placement, **residual_style(residual))
        upsert_layer(self.viewer, reblurred, f"{name} reblurred", "image", role="reblurred",
                     metadata=reproducing("reblurred"), colormap="gray", visible=False,
                     **placement)
        upsert_layer(self.viewer, kernel, f"{name} kernel", "image", role="kernel",
                     metadata=reproducing("kernel"), colormap="magma", **placement)
        self.status.value = estimate.summary()
