"""Deconvolution with a PSF that changes across the field (a :class:`psfkit.PsfMap`).

The forward model is the sum of the tiles' blurs, each weighted on the image by its
bilinear (partition-of-unity) weight map (Nagy & O'Leary 1998; Denis, Thiébaut, Soulez et
al. 2015)::

    image = valid( sum_k w_k · (h_k * object) ) + background + noise

so the PSF seen by an image pixel ``p`` is ``sum_k w_k(p) h_k``, the map's ``psf_at(p)``;
its adjoint is ``sum_k h_k^T * (w_k · residual)``. :class:`VaryingBlurOperator` evaluates
it exactly, on the same valid geometry as the space-invariant
:class:`psfkit.operators.BlurOperator` (the object larger than the image by the PSF's
support minus one), so the Richardson–Lucy family and FISTA-TV run on it unchanged. Each
tile's blur is computed only where its weight is nonzero, by a
:class:`psfkit.operators.Convolver` of that part with the tile's cached transform.

The direct methods (Wiener, Tikhonov) have no closed form for a varying blur; they use the
piecewise approximation instead: each tile's part of the image (with a margin of the PSF's
size) is filtered with the tile's PSF, and the results are blended with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from psfkit._validate import psf_fits
from psfkit.operators import BlurOperator, Convolver
from psfkit.psf_map import PsfMap, check_map_fits

from ._common import MethodResult, Request
from ._noise import NoiseModel


@dataclass(frozen=True)
class VaryingPsf:
    """A PSF map prepared for deconvolution: its tiles' PSFs (nonnegative, unit sum, one
    shape ``shape``) and the per-axis weights of the tiles over the image."""

    psfs: tuple
    axis_weights: tuple
    grid: tuple
    shape: tuple

    @classmethod
    def of(cls, psf_map: PsfMap, image_shape) -> VaryingPsf:
        """The map's PSFs made nonnegative with unit sum, for an image of ``image_shape``."""
        check_map_fits(psf_map, image_shape)
        psf_fits(psf_map.psf_shape, image_shape)
        psfs = []
        for index, psf in enumerate(psf_map.tile_psfs()):
            psf = np.clip(np.asarray(psf, dtype=np.float32), 0, None)
            total = float(psf.sum(dtype=np.float64))
            if not total > 0:
                raise ValueError(f"psf map tile {np.unravel_index(index, psf_map.grid)} has "
                                 f"no positive value; every tile needs a PSF")
            psfs.append(psf / np.float32(total))
        weights = tuple(psf_map.axis_weights(axis).astype(np.float32)
                        for axis in range(len(image_shape)))
        return cls(psfs=tuple(psfs), axis_weights=weights, grid=psf_map.grid,
                   shape=psf_map.psf_shape)

    def cropped(self, region) -> VaryingPsf:
        """The map over the part ``region`` (slices with steps of 1) of its image: the same
        PSFs and their weights there, so its blur is the whole image's restricted to the
        part, exactly."""
        return replace(self, axis_weights=tuple(
            weights[:, part] for weights, part in zip(self.axis_weights, region, strict=True)))

    @property
    def ndim(self) -> int:
        """The PSFs' (and the image's) dimensionality."""
        return len(self.shape)

    def tile_weight(self, tile: int) -> tuple[tuple[slice, ...], np.ndarray]:
        """The image region where tile ``tile``'s weight is nonzero and the weight there."""
        index = np.unravel_index(tile, self.grid)
        region, weight = [], np.ones((1,) * self.ndim, dtype=np.float32)
        for axis, j in enumerate(index):
            profile = self.axis_weights[axis][j]
            nonzero = np.flatnonzero(profile)
            span = slice(int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else slice(0, 0)
            region.append(span)
            weight = weight * profile[span].reshape([-1 if a == axis else 1
                                                     for a in range(self.ndim)])
        return tuple(region), weight

    def central_psf(self) -> np.ndarray:
        """The PSF at the image centre: what an automatic choice measured on the central
        part of the image sees."""
        centre = [(len(w[0]) - 1) / 2 for w in self.axis_weights]
        combined = np.zeros(self.shape, dtype=np.float64)
        for tile, psf in enumerate(self.psfs):
            index = np.unravel_index(tile, self.grid)
            weight = 1.0
            for axis, j in enumerate(index):
                weights = self.axis_weights[axis][:, int(np.floor(centre[axis]))]
                weight *= float(weights[j])
            combined += weight * psf
        return (combined / combined.sum()).astype(np.float32)


@dataclass(frozen=True)
class _Piece:
    """One tile of the operator: where its weight is nonzero on the image, the object
    part its blur there reads, the weight and the convolver with the tile's PSF."""

    image_region: tuple
    object_region: tuple
    weight: np.ndarray
    convolver: Convolver


class VaryingBlurOperator:
    """``valid(sum_k w_k · (h_k * object))`` and its adjoint ``sum_k h_k^T * (w_k · y)``,
    with the interface of :class:`psfkit.operators.BlurOperator`.

    The grid is the object itself (``image + psf - 1`` per axis); ``valid``, ``object``
    and ``output`` are the same slices as the invariant operator's, so that
    ``<apply(x)[valid], y[valid]> == <x[object], adjoint(y)[object]>``. With one tile it
    is the invariant blur.
    """

    zeros = BlurOperator.zeros
    zero_outside_valid = BlurOperator.zero_outside_valid
    sensitivity = BlurOperator.sensitivity
    #: the column sums ``sum_i w_k(i) h_k(i - j)`` differ from 1 where the weights bend
    #: and the PSFs differ (by 1.5 % for tiles 8 px apart): Richardson–Lucy weighs every pixel
    unit_interior_sensitivity = False

    def __init__(self, psf: VaryingPsf, image_shape, *, workers: int | None = None):
        self.image_shape = tuple(int(n) for n in image_shape)
        self.psf_shape = tuple(psf.shape)
        self.object_shape = tuple(n + k - 1 for n, k in zip(self.image_shape, self.psf_shape,
                                                             strict=True))
        self.grid_shape = self.object_shape
        self.valid = tuple(slice(k - 1, k - 1 + n) for n, k in zip(self.image_shape,
                                                                    self.psf_shape, strict=True))
        self.object = tuple(slice(0, n) for n in self.object_shape)
        self.output = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n)
                            for n, k in zip(self.image_shape, self.psf_shape, strict=True))
        self.pieces = []
        for tile, tile_psf in enumerate(psf.psfs):
            region, weight = psf.tile_weight(tile)
            if any(s.stop <= s.start for s in region):
                continue  # a tile whose weight is zero everywhere on this image
            # image pixel i sees object pixels i .. i + K - 1 (the PSF's corner on 0)
            reads = tuple(slice(s.start, s.stop + k - 1) for s, k in zip(region,
                                                                         self.psf_shape,
                                                                         strict=True))
            shape = tuple(s.stop - s.start for s in reads)
            self.pieces.append(_Piece(region, reads, weight,
                                      Convolver(tile_psf, shape, workers=workers)))

    def apply(self, grid_object: np.ndarray) -> np.ndarray:
        """The weighted sum of the tiles' blurs, on the ``valid`` slice of a new grid
        array (zero outside it)."""
        blurred = self.zeros()
        image = blurred[self.valid]
        for piece in self.pieces:
            spectrum = piece.convolver.forward_transform(grid_object[piece.object_region])
            part = piece.convolver.apply(None, "valid", spectrum=spectrum)
            part *= piece.weight
            image[piece.image_region] += part
        return blurred

    def adjoint(self, grid_residual: np.ndarray) -> np.ndarray:
        """``sum_k h_k^T * (w_k · residual)`` of a grid array read on ``valid`` only."""
        residual = grid_residual[self.valid]
        result = self.zeros()
        for piece in self.pieces:
            weighted = residual[piece.image_region] * piece.weight
            result[piece.object_region] += piece.convolver.adjoint(weighted, "valid")
        return result


class VaryingConvolver:
    """The varying blur of ``psf`` (a map of an image of ``image_shape``) applied to an
    array of that shape, in the modes ``"valid"`` and ``"same"`` (zero outside the array)
    of :class:`psfkit.operators.Convolver`, which it equals for one tile: the blurred
    model ``H x̂`` that ``method="auto"``'s risk measures. Each mode is a
    :class:`VaryingBlurOperator` whose object is the array (``"valid"``: of the image's
    part whose PSF footprint lies inside, with the map cropped to it) or the array padded
    with zeros (``"same"``)."""

    def __init__(self, psf: VaryingPsf, image_shape, *, workers: int | None = None):
        self.image_shape = tuple(int(n) for n in image_shape)
        inside = tuple(slice(k - 1 - k // 2, n - k // 2)
                       for n, k in zip(self.image_shape, psf.shape, strict=True))
        self.blurs = {"same": VaryingBlurOperator(psf, self.image_shape, workers=workers),
                      "valid": VaryingBlurOperator(psf.cropped(inside),
                                                   [s.stop - s.start for s in inside],
                                                   workers=workers)}

    def apply(self, other: np.ndarray, mode: str = "same") -> np.ndarray:
        """The blur of ``other`` (of the image's shape) cropped to ``mode``."""
        if tuple(np.shape(other)) != self.image_shape:
            raise ValueError(f"expected shape {self.image_shape}, got {np.shape(other)}")
        blur = self.blurs[mode]
        if mode == "valid":  # the array is the valid operator's whole object
            return blur.apply(np.asarray(other, dtype=np.float32))[blur.valid]
        grid = blur.zeros()
        grid[blur.output] = other
        return blur.apply(grid)[blur.valid]


def central_psf(psf) -> np.ndarray:
    """One PSF array for a step that needs one (the ``rl_mix`` smoothing's misfit, measured
    on the central part of the image): a map's PSF at the image centre, else ``psf``."""
    return psf.central_psf() if isinstance(psf, VaryingPsf) else psf


# ------------------------------------------------------------ the direct methods, piecewise


def piecewise(run):
    """A direct method ``run(image, psf, noise, request)`` that takes a
    :class:`VaryingPsf`: each tile's part of the image, with a margin of twice the PSF's
    size, is filtered by ``run`` with the tile's PSF and the results are blended with the
    tiles' weights. ``regularization="auto"`` is chosen once, by ``run`` on the whole image
    with the PSF at its centre, and used for every tile."""

    def run_varying(image, psf, noise: NoiseModel, request: Request) -> MethodResult:
        if not isinstance(psf, VaryingPsf):
            return run(image, psf, noise, request)
        if request.regularization == "auto":
            weight = run(image, psf.central_psf(), noise, request).regularization
            request = replace(request, regularization=float(weight))
        blended = np.zeros(image.shape, dtype=np.float32)
        result = None
        for tile, tile_psf in enumerate(psf.psfs):
            region, weight = psf.tile_weight(tile)
            if any(s.stop <= s.start for s in region):
                continue
            margin = [2 * k for k in psf.shape]
            read = tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                         for s, m, n in zip(region, margin, image.shape, strict=True))
            result = run(image[read], tile_psf, noise, request)
            inside = tuple(slice(s.start - r.start, s.stop - r.start)
                           for s, r in zip(region, read, strict=True))
            blended[region] += result.image[inside] * weight
        return replace(result, image=blended)

    return run_varying
