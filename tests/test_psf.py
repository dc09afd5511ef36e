"""prepare_psf and average_beads against frames made from a known PSF."""

import warnings

import numpy as np
import pytest

from psfkit import (
    BeadAverage,
    PsfWarning,
    SaturationWarning,
    TruncationWarning,
    average_beads,
    convolve,
    make_psf,
    prepare_psf,
)
from psfkit.align import centroid
from psfkit.metrics import kernel_error
from psfkit.operators import fourier_shift
from psfkit.samples import bead_image, soft_disk
from psfkit.samples import point_source_frame as led_frame


@pytest.fixture(scope="module")
def led():
    truth = soft_disk(5.0)
    centre = np.array([38.3, 41.6])
    return led_frame(truth, centre), truth, centre


def assert_psf_contract(psf, centring=0.1):
    """Odd float32, nonnegative, unit sum; centroid on the middle pixel within the noise
    (a symmetric PSF is centred on its centre of symmetry, measured more precisely)."""
    assert psf.dtype == np.float32
    assert all(n % 2 == 1 for n in psf.shape)
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    offset = centroid(psf) - np.array(psf.shape) // 2
    assert np.max(np.abs(offset)) < centring


def test_led_frame_gives_the_true_kernel_within_ten_percent(led):
    image, truth, centre = led
    before = image.copy()
    psf, info = prepare_psf(image, return_info=True)
    assert_psf_contract(psf)
    assert kernel_error(psf, truth) < 0.10
    np.testing.assert_allclose(info.centre, centre, atol=0.05)
    assert info.hot_pixels == 3
    np.testing.assert_allclose(info.fwhm, 10.0, atol=1.0)  # a disk of radius 5
    assert 20 < info.snr < 200
    assert info.background == pytest.approx(120.0, abs=2.0)
    np.testing.assert_array_equal(image, before)  # input untouched


def test_hot_pixels_on_the_frame_edge_and_corner_are_found():
    truth = soft_disk(5.0)
    image = led_frame(truth, (14.4, 15.7), (29, 29), hot_pixels=((0, 5), (28, 28), (13, 0)), rng=4)
    psf, info = prepare_psf(image, return_info=True)
    assert info.hot_pixels == 3
    assert kernel_error(psf, truth) < 0.10


def test_by_hand_preparation_is_worse_than_prepare_psf(led):
    image, truth, _ = led
    peak = np.unravel_index(np.argmax(image), image.shape)  # a hot pixel, as it happens
    by_hand = image - np.median(image)
    assert kernel_error(prepare_psf(image), truth) < 0.5 * kernel_error(
        by_hand[tuple(slice(p - 9, p + 10) for p in peak)] / by_hand.sum(), truth)


@pytest.mark.parametrize("dtype", [np.uint16, np.float64, np.int32])
def test_integer_and_double_inputs_give_the_same_float32_psf(led, dtype):
    image, truth, _ = led
    psf = prepare_psf(np.round(image).clip(0).astype(dtype))
    assert_psf_contract(psf)
    assert kernel_error(psf, truth) < 0.10


def test_noise_free_source_is_centred_exactly_symmetric_or_not():
    symmetric = make_psf("gaussian", (21, 21), sigma=2.0)
    # a coma-like PSF: a core and a weaker lobe off to one side
    lobe = np.roll(make_psf("gaussian", (21, 21), sigma=(1.5, 3.0)), 4, axis=1)
    asymmetric = 0.7 * symmetric + 0.3 * lobe
    for truth in (symmetric, asymmetric / asymmetric.sum()):
        frame = led_frame(truth, (30.35, 29.8), (60, 60), flux=1e9, background=0,
                          read_noise=0, hot_pixels=(), rng=9)
        psf = prepare_psf(frame)
        assert_psf_contract(psf, centring=0.01)
        offset = centroid(truth) - np.array(truth.shape) // 2
        assert kernel_error(psf, fourier_shift(truth, -offset)) < 0.01


def test_requested_shape_is_returned_and_even_shapes_are_refused(led):
    image, _, _ = led
    assert prepare_psf(image, (31, 25)).shape == (31, 25)
    assert prepare_psf(image, 21).shape == (21, 21)
    with pytest.raises(ValueError, match="odd"):
        prepare_psf(image, (20, 21))


def test_centre_hint_picks_the_fainter_of_two_sources():
    truth = make_psf("gaussian", (15, 15), sigma=1.5)
    frame = (led_frame(truth, (20.2, 20.7), (64, 96), hot_pixels=(), rng=1)
             + led_frame(truth * 0.5, (40.6, 70.1), (64, 96), hot_pixels=(), background=0, rng=2))
    _, info = prepare_psf(frame, centre=(41, 69), return_info=True)
    np.testing.assert_allclose(info.centre, (40.6, 70.1), atol=0.08)
    with pytest.raises(ValueError, match="outside"):
        prepare_psf(frame, centre=(100, 5))


def test_saturated_source_warns(led):
    image, _, _ = led
    clipped = np.minimum(image, 700.0)
    with pytest.warns(SaturationWarning, match="saturated"):
        _, info = prepare_psf(clipped, return_info=True)
    assert info.saturated and info.warnings


def test_source_at_the_frame_edge_warns_truncated(led):
    image, _, _ = led
    with pytest.warns(TruncationWarning, match="frame edge"):
        psf = prepare_psf(image[:, 36:])
    assert_psf_contract(psf)


def test_clean_frame_issues_no_warning(led):
    image, _, _ = led
    with warnings.catch_warnings():
        warnings.simplefilter("error", PsfWarning)
        prepare_psf(image)


def test_pure_noise_and_bad_input_are_refused():
    noise = np.random.default_rng(3).normal(100, 5, (64, 64))
    with pytest.raises(ValueError, match="no point source"):
        prepare_psf(noise)
    with pytest.raises(ValueError, match="NaN"):
        prepare_psf(np.full((9, 9), np.nan))
    with pytest.raises(ValueError, match="2D or 3D"):
        prepare_psf(np.ones(9))
    with pytest.raises(TypeError):
        prepare_psf(np.ones((9, 9), dtype=complex))
    with pytest.raises(ValueError, match="background"):
        prepare_psf(noise, background="sky")


@pytest.mark.parametrize("background", ["constant", 120.0])
def test_constant_or_known_background(led, background):
    image, truth, _ = led
    psf, info = prepare_psf(image, background=background, return_info=True)
    assert info.background == pytest.approx(120.0, abs=2.0)
    assert kernel_error(psf, truth) < 0.10


def test_3d_bead_with_a_sloped_background():
    truth = make_psf("gaussian", (15, 13, 13), sigma=(2.0, 1.3, 1.3))
    image, centres = bead_image(truth, (32, 40, 40), count=1, peak_snr=60, rng=4)
    z, _, x = np.indices(image.shape)
    image = image + 0.5 * z + 0.3 * x  # a gradient the plane fit removes
    psf, info = prepare_psf(image, spacing=(0.3, 0.1, 0.1), return_info=True)
    assert_psf_contract(psf)
    assert kernel_error(psf, truth) < 0.08
    np.testing.assert_allclose(info.centre, centres[0], atol=0.1)
    np.testing.assert_allclose(info.fwhm_physical / info.fwhm, (0.3, 0.1, 0.1))


# -- average_beads -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def beads_2d():
    truth = make_psf("gaussian", (17, 17), sigma=1.6)
    image, centres = bead_image(truth, (200, 200), count=16, peak_snr=20, rng=5)
    return image, centres, truth


def matched_errors(result, centres):
    positions = result.beads["position"][result.beads["accepted"]]
    nearest = [np.argmin(np.linalg.norm(centres - p, axis=1)) for p in positions]
    return positions - centres[nearest]


@pytest.mark.parametrize("method, bound, precision", [("mean", 0.06, 0.06),
                                                      ("median", 0.08, 0.08)])
def test_averaged_beads_match_the_true_psf(beads_2d, method, bound, precision):
    image, centres, truth = beads_2d
    result = average_beads(image, method=method)
    assert isinstance(result, BeadAverage)
    assert_psf_contract(result.psf)
    assert kernel_error(result.psf, truth) < bound
    assert result.beads_used == len(centres) == 16
    assert np.sqrt(np.mean(matched_errors(result, centres) ** 2)) < precision
    np.testing.assert_allclose(result.fwhm, 2.3548 * 1.6, rtol=0.05)
    assert 0 < result.spread < 1


def test_bad_beads_are_rejected_with_a_reason_and_the_batch_goes_on(beads_2d):
    image, centres, truth = beads_2d
    image = image.copy()
    stamp = truth / truth.max() * 1000.0
    # a doublet (two beads 4 px apart), a bead cut by the frame edge, a saturated bead
    for centre in ((100, 4), (96, 150), (102, 150)):
        whole = np.array(centre)
        box = tuple(slice(max(c - 8, 0), c + 9) for c in whole)
        part = stamp[tuple(slice(8 - (c - b.start), 17) for c, b in zip(whole, box,
                                                                         strict=True))]
        image[box] += part[: image[box].shape[0], : image[box].shape[1]]
    free = [c for c in centres if np.max(np.abs(c - (99, 150))) > 25
            and np.max(np.abs(c - (100, 4))) > 20]
    bright = np.round(free[0]).astype(int)
    image[tuple(slice(c - 8, c + 9) for c in bright)] += stamp * 3
    image = np.minimum(image, 2500.0)
    result = average_beads(image, saturation=2500.0)
    reasons = dict(zip(map(tuple, np.round(result.beads["position"]).astype(int)),
                       result.beads["reason"], strict=True))
    by_place = {place: [r for p, r in reasons.items()
                        if np.max(np.abs(np.array(p) - place)) <= 3]
                for place in ((99, 150), (100, 4), tuple(bright))}
    assert by_place[(99, 150)] == ["overlap: two peaks in one spot"]
    assert by_place[(100, 4)] == ["edge"]
    assert by_place[tuple(bright)] == ["saturated"]
    assert result.beads_used >= len(centres) - 3
    assert kernel_error(result.psf, truth) < 0.07


def test_too_bright_too_faint_and_crowded_beads_are_rejected_with_their_reason(beads_2d):
    image, _, truth = beads_2d
    image = image.copy()
    stamp = truth / truth.max() * 1000.0  # one bead's peak above the background
    image[146:163, 147:164] += stamp * 2.5  # the bead at (154, 155), now 3.5 times brighter
    image[94:111, 53:70] -= stamp * 0.6  # the bead at (102, 61), now 0.4 times as bright
    image[12:29, 82:99] += stamp * 0.5  # a fainter source 11 px from the bead at (20, 79)
    for method in ("mean", "median"):
        result = average_beads(image, method=method)
        rejected = {tuple(p): r for p, r in zip(
            np.round(result.beads["position"]).astype(int).tolist(), result.beads["reason"],
            strict=True) if r != "accepted"}
        assert rejected == {(154, 155): "outlier: brighter than the others",
                            (102, 61): "outlier: fainter than the others",
                            (20, 90): "overlap: a neighbour enters the crop"}
        assert result.beads_used == 14
        assert kernel_error(result.psf, truth) < 0.05


def test_3d_anisotropic_beads():
    truth = make_psf("gaussian", (19, 13, 13), sigma=(2.0, 1.4, 1.4))
    image, centres = bead_image(truth, (40, 120, 120), count=10, peak_snr=20,
                                min_distance=26, rng=6)
    result = average_beads(image, spacing=(0.3, 0.1, 0.1))
    assert_psf_contract(result.psf)
    assert result.beads_used == len(centres)
    assert kernel_error(result.psf, truth) < 0.08
    assert np.sqrt(np.mean(matched_errors(result, centres) ** 2)) < 0.06
    np.testing.assert_allclose(result.spacing, (0.3, 0.1, 0.1))
    np.testing.assert_allclose(result.fwhm_physical, result.fwhm * (0.3, 0.1, 0.1))


def test_max_beads_keeps_the_brightest_and_says_why_the_others_were_left(beads_2d):
    image, _, truth = beads_2d
    result = average_beads(image, max_beads=6)
    assert result.beads_used == 6
    left = result.beads["reason"] == "not needed (max_beads)"
    assert left.sum() == 10
    assert result.beads["flux"][left].max() <= result.beads["flux"][result.beads["accepted"]].min()
    assert kernel_error(result.psf, truth) < 0.09


def test_callback_can_stop_early_and_still_returns_a_psf(beads_2d):
    image, _, _ = beads_2d
    calls = []

    def stop_after_five(step, total, current):
        calls.append((step, total))
        return step < 5

    result = average_beads(image, callback=stop_after_five)
    assert calls[-1][0] == 5 and calls[0][1] > 5
    assert 1 <= result.beads_used <= 5
    assert_psf_contract(result.psf)


def test_no_bead_and_bad_options_are_refused(beads_2d):
    noise = np.random.default_rng(7).normal(100, 5, (64, 64))
    with pytest.raises(ValueError, match="no bead"):
        average_beads(noise)
    with pytest.raises(ValueError, match="method"):
        average_beads(beads_2d[0], method="mode")
    with pytest.raises(ValueError, match="spacing"):
        average_beads(beads_2d[0], spacing=(0, 1))


def test_bead_size_correction_narrows_the_psf():
    truth = make_psf("gaussian", (17, 17), sigma=1.6)
    bead = make_psf("disk", (9, 9), radius=2.0)
    seen = convolve(truth, bead, mode="same")
    image, _ = bead_image(seen / seen.sum(), (160, 160), count=12, peak_snr=200, rng=8)
    plain = average_beads(image)
    corrected = average_beads(image, bead_diameter=4.0)
    assert kernel_error(corrected.psf, truth) < 0.5 * kernel_error(plain.psf, truth)
