"""Blur that changes across the field: :class:`PsfMap`, one PSF per tile of a grid laid over
the image, and the tiling that the map estimators share.

Between the tile centres the PSF is interpolated bilinearly in the tile grid: along each
axis, the tile ``j`` has the hat weight ``w_j(t)`` that is 1 at its centre ``c_j``, falls
linearly to 0 at the neighbouring centres and stays 1 beyond the first and last centre, so
the weights of all tiles sum to 1 at every pixel (a partition of unity). The PSF at pixel
``p`` is ``h(p) = sum_k w_k(p) h_k`` with ``w_k(p)`` the product of the axis weights; the
spatially varying blur of :mod:`psfkit.deconvolution._varying` uses the same weights.

The tiles of the estimators overlap: a tile is ``overlap`` times wider than the spacing of
the centres (clipped at the image border), and its centre is the centre of the pixels it
holds (a border tile is moved inside the image), which is where its estimate is placed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._validate import positive_int, real_number
from .operators import centre_embed

#: Default width of a tile relative to the spacing of the tile centres: 1.5 lets
#: neighbouring tiles share a quarter of their width on each side, so a tile holds enough
#: texture while its estimate stays local.
DEFAULT_OVERLAP = 1.5

#: A tile whose texture (the sharp tile's mean squared gradient over the blurred tile's
#: noise variance) is below this fraction of the median tile's is unreliable: its estimate
#: is dominated by noise and it is filled from its neighbours.
MIN_RELATIVE_TEXTURE = 0.1


#: Samples per axis of :meth:`PsfMap.parameter_maps`: the parameter fields are smooth
#: (bilinear between tile centres, or a low-order polynomial), so this many show them on
#: an image of any size while a fitted map's 64² evaluations take about a second.
PARAMETER_MAP_SAMPLES = 64

#: Names of the last image axes, for the per-axis components of a parameter.
_AXIS_NAMES = ("z", "y", "x")


@dataclass(frozen=True)
class ParameterMaps:
    """Parameters of a :class:`PsfMap` sampled over its image.

    Attributes
    ----------
    values : dict of ndarray
        One float32 array per parameter (or per-axis component), one entry per sample.
    origin, step : tuple
        Per image axis, the pixel coordinate of the first sample and the pixels between
        samples: sample ``i`` sits at pixel ``origin + i * step``. An image layer of a
        map at ``scale`` and ``translate`` sits over its image at ``scale * step`` and
        ``translate + origin * scale``.
    """

    values: dict
    origin: tuple
    step: tuple


@dataclass(frozen=True)
class PsfMap:
    """PSFs on a grid of tile centres over an image, interpolated bilinearly between them.

    Attributes
    ----------
    psfs : (G1, ..., GD, K1, ..., KD) ndarray of float32
        The PSF of each tile (``grid`` leading axes, then the PSF's axes), each centred on
        its centre pixel, nonnegative, unit sum.
    centres : tuple of (Gi,) ndarray
        Per image axis, the increasing coordinates (pixel indices) of the tile centres.
    shape : tuple of int
        The shape of the image the map describes.
    diagnostics : dict of ndarray
        Per-tile arrays of shape ``grid`` (or ``grid + (D,)``) describing how each tile's
        PSF was obtained, e.g. ``reliable``, ``filled``, ``residual_ratio``,
        ``reliability``, ``beads_used``, ``spread``.
    model : str or None
        For a map of a fitted model (:func:`psfkit.fit_kernel_map`), the model's name.
    """

    psfs: np.ndarray
    centres: tuple
    shape: tuple
    diagnostics: dict = field(default_factory=dict)
    model: str | None = None
    #: ``params_at(position) -> dict`` of a fitted model's map (None otherwise)
    parameter_field: Callable | None = field(default=None, repr=False)

    @property
    def grid(self) -> tuple[int, ...]:
        """Tiles per image axis."""
        return tuple(len(c) for c in self.centres)

    @property
    def ndim(self) -> int:
        """The dimensionality of the image (and of every PSF)."""
        return len(self.shape)

    @property
    def psf_shape(self) -> tuple[int, ...]:
        """The shape of every tile's PSF."""
        return tuple(self.psfs.shape[len(self.centres):])

    def tile_psfs(self) -> list[np.ndarray]:
        """The tiles' PSFs in C order of the tile grid."""
        return list(self.psfs.reshape((-1, *self.psf_shape)))

    def tile_centres(self) -> np.ndarray:
        """``(T, D)`` pixel coordinates of the tile centres, in C order of the grid."""
        mesh = np.meshgrid(*self.centres, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def axis_weights(self, axis: int, coordinates=None) -> np.ndarray:
        """``(G, N)`` hat weights of the tiles along ``axis`` at ``coordinates`` (default:
        every pixel index of that axis); each column sums to 1."""
        if coordinates is None:
            coordinates = np.arange(self.shape[axis])
        return hat_weights(self.centres[axis], coordinates)

    def weights(self, tile: int) -> np.ndarray:
        """The weight map of one tile (index in C order of the grid), image-shaped."""
        index = np.unravel_index(tile, self.grid)
        weight = np.ones((1,) * len(self.shape), dtype=np.float32)
        for axis, j in enumerate(index):
            profile = self.axis_weights(axis)[j].astype(np.float32)
            weight = weight * profile.reshape([-1 if a == axis else 1
                                               for a in range(len(self.shape))])
        return weight

    def psf_at(self, position) -> np.ndarray:
        """The PSF at a pixel ``position`` (one coordinate per image axis): the model
        rendered with :meth:`params_at` for a fitted model's map, else the bilinear
        combination of the tiles' PSFs; unit sum."""
        position = _position(position, len(self.shape))
        if self.parameter_field is not None:
            return self.parameter_field.render(self.psf_shape, position)
        combined = self.psfs.astype(np.float64)
        for axis, t in enumerate(position):
            combined = np.tensordot(self.axis_weights(axis, [t])[:, 0], combined, axes=(0, 0))
        combined = np.clip(combined, 0, None)
        return (combined / combined.sum()).astype(np.float32)

    def params_at(self, position) -> dict:
        """The fitted model's parameters at a pixel ``position`` (from the smoothed
        parameter field); only for a map made by :func:`psfkit.fit_kernel_map`."""
        if self.parameter_field is None:
            raise ValueError("params_at needs a map of a fitted model (psfkit.fit_kernel_map); "
                             "this map holds measured PSFs: use psf_at")
        return self.parameter_field.params(_position(position, len(self.shape)))

    def mosaic(self) -> np.ndarray:
        """The map as one picture in the image's pixels: an image of the map's ``shape``
        showing a point source at every tile centre imaged by that tile's PSF, i.e. each
        tile's PSF centred on the pixel nearest its centre (overlapping PSFs add, parts
        beyond the image are cut). Laid over the image, it shows the blur where it was
        measured."""
        picture = np.zeros(self.shape, dtype=np.float32)
        half = np.array(self.psf_shape) // 2
        for centre, psf in zip(self.tile_centres(), self.tile_psfs(), strict=True):
            corner = np.floor(centre + 0.5).astype(int) - half  # nearest pixel, .5 up
            start = np.maximum(corner, 0)
            stop = np.minimum(corner + np.array(self.psf_shape), self.shape)
            if np.any(stop <= start):
                continue
            target = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
            source = tuple(slice(a - c, b - c) for a, b, c in zip(start, stop, corner,
                                                                   strict=True))
            picture[target] += psf[source]
        return picture

    def parameter_maps(self, samples: int = PARAMETER_MAP_SAMPLES) -> ParameterMaps:
        """The map's parameters sampled over the image: for a fitted model's map the
        smoothed parameters (:meth:`params_at`; a per-axis parameter gives one map per
        axis, ``sigma_y``, ``sigma_x``; an elliptical Gaussian also its ``ellipticity``,
        ``1 - sigma_y / sigma_x``), for a map of measured PSFs each tile's FWHM per axis
        (``fwhm_y``, ``fwhm_x``, in pixels) interpolated bilinearly between the tile
        centres as the PSFs are.

        Along an axis with several tiles the samples are every ``step`` pixels from 0, at
        most ``samples`` of them (the fields are smooth: bilinear or a low-order
        polynomial); along an axis with one tile, one sample at the image's centre."""
        samples = positive_int(samples, "samples")
        origin, step, coordinates = [], [], []
        for n, g in zip(self.shape, self.grid, strict=True):
            if g == 1:
                origin.append((n - 1) / 2)
                step.append(n)
                coordinates.append(np.array([(n - 1) / 2]))
            else:
                stride = -(-n // samples)
                origin.append(0.0)
                step.append(stride)
                coordinates.append(np.arange(0, n, stride, dtype=np.float64))
        if self.parameter_field is not None:
            values = self._fitted_parameter_maps(coordinates)
        else:
            values = self._measured_parameter_maps(coordinates)
        return ParameterMaps(values=values, origin=tuple(origin), step=tuple(step))

    def _fitted_parameter_maps(self, coordinates) -> dict[str, np.ndarray]:
        """The smoothed parameters of a fitted map at every sample position."""
        positions = list(np.ndindex(*(len(c) for c in coordinates)))
        grid_shape = tuple(len(c) for c in coordinates)
        values: dict[str, list] = {}
        for index in positions:
            point = tuple(c[i] for c, i in zip(coordinates, index, strict=True))
            for name, value in self.params_at(point).items():
                components = np.atleast_1d(value)
                names = ([name] if components.size == 1 else
                         [f"{name}_{axis}" for axis in _AXIS_NAMES[-components.size:]])
                for component, entry in zip(names, components, strict=True):
                    values.setdefault(component, []).append(float(entry))
        maps = {name: np.array(v, dtype=np.float32).reshape(grid_shape)
                for name, v in values.items()}
        if "sigma_x" in maps and "sigma_y" in maps and self.model == "elliptical_gaussian":
            minor = np.minimum(maps["sigma_x"], maps["sigma_y"])
            major = np.maximum(maps["sigma_x"], maps["sigma_y"])
            maps["ellipticity"] = (1 - minor / major).astype(np.float32)
        return maps

    def _measured_parameter_maps(self, coordinates) -> dict[str, np.ndarray]:
        """Each tile's FWHM per axis, interpolated with the tiles' hat weights."""
        from .point_source import fwhm

        widths = np.array([fwhm(psf) for psf in self.tile_psfs()]).reshape(
            (*self.grid, self.ndim))
        maps = {}
        for axis, name in enumerate(_AXIS_NAMES[-self.ndim:]):
            field = widths[..., axis]
            for a, c in enumerate(coordinates):  # consumes axis 0, appends the samples
                field = np.tensordot(field, self.axis_weights(a, c), axes=([0], [0]))
            maps[f"fwhm_{name}"] = field.astype(np.float32)
        return maps

    def cropped(self, region) -> PsfMap:
        """The map of the part ``region`` (a tuple of slices with steps of 1) of the image,
        in that part's pixel coordinates: the same PSFs at the same places."""
        starts = [s.start or 0 for s in region]
        stops = [n if s.stop is None else s.stop for s, n in zip(region, self.shape,
                                                                  strict=True)]
        return PsfMap(self.psfs, tuple(c - s for c, s in zip(self.centres, starts,
                                                             strict=True)),
                      tuple(b - a for a, b in zip(starts, stops, strict=True)),
                      self.diagnostics, self.model, self.parameter_field)


# ------------------------------------------------------------ the map as a plain record

#: The ``format`` entry of a map's record, which marks a file as holding a map.
RECORD_FORMAT = "psfkit.PsfMap"

#: The version of the record's layout; a reader refuses a newer one.
RECORD_VERSION = 1


def map_record(psf_map: PsfMap) -> dict:
    """Everything of ``psf_map`` but its PSFs as JSON-safe values: the grid, tile
    centres, image shape, model, diagnostics and a fitted model's parameter field
    (:meth:`psfkit.maps.ParameterField.state`), arrays kept exactly
    (:func:`encoded`). :func:`map_from_record` rebuilds the map from it and the PSFs."""
    field_state = getattr(psf_map.parameter_field, "state", None)
    if psf_map.parameter_field is not None and field_state is None:
        raise ValueError("the map's parameter_field cannot be stored (it is not a "
                         "psfkit.maps.ParameterField); store a map of fit_kernel_map")
    return {"format": RECORD_FORMAT, "version": RECORD_VERSION,
            "grid": list(psf_map.grid), "psf_shape": list(psf_map.psf_shape),
            "shape": [int(n) for n in psf_map.shape],
            "centres": [encoded(np.asarray(c)) for c in psf_map.centres],
            "model": psf_map.model,
            "diagnostics": {str(name): encoded(np.asarray(value))
                            for name, value in psf_map.diagnostics.items()},
            "parameter_field": None if field_state is None else encoded(field_state())}


def map_from_record(psfs, record: dict, name: str = "the map") -> PsfMap:
    """The :class:`PsfMap` of ``record`` (:func:`map_record`) with the tile PSFs
    ``psfs`` (``(T, K1, ..., KD)`` in C order of the grid, or already on the grid);
    ``ValueError`` naming ``name`` when the record is not a map's or does not fit."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{name} holds no PSF map (no {RECORD_FORMAT!r} record)")
    if int(record.get("version", 0)) > RECORD_VERSION:
        raise ValueError(f"{name} is a PSF map of a newer layout (version "
                         f"{record['version']}); update psfkit to read it")
    grid = tuple(int(g) for g in record["grid"])
    psf_shape = tuple(int(k) for k in record["psf_shape"])
    psfs = np.asarray(psfs, dtype=np.float32)
    if psfs.size != int(np.prod(grid + psf_shape)):
        raise ValueError(f"{name} holds PSFs of shape {psfs.shape}, but its record says a "
                         f"grid {grid} of {psf_shape} PSFs")
    field_state = record.get("parameter_field")
    parameter_field = None
    if field_state is not None:
        from .maps import ParameterField

        parameter_field = ParameterField.from_state(decoded(field_state))
    return PsfMap(psfs=psfs.reshape(grid + psf_shape),
                  centres=tuple(decoded(c) for c in record["centres"]),
                  shape=tuple(int(n) for n in record["shape"]),
                  diagnostics={str(k): decoded(v) for k, v in record["diagnostics"].items()},
                  model=record.get("model"), parameter_field=parameter_field)


#: The spelling of the non-finite floats in an encoded array (JSON has no NaN).
_NON_FINITE = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def encoded(value):
    """``value`` as JSON-safe values that :func:`decoded` turns back exactly: a NumPy
    array as ``{"array": dtype, "shape": [...], "values": [...]}`` (floats written
    exactly, NaN and infinities as the strings ``"nan"``, ``"inf"``, ``"-inf"``), dicts,
    lists and tuples item by item (tuples become lists), NumPy scalars as Python ones."""
    if isinstance(value, np.ndarray):
        values = value.ravel().tolist()
        if value.dtype.kind == "f":
            values = [v if np.isfinite(v) else str(v) for v in values]
        return {"array": value.dtype.str, "shape": list(value.shape), "values": values}
    if isinstance(value, dict):
        return {str(key): encoded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encoded(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def decoded(value):
    """The inverse of :func:`encoded`."""
    if isinstance(value, dict) and set(value) == {"array", "shape", "values"}:
        dtype = np.dtype(value["array"])
        values = value["values"]
        if dtype.kind == "f":
            values = [_NON_FINITE[v] if isinstance(v, str) else v for v in values]
        return np.asarray(values, dtype=dtype).reshape(value["shape"])
    if isinstance(value, dict):
        return {key: decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decoded(item) for item in value]
    return value


def hat_weights(centres, coordinates) -> np.ndarray:
    """``(G, N)`` weights of ``G`` increasing ``centres`` at ``coordinates``: linear
    interpolation between the two centres around each coordinate, constant beyond the
    ends; columns sum to 1."""
    centres = np.asarray(centres, dtype=np.float64)
    coordinates = np.asarray(coordinates, dtype=np.float64)
    weights = np.zeros((len(centres), len(coordinates)))
    if len(centres) == 1:
        weights[0] = 1.0
        return weights
    clipped = np.clip(coordinates, centres[0], centres[-1])
    upper = np.clip(np.searchsorted(centres, clipped, side="right"), 1, len(centres) - 1)
    fraction = (clipped - centres[upper - 1]) / (centres[upper] - centres[upper - 1])
    columns = np.arange(len(coordinates))
    weights[upper - 1, columns] = 1.0 - fraction
    weights[upper, columns] += fraction
    return weights


def _position(position, ndim: int) -> tuple[float, ...]:
    """A pixel position as ``ndim`` finite floats, or a ``ValueError`` naming it."""
    values = np.atleast_1d(np.asarray(position, dtype=object)).tolist()
    if len(values) != ndim:
        raise ValueError(f"position must have {ndim} coordinates (one per image axis), got "
                         f"{position!r}")
    return tuple(real_number(v, "position") for v in values)


# ---------------------------------------------------------------------------- the tiling


@dataclass(frozen=True)
class Tile:
    """One tile of a :func:`tiling`: its grid index, the slices of the image it holds and
    the pixel coordinates of its centre."""

    index: tuple
    region: tuple
    centre: tuple


def tile_grid(grid, ndim: int) -> tuple[int, ...]:
    """``grid`` as tiles per image axis: ``(rows, cols)`` for a 2D image; for a 3D one
    either one count per axis or ``(rows, cols)`` over its last two axes (one tile along
    the first)."""
    counts = [positive_int(g, "grid") for g in np.atleast_1d(np.asarray(grid, dtype=object))]
    if len(counts) == 2 and ndim == 3:
        counts = [1, *counts]
    if len(counts) != ndim:
        raise ValueError(f"grid must have {ndim} entries (tiles per image axis) or 2 (rows, "
                         f"cols), got {grid!r}")
    return tuple(counts)


def tiling(shape, grid, overlap: float = DEFAULT_OVERLAP, minimum=()) -> list[Tile]:
    """Overlapping tiles on a grid over an image of ``shape``: per axis, ``g`` tiles whose
    nominal centres are evenly spaced (``(j + 1/2) N / g``) and whose width is ``overlap``
    times that spacing (at least ``minimum`` pixels), moved inside the image at the
    border. Each tile's centre is that of the pixels it holds."""
    overlap = real_number(overlap, "overlap", minimum=1.0)
    axes = []
    for axis, (n, g) in enumerate(zip(shape, grid, strict=True)):
        step = n / g
        width = min(n, max(round(overlap * step), minimum[axis] if minimum else 1))
        spans = []
        for j in range(g):
            start = round((j + 0.5) * step - width / 2)
            start = min(max(start, 0), n - width) if g > 1 else 0
            stop = start + width if g > 1 else n
            spans.append(slice(start, stop))
        axes.append(spans)
    tiles = []
    for index in np.ndindex(*grid):
        region = tuple(axes[a][j] for a, j in enumerate(index))
        tiles.append(Tile(index=index, region=region,
                          centre=tuple(0.5 * (s.start + s.stop - 1) for s in region)))
    return tiles


def tile_centres(tiles: list[Tile], grid) -> tuple[np.ndarray, ...]:
    """Per axis, the centre coordinates of a :func:`tiling`'s tiles (separable: a tile's
    centre along an axis depends only on its index along that axis)."""
    centres = []
    for axis, g in enumerate(grid):
        by_index = {t.index[axis]: t.centre[axis] for t in tiles}
        centres.append(np.array([by_index[j] for j in range(g)], dtype=np.float64))
    return tuple(centres)


def texture(sharp_tile: np.ndarray, noise: float) -> float:
    """How much a tile constrains a kernel: the sharp tile's mean squared gradient over
    the noise variance of the blurred tile (``noise``, in the sharp tile's units). The
    tile is scaled to a largest magnitude of 1 first, so no square overflows."""
    tile = np.asarray(sharp_tile, dtype=np.float64)
    scale = float(np.abs(tile).max())
    if not scale > 0:
        return 0.0
    energy = float(sum(np.mean(g * g) for g in np.gradient(tile / scale)))
    ratio = min(scale / max(abs(noise), 1e-300), 1e150)  # at most 1e300 once squared
    return energy * ratio * ratio


def common_shape(kernels) -> tuple[int, ...]:
    """The smallest shape that holds each of ``kernels`` (odd along every axis)."""
    return tuple(int(max(k.shape[a] for k in kernels)) for a in range(kernels[0].ndim))


def stack_on_grid(kernels: list, grid) -> np.ndarray:
    """The kernels of the tiles (C order, None for a tile without one) zero-padded to
    their common shape and stacked to ``grid + kernel shape``; None becomes zeros."""
    present = [k for k in kernels if k is not None]
    shape = common_shape(present)
    stacked = np.zeros((len(kernels), *shape), dtype=np.float32)
    for i, kernel in enumerate(kernels):
        if kernel is not None:
            stacked[i] = centre_embed(np.asarray(kernel, dtype=np.float32), shape)
    return stacked.reshape((*grid, *shape))


def require_reliable(reliable) -> None:
    """``ValueError`` when no tile of a map is reliable."""
    if not np.any(reliable):
        raise ValueError("no tile of the map is reliable (too little texture or no beads, "
                         "or every estimate failed); use a coarser grid or data with more "
                         "detail")


def fill_unreliable(psfs: np.ndarray, reliable: np.ndarray) -> np.ndarray:
    """``psfs`` (``grid + kernel shape``) with every unreliable tile replaced by the mean
    of the reliable tiles nearest to it in the grid (Chebyshev distance: its reliable
    neighbours when it has any); ``ValueError`` when no tile is reliable."""
    require_reliable(reliable)
    filled = psfs.copy()
    good = np.argwhere(reliable)
    for index in np.argwhere(~reliable):
        distance = np.abs(good - index).max(axis=1)
        nearest = good[distance == distance.min()]
        mean = np.mean([psfs[tuple(i)] for i in nearest], axis=0)
        filled[tuple(index)] = mean / mean.sum()
    return filled


def check_map_fits(psf_map: PsfMap, image_shape, name: str = "psf") -> None:
    """``ValueError`` unless ``psf_map`` describes an image of ``image_shape`` (the map is
    in that image's pixel coordinates)."""
    if tuple(psf_map.shape) != tuple(image_shape):
        raise ValueError(f"{name} is a map of an image of shape {tuple(psf_map.shape)}, not "
                         f"of this image {tuple(image_shape)}; make the map on this image, or "
                         f"crop it with psf_map.cropped(region)")
