"""Input checking shared by every public function: the one place that turns user input
(arrays, counts, numbers, shapes, spacings, callbacks) into what the core computes on, or
raises a clear ``TypeError``/``ValueError`` naming the argument; the exact power-of-two
rescaling of images of extreme magnitude; and the finiteness check every result passes
before it is returned or written."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Iterable

import numpy as np


def as_float_array(
    array,
    name: str = "image",
    *,
    ndim: tuple[int, ...] = (2, 3),
    dtype=np.float32,
) -> np.ndarray:
    """Return ``array`` as a finite, non-empty float array of an allowed dimensionality.

    The input is never modified: when it already has the right dtype the same memory is
    returned, so callers must not write into the result.
    """
    if hasattr(array, "compute") and not isinstance(array, np.ndarray):
        array = array.compute()  # dask and other lazy arrays
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose mask psfkit would ignore; pass "
                        f"array.filled(value) with a value that suits the image")
    array = np.asarray(array)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real-valued, got complex dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if ndim and array.ndim not in ndim:
        allowed = " or ".join(f"{n}D" for n in ndim)
        raise ValueError(f"{name} must be {allowed}, got {array.ndim}D with shape {array.shape}")
    if not all_finite(array):
        raise ValueError(f"{name} contains NaN or infinite values")
    with np.errstate(over="ignore"):  # an overflow is reported below, by name
        result = array.astype(dtype, copy=False)
    if result is not array and not all_finite(result):
        kind, limit = np.dtype(dtype).name, np.finfo(dtype).max
        raise ValueError(f"{name} has values beyond {kind}'s range (±{limit:.3g}); rescale "
                         f"it, e.g. divide by its largest absolute value")
    return result


#: Samples checked at a time by :func:`all_finite`, so the check never needs a mask the size
#: of the whole array.
FINITE_CHECK_SAMPLES = 2**22


def all_finite(array: np.ndarray, slab_samples: int = FINITE_CHECK_SAMPLES) -> bool:
    """Whether every value of ``array`` is finite, checked in slabs of about
    ``slab_samples`` along the first axis."""
    if not np.issubdtype(array.dtype, np.inexact):
        return True
    if array.ndim == 0 or array.size <= slab_samples:
        return bool(np.isfinite(array).all())
    rows = max(1, slab_samples // max(1, array.size // array.shape[0]))
    return all(bool(np.isfinite(array[start:start + rows]).all())
               for start in range(0, array.shape[0], rows))


def odd_shape(shape, ndim: int, name: str = "shape") -> tuple[int, ...]:
    """Normalise a kernel shape (an int or a tuple) to a tuple of odd positive ints."""
    if np.isscalar(shape):
        shape = (int(shape),) * ndim
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} entries, got {shape}")
    if any(s < 1 or s % 2 == 0 for s in shape):
        raise ValueError(f"{name} must be odd and positive along every axis, got {shape}")
    return shape


# ------------------------------------------------------------------ keyword arguments


def whole_number(value, name: str, minimum: int | None = 0, maximum: int | None = None,
                 why: str = "") -> int:
    """``value`` as an ``int`` of at least ``minimum`` (any int when it is ``None``) and at
    most ``maximum`` (no bound when it is ``None``; ``why`` then says where the bound comes
    from, in the message).

    Python and NumPy integers are accepted; a ``bool``, a float (even ``5.0`` or ``inf``: a
    float count is usually a computed value the caller should round on purpose) or anything
    else raises a ``TypeError``, a number out of range a ``ValueError``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an int <= {maximum}, got {value}{why}")
    return value


def positive_int(value, name: str) -> int:
    """``value`` as an ``int`` >= 1 (see :func:`whole_number`)."""
    return whole_number(value, name, minimum=1)


def real_number(value, name: str, *, minimum: float | None = None,
                maximum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite ``float``: above 0 when ``positive``, within ``minimum`` and
    ``maximum`` when given. A non-number (a ``bool`` included) raises a ``TypeError``; NaN,
    an infinity or a value out of range a ``ValueError`` naming ``name`` and the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type "
                        f"{type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if minimum is not None and value < minimum and maximum is None:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f"{minimum:g} <= "
        raise ValueError(f"{name} must satisfy {low}{name} <= {maximum:g}, got {value:g}")
    return value


def flag(value, name: str) -> bool:
    """``value`` as a ``bool``; anything but ``True``/``False`` (a string such as ``"no"`` is
    truthy) raises a ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} of type "
                        f"{type(value).__name__}")
    return bool(value)


def pixel_position(value, shape, name: str = "centre") -> np.ndarray:
    """``value`` as one finite float per axis of an array of ``shape``, in its pixel
    indices and within it (from -0.5 to ``n - 0.5``); a ``TypeError`` for entries that are
    not numbers, a ``ValueError`` naming ``name`` otherwise."""
    ndim = len(shape)
    try:
        position = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {ndim} numbers (pixel indices), got "
                        f"{value!r}") from None
    if position.shape != (ndim,):
        raise ValueError(f"{name} must have {ndim} coordinates, got {position.shape}")
    if not np.all(np.isfinite(position)):
        raise ValueError(f"{name} must be finite, got {position.tolist()}")
    if np.any(position < -0.5) or np.any(position > np.array(shape) - 0.5):
        raise ValueError(f"{name} {position.tolist()} lies outside the image {tuple(shape)}")
    return position


def optional_callable(value, name: str = "callback"):
    """``value`` unchanged when it is ``None`` or callable, else a ``TypeError`` naming
    ``name`` (checked once at the top of a public function, not where it is first called)."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a function or None, got {value!r} of type "
                        f"{type(value).__name__}")
    return value


def check_finite_result(array, what: str, fix: str) -> None:
    """``ValueError`` unless every value of ``array`` is finite: ``what`` names the result
    (e.g. "deconvolve's result"), ``fix`` says what to change. The last check of a public
    function before it returns or writes anything: a non-finite result is an error."""
    if not all_finite(np.asarray(array)):
        raise ValueError(f"{what} contains NaN or infinite values; {fix}")


def psf_fits(psf_shape, image_shape, psf_name: str = "psf", image_name: str = "image") -> None:
    """``ValueError`` naming both shapes unless the PSF is at most the image's size along
    every axis (the spatial axes: ``image_shape`` holds only those), the one rule of every
    deconvolution path."""
    psf_shape, image_shape = tuple(psf_shape), tuple(image_shape)
    if len(psf_shape) != len(image_shape) or any(
            k > n for k, n in zip(psf_shape, image_shape, strict=True)):
        raise ValueError(f"{psf_name} {psf_shape} is larger than the {image_name}'s spatial "
                         f"shape {image_shape}; crop the PSF to at most the image's size")


def float_output(out, shape, name: str = "out"):
    """``out`` unchanged when it can hold a float result of ``shape``: anything with
    ``shape``, ``dtype`` and slice assignment, of a float32 or float64 dtype (an integer
    or float16 array would truncate or overflow the result silently)."""
    if not (hasattr(out, "shape") and hasattr(out, "dtype") and hasattr(out, "__setitem__")):
        raise TypeError(f"{name} must be an array (ndarray, memmap, zarr...) with shape "
                        f"and dtype, got {type(out).__name__}")
    dtype = np.dtype(out.dtype)
    if dtype.kind != "f" or dtype.itemsize < 4:
        raise TypeError(f"{name} must have dtype float32 or float64, got {dtype}; the "
                        f"result would be truncated")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    return out


def available_memory() -> int:
    """Bytes of memory available to a new allocation on this machine: psutil's
    ``available`` when psutil is installed (it counts reclaimable caches), else the free
    physical pages."""
    try:
        import psutil
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.virtual_memory().available)


def fits_in_memory(needed_bytes: float, what: str, fix) -> None:
    """The one memory check of psfkit: a ``ValueError`` saying that ``what`` needs about
    ``needed_bytes``, more than :func:`available_memory`, and ``fix``, before the work
    starts (instead of a raw ``MemoryError`` or swapping later). ``fix`` is the advice, or
    a function of the available bytes that gives it (a block size that fits, say)."""
    available = available_memory()
    if needed_bytes > available:
        advice = fix(available) if callable(fix) else fix
        raise ValueError(f"{what} needs about {needed_bytes / 2**30:.1f} GiB, more than the "
                         f"{available / 2**30:.1f} GiB available; {advice}")


# ------------------------------------------- shapes, spacings, pairs, rescaling, results

#: Largest absolute values for which :func:`power_of_two_scale` leaves an image alone:
#: from 2**-20 (about 1e-6) to 2**20 (about 1e6), where no step of psfkit under- or
#: overflows in float32, so that ordinary images are processed exactly as given.
ORDINARY_MAGNITUDES = (2.0**-20, 2.0**20)


#: The largest ratio between the pixel spacings of two axes that :func:`per_axis_spacing`
#: accepts: a microscope's voxels are at most ~100 times deeper than wide, and beyond 1e6 a
#: kernel a few pixels wide along one axis is a millionth of a pixel along another (an
#: isotropic fit's per-axis widths then under- or overflow).
MAX_SPACING_RATIO = 1e6


def per_axis_spacing(spacing, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """A pixel ``spacing`` (one number, or one per axis) as ``ndim`` positive finite floats;
    ``None`` gives ones. Raises a ``ValueError`` naming ``name`` for another number of
    entries or axes that differ by more than :data:`MAX_SPACING_RATIO`, a ``TypeError`` for
    entries that are not numbers."""
    if spacing is None:
        return (1.0,) * ndim
    entries = np.atleast_1d(np.asarray(spacing, dtype=object)).ravel().tolist()
    if len(entries) == 1:
        entries = entries * ndim
    if len(entries) != ndim:
        raise ValueError(f"{name} must be one number or {ndim} (one per axis), got {spacing!r}")
    spacing = tuple(real_number(s, name, positive=True) for s in entries)
    # in logarithms: the ratio of 1e300 to 1e-300 itself overflows
    orders = math.log10(max(spacing)) - math.log10(min(spacing))
    if orders > math.log10(MAX_SPACING_RATIO):
        raise ValueError(f"{name} {spacing} differs by a factor of 1e{orders:.0f} between "
                         f"axes, more than {MAX_SPACING_RATIO:g}: no voxel is that "
                         f"anisotropic; check that every entry is in the same unit")
    return spacing


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


def magnitude_exponent(array: np.ndarray, ordinary: tuple[float, float]) -> int:
    """0 when the largest absolute value of ``array`` lies within ``ordinary`` (a ``(low,
    high)`` range) or the array is all zero; else the exponent ``e`` with that largest
    value in ``[2**(e - 1), 2**e)`` (:func:`math.frexp`, exact). The one rule by which
    psfkit decides to rescale an image of extreme magnitude by a power of two."""
    largest = max(float(np.max(array)), -float(np.min(array)))
    low, high = ordinary
    if largest == 0 or low <= largest <= high:
        return 0
    return math.frexp(largest)[1]


def power_of_two_scale(array: np.ndarray) -> float:
    """The power of two by which ``array`` is divided so that its largest absolute value
    lies in ``[1, 2)``, or 1.0 when it already lies within :data:`ORDINARY_MAGNITUDES` or
    the array is all zero (:func:`magnitude_exponent`).

    Dividing by a power of two is exact in floating point (away from subnormal numbers), so
    a function that rescales its inputs by this factor and multiplies its results back
    computes on images of 1e-30 or 1e30 what it computes on ordinary ones, and leaves
    ordinary images bit for bit as they were.
    """
    exponent = magnitude_exponent(array, ORDINARY_MAGNITUDES)
    return 1.0 if exponent == 0 else 2.0 ** (exponent - 1)


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
