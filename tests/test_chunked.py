"""Chunked deconvolution: blocks with overlap give the in-memory result, without seams,
on a dask.distributed cluster as on the default scheduler."""

import re

import numpy as np
import pytest

import psfkit
from psfkit.chunked import (
    ChunkPlan,
    deconvolve_chunked,
    default_depth,
    plan_chunked,
    psf_support,
)
from psfkit.metrics import block_border_mask
from psfkit.models import make_psf
from psfkit.samples import blurred_pair

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def _case(ndim):
    if ndim == 2:
        psf = make_psf("gaussian", (15, 15), sigma=2.0)
        pair = blurred_pair(psf, (200, 180), noise=0.01)
        chunks = (100, 90)
    else:
        psf = make_psf("gaussian", (7, 9, 9), sigma=(1.2, 1.0, 1.0))
        pair = blurred_pair(psf, (32, 64, 60), scene_kind="blobs", noise=0.01,
                            shift=(0, 0, 0))
        chunks = (16, 32, 30)
    return psf, pair, chunks


def _relative(result, reference):
    return float(np.linalg.norm(result - reference) / np.linalg.norm(reference))


def _seam_rms(result, reference, chunks):
    near_cuts = block_border_mask(reference.shape, chunks)
    return float(np.sqrt(np.mean((result - reference)[near_cuts] ** 2)))


def test_chunked_auto_matches_in_memory_on_a_distributed_cluster(client):
    psf, pair, chunks = _case(2)
    plan = plan_chunked(pair.blurred, psf, chunks=chunks)
    blocks = deconvolve_chunked(da.from_array(pair.blurred, chunks=chunks), psf, plan=plan,
                                scheduler=client)
    assert blocks.shape == pair.blurred.shape and blocks.dtype == np.float32
    # what the user would get in memory, with the same request (method="auto")
    whole = psfkit.deconvolve(pair.blurred, psf)
    assert _relative(blocks, whole) < 0.01
    # no seams: along the cuts the difference stays well below the noise
    assert _seam_rms(blocks, whole, chunks) < 0.5 * pair.noise_sigma


def test_chunked_volume_matches_in_memory_on_a_distributed_cluster(client):
    psf, pair, chunks = _case(3)
    options = dict(method="richardson_lucy", iterations=15)
    whole = psfkit.deconvolve(pair.blurred, psf, **options)
    blocks = deconvolve_chunked(da.from_array(pair.blurred, chunks=chunks), psf,
                                scheduler=client, **options)
    assert blocks.shape == pair.blurred.shape and blocks.dtype == np.float32
    assert _relative(blocks, whole) < 0.01
    assert _seam_rms(blocks, whole, chunks) < 0.5 * pair.noise_sigma


def test_plain_richardson_lucy_blocks_agree_to_float_precision_away_from_borders():
    psf, pair, chunks = _case(2)
    options = dict(method="richardson_lucy", acceleration=None, iterations=20)
    whole = psfkit.deconvolve(pair.blurred, psf, **options)
    blocks = deconvolve_chunked(pair.blurred, psf, chunks=chunks, depth=24,
                                scheduler="synchronous", **options)
    assert np.abs(blocks - whole).max() < 1e-3 * np.ptp(whole)


@pytest.mark.parametrize("method", ["wiener", "tikhonov"])
def test_direct_methods_chunked_within_one_percent(method):
    psf, pair, chunks = _case(2)
    whole = psfkit.deconvolve(pair.blurred, psf, method)
    blocks = deconvolve_chunked(pair.blurred, psf, method, chunks=chunks)
    assert np.linalg.norm(blocks - whole) / np.linalg.norm(whole) < 0.01


def test_automatic_choices_are_made_once_for_all_blocks():
    psf, pair, chunks = _case(2)
    plan = plan_chunked(pair.blurred, psf, chunks=chunks)
    _, info = psfkit.deconvolve(pair.blurred, psf, return_info=True)
    assert plan.parameters["method"] == info.method != "auto"
    assert plan.parameters["regularization"] == pytest.approx(info.regularization)
    if info.method not in ("wiener", "tikhonov"):
        assert plan.parameters["iterations"] == info.iterations
    assert plan.chunks == ((100, 100), (90, 90))
    assert plan.depth == default_depth(psf)


def test_leading_axes_are_frames_deconvolved_alike():
    psf, pair, _ = _case(2)
    frames = np.stack([pair.blurred, 2 * pair.blurred])
    plan = plan_chunked(frames, psf, "richardson_lucy", iterations=10, acceleration=None,
                        background=0.0, read_noise=0.01, chunks=(1, 100, 90))
    assert plan.depth[0] == 0
    result = deconvolve_chunked(frames, psf, plan=plan, scheduler="synchronous")
    expected = psfkit.deconvolve(pair.blurred, psf, **plan.parameters)
    assert np.linalg.norm(result[0] - expected) / np.linalg.norm(expected) < 0.01


def test_psf_support_encloses_the_requested_energy():
    psf = make_psf("gaussian", (41, 41), sigma=3.0)
    radius = psf_support(psf, 0.999)
    # a Gaussian marginal holds 99.9 % within 3.29 sigma
    assert radius == (10, 10)
    assert default_depth(psf) == (20, 20)
    assert psf_support(np.ones((1, 5, 5)))[0] == 0


def test_cancel_fills_the_remaining_blocks_with_the_input():
    psf, pair, chunks = _case(2)
    calls = []

    def stop_after_first(done, total, current):
        calls.append((done, total))
        return False

    result = deconvolve_chunked(pair.blurred, psf, "wiener", regularization=1e-2,
                                chunks=chunks, scheduler="synchronous",
                                callback=stop_after_first)
    assert calls == [(1, 4)]
    np.testing.assert_array_equal(result[100:, :], pair.blurred[100:, :])
    assert not np.array_equal(result[:100, :90], pair.blurred[:100, :90])


def test_output_goes_into_the_given_array_and_lazy_mode_computes_nothing():
    psf, pair, chunks = _case(2)
    out = np.zeros(pair.blurred.shape, np.float32)
    returned = deconvolve_chunked(pair.blurred, psf, "wiener", regularization=1e-2,
                                  chunks=chunks, out=out)
    assert returned is out and np.any(out != 0)
    lazy = deconvolve_chunked(pair.blurred, psf, "wiener", regularization=1e-2,
                              chunks=chunks, compute=False)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), out, atol=1e-6)


def test_input_is_not_modified():
    psf, pair, chunks = _case(2)
    image = pair.blurred.copy()
    deconvolve_chunked(image, psf, "wiener", regularization=1e-2, chunks=chunks)
    np.testing.assert_array_equal(image, pair.blurred)


@pytest.mark.parametrize(
    ("image", "psf", "error", "message"),
    [
        (np.zeros((64, 64), complex), np.ones((3, 3)), TypeError, "real-valued"),
        (np.zeros((0, 64)), np.ones((3, 3)), ValueError, "empty"),
        (np.zeros((8, 8)), np.ones((9, 9)), ValueError, "larger than"),
        (np.zeros((8,)), np.ones((3, 3)), ValueError, "image is 1D"),
    ],
)
def test_bad_input_gives_a_clear_error(image, psf, error, message):
    with pytest.raises(error, match=message):
        deconvolve_chunked(image, psf)


def test_a_negative_depth_is_refused():
    with pytest.raises(ValueError, match="depth"):
        plan_chunked(np.ones((64, 64)), np.ones((3, 3)), depth=-1)


def test_plan_counts_its_blocks():
    plan = ChunkPlan(parameters={}, depth=(2, 2), chunks=((10, 10), (5, 5, 5)))
    assert plan.block_count == 6


def test_a_file_array_reads_blocks_from_disk_and_pickles_small(tmp_path):
    import pickle

    import tifffile

    from psfkit.chunked import FileArray

    psf, pair, chunks = _case(2)
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, pair.blurred.astype(">f4"))
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        source = FileArray(path, series.dataoffset, series.shape,
                           np.dtype(series.dtype).newbyteorder(tif.byteorder))
    np.testing.assert_array_equal(source[10:20, 5:9], pair.blurred[10:20, 5:9])
    assert len(pickle.dumps(source)) < 1000
    options = dict(method="wiener", regularization=1e-2, chunks=chunks)
    np.testing.assert_array_equal(deconvolve_chunked(source, psf, **options),
                                  deconvolve_chunked(pair.blurred, psf, **options))


def test_default_blocks_keep_the_blocks_in_flight_within_the_memory_limit():
    from psfkit.chunked import BYTES_PER_BLOCK_VOXEL

    psf = make_psf("gaussian", (15, 11, 11), sigma=(2.5, 1.5, 1.5))
    volume = da.zeros((512, 1024, 1024), dtype=np.uint16, chunks=(512, 1024, 1024))
    limit = 2 * 2**30
    plan = plan_chunked(volume, psf, "wiener", regularization=0.01, iterations=1,
                        background=0.0, read_noise=1.0, chunks=None, memory_limit=limit,
                        concurrency=2)
    block = [max(sizes) for sizes in plan.chunks]
    padded = np.prod([b + 2 * d + k - 1 for b, d, k in zip(block, plan.depth, psf.shape,
                                                            strict=True)])
    assert 2 * padded * BYTES_PER_BLOCK_VOXEL <= limit
    assert min(min(sizes) for sizes in plan.chunks) >= 4 * max(plan.depth)


def test_a_scheduler_address_connects_for_the_call(client):
    psf, pair, chunks = _case(2)
    options = dict(method="wiener", regularization=1e-2, chunks=chunks)
    via_address = deconvolve_chunked(pair.blurred, psf, scheduler=client.scheduler.address,
                                     **options)
    np.testing.assert_allclose(via_address,
                               deconvolve_chunked(pair.blurred, psf, **options), atol=1e-6)


# ------------------------------------------------- issue #17: choices, arguments, resources


def test_an_all_zero_first_frame_does_not_choose_for_the_others(small_blurred):
    psf, blurred = small_blurred
    result = deconvolve_chunked(np.stack([0 * blurred, blurred, blurred]), psf)
    assert np.all(np.isfinite(result))
    alone = psfkit.deconvolve(blurred, psf)
    assert _relative(result[1], alone) < 1e-6 and _relative(result[2], alone) < 1e-6
    assert float(np.abs(result[0]).max()) < 1e-3 * float(blurred.max())


def test_a_constant_first_frame_leaves_the_wiener_results_of_the_others_right(small_blurred):
    psf, blurred = small_blurred
    result = deconvolve_chunked(np.stack([0 * blurred + 1, blurred, blurred]), psf, "wiener")
    assert _relative(result[1], psfkit.deconvolve(blurred, psf, "wiener")) < 1e-6


def test_choices_made_on_a_stack_without_signal_are_refused_naming_the_region(small_blurred):
    psf, _ = small_blurred
    with pytest.raises(ValueError, match=r"automatic choices made on the sample region "
                                         r"\(slice\(0, 1.*are unusable \(regularization"):
        deconvolve_chunked(np.zeros((2, 64, 64), np.float32), psf)


def test_a_constant_sample_region_is_refused(small_blurred):
    _, blurred = small_blurred
    volume = np.concatenate([np.zeros((8, 64, 64), np.float32), np.stack([blurred] * 8)])
    with pytest.raises(ValueError, match=r"sample \(slice\(0, 8, None\),\) selects a "
                                         r"constant region"):
        deconvolve_chunked(volume, make_psf("gaussian", (5, 5, 5), sigma=1.0),
                           sample=(slice(0, 8),))


@pytest.mark.parametrize(("keywords", "error", "message"), [
    ({"chunks": 0}, ValueError, "chunks must be an int >= 1, got 0"),
    ({"chunks": (np.nan, 32)}, TypeError, "chunks must be an int, got nan"),
    ({"chunks": "big"}, ValueError, "chunks must be 'auto', an int or one entry per axis"),
    ({"sample": "x"}, TypeError, "sample must be a tuple of at most 2 slices"),
    ({"sample": (slice(0, 0),)}, ValueError, "selects no pixels"),
    ({"plan": "x"}, TypeError, "plan must be a ChunkPlan from plan_chunked, got str"),
    ({"out": [1, 2]}, TypeError, "out must be an array (ndarray, memmap, zarr...)"),
    ({"out": np.zeros((64, 64), np.int16)}, TypeError,
     "out must have dtype float32 or float64, got int16"),
    ({"out": np.zeros((64, 64), np.float16)}, TypeError, "got float16"),
    ({"depth": np.nan}, TypeError, "depth must be an int, got nan"),
    ({"memory_limit": 0}, ValueError, "memory_limit must be positive, got 0"),
    ({"callback": 5}, TypeError, "callback must be a function or None, got 5"),
    ({"iterations": 5.0}, TypeError, "iterations must be an int, got 5.0"),
    ({"scheduler": "bogus"}, ValueError, "scheduler must be an address such as tcp://"),
    ({"depth": 100, "chunks": 16}, ValueError,
     "depth (100, 100) is larger than the image's spatial shape (64, 64)"),
])
def test_a_bad_argument_is_a_clear_error_naming_it(small_blurred, keywords, error, message):
    import re

    psf, blurred = small_blurred
    with pytest.raises(error, match=re.escape(message)):
        deconvolve_chunked(blurred, psf, "wiener", **keywords)


def test_an_object_array_is_a_type_error_before_dask_sees_it(small_blurred):
    psf, blurred = small_blurred
    with pytest.raises(TypeError, match="image must be a numeric array, got dtype object"):
        deconvolve_chunked(blurred.astype(object), psf)


def test_a_masked_array_is_refused(small_blurred):
    psf, blurred = small_blurred
    with pytest.raises(TypeError, match="masked array"):
        deconvolve_chunked(np.ma.masked_array(blurred), psf)


def test_a_result_larger_than_memory_is_refused_before_planning(small_blurred):
    psf, _ = small_blurred
    lazy = da.zeros((200_000, 200_000), dtype=np.float32, chunks=4096)  # 149 GiB
    with pytest.raises(ValueError, match=r"the result \(200000, 200000\) needs about 149\.0 GiB.*"
                                         r"pass out= an array on disk"):
        deconvolve_chunked(lazy, psf)


def test_a_plan_made_for_an_image_of_another_shape_is_refused_by_name():
    psf = make_psf("gaussian", (5, 5), sigma=1.0)
    plan = plan_chunked(np.ones((8, 8)) + np.eye(8), psf, "wiener", regularization=1e-2)
    image = np.random.default_rng(0).random((32, 32))
    with pytest.raises(ValueError, match=re.escape("plan was made for an image of shape "
                                                   "(8, 8), not (32, 32)")):
        deconvolve_chunked(image, psf, plan=plan)
