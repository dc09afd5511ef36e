"""Sub-pixel shifts: the translation between two images, and the centroid of a kernel.

Convention everywhere in psfkit: ``moving`` is ``reference`` translated by ``shift``, i.e.
``moving(x) = reference(x - shift)``; a positive shift moves content towards higher indices.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_float_array


def _tukey(n: int, alpha: float = 0.25) -> np.ndarray:
    """A flat-topped window whose cosine tapers cover ``alpha`` of the length."""
    if n < 3 or alpha <= 0:
        return np.ones(n, dtype=np.float32)
    x = np.linspace(0.0, 1.0, n)
    window = np.ones(n)
    edge = alpha / 2
    low, high = x < edge, x > 1 - edge
    window[low] = 0.5 * (1 - np.cos(np.pi * x[low] / edge))
    window[high] = 0.5 * (1 - np.cos(np.pi * (1 - x[high]) / edge))
    return window.astype(np.float32)


def edge_window(shape, alpha: float = 0.25) -> np.ndarray:
    """Separable Tukey window that fades an array to zero at its borders."""
    window = np.ones(shape, dtype=np.float32)
    for axis, n in enumerate(shape):
        profile = _tukey(n, alpha)
        window *= profile.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return window


#: Largest sub-pixel refinement factor of :func:`estimate_shift`: 1/1000 px is far below
#: any real image's registration error, and the refinement's cost grows with the factor.
MAX_UPSAMPLE = 1000


def estimate_shift(
    reference: np.ndarray, moving: np.ndarray, *, upsample: int = 100
) -> np.ndarray:
    """Translation of ``moving`` relative to ``reference``, to about ``1 / upsample`` px.

    Phase correlation of the two images after removing their means and fading their
    borders with a Tukey window, so content running off the frame does not bias the peak.
    Blur does not move the peak as long as the kernel is centred, which makes this suitable
    for a sharp/blurred pair.

    Returns
    -------
    (D,) ndarray of float
        ``shift`` such that ``moving(x) ≈ reference(x - shift)``.
    """
    from skimage.registration import phase_cross_correlation

    reference = as_float_array(reference, "reference")
    moving = as_float_array(moving, "moving")
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or not (
            1 <= upsample <= MAX_UPSAMPLE):
        raise ValueError(f"upsample must be a whole number from 1 to {MAX_UPSAMPLE}, got "
                         f"{upsample!r}")
    if reference.shape != moving.shape:
        raise ValueError(f"reference and moving must have one shape, got {reference.shape} "
                         f"and {moving.shape}")
    window = edge_window(reference.shape)
    a = (reference - reference.mean()) * window
    b = (moving - moving.mean()) * window
    for name, faded in (("reference", a), ("moving", b)):
        if not faded.any():  # phase correlation would divide by zero
            raise ValueError(f"{name} has no contrast away from its borders (it is constant "
                             f"or too small, shape {faded.shape}); a shift cannot be measured")
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    return -np.asarray(shift, dtype=float)


def centroid(array: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the positive part of ``array``, in pixel indices."""
    weights = np.clip(np.asarray(array, dtype=np.float64), 0, None)
    total = weights.sum()
    if total <= 0:
        raise ValueError("cannot locate the centre of an array with no positive values")
    grids = np.indices(weights.shape, sparse=True)
    return np.array([float((g * weights).sum() / total) for g in grids])
