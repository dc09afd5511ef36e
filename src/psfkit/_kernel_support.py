"""Choosing a kernel's support from the data, and the noise floors its rim sets.

The forward model is ``blurred0 ≈ sharp0 ∗ k`` with ``k`` on a small odd support. A wide
Fourier pilot (:func:`_pilot`) gives a first support that holds its mass above its noise
(:func:`_auto_shape`); a rough least-squares fit there is trimmed to its mass
(:func:`_trimmed_shape`) and, on an extended scene whose kernel fills its support, grown
(:func:`_grown_shape`) before the final fit (:func:`_fit_support`, :func:`_surveyed_fit`).
The outer two pixels of a well-sized support hold only noise; the rim-noise rules of
:mod:`psfkit.noise` (:func:`~psfkit.noise.rim_noise_mean`,
:func:`~psfkit.noise.rim_noise_rms`, :func:`~psfkit.noise.rim_zero_fraction`) read it and
set the floors of the trimming, of the kernel's centroid (:func:`_kernel_centre`) and of
the flux bias that nonnegativity leaves (:func:`_remove_noise_floor`,
:func:`_match_unconstrained_mass`).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from ._kernel_fit import _fit_at_shift
from ._kernel_fourier import _fourier_estimate
from .align import centroid
from .noise import rim_noise_mean, rim_noise_rms, rim_zero_fraction
from .operators import centre_embed

# -- the pilot and the support it shows ---------------------------------------------------


def _pilot_shape(image_shape, shape):
    """Support of the wide Fourier pilot: about a third of each axis, at most 63 pixels (31
    in 3D), and at least the requested ``shape`` when one is given."""
    cap = 63 if len(image_shape) == 2 else 31
    return tuple(max(min(2 * (n // 6) + 1, cap), 2 * (k // 2) + 1 if shape else 1)
                 for n, k in zip(image_shape, shape or image_shape, strict=True))


def _pilot(pair, shape, manual):
    """The Fourier estimate on a pilot support of ``shape``, cut to fit in ``pair``'s overlap."""
    shape = tuple(min(k, n - 1 if n % 2 == 0 else n) for k, n in zip(shape, pair.sharp0.shape,
                                                                       strict=True))
    return _fourier_estimate(pair, shape, manual)[0]


def _pilot_is_significant(pilot, factor=6.0):
    """Whether a pilot's smoothed peak stands ``factor`` times above its outer frame's RMS."""
    smooth, frame = _smoothed_frame(pilot)
    if not frame.size:
        return True
    noise = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
    return float(smooth.max()) > factor * noise


def _smoothed_frame(pilot):
    """A pilot kernel smoothed a little, and the smoothed values on its outer frame.

    The frame is an eighth of each axis wide (at least two pixels): a kernel smaller than
    the pilot leaves it empty, so it holds the pilot's noise.
    """
    smooth = ndi.gaussian_filter(pilot.astype(np.float32), 1.0)
    frame = np.ones(pilot.shape, bool)
    frame[tuple(slice(max(2, n // 8), n - max(2, n // 8)) for n in pilot.shape)] = False
    return smooth, smooth[frame]


def _auto_shape(pilot, fraction=0.99):
    """Odd support that holds ``fraction`` of a pilot kernel's mass above its noise, + margin.

    The pilot is smoothed a little; its noise floor is the 99th percentile of the smoothed
    values in an outer frame of the pilot, which a kernel smaller than the pilot leaves
    empty. The extent along each axis is measured around the centre pixel.
    """
    smooth, frame = _smoothed_frame(pilot)
    floor = float(np.percentile(np.abs(frame), 99)) if frame.size else 0.0
    positive = np.clip(smooth - floor, 0, None).astype(np.float64)
    if positive.sum() <= 0:
        return tuple(min(k, 15) | 1 for k in pilot.shape)
    # keep only the connected parts that hold a strong value: the kernel's core, rings or
    # streak, not the scattered noise that would otherwise add up to a wide support
    labels, count = ndi.label(positive > 0)
    if count > 1:
        peaks = ndi.maximum(positive, labels, index=np.arange(1, count + 1))
        strong = np.flatnonzero(peaks >= 0.3 * float(positive.max())) + 1
        positive = np.where(np.isin(labels, strong), positive, 0.0)
    centre = np.array(pilot.shape) // 2
    shape = []
    for axis, n in enumerate(pilot.shape):
        profile = positive.sum(axis=tuple(a for a in range(pilot.ndim) if a != axis))
        distance = np.abs(np.arange(n) - centre[axis])
        order = np.argsort(distance, kind="stable")
        cumulative = np.cumsum(profile[order]) / profile.sum()
        radius = distance[order][min(np.searchsorted(cumulative, fraction), n - 1)]
        half = int(np.ceil(1.2 * radius + 2))
        shape.append(int(min(2 * half + 1, n if n % 2 else n - 1)))
    return tuple(max(s, 3) for s in shape)


def _is_sparse(image, share=0.6):
    """Whether 1 % of the pixels hold more than ``share`` of the image's contrast energy.

    True for star fields and other point-like scenes, false for natural images and
    fluorescence-like blobs.
    """
    contrast = np.ravel(image).astype(np.float64)
    energy = (contrast - np.median(contrast)) ** 2
    top = max(energy.size // 100, 1)
    total = float(energy.sum())
    return total > 0 and float(np.partition(energy, energy.size - top)[-top:].sum()) > \
        share * total


# -- the noise on a kernel's rim: the supports and floors it sets -------------------------
# The outer two pixels of a well-sized support (noise.rim) hold only noise: the rules of
# psfkit.noise read its mean and RMS, and tell a rim of clipped noise from faint wings.


def _kernel_centre(kernel):
    """Centroid of a fitted kernel above three times the RMS of its outer two-pixel rim.

    The rim of a well-sized support holds only noise; without this floor the noise spread
    over the support would pull the centroid towards the middle of the support.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    floor = 3.0 * rim_noise_rms(kernel)
    above = np.clip(kernel - floor, 0, None)
    return centroid(above if above.sum() > 0 else np.clip(kernel, 0, None))


def _remove_noise_floor(kernel, zero_fraction=0.25):
    """Remove the positive bias that nonnegativity leaves where a fitted kernel is zero.

    Where the true kernel is zero, about half of the constrained values sit at zero and the
    rest are positive noise, whose mean adds up over the support, inflates the kernel's sum
    and, once normalised, shrinks its core. When at least ``zero_fraction`` of the outer
    two-pixel rim is at zero (a rim of noise, not of faint wings), the rim's mean is taken as
    that bias, subtracted everywhere, and the kernel clipped at zero again.
    """
    if rim_zero_fraction(kernel) < zero_fraction:
        return kernel
    return np.clip(kernel - np.float32(rim_noise_mean(kernel)), 0, None).astype(np.float32)


def _trimmed_shape(kernel, sparse=False, fraction=0.995, zero_fraction=0.25, margin=2):
    """Smallest centred odd box holding ``fraction`` of a fitted kernel's mass, + ``margin``.

    Noise leaves small positive values all over a nonnegative kernel; twice their mean
    level on the outer two-pixel rim is removed before the mass is counted. For a
    ``sparse`` scene (a star field, see :func:`_is_sparse`) whose kernel has at least
    ``zero_fraction`` of that rim at zero (a rim of noise, not of wings), the floor is raised
    to three times the rim's RMS: there the noise leaves isolated spikes all over the
    support, which would otherwise hold more than ``1 - fraction`` of the mass and keep the
    support, and its noise, wide; one more pixel of margin gives back the faint outskirts
    that floor cuts. On extended scenes the smoothness penalty already damps
    those spikes and the higher floor would cut faint wings (Airy rings, Moffat halos).
    """
    kernel = np.clip(kernel, 0, None).astype(np.float64)
    noisy_rim = sparse and rim_zero_fraction(kernel) >= zero_fraction
    spikes = 3.0 * rim_noise_rms(kernel) if noisy_rim else 0.0
    positive = np.clip(kernel - max(2.0 * rim_noise_mean(kernel), spikes), 0, None)
    total = positive.sum()
    if total <= 0:
        return kernel.shape
    shape = []
    for axis, n in enumerate(kernel.shape):
        profile = positive.sum(axis=tuple(a for a in range(kernel.ndim) if a != axis))
        distance = np.abs(np.arange(n) - n // 2)
        mass = np.array([profile[distance <= r].sum() for r in range(n // 2 + 1)]) / total
        radius = int(np.searchsorted(mass, fraction))
        shape.append(min(2 * (radius + margin + int(noisy_rim)) + 1, n))
    return tuple(shape)


def _match_unconstrained_mass(kernel, unconstrained_sum, significance=2.0, cap=0.2):
    """Zero a nonnegative fit's smallest values until its sum is the unconstrained fit's.

    Where the true kernel is zero, the constraint keeps the positive half of the noise and
    clips the negative half, so the constrained kernel's sum exceeds the flux the data
    hold; the unconstrained fit's sum, whose noise averages out, does not. Once normalised,
    that surplus shrinks the kernel's core by the same fraction: on sparse scenes and with
    correlated errors (JPEG) the surplus reaches 5-10 % and dominates the error. When the
    surplus exceeds ``significance`` times the noise of a sum, ``σ √N`` (``σ`` the RMS
    of the outer two-pixel rim, an upper bound of the per-pixel noise), values are zeroed
    from the smallest up until the sums agree, never above ``cap`` times the peak. A
    surplus within the noise (faint real wings, bright scenes) leaves the kernel as it is.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    total = float(kernel.sum(dtype=np.float64))
    sigma = rim_noise_rms(kernel)
    surplus = total - unconstrained_sum
    if unconstrained_sum <= 0 or surplus <= significance * sigma * np.sqrt(kernel.size):
        return kernel
    values = np.sort(kernel.ravel().astype(np.float64))
    remaining = total - np.cumsum(values)  # the sum left once values[: i + 1] are zeroed
    index = min(int(np.searchsorted(-remaining, -unconstrained_sum)), values.size - 1)
    threshold = min(values[index], cap * float(values[-1]))
    return np.where(kernel > threshold, kernel, 0).astype(np.float32)


def _grown_shape(shape, trimmed, limit):
    """``shape`` enlarged by about a third along every axis where ``trimmed`` kept all of it."""
    return tuple(min(n + 2 * max(2, n // 6), m if m % 2 else m - 1) if t >= n else n
                 for n, t, m in zip(shape, trimmed, limit, strict=True))


# -- the support of the fit ---------------------------------------------------------------


def _fit_support(pair, sharp, shape, pilot_shape, options):
    """The fit on the requested ``shape``, or on a support chosen from the data (None).

    The automatic support holds the pilot's mass (:func:`_auto_shape`); the least-squares
    solver then surveys it with a rough fit and finishes on the support that fit shows
    (:func:`_surveyed_fit`).
    """
    automatic = shape is None
    if automatic:
        shape = _auto_shape(_pilot(pair, pilot_shape, options.manual))
    survey = automatic and options.method == "lsq"
    fit = _fit_at_shift(pair, shape, options.rough() if survey else options)
    if survey and not fit.stopped:
        fit = _surveyed_fit(pair, fit, pilot_shape, options, sparse=_is_sparse(sharp))
    return fit


def _surveyed_fit(pair, survey, pilot_shape, options, *, sparse):
    """The final fit on the support that a rough ``survey`` fit shows.

    A rough constrained fit is clean enough to show the real support: its empty rim, whose
    noise would otherwise stay in the kernel, is dropped (:func:`_trimmed_shape`) and the
    fit finished there. On an extended scene a kernel whose mass runs up to the edge of the
    survey's support was cut by the pilot's noise floor (faint rings, halos): it is surveyed
    again on a larger support (:func:`_grown_shape`), at most twice. On a ``sparse`` scene
    the rim's noise spikes make every support look full, so it is not grown.
    """
    fit, trimmed = survey, _trimmed_shape(survey.kernel, sparse=sparse)
    for _ in range(2):
        larger = _grown_shape(fit.shape, trimmed, pilot_shape)
        if sparse or larger == fit.shape or fit.stopped:
            break
        fit = _fit_at_shift(pair, larger, options.rough(), start=centre_embed(fit.kernel, larger),
                            start_regularization=fit.regularization)
        trimmed = _trimmed_shape(fit.kernel, sparse=sparse)
    return _fit_at_shift(pair, trimmed, options, start=centre_embed(fit.kernel, trimmed),
                         start_regularization=fit.regularization)
