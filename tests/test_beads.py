"""average_beads against images of many beads made from a known PSF."""

import numpy as np
import pytest

from _psf_contract import assert_psf_contract
from psfkit import BeadAverage, average_beads, convolve, make_psf
from psfkit.metrics import kernel_error
from psfkit.optics import widefield_psf
from psfkit.point_source import significance
from psfkit.samples import bead_image


@pytest.fixture(scope="module")
def beads_2d():
    # a camera pixel collects the light of a bead's PSF over its area
    truth = make_psf("gaussian", (17, 17), sigma=1.6, pixel_integrated=True)
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
    unknown = average_beads(image)
    assert unknown.fwhm_physical is None  # no spacing given: no physical size
    np.testing.assert_allclose(unknown.fwhm, result.fwhm)


@pytest.mark.parametrize("photons", [2000.0, 20000.0])
def test_3d_widefield_beads_are_used_despite_their_rings_and_defocused_light(photons):
    # before: every bead rejected as "two peaks in one spot" (the noise on its defocused
    # planes made dozens of local maxima) and ~40 noise "beads" along the frame's faces
    truth = widefield_psf((31, 65, 65), (0.1, 0.065, 0.065), numerical_aperture=1.2,
                          wavelength=0.52, immersion_index=1.33, theory="scalar")
    light = np.zeros((31, 96, 288))
    for k in range(3):
        light[:, 15:80, 96 * k + 15:96 * k + 80] = truth
    image = np.random.default_rng(3).poisson(light * (photons / truth.max()) + 20.0)
    result = average_beads(image.astype(np.float32), shape=(31, 41, 41))
    assert list(result.beads["reason"]) == ["accepted"] * 3
    core = truth[:, 12:53, 12:53] / truth[:, 12:53, 12:53].sum()
    assert kernel_error(result.psf, core) < 0.05


def test_white_noise_is_as_rarely_significant_on_the_frame_edges_as_inside_for_detection():
    # smoothing with the edge pixels repeated leaves more noise there (1.4 times on a face,
    # 2.7 times in a 3D corner): before, 5 % of the edge voxels were 3 sigmas up
    z = significance(np.random.default_rng(0).standard_normal((40, 120, 120)), 1.0,
                     even_edges=True)
    inside = np.zeros(z.shape, dtype=bool)
    inside[2:-2, 2:-2, 2:-2] = True
    for part in (inside, ~inside):
        assert np.std(z[part]) == pytest.approx(1.0, abs=0.02)
        assert np.mean(z[part] > 3.0) < 0.003


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


# -- hardening (issue 17) -------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_beads": -1}, ValueError, "max_beads must be an int >= 1, got -1"),
    ({"max_beads": 0}, ValueError, "max_beads must be an int >= 1, got 0"),
    ({"max_beads": 2.5}, TypeError, "max_beads must be an int"),
    ({"threshold": np.nan}, ValueError, "threshold must be a finite number"),
    ({"bead_diameter": np.inf}, ValueError, "bead_diameter must be a finite number"),
    ({"background": np.inf}, ValueError, "background must be a finite number"),
])
def test_bad_counts_and_sizes_are_refused_by_name(beads_2d, kwargs, error, match):
    # max_beads=-1 used to average all beads but one; 0 failed in np.stack with no name
    with pytest.raises(error, match=match):
        average_beads(beads_2d[0], **kwargs)


@pytest.mark.parametrize("factor", [1e-30, 1e30])
def test_average_beads_is_scale_invariant_at_extreme_magnitudes(beads_2d, factor):
    image = beads_2d[0].astype(np.float32)
    plain = average_beads(image)
    scaled = average_beads(image * np.float32(factor))
    assert scaled.beads_used == plain.beads_used
    assert np.max(np.abs(scaled.psf - plain.psf)) < 1e-4 * plain.psf.max()
    assert scaled.noise_sigma == pytest.approx(plain.noise_sigma * factor, rel=1e-5)
    assert scaled.background == pytest.approx(plain.background * factor, rel=1e-5)
    used = plain.beads["accepted"]
    assert np.allclose(scaled.beads["flux"][used], plain.beads["flux"][used] * factor,
                       rtol=1e-4)


def test_a_lone_bead_at_the_edge_is_refused_with_the_reason():
    frame, _ = bead_image(make_psf("gaussian", (15, 15), sigma=2.0), (48, 48), count=1)
    with pytest.raises(ValueError, match=r"no usable bead among 1 detected: \{'edge': 1\}"):
        average_beads(frame[:, 20:])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"shape": np.inf}, TypeError, "shape must be an int, got inf"),
    ({"callback": 5}, TypeError, "callback must be a function or None, got 5"),
])
def test_bead_shape_and_callback_are_checked_by_name(beads_2d, kwargs, error, match):
    with pytest.raises(error, match=match):
        average_beads(beads_2d[0], **kwargs)


def test_a_bead_diameter_larger_than_the_psf_is_refused_by_name(beads_2d):
    # 1e300 used to overflow (OverflowError) while drawing the ball
    with pytest.raises(ValueError, match="bead_diameter 1e\\+300 is larger than the averaged"):
        average_beads(beads_2d[0], bead_diameter=1e300)


def _identical_beads_on_pixel_centres(psf, peak):
    """A noiseless image of 16 copies of ``psf`` centred on whole pixels, on a background."""
    image = np.full((160, 160), 10.0, np.float32)
    half = psf.shape[0] // 2
    for y in range(20, 160, 40):
        for x in range(20, 160, 40):
            image[y - half:y + half + 1, x - half:x + half + 1] += peak * psf / psf.max()
    return image


def test_a_noiseless_image_of_identical_beads_is_not_taken_for_saturated():
    # every bead's peak equals the image maximum, but no two maxima touch: not a clipped top
    truth = make_psf("gaussian", (15, 15), sigma=1.5)
    result = average_beads(_identical_beads_on_pixel_centres(truth, 1000.0), shape=15)
    assert result.beads_used == 16
    assert kernel_error(result.psf, truth) < 1e-3


def test_clipped_beads_are_found_saturated_and_the_error_says_how_to_override():
    truth = make_psf("gaussian", (15, 15), sigma=1.5)
    clipped = np.minimum(_identical_beads_on_pixel_centres(truth, 1000.0), 600.0)
    with pytest.raises(ValueError, match=r"\{'saturated': 16\}.*pass saturation="):
        average_beads(clipped, shape=15)
