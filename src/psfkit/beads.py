"""Many beads in one image: :func:`average_beads` detects them, rejects the bad ones with the
reason, registers and averages the rest into one PSF, returned as a :class:`BeadAverage`.

Each bead is ``flux_i * psf(x - c_i) + noise``. The phases, in order: candidates
(:func:`_detect_candidates`), examining each bead (:func:`_examine_beads`: edge, overlap,
saturation, centroid and crop), brightness outliers, registration to the running average
(:func:`register_to_template`, :func:`_register_beads`), shape outliers, ``max_beads``, the
average (:func:`_average`, finished like a single source by
:func:`psfkit.point_source.finish_psf`) and the removal of a known bead size
(:func:`_remove_bead_size`). Every bead is a frozen :class:`_Bead` record whose ``reason``
says whether and why it is left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from ._physical import in_spacing_units
from ._progress import report
from ._validate import finite_result, kernel_shape, optional_callable, real_number, whole_number
from .noise import MAD_TO_SIGMA
from .operators import WORKERS, fast_shape, periodic_crop, periodic_embed
from .point_source import (
    SUPPORT_MARGIN,
    SUPPORT_THRESHOLD,
    _centred_crop,
    _clean_frame,
    _Frame,
    _full_structure,
    _saturation_level,
    _spacing,
    finish_psf,
    fwhm,
    significance,
    weighted_centre,
)

__all__ = ["BeadAverage", "average_beads"]


#: The verdict of a bead that goes into the average. Private: the public contract is the
#: string itself and the ``accepted`` column of :attr:`BeadAverage.beads`.
_ACCEPTED = "accepted"
#: Fewest usable beads for which a robust (median and MAD) outlier test is meaningful.
_OUTLIER_MINIMUM = 4
#: A second local maximum in a bead's region counts as a second bead (two beads touching)
#: when it is at least this fraction of the region's peak significance. A widefield or
#: confocal bead has dimmer maxima of its own, its rings and the noise on its defocused
#: planes: at most 6.5 % of its peak for noiseless PSFs at NA 0.5-1.4 (41 planes of
#: 0.1 µm, scalar and vectorial models) and 6.4 % for widefield bead stacks at 200-20 000
#: photons, so a quarter leaves a wide margin on both sides.
OVERLAP_RATIO = 0.25
#: Noise of a median over the noise of a mean of many white-noise samples, about sqrt(pi / 2).
_MEDIAN_NOISE_RATIO = 1.2533


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
        bead was rejected), ``flux`` (N,), ``snr`` (N,) peak signal-to-noise ratio; ``flux``
        and ``snr`` are NaN for a bead rejected before it was measured (e.g. at the edge).
    beads_used : int
        Number of beads averaged.
    spread : float
        Median relative L2 difference between one registered bead and the average: how much
        single beads vary (noise included).
    fwhm : (D,) ndarray
        FWHM of the averaged PSF per axis, in pixels.
    fwhm_physical : (D,) ndarray or None
        ``fwhm * spacing``, in the units of ``spacing``; ``None`` when no ``spacing`` was
        given (the rule of every ``*_physical`` field, see :class:`psfkit.KernelFit`).
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
    fwhm_physical: np.ndarray | None
    snr: float
    spacing: np.ndarray
    noise_sigma: float
    background: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidates:
    """The candidate beads of one frame, one per connected region above the noise.

    ``labels`` numbers the regions of the frame's significance map above
    :data:`SUPPORT_THRESHOLD`; candidate ``i`` is region ``regions[i]`` with bounding box
    ``boxes[i]``, brightest (smoothed) pixel ``peaks[i]`` and ``maxima[i]`` local maxima at
    least :data:`OVERLAP_RATIO` of its peak (more than one: beads that touch).
    """

    labels: np.ndarray
    regions: np.ndarray
    boxes: list[tuple[slice, ...]]
    peaks: np.ndarray
    maxima: np.ndarray


@dataclass(frozen=True)
class _Bead:
    """One candidate bead as far as it has been examined.

    ``reason`` is :data:`_ACCEPTED` or why the bead is left out; ``position`` its sub-pixel
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
        return self.reason == _ACCEPTED and self.crop is not None


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
    z = significance(data, sigma, even_edges=True)
    labels, count = ndi.label(z > SUPPORT_THRESHOLD, _full_structure(data.ndim))
    if count == 0:
        raise ValueError("no bead found in image: nothing rises above the noise; pass an "
                         "image of beads (a constant or pure-noise image holds none)")
    peak_z = np.asarray(ndi.maximum(z, labels, np.arange(1, count + 1)))
    strong = np.flatnonzero(peak_z >= threshold)
    if strong.size == 0:
        raise ValueError(
            f"no bead found in image: the brightest spot is {peak_z.max():.1f} sigmas up, "
            f"below the threshold of {threshold:g}; lower threshold if the beads are faint")
    regions = strong + 1
    objects = ndi.find_objects(labels)
    boxes = [objects[r - 1] for r in regions]
    peaks = []
    for region, box in zip(regions, boxes, strict=True):
        local = np.where(labels[box] == region, z[box], -np.inf)
        index = np.unravel_index(int(np.argmax(local)), local.shape)
        peaks.append([i + b.start for i, b in zip(index, box, strict=True)])
    peak_of = np.zeros(count + 1, dtype=z.dtype)  # each pixel's region's peak
    peak_of[1:] = peak_z
    local_max = ((ndi.maximum_filter(z, size=5, mode="nearest") == z) & (z >= threshold)
                 & (z >= OVERLAP_RATIO * peak_of[labels]))
    return _Candidates(labels=labels, regions=regions, boxes=boxes, peaks=np.array(peaks),
                       maxima=ndi.sum_labels(local_max, labels, regions))


def _bead_half(candidates: _Candidates, shape) -> list[int]:
    """Half-size of the bead crops: ``shape // 2``, or when no ``shape`` is given the median
    reach of the candidates' regions (from their peaks to their bounding boxes' far sides)
    plus a margin."""
    if shape is not None:
        return [s // 2 for s in kernel_shape(shape, candidates.labels.ndim)]
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
    return _Bead(position, _ACCEPTED, flux, snr, crop)


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


def _refuse_if_none_used(beads: tuple[_Bead, ...]) -> tuple[_Bead, ...]:
    """``beads`` when at least one goes into the average; otherwise a ``ValueError`` that
    counts the reasons they were left out."""
    if not any(b.used for b in beads):
        summary = dict(Counter(b.reason for b in beads))
        hint = ("the image needs at least one bead clear of the edges and of its neighbours"
                if "saturated" not in summary else
                "beads count as saturated when they reach the saturation level; if they are "
                "not clipped, pass saturation= with your camera's clipping level")
        raise ValueError(f"no usable bead among {len(beads)} detected: {summary}; {hint}")
    return beads


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
    return _refuse_if_none_used(_with_reasons(beads, reasons))


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


def _bead_table(beads: tuple[_Bead, ...], offset: np.ndarray,
                scale: float) -> dict[str, np.ndarray]:
    """The per-bead table of :class:`BeadAverage`; the used beads' positions are moved by
    the ``offset`` removed from the average, so they refer to the final PSF's centre, and
    the fluxes multiplied by the frame's ``scale`` into the input's units."""
    return {
        "position": np.array([b.position + offset if b.used else b.position for b in beads]),
        "accepted": np.array([b.reason == _ACCEPTED for b in beads]),
        "reason": np.array([b.reason for b in beads], dtype=str),
        "flux": np.array([b.flux for b in beads]) * scale,
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
    grid=None,
):
    """Detect the beads in one image, reject the bad ones, register and average the rest.

    Parameters
    ----------
    image : (M, N) or (P, M, N) ndarray
        An image of sub-resolution beads; any real dtype. Not modified.
    spacing : float or sequence of float, optional
        Pixel spacing per axis (anisotropic 3D stacks, e.g. ``(0.3, 0.1, 0.1)``); reported
        back and used for ``fwhm_physical`` (``None`` without it) and ``bead_diameter``.
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
        Use at most this many beads (the brightest accepted ones); at least 1.
    bead_diameter : float, optional
        Known bead diameter in the units of ``spacing``: the average is divided (Wiener,
        regularised by its noise) by the transform of a uniform ball of that diameter.
    callback : callable, optional
        ``callback(step, total, current)`` after each bead; return ``False`` to stop (the
        beads processed so far are averaged). With ``grid``, one count over all regions
        (as for :func:`psfkit.estimate_kernel_map`); the regions not reached are filled.
    grid : (rows, cols) or one count per axis, optional
        Average the beads of each region of a grid of overlapping tiles instead (for a
        volume, ``(rows, cols)`` tiles its last two axes): the PSF that changes across
        the field.

    Returns
    -------
    BeadAverage or PsfMap
        ``psf``, the per-bead table ``beads`` (position, accepted, reason, flux, snr),
        ``beads_used``, ``spread``, ``fwhm`` and ``snr``. With ``grid``, a
        :class:`psfkit.PsfMap` of the regions' PSFs whose ``diagnostics`` hold each
        region's ``beads_used``, ``spread`` and ``fwhm`` (NaN without beads); a region
        without a usable bead is ``filled`` from its nearest neighbours with beads.

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
    if grid is not None:
        from .maps import bead_map

        return bead_map(average_beads, image, grid, dict(
            spacing=spacing, shape=shape, method=method, background=background,
            hot_pixels=hot_pixels, threshold=threshold, saturation=saturation,
            max_beads=max_beads, bead_diameter=bead_diameter),
            optional_callable(callback))
    if method not in ("mean", "median"):
        raise ValueError(f"method must be 'mean' or 'median', got {method!r}")
    threshold = real_number(threshold, "threshold", minimum=0.0)
    if max_beads is not None:
        max_beads = whole_number(max_beads, "max_beads", minimum=1)
    if bead_diameter is not None:
        bead_diameter = real_number(bead_diameter, "bead_diameter", positive=True)
    callback = optional_callable(callback)
    frame = _clean_frame(image, "image", background, hot_pixels)
    spacing_given = spacing is not None
    spacing = _spacing(spacing, frame.data.ndim)
    if shape is not None:
        shape = kernel_shape(shape, frame.data.ndim)
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
    beads = _refuse_if_none_used(_keep_brightest(_reject_shape_outliers(beads, method),
                                                 max_beads))
    average = _average(beads, method, frame.sigma, bead_diameter, spacing)
    if not stopped:
        report(callback, total_steps, total_steps, average.psf)
    widths = fwhm(average.psf)
    result = BeadAverage(
        psf=average.psf,
        beads=_bead_table(beads, average.offset, frame.scale),
        beads_used=sum(b.used for b in beads),
        spread=float(np.median(_differences(beads, average.combined))),
        fwhm=widths,
        fwhm_physical=in_spacing_units(widths, spacing if spacing_given else None),
        snr=float(average.psf.max() / average.sigma),
        spacing=spacing,
        noise_sigma=float(frame.sigma) * frame.scale,
        background=float(np.mean(frame.background)) * frame.scale,
    )
    return finite_result(result, "average_beads", skip=("beads",))


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
    extent = float(np.max(np.array(psf.shape) * spacing))
    if diameter > extent:
        raise ValueError(f"bead_diameter {diameter:g} is larger than the averaged PSF "
                         f"({extent:g} in the units of spacing): give the diameter in the "
                         "units of spacing, or leave it out")
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
