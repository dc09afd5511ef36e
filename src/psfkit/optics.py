"""Microscope PSFs from the optics: the Gibson–Lanni model of a widefield microscope
(:func:`widefield_psf`) and a confocal one (:func:`confocal_psf`), in physical units,
integrated over each voxel, in two light models (``theory``): vectorial (the default) and
scalar.

Forward model. A point source at ``depth`` below the coverslip, in a sample of refractive
index ``ns``, is imaged by an objective of numerical aperture ``NA`` designed for an
immersion medium of index ``ni``. With ``s = NA ρ`` the pupil coordinate (``ρ`` from 0 at
the axis to 1 at the aperture's edge) and ``k = 2π / λ``, the light reaching the pupil
carries the optical path difference of Gibson and Lanni (1991)::

    W(ρ, z) = k [depth · √(ns² − s²) − (depth · ni / ns + z) · √(ni² − s²)]

where ``z`` is the focus displacement (the stage step of a z-stack) measured from the
paraxial image of the source. The first term is the path through the sample, the second
the change of the immersion layer's thickness; ``depth · ni / ns`` is the paraxial focal
shift, so that ``z = 0`` is where a paraxial ray comes to focus and what remains of a
refractive-index mismatch is the spherical aberration that grows with depth. The
coverslip is taken to be the one the objective was designed for (its terms cancel).
Beyond the sample's critical angle (``s > ns``) the root is imaginary and the pupil
amplitude decays as an evanescent wave.

Scalar theory (``theory="scalar"``, Kirchhoff diffraction). The intensity at distance
``r`` from the axis is

    I(r, z) = | ∫₀¹ exp(i W(ρ, z)) J0(k NA r ρ) ρ dρ |².

Li, Xue and Blu (2017) made this fast: expand the pupil function in Bessel functions of
``ρ``, ``exp(i W(ρ, z)) ≈ Σ_m c_m(z) J0(σ_m ρ)``, with the coefficients found by linear
least squares, after which the integral of each term is known in closed form (a Lommel
integral). Here the ``σ_m`` are evenly spaced, ``0.75 π`` apart from 0 up to beyond the
phase's steepest slope: a slightly overcomplete set, which (unlike an orthogonal
Fourier–Bessel basis, whose slope vanishes at the pupil's edge) converges fast for a pupil
function of any edge slope. The least squares are weighted by ρ, the measure of the
integral, so they minimise the error of the amplitude in the image, and are solved by a
rank-revealing QR that drops directions below 1e-8 of the largest, which keeps the
coefficients moderate.

Vectorial theory (``theory="vectorial"``, the default; Richards and Wolf 1959, in the form
of Török et al. 1995 and Aguet 2009). The field at the focus has three components; for an
unpolarised (or freely rotating) emitter the intensity is

    I(r, z) = |I0|² + 2 |I1|² + |I2|²,
    In(r, z) = ∫₀¹ exp(i W(ρ, z)) An(ρ) Jn(k NA r ρ) ρ dρ,

with ``A0 = (t_s + t_p cos θ_s) / √cos θ_i``, ``A1 = t_p sin θ_s / √cos θ_i`` and
``A2 = (t_s − t_p cos θ_s) / √cos θ_i``: ``t_s``, ``t_p`` the products of the Fresnel
transmission coefficients through the coverslip (index ``coverslip_index``) for s- and
p-polarised light, ``θ_s``, ``θ_i`` the ray's angles in the sample and the immersion, and
``1 / √cos θ_i`` the aplanatic lens' apodisation ``√cos θ_i`` written for the measure
``ρ dρ``. The scalar theory is the limit ``A0 = 2, A1 = A2 = 0`` of small angles; at
NA 1.2–1.4 the vectorial focus is 7–11 % wider laterally than ``0.51 λ / NA`` (the scalar
one 1 %, from the voxel integration). The three integrals are
computed by Gauss–Legendre quadrature over the pupil, for all planes and radii as two
real matrix products (J2 from the J0 and J1 tables, ``J2(x) = 2 J1(x) / x − J0(x)``).
The rule has enough nodes for the phase change of the integrand (pupil phase plus Bessel
argument); where the sample's critical angle lies inside the pupil the pupil is split
there and each piece mapped by ``ρ = ρc + (edge − ρc) t²``, which removes the square-root
branch point that would slow the rule to algebraic convergence.

The PSF is integrated over each voxel by averaging sub-samples (the radial profile is
computed on a fine grid and interpolated linearly), normalised to unit sum, float32, with
odd shape and the source on the centre voxel ``shape // 2``. A confocal PSF is the
product of the excitation and emission PSFs (a point-like pinhole), multiplied before the
voxel integration. All lengths (``spacing``, wavelengths, ``depth``) are in one unit, e.g.
micrometres.

References
----------
B. Richards and E. Wolf, "Electromagnetic diffraction in optical systems II. Structure of
the image field in an aplanatic system", Proc. R. Soc. A 253, 358 (1959).
P. Török, P. Varga, Z. Laczik and G. R. Booker, "Electromagnetic diffraction of light
focused through a planar interface between materials of mismatched refractive indices: an
integral representation", J. Opt. Soc. Am. A 12, 325 (1995).
F. Aguet, "Super-resolution fluorescence microscopy based on physical models", EPFL thesis
4418 (2009), the model of psfmodels' ``vectorial_psf``.
S. F. Gibson and F. Lanni, "Experimental test of an analytical model of aberration in an
oil-immersion objective lens used in three-dimensional light microscopy", J. Opt. Soc. Am.
A 8, 1601 (1991).
J. Li, F. Xue and T. Blu, "Fast and accurate three-dimensional point spread function
computation for fluorescence microscopy", J. Opt. Soc. Am. A 34, 1029 (2017).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.special

from ._validate import finite_result, kernel_shape
from .units import voxel_spacing

__all__ = ["confocal_psf", "widefield_psf"]

#: Refractive index of immersion oil, the default immersion medium.
OIL_INDEX = 1.515

#: Refractive index of coverslip glass (the default of the vectorial theory's coverslip).
GLASS_INDEX = 1.515

#: The light models: Richards–Wolf vectorial diffraction (the default) or scalar.
THEORIES = ("vectorial", "scalar")

#: Radial profile samples per ``λ / NA`` (linear interpolation error below 1e-4 of the
#: peak).
RADIAL_SAMPLES_PER_RESOLUTION = 128

#: Sub-samples per voxel and axis are chosen so that they are at least this many per
#: Nyquist interval of the PSF (``λ / 4NA`` laterally, ``λ / 2(ni − √(ni² − NA²))``
#: axially), and never fewer than 3.
SUBSAMPLES_PER_NYQUIST = 5

#: Spacing of the Bessel scale factors ``σ_m``: below the π spacing of an orthogonal set,
#: so the series is overcomplete (intensity errors near 1e-8 in tests against quadrature).
ORDER_SPACING = 0.75 * np.pi

#: The largest ``σ_m`` exceeds the pupil phase's steepest slope by this margin (radians).
ORDER_MARGIN = 10.0

#: Pupil samples per Bessel term in the least-squares fit.
PUPIL_SAMPLES_PER_TERM = 8

#: Relative cutoff of the rank-revealing least-squares fit (directions of the basis below
#: it are dropped).
SERIES_RCOND = 1e-8

#: Gauss–Legendre nodes of the vectorial pupil quadrature per radian of the integrand's
#: phase change over a piece of the pupil, and nodes added to every piece. The rule
#: resolves the oscillation from about 1/π nodes per radian (intensity errors fall from
#: 1e-2 at 0.15 to 1e-7 at 0.25 and 1e-9 at 0.3 against a 40 000-point quadrature, see
#: tests/test_optics.py); 0.4 keeps a margin.
NODES_PER_RADIAN = 0.4
NODES_MARGIN = 16


@dataclass(frozen=True)
class Objective:
    """The imaging conditions of one PSF (lengths in the unit of the wavelengths)."""

    numerical_aperture: float
    immersion_index: float
    sample_index: float
    depth: float
    coverslip_index: float = GLASS_INDEX


def _objective(numerical_aperture, immersion_index, sample_index, depth,
               coverslip_index=GLASS_INDEX) -> Objective:
    """Checked imaging conditions; ``sample_index=None`` means matched to the immersion."""
    numerical_aperture = _positive(numerical_aperture, "numerical_aperture")
    immersion_index = _positive(immersion_index, "immersion_index")
    sample_index = immersion_index if sample_index is None else _positive(
        sample_index, "sample_index")
    coverslip_index = _positive(coverslip_index, "coverslip_index")
    depth = _number(depth, "depth")
    if not np.isfinite(depth) or depth < 0:
        raise ValueError(f"depth is the source's distance below the coverslip and must be "
                         f"zero or positive, got {depth}")
    if numerical_aperture >= immersion_index:
        raise ValueError(f"numerical_aperture ({numerical_aperture}) must be below "
                         f"immersion_index ({immersion_index}): NA = n sin θ < n")
    return Objective(numerical_aperture, immersion_index, sample_index, depth,
                     coverslip_index)


def _theory(theory) -> str:
    """``theory`` checked against :data:`THEORIES`."""
    if not isinstance(theory, str) or theory not in THEORIES:
        raise ValueError(f"theory must be 'vectorial' or 'scalar', got {theory!r}")
    return theory


def _number(value, name: str) -> float:
    """``value`` as a float; a ``TypeError`` naming it when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None


def _positive(value, name: str) -> float:
    """``value`` as a positive finite float; a ``TypeError``/``ValueError`` naming it."""
    value = _number(value, name)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


# -- the pupil and its Bessel series -----------------------------------------------------


def pupil_phase(rho: np.ndarray, defocus: np.ndarray, objective: Objective,
                wavelength: float) -> np.ndarray:
    """Gibson–Lanni phase ``i W(ρ, z)`` (complex: its real part is the evanescent decay
    beyond the critical angle), shape ``(len(defocus), len(rho))``."""
    s2 = (objective.numerical_aperture * rho) ** 2
    k = 2 * np.pi / wavelength
    n_i, n_s, depth = objective.immersion_index, objective.sample_index, objective.depth
    in_sample = np.sqrt((n_s**2 - s2).astype(complex))
    in_immersion = np.sqrt(n_i**2 - s2)
    immersion_change = depth * n_i / n_s + np.asarray(defocus, dtype=float)[:, None]
    return 1j * k * (depth * in_sample - immersion_change * in_immersion)


def _steepest_phase_slope(defocus: np.ndarray, objective: Objective, wavelength) -> float:
    """Largest ``|dW/dρ|`` over the pupil and the planes, in radians per unit ρ.

    Near the sample's critical angle the slope of the sample term diverges in a sliver of
    the pupil; the last 1 % before it is left out, as no finite series resolves it.
    """
    rho = np.linspace(0, 1, 513)
    extremes = np.array([defocus.min(), defocus.max()])
    phase = pupil_phase(rho, extremes, objective, wavelength).imag
    slope = np.abs(np.diff(phase, axis=1)) / (rho[1] - rho[0])
    s = objective.numerical_aperture * rho[1:]
    resolvable = np.abs(s - objective.sample_index) > 0.01 * objective.sample_index
    return float(slope[:, resolvable].max())


@dataclass(frozen=True)
class BesselSeries:
    """``exp(i W(ρ, z)) ≈ Σ_m coefficients[z, m] J0(orders[m] ρ)`` on ``0 <= ρ <= 1``."""

    orders: np.ndarray
    coefficients: np.ndarray


def bessel_series(defocus: np.ndarray, objective: Objective, wavelength: float,
                  terms: int | None = None) -> BesselSeries:
    """Least-squares Bessel expansion of the pupil function at every defocus plane.

    ``terms`` defaults to enough Bessel functions to resolve the steepest phase slope.
    The fit is weighted by ``√ρ`` so that it minimises ``∫ |error|² ρ dρ``, which by
    Parseval's theorem for the Hankel transform is the squared error of the amplitude
    integrated over the image plane.
    """
    if terms is None:
        slope = _steepest_phase_slope(defocus, objective, wavelength)
        terms = int(np.ceil((slope + ORDER_MARGIN) / ORDER_SPACING)) + 1
    orders = np.arange(terms) * ORDER_SPACING
    samples = PUPIL_SAMPLES_PER_TERM * terms
    rho = (np.arange(samples) + 0.5) / samples
    weight = np.sqrt(rho)[:, None]
    basis = scipy.special.j0(rho[:, None] * orders) * weight
    pupil = np.exp(pupil_phase(rho, defocus, objective, wavelength)).T * weight
    # one real, rank-revealing QR solves every plane's real and imaginary parts at once
    # (a complex least-squares solver would be tens of times slower)
    solution, *_ = scipy.linalg.lstsq(basis, np.hstack([pupil.real, pupil.imag]),
                                      cond=SERIES_RCOND, lapack_driver="gelsy")
    real, imaginary = np.split(solution, 2, axis=1)
    return BesselSeries(orders, (real + 1j * imaginary).T)


def lommel_integrals(orders: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``∫₀¹ J0(σ ρ) J0(β ρ) ρ dρ`` for every ``σ`` in ``orders`` and every ``β``, shape
    ``(len(orders), len(beta))``.

    The closed form (Lommel) is ``(σ J1(σ) J0(β) − β J0(σ) J1(β)) / (σ² − β²)``, with the
    limit ``(J0(σ)² + J1(σ)²) / 2`` at ``β = σ``.
    """
    sigma = orders[:, None]
    j0_sigma, j1_sigma = scipy.special.j0(sigma), scipy.special.j1(sigma)
    difference = sigma**2 - beta**2
    # near β = σ the formula divides two vanishing numbers; use its limit there
    near = np.abs(sigma - beta) < 1e-7 * np.maximum(1.0, sigma)
    numerator = sigma * j1_sigma * scipy.special.j0(beta) - beta * j0_sigma * scipy.special.j1(
        beta)
    value = numerator / np.where(near, 1.0, difference)
    return np.where(near, 0.5 * (j0_sigma**2 + j1_sigma**2), value)


def radial_intensity(radii: np.ndarray, defocus: np.ndarray, objective: Objective,
                     wavelength: float) -> np.ndarray:
    """Gibson–Lanni intensity ``I(r, z)`` at ``radii`` (lateral distances) and ``defocus``
    (focus displacements), shape ``(len(defocus), len(radii))``, in arbitrary units."""
    series = bessel_series(np.asarray(defocus, dtype=float), objective, wavelength)
    beta = 2 * np.pi / wavelength * objective.numerical_aperture * np.asarray(radii)
    amplitude = series.coefficients @ lommel_integrals(series.orders, beta)
    return amplitude.real**2 + amplitude.imag**2


# -- the vectorial model -----------------------------------------------------------------


def vectorial_pupil_factors(rho: np.ndarray, objective: Objective) -> np.ndarray:
    """Weights ``(A0, A1, A2)`` of the J0, J1 and J2 kernels over the pupil, shape
    ``(3, len(rho))`` (complex beyond a critical angle).

    With ``θ_i``, ``θ_g``, ``θ_s`` the ray's angles in the immersion, the coverslip and the
    sample (``s = NA ρ = n sin θ`` in each), ``t_s`` and ``t_p`` the products of the
    Fresnel transmission coefficients of the two interfaces for s- and p-polarised light,
    and the aplanatic lens' ``√cos θ_i`` apodisation written for the measure ``ρ dρ``::

        A0 = (t_s + t_p cos θ_s) / √cos θ_i
        A1 = t_p sin θ_s / √cos θ_i
        A2 = (t_s − t_p cos θ_s) / √cos θ_i
    """
    s = objective.numerical_aperture * np.asarray(rho, dtype=float)
    n_i, n_g, n_s = (objective.immersion_index, objective.coverslip_index,
                     objective.sample_index)
    # n cos θ in each medium; imaginary beyond that medium's critical angle
    immersion = np.sqrt(n_i**2 - s**2)
    coverslip = np.sqrt((n_g**2 - s**2).astype(complex))
    sample = np.sqrt((n_s**2 - s**2).astype(complex))
    numerator = 4 * immersion * coverslip
    t_s = numerator / ((immersion + coverslip) * (coverslip + sample))
    t_p = numerator / ((n_g / n_i * immersion + n_i / n_g * coverslip)
                       * (n_s / n_g * coverslip + n_g / n_s * sample))
    cos_sample, sin_sample = sample / n_s, s / n_s
    apodisation = 1 / np.sqrt(immersion / n_i)
    return np.stack([t_s + t_p * cos_sample, t_p * sin_sample,
                     t_s - t_p * cos_sample]) * apodisation


@dataclass(frozen=True)
class PupilQuadrature:
    """``∫₀¹ f(ρ) dρ ≈ Σ weights · f(nodes)``."""

    nodes: np.ndarray
    weights: np.ndarray


@functools.lru_cache(maxsize=32)
def _gauss_legendre(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on ``[0, 1]``."""
    nodes, weights = scipy.special.roots_legendre(count)
    return (nodes + 1) / 2, weights / 2


def pupil_quadrature(defocus: np.ndarray, objective: Objective, wavelength: float,
                     largest_bessel_argument: float) -> PupilQuadrature:
    """Gauss–Legendre quadrature of the pupil, fine enough for the phase at every plane.

    Where the sample's critical angle lies inside the pupil (``ρc = ns / NA < 1``) the
    root ``√(ns² − s²)`` has a branch point, which would slow any polynomial rule to
    algebraic convergence: the pupil is split there, and each piece ``[ρc, edge]`` mapped
    by ``ρ = ρc + (edge − ρc) t²``, in which the root is smooth. Each piece gets
    :data:`NODES_PER_RADIAN` nodes per radian of the integrand's phase change (the pupil
    phase at the extreme planes plus the Bessel kernel's argument), plus
    :data:`NODES_MARGIN`.
    """
    critical = objective.sample_index / objective.numerical_aperture
    if critical < 1:
        pieces = [(critical, 0.0), (critical, 1.0)]
    else:
        pieces = [(0.0, 1.0)]
    extremes = np.array([np.min(defocus), np.max(defocus)])
    fine = np.linspace(0, 1, 513)
    nodes, weights = [], []
    for start, end in pieces:
        # a piece starting at 0 is a plain interval; one at ρc is mapped by t²
        mapped = start > 0
        rho = start + (end - start) * (fine**2 if mapped else fine)
        phase = pupil_phase(rho, extremes, objective, wavelength).imag
        change = (np.abs(np.diff(phase, axis=1)).sum(axis=1).max()
                  + largest_bessel_argument * abs(end - start))
        # optics that overflow (refused by name after the rendering) have no finite count
        extra = int(np.ceil(NODES_PER_RADIAN * change)) if np.isfinite(change) else 0
        t, w = _gauss_legendre(extra + NODES_MARGIN)
        if mapped:
            nodes.append(start + (end - start) * t**2)
            weights.append(2 * abs(end - start) * t * w)
        else:
            nodes.append(start + (end - start) * t)
            weights.append(abs(end - start) * w)
    return PupilQuadrature(np.concatenate(nodes), np.concatenate(weights))


def _complex_times_real(complex_matrix: np.ndarray, real_matrix: np.ndarray) -> np.ndarray:
    """``complex_matrix @ real_matrix`` as one real product (numpy would make the real
    matrix complex first, four times the work)."""
    rows = complex_matrix.shape[0]
    stacked = np.concatenate([complex_matrix.real, complex_matrix.imag]) @ real_matrix
    return stacked[:rows] + 1j * stacked[rows:]


def vectorial_radial_intensity(radii: np.ndarray, defocus: np.ndarray,
                               objective: Objective, wavelength: float) -> np.ndarray:
    """Vectorial (Richards–Wolf) Gibson–Lanni intensity ``I(r, z)`` of an unpolarised
    emitter at ``radii`` and ``defocus``, shape ``(len(defocus), len(radii))``, in
    arbitrary units: ``|I0|² + 2 |I1|² + |I2|²`` with
    ``In = ∫₀¹ exp(i W) An(ρ) Jn(k NA r ρ) ρ dρ`` (:func:`vectorial_pupil_factors`)."""
    defocus = np.asarray(defocus, dtype=float)
    beta = 2 * np.pi / wavelength * objective.numerical_aperture * np.asarray(radii)
    quadrature = pupil_quadrature(defocus, objective, wavelength, float(beta.max()))
    rho = quadrature.nodes
    pupil = np.exp(pupil_phase(rho, defocus, objective, wavelength)) * (
        quadrature.weights * rho)
    factor_0, factor_1, factor_2 = vectorial_pupil_factors(rho, objective)
    argument = np.outer(rho, beta)
    planes = defocus.size
    # J2(x) = 2 J1(x) / x − J0(x): the J2 kernel comes from the J0 and J1 tables, its
    # 1 / β applied per radius after the products (J2(0) = 0 on the axis)
    with_j0 = _complex_times_real(np.concatenate([pupil * factor_0, pupil * factor_2]),
                                  scipy.special.j0(argument))
    with_j1 = _complex_times_real(np.concatenate([pupil * factor_1,
                                                  pupil * (factor_2 / rho)]),
                                  scipy.special.j1(argument))
    on_axis = beta == 0
    amplitude_0, amplitude_1 = with_j0[:planes], with_j1[:planes]
    amplitude_2 = (2 * with_j1[planes:] / np.where(on_axis, 1.0, beta)
                   - with_j0[planes:])
    amplitude_2[:, on_axis] = 0
    return (np.abs(amplitude_0) ** 2 + 2 * np.abs(amplitude_1) ** 2
            + np.abs(amplitude_2) ** 2)


#: The radial intensity of each light model.
RADIAL_INTENSITY = {"vectorial": vectorial_radial_intensity, "scalar": radial_intensity}


# -- voxel integration ---------------------------------------------------------------------


def _subsamples(voxel: float, nyquist: float) -> int:
    """Odd number of sub-samples per voxel along one axis, at least
    :data:`SUBSAMPLES_PER_NYQUIST` per Nyquist interval and never fewer than 3."""
    count = max(3, int(np.ceil(SUBSAMPLES_PER_NYQUIST * voxel / nyquist)))
    return count + 1 - count % 2


def _subsample_offsets(count: int, subsamples: int, step: float) -> np.ndarray:
    """Positions of ``subsamples`` evenly spread samples in each of ``count`` voxels of
    size ``step``, from the centre of voxel 0 (the centre sub-sample sits on it)."""
    return ((np.arange(count * subsamples) + 0.5) / subsamples - 0.5) * step


@dataclass(frozen=True)
class LateralIntegration:
    """Average of a radial profile over the sub-samples of each pixel of one quadrant.

    ``operator @ profile`` maps profile samples at radii ``k * radial_step`` to the
    pixels at offsets ``(0..cy, 0..cx)`` from the centre, through linear interpolation.
    """

    operator: scipy.sparse.csr_matrix
    radial_step: float
    quadrant_shape: tuple[int, int]

    @property
    def radii(self) -> np.ndarray:
        """The radii at which the operator takes the profile."""
        return np.arange(self.operator.shape[1]) * self.radial_step


def lateral_integration(shape_yx, spacing_yx, subsamples: int,
                        radial_step: float) -> LateralIntegration:
    """The sparse operator that integrates a radial profile over a quadrant's pixels."""
    quadrant = tuple(n // 2 + 1 for n in shape_yx)
    y, x = (_subsample_offsets(n, subsamples, d) for n, d in zip(quadrant, spacing_yx,
                                                                  strict=True))
    position = np.hypot(y[:, None], x[None, :]) / radial_step
    below = np.floor(position).astype(np.int64)
    above_weight = position - below
    # row of the quadrant pixel that each sub-sample falls in
    pixel_y = np.arange(y.size) // subsamples
    pixel_x = np.arange(x.size) // subsamples
    row = np.ravel_multi_index(np.ix_(pixel_y, pixel_x), quadrant)
    row = np.broadcast_to(row, position.shape).ravel()
    share = 1.0 / subsamples**2
    operator = scipy.sparse.csr_matrix(
        (np.concatenate([(1 - above_weight.ravel()) * share, above_weight.ravel() * share]),
         (np.concatenate([row, row]), np.concatenate([below.ravel(), below.ravel() + 1]))),
        shape=(int(np.prod(quadrant)), int(below.max()) + 2),
    )
    return LateralIntegration(operator, radial_step, quadrant)


def _mirrored(quadrant: np.ndarray, shape_yx) -> np.ndarray:
    """The full planes from their quadrant ``(..., 0..cy, 0..cx)``: the PSF is
    rotationally symmetric about the centre pixel, so it is mirror-symmetric on the grid."""
    rows, columns = (np.abs(np.arange(n) - n // 2) for n in shape_yx)
    return quadrant[..., rows[:, None], columns[None, :]]


def _render(shape, spacing, objective: Objective, wavelengths: tuple[float, ...],
            theory: str):
    """The product of the Gibson–Lanni intensities of ``theory`` at ``wavelengths``,
    integrated over each voxel of ``shape`` (z, y, x), with unit sum (float64)."""
    shape = kernel_shape(shape, 3)
    spacing = voxel_spacing(spacing, 3, "spacing")
    # the product of several PSFs passes the sum of their bandwidths
    effective = 1 / sum(1 / w for w in wavelengths)
    na, n_i = objective.numerical_aperture, objective.immersion_index
    lateral = _subsamples(max(spacing[1:]), effective / (4 * na))
    # n - sqrt(n² - NA²) written as NA² / (n + sqrt(n² - NA²)): no cancellation to 0
    # (and a division by it) at a tiny NA; Python floats, so that an extreme ratio is an
    # infinite Nyquist interval (the fewest sub-samples) without a numpy warning
    axial_nyquist = effective * (n_i + math.sqrt(n_i**2 - na**2)) / (2 * na**2)
    axial = _subsamples(spacing[0], axial_nyquist)
    # optics far outside a microscope's (a wavelength of 1e300 at an NA of 1e-30) overflow
    # in the Bessel series; the result is refused below, by name, instead of a warning
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        integration = lateral_integration(shape[1:], spacing[1:], lateral,
                                          effective / na / RADIAL_SAMPLES_PER_RESOLUTION)
        defocus = _subsample_offsets(shape[0], axial, spacing[0]) - shape[0] // 2 * spacing[0]
        intensity = np.ones((defocus.size, integration.operator.shape[1]))
        for wavelength in wavelengths:
            intensity *= RADIAL_INTENSITY[theory](integration.radii, defocus, objective,
                                                  wavelength)
        # both integrations are linear: average the axial sub-samples first, on the profile
        intensity = intensity.reshape(shape[0], axial, -1).mean(axis=1)
        planes = (integration.operator @ intensity.T).T.reshape(shape[0],
                                                               *integration.quadrant_shape)
        psf = _mirrored(planes, shape[1:])
        psf = psf / psf.sum()
    return finite_result(psf, "the microscope PSF", fix="give wavelength and spacing in one "
                         "unit (e.g. µm) and a numerical_aperture of a real objective")


def widefield_psf(shape, spacing, *, numerical_aperture: float, wavelength: float,
                  immersion_index: float = OIL_INDEX, sample_index: float | None = None,
                  depth: float = 0.0, theory: str = "vectorial",
                  coverslip_index: float = GLASS_INDEX) -> np.ndarray:
    """Gibson–Lanni PSF of a widefield microscope, vectorial (default) or scalar,
    integrated over each voxel.

    Parameters
    ----------
    shape : int or (3,) tuple of int
        Odd PSF shape ``(z, y, x)``; an int means a cube.
    spacing : (3,) sequence of float
        Voxel size ``(z, y, x)``: the z step (focus displacement between planes) and the
        pixel size in the sample, in the unit of ``wavelength`` (e.g. µm).
    numerical_aperture : float
        The objective's NA, below ``immersion_index``.
    wavelength : float
        Emission wavelength in vacuum.
    immersion_index : float
        Refractive index of the immersion medium the objective is designed for
        (1.515 oil, 1.33 water, 1.0 air).
    sample_index : float, optional
        Refractive index of the sample; by default equal to ``immersion_index``.
    depth : float
        Distance of the source below the coverslip. With a mismatched ``sample_index``
        the aberration grows with depth; the centre plane is the source's paraxial focus.
    theory : {"vectorial", "scalar"}
        The light model: ``"vectorial"`` (Richards–Wolf diffraction of an unpolarised
        emitter, with the Fresnel transmission of the coverslip's interfaces and the
        lens' apodisation: right at any NA) or ``"scalar"`` (Kirchhoff's scalar
        diffraction, the Gibson–Lanni model of 1991: without polarisation it is
        narrower laterally at high NA, by 6 % at NA 1.2, and 17 % relative L2 from the
        vectorial PSF at NA 1.2 water).
    coverslip_index : float
        Refractive index of the coverslip (1.515, glass); only the vectorial theory's
        transmission factors depend on it (the design coverslip's phase cancels). Give
        ``immersion_index`` for a dipping objective with no coverslip.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        The PSF, nonnegative, with unit sum and the source at ``shape // 2``.

    Notes
    -----
    The model, its approximations and references are in the module docstring of
    :mod:`psfkit.optics`. The lateral FWHM in focus is close to ``0.51 λ / NA`` (the scalar
    rule; the vectorial focus is wider by 7 % at NA 1.2 and 11 % at NA 1.4), the axial one
    to ``0.88 λ / (n − √(n² − NA²))``.

    Examples
    --------
    >>> psf = widefield_psf((33, 65, 65), (0.1, 0.05, 0.05), numerical_aperture=1.4,
    ...                     wavelength=0.52)
    >>> psf.shape, round(float(psf.sum()), 5)
    ((33, 65, 65), 1.0)
    """
    objective = _objective(numerical_aperture, immersion_index, sample_index, depth,
                           coverslip_index)
    wavelength = _positive(wavelength, "wavelength")
    return _render(shape, spacing, objective, (wavelength,), _theory(theory)).astype(
        np.float32)


def confocal_psf(shape, spacing, *, numerical_aperture: float, wavelength: float,
                 excitation_wavelength: float, immersion_index: float = OIL_INDEX,
                 sample_index: float | None = None, depth: float = 0.0,
                 theory: str = "vectorial",
                 coverslip_index: float = GLASS_INDEX) -> np.ndarray:
    """Gibson–Lanni PSF of a point-scanning confocal microscope with a point-like
    pinhole: the excitation PSF (at ``excitation_wavelength``) times the emission PSF (at
    ``wavelength``), multiplied before the integration over each voxel. Both are of the
    same ``theory``, vectorial by default (the excitation as a circularly polarised or
    unpolarised beam, whose focus has the same form).

    The parameters and the result are those of :func:`widefield_psf`. A pinhole of finite
    size would blur the emission PSF laterally by its back-projected disk: the point model
    describes pinholes of about a quarter of an Airy unit or smaller; at one Airy unit the
    lateral width approaches the widefield one (the optical sectioning remains).

    Examples
    --------
    >>> psf = confocal_psf((33, 65, 65), (0.1, 0.05, 0.05), numerical_aperture=1.4,
    ...                    wavelength=0.52, excitation_wavelength=0.488)
    >>> psf.shape, round(float(psf.sum()), 5)
    ((33, 65, 65), 1.0)
    """
    objective = _objective(numerical_aperture, immersion_index, sample_index, depth,
                           coverslip_index)
    wavelengths = (_positive(excitation_wavelength, "excitation_wavelength"),
                   _positive(wavelength, "wavelength"))
    return _render(shape, spacing, objective, wavelengths, _theory(theory)).astype(
        np.float32)
