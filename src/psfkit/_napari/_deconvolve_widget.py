"""The "Deconvolve" widget: an image layer and a PSF in, "<image> deconvolved" out, with
the parameters used in its metadata.

The PSF is one explicit choice: a PSF layer (the default when a layer looks like one: a
PSF or kernel this plugin wrote, or a name with "psf" or "kernel" in it) or a model PSF
rendered from one size parameter; the fields of the other choice are greyed out, and the
status line says which PSF was used. A model PSF with fewer dimensions than the image is
refused unless the leading axes are declared frames.

Leading axes beyond the PSF's dimensionality (time, channels) are frames, deconvolved one
by one; the automatic choices are made on the first frame and repeated on the others, so a
time series does not flicker. The progress bar counts iterations over all frames and
Cancel stops between two iterations without touching any layer. Dask-backed (lazy) layers
are read one frame at a time, and a frame too large to deconvolve at once is deconvolved in
blocks: all of this is :func:`psfkit.frames.deconvolve_frames`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, LineEdit, RadioButtons, SpinBox

from psfkit.deconvolution import METHODS
from psfkit.frames import deconvolve_frames
from psfkit.models import make_psf

from ._common import (
    OUTPUT_KEY,
    PsfkitWidget,
    layer_array,
    layer_picker,
    number_field,
    refuse_featureless,
    upsert_layer,
)

if TYPE_CHECKING:
    import napari

#: Readable names of the deconvolution methods (a method not listed shows its own name).
METHOD_LABELS = {"auto": "Automatic", "wiener": "Wiener", "tikhonov": "Tikhonov",
                 "richardson_lucy": "Richardson–Lucy",
                 "rl_tv": "Richardson–Lucy + total variation",
                 "fista_tv": "Total variation (FISTA)",
                 "rl_mix": "Richardson–Lucy, TV-smoothed (rl_mix)",
                 "sure": "Chosen by estimated risk (SURE)"}
METHOD_CHOICES = [(METHOD_LABELS.get(method, method), method) for method in METHODS]
MODEL_CHOICES = ["gaussian", "airy", "disk"]

#: Scale mismatch between the PSF and image layers tolerated before refusing.
SCALE_TOLERANCE = 0.01


def model_psf(model: str, size: float, axial_size: float = 0.0) -> np.ndarray:
    """A model PSF from one size in pixels (Gaussian sigma, Airy first-zero radius, disk
    radius); with ``axial_size`` > 0 a 3D Gaussian with that axial sigma."""
    if not size > 0:
        raise ValueError(f"The model PSF size must be positive, got {size}.")
    if axial_size > 0:
        if model != "gaussian":
            raise ValueError("Only the Gaussian model PSF exists in 3D; set the axial σ to 0 "
                             "or choose 'gaussian'.")
        half = [int(np.ceil(4 * axial_size)), *[int(np.ceil(4 * size))] * 2]
        return make_psf("gaussian", tuple(2 * h + 1 for h in half),
                        sigma=(axial_size, size, size))
    reach = {"gaussian": 4 * size, "airy": 4 * size, "disk": size + 1}[model]
    side = 2 * int(np.ceil(reach)) + 1
    key = "sigma" if model == "gaussian" else "radius"
    return make_psf(model, (side, side), **{key: size})


def _describe_psf(description: dict) -> str:
    """Which PSF a run used, in words: "PSF layer 'psf'" or "model PSF gaussian 2 px"."""
    if "psf_layer" in description:
        return f"PSF layer '{description['psf_layer']}'"
    text = f"model PSF {description['psf_model']} {description['psf_size']:g} px"
    if "psf_axial_sigma" in description:
        text += f", axial σ {description['psf_axial_sigma']:g} px"
    return text


def _regularization_value(text: str):
    text = text.strip().lower()
    if text in ("", "auto"):
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Regularization must be a number or 'auto', got '{text}'.") from None
    if not value >= 0:
        raise ValueError(f"Regularization must be >= 0, got {value}.")
    return value


def _check_image_layer(layer, spatial_ndim: int):
    """The layer's data (lazy or not), checked without loading it all."""
    if layer is None:
        raise ValueError("Choose an image layer.")
    if getattr(layer, "rgb", False):
        raise ValueError(f"The image layer '{layer.name}' is RGB; deconvolve one channel.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    dtype = np.dtype(data.dtype)
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"The image layer '{layer.name}' does not hold real numbers.")
    if data.size == 0:
        raise ValueError(f"The image layer '{layer.name}' is empty.")
    if data.ndim < spatial_ndim:
        raise ValueError(f"The image layer '{layer.name}' is {data.ndim}D but the PSF is "
                         f"{spatial_ndim}D.")
    if isinstance(data, np.ndarray):  # a lazy (dask) layer is not loaded to check it
        if not np.all(np.isfinite(data)):
            raise ValueError(f"The image layer '{layer.name}' contains NaN or infinite "
                             "values.")
        refuse_featureless(data, "image", layer.name)
    return data


def looks_like_psf(layer) -> bool:
    """Whether ``layer`` is a PSF: one this plugin wrote as a PSF or kernel, or one whose
    name says so ("psf", "kernel")."""
    if layer.metadata.get(OUTPUT_KEY) in ("psf", "kernel"):
        return True
    return any(word in layer.name.lower() for word in ("psf", "kernel"))


#: The two sources of the PSF, as (label, value).
PSF_SOURCES = [("PSF from a layer", "layer"), ("model PSF", "model")]


class DeconvolveWidget(PsfkitWidget):
    """Deconvolve an image layer with a PSF layer or a model PSF."""

    description = "Deconvolving"
    summary = "A sharper image from a blurred one and its PSF (measured or a model)."
    docs_page = "deconvolve.md"
    tooltips: ClassVar[dict[str, str]] = {
        "image": "The blurred image; leading axes beyond the PSF's are frames.",
        "psf_source": "Deconvolve with a PSF layer (measured, prepared or fitted) or a "
                      "model PSF made from one size.",
        "psf": "The PSF layer, at the image's pixel size.",
        "model": "The shape of the model PSF.",
        "model_size": "Gaussian σ, or the radius of the Airy first zero or of the disk, "
                      "in pixels.",
        "axial_size": "Axial Gaussian σ in pixels for a 3D PSF; 0 for a 2D PSF.",
        "frames": "Deconvolve each plane of the leading axes on its own (a time series or "
                  "channels), not as one volume.",
        "method": "The algorithm; Automatic chooses the method, weight and stopping.",
        "iterations": "How many iterations an iterative method runs; 0 stops it from the "
                      "noise level.",
        "regularization": "The smoothing weight, or 'auto' to set it from the noise level.",
        "accelerate": "Extrapolate Richardson–Lucy steps (Biggs–Andrews): same result in "
                      "fewer iterations.",
    }

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(viewer, "Image", "image",
                                  prefer=lambda layer: not looks_like_psf(layer))
        self.psf_source = RadioButtons(choices=PSF_SOURCES, value="model", label="PSF",
                                       orientation="horizontal")
        self.psf = layer_picker(viewer, "Image", "PSF layer", prefer=looks_like_psf,
                                avoid=[self.image])
        self.model = ComboBox(value="gaussian", choices=MODEL_CHOICES, label="model")
        self.model_size = number_field(2.0, min=0.1, max=500.0, step=0.1,
                                       label="σ / radius (px)")
        self.axial_size = number_field(0.0, min=0.0, max=500.0, step=0.1,
                                       label="axial σ (px, 0 = 2D)")
        self.frames = CheckBox(value=False, label="leading axes are frames (time, channels)")
        self.method = ComboBox(value="auto", choices=METHOD_CHOICES, label="method")
        self.iterations = SpinBox(value=0, min=0, max=100_000, label="iterations (0 = auto)")
        self.regularization = LineEdit(value="auto", label="regularization")
        self.accelerate = CheckBox(value=True, label="accelerate Richardson–Lucy")
        super().__init__(viewer, [self.image, self.psf_source, self.psf, self.model,
                                  self.model_size, self.axial_size, self.frames, self.method,
                                  self.iterations, self.regularization, self.accelerate],
                         run_text="Deconvolve")
        self._source_chosen = False  # the user picked layer or model: keep it
        self._default_source_value = self.psf_source.value
        self.psf_source.changed.connect(self._on_source_changed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._default_source, position="last")  # after the pickers
        self._default_source()

    # ------------------------------------------------------------------------------------
    def _default_source(self, *_args) -> None:
        """A PSF layer when one exists, else the model, until the user chooses."""
        if not self._source_chosen:
            source = "layer" if self.psf.value is not None and looks_like_psf(
                self.psf.value) else "model"
            self._default_source_value = source
            self.psf_source.value = source
        self._grey_out_unused_fields()

    def _on_source_changed(self, value=None) -> None:
        # any other value than the default just set is the user's choice (napari also
        # re-sets the choices of every widget when layers change)
        if value != self._default_source_value:
            self._source_chosen = True
        self._grey_out_unused_fields()

    def _grey_out_unused_fields(self) -> None:
        from_layer = self.psf_source.value == "layer"
        self.psf.enabled = from_layer
        for field in (self.model, self.model_size, self.axial_size):
            field.enabled = not from_layer

    def _psf(self):
        """The PSF array, a description of it for the metadata, and its layer (or None)."""
        if self.psf_source.value == "layer":
            layer = self.psf.value
            if layer is None:
                raise ValueError("Choose a PSF layer, or choose 'model PSF' under PSF.")
            psf = layer_array(layer, "PSF", allow_constant=True)  # a box blur is constant
            return psf, {"psf_layer": layer.name}, layer
        psf = model_psf(self.model.value, self.model_size.value, self.axial_size.value)
        description = {"psf_model": self.model.value, "psf_size": self.model_size.value}
        if self.axial_size.value > 0:
            description["psf_axial_sigma"] = self.axial_size.value
        return psf, description, None

    def prepare(self):
        psf, psf_description, psf_layer = self._psf()
        layer = self.image.value
        data = _check_image_layer(layer, psf.ndim)
        if psf_layer is None and data.ndim > psf.ndim and not self.frames.value:
            raise ValueError(
                f"The image layer '{layer.name}' is {data.ndim}D but the model PSF is "
                f"{psf.ndim}D: set the axial σ for a 3D PSF, or tick 'leading axes are "
                "frames' to deconvolve each plane on its own.")
        spatial = data.shape[data.ndim - psf.ndim:]
        if any(k > n for k, n in zip(psf.shape, spatial, strict=True)):
            raise ValueError(f"The PSF {psf.shape} is larger than the image {spatial}.")
        if psf_layer is not None:
            image_scale = np.asarray(layer.scale[-psf.ndim:], dtype=float)
            psf_scale = np.asarray(psf_layer.scale[-psf.ndim:], dtype=float)
            if np.any(np.abs(psf_scale - image_scale) > SCALE_TOLERANCE * image_scale):
                raise ValueError(
                    f"The PSF layer's pixel size {psf_scale.tolist()} differs from the "
                    f"image's {image_scale.tolist()}; resample the PSF to the image's grid.")
        options = dict(method=self.method.value,
                       iterations=self.iterations.value or None,
                       regularization=_regularization_value(self.regularization.value))
        if not self.accelerate.value:
            options["acceleration"] = None

        def job(callback):
            run = deconvolve_frames(data, psf, callback=callback, **options)
            return run.result, run.reports, layer, psf_description, options

        return job

    def finish(self, result) -> None:
        image, reports, layer, psf_description, options = result
        used = dict(reports[0])
        metadata = {"source": layer.name, **psf_description, "requested": options, **used}
        if len(reports) > 1:
            metadata["frames"] = list(reports)
        upsert_layer(self.viewer, image, f"{layer.name} deconvolved", "image",
                     role="deconvolved",
                     scale=tuple(layer.scale), translate=tuple(layer.translate),
                     metadata=metadata)
        details = [f"method {used.get('method')}"]
        if used.get("iterations"):
            details.append(f"{used['iterations']} iterations")
        if isinstance(used.get("regularization"), float):
            details.append(f"regularization {used['regularization']:.3g}")
        frames = f" ({len(reports)} frames)" if len(reports) > 1 else ""
        choice = used.get("choice")
        why = f" {choice['summary']}" if choice else ""
        self.status.value = (f"Done with {_describe_psf(psf_description)}: "
                             + ", ".join(details) + frames + "." + why)
