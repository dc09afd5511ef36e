"""Model kernels: unit sum, centring, centre sampling or pixel integration, and the sizes
their parameters mean."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from psfkit.models import MODELS, airy_radius, make_psf

PARAMS = {
    "gaussian": {"sigma": 1.7},
    "elliptical_gaussian": {"sigma_y": 1.2, "sigma_x": 2.5, "angle": 0.5},
    "moffat": {"alpha": 2.0, "beta": 3.0},
    "airy": {"radius": 3.0},
    "disk": {"radius": 4.2},
    "ring": {"diameter": 10.0, "width": 1.0},
    "motion": {"length": 9.0, "angle": 0.3},
}


def covariance(kernel):
    """Second central moments of a kernel, in pixels² (axis order of the array)."""
    grids = np.indices(kernel.shape).reshape(kernel.ndim, -1).astype(float)
    weights = kernel.ravel().astype(float) / kernel.sum()
    mean = grids @ weights
    centred = grids - mean[:, None]
    return (centred * weights) @ centred.T, mean


@pytest.mark.parametrize("model", MODELS)
def test_every_model_is_float32_unit_sum_and_centred(model):
    kernel = make_psf(model, (31, 31), **PARAMS[model])
    assert kernel.dtype == np.float32
    assert kernel.shape == (31, 31)
    assert abs(float(kernel.sum()) - 1) < 1e-5
    assert kernel.min() >= 0
    _, mean = covariance(kernel)
    np.testing.assert_allclose(mean, [15, 15], atol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_changes_continuously_with_its_parameters(model):
    # fits rely on this: a tiny parameter change must give a tiny, nonzero kernel change
    params = PARAMS[model]
    name = next(iter(params))
    nudged = {**params, name: params[name] * 1.0005}
    a = make_psf(model, (31, 31), **params)
    b = make_psf(model, (31, 31), **nudged)
    change = float(np.abs(a - b).sum())
    assert 0 < change < 0.02


#: Variance a pixel adds to a profile integrated over it (Sheppard's correction), 0 when the
#: profile is sampled at the pixel centres.
PIXEL_VARIANCE = {False: 0.0, True: 1 / 12}


@pytest.mark.parametrize("pixel_integrated", [False, True])
@pytest.mark.parametrize("sigma", [0.8, 2.5])
def test_gaussian_variance_is_sigma_squared_sampled_or_plus_a_pixel_integrated(
        sigma, pixel_integrated):
    kernel = make_psf("gaussian", 41, sigma=sigma, pixel_integrated=pixel_integrated)
    cov, _ = covariance(kernel)
    # (sampled, the variance falls short of sigma² by 2e-4 at 0.8 px: aliasing)
    np.testing.assert_allclose(np.diag(cov), sigma**2 + PIXEL_VARIANCE[pixel_integrated],
                               rtol=3e-4)
    assert abs(cov[0, 1]) < 1e-8


@pytest.mark.parametrize("sigma", [(0.8, 0.8), (1.1, 2.3), (1.5, 1.0, 0.9)])
def test_gaussian_is_the_kernel_of_scipy_gaussian_filter(sigma):
    # scipy.ndimage (like scikit-image, DIPlib, fspecial) samples the Gaussian at pixel
    # centres and normalises it over 4 sigma each side: the same kernel on that shape
    shape = tuple(2 * int(4.0 * s + 0.5) + 1 for s in sigma)
    impulse = np.zeros(shape)
    impulse[tuple(n // 2 for n in shape)] = 1.0
    np.testing.assert_allclose(make_psf("gaussian", shape, sigma=sigma),
                               ndi.gaussian_filter(impulse, sigma, mode="constant"),
                               rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("model, params, profile", [
    ("moffat", {"alpha": 2.0, "beta": 3.0},
     lambda y, x: (1 + (y**2 + x**2) / 4.0) ** -3.0),
    ("elliptical_gaussian", {"sigma_y": 1.2, "sigma_x": 2.5, "angle": 0.5},
     lambda y, x: np.exp(-0.5 * (((np.cos(0.5) * x + np.sin(0.5) * y) / 2.5) ** 2
                                 + ((np.cos(0.5) * y - np.sin(0.5) * x) / 1.2) ** 2))),
])
def test_moffat_and_elliptical_gaussian_are_sampled_at_pixel_centres(model, params, profile):
    y, x = np.mgrid[-10:11, -10:11].astype(float)
    expected = profile(y, x)
    np.testing.assert_allclose(make_psf(model, 21, **params), expected / expected.sum(),
                               rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("model", ["gaussian", "elliptical_gaussian", "moffat"])
def test_pixel_integration_widens_the_centre_sampled_models_by_a_pixel_variance(model):
    params = PARAMS[model]
    sampled, _ = covariance(make_psf(model, 41, **params))
    integrated, _ = covariance(make_psf(model, 41, pixel_integrated=True, **params))
    # 1/12 up to the sub-pixel grid (9 sub-samples per axis add (1 - 1/81) / 12) and the
    # Moffat tail cut by the kernel's edge
    np.testing.assert_allclose(np.diag(integrated - sampled), 1 / 12, rtol=0.015)


@pytest.mark.parametrize("model", ["airy", "disk", "ring", "motion"])
def test_the_other_models_are_always_pixel_integrated(model):
    np.testing.assert_array_equal(make_psf(model, 31, **PARAMS[model]),
                                  make_psf(model, 31, pixel_integrated=True, **PARAMS[model]))


@pytest.mark.parametrize("value", ["no", 1, None])
def test_pixel_integrated_must_be_a_bool(value):
    with pytest.raises(TypeError, match="pixel_integrated must be True or False"):
        make_psf("gaussian", 9, sigma=1.0, pixel_integrated=value)


def test_narrow_gaussian_matches_brute_force_pixel_averages():
    sigma, factor = 0.4, 201
    fine = (np.arange(9 * factor) + 0.5) / factor - 4.5
    profile = np.exp(-0.5 * (fine / sigma) ** 2).reshape(9, factor).mean(axis=1)
    expected = np.outer(profile, profile) / profile.sum() ** 2
    np.testing.assert_allclose(make_psf("gaussian", 9, sigma=sigma, pixel_integrated=True),
                               expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("pixel_integrated", [False, True])
def test_gaussian_3d_has_one_sigma_per_axis(pixel_integrated):
    kernel = make_psf("gaussian", (31, 21, 11), sigma=(3.0, 2.0, 1.0),
                      pixel_integrated=pixel_integrated)
    assert kernel.shape == (31, 21, 11)
    cov, _ = covariance(kernel)
    np.testing.assert_allclose(np.diag(cov),
                               np.array([9.0, 4.0, 1.0]) + PIXEL_VARIANCE[pixel_integrated],
                               rtol=5e-3)


@pytest.mark.parametrize("pixel_integrated", [False, True])
def test_elliptical_gaussian_axes_and_angle(pixel_integrated):
    sigma_y, sigma_x, angle = 1.5, 3.0, 0.4
    kernel = make_psf("elliptical_gaussian", 41, sigma_y=sigma_y, sigma_x=sigma_x, angle=angle,
                      pixel_integrated=pixel_integrated)
    cov, _ = covariance(kernel)
    values, vectors = np.linalg.eigh(cov)
    np.testing.assert_allclose(values, np.array([sigma_y**2, sigma_x**2])
                               + PIXEL_VARIANCE[pixel_integrated], rtol=5e-3)
    major = vectors[:, 1] * np.sign(vectors[1, 1])  # (y, x) of the major axis
    assert abs(np.arctan2(major[0], major[1]) - angle) < 1e-3


def test_disk_radius_is_its_edge():
    # a uniform disk of radius R has per-axis variance R²/4, plus 1/12 from the pixels
    radius = 6.3
    cov, _ = covariance(make_psf("disk", 17, radius=radius))
    np.testing.assert_allclose(np.diag(cov), radius**2 / 4 + 1 / 12, rtol=5e-3)


def test_ring_peaks_at_half_its_diameter():
    kernel = make_psf("ring", 41, diameter=24.0, width=1.0)
    profile = kernel[20, 20:]
    assert int(np.argmax(profile)) == 12


def test_airy_first_dark_ring_at_radius():
    kernel = make_psf("airy", 41, radius=8.0)
    profile = kernel[20, 20:30]
    assert int(np.argmin(profile)) == 8
    assert profile[8] < 1e-3 * profile[0]


def test_widefield_airy_matches_its_radius():
    radius = airy_radius(numerical_aperture=1.4, wavelength=0.52, pixel_size=0.065)
    assert abs(radius - 0.61 * 0.52 / 1.4 / 0.065) < 0.01 * radius
    widefield = make_psf("widefield_airy", 25, numerical_aperture=1.4, wavelength=0.52,
                         pixel_size=0.065)
    np.testing.assert_allclose(widefield, make_psf("airy", 25, radius=radius), atol=1e-7)


def test_motion_is_a_segment_of_the_given_length():
    horizontal = make_psf("motion", 15, length=9.0, angle=0.0)
    np.testing.assert_allclose(horizontal[7, 3:12], 1 / 9, rtol=1e-5)
    assert float(horizontal.sum()) == pytest.approx(float(horizontal[7].sum()))
    # any angle: variance along the segment is L²/12, up to the pixel grid
    cov, _ = covariance(make_psf("motion", 31, length=20.0, angle=0.7))
    values, vectors = np.linalg.eigh(cov)
    assert abs(values[1] - 20.0**2 / 12) < 0.3
    assert values[0] < 0.3
    major = vectors[:, 1] * np.sign(vectors[1, 1])
    assert abs(np.arctan2(major[0], major[1]) - 0.7) < 0.01


@pytest.mark.parametrize(
    ("model", "shape", "params", "error", "match"),
    [
        ("gaussian", (10, 11), {"sigma": 1.0}, ValueError, "odd"),
        ("gaussian", 11, {"sigma": -1.0}, ValueError, "positive"),
        ("blob", 11, {}, ValueError, "unknown model"),
        ("disk", 11, {"diameter": 3.0}, TypeError, "wrong parameters"),
        ("disk", 5, {"radius": 0.0}, ValueError, "positive"),
        ("moffat", (11, 11, 11), {"alpha": 1.0, "beta": 2.0}, ValueError, "2 entries"),
    ],
)
def test_bad_parameters_raise_clear_errors(model, shape, params, error, match):
    with pytest.raises(error, match=match):
        make_psf(model, shape, **params)


@pytest.mark.parametrize(("model", "name", "value", "error", "message"), [
    ("airy", "radius", float("nan"), ValueError, "radius of the 'airy' model must be finite"),
    ("motion", "angle", float("inf"), ValueError, "angle of the 'motion' model must be finite"),
    ("gaussian", "sigma", (1.0, float("nan")), ValueError, "sigma of the 'gaussian' model"),
    ("disk", "radius", "wide", TypeError, "radius of the 'disk' model must be a number"),
])
def test_a_non_finite_or_non_numeric_parameter_is_refused_by_name(model, name, value, error,
                                                                  message):
    params = {**PARAMS[model], name: value}
    with pytest.raises(error, match=message):
        make_psf(model, (15, 15), **params)


@pytest.mark.parametrize("shape", [float("nan"), float("inf"), 9.0, (9, float("nan"))])
def test_make_psf_refuses_a_non_integer_shape_by_name(shape):
    with pytest.raises(TypeError, match="shape must be an int"):
        make_psf("gaussian", shape, sigma=1.5)


@pytest.mark.parametrize("shape", [None, "x"])
def test_make_psf_names_the_shape_when_it_is_not_a_number(shape):
    with pytest.raises(TypeError, match="shape must be an int"):
        make_psf("gaussian", shape, sigma=1.5)


def test_make_psf_refuses_a_sequence_for_a_single_number_parameter_by_name():
    with pytest.raises(TypeError, match="angle of the 'motion' model must be one number"):
        make_psf("motion", (9, 9), length=3.0, angle=[1.0, 2.0])


def test_make_psf_renders_a_moffat_far_wider_than_the_kernel_as_flat():
    kernel = make_psf("moffat", (5, 5), alpha=1e300, beta=2.0)
    np.testing.assert_allclose(kernel, np.full((5, 5), 1 / 25), rtol=1e-6)


def test_make_psf_refuses_a_ring_far_outside_the_kernel_without_a_warning():
    with pytest.raises(ValueError, match="no weight inside its shape"):
        make_psf("ring", (9, 9), diameter=1e300, width=2.0)


@pytest.mark.parametrize(("model", "parameters"), [
    ("ring", {"diameter": 4.0, "width": 1e-300}),
    ("elliptical_gaussian", {"sigma_y": 1e-300, "sigma_x": 1.0}),
])
def test_make_psf_renders_a_profile_far_narrower_than_a_pixel_finite(model, parameters):
    kernel = make_psf(model, (9, 9), **parameters)
    assert np.isfinite(kernel).all()
    assert abs(float(kernel.sum()) - 1) < 1e-5


def test_a_psf_too_large_for_memory_is_refused_by_name_before_any_allocation():
    with pytest.raises(ValueError, match=r"a gaussian PSF of shape \(100001, 100001\) needs "
                                         r"about 447\.0 GiB, more than the .* choose a "
                                         r"smaller shape"):
        make_psf("gaussian", (100001, 100001), sigma=2.0)
