"""napari's reader for the TIFFs psfkit writes: one Image layer with the file's voxel size
as its scale and units, its JSON sidecar's record in ``metadata``, and a PSF or kernel in
the magma colormap the widgets give them.

The reader claims a ``.tif``/``.tiff`` only when psfkit's command line wrote it (a
sidecar ``<file>.json`` holding a ``psfkit_version``) or when :func:`psfkit.io.read_image` finds
a voxel size in it (OME, ImageJ, psfkit's JSON description or resolution tags in a
length unit). It declines every other TIFF (``get_reader`` returns ``None``), so napari's
own reader opens plain TIFFs as before and this one never shadows it for files it adds
nothing to.
"""

from __future__ import annotations

import os

import numpy as np

#: The sidecar key that says psfkit wrote the file (every record psfkit writes has it).
RECORD_MARK = "psfkit_version"

#: The ``metadata`` key of the layer that holds the sidecar's record (any JSON object in
#: the sidecar: :func:`psfkit.save_psf` writes the caller's ``provenance`` as it is).
RECORD_KEY = "psfkit_record"

#: psfkit's PSFs and kernels sum to 1 (make_psf, prepare_psf, average_beads,
#: estimate_kernel, fit_kernel); an image, residual or deconvolved output does not.
UNIT_SUM_TOLERANCE = 1e-3

#: The colormap the widgets give a PSF or kernel layer.
PSF_COLORMAP = "magma"


def _sidecar_record(path: str) -> dict | None:
    """The record in ``path``'s JSON sidecar (:func:`psfkit.io.sidecar_path`), or ``None``
    when there is none, it is unreadable or it is not a JSON object."""
    from psfkit.io import read_sidecar, sidecar_path

    if not os.path.isfile(sidecar_path(path)):
        return None
    try:
        record = read_sidecar(path)
    except (OSError, ValueError):  # unreadable or not JSON: someone else's file
        return None
    return record if isinstance(record, dict) else None


def _is_psf(data: np.ndarray) -> bool:
    """Whether ``data`` is a PSF or kernel: finite, with pixels summing to 1."""
    total = float(np.sum(data, dtype=np.float64))
    return bool(np.isfinite(total) and abs(total - 1.0) <= UNIT_SUM_TOLERANCE)


def _layer_keywords(image, record: dict | None, data: np.ndarray) -> dict:
    """The Image layer's keywords: name from the file, scale and units from its voxel
    size (1 and napari's default on axes it does not state), the record, the colormap."""
    from psfkit.io import MICROMETRE

    keywords = {"name": os.path.splitext(os.path.basename(image.path))[0],
                "scale": tuple(1.0 if size is None else float(size)
                               for size in image.spacing),
                "metadata": {} if record is None else {RECORD_KEY: record}}
    if image.unit == MICROMETRE:  # lengths come in µm; a file's other units may not parse
        keywords["units"] = tuple("pixel" if size is None else MICROMETRE
                                  for size in image.spacing)
    if _is_psf(data):
        keywords["colormap"] = PSF_COLORMAP
    return keywords


def get_reader(path):
    """napari's reader hook: a function that reads ``path`` into one Image layer when it
    is a single TIFF psfkit wrote or one with a voxel size, else ``None`` (napari's own
    reader opens it)."""
    from psfkit.io import read_image

    if not isinstance(path, (str, os.PathLike)):
        return None  # a list of files is a stack: napari's reader stacks them
    path = os.fspath(path)
    if not path.lower().endswith((".tif", ".tiff")):
        return None
    record = _sidecar_record(path)
    try:
        image = read_image(path, lazy=True)  # metadata only for uncompressed pixels
    except ValueError:
        return None  # not a readable TIFF: napari's reader says why
    written_by_psfkit = record is not None and RECORD_MARK in record
    if not written_by_psfkit and all(size is None for size in image.spacing):
        return None

    def read(_path):
        data = np.asarray(image.data)
        return [(data, _layer_keywords(image, record, data), "image")]

    return read
