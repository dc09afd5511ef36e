"""The shared checks of scalar arguments and results, and the exact rescaling."""

import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

import psfkit
import psfkit.samples
from psfkit._validate import (
    MAX_SPACING_RATIO,
    ORDINARY_MAGNITUDES,
    finite_result,
    flag,
    magnitude_exponent,
    matching_pair,
    per_axis_spacing,
    power_of_two_scale,
    real_number,
    rescaled,
    whole_number,
)


@pytest.mark.parametrize("value", [True, False, np.True_, np.False_])
def test_flag_accepts_python_and_numpy_bools(value):
    result = flag(value, "pixel_integrated")
    assert result is bool(value)


@pytest.mark.parametrize("value", ["no", "False", 0, 1.0, None])
def test_flag_refuses_anything_else_by_name(value):
    with pytest.raises(TypeError, match="pixel_integrated must be True or False, got"):
        flag(value, "pixel_integrated")


@pytest.mark.parametrize("value, expected", [(3, 3), (np.int64(7), 7), (0, 0)])
def test_whole_number_accepts_python_and_numpy_ints(value, expected):
    result = whole_number(value, "count")
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value, error, match", [
    (math.inf, TypeError, "count must be an int, got inf of type float"),
    (5.0, TypeError, "count must be an int, got 5.0"),
    (True, TypeError, "count must be an int, got True"),
    ("3", TypeError, "count must be an int"),
    (-1, ValueError, "count must be an int >= 0, got -1"),
])
def test_whole_number_refuses_what_is_not_a_count(value, error, match):
    with pytest.raises(error, match=match):
        whole_number(value, "count")


def test_real_number_checks_finiteness_sign_and_minimum():
    assert real_number(np.float32(2.5), "size") == 2.5
    assert real_number(0, "size", minimum=0.0) == 0.0
    with pytest.raises(ValueError, match="size must be a finite number, got nan"):
        real_number(math.nan, "size")
    with pytest.raises(ValueError, match=r"size must be positive, got 0\.0"):
        real_number(0.0, "size", positive=True)
    with pytest.raises(ValueError, match=r"size must be >= 1, got 0\.5"):
        real_number(0.5, "size", minimum=1.0)
    with pytest.raises(TypeError, match="size must be a number"):
        real_number(None, "size")


def test_ordinary_images_are_not_rescaled_and_extreme_ones_by_a_power_of_two():
    ordinary = np.array([0.0, 1e-3, 5e4], dtype=np.float32)
    same, scale = rescaled(ordinary)
    assert same is ordinary and scale == 1.0
    assert power_of_two_scale(np.zeros(3)) == 1.0
    tiny = np.array([1e-30, -3e-30], dtype=np.float32)
    scale = power_of_two_scale(tiny)
    assert scale == 2.0**-99 and 1 <= np.max(np.abs(tiny)) / scale < 2
    back, scale = rescaled(tiny)
    assert back.dtype == np.float32 and np.array_equal(back * np.float32(scale), tiny)


@dataclass
class _Result:
    value: float
    table: dict


def test_finite_result_names_the_first_non_finite_field():
    good = _Result(1.0, {"flux": np.array([1.0, 2.0]), "reason": np.array(["a", "b"])})
    assert finite_result(good, "f") is good
    bad = _Result(1.0, {"flux": np.array([1.0, np.nan])})
    with pytest.raises(ValueError, match=r"f computed a non-finite table\['flux'\]"):
        finite_result(bad, "f")
    assert finite_result(bad, "f", skip=("table",)) is bad
    with pytest.raises(ValueError, match="g computed a non-finite result"):
        finite_result(math.inf, "g")


def test_matching_pair_refuses_other_shapes_and_small_images():
    with pytest.raises(ValueError, match="sharp and blurred differ in shape"):
        matching_pair(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(ValueError, match=r"of shape \(8, 7\) are too small"):
        matching_pair(np.ones((8, 7)), np.ones((8, 7)))
    matching_pair(np.ones((8, 8, 3)), np.ones((8, 8, 3)), channels=True)


@pytest.mark.parametrize("largest", [2.0**30, 2.0**30 * (1 - 2**-52), 3e30, 1e-30, 2.0**-60])
def test_one_exponent_rule_serves_both_rescaling_ranges(largest):
    array = np.array([0.0, -largest / 2, largest])
    exponent = math.frexp(largest)[1]
    assert 2.0 ** (exponent - 1) <= largest < 2.0**exponent
    assert magnitude_exponent(array, (2.0**-40, 2.0**40)) == (
        0 if 2.0**-40 <= largest <= 2.0**40 else exponent)
    assert magnitude_exponent(array, ORDINARY_MAGNITUDES) == exponent  # all outside 2**±20
    assert power_of_two_scale(array) == 2.0 ** (exponent - 1)
    assert magnitude_exponent(np.zeros(3), ORDINARY_MAGNITUDES) == 0


def test_whole_number_names_its_upper_bound_and_why():
    with pytest.raises(ValueError, match=r"n must be an int <= 10, got 11 \(the reason\)"):
        whole_number(11, "n", minimum=1, maximum=10, why=" (the reason)")
    assert whole_number(10, "n", minimum=1, maximum=10) == 10


@pytest.mark.parametrize("spacing", [(1e-300, 1e300), (1.0, 1e7), (1e-10, 1e-3)])
def test_a_spacing_anisotropic_beyond_any_voxel_is_refused_by_name(spacing):
    with pytest.raises(ValueError, match=re.escape(f"spacing {spacing} differs by a factor")):
        per_axis_spacing(spacing, 2)
    assert per_axis_spacing((1e-300, 1e-300 * MAX_SPACING_RATIO), 2)[0] == 1e-300


def test_fit_kernel_with_an_absurdly_anisotropic_spacing_is_refused_not_an_overflow():
    psf = psfkit.make_psf("gaussian", (9, 9), sigma=1.5)
    pair = psfkit.samples.blurred_pair(psf, (64, 64))
    for isotropic in (True, False):
        with pytest.raises(ValueError, match=r"spacing .* differs by a factor of 1e600"):
            psfkit.fit_kernel(pair.sharp, pair.blurred, "gaussian", spacing=(1e-300, 1e300),
                              isotropic=isotropic)
