"""The "Prepare PSF" and "Average beads" widgets: measured PSFs from a bead, LED or star
layer, shown as a PSF layer (with FWHM, SNR and bead count in its metadata) and, for beads,
a Points layer of the detected beads coloured by whether they were used."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, SpinBox

from psfkit.beads import average_beads
from psfkit.metadata import REPRODUCE_KEY, Code, python_call, region_of, reproduction, run_metadata
from psfkit.psf import PsfWarning, prepare_psf
from psfkit.psf_map import PsfMap

from ._common import (
    MapGrid,
    PsfkitWidget,
    format_widths,
    is_layer_of,
    layer_array,
    layer_picker,
    layer_units,
    number_field,
    shape_box,
    to_image_pixels,
    units_of,
    upsert_layer,
)
from ._maps import map_summary, show_psf_map
from ._profile_plot import ProfilePlot, curve

if TYPE_CHECKING:
    import napari

#: Colours of the bead points: used, rejected.
ACCEPTED_COLOUR = (0.2, 0.9, 0.3, 1.0)
REJECTED_COLOUR = (1.0, 0.25, 0.2, 1.0)

#: What "known level" stands for among the background choices: the number in the level field.
KNOWN_LEVEL = "known level"

BACKGROUND_CHOICES = [("auto (plane or constant)", "auto"), ("plane", "plane"),
                      ("constant", "constant"), ("known level", KNOWN_LEVEL), ("none", None)]

#: Smallest region, in pixels per axis, that a PSF is prepared from.
MINIMUM_REGION = 3


def _beads_name(image_name: str) -> str:
    """The name of the detected-beads Points layer of an image: "<image> beads", or
    "<image> detected" when the image's name already ends in "beads"."""
    if image_name.lower().endswith("beads"):
        return f"{image_name} detected"
    return f"{image_name} beads"


def _shape_value(size: int, ndim: int):
    """``None`` for 0 (automatic), else an odd size per axis."""
    if size <= 0:
        return None
    if size % 2 == 0:
        raise ValueError(f"The PSF size must be odd, got {size}.")
    return (size,) * ndim


class PreparePsfWidget(PsfkitWidget):
    """Turn a bead, LED or star layer into a clean PSF layer."""

    description = "Preparing PSF"
    summary = "A clean, centred, normalised PSF from an image of one bead, LED or star."
    docs_page = "psf.md"
    tooltips: ClassVar[dict[str, str]] = {
        "image": "The image of a point-like source.",
        "region": "A point on the source, or a shape around it; none: the brightest spot.",
        "size": "The PSF's width in pixels (odd); 0 chooses it from the source.",
        "background": "What is subtracted around the source: a fitted plane (auto: tilted "
                      "only where the data show a slope), a constant, a known level (the "
                      "camera's offset, for a source that fills its crop), or nothing.",
        "level": "The known background level, in the image's units.",
        "hot_pixels": "Replace isolated bright pixels (hot pixels, cosmic rays) first.",
    }

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(viewer, "Image", "bead / LED / star")
        self.region = layer_picker(viewer, ("Points", "Shapes"), "region (points/shapes)",
                                   optional=True, none_label="(whole image)")
        self.size = SpinBox(value=0, min=0, max=1001, step=2, label="PSF size (0 = auto)")
        self.background = ComboBox(value="auto", choices=BACKGROUND_CHOICES,
                                   label="background")
        self.level = number_field(0.0, min=-1e12, max=1e12, label="level")
        self.hot_pixels = CheckBox(value=True, label="remove hot pixels")
        super().__init__(viewer, [self.image, self.region, self.size, self.background,
                                  self.level, self.hot_pixels], run_text="Prepare PSF")
        self.plot = ProfilePlot(self.native.layout())
        self.background.changed.connect(self._grey_out_level)
        self._grey_out_level()

    def _grey_out_level(self, value=None) -> None:
        self.level.enabled = self.background.value == KNOWN_LEVEL

    def prepare(self):
        layer = self.image.value
        data = layer_array(layer, "bead / LED / star")
        shape = _shape_value(self.size.value, data.ndim)
        region = self.region.value
        centre = None
        offset = np.zeros(data.ndim, dtype=int)
        box = ()
        if region is not None:
            if is_layer_of(region, "Points"):
                if len(region.data) == 0:
                    raise ValueError(f"The points layer '{region.name}' has no point.")
                centre = to_image_pixels(region, layer, region.data[:1])[0][-data.ndim:]
            else:
                box = shape_box(region, layer, data.shape, minimum=MINIMUM_REGION)
                data = data[box]
                offset = np.array([b.start for b in box])
        background = self.background.value
        if background == KNOWN_LEVEL:
            background = float(self.level.value)
        hot_pixels = self.hot_pixels.value
        spacing = np.asarray(layer.scale[-data.ndim:], dtype=float)
        call = reproduction(python_call(
            "psfkit.prepare_psf", region_of("image", box), shape, background=background,
            hot_pixels=hot_pixels, centre=centre, spacing=spacing), {"image": layer.name})

        def job(callback):
            callback(1, 2)
            with warnings.catch_warnings():
                # the report lists them and the status line shows them
                warnings.simplefilter("ignore", PsfWarning)
                psf, info = prepare_psf(data, shape, background=background,
                                        hot_pixels=hot_pixels, centre=centre,
                                        spacing=spacing, return_info=True)
            callback(2, 2)
            info.centre = info.centre + offset
            return psf, info, layer, spacing, call, [curve("PSF", psf, spacing)]

        return job

    def finish(self, result) -> None:
        psf, info, layer, spacing, call, curves = result
        messages = info.warnings
        metadata = {"source": layer.name, **run_metadata(info), REPRODUCE_KEY: call}
        upsert_layer(self.viewer, psf, f"{layer.name} PSF", "image", role="psf",
                     scale=tuple(spacing), translate=tuple(layer.translate[-psf.ndim:]),
                     units=units_of(layer, psf.ndim), metadata=metadata, colormap="magma")
        status = (f"PSF {' × '.join(map(str, psf.shape))}, "
                  f"FWHM {format_widths(info.fwhm, spacing, layer_units(layer, psf.ndim))}, "
                  f"SNR {info.snr:.0f}, centre {np.round(info.centre, 2).tolist()}")
        if messages:
            status += " — warning: " + "; ".join(messages)
        self.status.value = status
        self.plot.show(curves, spacing, layer_units(layer, psf.ndim))


class AverageBeadsWidget(PsfkitWidget):
    """Detect the beads of an image layer, average the good ones into a PSF layer, and show
    every detected bead as a point coloured by whether it was used."""

    description = "Averaging beads"
    summary = "One PSF averaged from the many beads of an image, outliers rejected."
    docs_page = "psf.md"
    tooltips: ClassVar[dict[str, str]] = {
        "image": "The image with many sub-resolution beads.",
        "method": "Mean (least noise) or median (ignores odd beads) of the aligned beads.",
        "size": "The PSF's width in pixels (odd); 0 chooses it from the beads.",
        "threshold": "How bright a bead must be, in noise standard deviations.",
        "bead_diameter": "The beads' diameter in the layer's units, to undo their size; "
                         "0 treats them as points.",
    }

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(viewer, "Image", "beads")
        self.method = ComboBox(value="mean", choices=["mean", "median"], label="average")
        self.size = SpinBox(value=0, min=0, max=1001, step=2, label="PSF size (0 = auto)")
        self.threshold = number_field(6.0, min=1.0, max=1000.0, step=0.5,
                                      label="detection threshold (σ)")
        self.bead_diameter = number_field(0.0, min=0.0, max=1e6, step=0.01,
                                          label="bead diameter (0 = ignore)")
        self.grid = MapGrid("regions (rows × cols)")
        self.grid.tooltip = ("Average the beads of each region of a grid instead (a PSF "
                             "that changes across the field); 1 × 1 averages all of them.")
        super().__init__(viewer, [self.image, self.method, self.size, self.threshold,
                                  self.bead_diameter, self.grid], run_text="Average beads")
        self.plot = ProfilePlot(self.native.layout())

    def prepare(self):
        layer = self.image.value
        data = layer_array(layer, "beads")
        shape = _shape_value(self.size.value, data.ndim)
        spacing = np.asarray(layer.scale[-data.ndim:], dtype=float)
        method = self.method.value
        threshold = self.threshold.value
        diameter = self.bead_diameter.value or None
        if self.grid.is_map:
            grid = self.grid.grid
            # "beads", not "image": Deconvolve's recorded call binds "image" to its image
            call = python_call("psfkit.average_beads", Code("beads"), spacing=spacing,
                               shape=shape, method=method, threshold=threshold,
                               bead_diameter=diameter, grid=grid)

            def map_job(callback):
                psf_map = average_beads(data, spacing=spacing, shape=shape, method=method,
                                        threshold=threshold, bead_diameter=diameter,
                                        grid=grid, callback=callback)
                return psf_map, layer, call

            return map_job
        call = python_call("psfkit.average_beads", Code("image"), spacing=spacing,
                           shape=shape, method=method, threshold=threshold,
                           bead_diameter=diameter)

        def job(callback):
            result = average_beads(data, spacing=spacing, shape=shape, method=method,
                                   threshold=threshold, bead_diameter=diameter,
                                   callback=callback)
            return result, layer, spacing, method, call, [curve("averaged PSF", result.psf,
                                                                 spacing)]

        return job

    def _finish_map(self, psf_map: PsfMap, layer, call: str) -> None:
        """The regions' PSFs as a mosaic over the bead layer, with the beads per region."""
        parameters = show_psf_map(self.viewer, psf_map, layer,
                                  mosaic_name=f"{layer.name} PSF map", role="psf",
                                  call=call, inputs={"beads": layer.name},
                                  metadata={"source": layer.name})
        counts = np.asarray(psf_map.diagnostics["beads_used"])
        rows = "; ".join(" ".join(str(int(c)) for c in row)
                         for row in counts.reshape(-1, counts.shape[-1]))
        self.status.value = (f"Beads per region (rows): {rows}. "
                             + map_summary(psf_map, parameters, "PSF map"))

    def finish(self, result) -> None:
        if isinstance(result[0], PsfMap):
            self._finish_map(*result)
            return
        average, layer, spacing, method, call, curves = result
        inputs = {"image": layer.name}
        metadata = {"source": layer.name, **run_metadata(average), "method": method,
                    REPRODUCE_KEY: reproduction(f"{call}.psf", inputs)}
        translate = tuple(layer.translate[-len(spacing):])
        placement = {"scale": tuple(spacing), "translate": translate,
                     "units": units_of(layer, len(spacing))}
        upsert_layer(self.viewer, average.psf, f"{layer.name} averaged PSF", "image",
                     role="psf", metadata=metadata, colormap="magma", **placement)
        beads = average.beads
        positions_metadata = {"source": layer.name, REPRODUCE_KEY: reproduction(
            f"{call}.beads['position']", inputs)}
        accepted = np.asarray(beads["accepted"], dtype=bool)
        colours = np.array([ACCEPTED_COLOUR if a else REJECTED_COLOUR for a in accepted])
        features = {"accepted": accepted, "reason": beads["reason"],
                    "flux": beads["flux"], "snr": beads["snr"]}
        upsert_layer(self.viewer, beads["position"], _beads_name(layer.name), "points",
                     role="beads", **placement, features=features, face_color=colours,
                     border_color=colours, size=6,
                     opacity=0.6, metadata=positions_metadata)
        rejected = len(accepted) - average.beads_used
        units = layer_units(layer, len(spacing))
        widths = format_widths(average.fwhm, spacing, units)
        self.status.value = (f"{average.beads_used} beads averaged, {rejected} rejected; "
                             f"FWHM {widths}, "
                             f"spread {average.spread:.2f}")
        self.plot.show(curves, spacing, units)
