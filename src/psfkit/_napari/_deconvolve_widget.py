"""The "Deconvolve" widget: an image layer and a PSF (a layer, or a model PSF rendered from
one size parameter) in, "<image> deconvolved" out, with the parameters used in its metadata.

Leading axes beyond the PSF's dimensionality (time, channels) are frames, deconvolved one
by one; the automatic choices are made on the first frame and repeated on the others, so a
time series does not flicker. The progress bar counts iterations over all frames and
Cancel stops between two iterations without touching any layer. Dask-backed (lazy) layers
are read one frame at a time, and a frame too large to deconvolve at once is deconvolved in
blocks: all of this is :func:`psfkit.frames.deconvolve_frames`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

from psfkit.deconvolution import METHODS
from psfkit.frames import deconvolve_frames
from psfkit.models import make_psf

from ._common import (
    PsfkitWidget,
    layer_array,
    layer_picker,
    refuse_featureless,
    upsert_layer,
)

if TYPE_CHECKING:
    import napari

METHOD_CHOICES = list(METHODS)
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


class DeconvolveWidget(PsfkitWidget):
    """Deconvolve an image layer with a PSF layer or a model PSF."""

    description = "Deconvolving"

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(viewer, "Image", "image")
        self.psf = layer_picker(viewer, "Image", "PSF layer", optional=True)
        self.model = ComboBox(value="gaussian", choices=MODEL_CHOICES,
                              label="or model PSF")
        self.model_size = FloatSpinBox(value=2.0, min=0.1, max=500.0, step=0.1,
                                       label="σ / radius (px)")
        self.axial_size = FloatSpinBox(value=0.0, min=0.0, max=500.0, step=0.1,
                                       label="axial σ (px, 0 = 2D)")
        self.method = ComboBox(value="auto", choices=METHOD_CHOICES, label="method")
        self.iterations = SpinBox(value=0, min=0, max=100_000, label="iterations (0 = auto)")
        self.regularization = LineEdit(value="auto", label="regularization")
        self.accelerate = CheckBox(value=True, label="accelerate Richardson–Lucy")
        super().__init__(viewer, [self.image, self.psf, self.model, self.model_size,
                                  self.axial_size, self.method, self.iterations,
                                  self.regularization, self.accelerate],
                         run_text="Deconvolve")

    # ------------------------------------------------------------------------------------
    def _psf(self):
        """The PSF array, a description of it for the metadata, and its layer (or None)."""
        layer = self.psf.value
        if layer is not None:
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
        self.status.value = "Done: " + ", ".join(details) + frames
