"""The PSF map (interpolation between tiles, cropping) and the map estimators: kernels per
tile, a fitted model's smoothed parameter field, and PSFs per region from beads."""

import numpy as np
import pytest

import psfkit
from psfkit import make_psf, samples
from psfkit.maps import model_parameters, robust_field, smooth_quantities
from psfkit.point_source import fwhm
from psfkit.psf_map import PsfMap, hat_weights, tiling


def _two_tile_map():
    narrow = make_psf("gaussian", (15, 15), sigma=1.0)
    wide = make_psf("gaussian", (15, 15), sigma=3.0)
    psfs = np.stack([narrow, wide])[None]  # grid (1, 2)
    return PsfMap(psfs=psfs, centres=(np.array([50.0]), np.array([20.0, 80.0])),
                  shape=(100, 100)), narrow, wide


def test_hat_weights_are_a_partition_of_unity_constant_beyond_the_ends():
    weights = hat_weights([10.0, 20.0, 40.0], np.arange(0, 50))
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)
    assert weights[0, 5] == 1.0 and weights[2, 45] == 1.0
    np.testing.assert_allclose(weights[:, 30], [0.0, 0.5, 0.5])


def test_psf_at_is_the_tile_psf_at_its_centre_and_the_mean_halfway():
    psf_map, narrow, wide = _two_tile_map()
    np.testing.assert_allclose(psf_map.psf_at((50, 20)), narrow, atol=1e-7)
    np.testing.assert_allclose(psf_map.psf_at((0, 99)), wide, atol=1e-7)
    np.testing.assert_allclose(psf_map.psf_at((50, 50)), 0.5 * (narrow + wide), atol=1e-7)
    assert psf_map.psf_at((10, 35)).sum() == pytest.approx(1.0, abs=1e-6)


def test_tile_weights_sum_to_one_and_cropping_keeps_the_psfs_in_place():
    psf_map, narrow, _ = _two_tile_map()
    np.testing.assert_allclose(psf_map.weights(0) + psf_map.weights(1), 1.0)
    part = psf_map.cropped((slice(40, 60), slice(10, 60)))
    assert part.shape == (20, 50)
    np.testing.assert_allclose(part.psf_at((10, 10)), narrow, atol=1e-7)


def test_the_mosaic_draws_each_tile_psf_at_its_centre_pixel_and_cuts_it_at_the_border():
    psf_map, narrow, wide = _two_tile_map()
    mosaic = psf_map.mosaic()
    assert mosaic.shape == (100, 100) and mosaic.dtype == np.float32
    np.testing.assert_array_equal(mosaic[43:58, 13:28], narrow)  # centre (50, 20)
    np.testing.assert_array_equal(mosaic[43:58, 73:88], wide)  # centre (50, 80)
    assert mosaic.sum() == pytest.approx(2.0, rel=1e-6)
    edge = PsfMap(psfs=narrow[None, None], centres=(np.array([1.5]), np.array([98.0])),
                  shape=(100, 100))  # nearest pixel (2, 98), rounding .5 up
    np.testing.assert_array_equal(edge.mosaic()[:10, 91:], narrow[5:, :9])


def test_parameter_maps_interpolate_measured_widths_and_sample_a_fitted_field():
    psf_map, narrow, wide = _two_tile_map()
    maps = psf_map.parameter_maps(samples=10)
    assert maps.step == (100, 10) and maps.origin == (49.5, 0.0)
    width = maps.values["fwhm_x"]
    assert width.shape == (1, 10)
    narrow_width, wide_width = fwhm(narrow)[1], fwhm(wide)[1]
    assert 2.3 < narrow_width < 2.5 and 7.0 < wide_width < 7.2  # about 2.355 σ
    assert width[0, 0] == pytest.approx(narrow_width, rel=1e-6)  # x = 0, before 20
    assert width[0, 5] == pytest.approx(0.5 * (narrow_width + wide_width), rel=1e-6)  # x 50
    assert width[0, 9] == pytest.approx(wide_width, rel=1e-6)  # x = 90, beyond 80
    pair = samples.field_blurred_pair((128, 128), (1.2, 2.4), rng=2)
    fitted = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=(2, 2))
    sigma = fitted.parameter_maps(samples=16).values["sigma"]
    assert sigma.shape == (16, 16)
    assert sigma[3, 11] == pytest.approx(fitted.params_at((24, 88))["sigma"], rel=1e-6)
    with pytest.raises(TypeError, match="samples"):
        fitted.parameter_maps(samples=2.5)


def test_params_at_of_a_measured_map_and_a_bad_position_are_refused_by_name():
    psf_map, _, _ = _two_tile_map()
    with pytest.raises(ValueError, match="params_at needs a map of a fitted model"):
        psf_map.params_at((0, 0))
    with pytest.raises(ValueError, match="position must have 2 coordinates"):
        psf_map.psf_at((1, 2, 3))


def test_tiles_overlap_and_cover_the_image():
    tiles = tiling((100, 90), (3, 2), overlap=1.5)
    covered = np.zeros((100, 90), bool)
    for tile in tiles:
        covered[tile.region] = True
    assert covered.all()
    assert tiles[0].region[0] == slice(0, 50) and tiles[-1].region[0] == slice(50, 100)


def test_robust_field_ignores_an_outlier_tile():
    points = np.stack(np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij"), -1)
    design = np.column_stack([np.ones(16), points.reshape(-1, 2)])
    values = 1.0 + 0.5 * points[..., 0].ravel() - 0.25 * points[..., 1].ravel()
    spoiled = values.copy()
    spoiled[5] += 10
    coefficients, kept = robust_field(design[:, None, :], spoiled[:, None],
                                      np.ones((16, 1, 1)), np.ones(16, bool))
    np.testing.assert_allclose(coefficients, [1.0, 0.5, -0.25], atol=1e-9)
    assert not kept[5] and kept.sum() == 15


def test_robust_field_weighs_each_tile_by_its_information_and_drops_an_outlier_tile():
    # two quantities measured jointly; each tile determines one combination of them well
    # (standard error 0.01) and the other one poorly (10)
    rng = np.random.default_rng(3)
    truth = np.array([2.0, -1.0])
    directions = rng.normal(size=(12, 2))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    informations = np.array([1e4 * np.outer(d, d) + 1e-2 * np.eye(2) for d in directions])
    measured = truth + np.array([np.linalg.cholesky(np.linalg.inv(f)) @ rng.normal(size=2)
                                 for f in informations])
    measured[4] += 1.0 * directions[4]  # an outlier where the tile sees well
    targets = np.einsum("tij,tj->ti", informations, measured)
    coefficients, kept = robust_field(informations, targets, informations,
                                      np.ones(12, bool))
    assert np.abs(coefficients - truth).max() < 0.05
    assert np.abs(np.delete(measured, 4, axis=0).mean(axis=0) - truth).max() > 1.0
    assert not kept[4] and kept.sum() >= 10


def test_kernel_map_of_a_uniform_blur_recovers_the_kernel_in_every_tile():
    kernel = make_psf("gaussian", (11, 11), sigma=1.5)
    pair = samples.blurred_pair(kernel, (192, 192), noise=0.005, rng=3)
    psf_map = psfkit.estimate_kernel_map(pair.sharp, pair.blurred, grid=(2, 2), shape=11)
    assert psf_map.grid == (2, 2) and psf_map.shape == (192, 192)
    assert psf_map.diagnostics["reliable"].all()
    for tile_psf in psf_map.tile_psfs():
        assert np.abs(tile_psf - kernel).sum() < 0.15
    assert np.all(psf_map.diagnostics["residual_ratio"] < 1.5)


def test_a_flat_tile_is_flagged_and_filled_from_its_neighbours():
    kernel = make_psf("gaussian", (9, 9), sigma=1.2)
    pair = samples.blurred_pair(kernel, (192, 192), noise=0.005, rng=4)
    sharp, blurred = pair.sharp.copy(), pair.blurred.copy()
    rng = np.random.default_rng(0)
    sharp[:96, :96] = 0.5  # no texture: nothing constrains a kernel there
    blurred[:96, :96] = 0.5 + rng.normal(0, 0.005, (96, 96))
    psf_map = psfkit.estimate_kernel_map(sharp, blurred, grid=(2, 2), shape=9,
                                          overlap=1.0)
    assert not psf_map.diagnostics["reliable"][0, 0]
    assert psf_map.diagnostics["filled"].sum() == 1
    neighbours = np.mean([psf_map.psfs[0, 1], psf_map.psfs[1, 0], psf_map.psfs[1, 1]], 0)
    np.testing.assert_allclose(psf_map.psfs[0, 0], neighbours / neighbours.sum(), atol=1e-6)


def test_fit_kernel_map_recovers_a_field_dependent_sigma_within_ten_percent():
    pair = samples.field_blurred_pair((256, 256), (1.2, 3.0), rng=0)
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=(4, 4))
    estimate = np.array([[psf_map.params_at((y, x))["sigma"] for x in range(0, 256, 8)]
                         for y in range(0, 256, 8)])
    relative = estimate / pair.sigma[::8, ::8] - 1
    assert np.sqrt(np.mean(relative**2)) < 0.05
    assert np.abs(relative).max() < 0.15
    at_centre = psf_map.psf_at((128, 128))
    expected = make_psf("gaussian", at_centre.shape,
                        sigma=psf_map.params_at((128, 128))["sigma"])
    np.testing.assert_allclose(at_centre, expected, atol=1e-7)


def test_fit_kernel_map_refuses_auto_and_a_wrong_grid():
    pair = samples.blurred_pair(make_psf("gaussian", (9, 9), sigma=1.2), (64, 64))
    with pytest.raises(ValueError, match="one model name for the whole field"):
        psfkit.fit_kernel_map(pair.sharp, pair.blurred, "auto")
    with pytest.raises(ValueError, match="grid must have 2 entries"):
        psfkit.estimate_kernel_map(pair.sharp, pair.blurred, grid=(2, 2, 2))
    with pytest.raises(TypeError, match="grid must be an int"):
        psfkit.estimate_kernel_map(pair.sharp, pair.blurred, grid=(2, 1.5))


def _bead_halves(rng=0):
    """Beads imaged through a narrow PSF on the left half and a wide one on the right."""
    narrow = make_psf("gaussian", (15, 15), sigma=1.2)
    wide = make_psf("gaussian", (15, 15), sigma=2.2)
    left, _ = samples.bead_image(narrow, (128, 96), count=8, peak_snr=40, rng=rng)
    right, _ = samples.bead_image(wide, (128, 96), count=8, peak_snr=40, rng=rng + 1)
    return np.concatenate([left, right], axis=1)


def test_average_beads_with_a_grid_gives_a_psf_per_region():
    image = _bead_halves()
    psf_map = psfkit.average_beads(image, grid=(1, 2), shape=15)
    assert isinstance(psf_map, PsfMap) and psf_map.grid == (1, 2)
    assert np.all(psf_map.diagnostics["beads_used"] >= 3)
    assert np.all(np.isfinite(psf_map.diagnostics["spread"]))
    widths = psf_map.diagnostics["fwhm"].mean(axis=-1).ravel()
    assert widths[0] < 3.4 < widths[1]  # FWHM 2.8 and 5.2 px for sigma 1.2 and 2.2


def test_a_region_without_beads_is_filled_from_its_neighbour():
    image = _bead_halves()
    image[:, 40:] = np.random.default_rng(0).normal(100, 25, (128, 152))  # no beads
    psf_map = psfkit.average_beads(image, grid=(1, 2), shape=15)
    assert psf_map.diagnostics["beads_used"][0, 1] == 0
    assert psf_map.diagnostics["filled"].tolist() == [[False, True]]
    np.testing.assert_allclose(psf_map.psfs[0, 1], psf_map.psfs[0, 0], atol=1e-7)


@pytest.fixture(scope="module")
def small_field():
    return samples.field_blurred_pair((128, 128), (1.0, 2.5), noise=0.01, rng=0)


def _map_runs(field):
    """Each map estimator on a 2 × 2 grid, as ``run(callback) -> PsfMap``, with the
    diagnostic that marks a tile without a result (infinite residual, or no bead)."""
    beads = np.tile(_bead_halves()[:, :96], (1, 2))
    return {
        "estimate_kernel_map": (lambda callback: psfkit.estimate_kernel_map(
            field.sharp, field.blurred, (2, 2), 13, callback=callback),
            lambda m: np.isinf(m.diagnostics["residual_ratio"])),
        "fit_kernel_map": (lambda callback: psfkit.fit_kernel_map(
            field.sharp, field.blurred, "gaussian", (2, 2), callback=callback),
            lambda m: np.isinf(m.diagnostics["residual_ratio"])),
        "average_beads": (lambda callback: psfkit.average_beads(
            beads, grid=(2, 2), shape=15, callback=callback),
            lambda m: m.diagnostics["beads_used"] == 0),
    }


@pytest.mark.parametrize("estimator", ["estimate_kernel_map", "fit_kernel_map",
                                       "average_beads"])
def test_a_map_estimator_reports_increasing_fractions_over_all_tiles(small_field, estimator):
    run, unreached = _map_runs(small_field)[estimator]
    calls = []
    psf_map = run(lambda step, total, current=None: calls.append((step, total)))
    fractions = [step / total for step, total in calls]
    assert np.all(np.diff(fractions) >= 0)
    assert calls[-1] == (400, 400)  # 100 steps per tile, every tile finished
    assert len(calls) > 4  # the tiles' own steps come through, not only their ends
    assert not unreached(psf_map).any()


@pytest.mark.parametrize("estimator", ["estimate_kernel_map", "fit_kernel_map",
                                       "average_beads"])
def test_a_callback_that_stops_leaves_the_tiles_after_it_unreached(small_field, estimator):
    run, unreached = _map_runs(small_field)[estimator]
    calls = []

    def stop_after_the_first_tile(step, total, current=None):
        calls.append(step)
        return step < 100

    psf_map = run(stop_after_the_first_tile)
    assert calls[-1] == 100  # nothing reported after the stop
    assert unreached(psf_map).ravel().tolist() == [False, True, True, True]
    assert np.all(np.isfinite(psf_map.psfs))


def test_elliptical_parameters_survive_the_moment_form_of_the_smoothing():
    params = dict(sigma_y=1.3, sigma_x=2.2, angle=2.5)
    quantities = smooth_quantities("elliptical_gaussian", params)
    recovered = model_parameters("elliptical_gaussian", quantities, {})
    assert recovered == pytest.approx(params, abs=1e-12)


def _astigmatism_errors(psf_map, pair, first: int) -> tuple[float, float]:
    """RMS errors of the map's ellipticity ``1 - minor/major`` and of its angle (degrees,
    where the true ellipticity is above 0.1) on a lattice of 16-px steps from ``first``."""
    ellipticity_errors, angle_errors = [], []
    size = pair.sigma.shape[0]
    for position in [(y, x) for y in range(first, size, 16) for x in range(first, size, 16)]:
        params = psf_map.params_at(position)
        truth = 1 - pair.sigma[position] / pair.sigma_major[position]
        ellipticity_errors.append(1 - params["sigma_y"] / params["sigma_x"] - truth)
        if truth > 0.1:
            difference = params["angle"] - pair.angle[position]
            angle_errors.append(np.mod(difference + np.pi / 2, np.pi) - np.pi / 2)
    return (float(np.sqrt(np.mean(np.square(ellipticity_errors)))),
            float(np.degrees(np.sqrt(np.mean(np.square(angle_errors))))))


def test_fit_kernel_map_recovers_field_dependent_astigmatism():
    pair = samples.field_blurred_pair((192, 192), (1.0, 3.5), astigmatism=2.5,
                                      scene_kind="blobs", rng=1)
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "elliptical_gaussian",
                                    grid=(4, 4))
    ellipticity, angle = _astigmatism_errors(psf_map, pair, first=8)
    assert ellipticity < 0.06
    assert angle < 10


def test_fit_kernel_map_recovers_astigmatism_under_the_oriented_detail_of_a_photo():
    # the camera photo's tiles hold edges along a few directions, under an astigmatism
    # that turns across each tile: a tile's ellipse is the information-weighted mean of
    # the field's moments, not their value at one point (7.8° and 0.042 when the tiles'
    # moments were taken as the field at their texture centres)
    pair = samples.field_blurred_pair((192, 192), (1.0, 3.5), astigmatism=2.5,
                                      scene_kind="natural", rng=1)
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "elliptical_gaussian",
                                    grid=(4, 4), pixel_integrated=True)
    ellipticity, angle = _astigmatism_errors(psf_map, pair, first=0)
    assert ellipticity < 0.02
    assert angle < 4


def test_fit_kernel_map_keeps_the_direction_of_a_motion_blur_in_every_corner():
    # a direction is smoothed as the unit vector (cos 2θ, sin 2θ), whose length no tile
    # measures: it must not shrink through zero between tiles and turn the angle by 90°
    psf = psfkit.make_psf("motion", (25, 25), length=9.0, angle=0.6)
    pair = samples.blurred_pair(psf, (192, 192), noise=0.01, rng=2)
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "motion", grid=(3, 3))
    for position in [(0, 0), (0, 191), (96, 96), (191, 0), (191, 191)]:
        params = psf_map.params_at(position)
        assert params["angle"] == pytest.approx(0.6, abs=0.02)
        assert params["length"] == pytest.approx(9.0, rel=0.02)


def test_fit_kernel_map_in_3d_recovers_the_lateral_sigma_across_the_field_and_sigma_z():
    # 20 planes: the kernel holds 9 of them (2.7 sigma_z each side), so sigma_z is unbiased
    pair = samples.field_blurred_pair((20, 96, 96), (1.2, 2.8), sigma_z=1.5,
                                      scene_kind="blobs", noise=0.005, rng=0)
    psf_map = psfkit.fit_kernel_map(pair.sharp, pair.blurred, "gaussian", grid=(3, 3),
                                    pixel_integrated=True)
    assert psf_map.grid == (1, 3, 3) and psf_map.psf_shape[0] == 9
    lateral, axial = [], []
    for y, x in [(y, x) for y in range(4, 96, 8) for x in range(4, 96, 8)]:
        sigma_z, sigma_y, sigma_x = psf_map.params_at((10, y, x))["sigma"]
        lateral += [sigma_y / pair.sigma[y, x] - 1, sigma_x / pair.sigma[y, x] - 1]
        axial.append(sigma_z / 1.5 - 1)
    assert np.sqrt(np.mean(np.square(lateral))) < 0.04
    assert np.abs(axial).max() < 0.06
