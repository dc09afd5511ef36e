"""The "Estimate kernel" widget: the kernel between a sharp and a blurred Image layer.

It adds (or updates) three layers named after the blurred layer — ``"<blurred> kernel"``,
``"<blurred> residual"`` and ``"<blurred> reblurred"`` — carrying the blurred layer's scale
and the diagnostics of :func:`psfkit.estimate_kernel` in their ``metadata``, and shows the
key numbers (shift, gain, residual/noise) in its status line. An optional Shapes layer
restricts the fit to the bounding box of its first shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, SpinBox

from psfkit.estimate import estimate_kernel

from ._common import PsfkitWidget, layer_array, layer_picker, upsert_layer

if TYPE_CHECKING:
    import napari

METHOD_CHOICES = [("auto", "auto"), ("least squares (valid region)", "lsq"),
                  ("Fourier (fast)", "fourier")]


def _roi_box(shapes_layer, image_layer, spatial_shape) -> tuple[slice, ...]:
    """Bounding box of the first shape, in the image layer's pixel indices."""
    if len(shapes_layer.data) == 0:
        raise ValueError(f"The shapes layer '{shapes_layer.name}' has no shape.")
    corners = np.array([image_layer.world_to_data(shapes_layer.data_to_world(point))
                        for point in shapes_layer.data[0]])
    ndim = len(spatial_shape)
    corners = corners[:, :ndim] if getattr(image_layer, "rgb", False) else corners[:, -ndim:]
    low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, None)
    high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, spatial_shape)
    if ndim == 3 and high[0] - low[0] <= 1:
        low[0], high[0] = 0, spatial_shape[0]  # a 2D shape drawn on one plane of a volume
    if np.any(high - low < 16):
        raise ValueError(f"The shape in '{shapes_layer.name}' is too small: the region must "
                         "span at least 16 pixels along every axis.")
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


class EstimateKernelWidget(PsfkitWidget):
    """Estimate the kernel that turns a sharp layer into a blurred one."""

    description = "Estimating kernel"

    def __init__(self, viewer: napari.viewer.Viewer):
        self.sharp = layer_picker(viewer, "Image", "sharp")
        self.blurred = layer_picker(viewer, "Image", "blurred")
        self.roi = layer_picker(viewer, "Shapes", "region (optional)", optional=True)
        self.size = SpinBox(value=0, min=0, max=255, step=2, label="kernel size (0 = auto)")
        self.method = ComboBox(value="auto", choices=METHOD_CHOICES, label="method")
        super().__init__(viewer, [self.sharp, self.blurred, self.roi, self.size, self.method],
                         run_text="Estimate kernel")

    def prepare(self):
        sharp_layer, blurred_layer = self.sharp.value, self.blurred.value
        sharp = layer_array(sharp_layer, "sharp", allow_rgb=True)
        blurred = layer_array(blurred_layer, "blurred", allow_rgb=True)
        if sharp_layer is blurred_layer:
            raise ValueError("Choose two different layers for the sharp and blurred images.")
        if sharp.shape != blurred.shape:
            raise ValueError(f"The sharp layer is {sharp.shape} but the blurred layer is "
                             f"{blurred.shape}: they must have the same shape.")
        rgb = bool(getattr(blurred_layer, "rgb", False))
        spatial_shape = blurred.shape[:-1] if rgb else blurred.shape
        ndim = len(spatial_shape)
        size = int(self.size.value)
        if size and size % 2 == 0:
            raise ValueError(f"The kernel size must be odd, got {size}.")
        shape = (size,) * ndim if size else None
        box = tuple(slice(0, n) for n in spatial_shape)
        if self.roi.value is not None:
            box = _roi_box(self.roi.value, blurred_layer, spatial_shape)
        region = box + ((slice(None),) if rgb else ())
        if shape is not None and any(k > (b.stop - b.start + 1) // 2
                                     for k, b in zip(shape, box, strict=True)):
            raise ValueError(f"A kernel of size {size} is too large for a region of "
                             f"{tuple(b.stop - b.start for b in box)} pixels: at most half "
                             "of each axis.")
        method = self.method.value
        sharp_region, blurred_region = sharp[region], blurred[region]
        scale = tuple(float(s) for s in blurred_layer.scale[-ndim:])
        name = blurred_layer.name

        def job(callback):
            result = estimate_kernel(sharp_region, blurred_region, shape, method=method,
                                     rgb=rgb, callback=callback)
            return result, name, scale, box, rgb

        return job

    def finish(self, result) -> None:
        estimate, name, scale, box, rgb = result
        metadata = {
            "shift": np.asarray(estimate.shift).tolist(),
            "gain": np.asarray(estimate.gain).tolist(),
            "offset": np.asarray(estimate.offset).tolist(),
            "residual_ratio": np.asarray(estimate.residual_ratio).tolist(),
            "noise_sigma": np.asarray(estimate.noise_sigma).tolist(),
            "kernel_sum": np.asarray(estimate.kernel_sum).tolist(),
            "regularization": np.asarray(estimate.regularization).tolist(),
            "method": estimate.method,
            "shape": list(estimate.shape),
            "iterations": int(estimate.iterations),
            "region": [[b.start, b.stop] for b in box],
        }
        kernel, residual, reblurred = estimate.kernel, estimate.residual, estimate.reblurred
        layer_scale = scale
        if rgb:  # one kernel per channel: show the channels as a stack
            kernel, residual, reblurred = (np.moveaxis(a, -1, 0)
                                           for a in (kernel, residual, reblurred))
            layer_scale = (1.0, *scale)
        translate = tuple([0.0] * (len(layer_scale) - len(scale))
                          + [b.start * s for b, s in zip(box, scale, strict=True)])
        upsert_layer(self.viewer, kernel, f"{name} kernel", "image", scale=layer_scale,
                     metadata=metadata, colormap="magma")
        upsert_layer(self.viewer, residual, f"{name} residual", "image", scale=layer_scale,
                     translate=translate, metadata=metadata, colormap="gray")
        upsert_layer(self.viewer, reblurred, f"{name} reblurred", "image", scale=layer_scale,
                     translate=translate, metadata=metadata, colormap="gray")
        self.status.value = estimate.summary()
