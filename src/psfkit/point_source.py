"""The steps that turn a frame holding point sources into clean PSF measurements, shared by
:func:`psfkit.psf.prepare_psf` (one source) and :func:`psfkit.beads.average_beads` (many).

Forward model of a point-source frame: ``image = flux * psf(x - centre) + background(x) +
noise + hot pixels``, with ``background`` a constant or a plane, white read noise plus shot
noise, and isolated hot pixels. Each step that undoes it lives here once: replace hot pixels
(:func:`remove_hot_pixels`), fit and subtract the background away from the source
(:func:`fit_background`; both in :func:`_clean_frame`), find where the source rises above the
noise (:func:`significance`, its *support* :func:`source_support`), measure the centre
(:func:`weighted_centre`) and shift it onto the middle pixel with a band-limited interpolator
(:func:`_centred_crop`), then :func:`finish_psf`: Wiener-filter the noise the optics cannot
have passed (:func:`spectral_denoise`), cut the tails outside the support, clip to
nonnegative, recentre (:func:`centre_offset`) and divide by the sum. :func:`fwhm` measures
the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from ._validate import all_finite, as_float_array, per_axis_spacing, real_number, rescaled
from .align import centroid
from .noise import noise_sigma, rim
from .operators import WORKERS, centre_embed, fourier_shift

__all__ = [
    "RING_GAP",
    "SMOOTHING",
    "SUPPORT_MARGIN",
    "SUPPORT_THRESHOLD",
    "centre_offset",
    "finish_psf",
    "fit_background",
    "fwhm",
    "remove_hot_pixels",
    "significance",
    "source_support",
    "spectral_denoise",
    "symmetry_offset",
    "weighted_centre",
]


#: Gaussian smoothing (pixels) applied before deciding where a source rises above the noise.
SMOOTHING = 1.0
#: A smoothed pixel belongs to a source when it is this many (smoothed) noise sigmas up.
SUPPORT_THRESHOLD = 3.0
#: Distance (pixels) by which the support is grown so faint wings are kept.
SUPPORT_MARGIN = 2.0
#: Significant regions this close (pixels) to a PSF's core are part of it (Airy rings).
RING_GAP = 3.0
#: Most rounds of :func:`fit_background` (a defocused bead filling its crop settles in ~6).
BACKGROUND_ROUNDS = 12
#: :func:`fit_background` stops when its level moves by less than this many noise sigmas.
BACKGROUND_TOLERANCE = 0.02
#: Fewest pixels a background level is fitted on (fewer: the frame's rim median instead).
MIN_BACKGROUND_PIXELS = 20
#: A background level brighter than more than this share of the frame (smoothed, by
#: 3 noise sigmas) lies in the source's light. Measured (benchmarks/bench_psf.py, tight
#: crops): ~0.2 % in pure noise, at most 3 % in crops that hold a background region, 21 % and
#: more in crops the source fills.
DARKER_FRACTION = 0.10
#: A fitted background slope counts when it exceeds this many standard errors (3-sigma rule).
SLOPE_SIGNIFICANCE = 3.0


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


#: The radius (pixels) at which the :data:`SMOOTHING` Gaussian is truncated (scipy's rule).
_SMOOTHING_REACH = int(4 * SMOOTHING + 0.5)


def _smoothing_gain(length: int) -> np.ndarray:
    """How much white noise of unit sigma is left, at each index of an axis of ``length``,
    by :data:`SMOOTHING` Gaussian smoothing with edge pixels repeated (``mode="nearest"``):
    the norm of the filter's weights on the samples. Near the ends the repeated edge pixel
    carries the weight of the samples beyond it, so more noise is left there (about 1.4
    times the interior's on the last sample)."""
    reach = _SMOOTHING_REACH
    size = min(length, 4 * reach + 1)  # both ends and one interior sample
    weights = ndi.gaussian_filter1d(np.eye(size), SMOOTHING, axis=0, mode="nearest")
    small = np.sqrt(np.sum(weights**2, axis=1))
    if size == length:
        return small
    gain = np.full(length, small[2 * reach])
    gain[:2 * reach], gain[-2 * reach:] = small[:2 * reach], small[-2 * reach:]
    return gain


def significance(image: np.ndarray, sigma: float, *, even_edges: bool = False) -> np.ndarray:
    """Smoothed, background-free ``image`` in units of its own noise sigma.

    The smoothing repeats the edge pixels, which leaves more noise along the frame's edges
    (:func:`_smoothing_gain`). With ``even_edges`` each pixel is divided by the noise left
    there, so white noise is 3 sigmas up as often on the edges as inside (bead detection:
    no false beads along the faces of a stack). Without, by the interior's noise
    everywhere: edge pixels look more significant, which keeps a tight crop's source
    light on its edges out of the background and in the support (on the tight crops of
    ``bench_psf.py``, the even version raised a 3D widefield bead's error from 0.065 to
    0.078 at 2000 photons).
    """
    smoothed = ndi.gaussian_filter(image, SMOOTHING, mode="nearest")
    interior = _smoothing_gain(1 + 2 * _SMOOTHING_REACH)[_SMOOTHING_REACH]
    z = smoothed / max(sigma * interior**image.ndim, 1e-30)
    if even_edges:
        for axis, length in enumerate(image.shape):
            shape = [1] * image.ndim
            shape[axis] = length
            z /= (_smoothing_gain(length) / interior).astype(z.dtype).reshape(shape)
    return z


def fit_background(image: np.ndarray, sigma: float, model="auto", *,
                   iterations: int = BACKGROUND_ROUNDS, tolerance: float = BACKGROUND_TOLERANCE,
                   max_samples: int = 200_000) -> tuple[np.ndarray | float, np.ndarray, bool]:
    """Background under the sources: a constant or a plane fitted away from them.

    From a starting level, alternates between fitting the model to the pixels outside the
    source mask (clipping residuals beyond 3 sigma) and masking the pixels whose smoothed
    residual is significant, grown by a few pixels, until the level moves by less than
    ``tolerance`` noise sigmas (at least two rounds, at most ``iterations``). ``model`` is
    ``"plane"``, ``"auto"`` (a plane whose slope along each axis is kept only when it is
    significant, :func:`_plane`), ``"constant"``, a number (a known level), or ``None``
    (no background).

    The start is the median. When the source fills most of the frame (a defocused widefield
    bead in a tight crop) the median lies in its light, and each round masks more of its
    faint tails: stopping before the level settles would leave that light in the
    background. If the settled level is still brighter than more than
    :data:`DARKER_FRACTION` of the frame (smoothed, by 3 noise sigmas), which a background
    cannot be, the source fills the frame: the fit is repeated from the darkest smoothed
    pixel, so it settles on the lowest consistent level instead.

    Returns the background (a float or an array of ``image.shape``), the source mask it
    was fitted outside of, and whether the source filled the frame (the fit from the
    darkest pixel was needed; it may still hold some of the source's light).
    """
    mask = np.zeros(image.shape, dtype=bool)
    if model is None or model == "none":
        return 0.0, mask, False
    if not isinstance(model, str):
        return float(model), mask, False
    if model not in ("auto", "plane", "constant"):
        raise ValueError(
            f"background must be 'auto', 'plane', 'constant', a number or None, got {model!r}")
    settle = dict(model=model, iterations=iterations, tolerance=tolerance,
                  max_samples=max_samples)
    background, mask = _settled_background(image, sigma, float(np.median(image)), **settle)
    darker = significance(image - background, sigma) < -SUPPORT_THRESHOLD
    filled = bool(np.mean(darker) > DARKER_FRACTION)
    if filled:
        darkest = float(ndi.gaussian_filter(image, SMOOTHING, mode="nearest").min())
        background, mask = _settled_background(image, sigma, darkest, **settle)
    return background, mask, filled


def _settled_background(image: np.ndarray, sigma: float, start: float, *, model: str,
                        iterations: int, tolerance: float,
                        max_samples: int) -> tuple[np.ndarray | float, np.ndarray]:
    """The rounds of :func:`fit_background` from the level ``start``. When the pixels run
    out, the last level fitted on enough of them is kept (the frame's rim median if none
    was)."""
    slope_noise = sigma if model == "auto" else None
    values = image.ravel()
    background: np.ndarray | float = start
    mask = fitted_outside = np.zeros(image.shape, dtype=bool)
    stride = max(1, image.size // max_samples)
    for round_ in range(iterations):
        keep = ~mask.ravel() & (np.abs(image - background).ravel() < 3 * sigma + 1e-30)
        if keep.sum() < MIN_BACKGROUND_PIXELS:
            if round_ == 0:  # almost everything is source: fall back to the outermost pixels
                return float(np.median(rim(image, width=1))), mask
            break
        chosen = np.flatnonzero(keep)[::stride]
        previous, fitted_outside = background, mask
        if model == "constant":
            background = float(values[chosen].mean())
        else:
            background = _plane(image, chosen, slope_noise)
        source = significance(image - background, sigma) > SUPPORT_THRESHOLD
        mask = ndi.binary_dilation(source, _full_structure(image.ndim), iterations=3)
        # the first round's mask comes from the start alone: always fit once more with it
        settled = np.max(np.abs(np.subtract(background, previous))) < tolerance * sigma
        if round_ >= 1 and settled:
            break
    return background, fitted_outside


def _plane(image: np.ndarray, chosen: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """The least-squares plane through the pixels of ``image`` at the flat indices
    ``chosen``, as a float32 array of ``image.shape``.

    With a noise ``sigma``, the slope along an axis is kept only when it exceeds
    :data:`SLOPE_SIGNIFICANCE` of its standard errors (white noise of ``sigma``), and the
    plane is refitted without the others: where the pixels span a narrow part of an axis
    (the focal plane's corners of a defocused bead's tight crop) an unneeded slope is
    extrapolated across the frame and takes source light away on one side.
    Coordinates are centred on the chosen pixels and divided by the longest axis, so the
    design matrix is well conditioned and dropping a slope leaves the mean level.
    """
    scale = max(max(image.shape) - 1, 1)
    coordinates = [c / scale for c in np.unravel_index(chosen, image.shape)]
    centres = [float(c.mean()) for c in coordinates]
    values = image.ravel()[chosen].astype(np.float64)
    axes = list(range(image.ndim))
    while True:
        design = np.stack([np.ones(chosen.size)]
                          + [coordinates[a] - centres[a] for a in axes], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
        if sigma is None or not axes:
            break
        errors = sigma * np.sqrt(np.diag(np.linalg.pinv(design.T @ design))[1:])
        significant = [a for a, c, e in zip(axes, coefficients[1:], errors, strict=True)
                       if abs(c) > SLOPE_SIGNIFICANCE * e]
        if len(significant) == len(axes):
            break
        axes = significant
    plane = np.float32(coefficients[0])
    for axis, c in zip(axes, coefficients[1:], strict=True):
        ramp = (np.arange(image.shape[axis], dtype=np.float64) / scale - centres[axis]).reshape(
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
    signal, total = local**2, local**2 + sigma**2
    # a noise-free region (sigma 0, e.g. a bool image) is not damped where it is dark:
    # 0 / 0 there would make the whole PSF NaN
    shrink = np.divide(signal, total, out=np.ones_like(signal), where=total > 0)
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
    image maximum when at least four pixels share it exactly and two of them are neighbours
    (a flat, clipped top). Isolated equal peaks, as in a noiseless image of identical beads,
    are not a clipped top.
    """
    if saturation is not None:
        return real_number(saturation, "saturation")
    top = raw.max()
    if np.issubdtype(raw.dtype, np.integer) and top >= np.iinfo(raw.dtype).max:
        return float(top)
    at_top = raw == top
    if np.count_nonzero(at_top) >= 4 and _has_neighbouring_pair(at_top):
        return float(top)
    return None


def _has_neighbouring_pair(mask: np.ndarray) -> bool:
    """Whether two face-adjacent pixels of ``mask`` are both set."""
    return any(np.any(np.logical_and(np.take(mask, range(1, n), axis=a),
                                     np.take(mask, range(n - 1), axis=a)))
               for a, n in enumerate(mask.shape) if n > 1)


def _spacing(spacing, ndim: int) -> np.ndarray:
    """Pixel spacing per axis as a float array (ones when not given); refuses non-positive
    (:func:`psfkit._validate.per_axis_spacing`)."""
    return np.array(per_axis_spacing(spacing, ndim))


@dataclass(frozen=True)
class _Frame:
    """A point-source frame after the shared first steps (:func:`_clean_frame`).

    ``raw`` is the input as given (the saturation test needs its values), ``data`` the float
    frame with hot pixels replaced and ``background`` (a float or an array of its shape)
    subtracted, ``sigma`` its white-noise standard deviation and ``hot_pixels`` the (K, D)
    indices of the replaced pixels; ``filled`` says the source filled the frame, so that the
    fitted background may hold some of its light (:func:`fit_background`). ``data``,
    ``background`` and ``sigma`` are in the input's units divided by ``scale``, the exact
    power of two that brings an image of extreme magnitude near 1
    (:func:`psfkit._validate.rescaled`; 1 for ordinary images).
    """

    raw: np.ndarray
    data: np.ndarray
    background: np.ndarray | float
    sigma: float
    hot_pixels: np.ndarray
    filled: bool = False
    scale: float = 1.0


def _clean_frame(image, name, background, hot_pixels) -> _Frame:
    """Shared first steps: validate, estimate noise, remove hot pixels, subtract background."""
    raw = np.asarray(image.compute() if hasattr(image, "compute")
                     and not isinstance(image, np.ndarray) else image)
    data = as_float_array(raw, name)
    if min(data.shape) < 3:
        raise ValueError(f"{name} of shape {data.shape} is too small: need 3 pixels per axis")
    # the floors below are absolute: they hold for ordinary magnitudes, which this brings
    data, scale = rescaled(data)
    if background is not None and not isinstance(background, str):
        background = real_number(background, "background") / scale
    sigma = noise_sigma(data)
    hot = np.empty((0, data.ndim), dtype=int)
    if hot_pixels:
        data, hot = remove_hot_pixels(data, sigma)
    if sigma <= 0:
        sigma = max(float(np.std(data)) * 1e-3, 1e-12)
    level, _, filled = fit_background(data, sigma, background)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, by name
        cleaned = data - level
    if not all_finite(np.asarray(cleaned)):
        raise ValueError(f"background {background * scale:g} lies so far from the image's "
                         "values that subtracting it overflows; give the level in the "
                         "image's units, or 'auto'")
    return _Frame(raw=raw, data=cleaned, background=level, sigma=sigma, hot_pixels=hot,
                  filled=filled, scale=scale)
