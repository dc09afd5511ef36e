"""Sizes in physical units: a length measured in pixels given in the units of a known pixel
spacing, for the ``*_physical`` fields of :class:`psfkit.KernelFit`,
:class:`psfkit.PsfReport` and :class:`psfkit.BeadAverage`.

One rule for all three: a field is ``None`` when no spacing was given (a pixel size of 1 is
not a measurement), a length given per axis is multiplied by the spacing of its axis, and
one length that belongs to no axis (the radius of a round model) is multiplied by the pixel
size when the pixels are square, and is ``None`` on pixels that are not (its physical size
would depend on its direction).
"""

from __future__ import annotations

import numpy as np


def in_spacing_units(length, spacing):
    """``length`` in pixels — one number, or a tuple or array of one per axis — in the
    units of ``spacing`` (one pixel size per axis, or ``None`` when unknown).

    Returns a float, a tuple of floats or an ndarray as ``length`` is one; ``None`` when
    ``spacing`` is ``None``, or when ``length`` is one number and the pixels are not square.
    """
    if spacing is None:
        return None
    spacing = np.asarray(spacing, dtype=float)
    if np.ndim(length) == 0:
        if np.any(spacing != spacing[0]):
            return None
        return float(length) * float(spacing[0])
    scaled = np.asarray(length, dtype=float) * spacing
    if isinstance(length, np.ndarray):
        return scaled
    return tuple(float(value) for value in scaled)


def lengths_in_spacing_units(params: dict, length_names, spacing):
    """``params`` with the entries named in ``length_names`` in the units of ``spacing``
    (:func:`in_spacing_units`) and the others (angles, exponents) unchanged; ``None`` when
    ``spacing`` is ``None`` or a length has no physical size on these pixels."""
    if spacing is None:
        return None
    physical = {}
    for name, value in params.items():
        physical[name] = in_spacing_units(value, spacing) if name in length_names else value
        if physical[name] is None:
            return None
    return physical
