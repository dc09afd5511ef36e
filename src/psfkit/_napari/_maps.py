"""Blur maps in napari: a :class:`psfkit.PsfMap` made by Estimate kernel, Fit PSF model or
Average beads in their map mode, shown as layers over the image it describes.

:func:`show_psf_map` adds (or updates in place) the **kernel mosaic**, each tile's PSF
drawn at its tile centre in the image's pixels (:meth:`psfkit.PsfMap.mosaic`), placed at
the image's scale and translate so it overlays the image, and one **parameter map** per
parameter (a fitted model's smoothed parameters, or the measured PSFs' FWHM per axis;
:meth:`psfkit.PsfMap.parameter_maps`), each with its colorbar shown. Every map output
carries the map in its ``metadata`` under :data:`PSF_MAP_KEY`, so Deconvolve deconvolves
with it, and the per-tile diagnostics with the unreliable tiles listed. :func:`map_summary`
says the map's range and its unreliable tiles in a sentence for the status line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from psfkit.metadata import REPRODUCE_KEY, plain, reproduction

from ._common import PSF_MAP_CALL_KEY, PSF_MAP_KEY, units_of, upsert_layer

if TYPE_CHECKING:
    import napari

    from psfkit.psf_map import ParameterMaps, PsfMap

#: The colormap of the parameter maps: perceptually uniform, so equal steps of a parameter
#: look equally far apart.
PARAMETER_COLORMAP = "viridis"


def _unit(parameter: str) -> str:
    """The unit a parameter map is in: radians for an angle, none for a ratio, else
    pixels."""
    if parameter.startswith("angle"):
        return " rad"
    if parameter in ("ellipticity", "beta"):
        return ""
    return " px"


def _where(index, shape) -> str:
    """Where a sample of a map lies in the image, in words ("top left", "centre")."""
    words = []
    for i, n, names in zip(index[-2:], shape[-2:], (("top", "middle", "bottom"),
                                                     ("left", "centre", "right")),
                           strict=True):
        if n > 1:
            words.append(names[min(int(3 * i / n), 2)])
    words = [w for w in words if w not in ("middle", "centre")] or ["centre"]
    return " ".join(words)


def unreliable_tiles(psf_map: PsfMap) -> list[list[int]]:
    """The grid indices of the map's unreliable tiles."""
    reliable = np.asarray(psf_map.diagnostics.get("reliable", np.ones(psf_map.grid, bool)))
    return [list(map(int, index)) for index in np.argwhere(~reliable.astype(bool))]


def map_summary(psf_map: PsfMap, parameters: ParameterMaps, what: str) -> str:
    """The status line of a map: its grid, each parameter's range and where it is smallest
    and largest, and the unreliable tiles (row, column counted from 1)."""
    grid = " × ".join(map(str, psf_map.grid[-2:]))
    ranges = []
    for name, values in parameters.values.items():
        low, high = np.unravel_index(np.argmin(values), values.shape), np.unravel_index(
            np.argmax(values), values.shape)
        unit = _unit(name)
        if f"{values[low]:.3g}" == f"{values[high]:.3g}":
            ranges.append(f"{name} {values[low]:.3g}{unit} everywhere")
            continue
        ranges.append(f"{name} from {values[low]:.3g}{unit} ({_where(low, values.shape)}) to "
                      f"{values[high]:.3g}{unit} ({_where(high, values.shape)})")
    text = f"{what} on a {grid} grid: " + "; ".join(ranges) + "."
    bad = unreliable_tiles(psf_map)
    tiles = int(np.prod(psf_map.grid))
    if not bad:
        return text + f" All {tiles} tiles reliable."
    filled = bool(np.any(psf_map.diagnostics.get("filled", False)))
    fate = "filled from their neighbours" if filled else "left out of the smoothing"
    where = ", ".join("(" + ", ".join(str(i + 1) for i in index[-2:]) + ")" for index in bad)
    return text + (f" {len(bad)} of {tiles} tiles unreliable, {fate}: {where} "
                   "(row, column).")


def show_psf_map(viewer: napari.viewer.Viewer, psf_map: PsfMap, image_layer, *,
                 mosaic_name: str, role: str, call: str, inputs: dict,
                 metadata: dict) -> ParameterMaps:
    """Add or update the kernel mosaic ``mosaic_name`` and the parameter maps
    ``"<image> <parameter> map"`` of ``psf_map`` over ``image_layer`` (whose last axes the
    map describes). ``call`` is the Python source that makes the map from ``inputs`` (the
    names of the layers it reads); each layer records the call that makes its data, the
    map's call and the map itself. Returns the parameter maps shown."""
    ndim = psf_map.ndim
    scale = np.asarray(image_layer.scale[-ndim:], dtype=float)
    translate = np.asarray(image_layer.translate[-ndim:], dtype=float)
    units = units_of(image_layer, ndim)
    record = {**metadata, "grid": list(psf_map.grid), "centres": plain(psf_map.centres),
              "model": psf_map.model, "diagnostics": plain(psf_map.diagnostics),
              "unreliable_tiles": unreliable_tiles(psf_map),
              PSF_MAP_CALL_KEY: reproduction(call, inputs), PSF_MAP_KEY: psf_map}

    def carrying(python: str) -> dict:
        return {**record, REPRODUCE_KEY: reproduction(python, inputs)}

    parameters = psf_map.parameter_maps()
    placement = {"scale": tuple(scale * np.asarray(parameters.step)),
                 "translate": tuple(translate + scale * np.asarray(parameters.origin)),
                 "units": units}
    for name, values in parameters.values.items():
        upsert_layer(viewer, values, f"{image_layer.name} {name} map", "image",
                     role="parameter map", colormap=PARAMETER_COLORMAP, colorbar=True,
                     metadata=carrying(f"{call}.parameter_maps().values[{name!r}]"),
                     **placement)
    # the mosaic last, so it is on top of the image it overlays
    upsert_layer(viewer, psf_map.mosaic(), mosaic_name, "image", role=role,
                 scale=tuple(scale), translate=tuple(translate), units=units,
                 metadata=carrying(f"{call}.mosaic()"), colormap="magma",
                 blending="additive", colorbar=True)
    return parameters
