"""The "Fit PSF model" and "Model PSF" widgets: a parametric kernel fitted between a sharp
and a blurred layer (kernel and residual layers, parameters ± errors in the widget and in
the metadata), and a model PSF rendered from typed-in parameters for deconvolution when no
measurement exists."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, SpinBox

from psfkit.estimate import estimate_kernel
from psfkit.fit import LOSSES, fit_kernel
from psfkit.maps import fit_kernel_map
from psfkit.metadata import REPRODUCE_KEY, Code, plain, python_call, reproduction, run_metadata
from psfkit.models import CENTRE_SAMPLED_MODELS, MODELS, make_psf
from psfkit.psf_map import PsfMap

from ._common import (
    MapGrid,
    PsfkitWidget,
    format_widths,
    layer_pair,
    layer_picker,
    layer_units,
    number_field,
    residual_style,
    sharp_and_blurred_pickers,
    units_of,
    upsert_layer,
    wrapping_label,
)
from ._maps import map_summary, show_psf_map
from ._profile_plot import ProfilePlot, curve

if TYPE_CHECKING:
    import napari


def _format(value, error=None) -> str:
    if np.ndim(value):
        errors = error if error is not None else [None] * len(value)
        return ", ".join(_format(v, e) for v, e in zip(value, errors, strict=True))
    text = f"{value:.4g}"
    return text if error is None else f"{text} ± {error:.2g}"


#: Readable names of the fit's losses.
LOSS_LABELS = {"linear": "Least squares", "soft_l1": "Soft L1 (robust)",
               "huber": "Huber (robust)", "cauchy": "Cauchy (very robust)",
               "arctan": "Arctan (very robust)"}


def _readable(name: str) -> str:
    """A model's name for a menu: ``elliptical_gaussian`` → "elliptical gaussian"."""
    return name.replace("_", " ")


def _estimated_kernel(sharp, blurred, shape, callback):
    """The kernel between ``sharp`` and ``blurred`` estimated without a model
    (:func:`psfkit.estimate_kernel`) on the fitted kernel's ``shape``, which the plot sets
    against the fitted model; ``None`` when the pair allows no estimate of that shape."""
    try:
        return estimate_kernel(sharp, blurred, shape, callback=callback).kernel
    except ValueError:
        return None


class FitModelWidget(PsfkitWidget):
    """Fit a parametric kernel between a sharp and a blurred layer."""

    description = "Fitting PSF model"
    summary = "A parametric PSF (Gaussian, Moffat, Airy, ...) fitted between two layers."
    docs_page = "fit.md"
    tooltips: ClassVar[dict[str, str]] = {
        "model": "The PSF model to fit; Automatic fits all and keeps the best.",
        "size": "The kernel's width in pixels (odd); 0 chooses it from the fit.",
        "loss": "Least squares for Gaussian noise; a robust loss ignores hot pixels and "
                "outliers.",
        "integrated": "Off: the Gaussian and Moffat are sampled at pixel centres, so sigma is "
                      "the sigma of scipy's, scikit-image's or Fiji's Gaussian filter. On: "
                      "they are integrated over each pixel (a camera's pixel response).",
        "results": "The fitted parameters ± their standard errors, in pixels.",
    }

    def __init__(self, viewer: napari.viewer.Viewer):
        self.sharp, self.blurred = sharp_and_blurred_pickers(viewer)
        self.model = ComboBox(value="gaussian", label="model", choices=[
            ("Automatic (best model)", "auto"), *((_readable(m), m) for m in MODELS)])
        self.size = SpinBox(value=0, min=0, max=1001, step=2, label="kernel size (0 = auto)")
        self.loss = ComboBox(value="linear", label="loss",
                             choices=[(LOSS_LABELS.get(loss, loss), loss) for loss in LOSSES])
        self.integrated = CheckBox(value=False, label="pixel-integrated model")
        self.grid = MapGrid()
        self.results = wrapping_label()
        super().__init__(viewer, [self.sharp, self.blurred, self.model, self.size, self.loss,
                                  self.integrated, self.grid], run_text="Fit")
        self.append(self.results)
        self.plot = ProfilePlot(self.native.layout())
        self.fit = None

    def prepare(self):
        sharp_layer, blurred_layer = self.sharp.value, self.blurred.value
        sharp, blurred = layer_pair(sharp_layer, blurred_layer)
        model = self.model.value
        size = self.size.value
        # the core refuses an even size, a 2D-only model on a volume, a kernel too large
        shape = (size,) * blurred.ndim if size else None
        spacing = tuple(float(s) for s in blurred_layer.scale[-blurred.ndim:])
        loss = self.loss.value
        # only where it changes the model, so the recorded call stays the plain one
        integrated = ({"pixel_integrated": True} if self.integrated.value
                      and model in ("auto", *CENTRE_SAMPLED_MODELS) else {})
        inputs = {"sharp": sharp_layer.name, "blurred": blurred_layer.name}
        if self.grid.is_map:
            grid = self.grid.grid
            call = python_call("psfkit.fit_kernel_map", Code("sharp"), Code("blurred"), model,
                               grid, shape=shape, spacing=spacing, loss=loss, **integrated)

            def map_job(callback):
                psf_map = fit_kernel_map(sharp, blurred, model, grid, shape=shape,
                                         spacing=spacing, loss=loss, callback=callback,
                                         **integrated)
                return psf_map, blurred_layer, (call, inputs)

            return map_job
        call = python_call("psfkit.fit_kernel", Code("sharp"), Code("blurred"), model,
                           shape=shape, spacing=spacing, loss=loss, **integrated)

        def job(callback):
            fit = fit_kernel(sharp, blurred, model, shape=shape, spacing=spacing, loss=loss,
                             callback=callback, **integrated)
            curves = [curve(f"fitted {fit.model}", fit.kernel, spacing)]
            estimated = _estimated_kernel(sharp, blurred, fit.kernel.shape, callback)
            if estimated is not None:
                curves.insert(0, curve("estimated kernel", estimated, spacing))
            return fit, blurred_layer, spacing, (call, inputs), curves

        return job

    def finish(self, result) -> None:
        if isinstance(result[0], PsfMap):
            self._finish_map(*result)
            return
        fit, layer, spacing, (call, inputs), curves = result
        self.fit = fit
        metadata = {"source": layer.name, **run_metadata(fit), "spacing": plain(spacing)}

        def reproducing(attribute: str) -> dict:
            return {**metadata, REPRODUCE_KEY: reproduction(f"{call}.{attribute}", inputs)}

        placement = {"scale": spacing, "translate": tuple(layer.translate[-len(spacing):]),
                     "units": units_of(layer, len(spacing))}
        # the residual hidden and the kernel added last, so the kernel is what shows
        upsert_layer(self.viewer, fit.residual, f"{layer.name} fit residual", "image",
                     role="residual", metadata=reproducing("residual"), **placement,
                     **residual_style(fit.residual))
        upsert_layer(self.viewer, fit.kernel, f"{layer.name} fitted kernel", "image",
                     role="kernel", metadata=reproducing("kernel"), colormap="magma",
                     **placement)
        lines = [f"{fit.model}:"]
        for name, value in fit.params.items():
            lines.append(f"  {name} = {_format(value, fit.errors.get(name))}"
                         + (" rad" if name == "angle" else " px"))
        units = layer_units(layer, len(spacing))
        lines.append(f"  FWHM = {format_widths(fit.fwhm, spacing, units)}, "
                     f"ellipticity {fit.ellipticity:.3f}")
        lines.append(f"  shift = {_format(fit.shift, fit.errors['shift'])} px")
        lines.append(f"  gain = {_format(fit.gain, fit.errors['gain'])}, "
                     f"offset = {_format(fit.offset, fit.errors['offset'])}")
        lines.append(f"  reduced chi² = {fit.reduced_chi2:.3g}")
        if fit.ranking:
            lines.append("  ranking: " + ", ".join(name for name, *_ in fit.ranking))
        if fit.message != "converged":
            lines.append(f"  note: {fit.message}")
        self.results.value = "\n".join(lines)
        self.status.value = (f"{fit.model}: " + ", ".join(
            f"{k} {_format(v)}" for k, v in fit.params.items())
            + f"; reduced chi² {fit.reduced_chi2:.3g}")
        self.plot.show(curves, spacing, units)

    def _finish_map(self, psf_map: PsfMap, layer, call_and_inputs) -> None:
        """The fitted map as a kernel mosaic and parameter maps over the blurred layer."""
        call, inputs = call_and_inputs
        parameters = show_psf_map(self.viewer, psf_map, layer,
                                  mosaic_name=f"{layer.name} fitted kernel map",
                                  role="kernel", call=call, inputs=inputs,
                                  metadata={"source": layer.name})
        self.status.value = map_summary(psf_map, parameters, f"{psf_map.model} map")
        self.results.value = ""


#: The parameters of each model in the "Model PSF" widget (angles typed in degrees).
MODEL_PARAMETERS = {
    "gaussian": ("sigma",),
    "gaussian (3D)": ("sigma_z", "sigma"),
    "elliptical_gaussian": ("sigma_y", "sigma_x", "angle"),
    "moffat": ("alpha", "beta"),
    "airy": ("radius",),
    "widefield_airy": ("numerical_aperture", "wavelength", "pixel_size"),
    "disk": ("radius",),
    "ring": ("diameter", "width"),
    "motion": ("length", "angle"),
    "widefield": ("numerical_aperture", "wavelength", "immersion_index", "sample_index",
                  "source_depth", "z_step", "pixel_size"),
    "confocal": ("numerical_aperture", "wavelength", "excitation_wavelength",
                 "immersion_index", "sample_index", "source_depth", "z_step", "pixel_size"),
}

#: The microscope models, rendered in 3D from the optics (:mod:`psfkit.optics`) on a grid
#: in micrometres.
OPTICAL_MODELS = ("widefield", "confocal")

#: A Model PSF parameter that may be 0 (every other one must be positive).
_MAY_BE_ZERO = ("angle", "source_depth")

_DEFAULTS = {"sigma": 2.0, "sigma_z": 4.0, "sigma_y": 1.5, "sigma_x": 3.0, "angle": 0.0,
             "alpha": 3.0, "beta": 2.5, "radius": 4.0, "numerical_aperture": 1.4,
             "wavelength": 0.52, "pixel_size": 0.065, "diameter": 12.0, "width": 1.0,
             "length": 9.0, "excitation_wavelength": 0.488, "immersion_index": 1.515,
             "sample_index": 1.515, "source_depth": 0.0, "z_step": 0.2}

#: Each parameter's label with its unit; a parameter not listed is a length in pixels.
_LABELS = {"angle": "angle (degrees)", "wavelength": "wavelength (µm)",
           "pixel_size": "pixel size (µm)", "sigma_z": "sigma z (px)",
           "numerical_aperture": "numerical aperture", "beta": "beta (exponent)",
           "excitation_wavelength": "excitation wavelength (µm)",
           "immersion_index": "immersion refractive index",
           "sample_index": "sample refractive index",
           "source_depth": "depth below coverslip (µm)", "z_step": "z step (µm)"}


_PARAMETER_TOOLTIPS = {
    "sigma": "Gaussian standard deviation in pixels (FWHM = 2.355 σ).",
    "sigma_z": "Axial Gaussian standard deviation in planes.",
    "sigma_y": "Standard deviation along the first axis, before rotation, in pixels.",
    "sigma_x": "Standard deviation along the second axis, before rotation, in pixels.",
    "angle": "Rotation, counter-clockwise, in degrees.",
    "alpha": "Moffat core width in pixels.",
    "beta": "Moffat exponent: large is Gaussian-like, small has broad wings.",
    "radius": "Radius in pixels (for Airy, of the first dark ring).",
    "numerical_aperture": "The objective's numerical aperture (NA).",
    "wavelength": "Emission wavelength in micrometres.",
    "pixel_size": "Pixel size in the sample, in micrometres; the layer gets this scale.",
    "diameter": "Ring diameter in pixels.",
    "width": "Ring width in pixels.",
    "length": "Motion length in pixels.",
    "excitation_wavelength": "Excitation wavelength in micrometres (confocal).",
    "immersion_index": "Refractive index of the immersion medium the objective is made "
                       "for: 1.515 oil, 1.33 water, 1.0 air.",
    "sample_index": "Refractive index of the sample (1.33 for water, 1.38–1.45 for "
                    "cells); a mismatch with the immersion adds spherical aberration.",
    "source_depth": "How deep below the coverslip the sample sits, in micrometres; it "
                    "matters only when the sample and immersion indices differ.",
    "z_step": "Distance between planes in micrometres; the layer gets this scale.",
}


def _in_micrometres(scale, layer) -> tuple[tuple[float, ...], str]:
    """``layer``'s voxel ``scale`` in micrometres, the unit of the microscope models'
    wavelengths, and a note for the status line when the unit had to be assumed (napari
    holds the layer in pixels, its default)."""
    units = tuple(getattr(layer, "units", None) or ())[-len(scale):]
    if not units or all(str(unit) == "pixel" for unit in units):
        return tuple(scale), (f"the scale of '{layer.name}' is taken to be in µm (the layer "
                              "has no length unit)")
    try:
        factors = [float((1.0 * unit).to("micrometer").magnitude) for unit in units]
    except Exception:  # pint's DimensionalityError: a time or pixel axis
        raise ValueError(f"The layer '{layer.name}' has axes in "
                         f"{', '.join(map(str, units))}: a microscope PSF needs a layer "
                         "whose axes are lengths (z, y, x).") from None
    return tuple(s * f for s, f in zip(scale, factors, strict=True)), ""


def _grid_spacing(layer, ndim: int) -> tuple[float, ...]:
    """The pixel size of ``layer``'s last ``ndim`` axes, 1 per axis without a layer."""
    if layer is None:
        return (1.0,) * ndim
    if layer.ndim < ndim:
        raise ValueError(f"The layer '{layer.name}' is {layer.ndim}D; a {ndim}D PSF needs "
                         f"a {ndim}D layer for its pixel size, or '(1 per pixel)'.")
    return tuple(float(s) for s in layer.scale[-ndim:])


class ModelPsfWidget(PsfkitWidget):
    """Render a model PSF layer from typed-in parameters."""

    description = "Rendering model PSF"
    summary = "A model PSF layer from typed-in parameters, when no measurement exists."
    docs_page = "psf.md"
    tooltips: ClassVar[dict[str, str]] = {
        "model": "The PSF model to render.",
        "size": "The PSF's width and height in pixels (odd).",
        "depth": "The PSF's depth in planes (odd), for the 3D Gaussian.",
        "integrated": "Off: the Gaussian and Moffat are sampled at pixel centres, as scipy's "
                      "and Fiji's Gaussian filters are. On: integrated over each pixel.",
        "theory": "The light model of the widefield and confocal PSFs: vectorial "
                  "(polarisation, Fresnel transmission and apodisation; right at any NA) or "
                  "scalar (the classic Gibson–Lanni model, narrower at high NA).",
        "grid": "An image layer whose pixel size the PSF takes (sizes stay in its pixels; "
                "the pixel size field follows it), so Deconvolve accepts the PSF for it. "
                "The widefield and confocal models are rendered on its voxels in µm.",
    }

    def __init__(self, viewer: napari.viewer.Viewer):
        self.model = ComboBox(value="gaussian", label="model",
                              choices=[(_readable(m), m) for m in MODEL_PARAMETERS])
        self.size = SpinBox(value=25, min=1, max=1001, step=2, label="size (px)")
        self.depth = SpinBox(value=25, min=1, max=1001, step=2, label="depth (3D, px)")
        self.grid = layer_picker(viewer, "Image", "pixel size of", optional=True,
                                 none_label="(1 per pixel)")
        self.parameters = {
            name: number_field(value, min=-360.0 if name == "angle" else 0.0,
                               max=1e6, step=0.1, label=_LABELS.get(name, f"{name} (px)"))
            for name, value in _DEFAULTS.items()}
        for name, widget in self.parameters.items():
            widget.tooltip = _PARAMETER_TOOLTIPS[name]
        self.integrated = CheckBox(value=False, label="pixel-integrated model")
        self.theory = ComboBox(value="vectorial", label="light model",
                               choices=[("vectorial", "vectorial"), ("scalar", "scalar")])
        super().__init__(viewer, [self.model, self.size, self.depth, self.grid,
                                  *self.parameters.values(), self.theory, self.integrated],
                         run_text="Make PSF")
        self.grid.changed.connect(self._show_parameters)
        self.model.changed.connect(self._show_parameters)
        self._show_parameters()

    def _show_parameters(self, *_args) -> None:
        used = MODEL_PARAMETERS[self.model.value]
        for name, widget in self.parameters.items():
            widget.visible = name in used
        self.depth.visible = self.model.value in ("gaussian (3D)", *OPTICAL_MODELS)
        self.theory.visible = self.model.value in OPTICAL_MODELS
        self.integrated.visible = self._model_name() in CENTRE_SAMPLED_MODELS
        for name in ("pixel_size", "z_step"):
            self.parameters[name].enabled = self.grid.value is None

    def _model_name(self) -> str:
        """The :func:`psfkit.make_psf` model of the menu's choice."""
        return "gaussian" if self.model.value == "gaussian (3D)" else self.model.value

    def _optical(self, model: str, values: dict):
        """The shape, parameters and layer scale of a microscope model: its voxels are
        the grid layer's (in micrometres), or the typed-in z step and pixel size; and a
        note on an assumed unit."""
        shape = (self.depth.value, self.size.value, self.size.value)
        typed = (values.pop("z_step"), values["pixel_size"], values.pop("pixel_size"))
        note = ""
        if self.grid.value is None:
            scale = spacing = typed
        else:
            scale = _grid_spacing(self.grid.value, 3)
            spacing, note = _in_micrometres(scale, self.grid.value)
        depth = values.pop("source_depth")
        params = {**values, "depth": depth, "spacing": spacing, "theory": self.theory.value}
        return model, shape, params, scale, note

    def prepare(self):
        choice = self.model.value
        names = MODEL_PARAMETERS[choice]
        values = {name: float(self.parameters[name].value) for name in names}
        for size in (self.size.value, self.depth.value):
            if size % 2 == 0:
                raise ValueError(f"The PSF size must be odd, got {size}.")
        for name, value in values.items():
            if not (value >= 0 if name in _MAY_BE_ZERO else value > 0):
                raise ValueError(f"{_LABELS.get(name, name)} must be positive.")
        if choice in OPTICAL_MODELS:
            return self._job(*self._optical(choice, values))
        if "angle" in values:
            values["angle"] = math.radians(values["angle"])
        model, shape = choice, (self.size.value,) * 2
        if choice == "gaussian (3D)":
            model = "gaussian"
            shape = (self.depth.value, self.size.value, self.size.value)
            values = {"sigma": (values.pop("sigma_z"), values["sigma"], values["sigma"])}
        scale = _grid_spacing(self.grid.value, len(shape))
        if choice == "widefield_airy":
            if self.grid.value is None:
                scale = (values["pixel_size"],) * 2
            elif scale[0] != scale[1]:
                raise ValueError(f"The layer '{self.grid.value.name}' has non-square pixels "
                                 f"{list(scale)}; widefield_airy needs square ones.")
            else:
                values["pixel_size"] = scale[-1]
        if self.integrated.value and model in CENTRE_SAMPLED_MODELS:
            values["pixel_integrated"] = True
        return self._job(model, shape, values, scale, "")

    def _job(self, model: str, shape, values: dict, scale, note: str):
        """The job rendering ``model`` on ``shape`` for a layer of ``scale`` (in the grid
        layer's units when there is one)."""
        grid = self.grid.value
        units = None if grid is None else units_of(grid, len(shape))

        call = reproduction(python_call("psfkit.make_psf", model, shape, **values), {})

        def job(callback):
            psf = make_psf(model, shape, **values)
            callback(1, 1)
            return psf, model, values, scale, units, note, call

        return job

    def finish(self, result) -> None:
        psf, model, values, scale, units, note, call = result
        metadata = plain({"model": model, "params": values, "spacing": scale,
                          REPRODUCE_KEY: call})
        upsert_layer(self.viewer, psf, f"{model} PSF", "image", role="psf", scale=scale,
                     units=units, metadata=metadata, colormap="magma")
        status = f"{model} PSF {' × '.join(map(str, psf.shape))}"
        if psf.ndim == 3 and model in OPTICAL_MODELS:
            status += f" ({values['theory']})"
            status += f", voxels {' × '.join(f'{s:.3g}' for s in values['spacing'])} µm"
        self.status.value = status + (f"; {note}" if note else "")
