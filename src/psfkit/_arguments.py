"""Checks of scalar arguments and of results, and the exact rescaling of extreme images,
shared by the kernel estimators and the point-source functions.

Beside :mod:`psfkit._validate` (which turns arrays into float arrays) this module holds:
:func:`whole_number`, :func:`real_number`, :func:`kernel_shape` and
:func:`progress_callback`, which turn a count, a size, a kernel shape or a callback into
what the core uses or raise a ``TypeError``/``ValueError`` naming the argument;
:func:`matching_pair`, the shape check of a sharp/blurred pair;
:func:`power_of_two_scale`, the factor that brings an image of extreme magnitude back to
ordinary numbers without a rounding error; and :func:`finite_result`, the check every
public function passes its result through, so that a non-finite value is an error and
never a return value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np

from ._validate import odd_shape

#: Largest absolute values for which :func:`power_of_two_scale` leaves an image alone:
#: from 2**-20 (about 1e-6) to 2**20 (about 1e6), where no step of psfkit under- or
#: overflows in float32, so that ordinary images are processed exactly as given.
ORDINARY_MAGNITUDES = (2.0**-20, 2.0**20)


def whole_number(value, name: str, *, minimum: int | None = 0) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (any int when it is ``None``).

    Python and NumPy integers are accepted; a ``bool``, a float (even ``5.0`` or ``inf``)
    or anything else raises a ``TypeError``, a smaller number a ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def per_axis_spacing(spacing, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """A pixel ``spacing`` (one number, or one per axis) as ``ndim`` positive finite floats;
    ``None`` gives ones. Raises a ``ValueError`` naming ``name`` for another number of
    entries, a ``TypeError`` for entries that are not numbers."""
    if spacing is None:
        return (1.0,) * ndim
    entries = np.atleast_1d(np.asarray(spacing, dtype=object)).ravel().tolist()
    if len(entries) == 1:
        entries = entries * ndim
    if len(entries) != ndim:
        raise ValueError(f"{name} must be one number or {ndim} (one per axis), got {spacing!r}")
    return tuple(real_number(s, name, positive=True) for s in entries)


def kernel_shape(shape, ndim: int, name: str = "shape") -> tuple[int, ...]:
    """An odd kernel ``shape`` (an int, or one int per axis) as a tuple of ``ndim`` ints:
    every entry must be an int (:func:`whole_number`; ``nan`` or ``9.0`` raise a
    ``TypeError``), then :func:`psfkit._validate.odd_shape` checks that they are odd and
    positive."""
    if isinstance(shape, str) or not isinstance(shape, Iterable):
        entries = (shape,) * ndim
    else:
        entries = tuple(shape)
    return odd_shape(tuple(whole_number(n, name, minimum=None) for n in entries), ndim, name)


def progress_callback(callback, name: str = "callback") -> Callable | None:
    """``callback`` when it is ``None`` or callable; otherwise a ``TypeError`` naming it
    (before any work, rather than at the first progress report)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"{name} must be callable or None, got {callback!r}")
    return callback


def real_number(value, name: str, *, minimum: float | None = None,
                positive: bool = False) -> float:
    """``value`` as a finite ``float``, positive when ``positive``, at least ``minimum``
    when given; raises a ``TypeError`` for a non-number (a ``bool`` included) and a
    ``ValueError`` for NaN, an infinity or a value out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type "
                        f"{type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}")
    return value


def power_of_two_scale(array: np.ndarray) -> float:
    """The power of two by which ``array`` is divided so that its largest absolute value
    lies near 1, or 1.0 when it already lies within :data:`ORDINARY_MAGNITUDES` or the
    array is all zero.

    Dividing by a power of two is exact in floating point (away from subnormal numbers), so
    a function that rescales its inputs by this factor and multiplies its results back
    computes on images of 1e-30 or 1e30 what it computes on ordinary ones, and leaves
    ordinary images bit for bit as they were.
    """
    largest = float(np.max(np.abs(array)))
    low, high = ORDINARY_MAGNITUDES
    if largest == 0 or low <= largest <= high:
        return 1.0
    return 2.0 ** math.floor(math.log2(largest))


def rescaled(array: np.ndarray) -> tuple[np.ndarray, float]:
    """``array`` divided by its :func:`power_of_two_scale` (the same array when that is
    1), and the scale."""
    scale = power_of_two_scale(array)
    if scale == 1.0:
        return array, scale
    # in float64, where every power of two psfkit can meet is a normal number
    return (array.astype(np.float64) / scale).astype(array.dtype), scale


def _non_finite_fields(value, path: str):
    """The dotted names of the non-finite numbers held by ``value`` (arrays, numbers, and
    the fields, items and entries of dataclasses, dicts, lists and tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _non_finite_fields(getattr(value, item.name), f"{path}.{item.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite_fields(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _non_finite_fields(item, f"{path}[{index}]")
    elif isinstance(value, (np.ndarray, np.generic, numbers.Number)) and not isinstance(
            value, bool):
        array = np.asarray(value)
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            yield path


#: What :func:`finite_result` advises by default.
_USABLE_SIGNAL = ("check that they hold a usable signal (not constant, not pure noise) and "
                  "report the case if they do")


def finite_result(result, function: str, *, skip: tuple[str, ...] = (),
                  fix: str = _USABLE_SIGNAL):
    """``result`` itself once every number it holds is finite; otherwise a ``ValueError``
    naming ``function``, the first non-finite field and the ``fix``.

    ``skip`` names top-level fields (of a dataclass result) that may hold NaN by design,
    e.g. a per-bead table whose unmeasured beads have no flux.
    """
    if dataclasses.is_dataclass(result):
        parts = [(f.name, getattr(result, f.name)) for f in dataclasses.fields(result)
                 if f.name not in skip]
    else:
        parts = [("", result)]
    for name, value in parts:
        for path in _non_finite_fields(value, name):
            raise ValueError(f"{function} computed a non-finite {path or 'result'} (NaN or "
                             f"infinite) from these inputs; {fix}")
    return result


def matching_pair(sharp: np.ndarray, blurred: np.ndarray, *, minimum: int = 8,
                  channels: bool = False) -> None:
    """Refuse a ``sharp``/``blurred`` pair that differ in shape or that has fewer than
    ``minimum`` pixels along an axis (the last excluded when it holds ``channels``)."""
    if sharp.shape != blurred.shape:
        raise ValueError(f"sharp and blurred differ in shape: {sharp.shape} and "
                         f"{blurred.shape}; pass two views of the same scene, cropped alike")
    spatial = sharp.shape[:-1] if channels else sharp.shape
    if any(n < minimum for n in spatial):
        raise ValueError(f"sharp and blurred of shape {sharp.shape} are too small: at least "
                         f"{minimum} pixels per axis")
