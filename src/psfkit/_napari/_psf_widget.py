"""The "Prepare PSF" and "Average beads" widgets: measured PSFs from a bead, LED or star
layer, shown as a PSF layer (with FWHM, SNR and bead count in its metadata) and, for beads,
a Points layer of the detected beads coloured by whether they were used."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from psfkit.beads import average_beads
from psfkit.psf import PsfWarning, prepare_psf

from ._common import PsfkitWidget, layer_array, layer_picker, upsert_layer

if TYPE_CHECKING:
    import napari

#: Colours of the bead points: used, rejected.
ACCEPTED_COLOUR = (0.2, 0.9, 0.3, 1.0)
REJECTED_COLOUR = (1.0, 0.25, 0.2, 1.0)

BACKGROUND_CHOICES = [("auto (plane)", "auto"), ("constant", "constant"), ("none", None)]


def _region_picker(viewer: napari.viewer.Viewer) -> ComboBox:
    """An optional drop-down of the viewer's Points and Shapes layers."""

    def choices(_widget=None):
        return [("(whole image)", None)] + [
            (layer.name, layer) for layer in viewer.layers
            if type(layer).__name__ in ("Points", "Shapes")]

    picker = ComboBox(label="region (points/shapes)", choices=choices, nullable=True)
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                  viewer.layers.events.reordered):
        event.connect(lambda _e: picker.reset_choices())
    return picker


def _shape_value(size: int, ndim: int):
    """``None`` for 0 (automatic), else an odd size per axis."""
    if size <= 0:
        return None
    if size % 2 == 0:
        raise ValueError(f"The PSF size must be odd, got {size}.")
    return (size,) * ndim


def _to_image_pixels(point_layer, image_layer, points) -> np.ndarray:
    """Positions given in ``point_layer``'s data coordinates, in ``image_layer``'s pixels."""
    return np.array([image_layer.world_to_data(point_layer.data_to_world(p)) for p in points])


def _warnings_text(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, PsfWarning)]


class PreparePsfWidget(PsfkitWidget):
    """Turn a bead, LED or star layer into a clean PSF layer."""

    description = "Preparing PSF"

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(viewer, "Image", "bead / LED / star")
        self.region = _region_picker(viewer)
        self.size = SpinBox(value=0, min=0, max=1001, step=2, label="PSF size (0 = auto)")
        self.background = ComboBox(value="auto", choices=BACKGROUND_CHOICES,
                                   label="background")
        self.hot_pixels = CheckBox(value=True, label="remove hot pixels")
        super().__init__(viewer, [self.image, self.region, self.size, self.background,
                                  self.hot_pixels], run_text="Prepare PSF")

    def prepare(self):
        layer = self.image.value
        data = layer_array(layer, "bead / LED / star")
        shape = _shape_value(self.size.value, data.ndim)
        region = self.region.value
        centre = None
        offset = np.zeros(data.ndim, dtype=int)
        if region is not None:
            kind = type(region).__name__
            if kind == "Points":
                if len(region.data) == 0:
                    raise ValueError(f"The points layer '{region.name}' has no point.")
                centre = _to_image_pixels(region, layer, region.data[:1])[0][-data.ndim:]
            else:
                if len(region.data) == 0:
                    raise ValueError(f"The shapes layer '{region.name}' has no shape.")
                corners = _to_image_pixels(region, layer, region.data[0])[:, -data.ndim:]
                low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, None)
                high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, data.shape)
                if data.ndim == 3 and corners.shape[1] == 3 and high[0] - low[0] <= 1:
                    low[0], high[0] = 0, data.shape[0]  # a 2D shape drawn on one plane
                if np.any(high - low < 3):
                    raise ValueError(f"The shape in '{region.name}' covers less than 3 "
                                     "pixels of the image along some axis.")
                data = data[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
                offset = low
        background = self.background.value
        hot_pixels = self.hot_pixels.value
        spacing = np.asarray(layer.scale[-data.ndim:], dtype=float)

        def job(callback):
            callback(1, 2)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PsfWarning)
                psf, info = prepare_psf(data, shape, background=background,
                                        hot_pixels=hot_pixels, centre=centre,
                                        spacing=spacing, return_info=True)
            callback(2, 2)
            info.centre = info.centre + offset
            return psf, info, _warnings_text(caught), layer, spacing

        return job

    def finish(self, result) -> None:
        psf, info, messages, layer, spacing = result
        metadata = {
            "source": layer.name,
            "fwhm": info.fwhm.tolist(),
            "fwhm_physical": info.fwhm_physical.tolist(),
            "snr": info.snr,
            "beads_used": 1,
            "centre": info.centre.tolist(),
            "background": info.background,
            "noise_sigma": info.noise_sigma,
            "hot_pixels": info.hot_pixels,
            "warnings": messages,
        }
        upsert_layer(self.viewer, psf, f"{layer.name} PSF", "image", scale=tuple(spacing),
                     metadata=metadata, colormap="magma")
        widths = " × ".join(f"{w:.2f}" for w in info.fwhm)
        status = (f"PSF {' × '.join(map(str, psf.shape))}, FWHM {widths} px, "
                  f"SNR {info.snr:.0f}, centre {np.round(info.centre, 2).tolist()}")
        if messages:
            status += " — warning: " + "; ".join(messages)
        self.status.value = status


class AverageBeadsWidget(PsfkitWidget):
    """Detect the beads of an image layer, average the good ones into a PSF layer, and show
    every detected bead as a point coloured by whether it was used."""

    description = "Averaging beads"

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(viewer, "Image", "beads")
        self.method = ComboBox(value="mean", choices=["mean", "median"], label="average")
        self.size = SpinBox(value=0, min=0, max=1001, step=2, label="PSF size (0 = auto)")
        self.threshold = FloatSpinBox(value=6.0, min=1.0, max=1000.0, step=0.5,
                                      label="detection threshold (σ)")
        self.bead_diameter = FloatSpinBox(value=0.0, min=0.0, max=1e6, step=0.01,
                                          label="bead diameter (0 = ignore)")
        super().__init__(viewer, [self.image, self.method, self.size, self.threshold,
                                  self.bead_diameter], run_text="Average beads")

    def prepare(self):
        layer = self.image.value
        data = layer_array(layer, "beads")
        shape = _shape_value(self.size.value, data.ndim)
        spacing = np.asarray(layer.scale[-data.ndim:], dtype=float)
        method = self.method.value
        threshold = self.threshold.value
        diameter = self.bead_diameter.value or None

        def job(callback):
            result = average_beads(data, spacing=spacing, shape=shape, method=method,
                                   threshold=threshold, bead_diameter=diameter,
                                   callback=callback)
            return result, layer, spacing

        return job

    def finish(self, result) -> None:
        average, layer, spacing = result
        metadata = {
            "source": layer.name,
            "fwhm": average.fwhm.tolist(),
            "fwhm_physical": average.fwhm_physical.tolist(),
            "snr": average.snr,
            "beads_used": average.beads_used,
            "beads_detected": len(average.beads["accepted"]),
            "spread": average.spread,
            "method": self.method.value,
        }
        upsert_layer(self.viewer, average.psf, f"{layer.name} averaged PSF", "image",
                     scale=tuple(spacing), metadata=metadata, colormap="magma")
        beads = average.beads
        accepted = np.asarray(beads["accepted"], dtype=bool)
        colours = np.array([ACCEPTED_COLOUR if a else REJECTED_COLOUR for a in accepted])
        features = {"accepted": accepted, "reason": beads["reason"],
                    "flux": beads["flux"], "snr": beads["snr"]}
        upsert_layer(self.viewer, beads["position"], f"{layer.name} beads", "points",
                     scale=tuple(spacing), translate=tuple(layer.translate[-len(spacing):]),
                     features=features, face_color=colours, border_color=colours, size=6,
                     opacity=0.6, metadata={"source": layer.name})
        rejected = len(accepted) - average.beads_used
        self.status.value = (f"{average.beads_used} beads averaged, {rejected} rejected; "
                             f"FWHM {' × '.join(f'{w:.2f}' for w in average.fwhm)} px, "
                             f"spread {average.spread:.2f}")
