"""Input checking shared by every public function: one place that turns user input into
a float32 array or raises a clear ``TypeError``/``ValueError``."""

from __future__ import annotations

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
