"""TIFF files with their voxel size: images and PSFs read and written with spacing and
unit, atomically, beside a JSON sidecar that records how they were made.

Voxel sizes are read, in this order of trust, from OME-TIFF (``PhysicalSizeX/Y/Z`` and
their units), from ImageJ metadata (``spacing`` for z, ``unit``) with the ``XResolution`` /
``YResolution`` tags for x and y, from psfkit's own JSON description (files too large for
ImageJ's layout), and from resolution tags in centimetres, millimetres or micrometres.
Anything else (a plain TIFF, the 72 dpi a screenshot carries) is unknown, and the caller
is told what was assumed (:meth:`ImageFile.assumed`). Lengths are reported in micrometres
when the file's unit is a length, else in the file's own unit.

Every file psfkit writes carries its voxel size the way Fiji reads it: ImageJ hyperstack
metadata (``spacing``, ``unit``) and the resolution tags, or, for a layout ImageJ cannot
express or a file over 4 GiB, a BigTIFF with the resolution tags and the spacing in the
JSON description, which :func:`read_image` reads back. Files are written to a temporary
file beside their destination and renamed into place when complete
(:func:`atomic_output`), so an interrupted run never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["ImageFile", "PsfMapFile", "atomic_output", "create_image", "file_checksum",
           "is_psf_map_file", "load_psf", "load_psf_map", "read_image", "read_sidecar",
           "remove_stale_temporaries", "save_psf", "save_psf_map", "sidecar_path",
           "write_image", "write_sidecar"]

#: The spatial axis letters of tifffile's series axes, slowest first.
SPATIAL_AXES = "ZYX"

#: Micrometres per unit of the length units files use (OME, ImageJ and TIFF spellings).
MICROMETRES_PER = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "\u03bcm": 1.0, "\\u00b5m": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6, "inch": 25400.0, "å": 1e-4, "angstrom": 1e-4,
}

MICROMETRE = "µm"

#: Resolution tags in inches at these values are a screen's or a printer's default, not a
#: pixel size (a screenshot's 72 dpi), and are ignored.
DEFAULT_DPI = (72.0, 96.0)

#: Files at least this large are written as BigTIFF, which ImageJ's layout cannot be.
IMAGEJ_LIMIT = 2**32 - 2**25

#: TIFF ResolutionUnit values (tifffile.RESUNIT) that are lengths, in micrometres.
_RESOLUTION_UNITS = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}


@dataclass(frozen=True)
class ImageFile:
    """An image read from a file with its voxel size.

    ``data`` has the file's shape (a :class:`psfkit.chunked.FileArray` when read lazily).
    ``spacing`` holds one voxel size per axis of ``data``, in ``unit``; it is ``None``
    where the file does not say (and on axes that are not spatial: time, channels).
    """

    data: object
    spacing: tuple
    unit: str
    path: str = ""
    axes: str = ""

    def __iter__(self):
        """Unpack as ``data, spacing, unit``."""
        return iter((self.data, self.spacing, self.unit))

    def spatial_spacing(self, ndim: int) -> tuple[float, ...] | None:
        """The voxel size of the last ``ndim`` axes, or ``None`` when one is unknown."""
        trailing = self.spacing[len(self.spacing) - ndim:]
        if len(trailing) < ndim or any(size is None for size in trailing):
            return None
        return tuple(float(size) for size in trailing)

    def unknown_axes(self, ndim: int) -> str:
        """The last ``ndim`` axes whose voxel size the file does not give, e.g. ``"y, x"``
        (``""`` when it gives them all)."""
        trailing = self.spacing[len(self.spacing) - ndim:]
        names = SPATIAL_AXES[len(SPATIAL_AXES) - ndim:]
        return ", ".join(name.lower() for name, size in zip(names, trailing, strict=False)
                         if size is None)

    def assumed(self, ndim: int, assumption: str = "taken as 1 pixel") -> str:
        """One line saying that the voxel size of the last ``ndim`` axes is unknown and
        what is assumed instead; ``""`` when it is known."""
        missing = self.unknown_axes(ndim)
        if not missing:
            return ""
        return (f"{os.path.basename(self.path) or 'the file'} gives no voxel size along "
                f"{missing}; {assumption}")


#: Units that mean "no calibration" (ImageJ's default for an uncalibrated image).
NO_UNIT = ("", "pixel", "pixels", "px")


def _micrometres(unit: str | None) -> float | None:
    """Micrometres per ``unit``, or ``None`` when it is not a known length."""
    if unit is None:
        return None
    return MICROMETRES_PER.get(str(unit).strip().lower())


def _in_micrometres(sizes: dict, unit: str | None) -> tuple[dict, str]:
    """``sizes`` converted to micrometres when ``unit`` is a length, else as they are."""
    factor = _micrometres(unit)
    if factor is None:
        return sizes, (unit or "pixel")
    return {axis: size * factor for axis, size in sizes.items()}, MICROMETRE


def _positive(value) -> float | None:
    """``value`` as a positive finite float, or ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _ome_sizes(xml: str) -> tuple[dict, str | None]:
    """Voxel sizes of the first OME image, in micrometres where the units are lengths."""
    pixels = ElementTree.fromstring(xml).find(".//{*}Pixels")
    if pixels is None:
        return {}, None
    sizes, unit = {}, None
    for axis in SPATIAL_AXES:
        size = _positive(pixels.get(f"PhysicalSize{axis}"))
        if size is None:
            continue
        axis_unit = pixels.get(f"PhysicalSize{axis}Unit", MICROMETRE)
        factor = _micrometres(axis_unit)
        sizes[axis] = size * factor if factor is not None else size
        unit = MICROMETRE if factor is not None else axis_unit
    return sizes, unit


def _resolution(page, tag: str) -> float | None:
    """Pixels per unit from a resolution tag (a rational), or ``None``."""
    entry = page.tags.get(tag)
    if entry is None:
        return None
    value = entry.value
    if isinstance(value, tuple):
        value = value[0] / value[1] if value[1] else 0
    return _positive(value)


def _tag_sizes(page, unit_factor: float | None) -> dict:
    """Pixel sizes along y and x from the resolution tags, times ``unit_factor``."""
    sizes = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        per_unit = _resolution(page, tag)
        if per_unit is not None and unit_factor is not None:
            sizes[axis] = unit_factor / per_unit
    return sizes


def _imagej_sizes(tif) -> tuple[dict, str | None]:
    """Voxel sizes from ImageJ metadata (z) and the resolution tags (y, x), in its unit."""
    metadata = tif.imagej_metadata or {}
    unit = metadata.get("unit")
    if unit is not None and str(unit).strip().lower() in NO_UNIT:
        return {}, None
    sizes = _tag_sizes(tif.pages.first, 1.0)
    if _positive(metadata.get("spacing")) is not None:
        sizes["Z"] = float(metadata["spacing"])
    if unit is None and not ("Z" in sizes or set(sizes.values()) - {1.0}):
        return {}, None
    return _in_micrometres(sizes, unit)


def _shaped_sizes(tif) -> tuple[dict, str | None]:
    """Voxel sizes from psfkit's JSON description (``spacing`` over the ``axes``)."""
    metadata = (tif.shaped_metadata or [{}])[0] or {}
    spacing, axes = metadata.get("spacing"), metadata.get("axes")
    if not isinstance(spacing, list) or not isinstance(axes, str):
        return {}, None
    sizes = {axis: _positive(size) for axis, size in zip(axes, spacing, strict=False)}
    return _in_micrometres({axis: size for axis, size in sizes.items() if size},
                           metadata.get("unit"))


def _resolution_tag_sizes(tif) -> tuple[dict, str | None]:
    """Pixel sizes from resolution tags in a length unit (screen dpi ignored)."""
    page = tif.pages.first
    entry = page.tags.get("ResolutionUnit")
    factor = _RESOLUTION_UNITS.get(int(entry.value)) if entry is not None else None
    sizes = _tag_sizes(page, factor)
    if factor == _RESOLUTION_UNITS[2] and any(
            abs(25400.0 / size - dpi) < 1e-6 for size in sizes.values() for dpi in DEFAULT_DPI):
        return {}, None
    return (sizes, MICROMETRE) if sizes else ({}, None)


def _voxel_sizes(tif) -> tuple[dict, str]:
    """The voxel size per spatial axis letter the file states, and their unit."""
    readers = []
    if tif.is_ome and tif.ome_metadata:
        readers.append(lambda: _ome_sizes(tif.ome_metadata))
    if tif.is_imagej:
        readers.append(lambda: _imagej_sizes(tif))
    if tif.is_shaped:
        readers.append(lambda: _shaped_sizes(tif))
    readers.append(lambda: _resolution_tag_sizes(tif))
    for reader in readers:
        with contextlib.suppress(ElementTree.ParseError, ValueError, KeyError, TypeError):
            sizes, unit = reader()
            if sizes:
                return sizes, unit
    return {}, "pixel"


def _axes_of(series_axes: str, ndim: int, sizes: dict) -> str:
    """Spatial letters for the axes of a series: tifffile's own where it knows them; for
    an unnamed third-last axis (``Q``, ``I``), ``Z`` when the file states a z size."""
    axes = series_axes if len(series_axes) == ndim else "Q" * ndim
    if ndim >= 3 and axes[-3] not in SPATIAL_AXES and "Z" in sizes and "Z" not in axes:
        axes = axes[:-3] + "Z" + axes[-2:]
    return axes


def read_image(path, *, role: str = "image", lazy: bool = False) -> ImageFile:
    """Read a TIFF with its voxel size.

    Parameters
    ----------
    path : str or path-like
        The TIFF (OME-TIFF, ImageJ TIFF or plain).
    role : str
        What the file is, for the error message (``"image"``, ``"PSF"``).
    lazy : bool
        Return the pixels as a :class:`psfkit.chunked.FileArray` that reads blocks on
        demand when they are stored uncompressed in one piece (else they are read).

    Returns
    -------
    ImageFile
        The pixels, one voxel size per axis (``None`` where unknown) and the unit
        (``"µm"`` for lengths, ``"pixel"`` when nothing is known). Unpacks as
        ``data, spacing, unit``.

    Raises
    ------
    ValueError
        When the file is missing or not a readable TIFF, naming ``role`` and ``path``.
    """
    import tifffile

    from .chunked import FileArray

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{role} file not found: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            sizes, unit = _voxel_sizes(tif)
            offset = series.dataoffset if lazy else None
            if offset is not None:
                dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
                data = FileArray(path, offset, series.shape, dtype)
            else:
                data = series.asarray()
            axes = _axes_of(series.axes, len(series.shape), sizes)
    except Exception as error:  # tifffile raises many kinds on a bad file
        raise ValueError(f"cannot read the {role} TIFF {path}: {error}") from None
    spacing = tuple(sizes.get(axis) for axis in axes)
    return ImageFile(data, spacing, unit, path, axes)


def load_psf(path) -> ImageFile:
    """Read a PSF file: 2D or 3D (leading single planes dropped), float32, with its voxel
    size (see :func:`read_image`; ``spacing`` covers the PSF's axes).

    Raises ``ValueError`` naming the file when it is not a readable TIFF, not 2D or 3D,
    or not finite.
    """
    from ._validate import as_float_array

    if is_psf_map_file(path):
        raise ValueError(f"{os.fspath(path)} holds a PSF map (one PSF per tile), not one "
                         f"PSF; read it with psfkit.io.load_psf_map")
    image = read_image(path, role="PSF")
    data, spacing, axes = np.asarray(image.data), image.spacing, image.axes
    while data.ndim > 2 and data.shape[0] == 1:
        data, spacing, axes = data[0], spacing[1:], axes[1:]
    if data.ndim not in (2, 3):
        raise ValueError(f"the PSF in {image.path} must be 2D or 3D, got shape {data.shape}")
    data = as_float_array(data, f"the PSF in {image.path}")
    return ImageFile(data, spacing, image.unit, image.path, axes)


def _imagej_axes(ndim: int, spatial: int) -> str | None:
    """ImageJ's axes for an array whose last ``spatial`` axes are spatial, or ``None``
    when its order (TZCYX) cannot express the leading axes."""
    leading = ndim - spatial
    options = {2: ("YX", "TYX", "TCYX", "TZCYX"), 3: ("ZYX", "TZYX", "TZCYX")}[spatial]
    if leading >= len(options) or (spatial == 3 and leading == 2):
        return None  # TZCYX puts channels between z and y: not our frames-first order
    return options[leading]


def _spatial(spacing, ndim: int) -> tuple[float, ...] | None:
    """``spacing`` (2 or 3 voxel sizes of the trailing axes) checked, or ``None``."""
    if spacing is None:
        return None
    from .units import voxel_spacing

    spacing = [float(size) for size in np.atleast_1d(np.asarray(spacing, dtype=float))]
    if len(spacing) not in (2, 3) or len(spacing) > ndim:
        raise ValueError(f"spacing must hold the voxel size of the last 2 or 3 axes, got "
                         f"{spacing!r} for an array of {ndim} axes")
    return tuple(voxel_spacing(spacing, len(spacing), "spacing").tolist())


def _tiff_layout(shape, dtype, spacing, unit: str, spatial: int) -> dict:
    """tifffile keywords that write ``spacing`` the way Fiji and :func:`read_image` read
    it: ImageJ hyperstack metadata when the layout and size allow, else a BigTIFF with
    the spacing in the JSON description; the resolution tags either way."""
    keywords = dict(photometric="minisblack")
    axes = _imagej_axes(len(shape), spatial)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    imagej_unit = "um" if unit == MICROMETRE else unit
    if spacing is not None:
        keywords["resolution"] = (1.0 / spacing[-1], 1.0 / spacing[-2])
    if axes is not None and nbytes < IMAGEJ_LIMIT and np.dtype(dtype) != np.float64:
        metadata = dict(axes=axes)
        if spacing is not None:
            metadata["unit"] = imagej_unit
            if len(spacing) == 3:
                metadata["spacing"] = spacing[0]
        keywords.update(imagej=True, metadata=metadata)
    else:
        metadata = {}
        if spacing is not None:
            metadata = dict(axes="Q" * (len(shape) - len(spacing)) + SPATIAL_AXES[-len(spacing):],
                            spacing=[None] * (len(shape) - len(spacing)) + list(spacing),
                            unit=unit)
        keywords.update(bigtiff=nbytes >= IMAGEJ_LIMIT, shaped=True, metadata=metadata)
    return keywords


def write_image(path, data, spacing=None, unit: str = MICROMETRE) -> None:
    """Write ``data`` as a TIFF with its voxel size, atomically.

    ``spacing`` is the voxel size of the last 2 or 3 axes (``None``: unknown, none
    written); the leading axes are frames. The file is ImageJ-compatible (Fiji shows the
    scale) unless the array is float64, over 4 GiB or has more leading axes than ImageJ's
    order allows, when it is a (Big)TIFF whose description holds the spacing.
    """
    import tifffile

    data = np.asarray(data)
    spatial = _spatial(spacing, data.ndim)
    keywords = _tiff_layout(data.shape, data.dtype, spatial, unit,
                            len(spatial) if spatial else min(3, max(2, data.ndim)))
    with atomic_output(path) as temporary:
        tifffile.imwrite(temporary, data, **keywords)


def create_image(path, shape, dtype=np.float32, spacing=None, unit: str = MICROMETRE,
                 spatial_ndim: int | None = None):
    """A new TIFF of ``shape`` and ``dtype`` with its voxel size, memory-mapped for
    writing (see :func:`write_image` for the layout); ``spatial_ndim`` says how many
    trailing axes are spatial when ``spacing`` is ``None``. Flush and drop the map to
    finish the file."""
    import tifffile

    shape = tuple(int(n) for n in shape)
    spatial = _spatial(spacing, len(shape))
    ndim = len(spatial) if spatial else (spatial_ndim or min(3, max(2, len(shape))))
    return tifffile.memmap(os.fspath(path), shape=shape, dtype=dtype,
                           **_tiff_layout(shape, dtype, spatial, unit, ndim))


def save_psf(path, psf, spacing=None, unit: str = MICROMETRE, provenance=None) -> None:
    """Write a PSF (2D or 3D, float32) with its voxel size, and ``provenance`` (a dict
    saying how it was made) in the JSON sidecar ``<path>.json``."""
    from ._validate import as_float_array

    psf = as_float_array(psf, "psf", ndim=(2, 3))
    if spacing is not None and np.ndim(spacing) == 0:
        spacing = (float(spacing),) * psf.ndim
    if provenance is not None:
        sidecar_text(path, provenance)  # a record that cannot be written: no PSF either
    write_image(path, psf, spacing, unit)
    if provenance is not None:
        write_sidecar(path, provenance)


# ------------------------------------------------------------------------ PSF map files


@dataclass(frozen=True)
class PsfMapFile:
    """A PSF map read from a file (:func:`load_psf_map`): the map, the voxel size of its
    PSFs (the image's; ``None`` when the file does not say) in ``unit``, and the
    ``provenance`` record of its sidecar (``None`` without one)."""

    psf_map: object
    spacing: tuple | None
    unit: str
    path: str
    provenance: dict | None = None


def save_psf_map(path, psf_map, spacing=None, unit: str = MICROMETRE,
                 provenance=None) -> None:
    """Write a :class:`psfkit.PsfMap` as one TIFF, atomically, that
    :func:`load_psf_map` reads back exactly and Fiji opens as a stack of the tiles' PSFs.

    The pixels are the tile PSFs in C order of the grid (float32, frames of an ImageJ
    hyperstack, each labelled with its tile and centre) with ``spacing``, the voxel size
    of the image the map describes (one number, or one per axis), as for :func:`save_psf`.
    The rest of the map (grid, tile centres, image shape, model, per-tile diagnostics,
    a fitted model's parameter field; :func:`psfkit.psf_map.map_record`) is JSON in the
    file's ImageJ ``Info`` property (Fiji: Image › Show Info), since ImageJ keeps the
    description tag for its own. ``provenance`` goes into the sidecar ``<path>.json``.
    """
    import tifffile

    from .psf_map import PsfMap, map_record

    if not isinstance(psf_map, PsfMap):
        raise TypeError(f"psf_map must be a psfkit.PsfMap, got {type(psf_map).__name__}")
    psfs = np.asarray(psf_map.psfs, dtype=np.float32).reshape((-1, *psf_map.psf_shape))
    if spacing is not None and np.ndim(spacing) == 0:
        spacing = (float(spacing),) * psf_map.ndim
    spatial = _spatial(spacing, psfs.ndim)
    keywords = _tiff_layout(psfs.shape, psfs.dtype, spatial, unit, psf_map.ndim)
    if not keywords.get("imagej"):
        raise ValueError(f"a PSF map of {psfs.shape[0]} tiles of {psf_map.psf_shape} is too "
                         f"large for one TIFF; use a coarser grid or smaller PSFs")
    planes = int(np.prod(psfs.shape[1:-2]))
    labels = [f"tile {tuple(int(i) for i in index)} at {tuple(float(c) for c in centre)}"
              for index, centre in zip(np.ndindex(*psf_map.grid), psf_map.tile_centres(),
                                       strict=True) for _ in range(planes)]
    keywords["metadata"].update(
        Info=json.dumps(map_record(psf_map), allow_nan=False), Labels=labels)
    with atomic_output(path) as temporary:
        tifffile.imwrite(temporary, psfs, **keywords)
    if provenance is not None:
        write_sidecar(path, provenance)


def _map_record(path) -> dict | None:
    """The map record in a TIFF's ImageJ ``Info`` (``None`` when there is none or the
    file is not a readable TIFF)."""
    import tifffile

    from .psf_map import RECORD_FORMAT

    with contextlib.suppress(Exception):  # not a TIFF, no ImageJ metadata, no JSON
        with tifffile.TiffFile(os.fspath(path)) as tif:
            info = (tif.imagej_metadata or {}).get("Info", "")
        if RECORD_FORMAT in info:
            record = json.loads(info)
            if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:
                return record
    return None


def is_psf_map_file(path) -> bool:
    """Whether ``path`` is a TIFF written by :func:`save_psf_map`."""
    return os.path.isfile(os.fspath(path)) and _map_record(path) is not None


def load_psf_map(path) -> PsfMapFile:
    """Read a PSF map written by :func:`save_psf_map`: the :class:`psfkit.PsfMap` as it
    was saved (PSFs, grid, centres, image shape, model, diagnostics, parameter field), its
    voxel size and unit, and the provenance of its sidecar when there is one.

    Raises ``ValueError`` naming the file when it is missing, not a readable TIFF, or
    holds no map (a plain PSF: read it with :func:`load_psf`).
    """
    from .psf_map import map_from_record

    image = read_image(path, role="PSF map")
    record = _map_record(path)
    if record is None:
        raise ValueError(f"{image.path} holds no PSF map (a single PSF or an image); read "
                         f"a PSF with psfkit.io.load_psf, or write a map with "
                         f"psfkit.io.save_psf_map")
    psf_map = map_from_record(np.asarray(image.data), record, f"the PSF map {image.path}")
    provenance = read_sidecar(path) if os.path.isfile(sidecar_path(path)) else None
    return PsfMapFile(psf_map, image.spatial_spacing(psf_map.ndim), image.unit, image.path,
                      provenance)


def _temporary_beside(path: str) -> str:
    """A new empty file ``.<name>.<8 random characters><suffix>`` beside ``path`` (the
    names :func:`remove_stale_temporaries` knows)."""
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        descriptor, temporary = tempfile.mkstemp(suffix=os.path.splitext(name)[1],
                                                 prefix=f".{name}.", dir=folder)
    except OSError as error:
        raise ValueError(f"cannot create a file in the output folder {folder}: "
                         f"{error.strerror}") from None
    os.close(descriptor)
    return temporary


@contextlib.contextmanager
def scratch_beside(path) -> Iterator[str]:
    """A temporary file beside ``path`` for intermediate results, removed at the end."""
    temporary = _temporary_beside(os.fspath(path))
    try:
        yield temporary
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_output(path) -> Iterator[str]:
    """A temporary file beside ``path`` that becomes ``path`` when the block completes
    (with the usual permissions) and is removed when it fails or is interrupted."""
    path = os.fspath(path)
    temporary = _temporary_beside(path)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp made it private
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_stale_temporaries(path) -> list[str]:
    """Remove the temporary files :func:`atomic_output` left beside ``path`` when a run
    writing it was killed (``.<name>.<8 random characters><suffix>``); return their
    names."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    suffix = re.escape(os.path.splitext(name)[1])
    pattern = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}{suffix}")  # mkstemp's names
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            if pattern.fullmatch(entry):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, entry))
                    removed.append(entry)
    return removed


def sidecar_path(path) -> str:
    """The JSON sidecar of an output file: ``<output>.json``."""
    return os.fspath(path) + ".json"


def sidecar_text(path, record: dict) -> str:
    """The JSON text of ``record`` as the sidecar of ``path`` writes it, or a
    ``ValueError`` naming the first NaN or infinite number it holds (JSON has none): an
    output's record is checked with this before the output is written, so that a
    non-finite record leaves no output behind."""
    from ._validate import _non_finite_fields
    from .metadata import plain

    record = plain(record)
    for where in _non_finite_fields(record, "record"):
        raise ValueError(f"the record of {os.fspath(path)} holds a NaN or infinite number at "
                         f"{where}; nothing was written")
    return json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_sidecar(path, record: dict) -> None:
    """Write ``record`` (JSON-safe values, see :func:`psfkit.metadata.plain`) as the
    sidecar of ``path``, atomically (:func:`sidecar_text`)."""
    text = sidecar_text(path, record)
    with atomic_output(sidecar_path(path)) as temporary, open(
            temporary, "w", encoding="utf-8") as handle:
        handle.write(text)


def read_sidecar(path) -> dict:
    """The record of ``path``'s sidecar (``<path>.json``)."""
    with open(sidecar_path(path), encoding="utf-8") as handle:
        return json.load(handle)


def file_checksum(path, block: int = 2**20) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
