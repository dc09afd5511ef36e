"""Measured PSFs: turn a photo of a bead, an LED or a star into a clean, centred, normalised
PSF (:func:`prepare_psf`), or average many beads of one image into one PSF
(:func:`average_beads`).

Forward model of a point-source frame: ``image = flux * psf(x - centre) + background(x) +
noise + hot pixels``, with ``background`` a constant or a plane, white read noise plus shot
noise, and isolated hot pixels. Both functions undo it in the same steps, each done in one
place below: replace hot pixels, fit and subtract the background away from the source, find
where the source rises above the noise (its *support*), measure the centre, shift it onto the
middle pixel with a band-limited interpolator, Wiener-filter the noise the optics cannot have
passed, cut the tails outside the support, clip to nonnegative and divide by the sum.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from ._progress import report
from ._validate import as_float_array, odd_shape
from .align import centroid
from .noise import MAD_TO_SIGMA, noise_sigma, rim
from .operators import (
    WORKERS,
    centre_embed,
    fast_shape,
    fourier_shift,
    periodic_crop,
    periodic_embed,
)

__all__ = [
    "BeadAverage",
    "PsfReport",
    "PsfWarning",
    "SaturationWarning",
    "TruncationWarning",
    "average_beads",
    "prepare_psf",
]

#: Gaussian smoothing (pixels) applied before deciding where a source rises above the noise.
SMOOTHING = 1.0
#: A smoothed pixel belongs to a source when it is this many (smoothed) noise sigmas up.
SUPPORT_THRESHOLD = 3.0
#: Distance (pixels) by which the support is grown so faint wings are kept.
SUPPORT_MARGIN = 2.0
#: Significant regions this close (pixels) to a PSF's core are part of it (Airy rings).
RING_GAP = 3.0


class PsfWarning(UserWarning):
    """Base class of the warnings about a measured PSF."""


class SaturationWarning(PsfWarning):
    """The point source reached the camera's saturation level: its core is flattened."""


class TruncationWarning(PsfWarning):
    """The point source runs off the frame: part of the PSF is missing."""


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
    fwhm_physical : (D,) ndarray
        ``fwhm * spacing``, in the units of ``spacing``.
    background : float
        Mean background level subtracted under the source.
    noise_sigma : float
        Noise standard deviation of the input (background region), in input units.
    flux : float
        Background-subtracted sum of the source inside its support, in input units.
    hot_pixels : int
        Number of hot pixels replaced.
    saturated, truncated : bool
        Whether a :class:`SaturationWarning` / :class:`TruncationWarning` was issued.
    warnings : list of str
        The warning messages, also issued through :func:`warnings.warn`.
    """

    centre: np.ndarray
    snr: float
    fwhm: np.ndarray
    fwhm_physical: np.ndarray
    background: float
    noise_sigma: float
    flux: float
    hot_pixels: int
    saturated: bool = False
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class BeadAverage:
    """The result of :func:`average_beads`.

    Attributes
    ----------
    psf : ndarray
        The averaged PSF: odd shape, nonnegative, unit sum, centred on ``shape // 2``.
    beads : dict of ndarray
        Per-bead table, one entry per detected bead: ``position`` (N, D) sub-pixel centres in
        pixel indices, ``accepted`` (N,) bool, ``reason`` (N,) str (``"accepted"`` or why the
        bead was rejected), ``flux`` (N,), ``snr`` (N,) peak signal-to-noise ratio.
    beads_used : int
        Number of beads averaged.
    spread : float
        Median relative L2 difference between one registered bead and the average: how much
        single beads vary (noise included).
    fwhm : (D,) ndarray
        FWHM of the averaged PSF per axis, in pixels; ``fwhm_physical`` is ``fwhm * spacing``.
    snr : float
        Peak SNR of the average (single-bead median SNR times ``sqrt(beads_used)``, about).
    spacing : (D,) ndarray
        Pixel spacing used (1 when not given).
    """

    psf: np.ndarray
    beads: dict
    beads_used: int
    spread: float
    fwhm: np.ndarray
    fwhm_physical: np.ndarray
    snr: float
    spacing: np.ndarray
    noise_sigma: float
    background: float
    warnings: list[str] = field(default_factory=list)


# -- the steps, each in one place ---------------------------------------------------------


def _full_structure(ndim: int) -> np.ndarray:
    """The full-connectivity structuring element (every pixel of the ``3**ndim`` block)."""
    return ndi.generate_binary_structure(ndim, ndim)


def _neighbour_offsets(ndim: int) -> np.ndarray:
    """The ``3**ndim - 1`` index offsets from a pixel to its neighbours, as (K, ndim)."""
    offsets = np.indices((3,) * ndim).reshape(ndim, -1).T - 1
    return offsets[np.any(offsets != 0, axis=1)]


def remove_hot_pixels(image: np.ndarray, sigma: float, *, threshold: float = 6.0,
                      ratio: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Replace isolated hot pixels by the median of their neighbours.

    A pixel is hot when it exceeds the brightest of its ``3**D - 1`` neighbours by more than
    ``threshold`` noise sigmas *and* rises ``ratio`` times higher above the background than
    that neighbour does. Optics cannot make such a spike (even a PSF sampled at half a pixel
    sigma peaks only ~4.4 times above its neighbours), so real peaks are kept.

    Returns the cleaned copy and the (K, D) indices of the replaced pixels.
    """
    ndim = image.ndim
    footprint = np.ones((3,) * ndim, dtype=bool)
    footprint[(1,) * ndim] = False
    # outside the frame counts as "no neighbour" (an edge copy would hide a hot edge pixel)
    brightest = ndi.maximum_filter(image, footprint=footprint, mode="constant",
                                   cval=-np.inf)
    level = float(np.median(image))
    hot = ((image - brightest > threshold * sigma)
           & (image - level > ratio * np.maximum(brightest - level, 0.0)))
    index = np.argwhere(hot)
    cleaned = image.copy()
    if len(index):
        around = index[:, None, :] + _neighbour_offsets(ndim)[None]
        inside = np.all((around >= 0) & (around < np.array(image.shape)), axis=-1)
        around = np.clip(around, 0, np.array(image.shape) - 1)
        values = np.where(inside, image[tuple(np.moveaxis(around, -1, 0))], np.nan)
        cleaned[tuple(index.T)] = np.nanmedian(values, axis=1)
    return cleaned, index


def _smoothed_noise(sigma: float, ndim: int) -> float:
    """Noise sigma after :data:`SMOOTHING` Gaussian smoothing of white noise of ``sigma``."""
    size = 2 * int(np.ceil(4 * SMOOTHING)) + 1
    delta = np.zeros((size,) * ndim)
    delta[(size // 2,) * ndim] = 1.0
    return float(sigma * np.linalg.norm(ndi.gaussian_filter(delta, SMOOTHING, mode="constant")))


def significance(image: np.ndarray, sigma: float) -> np.ndarray:
    """Smoothed, background-free ``image`` in units of its own noise sigma."""
    smoothed = ndi.gaussian_filter(image, SMOOTHING, mode="nearest")
    return smoothed / max(_smoothed_noise(sigma, image.ndim), 1e-30)


def fit_background(image: np.ndarray, sigma: float, model="auto", *, iterations: int = 2,
                   max_samples: int = 200_000) -> tuple[np.ndarray | float, np.ndarray]:
    """Background under the sources: a constant or a plane fitted away from them.

    Alternates between fitting the model to the pixels outside the source mask (clipping
    residuals beyond 3 sigma) and masking the pixels whose smoothed residual is significant,
    grown by a few pixels. ``model`` is ``"auto"``/``"plane"``, ``"constant"``, a number
    (a known level), or ``None`` (no background).

    Returns the background (a float or an array of ``image.shape``) and the source mask.
    """
    mask = np.zeros(image.shape, dtype=bool)
    if model is None or model == "none":
        return 0.0, mask
    if not isinstance(model, str):
        return float(model), mask
    if model not in ("auto", "plane", "constant"):
        raise ValueError(
            f"background must be 'auto', 'plane', 'constant', a number or None, got {model!r}")
    plane = model in ("auto", "plane")
    values = image.ravel()
    background: np.ndarray | float = float(np.median(image))
    stride = max(1, image.size // max_samples)
    for _ in range(iterations):
        residual = image - background
        keep = ~mask.ravel() & (np.abs(residual.ravel()) < 3 * sigma + 1e-30)
        if keep.sum() < max(20, image.ndim + 2):
            # almost everything is source: fall back to the outermost pixels
            return float(np.median(rim(image, width=1))), mask
        chosen = np.flatnonzero(keep)[::stride]
        if plane:
            background = _plane(image, chosen)
        else:
            background = float(values[chosen].mean())
        source = significance(image - background, sigma) > SUPPORT_THRESHOLD
        mask = ndi.binary_dilation(source, _full_structure(image.ndim), iterations=3)
    return background, mask


def _plane(image: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The least-squares plane through the pixels of ``image`` at the flat indices
    ``chosen``, as a float32 array of ``image.shape``. Coordinates are divided by the
    longest axis so the design matrix is well conditioned."""
    scale = max(max(image.shape) - 1, 1)
    coordinates = np.unravel_index(chosen, image.shape)
    design = np.stack([np.ones(chosen.size)] + [c / scale for c in coordinates], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, image.ravel()[chosen].astype(np.float64),
                                       rcond=None)
    plane = np.float32(coefficients[0])
    for axis, (c, n) in enumerate(zip(coefficients[1:], image.shape, strict=True)):
        ramp = (np.arange(n, dtype=np.float64) / scale).reshape(
            [-1 if a == axis else 1 for a in range(image.ndim)])
        plane = plane + (c * ramp).astype(np.float32)
    return np.broadcast_to(plane, image.shape).astype(np.float32)


def source_support(z: np.ndarray, seed, margin: float = SUPPORT_MARGIN, *,
                   rings: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The connected region around ``seed`` where ``z`` (a significance map) is above
    :data:`SUPPORT_THRESHOLD`, and that region grown by ``margin`` pixels.

    With ``rings > 0``, separate significant regions within ``rings`` pixels of it join
    it, so the rings of an Airy pattern (parted from the core by a dark ring) are kept.
    Returns ``(core, support)``, two boolean arrays of ``z.shape``.
    """
    above = z > SUPPORT_THRESHOLD
    seed = tuple(int(s) for s in seed)
    if not above[seed]:
        core = np.zeros(z.shape, dtype=bool)
        core[seed] = True
    else:
        # an opening cuts the one-pixel noise streaks that would otherwise join the source
        opened = ndi.binary_opening(above, ndi.generate_binary_structure(z.ndim, 1))
        if not opened[seed]:
            opened = above
        labels, _ = ndi.label(opened, _full_structure(z.ndim))
        core = labels == labels[seed]
        if rings > 0:
            near = _grow(core, rings)
            joined = np.unique(labels[near & opened])
            core = np.isin(labels, joined[joined > 0])
    return core, _grow(core, margin)


def _grow(mask: np.ndarray, distance: float) -> np.ndarray:
    """``mask`` grown by ``distance`` pixels (Euclidean), computed in its bounding box only."""
    box = ndi.find_objects(mask.astype(np.int8))
    if not box or box[0] is None:
        return mask.copy()
    reach = int(np.ceil(distance)) + 1
    window = tuple(slice(max(b.start - reach, 0), min(b.stop + reach, n))
                   for b, n in zip(box[0], mask.shape, strict=True))
    grown = np.zeros_like(mask)
    grown[window] = ndi.distance_transform_edt(~mask[window]) <= distance
    return grown


def _soft(support: np.ndarray) -> np.ndarray:
    """A support mask with edges softened over about a pixel (no hard cut in the tails)."""
    return np.clip(ndi.gaussian_filter(support.astype(np.float32), 0.7, mode="constant"), 0, 1)


def weighted_centre(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Intensity centroid of ``image`` inside ``window`` with signed weights (noise averages
    out instead of pulling the centre towards the window's middle)."""
    weights = np.where(window, image, 0.0).astype(np.float64)
    total = weights.sum()
    if not total > 0:
        raise ValueError("the source has no positive flux above the background")
    grids = np.indices(image.shape, sparse=True)
    return np.array([float((g * weights).sum() / total) for g in grids])


def _centred_crop(image: np.ndarray, centre, half) -> np.ndarray:
    """``image`` shifted so ``centre`` falls on the middle pixel of a ``2 * half + 1`` box."""
    centre = np.asarray(centre, dtype=float)
    whole = np.round(centre).astype(int)
    pad = 3
    region = centre_embed(image, [2 * (h + pad) + 1 for h in half], centre=whole).astype(
        np.float32, copy=False)
    fraction = centre - whole
    if np.any(np.abs(fraction) > 1e-6):
        region = fourier_shift(region, -fraction)
    return region[tuple(slice(pad, -pad) for _ in half)]


def register_to_template(image: np.ndarray, position, half, template: np.ndarray, *,
                         iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Refine a source's sub-pixel position by least-squares matching to ``template``.

    Minimises ``|| crop(position) - amplitude * template ||²`` over the amplitude and the
    position by Gauss-Newton steps on the linearised model
    ``crop ≈ amplitude * (template - step · grad(template))``; for white noise this is the
    maximum-likelihood position (the matched filter), far more precise than a centroid.
    Returns the refined position and the crop centred on it.
    """
    position = np.asarray(position, dtype=float).copy()
    gradients = np.gradient(template.astype(np.float64))
    if template.ndim == 1:
        gradients = [gradients]
    design = np.stack([template.ravel().astype(np.float64)]
                      + [-g.ravel() for g in gradients], axis=1)
    crop = _centred_crop(image, position, half)
    for _ in range(iterations):
        coefficients, *_ = np.linalg.lstsq(design, crop.ravel().astype(np.float64),
                                           rcond=None)
        if not coefficients[0] > 0:
            raise ValueError("the bead does not match the average")
        step = np.clip(coefficients[1:] / coefficients[0], -1.0, 1.0)
        position += step
        crop = _centred_crop(image, position, half)
        if np.max(np.abs(step)) < 1e-3:
            break
    return position, crop


def spectral_denoise(region: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """Wiener-filter white noise out of a PSF measurement, using its own spectrum.

    The PSF's power at each spatial frequency is estimated as the locally averaged power
    of ``region`` minus the white-noise power ``sigma² · size``; the gain
    ``signal / (signal + noise)`` keeps the frequencies the optics pass and removes the
    noise beyond them (an optical PSF is band-limited, its noise is not). Returns the
    filtered region and its remaining per-pixel noise sigma.
    """
    spectrum = scipy.fft.rfftn(region.astype(np.float64), workers=WORKERS)
    noise_power = sigma**2 * region.size
    power = np.abs(spectrum) ** 2
    # average over neighbouring frequencies (the last axis is half-length: wrap the rest)
    smoothed = ndi.uniform_filter(power, size=3, mode="wrap")
    smoothed = np.maximum(smoothed, 1e-300)
    gain = np.clip((smoothed - noise_power) / smoothed, 0.0, 1.0)
    filtered = scipy.fft.irfftn(spectrum * gain, region.shape, workers=WORKERS)
    weights = np.full(gain.shape, 2.0)
    weights[..., 0] = 1.0
    if region.shape[-1] % 2 == 0:
        weights[..., -1] = 1.0
    remaining = sigma * np.sqrt(np.sum(weights * gain**2) / np.sum(weights))
    return filtered.astype(np.float32), float(remaining)


def finish_psf(region: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Denoise, cut the tails outside the source's support, clip to nonnegative, recentre
    the centroid on the middle pixel and normalise to unit sum.

    ``region`` is background-free with the source near its middle; ``sigma`` is its noise.
    Returns the PSF and the centroid offset that was removed (source centroid in
    ``region`` minus the middle pixel).
    """
    middle = tuple(n // 2 for n in region.shape)
    region, sigma = spectral_denoise(region, sigma)
    z = significance(region, sigma)
    near = tuple(slice(max(m - 1, 0), m + 2) for m in middle)
    seed = np.unravel_index(np.argmax(z[near]), z[near].shape)
    seed = tuple(s + n.start for s, n in zip(seed, near, strict=True))
    _, support = source_support(z, seed, rings=RING_GAP)
    # Wiener-like shrinkage: pixels whose local (smoothed) signal is not well above the
    # noise are damped in proportion, which removes most tail noise at little cost
    local = np.clip(ndi.gaussian_filter(region, SMOOTHING, mode="constant"), 0.0, None)
    shrink = local**2 / (local**2 + sigma**2)
    psf = np.clip(region * _soft(support) * shrink, 0.0, None)
    if not psf.sum() > 0:
        raise ValueError("the source has no positive flux above the background")
    offset = centre_offset(psf, sigma, support)
    if np.any(np.abs(offset) > 1e-3):
        psf = np.clip(fourier_shift(psf, -offset), 0.0, None)
        psf[psf < 1e-6 * psf.max()] = 0.0  # interpolation ripple far out in the tails
    return (psf / psf.sum()).astype(np.float32), offset


def symmetry_offset(psf: np.ndarray, *, iterations: int = 4) -> np.ndarray:
    """Offset of the centre of point symmetry of ``psf`` from its middle pixel.

    If ``psf`` is a symmetric ``f`` moved by ``e``, then ``psf - reflected(psf) ≈
    -2 e · grad(f)``; Gauss-Newton steps on that relation (re-shifting ``psf`` each time)
    find ``e`` with matched-filter precision, using every pixel rather than the tails'
    lever arm that makes a centroid noisy.
    """
    offset = np.zeros(psf.ndim)
    for _ in range(iterations):
        moved = fourier_shift(psf, -offset) if np.any(offset) else psf
        residual = (moved - moved[(slice(None, None, -1),) * psf.ndim]).ravel()
        gradients = np.gradient(moved.astype(np.float64))
        if psf.ndim == 1:
            gradients = [gradients]
        design = -2.0 * np.stack([g.ravel() for g in gradients], axis=1)
        step, *_ = np.linalg.lstsq(design, residual, rcond=None)
        step = np.clip(step, -1.0, 1.0)
        offset = offset + step
        if np.max(np.abs(step)) < 1e-4:
            break
    return offset


def centre_offset(psf: np.ndarray, sigma: float, support: np.ndarray) -> np.ndarray:
    """Where the PSF's centre lies relative to its middle pixel.

    The centre is the centroid. For a point-symmetric PSF the centre of symmetry is the
    same point measured far more precisely, so it is used whenever it agrees with the
    centroid within three times the centroid's noise (``sigma`` per pixel inside
    ``support``); an asymmetric PSF (coma, a tilted LED) keeps its centroid.
    """
    total = float(psf.sum())
    centre = centroid(psf)
    offset = centre - np.array(psf.shape) // 2
    grids = np.indices(psf.shape, sparse=True)
    spread = np.array([np.sqrt(np.sum(np.broadcast_to((g - c) ** 2, psf.shape)[support]))
                       for g, c in zip(grids, centre, strict=True)])
    tolerance = 3.0 * sigma * spread / total + 0.02
    try:
        symmetric = symmetry_offset(psf)
    except (np.linalg.LinAlgError, ValueError):
        return offset
    if np.all(np.abs(symmetric - offset) <= tolerance):
        return symmetric
    return offset


def _half_maximum_crossing(profile: np.ndarray, peak: int, half: float, step: int) -> float:
    """Where ``profile`` first falls to ``half`` walking from ``peak`` in direction ``step``
    (+1 or -1), by linear interpolation; half a pixel past the end when it never does."""
    edge = peak
    while 0 <= edge + step < profile.size and profile[edge + step] > half:
        edge += step
    if not 0 <= edge + step < profile.size:
        return edge + step * 0.5
    a, b = profile[edge], profile[edge + step]
    return edge + step * ((a - half) / (a - b))


def fwhm(psf: np.ndarray) -> np.ndarray:
    """Full width at half maximum along each axis through the centre pixel, in pixels
    (half-maximum crossings found by linear interpolation)."""
    middle = tuple(n // 2 for n in psf.shape)
    widths = []
    for axis in range(psf.ndim):
        index = list(middle)
        index[axis] = slice(None)
        profile = np.asarray(psf[tuple(index)], dtype=np.float64)
        peak = int(np.argmax(profile))
        half = profile[peak] / 2
        if not half > 0:
            widths.append(np.nan)
            continue
        widths.append(_half_maximum_crossing(profile, peak, half, +1)
                      - _half_maximum_crossing(profile, peak, half, -1))
    return np.array(widths)


def _saturation_level(raw: np.ndarray, saturation) -> float | None:
    """The level at and above which pixels count as saturated (``None``: not detectable).

    Given ``saturation`` is used as is. Otherwise: the maximum of an integer type, or the
    image maximum when at least four pixels share it exactly (a flat, clipped top).
    """
    if saturation is not None:
        return float(saturation)
    top = raw.max()
    if np.issubdtype(raw.dtype, np.integer) and top >= np.iinfo(raw.dtype).max:
        return float(top)
    if np.count_nonzero(raw == top) >= 4:
        return float(top)
    return None


def _spacing(spacing, ndim: int) -> np.ndarray:
    """Pixel spacing per axis as a float array (ones when not given); refuses non-positive."""
    if spacing is None:
        return np.ones(ndim)
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (ndim,)).copy()
    if np.any(~np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing must be positive, got {spacing}")
    return spacing


def _warn(messages: list[str], category, message: str) -> None:
    """Record ``message`` and issue it as a ``category`` warning.

    Called from the helpers of :func:`prepare_psf`, so ``stacklevel=4`` points the warning
    at the line that called :func:`prepare_psf`.
    """
    messages.append(message)
    warnings.warn(message, category, stacklevel=4)


@dataclass(frozen=True)
class _Frame:
    """A point-source frame after the shared first steps (:func:`_clean_frame`).

    ``raw`` is the input as given (the saturation test needs its values), ``data`` the float
    frame with hot pixels replaced and ``background`` (a float or an array of its shape)
    subtracted, ``sigma`` its white-noise standard deviation and ``hot_pixels`` the (K, D)
    indices of the replaced pixels.
    """

    raw: np.ndarray
    data: np.ndarray
    background: np.ndarray | float
    sigma: float
    hot_pixels: np.ndarray


def _clean_frame(image, name, background, hot_pixels) -> _Frame:
    """Shared first steps: validate, estimate noise, remove hot pixels, subtract background."""
    raw = np.asarray(image.compute() if hasattr(image, "compute")
                     and not isinstance(image, np.ndarray) else image)
    data = as_float_array(raw, name)
    if min(data.shape) < 3:
        raise ValueError(f"{name} of shape {data.shape} is too small: need 3 pixels per axis")
    sigma = noise_sigma(data)
    hot = np.empty((0, data.ndim), dtype=int)
    if hot_pixels:
        data, hot = remove_hot_pixels(data, sigma)
    if sigma <= 0:
        sigma = max(float(np.std(data)) * 1e-3, 1e-12)
    level, _ = fit_background(data, sigma, background)
    return _Frame(raw=raw, data=data - level, background=level, sigma=sigma, hot_pixels=hot)


# -- prepare_psf, step by step ------------------------------------------------------------


def _source_seed(z: np.ndarray, centre) -> tuple[int, ...]:
    """The pixel a source's support grows from: the brightest pixel of the significance map
    ``z``, or the brightest within 5 pixels of a ``centre`` hint. Refuses a seed less than
    ``2 * SUPPORT_THRESHOLD`` sigmas up (no point source)."""
    if centre is None:
        seed = np.unravel_index(int(np.argmax(z)), z.shape)
    else:
        centre = np.asarray(centre, dtype=float)
        if centre.shape != (z.ndim,):
            raise ValueError(f"centre must have {z.ndim} coordinates, got {centre.shape}")
        if np.any(centre < -0.5) or np.any(centre > np.array(z.shape) - 0.5):
            raise ValueError(f"centre {centre.tolist()} lies outside the image {z.shape}")
        whole = np.round(centre).astype(int)
        box = tuple(slice(max(c - 5, 0), c + 6) for c in whole)
        local = np.unravel_index(int(np.argmax(z[box])), z[box].shape)
        seed = tuple(int(i + b.start) for i, b in zip(local, box, strict=True))
    peak_z = float(z[seed])
    if peak_z < 2 * SUPPORT_THRESHOLD:
        raise ValueError(
            f"no point source found: the brightest spot is only {peak_z:.1f} noise sigmas "
            "above the background")
    return seed


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
        where = "the frame edge" if touches else f"the requested shape {tuple(shape)}"
        _warn(messages, TruncationWarning,
              f"the point source runs beyond {where}: part of the PSF is missing")
    return truncated


def _psf_half(reach: np.ndarray, shape, ndim: int) -> list[int]:
    """Half-size of the PSF crop: ``shape // 2``, or where the source sinks into the noise
    (its ``reach`` from the centre) plus a margin when no ``shape`` is given."""
    if shape is None:
        return [int(np.ceil(r + SUPPORT_MARGIN + 1)) for r in reach]
    return [s // 2 for s in odd_shape(shape, ndim)]


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
        Pixel spacing per axis (e.g. ``(0.3, 0.1, 0.1)`` µm), used for ``fwhm_physical``.
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
    spacing = _spacing(spacing, frame.data.ndim)
    messages: list[str] = []
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
        return psf
    widths = fwhm(psf)
    flux = _source_flux(region, frame.sigma)
    level = frame.background
    return psf, PsfReport(
        centre=found + offset,
        snr=float(psf.max() * flux / frame.sigma),
        fwhm=widths,
        fwhm_physical=widths * spacing,
        background=float(np.mean(level[support]) if np.ndim(level) else level),
        noise_sigma=float(frame.sigma),
        flux=flux,
        hot_pixels=len(frame.hot_pixels),
        saturated=saturated,
        truncated=truncated,
        warnings=messages,
    )


# -- average_beads, phase by phase -------------------------------------------------------

#: The verdict of a bead that goes into the average.
ACCEPTED = "accepted"
#: Fewest usable beads for which a robust (median and MAD) outlier test is meaningful.
_OUTLIER_MINIMUM = 4
#: Noise of a median over the noise of a mean of many white-noise samples, about sqrt(pi / 2).
_MEDIAN_NOISE_RATIO = 1.2533


@dataclass(frozen=True)
class _Candidates:
    """The candidate beads of one frame, one per connected region above the noise.

    ``labels`` numbers the regions of the frame's significance map above
    :data:`SUPPORT_THRESHOLD`; candidate ``i`` is region ``regions[i]`` with bounding box
    ``boxes[i]``, brightest (smoothed) pixel ``peaks[i]`` and ``maxima[i]`` local maxima
    (more than one: beads that touch).
    """

    labels: np.ndarray
    regions: np.ndarray
    boxes: list[tuple[slice, ...]]
    peaks: np.ndarray
    maxima: np.ndarray


@dataclass(frozen=True)
class _Bead:
    """One candidate bead as far as it has been examined.

    ``reason`` is :data:`ACCEPTED` or why the bead is left out; ``position`` its sub-pixel
    centre in the frame's pixel indices; ``crop`` the background-free box centred on it,
    ``flux`` that box's sum and ``snr`` its peak over the noise when it was first cut.
    A measured ``flux`` is a ``np.float64`` (a subclass of float), so that a float32 crop
    divided by it is computed in float64.
    """

    position: np.ndarray
    reason: str = "not examined (stopped)"
    flux: float = np.nan
    snr: float = np.nan
    crop: np.ndarray | None = None

    @property
    def used(self) -> bool:
        """Whether the bead goes into the average."""
        return self.reason == ACCEPTED and self.crop is not None


def _failure(error: Exception) -> str:
    """The reason recorded for a bead whose processing raised ``error``."""
    return f"failed: {type(error).__name__}: {error}"


def _used(beads: tuple[_Bead, ...]) -> list[int]:
    """The numbers of the beads that go into the average."""
    return [i for i, b in enumerate(beads) if b.used]


def _with_reasons(beads: tuple[_Bead, ...], reasons: dict[int, str]) -> tuple[_Bead, ...]:
    """``beads`` with the beads numbered in ``reasons`` given those reasons."""
    return tuple(replace(b, reason=reasons[i]) if i in reasons else b
                 for i, b in enumerate(beads))


def _detect_candidates(data: np.ndarray, sigma: float, threshold: float) -> _Candidates:
    """One candidate per connected region of the significance map above the noise whose
    peak is at least ``threshold`` sigmas up; refuses a frame with none."""
    z = significance(data, sigma)
    labels, count = ndi.label(z > SUPPORT_THRESHOLD, _full_structure(data.ndim))
    if count == 0:
        raise ValueError("no bead found above the noise")
    peak_z = np.asarray(ndi.maximum(z, labels, np.arange(1, count + 1)))
    strong = np.flatnonzero(peak_z >= threshold)
    if strong.size == 0:
        raise ValueError(
            f"no bead found: the brightest spot is {peak_z.max():.1f} sigmas up, below the "
            f"threshold of {threshold:g}")
    regions = strong + 1
    objects = ndi.find_objects(labels)
    boxes = [objects[r - 1] for r in regions]
    peaks = []
    for region, box in zip(regions, boxes, strict=True):
        local = np.where(labels[box] == region, z[box], -np.inf)
        index = np.unravel_index(int(np.argmax(local)), local.shape)
        peaks.append([i + b.start for i, b in zip(index, box, strict=True)])
    local_max = (ndi.maximum_filter(z, size=5, mode="nearest") == z) & (z >= threshold)
    return _Candidates(labels=labels, regions=regions, boxes=boxes, peaks=np.array(peaks),
                       maxima=ndi.sum_labels(local_max, labels, regions))


def _bead_half(candidates: _Candidates, shape) -> list[int]:
    """Half-size of the bead crops: ``shape // 2``, or when no ``shape`` is given the median
    reach of the candidates' regions (from their peaks to their bounding boxes' far sides)
    plus a margin."""
    if shape is not None:
        return [s // 2 for s in odd_shape(shape, candidates.labels.ndim)]
    reaches = [[max(p - b.start, b.stop - 1 - p) for p, b in zip(peak, box, strict=True)]
               for peak, box in zip(candidates.peaks, candidates.boxes, strict=True)]
    median_reach = np.median(np.array(reaches, dtype=float), axis=0)
    return [int(np.ceil(r + SUPPORT_MARGIN + 1)) for r in median_reach]


def _examine_bead(frame: _Frame, candidates: _Candidates, i: int, half: list[int],
                  saturation_level: float | None) -> _Bead:
    """Check candidate ``i`` (its crop inside the frame, one peak and no neighbour in it,
    not saturated), measure its centroid and cut its crop centred there."""
    peak = candidates.peaks[i]
    unexamined = _Bead(position=peak.astype(float))
    lo, hi = peak - np.array(half), peak + np.array(half) + 1
    if np.any(lo < 0) or np.any(hi > np.array(frame.data.shape)):
        return replace(unexamined, reason="edge")
    if candidates.maxima[i] > 1:
        return replace(unexamined, reason="overlap: two peaks in one spot")
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    region = candidates.regions[i]
    others = np.unique(candidates.labels[box])
    if np.any(np.isin(others, candidates.regions) & (others != region)):
        return replace(unexamined, reason="overlap: a neighbour enters the crop")
    core = candidates.labels[box] == region
    if saturation_level is not None and np.any(
            frame.raw[box][core].astype(np.float64) >= saturation_level):
        return replace(unexamined, reason="saturated")
    window = ndi.distance_transform_edt(~core) <= SUPPORT_MARGIN
    position = weighted_centre(frame.data[box], window) + lo
    crop = _centred_crop(frame.data, position, half)
    flux, snr = np.float64(crop.sum()), float(crop.max() / frame.sigma)
    if not flux > 0:
        return _Bead(position, "no flux above the background", flux, snr)
    return _Bead(position, ACCEPTED, flux, snr, crop)


def _examine_beads(frame: _Frame, candidates: _Candidates, half: list[int],
                   saturation_level: float | None, callback, total_steps: int
                   ) -> tuple[tuple[_Bead, ...], bool]:
    """Examine every candidate in turn (:func:`_examine_bead`), reporting after each.

    A bead that raises is rejected with the error as its reason; the batch goes on. Returns
    the beads and whether the callback asked to stop (the rest stay unexamined).
    """
    beads = [_Bead(position=peak.astype(float)) for peak in candidates.peaks]
    for i in range(len(beads)):
        try:
            beads[i] = _examine_bead(frame, candidates, i, half, saturation_level)
        except Exception as error:  # one bad bead never aborts the batch
            beads[i] = replace(beads[i], reason=_failure(error))
        if not report(callback, i + 1, total_steps):
            return tuple(beads), True
    return tuple(beads), False


def _reject_brightness_outliers(beads: tuple[_Bead, ...]) -> tuple[_Bead, ...]:
    """Reject the used beads whose log flux lies more than 5 robust sigmas (and a factor
    1.6) from the median, e.g. two beads on top of each other; refuse when none is left."""
    use = _used(beads)
    reasons = {}
    if len(use) >= _OUTLIER_MINIMUM:
        log_flux = np.log(np.array([beads[i].flux for i in use]))
        centre_flux = np.median(log_flux)
        spread_flux = MAD_TO_SIGMA * np.median(np.abs(log_flux - centre_flux))
        limit = max(5 * spread_flux, np.log(1.6))
        for i, value in zip(use, log_flux, strict=True):
            if abs(value - centre_flux) > limit:
                reasons[i] = ("outlier: brighter than the others" if value > centre_flux
                              else "outlier: fainter than the others")
    beads = _with_reasons(beads, reasons)
    if not any(b.used for b in beads):
        summary = dict(Counter(b.reason for b in beads))
        raise ValueError(f"no usable bead among {len(beads)} detected: {summary}")
    return beads


def _combine(beads: tuple[_Bead, ...], method: str) -> np.ndarray:
    """The average of the used beads' crops: their sum over their total flux (``"mean"``)
    or the per-pixel median of the flux-normalised crops (``"median"``)."""
    used = [b for b in beads if b.used]
    stack = np.stack([b.crop for b in used])
    fluxes = np.array([b.flux for b in used])
    if method == "median":
        return np.median(stack / fluxes.reshape((-1,) + (1,) * (stack.ndim - 1)), axis=0)
    return stack.sum(axis=0) / fluxes.sum()


def _differences(beads: tuple[_Bead, ...], template: np.ndarray) -> np.ndarray:
    """Relative L2 difference between each used bead's flux-normalised crop and ``template``."""
    scale = np.linalg.norm(template)
    return np.array([np.linalg.norm(b.crop / b.flux - template) / scale
                     for b in beads if b.used])


def _registered(data: np.ndarray, bead: _Bead, half: list[int],
                template: np.ndarray) -> _Bead:
    """``bead`` re-centred by least-squares matching to ``template``
    (:func:`register_to_template`), or rejected with the reason when that fails."""
    try:
        position, crop = register_to_template(data, bead.position, half, template)
    except Exception as error:  # one bad bead never aborts the batch
        return replace(bead, reason=_failure(error))
    return replace(bead, position=position, crop=crop, flux=np.float64(crop.sum()))


def _register_beads(data: np.ndarray, beads: tuple[_Bead, ...], half: list[int],
                    method: str, callback, step: int, total_steps: int
                    ) -> tuple[tuple[_Bead, ...], bool]:
    """Two rounds of registering every used bead to the average of the previous round,
    reporting ``step`` after each; returns the beads and whether the callback said stop."""
    for _ in range(2):
        template = _combine(beads, method)
        beads = tuple(_registered(data, b, half, template) if b.used else b for b in beads)
        if not report(callback, step, total_steps):
            return beads, True
    return beads, False


def _reject_shape_outliers(beads: tuple[_Bead, ...], method: str) -> tuple[_Bead, ...]:
    """Reject the used beads that differ from the average (:func:`_differences`) by more
    than 5 robust sigmas (and a quarter) above the median difference."""
    use = _used(beads)
    if len(use) < _OUTLIER_MINIMUM:
        return beads
    differences = _differences(beads, _combine(beads, method))
    middle = np.median(differences)
    mad = MAD_TO_SIGMA * np.median(np.abs(differences - middle))
    limit = middle + max(5 * mad, 0.25 * middle)
    return _with_reasons(beads, {i: "outlier: shape differs from the others"
                                 for i, d in zip(use, differences, strict=True) if d > limit})


def _keep_brightest(beads: tuple[_Bead, ...], max_beads: int | None) -> tuple[_Bead, ...]:
    """Leave out all but the ``max_beads`` brightest used beads (all kept for ``None``)."""
    use = _used(beads)
    if max_beads is None or len(use) <= max_beads:
        return beads
    brightest = sorted(use, key=lambda i: -beads[i].flux)[:max_beads]
    return _with_reasons(beads, dict.fromkeys(set(use) - set(brightest),
                                              "not needed (max_beads)"))


@dataclass(frozen=True)
class _Average:
    """The used beads combined (``combined``), finished into ``psf`` (:func:`finish_psf`),
    with the centroid ``offset`` that finishing removed and the per-pixel noise ``sigma``
    of ``combined``."""

    combined: np.ndarray
    psf: np.ndarray
    offset: np.ndarray
    sigma: float


def _average(beads: tuple[_Bead, ...], method: str, sigma: float,
             bead_diameter: float | None, spacing: np.ndarray) -> _Average:
    """Combine the used beads, finish the PSF and divide out the bead size if it is known."""
    combined = _combine(beads, method)
    fluxes = np.array([b.flux for b in beads if b.used])
    if method == "mean":
        average_sigma = sigma * np.sqrt(fluxes.size) / np.sum(fluxes)
    else:
        average_sigma = _MEDIAN_NOISE_RATIO * sigma / np.sqrt(fluxes.size) / np.median(fluxes)
    psf, offset = finish_psf(combined, average_sigma)
    if bead_diameter is not None:
        psf = _remove_bead_size(psf, bead_diameter, spacing, average_sigma)
    return _Average(combined=combined, psf=psf, offset=offset, sigma=average_sigma)


def _bead_table(beads: tuple[_Bead, ...], offset: np.ndarray) -> dict[str, np.ndarray]:
    """The per-bead table of :class:`BeadAverage`; the used beads' positions are moved by
    the ``offset`` removed from the average, so they refer to the final PSF's centre."""
    return {
        "position": np.array([b.position + offset if b.used else b.position for b in beads]),
        "accepted": np.array([b.reason == ACCEPTED for b in beads]),
        "reason": np.array([b.reason for b in beads], dtype=str),
        "flux": np.array([b.flux for b in beads]),
        "snr": np.array([b.snr for b in beads]),
    }


def average_beads(
    image,
    *,
    spacing=None,
    shape=None,
    method: str = "mean",
    background="auto",
    hot_pixels: bool = True,
    threshold: float = 6.0,
    saturation=None,
    max_beads: int | None = None,
    bead_diameter: float | None = None,
    callback=None,
) -> BeadAverage:
    """Detect the beads in one image, reject the bad ones, register and average the rest.

    Parameters
    ----------
    image : (M, N) or (P, M, N) ndarray
        An image of sub-resolution beads; any real dtype. Not modified.
    spacing : float or sequence of float, optional
        Pixel spacing per axis (anisotropic 3D stacks, e.g. ``(0.3, 0.1, 0.1)``); reported
        back and used for ``fwhm_physical`` and ``bead_diameter``.
    shape : int or sequence of int, optional
        Odd shape of the PSF. ``None``: the median extent of the beads above the noise,
        plus a margin.
    method : {"mean", "median"}
        ``"mean"`` adds the registered beads (brighter beads weigh more, which is the
        least-squares optimum for white noise); ``"median"`` takes the per-pixel median
        of the flux-normalised beads (robust to a remaining bad bead, ~25 % noisier).
    background, hot_pixels, saturation
        As in :func:`prepare_psf`.
    threshold : float
        Detection threshold in noise sigmas of the 1-px-smoothed image.
    max_beads : int, optional
        Use at most this many beads (the brightest accepted ones).
    bead_diameter : float, optional
        Known bead diameter in the units of ``spacing``: the average is divided (Wiener,
        regularised by its noise) by the transform of a uniform ball of that diameter.
    callback : callable, optional
        ``callback(step, total, current)`` after each bead; return ``False`` to stop (the
        beads processed so far are averaged).

    Returns
    -------
    BeadAverage
        ``psf``, the per-bead table ``beads`` (position, accepted, reason, flux, snr),
        ``beads_used``, ``spread``, ``fwhm`` and ``snr``.

    Notes
    -----
    Each bead is ``flux_i * psf(x - c_i) + noise``. Candidates are the connected regions of
    the 1-px-smoothed, background-free image above ``threshold`` sigmas. A bead is rejected
    (and the reason recorded) when its crop leaves the frame (``"edge"``), another source
    enters its crop or two peaks share one region (``"overlap"``), it reaches the
    saturation level (``"saturated"``), or its brightness or its shape after registration
    is a robust outlier (``"outlier: ..."``); a failure on one bead rejects that bead only.
    Centres start as centroids and are refined twice by least-squares matching of each
    bead to the running average (:func:`register_to_template`, the matched filter, near
    the Cramér-Rao limit). The average goes through the same denoising, tail cut,
    clipping, recentring and normalisation as :func:`prepare_psf`
    (:func:`finish_psf`); the bead positions are reported relative to the final centre.

    References
    ----------
    .. [1] R. E. Thompson, D. R. Larson, W. W. Webb, "Precise nanometer localization
       analysis for individual fluorescent probes", Biophys. J. 82, 2775 (2002).
    .. [2] N. Wiener, *Extrapolation, Interpolation, and Smoothing of Stationary Time
       Series*, MIT Press (1949).
    """
    if method not in ("mean", "median"):
        raise ValueError(f"method must be 'mean' or 'median', got {method!r}")
    frame = _clean_frame(image, "image", background, hot_pixels)
    spacing = _spacing(spacing, frame.data.ndim)
    candidates = _detect_candidates(frame.data, frame.sigma, threshold)
    half = _bead_half(candidates, shape)
    total_steps = len(candidates.peaks) + 2
    beads, stopped = _examine_beads(frame, candidates, half,
                                    _saturation_level(frame.raw, saturation), callback,
                                    total_steps)
    beads = _reject_brightness_outliers(beads)
    if not stopped:
        beads, stopped = _register_beads(frame.data, beads, half, method, callback,
                                         total_steps - 1, total_steps)
    beads = _keep_brightest(_reject_shape_outliers(beads, method), max_beads)
    average = _average(beads, method, frame.sigma, bead_diameter, spacing)
    if not stopped:
        report(callback, total_steps, total_steps, average.psf)
    widths = fwhm(average.psf)
    return BeadAverage(
        psf=average.psf,
        beads=_bead_table(beads, average.offset),
        beads_used=sum(b.used for b in beads),
        spread=float(np.median(_differences(beads, average.combined))),
        fwhm=widths,
        fwhm_physical=widths * spacing,
        snr=float(average.psf.max() / average.sigma),
        spacing=spacing,
        noise_sigma=float(frame.sigma),
        background=float(np.mean(frame.background)),
    )


def _pixel_ball(grid, diameter: float, spacing: np.ndarray) -> np.ndarray | None:
    """A uniform ball of ``diameter`` (units of ``spacing``) integrated over each pixel of a
    periodic ``grid``, centred on index 0 and of unit sum; ``None`` when it covers no
    sub-pixel sample. Each pixel is sampled 5 times per axis, a fair pixel integral."""
    offsets = np.meshgrid(*[(np.arange(g) - g // 2) * s for g, s in zip(grid, spacing,
                                                                        strict=True)],
                          indexing="ij", sparse=True)
    radius = diameter / 2
    ball = np.zeros(grid, dtype=np.float64)
    for sub in np.ndindex(*(5,) * len(grid)):
        shifts = [(s - 2) / 5 * sp for s, sp in zip(sub, spacing, strict=True)]
        ball += sum((o + d) ** 2 for o, d in zip(offsets, shifts, strict=True)) <= radius**2
    if ball.sum() == 0:
        return None
    return np.fft.ifftshift(ball / ball.sum())


def _remove_bead_size(psf: np.ndarray, diameter: float, spacing: np.ndarray,
                      noise: float) -> np.ndarray:
    """Divide out a uniform ball of ``diameter`` (units of ``spacing``), Wiener-regularised
    by the PSF's noise level so frequencies the ball suppresses are not amplified."""
    if not diameter > 0:
        raise ValueError(f"bead_diameter must be positive, got {diameter}")
    grid = fast_shape([2 * n for n in psf.shape])
    ball = _pixel_ball(grid, diameter, spacing)
    if ball is None:
        return psf
    ball_otf = scipy.fft.rfftn(ball, workers=WORKERS)
    # in float64, as the division below needs (kernel_otf would transform in float32)
    psf_otf = scipy.fft.rfftn(periodic_embed(psf, grid).astype(np.float64), workers=WORKERS)
    snr2 = (psf.max() / max(noise, 1e-12)) ** 2
    restored_otf = psf_otf * np.conj(ball_otf) / (np.abs(ball_otf) ** 2 + 1.0 / snr2)
    restored = scipy.fft.irfftn(restored_otf, grid, workers=WORKERS)
    restored = periodic_crop(restored, psf.shape) * (psf > 0)
    restored = np.clip(restored, 0, None)
    return (restored / restored.sum()).astype(np.float32)
