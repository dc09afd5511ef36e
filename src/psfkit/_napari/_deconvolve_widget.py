"""The "Deconvolve" widget: an image layer and a PSF in, "<image> deconvolved" out, with
the parameters used in its metadata.

The PSF is one explicit choice: a PSF layer (the default when a layer looks like one: a
PSF or kernel this plugin wrote, or a name with "psf" or "kernel" in it) or a model PSF
rendered from one size parameter; the fields of the other choice are greyed out, and the
status line says which PSF was used. A PSF with fewer dimensions than the image (a 2D PSF
on a volume) is refused unless the leading axes are declared frames, and the status line
then says that each frame was deconvolved on its own. A PSF layer whose pixel size differs
from the image's is resampled to the image's voxels (:func:`psfkit.resample_psf`, on by
default) and the status line says from what to what; with resampling off it is refused.
A map layer (an output of the map mode of Estimate kernel, Fit PSF model or Average beads)
carries its :class:`psfkit.PsfMap` under ``PSF_MAP_KEY``: chosen as the PSF layer, the
image is deconvolved with the map (``deconvolve(image, psf_map)``), which must describe an
image of the image layer's shape, or of one frame's when the leading axes are frames (each
frame is then deconvolved with the same map, as with a single PSF).

Leading axes beyond the PSF's dimensionality (time, channels) are frames, deconvolved one
by one; the automatic choices are made on the first frame and repeated on the others, so a
time series does not flicker. The progress bar counts iterations over all frames and
Cancel stops between two iterations without touching any layer. Dask-backed (lazy) layers
are read one frame at a time, and a frame too large to deconvolve at once is deconvolved in
blocks: all of this is :func:`psfkit.frames.deconvolve_frames`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, LineEdit, RadioButtons, SpinBox

from psfkit._validate import real_number
from psfkit.deconvolution import METHODS
from psfkit.frames import deconvolve_frames, repeating_call
from psfkit.metadata import REPRODUCE_KEY, Code, python_call, reproduction
from psfkit.models import make_psf
from psfkit.provenance import deconvolve_command
from psfkit.psf_map import PsfMap, check_map_fits
from psfkit.units import UndersamplingWarning, resample_psf

from ._common import (
    OUTPUT_KEY,
    PSF_MAP_CALL_KEY,
    PSF_MAP_KEY,
    PsfkitWidget,
    format_lengths,
    layer_array,
    layer_picker,
    layer_units,
    number_field,
    refuse_featureless,
    refuse_masked,
    units_of,
    upsert_layer,
)

if TYPE_CHECKING:
    import napari

#: Readable names of the deconvolution methods (a method not listed shows its own name).
METHOD_LABELS = {"auto": "Automatic", "wiener": "Wiener", "tikhonov": "Tikhonov",
                 "richardson_lucy": "Richardson–Lucy",
                 "rl_tv": "Richardson–Lucy + total variation",
                 "fista_tv": "Total variation (FISTA)",
                 "rl_mix": "Richardson–Lucy, TV-smoothed (rl_mix)"}
METHOD_CHOICES = [(METHOD_LABELS.get(method, method), method) for method in METHODS]
MODEL_CHOICES = ["gaussian", "airy", "disk"]

#: Relative scale mismatch between the PSF and image layers taken as the same pixel size.
SCALE_TOLERANCE = 0.01


#: The largest model PSF size (and axial σ) in pixels, the most the widget's fields allow: a
#: PSF of 8 × 500 + 1 pixels per side is larger than any image worth deconvolving.
MAX_MODEL_SIZE = 500.0


def model_psf_arguments(model: str, size: float,
                        axial_size: float = 0.0) -> tuple[str, tuple, dict]:
    """The :func:`psfkit.make_psf` arguments ``(model, shape, keywords)`` of a model PSF
    from one size in pixels (Gaussian sigma, Airy first-zero radius, disk radius); with
    ``axial_size`` > 0 a 3D Gaussian with that axial sigma."""
    if not isinstance(model, str) or model not in MODEL_CHOICES:
        raise ValueError(f"The model PSF must be one of {MODEL_CHOICES}, got {model!r}.")
    size = real_number(size, "size", positive=True, maximum=MAX_MODEL_SIZE)
    axial_size = real_number(axial_size, "axial_size", minimum=0.0, maximum=MAX_MODEL_SIZE)
    if axial_size > 0:
        if model != "gaussian":
            raise ValueError("Only the Gaussian model PSF exists in 3D; set the axial σ to 0 "
                             "or choose 'gaussian'.")
        half = [int(np.ceil(4 * axial_size)), *[int(np.ceil(4 * size))] * 2]
        return "gaussian", tuple(2 * h + 1 for h in half), {"sigma": (axial_size, size, size)}
    reach = {"gaussian": 4 * size, "airy": 4 * size, "disk": size + 1}[model]
    side = 2 * int(np.ceil(reach)) + 1
    key = "sigma" if model == "gaussian" else "radius"
    return model, (side, side), {key: size}


def model_psf(model: str, size: float, axial_size: float = 0.0) -> np.ndarray:
    """The model PSF of :func:`model_psf_arguments`."""
    name, shape, keywords = model_psf_arguments(model, size, axial_size)
    return make_psf(name, shape, **keywords)


def _reproduction(request: dict, reports, layer, psf_description: dict,
                  resampling: dict | None) -> dict:
    """How to make the deconvolved layer again: the Python call with every automatic choice
    filled in (``image`` the image layer's data, ``psf`` the PSF layer's, resampled to the
    image's voxels when it was, the :func:`psfkit.make_psf` call of the model PSF, or the
    call that made a PSF map, on the layers it read), and,
    for a PSF layer used as it is, the command line on the two layers saved as TIFF files
    named after them (TIFFs saved from layers carry no voxel size for it to resample by)."""
    inputs = {"image": layer.name}
    if "psf_map" in psf_description:  # the call that makes the map, on its layers
        psf_source, command = psf_description["psf_map"]["python"], None
        inputs.update(psf_description["psf_map"]["inputs"])
    elif "psf_layer" in psf_description:
        psf_source, inputs["psf"] = "psf", psf_description["psf_layer"]
        command = deconvolve_command(f"{layer.name}.tif", f"{inputs['psf']}.tif",
                                     f"{layer.name} deconvolved.tif", request=request)
    else:
        model, shape, keywords = model_psf_arguments(
            psf_description["psf_model"], psf_description["psf_size"],
            psf_description.get("psf_axial_sigma", 0.0))
        psf_source, command = python_call("psfkit.make_psf", model, shape, **keywords), None
    if resampling is not None:
        psf_source = python_call("psfkit.resample_psf", Code(psf_source),
                                 tuple(resampling["from_spacing"]),
                                 tuple(resampling["to_spacing"]))
        command = None
    python = repeating_call(request, reports[0], len(reports), psf=psf_source)
    return reproduction(python, inputs, command)


def _describe_psf(description: dict) -> str:
    """Which PSF a run used, in words: "PSF layer 'psf'" or "model PSF gaussian 2 px"."""
    if "psf_map" in description:
        grid = " × ".join(map(str, description["psf_map_grid"]))
        return (f"the {grid} PSF map of layer '{description['psf_layer']}' (a blur that "
                "changes across the image)")
    if "psf_layer" in description:
        return f"PSF layer '{description['psf_layer']}'"
    text = f"model PSF {description['psf_model']} {description['psf_size']:g} px"
    if "psf_axial_sigma" in description:
        text += f", axial σ {description['psf_axial_sigma']:g} px"
    return text


def _describe_resampling(resampled: dict) -> str:
    """How the PSF was resampled, in words: "resampled from 0.1 × 0.05 × 0.05 µm to
    0.3 × 0.1 × 0.1 µm voxels (33 × 65 × 65 → 11 × 33 × 33)", plus any warning."""
    units = resampled["units"]
    text = (f"resampled from {format_lengths(resampled['from_spacing'], units)} to "
            f"{format_lengths(resampled['to_spacing'], units)} voxels ("
            + " × ".join(map(str, resampled["from_shape"])) + " → "
            + " × ".join(map(str, resampled["to_shape"])) + ")")
    if resampled["warning"]:
        text += f" — warning: {resampled['warning']}"
    return text


def _refuse_larger_psf(psf_shape, spatial_shape) -> None:
    """``ValueError`` when the PSF is larger than the image along some axis."""
    if any(k > n for k, n in zip(psf_shape, spatial_shape, strict=True)):
        raise ValueError(f"The PSF {tuple(psf_shape)} is larger than the image "
                         f"{tuple(spatial_shape)}.")


def resampled_psf(psf: np.ndarray, psf_spacing, image_spacing) -> tuple[np.ndarray, str]:
    """The PSF resampled to the image's voxels by :func:`psfkit.resample_psf`, and the
    undersampling warning it gave ("" when none): the warning goes to the status line,
    not to the console."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndersamplingWarning)
        psf = resample_psf(psf, psf_spacing, image_spacing)
    return psf, "; ".join(str(w.message) for w in caught
                          if issubclass(w.category, UndersamplingWarning))


def _regularization_value(text: str):
    text = text.strip().lower()
    if text in ("", "auto"):
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Regularization must be a number or 'auto', got '{text}'.") from None
    return real_number(value, "Regularization", minimum=0.0)


def _check_image_layer(layer, spatial_ndim: int):
    """The layer's data (lazy or not), checked without loading it all."""
    if layer is None:
        raise ValueError("Choose an image layer.")
    if getattr(layer, "rgb", False):
        raise ValueError(f"The image layer '{layer.name}' is RGB; deconvolve one channel.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    refuse_masked(data, "image", layer.name)
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
    name says so ("psf", "kernel"), or one carrying a PSF map."""
    if layer.metadata.get(OUTPUT_KEY) in ("psf", "kernel") or PSF_MAP_KEY in layer.metadata:
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
        "psf": "The PSF layer (measured, prepared or fitted), or a map layer: its PSF map "
               "deconvolves a blur that changes across the image.",
        "resample": "When the PSF layer's pixel size (scale) differs from the image's, "
                    "resample the PSF to the image's voxels, keeping its flux.",
        "model": "The shape of the model PSF.",
        "model_size": "Gaussian σ, or the radius of the Airy first zero or of the disk, "
                      "in pixels.",
        "axial_size": "Axial Gaussian σ in pixels for a 3D PSF; 0 for a 2D PSF.",
        "frames": "Deconvolve each plane of the leading axes on its own (a time series or "
                  "channels), not as one volume.",
        "method": "The algorithm; Automatic chooses the method, weight and stopping per image "
                  "by the least estimated risk (with a PSF map, among Richardson–Lucy "
                  "stopping points and rl_mix).",
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
        self.resample = CheckBox(value=True, label="resample the PSF to the image's pixels")
        self.model = ComboBox(value="gaussian", choices=MODEL_CHOICES, label="model")
        self.model_size = number_field(2.0, min=0.1, max=MAX_MODEL_SIZE, step=0.1,
                                       label="σ / radius (px)")
        self.axial_size = number_field(0.0, min=0.0, max=MAX_MODEL_SIZE, step=0.1,
                                       label="axial σ (px, 0 = 2D)")
        self.frames = CheckBox(value=False, label="leading axes are frames (time, channels)")
        self.method = ComboBox(value="auto", choices=METHOD_CHOICES, label="method")
        self.iterations = SpinBox(value=0, min=0, max=100_000, label="iterations (0 = auto)")
        self.regularization = LineEdit(value="auto", label="regularization")
        self.accelerate = CheckBox(value=True, label="accelerate Richardson–Lucy")
        super().__init__(viewer, [self.image, self.psf_source, self.psf, self.resample,
                                  self.model,
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
        self.psf.enabled = self.resample.enabled = from_layer
        for field in (self.model, self.model_size, self.axial_size):
            field.enabled = not from_layer

    def _psf(self):
        """The PSF array, a description of it for the metadata, and its layer (or None)."""
        if self.psf_source.value == "layer":
            layer = self.psf.value
            if layer is None:
                raise ValueError("Choose a PSF layer, or choose 'model PSF' under PSF.")
            psf_map = layer.metadata.get(PSF_MAP_KEY)
            if isinstance(psf_map, PsfMap):
                return psf_map, {"psf_layer": layer.name,
                                 "psf_map": layer.metadata[PSF_MAP_CALL_KEY],
                                 "psf_map_grid": list(psf_map.grid)}, layer
            psf = layer_array(layer, "PSF", allow_constant=True)  # a box blur is constant
            return psf, {"psf_layer": layer.name}, layer
        psf = model_psf(self.model.value, self.model_size.value, self.axial_size.value)
        description = {"psf_model": self.model.value, "psf_size": self.model_size.value}
        if self.axial_size.value > 0:
            description["psf_axial_sigma"] = self.axial_size.value
        return psf, description, None

    def _resampling(self, psf_layer, image_layer, ndim: int) -> dict | None:
        """What resampling the PSF layer to the image's voxels takes (spacings, units),
        ``None`` when their pixel sizes agree; a ``ValueError`` when they differ and
        resampling is off."""
        image_scale = np.asarray(image_layer.scale[-ndim:], dtype=float)
        psf_scale = np.asarray(psf_layer.scale[-ndim:], dtype=float)
        if np.all(np.abs(psf_scale - image_scale) <= SCALE_TOLERANCE * image_scale):
            return None
        if not self.resample.value:
            raise ValueError(
                f"The PSF layer's pixel size {psf_scale.tolist()} differs from the "
                f"image's {image_scale.tolist()}: tick 'resample the PSF to the image's "
                "pixels', or choose a PSF at the image's pixel size.")
        return {"from_spacing": psf_scale.tolist(), "to_spacing": image_scale.tolist(),
                "units": layer_units(image_layer, ndim)}

    def _options(self) -> dict:
        """The keyword arguments of :func:`psfkit.deconvolve` the fields ask for."""
        options = dict(method=self.method.value,
                       iterations=self.iterations.value or None,
                       regularization=_regularization_value(self.regularization.value))
        if not self.accelerate.value:
            options["acceleration"] = None
        return options

    def _refuse_unticked_frames(self, data, psf, psf_layer) -> None:
        """``ValueError`` when the image has more axes than the PSF (or map) and the
        leading axes are not declared frames."""
        if data.ndim <= psf.ndim or self.frames.value:
            return
        layer = self.image.value
        if isinstance(psf, PsfMap):
            which, fix = (f"PSF map of '{psf_layer.name}'",
                          f"make the map on a {data.ndim}D pair")
        elif psf_layer is None:
            which, fix = "model PSF", "set the axial σ for a 3D PSF"
        else:
            which, fix = f"PSF layer '{psf_layer.name}'", f"choose a {data.ndim}D PSF"
        raise ValueError(
            f"The image layer '{layer.name}' is {data.ndim}D but the {which} is "
            f"{psf.ndim}D: {fix}, or tick 'leading axes are frames' to deconvolve "
            "each plane on its own.")

    def prepare(self):
        psf, psf_description, psf_layer = self._psf()
        layer = self.image.value
        data = _check_image_layer(layer, psf.ndim)
        self._refuse_unticked_frames(data, psf, psf_layer)
        spatial = data.shape[data.ndim - psf.ndim:]
        if isinstance(psf, PsfMap):  # in the image's pixels: every frame is its image
            check_map_fits(psf, spatial, f"The PSF layer '{psf_layer.name}'")
            resampling = None
        else:
            resampling = None if psf_layer is None else self._resampling(psf_layer, layer,
                                                                         psf.ndim)
            if resampling is None:
                _refuse_larger_psf(psf.shape, spatial)
        options = self._options()

        def job(callback):
            kernel = psf
            if resampling is not None:
                kernel, warning = resampled_psf(psf, resampling["from_spacing"],
                                                resampling["to_spacing"])
                resampling.update(from_shape=list(psf.shape), to_shape=list(kernel.shape),
                                  warning=warning)
                _refuse_larger_psf(kernel.shape, spatial)
            run = deconvolve_frames(data, kernel, callback=callback, **options)
            return run, kernel.ndim, layer, psf_description, resampling, options

        return job

    def finish(self, result) -> None:
        run, psf_ndim, layer, psf_description, resampling, options = result
        reports = run.reports
        used = dict(reports[0])
        metadata = {"source": layer.name, **psf_description, "requested": options, **used,
                    REPRODUCE_KEY: _reproduction(options, reports, layer, psf_description,
                                                  resampling)}
        if resampling is not None:
            metadata["psf_resampled"] = resampling
        if len(reports) > 1:
            metadata["frames"] = list(reports)
        upsert_layer(self.viewer, run.result, f"{layer.name} deconvolved", "image",
                     role="deconvolved",
                     scale=tuple(layer.scale), translate=tuple(layer.translate),
                     units=units_of(layer, layer.ndim), metadata=metadata)
        details = [f"method {used.get('method')}"]
        if used.get("iterations"):
            details.append(f"{used['iterations']} iterations")
        if isinstance(used.get("regularization"), float):
            details.append(f"regularization {used['regularization']:.3g}")
        psf = _describe_psf(psf_description)
        if resampling is not None:
            psf += " " + _describe_resampling(resampling)
        status = f"Done with {psf}: " + ", ".join(details)
        if run.result.ndim > psf_ndim:
            kind = "PSF map" if "psf_map" in psf_description else "PSF"
            status += (f"; each of the {len(reports)} frames along the leading axes "
                       f"deconvolved on its own with the {psf_ndim}D {kind}")
        choice = used.get("choice")
        self.status.value = status + "." + (f" {choice['summary']}" if choice else "")
