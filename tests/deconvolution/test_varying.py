"""Deconvolution with a PSF map: the varying blur's adjoint, its reduction to the
invariant blur, its rows being the map's PSFs, the gain over a single PSF, and
``method="auto"``'s risk choice with a map."""

import numpy as np
import pytest

import psfkit
from psfkit import make_psf, samples
from psfkit.chunked import plan_chunked
from psfkit.deconvolution._varying import VaryingBlurOperator, VaryingConvolver, VaryingPsf
from psfkit.metrics import image_error
from psfkit.operators import BlurOperator, Convolver
from psfkit.psf_map import PsfMap, tile_centres, tiling


def _map(shape, grid, psfs):
    """A PsfMap of ``psfs`` (grid + PSF shape) on an even tiling of ``shape``."""
    return PsfMap(psfs=np.asarray(psfs, np.float32), shape=shape,
                  centres=tile_centres(tiling(shape, grid, 1.0), grid))


def _varying_2d(shape=(60, 70)):
    rng = np.random.default_rng(1)
    psfs = rng.random((2, 3, 7, 9)).astype(np.float32)  # asymmetric on purpose
    return _map(shape, (2, 3), psfs / psfs.sum(axis=(2, 3), keepdims=True))


def _operator(psf_map):
    return VaryingBlurOperator(VaryingPsf.of(psf_map, psf_map.shape), psf_map.shape)


@pytest.mark.parametrize("three_d", [False, True])
def test_varying_blur_adjoint_identity(three_d):
    if three_d:
        psfs = np.random.default_rng(2).random((1, 2, 2, 5, 7, 7))
        psf_map = _map((12, 30, 34), (1, 2, 2), psfs / psfs.sum(axis=(3, 4, 5), keepdims=True))
    else:
        psf_map = _varying_2d()
    operator = _operator(psf_map)
    rng = np.random.default_rng(0)
    x = operator.zeros()
    x[operator.object] = rng.random(operator.object_shape)
    y = operator.zeros()
    y[operator.valid] = rng.random(psf_map.shape)
    forward = np.sum(operator.apply(x)[operator.valid] * y[operator.valid], dtype=np.float64)
    backward = np.sum(x[operator.object] * operator.adjoint(y)[operator.object],
                      dtype=np.float64)
    assert abs(forward - backward) <= 1e-5 * abs(forward)


def test_a_map_with_one_tile_is_the_invariant_blur():
    psf = make_psf("gaussian", (9, 9), sigma=1.7)
    operator = _operator(_map((40, 50), (1, 1), psf[None, None]))
    invariant = BlurOperator(psf, (40, 50))
    x = invariant.zeros()
    x[invariant.object] = np.random.default_rng(0).random(invariant.object_shape)
    np.testing.assert_allclose(operator.apply(x)[operator.valid],
                               invariant.apply(x)[invariant.valid], atol=1e-6)


def test_each_image_pixel_sees_the_psf_of_the_map_there():
    psf_map = _varying_2d()
    operator = _operator(psf_map)
    for pixel in [(5, 3), (30, 35), (59, 69), (20, 50)]:
        probe = operator.zeros()
        probe[tuple(p + k - 1 for p, k in zip(pixel, operator.psf_shape, strict=True))] = 1
        row = operator.adjoint(probe)  # the row of H of that image pixel
        footprint = tuple(slice(p, p + k)
                          for p, k in zip(pixel, operator.psf_shape, strict=True))
        np.testing.assert_allclose(row[footprint][::-1, ::-1], psf_map.psf_at(pixel),
                                   atol=1e-6)


@pytest.mark.parametrize("method", ["richardson_lucy", "wiener"])
def test_deconvolving_with_a_constant_map_equals_the_single_psf(method, natural_pair):
    psf = natural_pair.kernel
    shape = natural_pair.blurred.shape
    one_tile = psfkit.deconvolve(natural_pair.blurred, _map(shape, (1, 1), psf[None, None]),
                                 method, iterations=20)
    constant = psfkit.deconvolve(natural_pair.blurred,
                                 _map(shape, (2, 2), np.broadcast_to(psf, (2, 2, *psf.shape))),
                                 method, iterations=20)
    single = psfkit.deconvolve(natural_pair.blurred, psf, method, iterations=20)
    scale = np.abs(single).max()
    # the same model on other FFT grids: float32 rounding over 20 iterations
    np.testing.assert_allclose(one_tile, single, atol=1e-4 * scale)
    assert np.abs(constant - single).max() <= 0.01 * scale


def _field_case(scene_kind="natural"):
    pair = samples.field_blurred_pair((160, 160), (1.2, 3.0), noise=0.005,
                                      scene_kind=scene_kind, rng=1)
    grid = (4, 4)
    centres = tile_centres(tiling((160, 160), grid, 1.0), grid)
    sigma = [[1.2 + 1.8 * (y / 159 + x / 159) / 2 for x in centres[1]] for y in centres[0]]
    psfs = [[make_psf("gaussian", (21, 21), sigma=s) for s in row] for row in sigma]
    psf_map = PsfMap(psfs=np.array(psfs), centres=centres, shape=(160, 160))
    return pair, psf_map


@pytest.mark.parametrize("method", ["auto", "richardson_lucy", "tikhonov"])
def test_the_map_beats_the_average_psf_against_the_truth(method):
    pair, psf_map = _field_case()
    average = psf_map.psfs.reshape(-1, 21, 21).mean(axis=0)

    def error(result):
        inner = (slice(10, -10),) * 2
        return float(np.sqrt(np.mean((result[inner] - pair.sharp[inner]) ** 2)))

    with_map = error(psfkit.deconvolve(pair.blurred, psf_map, method))
    with_average = error(psfkit.deconvolve(pair.blurred, average, method))
    assert with_map < 0.95 * with_average


def test_a_3d_map_deconvolves_and_a_map_of_another_image_is_refused():
    psf = make_psf("gaussian", (5, 7, 7), sigma=(1.5, 1.2, 1.2))
    wider = make_psf("gaussian", (5, 7, 7), sigma=(1.5, 2.0, 2.0))
    psf_map = _map((10, 32, 32), (1, 1, 2), np.stack([psf, wider])[None, None])
    volume = samples.blurred_pair(psf, (10, 32, 32), scene_kind="blobs", noise=0.01,
                                  shift=(0, 0, 0), rng=2).blurred
    result, info = psfkit.deconvolve(volume, psf_map, "richardson_lucy", return_info=True)
    assert result.shape == volume.shape and result.dtype == np.float32
    assert np.isfinite(result).all() and info.iterations >= 1
    with pytest.raises(ValueError, match=r"map of an image of shape \(10, 32, 32\)"):
        psfkit.deconvolve(volume[:, :30], psf_map)


def test_the_chunked_path_deconvolves_each_block_with_its_part_of_the_map():
    pair, psf_map = _field_case()
    whole, info = psfkit.deconvolve(pair.blurred, psf_map, "richardson_lucy",
                                    return_info=True)
    blocks = psfkit.deconvolve_chunked(pair.blurred, psf_map, chunks=80,
                                       scheduler="synchronous", **info.parameters)
    inner = (slice(10, -10),) * 2
    difference = np.abs(blocks[inner] - whole[inner]).max()
    assert difference <= 0.01 * np.abs(whole[inner]).max()
    stack = np.stack([pair.blurred, pair.blurred])  # a leading axis of frames
    frames = psfkit.deconvolve_chunked(stack, psf_map, chunks=(1, 80, 80),
                                       scheduler="synchronous", **info.parameters)
    np.testing.assert_allclose(frames[1], blocks, atol=1e-6)


def test_the_risk_models_the_map_blur_in_both_modes_and_on_a_cropped_part():
    # VaryingConvolver is H x̂ for auto's risk: one tile is the invariant Convolver, an
    # image pixel sees the map's PSF there, and the map cropped to a part of the image
    # blurs that part exactly as the whole map does
    psf = make_psf("gaussian", (9, 9), sigma=1.7)
    x = np.random.default_rng(0).random((60, 70)).astype(np.float32)
    one_tile = VaryingConvolver(VaryingPsf.of(_map((60, 70), (1, 1), psf[None, None]),
                                              (60, 70)), (60, 70))
    invariant = Convolver(psf, (60, 70))
    for mode in ("valid", "same"):
        np.testing.assert_allclose(one_tile.apply(x, mode), invariant.apply(x, mode),
                                   atol=1e-6)
    psf_map = _varying_2d()
    varying = VaryingPsf.of(psf_map, psf_map.shape)
    same = VaryingConvolver(varying, psf_map.shape).apply(x, "same")
    valid = VaryingConvolver(varying, psf_map.shape).apply(x, "valid")
    for y, x_ in [(10, 20), (30, 35), (52, 60)]:
        seen = x[y - 3:y + 4, x_ - 4:x_ + 5]
        expected = float(np.sum(seen * psf_map.psf_at((y, x_))[::-1, ::-1]))
        assert same[y, x_] == pytest.approx(expected, rel=1e-5)
        assert valid[y - 3, x_ - 4] == pytest.approx(expected, rel=1e-5)
    region = (slice(12, 50), slice(25, 70))
    part = VaryingConvolver(varying.cropped(region), (38, 45)).apply(x[region], "valid")
    np.testing.assert_allclose(part, valid[12:12 + 32, 25:25 + 37], atol=1e-6)


def _truth_errors(pair, psf_map, iterations):
    """The error against the truth of Richardson–Lucy with the map after each of
    ``iterations`` iterations (the path auto's stopping points are taken from)."""
    errors = []
    psfkit.deconvolve(pair.blurred, psf_map, "richardson_lucy", iterations=iterations,
                      callback=lambda step, total, current: errors.append(
                          image_error(current[INNER], pair.sharp[INNER])))
    return np.array(errors)


INNER = (slice(10, -10),) * 2


@pytest.mark.parametrize("scene_kind", ["natural", "stars"])
def test_auto_with_a_map_chooses_by_risk_as_well_as_the_truths_best_stopping_point(
        scene_kind):
    pair, psf_map = _field_case(scene_kind)
    result, info = psfkit.deconvolve(pair.blurred, psf_map, return_info=True)
    methods = {c.method for c in info.choice.candidates}
    assert methods == {"richardson_lucy", "rl_mix"}  # Tikhonov takes one PSF only
    assert len(info.choice.candidates) >= 8
    assert all(np.isfinite(c.risk) for c in info.choice.candidates)
    assert info.choice.winner == min(info.choice.candidates, key=lambda c: c.risk)
    assert info.method == info.choice.winner.method
    iterations, _ = info.choice.risks("richardson_lucy")
    errors = _truth_errors(pair, psf_map, 300)
    best_candidate = errors[iterations.astype(int) - 1].min()
    # within 3 % of the truth's best among the same stopping points (0.94 and 0.97 here),
    # and of the truth's best of all 300 iterations (0.99 and 1.00)
    assert image_error(result[INNER], pair.sharp[INNER]) <= 1.03 * best_candidate
    assert image_error(result[INNER], pair.sharp[INNER]) <= 1.03 * errors.min()


def test_auto_with_a_map_measured_on_a_central_part_runs_the_winner_on_the_whole(
        monkeypatch):
    from psfkit.deconvolution import _risk

    # a region of a quarter of the image: the risk is measured with the map's part there
    monkeypatch.setattr(_risk, "RISK_SEARCH_SAMPLES", 80 * 80)
    pair, psf_map = _field_case()
    result, info = psfkit.deconvolve(pair.blurred, psf_map, return_info=True)
    assert info.choice.region == ((40, 120), (40, 120))
    assert len(info.choice.candidates) >= 8
    assert all(np.isfinite(c.risk) for c in info.choice.candidates)
    again = psfkit.deconvolve(pair.blurred, psf_map, **info.parameters)
    np.testing.assert_array_equal(again, result)
    monkeypatch.undo()
    on_the_whole = psfkit.deconvolve(pair.blurred, psf_map)
    # 1.00 here: the quarter's choice is as good as the whole image's
    assert image_error(result[INNER], pair.sharp[INNER]) <= 1.1 * image_error(
        on_the_whole[INNER], pair.sharp[INNER])


def test_auto_with_a_map_in_blocks_reuses_the_one_choice_made_in_memory():
    pair, psf_map = _field_case()
    whole, info = psfkit.deconvolve(pair.blurred, psf_map, return_info=True)
    assert len(info.choice.candidates) >= 8  # a risk choice, made once for every block
    plan = plan_chunked(pair.blurred, psf_map, chunks=80)
    assert plan.parameters["method"] == info.method
    assert plan.parameters["iterations"] == info.parameters["iterations"]
    blocks = psfkit.deconvolve_chunked(pair.blurred, psf_map, chunks=80,
                                       scheduler="synchronous")
    difference = np.abs(blocks[INNER] - whole[INNER]).max()
    assert difference <= 0.01 * np.abs(whole[INNER]).max()


def test_a_3d_map_through_the_chunked_path_is_the_map_in_memory_and_beats_the_average():
    shape = (12, 64, 64)
    pair = samples.field_blurred_pair(shape, (1.0, 3.0), sigma_z=1.2, scene_kind="blobs",
                                      noise=0.005, rng=3)
    grid = (1, 2, 2)
    centres = tile_centres(tiling(shape, grid, 1.0), grid)
    psfs = [[make_psf("gaussian", (7, 17, 17), sigma=(1.2, s, s), pixel_integrated=True)
             for s in (pair.sigma[int(y), int(centres[2][0])], pair.sigma[int(y),
                                                                         int(centres[2][1])])]
            for y in centres[1]]
    psf_map = PsfMap(psfs=np.array(psfs)[None], centres=centres, shape=shape)
    whole = psfkit.deconvolve(pair.blurred, psf_map, "richardson_lucy", iterations=15)
    blocks = psfkit.deconvolve_chunked(pair.blurred, psf_map, "richardson_lucy",
                                       iterations=15, chunks=(12, 32, 32),
                                       scheduler="synchronous")
    inner = (slice(2, -2), slice(8, -8), slice(8, -8))
    assert np.abs(blocks[inner] - whole[inner]).max() <= 0.01 * np.abs(whole[inner]).max()
    average = psf_map.psfs.reshape(-1, *psf_map.psf_shape).mean(axis=0)
    with_average = psfkit.deconvolve(pair.blurred, average, "richardson_lucy", iterations=15)

    def error(result):
        return float(np.sqrt(np.mean((result[inner] - pair.sharp[inner]) ** 2)))

    # 0.94 here; the map flipped end to end does worse than the average (1.3)
    assert error(whole) < 0.96 * error(with_average)


def test_richardson_lucy_normalises_a_varying_blur_by_its_own_column_sums():
    # inside the image a varying blur's H^T 1 is not 1 (here 0.98-1.02); RL's
    # normalisation must divide by it there too, or the estimate drifts every iteration
    from psfkit.deconvolution._richardson_lucy import BoundaryWeights

    operator = _operator(_varying_2d())
    sensitivity = operator.sensitivity()
    interior = tuple(slice(k - 1, n) for n, k in zip(operator.image_shape,
                                                     operator.psf_shape, strict=True))
    assert np.abs(sensitivity[interior] - 1).max() > 0.01
    grid = operator.zeros()
    grid[operator.object] = 1
    BoundaryWeights(operator).apply(grid)
    seen = sensitivity[operator.object] > 1e-3 * sensitivity.max()
    np.testing.assert_allclose((grid[operator.object] * sensitivity[operator.object])[seen],
                               1.0, rtol=1e-5)
