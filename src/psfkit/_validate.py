"""Input checking shared by every public function: one place that turns user input into
a float32 array or raises a clear ``TypeError``/``ValueError``."""

from __future__ import annotations

import numbers
import os

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


def _is_real_number(value) -> bool:
    """Whether ``value`` is a real scalar number (a Python or NumPy int or float, not a
    bool, a string or an array)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def whole_number(value, name: str, minimum: int = 0) -> int:
    """``value`` as an ``int`` >= ``minimum``. A float, even an integral one like ``5.0``,
    is a ``TypeError``: a float count is usually a computed value that the caller should
    round on purpose. Below ``minimum`` is a ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type "
                        f"{type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def positive_int(value, name: str) -> int:
    """``value`` as an ``int`` >= 1 (see :func:`whole_number`)."""
    return whole_number(value, name, minimum=1)


def finite_float(value, name: str, minimum: float | None = None,
                 maximum: float | None = None) -> float:
    """``value`` as a finite ``float`` with ``minimum <= value <= maximum`` (either bound
    may be omitted); ``TypeError`` when it is not a real number, ``ValueError`` when it is
    NaN, infinite or out of range. The message names ``name`` and the range."""
    if not _is_real_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} of type "
                        f"{type(value).__name__}")
    result = float(value)
    if not np.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result}")
    if maximum is None and minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {result:g}")
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        low = "" if minimum is None else f"{minimum:g} <= "
        raise ValueError(f"{name} must satisfy {low}{name} <= {maximum:g}, got {result:g}")
    return result


def positive_float(value, name: str) -> float:
    """``value`` as a finite ``float`` > 0 (see :func:`finite_float`)."""
    result = finite_float(value, name)
    if not result > 0:
        raise ValueError(f"{name} must be > 0, got {result:g}")
    return result


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
