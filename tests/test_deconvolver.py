"""``Deconvolver``: bit for bit what ``deconvolve`` returns, the PSF's operators kept per
image shape, and ``same_choices`` applying the first image's choices to the others."""

import numpy as np
import pytest

from psfkit import Deconvolver, deconvolve, make_psf
from psfkit.deconvolution._operators import BUILD_FRESH
from psfkit.samples import blurred_pair

PSF = make_psf("gaussian", (9, 9), sigma=1.6)


def _images(shape=(64, 60), seeds=(0, 1)):
    return [blurred_pair(PSF, shape, noise=0.01, rng=seed).blurred for seed in seeds]


@pytest.mark.parametrize("method, options", [
    ("auto", {}),
    ("wiener", {}),
    ("tikhonov", {"regularization": 0.01}),
    ("richardson_lucy", {"iterations": 8}),
    ("rl_tv", {"iterations": 6}),
    ("fista_tv", {"iterations": 6}),
])
def test_each_image_is_bit_for_bit_what_deconvolve_returns(method, options):
    deconvolver = Deconvolver(PSF * 3.0, method, **options)  # normalised once, alike
    for image in [*_images(), _images((48, 52), seeds=(2,))[0]]:
        result, info = deconvolver(image, return_info=True)
        expected, expected_info = deconvolve(image, PSF * 3.0, method, **options,
                                             return_info=True)
        np.testing.assert_array_equal(result, expected)
        assert info.parameters == expected_info.parameters


def test_operators_are_kept_per_image_shape_and_a_single_call_keeps_none():
    deconvolver = Deconvolver(PSF, "rl_mix")
    first, second = _images()
    deconvolver(first)
    deconvolver(second)
    deconvolver(_images((40, 44), seeds=(3,))[0])
    assert deconvolver.kept_operators() == {(64, 60): ["blur", "convolver"],
                                            (40, 44): ["blur", "convolver"]}
    deconvolve(first, PSF)
    assert BUILD_FRESH.kept() == {}


def test_same_choices_applies_the_first_images_choices_to_the_others():
    first, second = _images()
    deconvolver = Deconvolver(PSF, "auto", same_choices=True)
    _, first_info = deconvolver(first, return_info=True)
    result, info = deconvolver(second, return_info=True)
    assert deconvolver.choices == first_info.parameters
    for name in ("background", "read_noise", "gain", "iterations", "regularization"):
        assert info.parameters[name] == first_info.parameters[name]
    np.testing.assert_array_equal(result, deconvolve(second, PSF, **first_info.parameters))
    _, independent = deconvolve(second, PSF, return_info=True)
    assert independent.parameters["read_noise"] != first_info.parameters["read_noise"]


def test_same_choices_keeps_explicit_options_and_skips_a_constant_first_image():
    first = _images()[0]
    deconvolver = Deconvolver(PSF, "richardson_lucy", iterations=5, same_choices=True)
    deconvolver(np.zeros_like(first))
    assert deconvolver.choices is None
    _, info = deconvolver(first, return_info=True)
    assert deconvolver.choices["iterations"] == 5
    assert deconvolver.choices["background"] == info.parameters["background"]


def test_refusals_name_the_argument():
    with pytest.raises(TypeError, match=r"callback is an argument of each call"):
        Deconvolver(PSF, callback=print)
    with pytest.raises(ValueError, match="iterations must be an int >= 1"):
        Deconvolver(PSF, "richardson_lucy", iterations=0)
    with pytest.raises(TypeError, match="same_choices must be True or False"):
        Deconvolver(PSF, same_choices="yes")
    with pytest.raises(ValueError, match=r"psf must be 3D like the image, got shape \(9, 9\)"):
        Deconvolver(PSF, "wiener")(np.ones((4, 20, 20)))
    with pytest.raises(TypeError, match="callback must be a function or None"):
        Deconvolver(PSF, "wiener")(_images()[0], callback=3)


def test_frames_through_a_deconvolver_are_bit_for_bit_the_plain_ones():
    from psfkit.frames import deconvolve_frames

    stack = np.stack([np.zeros((64, 60), np.float32), *_images()])
    deconvolver = Deconvolver(PSF)
    kept = deconvolve_frames(stack, PSF, deconvolver=deconvolver, method="auto")
    plain = deconvolve_frames(stack, PSF, method="auto")
    np.testing.assert_array_equal(kept.result, plain.result)
    assert kept.reports[0]["parameters"] == plain.reports[0]["parameters"]
    # one image shape's blur operators, and the transfer function of auto's Tikhonov
    # candidates on their one extended grid
    kept = deconvolver.kept_operators()
    assert kept.pop((64, 60)) == ["blur", "convolver"]
    assert list(kept.values()) == [["otf"]]


def _field_map(shape=(80, 72)):
    """A blur growing across the field and the map fitted to it."""
    from psfkit import fit_kernel_map
    from psfkit.samples import field_blurred_pair

    pair = field_blurred_pair(shape, (1.2, 3.0), rng=0)
    return pair, fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=(3, 3))


@pytest.mark.parametrize("method, options", [
    ("auto", {}),
    ("richardson_lucy", {"iterations": 8}),
    ("wiener", {}),
])
def test_a_deconvolver_of_a_map_is_bit_for_bit_deconvolve_with_the_map(method, options):
    pair, psf_map = _field_map()
    deconvolver = Deconvolver(psf_map, method, **options)
    first, info = deconvolver(pair.blurred, return_info=True)
    again = deconvolver(pair.blurred)
    expected, expected_info = deconvolve(pair.blurred, psf_map, method, **options,
                                         return_info=True)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)
    assert info.parameters == expected_info.parameters
    # the iterative methods keep the map's varying blur operator for the image shape, auto
    # also the map's convolver its risk measures the model with
    kept = {"wiener": {}, "auto": {pair.blurred.shape: ["blur", "convolver"]}}.get(
        method, {pair.blurred.shape: ["blur"]})
    assert deconvolver.kept_operators() == kept


def test_frames_with_a_map_deconvolver_are_bit_for_bit_the_map_deconvolution():
    from psfkit.frames import deconvolve_frames

    pair, psf_map = _field_map((64, 60))
    stack = np.stack([pair.blurred, pair.blurred[::-1].copy()])
    kept = deconvolve_frames(stack, psf_map, deconvolver=Deconvolver(psf_map),
                             method="richardson_lucy", iterations=6)
    plain = deconvolve_frames(stack, psf_map, method="richardson_lucy", iterations=6)
    np.testing.assert_array_equal(kept.result, plain.result)
    # the first frame makes the choices the second repeats
    np.testing.assert_array_equal(kept.result[0], deconvolve(
        stack[0], psf_map, "richardson_lucy", iterations=6))


def test_a_map_deconvolver_refuses_another_image_shape_by_name():
    _, psf_map = _field_map((64, 60))
    with pytest.raises(ValueError, match=r"psf is a map of an image of shape \(64, 60\), "
                                         r"not of this image \(60, 64\)"):
        Deconvolver(psf_map)(np.ones((60, 64), np.float32))


def test_threads_sharing_one_deconvolver_get_what_each_image_alone_gives():
    # a dask worker's threads share one Deconvolver: four shapes race through a cache that
    # keeps two, each thread's result must be the single call's
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    shapes = [(40 + 4 * (k % 4), 44) for k in range(16)]
    images = [blurred_pair(PSF, shape, noise=0.01, rng=k).blurred
              for k, shape in enumerate(shapes)]
    deconvolver = Deconvolver(PSF, "richardson_lucy", iterations=5)
    deconvolver.operators.kept_shapes = 2
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(deconvolver, images))
    for image, result in zip(images, results, strict=True):
        np.testing.assert_array_equal(
            result, deconvolve(image, PSF, "richardson_lucy", iterations=5))
    assert len(deconvolver.kept_operators()) == 2
    copy = pickle.loads(pickle.dumps(deconvolver))  # as sent to a cluster's workers
    np.testing.assert_array_equal(copy(images[0]), results[0])
