"""Microscope PSFs from the optics: textbook widths, the Bessel series and the vectorial
quadrature against direct quadrature, psfmodels' scalar and vectorial Gibson–Lanni where
it installs, and the PSF contract."""

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special

import psfkit
from psfkit.optics import (
    _objective,
    bessel_series,
    confocal_psf,
    lommel_integrals,
    pupil_phase,
    radial_intensity,
    vectorial_pupil_factors,
    vectorial_radial_intensity,
    widefield_psf,
)
from psfkit.psf import fwhm

# the psfmodels reference lives with the benchmark that compares the two
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

OIL = 1.515
GREEN = 0.52  # µm


def relative_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def textbook_widths(numerical_aperture, wavelength=GREEN, index=OIL):
    """Lateral ``0.51 λ / NA`` and axial ``0.88 λ / (n − √(n² − NA²))`` widefield FWHM."""
    lateral = 0.51 * wavelength / numerical_aperture
    axial = 0.88 * wavelength / (index - np.sqrt(index**2 - numerical_aperture**2))
    return lateral, axial


def quadrature_intensity(radii, defocus, objective, wavelength, samples=20_000):
    """``|∫₀¹ exp(iW) J0(k NA r ρ) ρ dρ|²`` by a fine midpoint rule (the known truth)."""
    rho = (np.arange(samples) + 0.5) / samples
    pupil = np.exp(pupil_phase(rho, defocus, objective, wavelength)) * rho / samples
    beta = 2 * np.pi / wavelength * objective.numerical_aperture * radii
    amplitude = pupil @ scipy.special.j0(np.outer(rho, beta))
    return np.abs(amplitude) ** 2


def in_focus_widths(numerical_aperture, theory):
    """Lateral (y, x) and axial FWHM (µm) of ``widefield_psf`` in oil on voxels of 1/8 of
    the textbook widths, and those textbook widths."""
    lateral, axial = textbook_widths(numerical_aperture)
    spacing = (axial / 8, lateral / 8, lateral / 8)
    psf = widefield_psf((41, 33, 33), spacing, numerical_aperture=numerical_aperture,
                        wavelength=GREEN, immersion_index=OIL, theory=theory)
    return fwhm(psf) * np.array(spacing), (lateral, axial)


@pytest.mark.parametrize(("numerical_aperture", "theory"), [
    (0.5, "scalar"), (0.75, "scalar"), (1.0, "scalar"), (1.2, "scalar"), (1.4, "scalar"),
    (0.5, "vectorial"), (0.75, "vectorial"), (1.0, "vectorial"), (1.2, "vectorial"),
    (1.3, "vectorial"),
])
def test_widefield_fwhm_is_within_10_percent_of_the_textbook_widths(numerical_aperture,
                                                                     theory):
    widths, (lateral, axial) = in_focus_widths(numerical_aperture, theory)
    assert abs(widths[1] / lateral - 1) < 0.10
    assert abs(widths[2] / lateral - 1) < 0.10
    assert abs(widths[0] / axial - 1) < 0.10


@pytest.mark.parametrize("numerical_aperture", [0.5, 1.2, 1.4])
def test_vectorial_widths_match_psfmodels_vectorial_widths_within_1_percent(
        numerical_aperture):
    """At NA 1.4 the vectorial focus is 11 % wider than the scalar rule 0.51 λ/NA (the
    I1, I2 terms of the polarisation): psfmodels' vectorial model says the same."""
    psfmodels = pytest.importorskip("psfmodels")
    widths, (lateral, axial) = in_focus_widths(numerical_aperture, "vectorial")
    reference = psfmodels.make_psf(41, 33, dxy=lateral / 8, dz=axial / 8,
                                   NA=numerical_aperture, wvl=GREEN, ns=OIL,
                                   ni=OIL, ni0=OIL, model="vectorial")
    expected = fwhm(reference) * np.array([axial / 8, lateral / 8, lateral / 8])
    np.testing.assert_allclose(widths, expected, rtol=0.01)
    if numerical_aperture == 1.4:
        assert 1.10 < widths[2] / lateral < 1.12


@pytest.mark.parametrize(("numerical_aperture", "immersion", "sample", "depth"), [
    (1.4, OIL, OIL, 0.0),
    (1.4, OIL, 1.33, 5.0),   # oil objective, watery sample: spherical aberration
    (1.2, 1.33, 1.33, 0.0),
    (0.8, 1.0, 1.0, 0.0),
])
def test_bessel_series_matches_direct_quadrature(numerical_aperture, immersion, sample,
                                                 depth):
    objective = _objective(numerical_aperture, immersion, sample, depth)
    radii = np.linspace(0, 3, 121)
    defocus = np.linspace(-3, 3, 13)
    series = radial_intensity(radii, defocus, objective, GREEN)
    truth = quadrature_intensity(radii, defocus, objective, GREEN)
    # the critical angle of the mismatched case puts a kink in the pupil
    tolerance = 3e-3 if sample < numerical_aperture else 1e-6
    assert relative_l2(series, truth) < tolerance


def test_bessel_series_reproduces_the_pupil_function():
    objective = _objective(1.2, 1.33, None, 0.0)
    defocus = np.array([-2.0, 0.0, 1.5])
    series = bessel_series(defocus, objective, GREEN)
    rho = np.linspace(0, 1, 401)
    expanded = series.coefficients @ scipy.special.j0(np.outer(series.orders, rho))
    truth = np.exp(pupil_phase(rho, defocus, objective, GREEN))
    assert np.abs(expanded - truth).max() < 1e-3


def test_lommel_integrals_match_quadrature_including_the_diagonal():
    orders = np.arange(8) * 0.75 * np.pi
    beta = np.concatenate([np.linspace(0, 20, 41), orders, orders + 1e-9])  # β = σ
    rho = (np.arange(100_000) + 0.5) / 100_000
    truth = (scipy.special.j0(np.outer(orders, rho)) * rho) @ scipy.special.j0(
        np.outer(rho, beta)) / rho.size
    np.testing.assert_allclose(lommel_integrals(orders, beta), truth, atol=1e-8)


@pytest.mark.parametrize("theory", ["vectorial", "scalar"])
@pytest.mark.parametrize("render", [widefield_psf, confocal_psf])
def test_the_psf_contract_odd_centred_unit_sum_float32(render, theory):
    extra = {"excitation_wavelength": 0.488} if render is confocal_psf else {}
    psf = render((21, 31, 31), (0.15, 0.06, 0.06), numerical_aperture=1.3,
                 wavelength=GREEN, theory=theory, **extra)
    assert psf.dtype == np.float32
    assert psf.shape == (21, 31, 31)
    assert psf.min() >= 0
    assert abs(float(psf.sum()) - 1) < 1e-5
    assert np.unravel_index(np.argmax(psf), psf.shape) == (10, 15, 15)
    # rotational symmetry on the grid, and focus symmetry with matched indices
    np.testing.assert_allclose(psf, psf[:, ::-1, :], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(psf, np.swapaxes(psf, 1, 2), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(psf, psf[::-1], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("theory", ["vectorial", "scalar"])
def test_confocal_is_the_product_of_excitation_and_emission(theory):
    spacing = (0.05, 0.02, 0.02)  # fine, so the product of voxel averages is close
    common = {"numerical_aperture": 1.2, "immersion_index": 1.33, "theory": theory}
    excitation = widefield_psf((41, 41, 41), spacing, wavelength=0.488, **common)
    emission = widefield_psf((41, 41, 41), spacing, wavelength=GREEN, **common)
    product = excitation.astype(float) * emission
    confocal = confocal_psf((41, 41, 41), spacing, wavelength=GREEN,
                            excitation_wavelength=0.488, **common)
    assert relative_l2(confocal, product / product.sum()) < 0.01
    # and it is narrower: 1/√2 of the widefield width for nearly equal wavelengths
    ratio = fwhm(confocal)[2] / fwhm(emission)[2]
    assert 0.65 < ratio < 0.78


@pytest.mark.parametrize(("numerical_aperture", "immersion", "sample", "depth"), [
    (1.4, OIL, OIL, 0.0),
    (1.4, OIL, 1.33, 5.0),
    (1.2, OIL, 1.33, 3.0),
    (1.0, 1.33, 1.33, 10.0),
    (0.5, 1.0, 1.0, 0.0),
])
def test_widefield_matches_psfmodels_gibson_lanni_within_2_percent(
        numerical_aperture, immersion, sample, depth):
    pytest.importorskip("psfmodels")
    from bench_optics import psfmodels_scalar

    shape, spacing = (33, 65, 65), (0.1, 0.05, 0.05)
    ours = widefield_psf(shape, spacing, numerical_aperture=numerical_aperture,
                         wavelength=GREEN, immersion_index=immersion, sample_index=sample,
                         depth=depth, theory="scalar")
    theirs = psfmodels_scalar(shape, spacing, numerical_aperture, immersion, sample, depth,
                              wavelength=GREEN)
    assert relative_l2(ours, theirs) < 0.02


@pytest.mark.parametrize(("numerical_aperture", "immersion", "sample", "depth"), [
    (1.4, OIL, OIL, 0.0),
    (1.4, OIL, 1.33, 5.0),   # beyond the sample's critical angle
    (1.2, OIL, 1.33, 3.0),
    (1.2, 1.33, 1.33, 0.0),
    (1.0, 1.33, 1.33, 10.0),
    (0.5, 1.0, 1.0, 0.0),
])
def test_vectorial_widefield_matches_psfmodels_vectorial_within_2_percent(
        numerical_aperture, immersion, sample, depth):
    pytest.importorskip("psfmodels")
    from bench_optics import psfmodels_vectorial

    shape, spacing = (33, 65, 65), (0.1, 0.05, 0.05)
    ours = widefield_psf(shape, spacing, numerical_aperture=numerical_aperture,
                         wavelength=GREEN, immersion_index=immersion, sample_index=sample,
                         depth=depth)
    theirs = psfmodels_vectorial(shape, spacing, numerical_aperture, immersion, sample,
                                 depth, wavelength=GREEN)
    assert relative_l2(ours, theirs) < 0.02


def test_the_scalar_theory_is_not_the_vectorial_one_at_high_na():
    """The two light models differ where polarisation matters: about 20 % at NA 1.4."""
    arguments = {"shape": (21, 33, 33), "spacing": (0.1, 0.05, 0.05),
                 "numerical_aperture": 1.4, "wavelength": GREEN}
    vectorial = widefield_psf(**arguments)
    scalar = widefield_psf(**arguments, theory="scalar")
    assert 0.1 < relative_l2(scalar, vectorial) < 0.4
    # the vectorial focus is wider laterally (the I1, I2 terms spread the light)
    assert fwhm(vectorial)[2] > 1.02 * fwhm(scalar)[2]


def vectorial_quadrature_truth(radii, defocus, objective, wavelength, samples=40_000):
    """``|I0|² + 2|I1|² + |I2|²`` by a fine midpoint rule, with the pupil split at the
    sample's critical angle and each piece in ``t`` where ``ρ = ρc + (edge − ρc) t²``
    (the known truth of the Gauss–Legendre rule)."""
    critical = objective.sample_index / objective.numerical_aperture
    t = (np.arange(samples) + 0.5) / samples
    if critical < 1:
        rho = np.concatenate([critical * (1 - t**2), critical + (1 - critical) * t**2])
        weight = np.concatenate([2 * critical * t, 2 * (1 - critical) * t]) / samples
    else:
        rho, weight = t, np.full(samples, 1 / samples)
    pupil = np.exp(pupil_phase(rho, defocus, objective, wavelength)) * weight * rho
    factors = vectorial_pupil_factors(rho, objective)
    beta = 2 * np.pi / wavelength * objective.numerical_aperture * radii
    argument = np.outer(rho, beta)
    amplitudes = [(pupil * factors[n]) @ scipy.special.jv(n, argument) for n in range(3)]
    return (np.abs(amplitudes[0]) ** 2 + 2 * np.abs(amplitudes[1]) ** 2
            + np.abs(amplitudes[2]) ** 2)


@pytest.mark.parametrize(("numerical_aperture", "immersion", "sample", "depth"), [
    (1.4, OIL, OIL, 0.0),
    (1.4, OIL, 1.33, 5.0),
    (1.4, OIL, 1.33, 0.0),   # supercritical light reaches the lens undamped
    (1.49, OIL, OIL, 0.0),   # the apodisation's 1/√cos θ near the immersion's limit
    (1.2, 1.33, 1.33, 0.0),
    (0.8, 1.0, 1.0, 0.0),
])
def test_vectorial_quadrature_matches_a_fine_midpoint_rule(numerical_aperture, immersion,
                                                           sample, depth):
    objective = _objective(numerical_aperture, immersion, sample, depth)
    radii = np.linspace(0, 4, 161)
    defocus = np.linspace(-4, 4, 17)
    ours = vectorial_radial_intensity(radii, defocus, objective, GREEN)
    truth = vectorial_quadrature_truth(radii, defocus, objective, GREEN)
    assert relative_l2(ours, truth) < 1e-7


def test_vectorial_pupil_factors_reduce_to_a_uniform_pupil_at_small_angles():
    """Index-matched media at a vanishing angle: t_s = t_p = 1, so A0 = 2, A1 = A2 = 0."""
    objective = _objective(1.0, 1.33, None, 0.0, coverslip_index=1.33)
    factors = vectorial_pupil_factors(np.array([1e-6]), objective)
    np.testing.assert_allclose(factors[:, 0], [2.0, 0.0, 0.0], atol=1e-6)


#: Values of the scalar PSF of the test below, from psfkit before the vectorial default
#: (commit 586c0e7): its centre voxel, one off-centre voxel and its sum of squares.
SCALAR_BEFORE = (0.005346367135643959, 0.0001781825558282435, 0.0008901110067397335)


def test_the_scalar_theory_reproduces_the_scalar_model_of_before():
    psf = widefield_psf((15, 21, 21), (0.2, 0.08, 0.08), numerical_aperture=1.1,
                        wavelength=0.6, immersion_index=1.33, sample_index=1.38, depth=4.0,
                        theory="scalar")
    values = (float(psf[7, 10, 10]), float(psf[3, 4, 12]),
              float(np.square(psf.astype(float)).sum()))
    np.testing.assert_allclose(values, SCALAR_BEFORE, rtol=1e-6)


@pytest.mark.parametrize("theory", ["vectorial", "scalar"])
def test_make_psf_renders_the_same_models(theory):
    params = {"spacing": (0.2, 0.08, 0.08), "numerical_aperture": 1.1, "wavelength": 0.6,
              "immersion_index": 1.33, "sample_index": 1.38, "depth": 4.0,
              "theory": theory}
    np.testing.assert_array_equal(psfkit.make_psf("widefield", (15, 21, 21), **params),
                                  widefield_psf((15, 21, 21), **params))
    np.testing.assert_array_equal(
        psfkit.make_psf("confocal", 15, excitation_wavelength=0.5, **params),
        confocal_psf((15, 15, 15), excitation_wavelength=0.5, **params))
    with pytest.raises(ValueError, match="shape must have 3 entries"):
        psfkit.make_psf("widefield", (15, 15), **params)


@pytest.mark.parametrize(("changes", "match"), [
    ({"numerical_aperture": 1.6}, r"numerical_aperture \(1.6\) must be below "
                                  r"immersion_index \(1.515\)"),
    ({"numerical_aperture": 0.0}, "numerical_aperture must be a positive number"),
    ({"wavelength": -0.5}, "wavelength must be a positive number"),
    ({"sample_index": np.nan}, "sample_index must be a positive number"),
    ({"depth": -1.0}, "depth .* must be zero or positive"),
    ({"spacing": (0.1, 0.05)}, r"spacing must have one voxel size per axis of the PSF "
                               r"\(3\), got 2"),
    ({"spacing": (0.1, 0.0, 0.05)}, "spacing must be positive and finite on every axis"),
    ({"shape": (15, 16, 15)}, "shape must be odd"),
    ({"theory": "vector"}, "theory must be 'vectorial' or 'scalar', got 'vector'"),
    ({"coverslip_index": -1.0}, "coverslip_index must be a positive number"),
])
def test_bad_optics_raise_errors_that_name_the_argument(changes, match):
    arguments = {"shape": (15, 15, 15), "spacing": (0.1, 0.05, 0.05),
                 "numerical_aperture": 1.2, "wavelength": GREEN} | changes
    with pytest.raises(ValueError, match=match):
        widefield_psf(**arguments)


def test_a_non_numeric_optical_parameter_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="excitation_wavelength must be a number"):
        confocal_psf((15, 15, 15), (0.1, 0.05, 0.05), numerical_aperture=1.2,
                     wavelength=GREEN, excitation_wavelength="blue")


@pytest.mark.parametrize("depth", [None, "x", [1.0]])
def test_widefield_psf_refuses_a_non_numeric_depth_by_name(depth):
    with pytest.raises(TypeError, match="depth must be a number"):
        psfkit.widefield_psf((3, 5, 5), (0.2, 0.1, 0.1), numerical_aperture=1.2,
                             wavelength=0.5, depth=depth)


def test_widefield_psf_at_a_tiny_numerical_aperture_is_flat_and_finite():
    psf = psfkit.widefield_psf((3, 5, 5), (0.3, 0.1, 0.1), numerical_aperture=1e-30,
                               wavelength=0.5)
    np.testing.assert_allclose(psf, np.full((3, 5, 5), 1 / 75), rtol=1e-5)


def test_widefield_psf_refuses_optics_that_overflow_by_name_without_a_warning():
    with pytest.raises(ValueError, match="give wavelength and spacing in one unit"):
        psfkit.widefield_psf((5, 9, 9), (0.3, 0.1, 0.1), numerical_aperture=1e-30,
                             wavelength=1e300)


def test_deconvolving_with_psfs_from_the_optics_and_a_bead_stack_is_within_5_percent():
    """Issue #14's bar on a tiny volume: a cell-like volume blurred by psfmodels' vectorial
    PSF, deconvolved with widefield_psf from the same optics and with a bead stack at a 4×
    finer z step resampled to the image's voxels, lands within 5 % of the true PSF's error."""
    pytest.importorskip("psfmodels")
    from bench_optics_deconvolution import (
        SPACING,
        WATER,
        bead_stack_psf,
        blurred_volume,
        deconvolution_errors,
        vectorial_psf,
    )

    shape = (15, 33, 33)
    candidates = {"true": vectorial_psf(shape, SPACING, WATER),
                  "optics": widefield_psf(shape, SPACING, **WATER)}
    # a widefield bead's defocused light reaches the edges of any finite frame
    with pytest.warns(psfkit.TruncationWarning, match="beyond the frame edge"):
        candidates["bead stack"] = bead_stack_psf(shape, SPACING, WATER, rng=0)
    truth, blurred = blurred_volume(candidates["true"], (16, 48, 48), rng=0)
    runs = deconvolution_errors(truth, blurred, candidates, "richardson_lucy", 20)
    errors = {name: error for name, (error, _) in runs.items()}
    assert errors["true"] < 0.8 * relative_l2(blurred, truth)  # the deconvolution helps
    assert errors["optics"] <= 1.05 * errors["true"]
    assert errors["bead stack"] <= 1.05 * errors["true"]
