"""The map estimators: a kernel per tile of an image pair (:func:`estimate_kernel_map`), a
parametric model per tile smoothed into parameter fields (:func:`fit_kernel_map`), and a
bead average per region (:func:`bead_map`, behind ``average_beads(..., grid=...)``). Each
returns a :class:`psfkit.psf_map.PsfMap` with per-tile diagnostics.

Alignment: the global shift between the pair is measured once on the whole pair
(:func:`psfkit.estimate_shift`) and its integer part cuts both images to their common
overlap, so that the tiles of ``sharp`` and ``blurred`` hold the same scene; each tile's
estimate then measures its own sub-pixel shift, gain and offset (a field-dependent
distortion or vignetting is absorbed per tile and reported in the diagnostics). The maps
are in ``blurred``'s pixel coordinates, the image one deconvolves.

Progress: each estimator takes the ``callback`` of :mod:`psfkit._progress`, called with
one count over all tiles (:class:`psfkit._progress.PartsProgress`, a hundred steps per
tile). When it returns ``False`` the running tile stops as its estimator does and no
further tile is estimated; the map of what was reached is returned, the tiles not reached
recorded as failed ones (unreliable, filled from their neighbours or left out of the
smoothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._progress import PartsProgress
from ._validate import (
    as_float_array,
    kernel_shape,
    matching_pair,
    optional_callable,
    rescaled,
    whole_number,
)
from .align import estimate_shift
from .psf_map import (
    DEFAULT_OVERLAP,
    MIN_RELATIVE_TEXTURE,
    PsfMap,
    Tile,
    fill_unreliable,
    require_reliable,
    stack_on_grid,
    texture,
    tile_centres,
    tile_grid,
    tiling,
)

#: A tile whose residual ratio is above this many times the median tile's is unreliable:
#: its kernel does not explain its data as well as the others' do.
MAX_RELATIVE_RESIDUAL = 3.0

#: Smallest tile side in pixels when no kernel shape is given.
MIN_TILE = 32

#: Outlier rejection of the parameter smoothing: a tile whose misfit is beyond this many
#: robust standard deviations from the field is left out, and the field refitted
#: (Rousseeuw & Leroy's 3-sigma rule for a normal core; for a tile that measures several
#: quantities, the chi-square quantile of the same probability, see :func:`robust_field`).
OUTLIER_CUT = 3.0

#: Step of the central differences that give a tile's sensitivity to its smooth
#: quantities, relative to each quantity's size (see :func:`_steps`).
SENSITIVITY_STEP = 1e-3

#: Side (px) of the blocks over which a tile's information is summed before the field
#: is fitted: the field changes little across 4 px of a tile, and a large tile's
#: per-pixel 3×3 information would take tens of megabytes.
INFORMATION_BLOCK = 4

#: Parameters that are directions with period pi (a line's): smoothed as the doubled-angle
#: vector ``(cos 2θ, sin 2θ)`` so that 179° and 1° average to 0°.
ANGLE_PARAMETERS = ("angle",)


@dataclass(frozen=True)
class _Pair:
    """A pair cut to its overlap at the integer global shift: ``blurred[x + start_b]``
    shows ``sharp[x + start_s]``; ``offset`` places the overlap in ``blurred``."""

    sharp: np.ndarray
    blurred: np.ndarray
    offset: tuple
    shift: np.ndarray
    shape: tuple


def _aligned_pair(sharp, blurred) -> _Pair:
    """The pair as float32 cut to its common overlap at the rounded global shift."""
    sharp = as_float_array(sharp, "sharp")
    blurred = as_float_array(blurred, "blurred")
    matching_pair(sharp, blurred)
    # measured on the pair at ordinary magnitudes (exact powers of two), as estimate_kernel does
    shift = estimate_shift(rescaled(sharp)[0], rescaled(blurred)[0], upsample=10)
    whole = [round(s) for s in shift]
    if any(abs(s) >= n // 2 for s, n in zip(whole, sharp.shape, strict=True)):
        raise ValueError(f"sharp and blurred are shifted by {tuple(whole)} px, more than half "
                         f"the image; crop them to the same view of the scene")
    in_blurred = tuple(slice(max(s, 0), n + min(s, 0)) for s, n in zip(whole, sharp.shape,
                                                                        strict=True))
    in_sharp = tuple(slice(max(-s, 0), n - max(s, 0)) for s, n in zip(whole, sharp.shape,
                                                                       strict=True))
    return _Pair(sharp=sharp[in_sharp], blurred=blurred[in_blurred],
                 offset=tuple(r.start for r in in_blurred), shift=np.asarray(shift),
                 shape=blurred.shape)


def _tiles(pair: _Pair, grid, overlap, shape) -> tuple[tuple, list[Tile]]:
    """The grid per axis and the tiles of the pair's overlap (at least 4 kernels wide)."""
    grid = tile_grid(grid, pair.sharp.ndim)
    minimum = [MIN_TILE] * pair.sharp.ndim if shape is None else [4 * k for k in shape]
    minimum = [min(m, n) for m, n in zip(minimum, pair.sharp.shape, strict=True)]
    tiles = tiling(pair.sharp.shape, grid, overlap, minimum)
    if any(min(s.stop - s.start for s in t.region) < 8 for t in tiles):
        raise ValueError(f"grid {grid} cuts an image of {pair.sharp.shape} into tiles below "
                         f"8 pixels; use fewer tiles")
    return grid, tiles


def _on_tiles(estimate, tiles, callback) -> list:
    """``estimate(tile, tile_callback)`` for every tile, None where it raises a
    ``ValueError`` (that tile is then flagged and filled) or where it was not reached
    because ``callback`` asked to stop (the first tile always runs); when no tile has a
    result, the first tile's error is raised, since it names the argument at fault."""
    progress = PartsProgress(callback, len(tiles))
    results, first_error = [], None
    for index, tile in enumerate(tiles):
        if progress.stopped:
            results.append(None)
            continue
        try:
            results.append(estimate(tile, progress.part(index)))
        except ValueError as error:
            results.append(None)
            first_error = first_error or error
        progress.part_done(index)
    if first_error is not None and all(result is None for result in results):
        raise ValueError(f"every tile of the map failed; the first: {first_error}"
                         ) from first_error
    return results


def _reliability(textures, ratios, failed) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, the texture relative to the median tile's and whether the tile is
    reliable: it did not fail, has at least ``MIN_RELATIVE_TEXTURE`` of the median
    texture and at most ``MAX_RELATIVE_RESIDUAL`` times the median residual ratio."""
    textures, ratios, failed = map(np.asarray, (textures, ratios, failed))
    ok = ~failed
    if not ok.any():
        return np.zeros(len(textures)), np.zeros(len(textures), dtype=bool)
    relative = textures / max(float(np.median(textures[ok])), 1e-30)
    reliable = ok & (relative >= MIN_RELATIVE_TEXTURE) & (
        ratios <= MAX_RELATIVE_RESIDUAL * float(np.median(ratios[ok])))
    return np.where(ok, relative, 0.0), reliable


def _map_of(pair: _Pair, tiles, grid, kernels, diagnostics, reliable, **fields) -> PsfMap:
    """The PsfMap of per-tile kernels (None for failed tiles), unreliable ones filled."""
    shaped = {name: np.asarray(value).reshape((*grid, *np.shape(value)[1:]))
              for name, value in diagnostics.items()}
    reliable = np.asarray(reliable).reshape(grid)
    require_reliable(reliable)
    stand_in = next(k for k, r in zip(kernels, reliable.ravel(), strict=True) if r)
    kernels = [k if k is not None else np.zeros_like(stand_in) for k in kernels]
    psfs = fill_unreliable(stack_on_grid(kernels, grid), reliable)
    shaped.update(reliable=reliable, filled=~reliable)
    centres = tuple(c + o for c, o in zip(tile_centres(tiles, grid), pair.offset, strict=True))
    return PsfMap(psfs=psfs.astype(np.float32), centres=centres, shape=pair.shape,
                  diagnostics=shaped, **fields)


def estimate_kernel_map(sharp, blurred, grid=(3, 3), shape=None, *,
                        overlap: float = DEFAULT_OVERLAP, callback=None,
                        **options) -> PsfMap:
    """Kernels of a sharp/blurred pair on a grid of overlapping tiles.

    Parameters
    ----------
    sharp, blurred : (M, N) or (P, M, N) ndarray
        The pair, same shape, as for :func:`psfkit.estimate_kernel`.
    grid : (rows, cols) or one count per axis
        Tiles per axis (for a volume, ``(rows, cols)`` tiles its last two axes).
    shape : int or tuple of int, optional
        Odd kernel shape; by default each tile chooses its own and all are zero-padded to
        the largest.
    overlap : float
        Width of a tile over the spacing of the tile centres (>= 1; neighbours overlap).
    callback : callable, optional
        ``callback(step, total, current)`` with one count over all tiles (the module
        docstring); return ``False`` to stop: the tiles not reached are failed tiles.
    **options
        Passed to :func:`psfkit.estimate_kernel` for every tile (``method``,
        ``regularization``, ``nonnegative``, ...); ``normalize`` and ``center`` are on.

    Returns
    -------
    PsfMap
        In ``blurred``'s pixel coordinates. ``diagnostics``: ``residual_ratio`` (residual
        RMS over the noise), ``reliability`` (the sharp tile's gradient energy over the
        noise, relative to the median tile), ``reliable``/``filled`` (an unreliable tile's
        kernel is the mean of its nearest reliable neighbours'), and the tile's ``shift``
        (global plus its own), ``gain`` and ``offset`` (NaN, and ``residual_ratio``
        infinite, for a tile whose estimate failed). ``psfs`` are always finite.

    Notes
    -----
    See the module docstring for the alignment: the global shift once on the whole pair,
    then per tile its sub-pixel shift, gain and offset.
    """
    callback = optional_callable(callback)
    pair = _aligned_pair(sharp, blurred)
    if shape is not None:
        shape = kernel_shape(shape, pair.sharp.ndim)
    grid, tiles = _tiles(pair, grid, overlap, shape)
    from .estimate import estimate_kernel

    estimates = _on_tiles(lambda tile, tile_callback: estimate_kernel(
        pair.sharp[tile.region], pair.blurred[tile.region], shape, callback=tile_callback,
        **options), tiles, callback)
    kernels, textures, ratios, failed = [], [], [], []
    shifts, gains, offsets = [], [], []
    for tile, estimate in zip(tiles, estimates, strict=True):
        failed.append(estimate is None)
        kernels.append(None if estimate is None else estimate.kernel)
        ratios.append(np.inf if estimate is None else estimate.residual_ratio)
        textures.append(0.0 if estimate is None else texture(
            pair.sharp[tile.region], estimate.noise_sigma / max(abs(estimate.gain), 1e-30)))
        shifts.append(np.full(pair.sharp.ndim, np.nan) if estimate is None
                      else np.round(pair.shift) + estimate.shift)
        gains.append(np.nan if estimate is None else estimate.gain)
        offsets.append(np.nan if estimate is None else estimate.offset)
    relative, reliable = _reliability(textures, ratios, failed)
    diagnostics = dict(residual_ratio=np.asarray(ratios), reliability=relative,
                       shift=np.asarray(shifts), gain=np.asarray(gains),
                       offset=np.asarray(offsets))
    return _map_of(pair, tiles, grid, kernels, diagnostics, reliable)


# ------------------------------------------------------------------ smoothed parameter maps


def _basis(points: np.ndarray, centre, scale, degree: int) -> np.ndarray:
    """Monomials ``u^a v^b`` (``a + b <= degree``) of the normalised coordinates of
    ``points`` (``(T, A)``, the axes that vary) as columns."""
    u = (np.asarray(points, dtype=np.float64) - centre) / scale
    columns = [np.ones(len(u))]
    for total in range(1, degree + 1):
        for powers in _powers(u.shape[1], total):
            columns.append(np.prod([u[:, a] ** p for a, p in enumerate(powers)], axis=0))
    return np.stack(columns, axis=1)


def _powers(axes: int, total: int) -> list[tuple[int, ...]]:
    """Every tuple of ``axes`` nonnegative powers summing to ``total``."""
    if axes == 1:
        return [(total,)]
    return [(first, *rest) for first in range(total, -1, -1)
            for rest in _powers(axes - 1, total - first)]


def _term_count(axes: int, degree: int) -> int:
    """Columns of :func:`_basis`."""
    return len(_basis(np.zeros((1, axes)), 0.0, 1.0, degree)[0])


def _information_inverse(information: np.ndarray) -> tuple[np.ndarray, int]:
    """The pseudo-inverse of a tile's information matrix and its rank, computed on the
    matrix scaled to a unit diagonal (its quantities have different units), so that a
    direction the data do not determine at all (a direction vector's length) is
    dropped rather than inverted."""
    diagonal = np.sqrt(np.clip(np.diag(information), 0, None))
    if not np.any(diagonal > 0):
        return np.zeros_like(information), 0
    diagonal = np.where(diagonal > 0, diagonal, 1.0)  # an undetermined quantity stays so
    scaled = information / np.outer(diagonal, diagonal)
    inverse = np.linalg.pinv(scaled, rcond=1e-8, hermitian=True)
    rank = int(np.linalg.matrix_rank(scaled, tol=1e-8 * np.abs(scaled).max(), hermitian=True))
    return inverse / np.outer(diagonal, diagonal), rank


def robust_field(operators, targets, informations, usable,
                 cut: float = OUTLIER_CUT) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``c`` of a field measured by tiles: tile ``t`` measures
    ``targets[t] ≈ operators[t] @ c`` (``(Q,)`` and ``(Q, C)``) with information
    ``informations[t]`` (``(Q, Q)``, the inverse of the measurement's covariance).

    ``c`` minimises ``sum_t r_tᵀ F_t⁺ r_t`` (``r_t`` the tile's misfit, ``F_t⁺`` the
    pseudo-inverse of its information) over the ``usable`` tiles; a tile whose ``r_tᵀ
    F_t⁺ r_t`` is beyond the chi-square quantile of its rank at the probability of
    ``cut`` normal sigmas, in units of the robust scale (the median misfit over the
    chi-square median), is left out and the field refitted until no tile changes. With
    one quantity, unit information and ``operators`` the rows of a design matrix this is
    a least-squares polynomial with a ``cut``-sigma residual rejection on a robust
    scale (1.4826 times the median absolute residual). Returns the coefficients and the
    tiles kept."""
    from scipy.special import erf
    from scipy.stats import chi2

    inverses, ranks = zip(*(_information_inverse(f) for f in informations), strict=True)
    ranks = np.asarray(ranks)
    usable = np.asarray(usable) & (ranks > 0)
    probability = float(erf(cut / np.sqrt(2)))
    quantile = np.where(ranks > 0, chi2.ppf(probability, np.maximum(ranks, 1)), 0.0)
    median = np.where(ranks > 0, chi2.ppf(0.5, np.maximum(ranks, 1)), 1.0)
    terms = operators[0].shape[1] // len(targets[0])  # coefficients per quantity
    floor = 1e-18 * float(np.median([targets[t] @ inverses[t] @ targets[t]
                                     for t in np.flatnonzero(usable)]))
    kept = usable.copy()
    for _ in range(len(targets)):
        normal = sum(operators[t].T @ inverses[t] @ operators[t] for t in np.flatnonzero(kept))
        right = sum(operators[t].T @ inverses[t] @ targets[t] for t in np.flatnonzero(kept))
        coefficients = np.linalg.lstsq(normal, right, rcond=None)[0]
        misfit = np.array([(targets[t] - operators[t] @ coefficients) @ inverses[t]
                           @ (targets[t] - operators[t] @ coefficients)
                           for t in range(len(targets))])
        scale = float(np.median(misfit[kept] / median[kept]))
        inliers = usable & (misfit <= quantile * max(scale, floor, 1e-300))
        if inliers.sum() < terms or np.array_equal(inliers, kept):
            break
        kept = inliers
    return coefficients, kept


def smooth_quantities(model: str, params: dict) -> dict[str, np.ndarray]:
    """The quantities of a model's parameters that vary smoothly over a field, which the
    polynomials are fitted to: an elliptical Gaussian's second moments ``cxx, cyy, cxy``
    (its angle is undefined where it is round, and jumps by π where it wraps), a
    direction's doubled-angle vector ``(cos 2θ, sin 2θ)``, the other parameters as they
    are; each a 1D array (one entry, or one per axis)."""
    if model == "elliptical_gaussian":
        major, minor = params["sigma_x"] ** 2, params["sigma_y"] ** 2
        c, s = np.cos(params["angle"]), np.sin(params["angle"])
        return dict(cxx=np.array([major * c * c + minor * s * s]),
                    cyy=np.array([major * s * s + minor * c * c]),
                    cxy=np.array([(major - minor) * c * s]))
    quantities = {}
    for name, value in params.items():
        value = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if name in ANGLE_PARAMETERS:
            quantities[f"{name} cos"], quantities[f"{name} sin"] = (np.cos(2 * value),
                                                                     np.sin(2 * value))
        else:
            quantities[name] = value
    return quantities


def parameter_arrays(model: str, quantities: dict, sizes: dict) -> dict:
    """The inverse of :func:`smooth_quantities` on arrays: ``quantities`` holds each
    quantity as ``(components, ...)`` (any positions along the trailing axes), the result
    each parameter as ``(...)`` (one component) or ``(components, ...)``; ``sizes`` gives
    each parameter's number of components."""
    if model == "elliptical_gaussian":
        cxx, cyy, cxy = (np.asarray(quantities[n][0]) for n in ("cxx", "cyy", "cxy"))
        mean, half = (cxx + cyy) / 2, np.hypot((cxx - cyy) / 2, cxy)
        return dict(sigma_y=np.sqrt(np.maximum(mean - half, 1e-4)),
                    sigma_x=np.sqrt(np.maximum(mean + half, 1e-4)),
                    angle=np.mod(0.5 * np.arctan2(2 * cxy, cxx - cyy), np.pi))
    params = {}
    for name, size in sizes.items():
        if name in ANGLE_PARAMETERS:
            values = np.mod(0.5 * np.arctan2(quantities[f"{name} sin"],
                                             quantities[f"{name} cos"]), np.pi)
        else:
            values = np.asarray(quantities[name])
        params[name] = values[0] if size == 1 else values
    return params


def model_parameters(model: str, quantities: dict, sizes: dict) -> dict:
    """The inverse of :func:`smooth_quantities` at one position (each quantity a 1D array
    of its components): the parameters in the form the model takes them, floats or
    tuples of floats."""
    return {name: float(value) if np.ndim(value) == 0 else tuple(float(v) for v in value)
            for name, value in parameter_arrays(model, quantities, sizes).items()}


@dataclass(frozen=True)
class TileInformation:
    """What a tile's fit says about each smooth quantity, place by place: ``points``
    ``(N, A)``, the coordinates along the field's axes of the centres of blocks of
    ``INFORMATION_BLOCK`` compared pixels (along the other axes, all of them), and
    ``density`` ``(N, Q, Q)``, each block's Fisher information, the sum of ``h hᵀ /
    noise²`` over its pixels on the ``Q`` quantity components, ``h`` the change of the
    tile's prediction per unit of each component."""

    points: np.ndarray
    density: np.ndarray


def quantity_vector(model: str, params: dict) -> tuple[np.ndarray, dict]:
    """The smooth quantities of ``params`` in one vector, and their sizes by name."""
    quantities = smooth_quantities(model, params)
    return (np.concatenate(list(quantities.values())),
            {name: len(value) for name, value in quantities.items()})


def _quantities_of(vector: np.ndarray, sizes: dict) -> dict:
    """The inverse of :func:`quantity_vector`."""
    split = np.cumsum(list(sizes.values()))[:-1]
    return dict(zip(sizes, np.split(np.asarray(vector), split), strict=True))


def tile_information(fit, sharp_tile: np.ndarray, start, axes) -> TileInformation | None:
    """The :class:`TileInformation` of a tile's :class:`psfkit.KernelFit` on
    ``sharp_tile`` (whose first pixel is at ``start`` in the map's coordinates): ``h_k =
    gain · (∂kernel/∂q_k ∗ sharp)`` on the compared region ``fit.valid``, the kernel's
    derivative in each quantity component ``q_k`` by central differences of the rendered
    model; None when the tile carries no finite information (no noise or no gain)."""
    from .models import make_psf
    from .operators import Convolver

    scale = float(np.abs(sharp_tile).max())
    factor = fit.gain * scale / fit.noise_sigma if fit.noise_sigma > 0 else np.inf
    if not (np.isfinite(factor) and factor != 0):
        return None
    vector, sizes = quantity_vector(fit.model, fit.params)
    parameter_sizes = {name: len(np.atleast_1d(value)) for name, value in fit.params.items()}
    steps = _steps(fit.model, fit.params, vector)

    def kernel(q):
        params = model_parameters(fit.model, _quantities_of(q, sizes), parameter_sizes)
        return make_psf(fit.model, fit.kernel.shape, pixel_integrated=fit.pixel_integrated,
                        **params).astype(np.float64)

    unit = sharp_tile / scale  # magnitudes near 1 through the float32 transforms
    spectrum, rows = None, []
    for k, step in enumerate(steps):
        up, down = vector.copy(), vector.copy()
        up[k] += step
        down[k] -= step
        convolver = Convolver((kernel(up) - kernel(down)) / (2 * step), unit.shape)
        if spectrum is None:
            spectrum = convolver.forward_transform(unit)
        rows.append(convolver.apply(unit, "same", spectrum=spectrum)[fit.valid])
    h = np.stack(rows).astype(np.float64) * factor  # (Q, *valid)
    # the field varies along ``axes`` only: sum the information over the other axes
    others = tuple(2 + a for a in range(sharp_tile.ndim) if a not in axes)
    with np.errstate(over="ignore", invalid="ignore"):
        density = np.einsum("i...,j...->ij...", h, h).sum(axis=others)
    if not (np.all(np.isfinite(density)) and np.any(density)):
        return None
    coordinates = []
    for position, a in enumerate(axes):
        starts = np.arange(0, density.shape[2 + position], INFORMATION_BLOCK)
        stops = np.minimum(starts + INFORMATION_BLOCK, density.shape[2 + position])
        density = np.add.reduceat(density, starts, axis=2 + position)
        coordinates.append(fit.valid[a].start + start[a] + (starts + stops - 1) / 2)
    density = _pin_directions(density.reshape(len(vector), len(vector), -1).T, vector, sizes)
    grids = np.meshgrid(*coordinates, indexing="ij")
    return TileInformation(points=np.stack([g.ravel() for g in grids], axis=1),
                           density=density)


def _steps(model: str, params: dict, vector: np.ndarray) -> np.ndarray:
    """Central-difference steps for each quantity component: ``SENSITIVITY_STEP`` of its
    own size, of the ellipse's mean moment for ``cxy`` (which may be 0), of the unit
    length for a direction's vector."""
    scales = []
    for name, value in smooth_quantities(model, params).items():
        if name == "cxy":
            scales.append([params["sigma_x"] * params["sigma_y"]])
        elif name in SIGNED_QUANTITIES:
            scales.append(np.ones(len(value)))
        else:
            scales.append(np.abs(value))
    return SENSITIVITY_STEP * np.maximum(np.concatenate(scales), 1e-6)


def _pin_directions(density: np.ndarray, vector: np.ndarray, sizes: dict) -> np.ndarray:
    """``density`` (``(N, Q, Q)``) with the length of each direction's unit vector ``(cos
    2θ, sin 2θ)`` (which no prediction depends on) as well determined at each pixel as
    its turn: without it a field of such vectors could shrink through zero between tiles
    and turn the direction by 90°."""
    offsets = dict(zip(sizes, np.cumsum([0, *sizes.values()])[:-1], strict=True))
    for name in ANGLE_PARAMETERS:
        if f"{name} cos" not in sizes:
            continue
        index = [int(offsets[f"{name} {part}"]) for part in ("cos", "sin")]
        radial = vector[index] / np.linalg.norm(vector[index])
        tangent = np.array([-radial[1], radial[0]])
        turn = np.einsum("i,nij,j->n", tangent, density[:, index][:, :, index], tangent)
        length = np.zeros(density.shape[1:])
        length[np.ix_(index, index)] = np.outer(radial, radial)
        density = density + turn[:, None, None] * length
    return density


#: Smoothed quantities that may take any sign, so are not held within the tiles' range
#: (the others are sizes, held within half the smallest and twice the largest tile value).
SIGNED_QUANTITIES = ("cxy", "angle cos", "angle sin")


class ParameterField:
    """A model's parameters over the field: a low-order polynomial per smooth quantity
    (:func:`smooth_quantities`) in the coordinates of the axes the grid varies along,
    fitted robustly to what the tiles measured.

    A tile's fit does not measure the field at one point: linearised about its result,
    least squares gives the information-weighted mean of the field over its pixels,
    ``m_t = F_t⁻¹ sum_p F(p) q(p)`` with ``F(p)`` each pixel's Fisher information on the
    quantities (:class:`TileInformation`) and ``F_t`` their sum. The weights are
    matrices: on detail oriented along one direction a tile reads each component of an
    ellipse's moments where the detail lets it, and several components mix, so the
    polynomial ``q`` is fitted to reproduce every tile's ``m_t`` through that mean, each
    tile weighted by ``F_t`` and rejected as a whole when it does not fit
    (:func:`robust_field`). Sizes are held within half the smallest and twice the largest
    tile value, so a polynomial never extrapolates to a size of 0 near a corner."""

    def __init__(self, model: str, tile_params: list, informations: list, centres, usable,
                 axes, degree: int):
        self.model = model
        self.axes = tuple(axes)
        usable = np.asarray(usable)
        first = tile_params[int(np.argmax(usable))]
        self.names = list(first)
        self.sizes = {name: len(np.atleast_1d(first[name])) for name in self.names}
        points = np.asarray(centres, dtype=np.float64)[:, self.axes]
        self.centre = points.mean(axis=0)
        self.scale = np.maximum(np.ptp(points, axis=0) / 2, 1.0)
        self.degree = self._affordable(degree, int(np.sum(usable)))
        _, quantity_sizes = quantity_vector(model, first)
        count = sum(quantity_sizes.values())
        values = np.array([quantity_vector(model, p)[0] if u else np.zeros(count)
                           for p, u in zip(tile_params, usable, strict=True)])
        operators, targets, totals = [], [], []
        for tile in np.flatnonzero(usable):
            information = informations[tile]
            basis = _basis(information.points, self.centre, self.scale, self.degree)
            total = information.density.sum(axis=0)
            # the tile's mean of the field, times F_t: sum_p F(p) q(p), linear in the
            # coefficients (term k of quantity component j at column k * count + j)
            operators.append(np.einsum("nij,nk->ikj", information.density, basis).reshape(
                count, -1))
            targets.append(total @ values[tile])
            totals.append(total)
        coefficients, kept_usable = robust_field(operators, targets, totals,
                                                 np.ones(len(targets), bool))
        kept = np.zeros(len(usable), bool)
        kept[usable] = kept_usable
        surfaces = coefficients.reshape(-1, count)
        split = np.cumsum(list(quantity_sizes.values()))[:-1]
        self.surfaces = dict(zip(quantity_sizes, np.split(surfaces, split, axis=1),
                                 strict=True))
        self.bounds = {name: (0.5 * columns[usable].min(axis=0),
                              2.0 * columns[usable].max(axis=0))
                       for name, columns in zip(quantity_sizes,
                                                np.split(values, split, axis=1), strict=True)
                       if name not in SIGNED_QUANTITIES}
        #: the usable tiles that the outlier rejection kept
        self.kept = kept

    def state(self) -> dict:
        """Everything :meth:`params` reads, as plain values and arrays: what a map file
        stores (:func:`psfkit.io.save_psf_map`) and :meth:`from_state` rebuilds exactly."""
        return {"model": self.model, "axes": list(self.axes), "names": list(self.names),
                "sizes": dict(self.sizes), "centre": self.centre, "scale": self.scale,
                "degree": self.degree, "surfaces": dict(self.surfaces),
                "bounds": {name: list(bound) for name, bound in self.bounds.items()},
                "kept": self.kept}

    @classmethod
    def from_state(cls, state: dict) -> ParameterField:
        """The field whose :meth:`state` is ``state``: the same surfaces, bounds and
        parameters at every position, bit for bit."""
        field = cls.__new__(cls)
        field.model, field.axes = str(state["model"]), tuple(int(a) for a in state["axes"])
        field.names = [str(name) for name in state["names"]]
        field.sizes = {str(name): int(size) for name, size in state["sizes"].items()}
        field.centre = np.asarray(state["centre"], dtype=np.float64)
        field.scale = np.asarray(state["scale"], dtype=np.float64)
        field.degree = int(state["degree"])
        field.surfaces = {str(name): np.asarray(surface, dtype=np.float64)
                          for name, surface in state["surfaces"].items()}
        field.bounds = {str(name): tuple(np.asarray(b, dtype=np.float64) for b in bound)
                        for name, bound in state["bounds"].items()}
        field.kept = np.asarray(state["kept"], dtype=bool)
        return field

    def _affordable(self, degree: int, count: int) -> int:
        """The highest degree up to ``degree`` with no more terms than ``count`` tiles."""
        while degree > 0 and _term_count(len(self.axes), degree) > count:
            degree -= 1
        return degree

    def params(self, position) -> dict:
        """The parameters at a pixel ``position``, in the form the model takes them."""
        point = np.asarray(position, dtype=np.float64)[list(self.axes)][None]
        row = _basis(point, self.centre, self.scale, self.degree)[0]
        quantities = {}
        for name, surface in self.surfaces.items():
            values = row @ surface
            if name in self.bounds:
                values = np.clip(values, *self.bounds[name])
            quantities[name] = values
        return model_parameters(self.model, quantities, self.sizes)

    def images(self, shape) -> dict[str, np.ndarray]:
        """Every parameter at every pixel of an image of ``shape``: ``shape`` arrays (or
        ``(components, *shape)`` for a parameter with one value per axis), float32; what
        :meth:`params` gives pixel by pixel, up to the rounding of the sums."""
        axes_shape = [shape[a] for a in self.axes]
        grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in axes_shape],
                            indexing="ij")
        design = _basis(np.stack([g.ravel() for g in grids], axis=1), self.centre,
                        self.scale, self.degree)
        quantities = {}
        for name, surface in self.surfaces.items():
            values = design @ surface
            if name in self.bounds:
                values = np.clip(values, *self.bounds[name])
            quantities[name] = values.T.reshape((-1, *axes_shape))
        # the field varies along self.axes only: spread it along the others
        spread = [slice(None) if a in self.axes else None for a in range(len(shape))]
        images = {}
        for name, value in parameter_arrays(self.model, quantities, self.sizes).items():
            leading = (slice(None),) if np.ndim(value) > len(axes_shape) else ()
            full = (len(value),) * len(leading) + tuple(shape)
            images[name] = np.broadcast_to(value[(*leading, *spread)], full).astype(
                np.float32)
        return images

    def render(self, shape, position) -> np.ndarray:
        """The model rendered on ``shape`` with the parameters at ``position``."""
        from .models import make_psf

        return make_psf(self.model, shape, **self.params(position))


def fit_kernel_map(sharp, blurred, model: str = "gaussian", grid=(3, 3), *, shape=None,
                   degree: int = 2, overlap: float = DEFAULT_OVERLAP, callback=None,
                   **options) -> PsfMap:
    """A parametric kernel fitted on a grid of tiles, its parameters smoothed over the
    field by a robust low-order polynomial.

    Parameters
    ----------
    sharp, blurred : (M, N) or (P, M, N) ndarray
        The pair, as for :func:`psfkit.fit_kernel`.
    model : str
        A model of :func:`psfkit.fit_kernel` (not ``"auto"``: one model over the field).
    grid : (rows, cols) or one count per axis
        Tiles per axis (for a volume, ``(rows, cols)`` tiles its last two axes).
    shape : int or tuple of int, optional
        Odd shape on which the kernels are rendered; by default the largest one the tiles'
        fits chose.
    degree : int
        Total degree of the polynomial in the tile-centre coordinates (2: constant, linear
        and quadratic terms in y and x); lowered when there are fewer reliable tiles than
        terms.
    overlap : float
        Width of a tile over the spacing of the tile centres (>= 1).
    callback : callable, optional
        ``callback(step, total, current)`` with one count over all tiles (the module
        docstring); return ``False`` to stop: the tiles not reached are left out of the
        smoothing.
    **options
        Passed to :func:`psfkit.fit_kernel` for every tile (``spacing``, ``loss``, ...).

    Returns
    -------
    PsfMap
        ``params_at((y, x))`` gives the smoothed parameters anywhere and ``psf_at`` renders
        the model there; the tiles' PSFs are the model rendered at the tile centres.
        ``diagnostics`` holds each tile's fitted ``params_<name>``, ``residual_ratio``
        (square root of the reduced chi²), ``reliability`` and ``reliable`` (as in
        :func:`estimate_kernel_map`) and ``used`` (a reliable tile the outlier rejection
        kept).

    Notes
    -----
    Each smooth quantity ``q`` (:func:`smooth_quantities`: an elliptical Gaussian's second
    moments, a motion's angle as ``(cos 2θ, sin 2θ)``, the other parameters as they are)
    is a field ``q(y, x) = sum c_ab u^a v^b``, ``u, v`` the centred and scaled pixel
    coordinates. A tile's fit is taken as what least squares gives on a blur that changes
    under it, the information-weighted mean of the field over its pixels (each pixel's
    Fisher information from the derivatives of the tile's prediction in the quantities,
    :func:`tile_information`), and the coefficients are fitted to reproduce every reliable
    tile's value so, weighted by the tile's information; a tile beyond ``OUTLIER_CUT``
    robust sigmas (jointly over its quantities) is dropped and the field refitted until
    the set of tiles settles (:class:`ParameterField`, :func:`robust_field`).
    """
    if not isinstance(model, str) or model == "auto":
        raise ValueError(f"model must be one model name for the whole field (see "
                         f"psfkit.MODELS), got {model!r}")
    degree = whole_number(degree, "degree")
    callback = optional_callable(callback)
    pair = _aligned_pair(sharp, blurred)
    if shape is not None:
        shape = kernel_shape(shape, pair.sharp.ndim)
    grid, tiles = _tiles(pair, grid, overlap, shape)
    from .fit import fit_kernel

    fits = _on_tiles(lambda tile, tile_callback: fit_kernel(
        pair.sharp[tile.region], pair.blurred[tile.region], model, shape=shape,
        callback=tile_callback, **options), tiles, callback)
    failed = [f is None for f in fits]
    ratios = [np.inf if f is None else float(np.sqrt(max(f.reduced_chi2, 0.0))) for f in fits]
    textures = [0.0 if f is None else texture(pair.sharp[t.region],
                                              f.noise_sigma / max(abs(f.gain), 1e-30))
                for f, t in zip(fits, tiles, strict=True)]
    relative, reliable = _reliability(textures, ratios, failed)
    tile_params = [None if f is None else f.params for f in fits]
    axes = [a for a, g in enumerate(grid) if g > 1] or [len(grid) - 1]
    # what each reliable tile's data determine about the field, and where
    informations = [tile_information(f, pair.sharp[t.region],
                                     np.add([r.start for r in t.region], pair.offset), axes)
                    if r else None for f, t, r in zip(fits, tiles, reliable, strict=True)]
    reliable &= np.array([i is not None for i in informations])
    require_reliable(reliable)
    centres = np.array([t.centre for t in tiles]) + np.asarray(pair.offset)
    field = ParameterField(fits[int(np.argmax(reliable))].model, tile_params, informations,
                           centres, reliable, axes, degree)
    used = reliable & field.kept
    render_shape = shape or tuple(max(f.kernel.shape[a] for f in fits if f is not None)
                                  for a in range(pair.sharp.ndim))
    kernels = [field.render(render_shape, centre) for centre in centres]
    diagnostics = dict(residual_ratio=np.asarray(ratios), reliability=relative,
                       used=used)
    for name in field.names:
        values = np.array([np.atleast_1d(p[name]) if p is not None else
                           np.full(field.sizes[name], np.nan) for p in tile_params])
        diagnostics[f"params_{name}"] = values[:, 0] if field.sizes[name] == 1 else values
    psf_map = _map_of(pair, tiles, grid, kernels, diagnostics, np.ones(len(tiles), bool),
                      model=field.model, parameter_field=field)
    psf_map.diagnostics.update(reliable=reliable.reshape(grid),
                               filled=np.zeros(grid, dtype=bool))
    return psf_map


# ------------------------------------------------------------------------- bead maps


def bead_map(average_beads, image, grid, options: dict, callback=None) -> PsfMap:
    """``average_beads(image[region], **options)`` on each tile of a grid over ``image``
    (``callback`` as for :func:`estimate_kernel_map`):
    a PSF per region with its ``beads_used``, ``spread`` and ``fwhm`` (per axis, NaN for a
    region without beads); a region where no bead is usable is filled from its nearest
    neighbours with beads."""
    image = as_float_array(image, "image")
    grid = tile_grid(grid, image.ndim)
    tiles = tiling(image.shape, grid, DEFAULT_OVERLAP, [min(MIN_TILE, n) for n in image.shape])
    averages = _on_tiles(lambda tile, tile_callback: average_beads(
        image[tile.region], callback=tile_callback, **options), tiles, callback)
    psfs, used, spread, widths = [], [], [], []
    for average in averages:
        psfs.append(None if average is None else average.psf)
        used.append(0 if average is None else average.beads_used)
        spread.append(np.nan if average is None else average.spread)
        widths.append(np.full(image.ndim, np.nan) if average is None else average.fwhm)
    reliable = np.asarray(used) > 0
    pair = _Pair(sharp=image, blurred=image, offset=(0,) * image.ndim,
                 shift=np.zeros(image.ndim), shape=image.shape)
    return _map_of(pair, tiles, grid, psfs,
                   dict(beads_used=np.asarray(used), spread=np.asarray(spread),
                        fwhm=np.asarray(widths)), reliable)
