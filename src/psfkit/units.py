"""Physical units: a PSF measured or modelled on one voxel grid, resampled to an image's
(:func:`resample_psf`).

A PSF array holds the light collected by each voxel, i.e. the continuous PSF integrated
over the voxel. Resampling keeps that meaning: along each axis the cumulative sum of the
PSF, known exactly at the old voxel edges, is interpolated at the new voxel edges with a
cubic spline and differenced. Each new voxel then receives exactly the light of the
continuous interpolant inside it — an area-weighted rebinning when the new voxels are
larger, a smooth subdivision when they are smaller — so the flux is preserved and a PSF
that is already on the target grid comes back unchanged. The spline has not-a-knot ends,
which assume nothing about the light at the PSF's border (a crop of a widefield PSF has
much). The axes are resampled one after the other (the voxels are boxes, so the integral
separates).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.interpolate

from ._validate import as_float_array
from .point_source import fwhm
from .psf import PsfWarning

__all__ = ["UndersamplingWarning", "resample_psf"]

#: A PSF is undersampled on a grid when its FWHM spans fewer voxels than this on some
#: axis: below about two voxels per FWHM the grid no longer carries the PSF's shape
#: (Nyquist sampling of a Gaussian-like peak).
UNDERSAMPLED_FWHM = 2.0

#: Most voxels :func:`resample_psf` produces (2**26, 512 MB in float64, well beyond any PSF):
#: a larger result comes from spacings in two different units, and is refused by name.
MAX_RESAMPLED_VOXELS = 2**26


class UndersamplingWarning(PsfWarning):
    """The PSF is narrower than about two voxels of the grid it was resampled to."""


def voxel_spacing(spacing, ndim: int, name: str) -> np.ndarray:
    """``spacing`` as ``ndim`` positive finite voxel sizes (a scalar means the same on
    every axis); a ``ValueError`` naming ``name`` otherwise."""
    try:
        values = np.asarray(spacing, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or one number per axis, got "
                         f"{spacing!r}") from None
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,):
        raise ValueError(f"{name} must have one voxel size per axis of the PSF ({ndim}), "
                         f"got {len(values.ravel())}: {spacing!r}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{name} must be positive and finite on every axis, got "
                         f"{spacing!r}")
    return values


def _nearest_odd(length: float) -> int:
    """The odd voxel count whose extent is nearest to ``length`` voxels (at least 1; a
    tie goes to the larger, which keeps all the light)."""
    return max(1, 2 * int(np.floor((length - 1) / 2 + 0.5)) + 1)


def _resampled_shape(shape, psf_spacing, image_spacing) -> tuple[int, ...]:
    """The odd shape covering ``shape`` voxels of ``psf_spacing`` on the ``image_spacing``
    grid; a ``ValueError`` naming both spacings when it has more than
    :data:`MAX_RESAMPLED_VOXELS` voxels."""
    # Python floats: an extreme ratio becomes inf (refused below) without a numpy warning
    lengths = [n * float(a) / float(b)
               for n, a, b in zip(shape, psf_spacing, image_spacing, strict=True)]
    if math.prod(lengths) > MAX_RESAMPLED_VOXELS:
        raise ValueError(f"psf_spacing {tuple(psf_spacing.tolist())} and image_spacing "
                         f"{tuple(image_spacing.tolist())} would give a PSF of about "
                         f"{math.prod(lengths):.3g} voxels (at most {MAX_RESAMPLED_VOXELS}); "
                         f"give both spacings in the same unit")
    return tuple(_nearest_odd(length) for length in lengths)


def _voxel_edges(count: int, step: float) -> np.ndarray:
    """Edges of ``count`` voxels of size ``step``, with the centre voxel's centre at 0."""
    return (np.arange(count + 1) - count // 2 - 0.5) * step


def resample_axis(array: np.ndarray, axis: int, old_step: float, new_step: float,
                  new_count: int) -> np.ndarray:
    """Resample the voxel integrals of ``array`` along ``axis`` from voxels of
    ``old_step`` to ``new_count`` voxels of ``new_step``, centre voxel on centre voxel.

    The cumulative sum at the old edges is interpolated at the new edges (a not-a-knot
    cubic spline, flat outside the old extent) and differenced, so the light inside the old
    extent is kept exactly. Where the PSF falls to zero (an Airy ring) the spline may dip
    below it by up to about 1e-3 of the peak.
    """
    old_edges = _voxel_edges(array.shape[axis], old_step)
    zero = np.zeros_like(np.take(array, [0], axis=axis))
    cumulative = np.concatenate([zero, np.cumsum(array, axis=axis)], axis=axis)
    interpolant = scipy.interpolate.CubicSpline(old_edges, cumulative, axis=axis)
    new_edges = np.clip(_voxel_edges(new_count, new_step), old_edges[0], old_edges[-1])
    return np.diff(interpolant(new_edges), axis=axis)


def _warn_if_undersampled(psf: np.ndarray, psf_spacing, image_spacing) -> None:
    """Warn when the PSF's FWHM spans fewer than :data:`UNDERSAMPLED_FWHM` image voxels
    (on the axes long enough to measure it: a single plane has no width to lose)."""
    widths = fwhm(psf) * psf_spacing / image_spacing
    narrow = [axis for axis, width in enumerate(widths)
              if psf.shape[axis] >= 3 and width < UNDERSAMPLED_FWHM]
    if narrow:
        described = ", ".join(f"{widths[axis]:.2g} image voxels on axis {axis}"
                              for axis in narrow)
        warnings.warn(
            f"the PSF is undersampled on the image grid: its FWHM is {described} (below "
            f"{UNDERSAMPLED_FWHM:g}); the resampled PSF keeps the flux but not the shape, "
            f"and deconvolution cannot restore detail finer than the voxels",
            UndersamplingWarning, stacklevel=3)


def resample_psf(psf, psf_spacing, image_spacing) -> np.ndarray:
    """Resample a PSF from its own voxel size to an image's, preserving its flux.

    Parameters
    ----------
    psf : (N1, ..., ND) array_like
        The PSF, 2D or 3D, centred on its centre voxel ``shape // 2`` (an even shape
        comes back odd, with that voxel in the middle). Its values are taken as the light
        collected by each voxel; negative values (noise) are set to zero first.
    psf_spacing, image_spacing : float or (D,) sequence of float
        Voxel size of the PSF and of the image per axis, in one unit (e.g. µm); a scalar
        means isotropic voxels. Anisotropic voxels (a coarser z step) are allowed.

    Returns
    -------
    (M1, ..., MD) ndarray of float32
        The PSF on the image's grid: odd shape covering the same physical extent (the odd
        ``Mi`` nearest to ``Ni * psf_spacing[i] / image_spacing[i]``), centre on the centre
        voxel, nonnegative, unit sum. An even ``Ni * psf_spacing[i] / image_spacing[i]``
        rounds up to the next odd count.

    Warns
    -----
    UndersamplingWarning
        When the PSF's FWHM spans fewer than two image voxels along some axis.

    Notes
    -----
    Along each axis the cumulative sum of the PSF is interpolated at the image's voxel
    edges with a cubic spline and differenced, which integrates the continuous
    interpolant over every target voxel: downsampling rebins by area (no aliasing from
    point sampling), upsampling subdivides smoothly, and equal spacings return the PSF
    unchanged (up to the normalisation). The spline's small dips below zero where the
    PSF vanishes (up to about 1e-3 of the peak) are clipped before the normalisation.

    Examples
    --------
    >>> from psfkit import make_psf
    >>> fine = make_psf("gaussian", (61, 61), sigma=8.0)          # 0.025 µm pixels
    >>> coarse = resample_psf(fine, 0.025, 0.1)
    >>> coarse.shape, round(float(coarse.sum()), 5)
    ((15, 15), 1.0)
    """
    psf = np.clip(as_float_array(psf, "psf", dtype=np.float64), 0.0, None)
    psf_spacing = voxel_spacing(psf_spacing, psf.ndim, "psf_spacing")
    image_spacing = voxel_spacing(image_spacing, psf.ndim, "image_spacing")
    if not psf.sum() > 0:
        raise ValueError("psf has no positive values; there is no light to resample")
    counts = _resampled_shape(psf.shape, psf_spacing, image_spacing)
    _warn_if_undersampled(psf, psf_spacing, image_spacing)
    resampled = psf
    for axis, count in enumerate(counts):
        resampled = resample_axis(resampled, axis, psf_spacing[axis], image_spacing[axis],
                                  count)
    # the spline dips below zero by up to ~1e-3 of the peak at the PSF's zeros: clip them
    resampled = np.clip(resampled, 0.0, None)
    return (resampled / resampled.sum()).astype(np.float32)
