"""One point source: :func:`prepare_psf` turns a photo of a bead, an LED or a star into a
clean, centred, normalised PSF, and with ``return_info=True`` a :class:`PsfReport` of what it
found; :class:`SaturationWarning`, :class:`TruncationWarning` and :class:`BackgroundWarning`
say when the source cannot give a faithful PSF.

The source is found (:func:`_source_seed`), checked (:func:`_check_background`,
:func:`_check_saturation`, :func:`_check_truncation`), cropped and finished with the steps of
:mod:`psfkit.point_source`, which :func:`psfkit.beads.average_beads` shares.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._physical import in_spacing_units
from ._validate import finite_result, kernel_shape, pixel_position
from .point_source import (
    SUPPORT_MARGIN,
    SUPPORT_THRESHOLD,
    _centred_crop,
    _clean_frame,
    _saturation_level,
    _soft,
    _spacing,
    finish_psf,
    fwhm,
    significance,
    source_support,
    weighted_centre,
)

__all__ = [
    "BackgroundWarning",
    "PsfReport",
    "PsfWarning",
    "SaturationWarning",
    "TruncationWarning",
    "prepare_psf",
]


class PsfWarning(UserWarning):
    """Base class of the warnings about a measured PSF."""


class SaturationWarning(PsfWarning):
    """The point source reached the camera's saturation level: its core is flattened."""


class TruncationWarning(PsfWarning):
    """The point source runs off the frame: part of the PSF is missing."""


class BackgroundWarning(PsfWarning):
    """The frame holds no pure-background region: the source's light fills it, so the fitted
    background may hold some of that light."""


@dataclass
class PsfReport:
    """What :func:`prepare_psf` found, returned with ``return_info=True``.

    Attributes
    ----------
    centre : (D,) ndarray
        Sub-pixel centre (intensity centroid) of the source in the input's pixel indices.
    snr : float
        Peak signal-to-noise ratio: background-subtracted peak over the noise sigma.
    fwhm : (D,) ndarray
        Full width at half maximum of the prepared PSF along each axis, in pixels.
    fwhm_physical : (D,) ndarray or None
        ``fwhm * spacing``, in the units of ``spacing``; ``None`` when no ``spacing`` was
        given (the rule of every ``*_physical`` field, see :class:`psfkit.KernelFit`).
    background : float
        Mean background level subtracted under the source.
    noise_sigma : float
        Noise standard deviation of the input (background region), in input units.
    flux : float
        Background-subtracted sum of the source inside its support, in input units.
    hot_pixels : int
        Number of hot pixels replaced.
    saturated, truncated, background_uncertain : bool
        Whether a :class:`SaturationWarning` / :class:`TruncationWarning` /
        :class:`BackgroundWarning` was issued.
    warnings : list of str
        The warning messages, also issued through :func:`warnings.warn`.
    """

    centre: np.ndarray
    snr: float
    fwhm: np.ndarray
    fwhm_physical: np.ndarray | None
    background: float
    noise_sigma: float
    flux: float
    hot_pixels: int
    saturated: bool = False
    truncated: bool = False
    background_uncertain: bool = False
    warnings: list[str] = field(default_factory=list)


def _warn(messages: list[str], category, message: str) -> None:
    """Record ``message`` and issue it as a ``category`` warning.

    Called from the helpers of :func:`prepare_psf`, so ``stacklevel=4`` points the warning
    at the line that called :func:`prepare_psf`.
    """
    messages.append(message)
    warnings.warn(message, category, stacklevel=4)


# -- prepare_psf, step by step ------------------------------------------------------------


def _source_seed(z: np.ndarray, centre) -> tuple[int, ...]:
    """The pixel a source's support grows from: the brightest pixel of the significance map
    ``z``, or the brightest within 5 pixels of a ``centre`` hint. Refuses a seed less than
    ``2 * SUPPORT_THRESHOLD`` sigmas up (no point source)."""
    if centre is None:
        seed = np.unravel_index(int(np.argmax(z)), z.shape)
    else:
        centre = pixel_position(centre, z.shape, "centre")
        whole = np.round(centre).astype(int)
        box = tuple(slice(max(c - 5, 0), c + 6) for c in whole)
        local = np.unravel_index(int(np.argmax(z[box])), z[box].shape)
        seed = tuple(int(i + b.start) for i, b in zip(local, box, strict=True))
    peak_z = float(z[seed])
    if peak_z < 2 * SUPPORT_THRESHOLD:
        raise ValueError(
            f"no point source found in image: the brightest spot is only {peak_z:.1f} noise "
            "sigmas above the background; pass a frame holding a bead, LED or star, or its "
            "centre")
    return seed


def _check_background(filled: bool, messages: list[str]) -> bool:
    """Warns when the source ``filled`` the frame, so that no part of it is pure background
    (:func:`psfkit.point_source.fit_background`); returns ``filled``."""
    if filled:
        _warn(messages, BackgroundWarning,
              "the point source fills the frame: no part of it is pure background, so the "
              "background was fitted on its darkest part and may hold some of the source's "
              "light; crop wider, or pass the camera's background level as background=")
    return filled


def _check_saturation(raw: np.ndarray, core: np.ndarray, saturation,
                      messages: list[str]) -> bool:
    """Whether the source's ``core`` reaches the saturation level; warns when it does."""
    level = _saturation_level(raw, saturation)
    saturated = bool(level is not None and np.any(raw.astype(np.float64)[core] >= level))
    if saturated:
        _warn(messages, SaturationWarning,
              f"the point source is saturated (pixels at {level:g}): its core is "
              "flattened and the PSF will be too wide; take a shorter exposure")
    return saturated


def _check_truncation(core: np.ndarray, reach: np.ndarray, half, shape,
                      messages: list[str]) -> bool:
    """Whether the source's ``core`` touches the frame edge or ``reach``es (per axis, from
    its centre) beyond the crop's ``half`` size; warns when it does."""
    touches = any(np.any(np.take(core, [0, -1], axis=a)) for a in range(core.ndim))
    truncated = touches or bool(np.any(reach > np.array(half)))
    if truncated:
        where = ("the frame edge" if touches
                 else f"the requested shape {kernel_shape(shape, core.ndim)}")
        _warn(messages, TruncationWarning,
              f"the point source runs beyond {where}: part of the PSF is missing")
    return truncated


def _psf_half(reach: np.ndarray, shape, ndim: int) -> list[int]:
    """Half-size of the PSF crop: ``shape // 2``, or where the source sinks into the noise
    (its ``reach`` from the centre) plus a margin when no ``shape`` is given."""
    if shape is None:
        return [int(np.ceil(r + SUPPORT_MARGIN + 1)) for r in reach]
    return [s // 2 for s in kernel_shape(shape, ndim)]


def _source_flux(region: np.ndarray, sigma: float) -> float:
    """Sum of the background-free ``region`` inside its centred source's (softened) support."""
    z = significance(region, sigma)
    _, support = source_support(z, tuple(n // 2 for n in region.shape))
    return float(np.sum(region * _soft(support)))


# -- public functions ---------------------------------------------------------------------


def prepare_psf(
    image,
    shape=None,
    *,
    background="auto",
    hot_pixels: bool = True,
    centre=None,
    saturation=None,
    spacing=None,
    return_info: bool = False,
):
    """Clean, centre and normalise a photo of one point source (bead, LED, star).

    Parameters
    ----------
    image : (M, N) or (P, M, N) ndarray
        The frame holding the point source; any real dtype. Not modified.
    shape : int or sequence of int, optional
        Odd output shape. ``None`` (default): from where the signal sinks into the noise
        (the support's extent around the centre, plus a margin), so that no tail noise is
        kept.
    background : {"auto", "plane", "constant"}, float or None
        ``"auto"``/``"plane"`` fits a plane (in 2D and 3D) to the pixels away from the
        source with 3-sigma clipping; ``"constant"`` a clipped mean; a number is a known
        level; ``None`` subtracts nothing.
    hot_pixels : bool
        Replace isolated hot pixels (see :func:`remove_hot_pixels`) before anything else.
    centre : sequence of float, optional
        Rough position of the source when the frame holds several (the brightest
        otherwise), e.g. a point clicked in napari.
    saturation : float, optional
        Camera saturation level. ``None``: detected as a flat top (four or more pixels at
        the maximum) or the integer type's maximum.
    spacing : float or sequence of float, optional
        Pixel spacing per axis (e.g. ``(0.3, 0.1, 0.1)`` µm), used for ``fwhm_physical``
        (``None`` without it).
    return_info : bool
        Return ``(psf, PsfReport)`` instead of the PSF alone. The default keeps the plain
        ndarray contract so the result can go straight into :func:`psfkit.deconvolve`.

    Returns
    -------
    psf : ndarray of float32
        Odd shape, nonnegative, unit sum, centred on the centre pixel ``shape // 2`` (see
        Notes for how the centre is defined).
    report : PsfReport
        Only with ``return_info=True``: centre found, SNR, FWHM, background, noise,
        flux, hot pixels and the warnings issued.

    Warns
    -----
    SaturationWarning
        The source's core reached the saturation level (the PSF is flattened).
    TruncationWarning
        The source touches the frame edge or extends beyond a requested ``shape``.
    BackgroundWarning
        The source fills the frame (no part of it is pure background), so the fitted
        background may hold some of its light.

    Notes
    -----
    Forward model: ``image = flux * psf(x - centre) + background(x) + noise``, plus hot
    pixels. Steps: hot pixels are replaced; the background is fitted away from the source
    and subtracted; the frame is smoothed by a Gaussian of 1 px and the connected region
    around the source more than 3 noise sigmas up, grown by 2 px, is its *support*; the
    centre is first the intensity centroid inside the support (signed weights, so noise
    does not bias it); the frame is shifted by the sub-pixel remainder with a band-limited
    (Fourier) interpolator and cropped. Then :func:`finish_psf`: a Wiener filter built from
    the crop's own power spectrum removes the noise at frequencies the optics do not pass
    (:func:`spectral_denoise`); everything outside the support is set to zero and pixels
    whose local signal is near the noise are damped (tail noise); negatives are clipped;
    the PSF is recentred (:func:`centre_offset`: on its centre of symmetry when it is
    point-symmetric within the noise, which is far more precise than a centroid, else on
    its centroid) and divided by its sum.

    Examples
    --------
    >>> from psfkit import make_psf
    >>> from psfkit.samples import bead_image
    >>> frame, _ = bead_image(make_psf("gaussian", (15, 15), sigma=2.0), (48, 48), count=1)
    >>> psf = prepare_psf(frame)
    >>> psf.shape[0] % 2, round(float(psf.sum()), 4), bool(psf.min() >= 0)
    (1, 1.0, True)
    """
    frame = _clean_frame(image, "image", background, hot_pixels)
    if spacing is not None:
        spacing = _spacing(spacing, frame.data.ndim)
    if shape is not None:
        shape = kernel_shape(shape, frame.data.ndim)
    messages: list[str] = []
    background_uncertain = _check_background(frame.filled, messages)
    z = significance(frame.data, frame.sigma)
    core, support = source_support(z, _source_seed(z, centre))
    found = weighted_centre(frame.data, support)
    saturated = _check_saturation(frame.raw, core, saturation, messages)
    reach = np.max(np.abs(np.argwhere(core) - found), axis=0)
    half = _psf_half(reach, shape, frame.data.ndim)
    region = _centred_crop(frame.data, found, half)
    truncated = _check_truncation(core, reach, half, shape, messages)
    psf, offset = finish_psf(region, frame.sigma)
    if not return_info:
        return finite_result(psf, "prepare_psf")
    widths = fwhm(psf)
    flux = _source_flux(region, frame.sigma)
    level = frame.background
    # intensities back in the input's units (the frame may have been rescaled exactly)
    report = PsfReport(
        centre=found + offset,
        snr=float(psf.max() * flux / frame.sigma),
        fwhm=widths,
        fwhm_physical=in_spacing_units(widths, spacing),
        background=float(np.mean(level[support]) if np.ndim(level) else level) * frame.scale,
        noise_sigma=float(frame.sigma) * frame.scale,
        flux=flux * frame.scale,
        hot_pixels=len(frame.hot_pixels),
        saturated=saturated,
        truncated=truncated,
        background_uncertain=background_uncertain,
        warnings=messages,
    )
    return finite_result(psf, "prepare_psf"), finite_result(report, "prepare_psf")
