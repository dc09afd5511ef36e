"""The input contract of the core, checked on awkward inputs drawn by hypothesis.

One property for every public function in scope: a call either returns finite results of
the documented shape and dtype, or raises ``ValueError``/``TypeError`` whose message names
one of the function's arguments; and no input is modified. The inputs vary the shape (1 to
5 axes, at most 4096 samples), the dtype (bool to float64, complex, object, masked), the
content (noise, zeros, constants, NaN, ±inf) and the magnitude (1e-30 to float64's
maximum), and the keyword values (NaN, ±inf, negative, 0, the wrong type).

Hypothesis runs derandomized, so the suite tries the same inputs on every run. psfkit's own
warnings (``PsfWarning``, ``UndersamplingWarning``) are documented advice and are ignored
here; any other warning is an error (pytest's ``filterwarnings = error``). The outcomes are
counted per function and printed at the end of the module (``pytest -s``). The strategies
and the property live in ``_contract.py``, shared with ``test_contract_deconvolution.py``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import psfkit
from _contract import (  # noqa: F401 (outcome_table is an autouse fixture)
    MAGNITUDES,
    arrays,
    bad_or,
    contract_settings,
    holds_contract,
    is_float_array,
    kernel_result,
    ordinary_or,
    outcome_table,
    scaled,
    shapes,
)
from psfkit import (
    Convolver,
    average_beads,
    axial_profile,
    confocal_psf,
    convolve,
    defocus_diameter,
    estimate_kernel,
    estimate_shift,
    fit_kernel,
    make_psf,
    noise_sigma,
    prepare_psf,
    radial_profile,
    resample_psf,
    widefield_psf,
)


@st.composite
def bead_images(draw, max_beads: int = 3):
    """A valid 2D or 3D photo of up to ``max_beads`` Gaussian spots on a noisy background,
    or (half of the time) an awkward array."""
    shape = draw(st.sampled_from(((32, 32), (24, 40), (9, 24, 24))))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=float)
    image = 0.01 * rng.random(shape)
    for _ in range(draw(st.integers(1, max_beads))):
        centre = [rng.uniform(n / 4, 3 * n / 4) for n in shape]
        image += np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) / 3.0)
    return draw(ordinary_or(arrays(min_dims=1, max_dims=5), image))


@st.composite
def defocused_images(draw):
    """A valid 64×64 scene blurred by a disk of a drawn diameter, or (half of the time) an
    awkward array."""
    seed = draw(st.integers(0, 2**16))
    disk = make_psf("disk", (15, 15), radius=draw(st.sampled_from((2.5, 4.0, 6.0))))
    image = convolve(np.random.default_rng(seed).random((64, 64)), disk)
    return draw(ordinary_or(arrays(min_dims=1, max_dims=4), image))


@st.composite
def blurred_pairs(draw, min_dims: int = 2, max_dims: int = 3, min_side: int = 8):
    """A sharp image and a blur of it of the same shape, either or both made awkward."""
    shape = draw(shapes(min_dims, max_dims, min_side))
    seed = draw(st.integers(0, 2**16))
    sharp = np.random.default_rng(seed).random(shape)
    blurred = _smoothed(sharp)
    sharp = draw(ordinary_or(arrays(shape=shape), sharp))
    blurred = draw(ordinary_or(arrays(shape=shape), blurred))
    if draw(st.booleans()):  # a rescaled pair of otherwise valid images
        scale = draw(st.sampled_from(MAGNITUDES))
        sharp, blurred = scaled(sharp, scale), scaled(blurred, scale)
    return sharp, blurred


def _smoothed(image: np.ndarray) -> np.ndarray:
    """``image`` blurred by a small box along every axis (a plausible blurred partner)."""
    import scipy.ndimage

    return scipy.ndimage.uniform_filter(image, size=3, mode="nearest")




# --------------------------------------------------------------------------- one test per function


@contract_settings(examples=600)
@given(pair=blurred_pairs(), shape=bad_or(None, (5, 5), 4, (3, 3, 3), 3),
       method=bad_or("auto", "fourier", "lsq", "nope"), regularization=bad_or("auto", 1e-3),
       max_iterations=bad_or(30, 5.0, 10**12), tolerance=bad_or(1e-3))
def test_estimate_kernel_returns_a_finite_kernel_or_names_the_bad_argument(
        pair, shape, method, regularization, max_iterations, tolerance):
    sharp, blurred = pair
    holds_contract(estimate_kernel,
                   dict(sharp=sharp, blurred=blurred, shape=shape, method=method,
                        regularization=regularization, max_iterations=max_iterations,
                        tolerance=tolerance),
                   kernel_result(np.ndim(sharp)))


@contract_settings(examples=400)
@given(pair=blurred_pairs(), model=bad_or("gaussian", "moffat", "disk", "nope"),
       shape=bad_or(None, (7, 7), 4), spacing=bad_or(None, (1.0, 2.0), [1.0, 1.0, 1.0]),
       loss=bad_or("linear", "soft_l1", "nope"), max_evaluations=bad_or(20, 5.0))
def test_fit_kernel_returns_a_finite_fit_or_names_the_bad_argument(
        pair, model, shape, spacing, loss, max_evaluations):
    sharp, blurred = pair
    holds_contract(fit_kernel,
                   dict(sharp=sharp, blurred=blurred, model=model, shape=shape, spacing=spacing,
                        loss=loss, max_evaluations=max_evaluations),
                   kernel_result(np.ndim(sharp)))


@contract_settings(examples=600)
@given(blurred=defocused_images(), min_diameter=bad_or(3.0, 10**6),
       max_diameter=bad_or(None, 12.0, 1.0))
def test_defocus_diameter_returns_a_finite_diameter_or_names_the_bad_argument(
        blurred, min_diameter, max_diameter):
    def check(result):
        assert isinstance(result, float) and result > 0, result

    holds_contract(defocus_diameter,
                   dict(blurred=blurred, min_diameter=min_diameter, max_diameter=max_diameter),
                   check)


@contract_settings(examples=800)
@given(image=bead_images(max_beads=1), shape=bad_or(None, 5, (5, 5), 4, (3, 3, 3)),
       background=bad_or("auto", 0.0, "median"), centre=bad_or(None, (1.0, 1.0)),
       saturation=bad_or(None, 1.0), spacing=bad_or(None, (1.0, 1.0)))
def test_prepare_psf_returns_a_finite_unit_sum_psf_or_names_the_bad_argument(
        image, shape, background, centre, saturation, spacing):
    def check(result):
        is_float_array(result, ndim=np.ndim(image))
        assert all(n % 2 == 1 for n in result.shape), result.shape
        assert abs(float(result.sum(dtype=np.float64)) - 1) < 1e-3

    holds_contract(prepare_psf,
                   dict(image=image, shape=shape, background=background, centre=centre,
                        saturation=saturation, spacing=spacing), check)


@contract_settings(examples=400)
@given(image=bead_images(),
       shape=bad_or(None, 5, 4), method=bad_or("mean", "median", "nope"),
       threshold=bad_or(6.0), max_beads=bad_or(None, 2, 2.0),
       bead_diameter=bad_or(None, 1.0), spacing=bad_or(None, 1.0))
def test_average_beads_returns_a_finite_average_or_names_the_bad_argument(
        image, shape, method, threshold, max_beads, bead_diameter, spacing):
    def check(result):
        is_float_array(result.psf, ndim=np.ndim(image))

    holds_contract(average_beads,
                   dict(image=image, shape=shape, method=method, threshold=threshold,
                        max_beads=max_beads, bead_diameter=bead_diameter, spacing=spacing),
                   check, documented_nan=("beads",))  # flux/snr of unmeasured beads


MODEL_PARAMETERS = {
    "gaussian": ("sigma",), "elliptical_gaussian": ("sigma_y", "sigma_x", "angle"),
    "moffat": ("alpha", "beta"), "airy": ("radius",), "disk": ("radius",),
    "ring": ("diameter", "width"), "motion": ("length", "angle"),
}


@st.composite
def model_calls(draw):
    """A model name, a kernel shape and its parameters, any of them possibly bad."""
    model = draw(st.sampled_from((*MODEL_PARAMETERS, "nope")))
    parameters = {name: draw(bad_or(2.0, 1e300, 1e-30))
                  for name in MODEL_PARAMETERS.get(model, ("sigma",))}
    shape = draw(bad_or((9, 9), 9, (8, 8), (5, 5, 5), (1, 1), (-1, 5), (9, 9, 9, 9)))
    return model, shape, parameters


@contract_settings(examples=800)
@given(call=model_calls())
def test_make_psf_returns_a_finite_unit_sum_kernel_or_names_the_bad_argument(call):
    model, shape, parameters = call

    def check(result):
        is_float_array(result)
        assert abs(float(result.sum(dtype=np.float64)) - 1) < 1e-4

    holds_contract(lambda **kw: make_psf(kw.pop("model"), kw.pop("shape"), **kw),
                   dict(model=model, shape=shape, **parameters), check,
                   names={"model", "shape", *parameters}, function="make_psf")


@contract_settings(examples=600)
@given(image=arrays(min_dims=1, max_dims=4), kernel=arrays(min_dims=1, max_dims=4),
       mode=bad_or("same", "valid", "full", "nope"))
def test_convolve_returns_a_finite_blur_or_names_the_bad_argument(image, kernel, mode):
    def check(result):
        is_float_array(result, ndim=np.ndim(image))

    holds_contract(convolve, dict(image=image, kernel=kernel, mode=mode), check)


@contract_settings(examples=400)
@given(fixed=arrays(min_dims=1, max_dims=3),
       other_shape=bad_or((8, 8), (-1, 5), (0, 3), (4.0, 4.0), 8, (3, 3, 3), "x"))
def test_convolver_builds_or_names_the_bad_argument(fixed, other_shape):
    def check(result):
        assert isinstance(result, Convolver)
        other = np.ones(result.other_shape, dtype=np.float32)
        is_float_array(result.apply(other, "same"), shape=result.other_shape)

    holds_contract(Convolver, dict(fixed=fixed, other_shape=other_shape), check)


@contract_settings(examples=600)
@given(image=arrays(min_dims=1, max_dims=5))
def test_noise_sigma_returns_a_finite_level_or_names_the_image(image):
    def check(result):
        assert isinstance(result, float) and result >= 0, result

    holds_contract(noise_sigma, dict(image=image), check)


@st.composite
def shift_pairs(draw):
    """A reference and a moving image of one shape, either possibly awkward, or of two."""
    shape = draw(shapes(1, 4, 2))
    seed = draw(st.integers(0, 2**16))
    reference = np.random.default_rng(seed).random(shape)
    moving = np.roll(reference, 1, axis=0)
    reference = draw(ordinary_or(arrays(shape=shape), reference))
    moving = draw(ordinary_or(arrays(min_dims=1, max_dims=4), moving))
    return reference, moving


@contract_settings(examples=500)
@given(pair=shift_pairs(), upsample=bad_or(10, 10**6, 10.0))
def test_estimate_shift_returns_a_finite_shift_or_names_the_bad_argument(pair, upsample):
    reference, moving = pair

    def check(result):
        assert isinstance(result, np.ndarray) and result.shape == (np.ndim(reference),)

    holds_contract(estimate_shift,
                   dict(reference=reference, moving=moving, upsample=upsample), check)


@contract_settings(examples=500)
@given(psf=arrays(min_dims=1, max_dims=4, min_side=1),
       psf_spacing=bad_or(0.1, (0.1, 0.2), 1e-30, 1e300),
       image_spacing=bad_or(0.2, (0.2, 0.1), 1e-30, 1e300))
def test_resample_psf_returns_a_finite_psf_or_names_the_bad_argument(
        psf, psf_spacing, image_spacing):
    def check(result):
        is_float_array(result, ndim=np.ndim(psf))

    holds_contract(resample_psf,
                   dict(psf=psf, psf_spacing=psf_spacing, image_spacing=image_spacing), check)


@contract_settings(examples=500)
@given(psf=ordinary_or(arrays(min_dims=1, max_dims=4), make_psf("airy", (15, 15), radius=3)),
       centre=bad_or(None, (7.0, 7.0), (7.2, 6.9, 1.0), (40.0, 3.0), (np.nan, 1.0)),
       spacing=bad_or(None, 0.1, (0.3, 0.1, 0.1), 1e-30, 1e300, (1e-300, 1e300)),
       axial=st.booleans())
def test_profiles_are_finite_or_name_the_bad_argument(psf, centre, spacing, axial):
    function = axial_profile if axial else radial_profile

    def check(result):
        assert result.distance.shape == result.value.shape and result.distance.ndim == 1
        # documented NaN: a profile that does not fall to half its peak has no width
        assert np.isfinite(result.fwhm) or np.isnan(result.fwhm), result.fwhm

    holds_contract(function, dict(psf=psf, centre=centre, spacing=spacing), check,
                   documented_nan=("fwhm", "half_maximum_edges"))


OPTICAL_SHAPES = ((5, 9, 9), (9, 9), 9, (4, 8, 8), (1, 1, 1), (-1, 9, 9), (5, 9, 9, 9))


@contract_settings(examples=400)
@given(shape=bad_or((5, 9, 9), *OPTICAL_SHAPES), spacing=bad_or((0.3, 0.1, 0.1), 1e300),
       numerical_aperture=bad_or(1.2, 1.6, 1e-30), wavelength=bad_or(0.5, 1e300),
       depth=bad_or(0.0, 5.0), confocal=st.booleans())
def test_microscope_psfs_are_finite_or_name_the_bad_argument(
        shape, spacing, numerical_aperture, wavelength, depth, confocal):
    arguments = dict(shape=shape, spacing=spacing, numerical_aperture=numerical_aperture,
                     wavelength=wavelength, depth=depth)
    function = widefield_psf
    if confocal:
        function, arguments["excitation_wavelength"] = confocal_psf, wavelength

    def check(result):
        is_float_array(result, ndim=3)
        assert abs(float(result.sum(dtype=np.float64)) - 1) < 1e-4

    holds_contract(function, arguments, check)


def map_holds_contract(function, pair, **options) -> None:
    """The contract of a map estimator on ``pair``: a PsfMap of finite float32 PSFs for an
    image of the pair's dimensionality (its diagnostics may hold NaN for a failed tile, as
    documented), or an error naming one of the arguments given."""
    sharp, blurred = pair
    ndim = np.ndim(sharp)

    def check(result):
        assert isinstance(result, psfkit.PsfMap), type(result)
        is_float_array(result.psfs, ndim=2 * ndim)
        assert result.grid == result.psfs.shape[:ndim]

    holds_contract(function, dict(sharp=sharp, blurred=blurred, **options), check,
                   documented_nan=("diagnostics",),
                   names={"sharp", "blurred", "shape", *options})


@contract_settings(examples=60)
@given(pair=blurred_pairs(min_side=16), grid=bad_or((2, 2), (1, 3), (2, 2, 2), (0, 2)),
       shape=bad_or(None, (5, 5), 4), overlap=bad_or(1.5, 0.5))
def test_estimate_kernel_map_returns_a_finite_map_or_names_the_bad_argument(
        pair, grid, shape, overlap):
    map_holds_contract(psfkit.estimate_kernel_map, pair, grid=grid, shape=shape,
                       overlap=overlap, max_iterations=5)


@contract_settings(examples=60)
@given(pair=blurred_pairs(min_side=16), model=bad_or("gaussian", "disk", "auto", "nope"),
       grid=bad_or((2, 2), (2, 1), 3.0), degree=bad_or(2, 0, 1.5))
def test_fit_kernel_map_returns_a_finite_map_or_names_the_bad_argument(
        pair, model, grid, degree):
    map_holds_contract(psfkit.fit_kernel_map, pair, model=model, grid=grid, degree=degree,
                       max_evaluations=10)


def test_the_suite_covers_every_function_in_its_scope():
    """The functions above are the core's public non-deconvolution API."""
    tested = {"estimate_kernel", "fit_kernel", "defocus_diameter", "prepare_psf",
              "average_beads", "make_psf", "convolve", "Convolver", "noise_sigma",
              "estimate_shift", "resample_psf", "widefield_psf", "confocal_psf",
              "radial_profile", "axial_profile",
              "estimate_kernel_map", "fit_kernel_map"}
    excluded = {"deconvolve", "deconvolve_chunked",  # hardened and tested elsewhere
                "read_image", "write_image", "load_psf", "save_psf",  # files: test_io
                "load_psf_map", "save_psf_map"}
    public_functions = {name for name in psfkit.__all__
                        if callable(getattr(psfkit, name)) and not name[0].isupper()}
    assert public_functions - excluded <= tested | {"Convolver"}
