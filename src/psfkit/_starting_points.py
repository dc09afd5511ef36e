"""Starting points of a kernel fit: the candidate vectors one model's fit may start from,
and their scores.

:func:`_coarse_candidates` compares a ladder of sizes on a binned copy of the pair and
brackets the best two; :func:`_defocus_candidates` adds the cepstrum's diameter for the
defocus models; :func:`_search_scores` scores candidates at full resolution on a central
crop by the residual left once gain and offset are solved linearly.
"""

from __future__ import annotations

import numpy as np

from ._fit_models import _kernel_shape, _Model
from ._fit_problem import _Normalised, _Problem
from ._least_squares import _linear_fit
from .defocus import defocus_diameter

#: Largest centred crop, per axis, on which starting points are compared.
_SEARCH_CROP = 256


def _size_scales(ndim) -> np.ndarray:
    """Sizes (px) tried as starting points: geometric steps of about 22 %."""
    return np.geomspace(0.4, 24.0, 22 if ndim == 2 else 14)


def _pyramid_factors(shape, uniform: bool) -> np.ndarray:
    """Binning factor per axis (1, 2 or 4) that leaves at least 64 px along it; the
    smallest of them on every axis when ``uniform``."""
    factors = np.ones(len(shape), dtype=int)
    for axis, n in enumerate(shape):
        while factors[axis] < 4 and n // (2 * factors[axis]) >= 64:
            factors[axis] *= 2
    return np.full(len(shape), factors.min()) if uniform else factors


def _bin(image: np.ndarray, factors) -> np.ndarray:
    """Mean over blocks of ``factors`` (per axis) samples (the remainder is dropped)."""
    cropped = image[tuple(slice(0, n - n % f) for n, f in zip(image.shape, factors,
                                                              strict=True))]
    shape = []
    for n, f in zip(cropped.shape, factors, strict=True):
        shape += [n // f, f]
    return cropped.reshape(shape).mean(axis=tuple(range(1, 2 * image.ndim, 2)))


def _search_scores(spec: _Model, a, b, shift, candidates, shape, margin) -> list[float]:
    """Residual sum of squares of each candidate (gain and offset solved linearly) on a
    central crop, all rendered on one kernel shape that holds the largest."""
    ndim = a.ndim
    if shape is None:
        extents = [_kernel_shape(spec, v, ndim, a.shape, margin) for v in candidates]
        shape = tuple(max(e[i] for e in extents) for i in range(ndim))
    search = _Problem(a, b, shape, margin, crop=_SEARCH_CROP)
    scores = []
    for v in candidates:
        kernel = spec.render(shape, v)
        scores.append(_linear_fit(search.apply(kernel, shift), search.data)[2])
    return scores


def _coarse_candidates(spec: _Model, pair: _Normalised, shift0, margin) -> list[np.ndarray]:
    """Starting vectors: a ladder of sizes compared on a binned copy of the pair, the best
    two then bracketed (0.8, 1 and 1.25 times); the whole ladder when the images are too
    small to bin."""
    candidates = [v for size in _size_scales(pair.sharp.ndim) for v in spec.starts([size])]
    factors = _pyramid_factors(pair.sharp.shape, uniform=spec.name != "gaussian")
    if not np.any(factors > 1):
        return candidates
    coarse_spec, to_coarse = spec.binned(factors)
    scores = _search_scores(coarse_spec, _bin(pair.sharp, factors), _bin(pair.blurred, factors),
                            shift0 / factors, [to_coarse(v) for v in candidates], None,
                            margin / factors + 1)
    best = np.argsort(scores)[:2]
    return [spec.scaled(candidates[i], r) for i in best for r in (0.8, 1.0, 1.25)]


def _defocus_candidates(spec: _Model, pair: _Normalised) -> list[np.ndarray]:
    """For the defocus models (disk, ring), the start read from the cepstrum, if any."""
    if spec.name not in ("disk", "ring"):
        return []
    try:
        diameter = defocus_diameter(pair.blurred, sharp=pair.sharp)
    except ValueError:
        return []
    if spec.name == "disk":
        return [np.array([diameter / 2])]
    return [np.array([diameter, max(0.5, 0.05 * diameter)])]
