"""Chunked deconvolution with dask, for data larger than memory and for clusters.

The image is cut into blocks that overlap by ``depth`` pixels
(:func:`dask.array.map_overlap`); every block is deconvolved in memory by
:func:`psfkit.deconvolve` and the overlap is trimmed away again, so each output pixel comes
from a block in which it lies at least ``depth`` pixels from a cut. The default depth is
twice the radius that holds 99.9 % of the PSF's energy, which keeps the difference to the
in-memory result far below 1 % (the error a cut causes decays with the distance to the
cut, because the PSF couples pixels only within its support per iteration, and the
influence of far pixels fades geometrically). The outer image borders are not padded by
dask (``boundary="none"``): there the core's own boundary handling applies, exactly as for
the whole image.

Automatic choices (``method="auto"``, ``regularization="auto"``, ``iterations=None``) depend
on the data - the noise level above all. Made per block they would differ from block to
block and leave seams, so :func:`plan_chunked` makes them once, on the whole image when it
fits in :data:`PLAN_SAMPLE_VOXELS` or else on a central region, and every block is then
deconvolved with the same explicit parameters.

The work runs on whatever dask scheduler is in use: the default threaded one, a
``dask.distributed`` ``Client`` (local or a cluster), a scheduler address, or any name
:func:`dask.compute` accepts. Results are written block by block into ``out`` (a NumPy
array, a ``numpy.memmap``, a memory-mapped TIFF, a zarr array, ...) in the calling process,
so a cluster needs no shared file system and memory stays bounded by the blocks in flight.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ._progress import report
from ._validate import (
    as_float_array,
    fits_in_memory,
    float_output,
    optional_callable,
    positive_int,
    psf_fits,
    real_number,
    whole_number,
)
from .deconvolution import deconvolve
from .frames import checked_choices, explicit_parameters, has_signal, map_frames
from .noise import central_region
from .psf_map import PsfMap, check_map_fits

#: Energy fraction that defines the PSF's support radius.
SUPPORT_ENERGY = 0.999

#: Overlap between blocks, in units of the PSF's support radius.
DEPTH_FACTOR = 2.0

#: Automatic choices are made on the whole image up to this many voxels, else on a central
#: region of about this size.
PLAN_SAMPLE_VOXELS = 2**22

#: Memory for all blocks in flight together, used to choose the default block size.
DEFAULT_MEMORY_LIMIT = 2 * 2**30

#: Peak bytes per voxel of a block's padded grid: the core's most memory-hungry method
#: (rl_tv) peaks at ~20 float32 arrays of the grid; dask's overlap copies and the result
#: add a few more.
BYTES_PER_BLOCK_VOXEL = 100


def psf_support(psf: np.ndarray, energy: float = SUPPORT_ENERGY) -> tuple[int, ...]:
    """Half-width per axis of the centred slab that holds ``energy`` of the PSF.

    Along each axis the PSF's absolute values are summed over the other axes; the result
    is the smallest ``r`` such that the samples ``centre - r ... centre + r`` hold at least
    ``energy`` of the total. A 1-pixel axis has radius 0.

    Parameters
    ----------
    psf : (M1, ..., MD) ndarray
        The PSF, origin at its centre pixel ``shape // 2``.
    energy : float
        Fraction of the PSF's absolute sum to enclose, in (0, 1].

    Returns
    -------
    tuple of int
        The radius along each axis, in pixels.
    """
    psf = np.abs(as_float_array(psf, "psf", ndim=())).astype(np.float64)
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    total = psf.sum()
    if total <= 0:
        raise ValueError("psf is zero everywhere")
    radii = []
    for axis, length in enumerate(psf.shape):
        profile = psf.sum(axis=tuple(a for a in range(psf.ndim) if a != axis))
        centre = length // 2
        # enclosed[r] = sum of profile[centre - r : centre + r + 1]
        cumulative = np.concatenate([[0.0], np.cumsum(profile)])
        radius = np.arange(centre + 1)
        upper = np.minimum(centre + radius + 1, length)
        enclosed = cumulative[upper] - cumulative[centre - radius]
        radii.append(int(np.argmax(enclosed >= energy * total * (1 - 1e-12))))
    return tuple(radii)


def default_depth(psf: np.ndarray, factor: float = DEPTH_FACTOR) -> tuple[int, ...]:
    """Overlap between blocks: ``factor`` times :func:`psf_support`, at least 1 pixel."""
    return tuple(max(math.ceil(factor * r), 1 if n > 1 else 0)
                 for r, n in zip(psf_support(psf), np.shape(psf), strict=True))


@dataclass(frozen=True)
class ChunkPlan:
    """How an image is deconvolved block by block.

    Attributes
    ----------
    parameters : dict
        Keyword arguments passed to :func:`psfkit.deconvolve` for every block; automatic
        choices are already made, so every block is treated identically.
    depth : tuple of int
        Overlap between neighbouring blocks, per axis of the image (0 on leading axes).
    chunks : tuple of tuple of int
        Block sizes per axis (dask's ``chunks``).
    sample : tuple of slice
        Region of the image on which the automatic choices were made.
    """

    parameters: dict
    depth: tuple[int, ...]
    chunks: tuple[tuple[int, ...], ...]
    sample: tuple[slice, ...] = field(default=())

    @property
    def block_count(self) -> int:
        return int(np.prod([len(c) for c in self.chunks]))


class FileArray:
    """A read-only array stored raw in a file, read block by block.

    Slicing opens a memory map, copies the requested block out and closes the map, so the
    calling process keeps no file pages, and the object itself pickles as a few numbers:
    dask workers on other machines read their own blocks from a shared file system instead
    of receiving the whole array from the client.

    Parameters
    ----------
    path : str
        The file.
    offset : int
        Byte offset of the first element (``tifffile``: ``series.dataoffset``).
    shape : tuple of int
        Array shape, C order.
    dtype : dtype
        Element type, with its byte order.
    """

    def __init__(self, path, offset: int, shape, dtype):
        self.path = os.fspath(path)
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __getitem__(self, index):
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset,
                           shape=self.shape)
        try:
            return np.array(mapped[index])
        finally:
            mapped._mmap.close()
            del mapped

    def __array__(self, dtype=None, copy=None):
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]


def _is_dask(image) -> bool:
    return type(image).__module__.startswith("dask.")


def _dask_array(image, chunks=None):
    import dask.array as da

    if isinstance(image, da.Array):
        _check_dtype(image.dtype)
        return image if chunks is None else image.rechunk(chunks)
    if isinstance(image, np.ma.MaskedArray):
        raise TypeError("image is a masked array, whose mask psfkit would ignore; pass "
                        "image.filled(value) with a value that suits the image")
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    _check_dtype(image.dtype)
    return da.from_array(image, chunks="auto" if chunks is None else chunks)


def _check_dtype(dtype) -> None:
    """``TypeError`` unless ``dtype`` is real and numeric (bool included), checked before
    dask sees the array (it cannot size blocks of objects)."""
    dtype = np.dtype(dtype)
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise TypeError(f"image must be a numeric array, got dtype {dtype}")
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"image must be real-valued, got complex dtype {dtype}")


def _check_image(image, psf) -> int:
    """Validate dimensions; return the number of leading (batch) axes."""
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if psf.ndim not in (2, 3):
        raise ValueError(f"psf must be 2D or 3D, got {psf.ndim}D with shape {psf.shape}")
    if image.ndim < psf.ndim:
        raise ValueError(f"image is {image.ndim}D but psf is {psf.ndim}D")
    psf_fits(psf.shape, image.shape[image.ndim - psf.ndim:])
    return image.ndim - psf.ndim


def _default_chunks(shape, leading: int, depth, psf_shape, padded_voxels: float):
    """Even blocks whose padded size (block + overlap + PSF extension, the core's grid) is
    at most ``padded_voxels``; an axis is split more often the longer its blocks are, and
    never into blocks thinner than ``max(4 * depth, psf size)`` (thin blocks waste work
    on overlap)."""
    spatial = shape[leading:]
    minimum = [min(n, max(4 * d, k, 1)) for n, d, k in zip(spatial, depth, psf_shape,
                                                            strict=True)]
    pieces = [1] * len(spatial)

    def sizes():
        return [-(-n // p) for n, p in zip(spatial, pieces, strict=True)]

    def padded(current):
        return np.prod([s + 2 * d + k - 1 for s, d, k in zip(current, depth, psf_shape,
                                                               strict=True)], dtype=float)

    while padded(sizes()) > padded_voxels:
        current = sizes()
        splittable = [axis for axis, (n, p) in enumerate(zip(spatial, pieces, strict=True))
                      if -(-n // (p + 1)) >= minimum[axis] and current[axis] > 1]
        if not splittable:
            break
        axis = max(splittable, key=lambda a: current[a] / max(minimum[a], 1))
        pieces[axis] += 1
    return (1,) * leading + tuple(sizes())


def _enforce_minimum(chunks, minimum):
    """Merge a too-small last block into its neighbour so no block is thinner than needed."""
    fixed = []
    for sizes, m in zip(chunks, minimum, strict=True):
        sizes = list(sizes)
        while len(sizes) > 1 and min(sizes) < m:
            i = int(np.argmin(sizes))
            j = i - 1 if i == len(sizes) - 1 or (i > 0 and sizes[i - 1] < sizes[i + 1]) else i + 1
            sizes[min(i, j)] = sizes[i] + sizes[j]
            del sizes[max(i, j)]
        fixed.append(tuple(sizes))
    return tuple(fixed)


def _central_region(shape, leading: int, voxels: int) -> tuple[slice, ...]:
    """The first frame of the leading axes and a centred spatial box of ~``voxels``."""
    lead = tuple(slice(0, 1) for _ in range(leading))
    return lead + central_region(shape[leading:], voxels)


def _resolve_automatic_choices(sample: np.ndarray, psf: np.ndarray, parameters: dict,
                               where: str, callback=None) -> dict:
    """Make the core's data-driven choices once, on ``sample`` (the region ``where``);
    return explicit parameters (see :func:`psfkit.frames.explicit_parameters`), checked
    to be usable on the other blocks (:func:`psfkit.frames.checked_choices`). The run's
    ``info.parameters`` name every choice the core made, so no list of choices is kept
    here."""
    _, info = deconvolve(sample, psf, **parameters, callback=callback, return_info=True)
    return checked_choices(explicit_parameters(parameters, info), where)


def _checked_chunks(chunks):
    """``chunks`` in dask notation with every block size a positive int: an int, "auto",
    or one entry per axis (an int, -1 or None for the whole axis, "auto", or a tuple of
    block sizes); ``TypeError``/``ValueError`` naming ``chunks`` otherwise."""
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto', an int or one entry per axis, got "
                             f"{chunks!r}")
        return chunks
    if not isinstance(chunks, (tuple, list)):
        return positive_int(chunks, "chunks")
    for entry in chunks:
        if entry is None or (isinstance(entry, str) and entry == "auto") or (
                isinstance(entry, int) and entry == -1):
            continue
        for size in (entry if isinstance(entry, (tuple, list)) else (entry,)):
            positive_int(size, "chunks")
    return tuple(chunks)


def _checked_sample(sample, ndim: int) -> tuple:
    """``sample`` as a tuple of at most ``ndim`` slices or ints."""
    if not isinstance(sample, (tuple, list)) or len(sample) > ndim or not all(
            isinstance(part, (slice, int)) for part in sample):
        raise TypeError(f"sample must be a tuple of at most {ndim} slices (one region of "
                        f"one frame), got {sample!r}")
    return tuple(sample)


def _sample_region(source, sample, leading: int, psf: np.ndarray):
    """The region of ``source`` on which the automatic choices are made, and its slices:
    ``sample`` when given (``ValueError`` when it is constant), else the central region
    of the first frame that has signal there (of the first frame when none has)."""
    ndim = len(source.shape)
    if sample is not None:
        sample = _checked_sample(sample, ndim)
        region = _one_frame(np.asarray(source[sample]), psf.ndim)
        if region.size == 0:
            raise ValueError(f"sample {sample} selects no pixels of the image {source.shape}")
        if not has_signal(region):
            raise ValueError(f"sample {sample} selects a constant region, on which the "
                             f"automatic choices (noise level, regularization) cannot be "
                             f"made; choose a region with signal")
        return sample, region
    first = _central_region(source.shape, leading, PLAN_SAMPLE_VOXELS)
    for index in np.ndindex(*source.shape[:leading]):
        candidate = tuple(slice(i, i + 1) for i in index) + first[leading:]
        region = _one_frame(np.asarray(source[candidate]), psf.ndim)
        if has_signal(region):
            return candidate, region
    return first, _one_frame(np.asarray(source[first]), psf.ndim)


def plan_chunked(
    image,
    psf,
    method: str = "auto",
    *,
    iterations: int | None = None,
    regularization="auto",
    chunks=None,
    depth=None,
    sample=None,
    memory_limit: float = DEFAULT_MEMORY_LIMIT,
    concurrency: int | None = None,
    **deconvolve_kwargs,
) -> ChunkPlan:
    """Decide the blocks, their overlap and the deconvolution parameters for every block.

    Parameters
    ----------
    image : (..., N1, ..., ND) array-like or dask array
        The image; axes before the last ``psf.ndim`` are independent frames (time,
        channels), deconvolved one by one with the same parameters.
    psf : (M1, ..., MD) ndarray or PsfMap
        The PSF (2D or 3D), or a map of the image's spatial shape (the blocks and their
        overlap are sized by the widest of its PSFs).
    method, iterations, regularization, **deconvolve_kwargs
        As for :func:`psfkit.deconvolve`; automatic choices are made here, once.
    chunks : tuple or int, optional
        Block sizes (dask notation). Default: the dask array's own chunks if they fit
        ``memory_limit``, else even blocks as large as it allows. Blocks thinner than the
        overlap are merged.
    depth : int or tuple of int, optional
        Overlap per spatial axis. Default :func:`default_depth`.
    sample : tuple of slice, optional
        Region on which to make the automatic choices. Default: the whole image when it
        has at most :data:`PLAN_SAMPLE_VOXELS` voxels per frame, else a central box of
        that size in the first frame.
    memory_limit : float
        Bytes that the blocks deconvolved at the same time on one machine (or one dask
        worker) may use together (default 2 GiB); sets the default block size with
        :data:`BYTES_PER_BLOCK_VOXEL`.
    concurrency : int, optional
        Blocks deconvolved at the same time on one machine, sharing ``memory_limit``
        (default: the number of CPUs; :func:`deconvolve_chunked` passes the threads per
        worker of the scheduler in use).

    Returns
    -------
    ChunkPlan
    """
    psf_map = psf if isinstance(psf, PsfMap) else None
    psf = _planning_psf(psf)
    array = _dask_array(image)
    leading = _check_image(array, psf)
    if psf_map is not None:
        check_map_fits(psf_map, array.shape[leading:])
    depth = _depth_per_axis(depth, psf)
    _check_depth_fits(depth, array.shape[leading:])
    memory_limit = real_number(memory_limit, "memory_limit", positive=True)
    if chunks is None:
        concurrency = (os.cpu_count() or 1) if concurrency is None else positive_int(
            concurrency, "concurrency")
        chunks = _fitting_chunks(image, array, leading, depth, psf.shape,
                                 memory_limit / (concurrency * BYTES_PER_BLOCK_VOXEL))
    import dask.array as da

    chunks = _checked_chunks(chunks)
    try:
        normalized = da.core.normalize_chunks(chunks, array.shape, dtype=np.float32)
    except ValueError as error:
        raise ValueError(f"chunks {chunks!r} do not fit the image {array.shape}: "
                         f"{error}") from None
    minimum = (1,) * leading + tuple(min(n, max(d, k)) for n, d, k in
                                     zip(array.shape[leading:], depth, psf.shape, strict=True))
    normalized = _enforce_minimum(normalized, minimum)

    # slice the source itself: no dask rechunking of a file-backed array
    sample, region = _sample_region(array if _is_dask(image) else image, sample, leading, psf)
    if psf_map is not None:  # the choices are made with the part of the map under the sample
        psf = psf_map.cropped(_spatial_region(sample, array.shape, leading))
    parameters = _resolve_automatic_choices(
        region, psf, dict(deconvolve_kwargs, method=method, iterations=iterations,
                          regularization=regularization), f"the sample region {sample}")
    return ChunkPlan(parameters=parameters, depth=(0,) * leading + depth, chunks=normalized,
                     sample=sample)


def _planning_psf(psf) -> np.ndarray:
    """The PSF that sizes the blocks and their overlap: for a :class:`PsfMap` the
    envelope of its tiles' PSFs (the largest value at each offset, unit sum), whose
    support is the widest; else ``psf`` as a checked array."""
    if isinstance(psf, PsfMap):
        envelope = psf.psfs.reshape((-1, *psf.psf_shape)).max(axis=0)
        return as_float_array(envelope / envelope.sum(), "psf")
    return as_float_array(psf, "psf")


def _spatial_region(sample, shape, leading: int) -> tuple[slice, ...]:
    """The spatial slices (steps of 1) of a sample region of an image of ``shape``."""
    sample = tuple(sample) + (slice(None),) * (len(shape) - len(sample))
    region = []
    for part, n in zip(sample[leading:], shape[leading:], strict=True):
        part = slice(part, part + 1) if isinstance(part, int) else part
        start, stop, _ = part.indices(n)
        region.append(slice(start, stop))
    return tuple(region)


def _depth_per_axis(depth, psf: np.ndarray) -> tuple[int, ...]:
    """The overlap per spatial axis: :func:`default_depth` for ``None``, an int for every
    axis, or one per axis; ``ValueError`` unless nonnegative."""
    if depth is None:
        return default_depth(psf)
    if not isinstance(depth, (tuple, list)):
        depth = (depth,) * psf.ndim
    if len(depth) != psf.ndim:
        raise ValueError(f"depth must be an int or {psf.ndim} ints, got {depth}")
    return tuple(whole_number(d, "depth") for d in depth)


def _check_depth_fits(depth, spatial_shape) -> None:
    """``ValueError`` when an overlap is longer than the image along its axis."""
    if any(d > n for d, n in zip(depth, spatial_shape, strict=True)):
        raise ValueError(f"depth {tuple(depth)} is larger than the image's spatial shape "
                         f"{tuple(spatial_shape)}; pass a smaller depth or leave it to the "
                         f"PSF (depth=None)")


def _fitting_chunks(image, array, leading: int, depth, psf_shape, padded_voxels: float):
    """The blocks of a dask ``image`` if their padded grids fit ``padded_voxels``, else
    :func:`_default_chunks`."""
    largest = [max(sizes) for sizes in array.chunks[leading:]]
    padded = np.prod([b + 2 * d + k - 1 for b, d, k in zip(largest, depth, psf_shape,
                                                            strict=True)], dtype=float)
    if _is_dask(image) and padded <= padded_voxels:
        return tuple(image.chunks)  # the user's blocks fit: keep them
    return _default_chunks(array.shape, leading, depth, psf_shape, padded_voxels)


def _one_frame(region: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """The sample ``region`` without its leading axes of length 1; ``ValueError`` when it
    spans more than one frame."""
    if region.ndim > spatial_ndim and np.prod(region.shape[:-spatial_ndim]) == 1:
        region = region.reshape(region.shape[-spatial_ndim:])
    if region.ndim != spatial_ndim:
        raise ValueError("sample must select one frame of the leading axes")
    return region


def _deconvolve_block(block: np.ndarray, psf: np.ndarray, parameters: dict) -> np.ndarray:
    """Deconvolve every frame of one (overlapping) block with fixed parameters."""
    def frame(plane, _callback):
        return deconvolve(plane, psf, **parameters), None

    return map_frames(frame, block, psf.ndim).result


def _block_region(block_shape, block_info, chunks, depth, leading: int) -> tuple[slice, ...]:
    """Where a block of :func:`dask.array.map_overlap` (no padding at the outer borders)
    lies in the image's spatial axes: its chunk's start less the overlap, except for the
    first chunk of an axis."""
    location = block_info[0]["chunk-location"]
    region = []
    for axis in range(leading, len(block_shape)):
        index = location[axis]
        start = sum(chunks[axis][:index]) - (depth[axis] if index > 0 else 0)
        region.append(slice(start, start + block_shape[axis]))
    return tuple(region)


def _deconvolve_map_block(block: np.ndarray, psf: PsfMap, parameters: dict, plan_chunks,
                          plan_depth, block_info=None) -> np.ndarray:
    """:func:`_deconvolve_block` with the part of the map ``psf`` under this block."""
    leading = block.ndim - psf.ndim
    region = _block_region(block.shape, block_info, plan_chunks, plan_depth, leading)
    return _deconvolve_block(block, psf.cropped(region), parameters)


def _checked_plan(plan, shape=None) -> ChunkPlan:
    """``plan`` when it is a :class:`ChunkPlan` (made for an image of ``shape``, when
    given), else a ``TypeError`` or ``ValueError`` naming it."""
    if not isinstance(plan, ChunkPlan):
        raise TypeError(f"plan must be a ChunkPlan from plan_chunked, got "
                        f"{type(plan).__name__}")
    planned = tuple(int(sum(sizes)) for sizes in plan.chunks)
    if shape is not None and planned != tuple(shape):
        raise ValueError(f"plan was made for an image of shape {planned}, not "
                         f"{tuple(shape)}; make one for this image with plan_chunked")
    return plan


def chunked_graph(image, psf, plan: ChunkPlan):
    """The lazy dask array of the deconvolved image for ``plan`` (nothing is computed)."""
    import dask.array as da

    _checked_plan(plan, np.shape(image))
    block_function, extra = _deconvolve_block, {}
    if isinstance(psf, PsfMap):  # each block deconvolves with its part of the map
        check_map_fits(psf, np.shape(image)[len(plan.chunks) - psf.ndim:])
        block_function = _deconvolve_map_block
        extra = dict(plan_chunks=plan.chunks, plan_depth=plan.depth)
    else:
        psf = as_float_array(psf, "psf")
    if _is_dask(image):
        array = image if tuple(image.chunks) == tuple(plan.chunks) else \
            image.rechunk(plan.chunks)
    else:  # each task slices its own block straight from the source (memory map, file)
        array = _dask_array(image, plan.chunks)
    return da.map_overlap(
        block_function, array, depth=dict(enumerate(plan.depth)), boundary="none",
        trim=True, dtype=np.float32, meta=np.empty((0,) * array.ndim, np.float32),
        psf=psf, parameters=plan.parameters, **extra,
    )


@dataclass(frozen=True)
class Scheduler:
    """Where blocks are computed: ``dask.compute`` keyword arguments, the number of tasks
    that run at once, and the number that run at once on one worker (they share that
    worker's memory, see :func:`plan_chunked`'s ``concurrency``)."""

    compute_kwargs: dict
    concurrency: int
    per_worker: int

    @property
    def client(self):
        """The ``distributed.Client`` the tasks go to, or ``None`` on a local scheduler."""
        target = self.compute_kwargs.get("scheduler")
        return None if isinstance(target, str) else target


def _distributed_client(scheduler):
    """The ``distributed.Client`` that ``scheduler`` names (an address opens one), the
    active one for ``None``, else ``None``; and whether this call opened it."""
    if isinstance(scheduler, str) and "://" in scheduler:
        from distributed import Client

        return Client(scheduler, set_as_default=False), True
    if scheduler is not None and hasattr(scheduler, "nthreads") and hasattr(scheduler,
                                                                            "submit"):
        return scheduler, False
    if scheduler is None:
        try:
            from distributed import get_client

            return get_client(), False
        except (ImportError, ValueError):
            pass
    return None, False


@contextlib.contextmanager
def open_scheduler(scheduler=None) -> Iterator[Scheduler]:
    """The :class:`Scheduler` for ``scheduler`` (see :func:`deconvolve_chunked`); a client
    opened for a scheduler address is closed again on exit."""
    import dask

    if isinstance(scheduler, str) and "://" not in scheduler:
        names = sorted([*dask.base.named_schedulers, "distributed"])
        if scheduler not in names:
            raise ValueError(f"scheduler must be an address such as tcp://host:8786 or one "
                             f"of {names}, got {scheduler!r}")
    client, own_client = _distributed_client(scheduler)
    try:
        if client is not None:
            per_worker = client.nthreads()
            yield Scheduler({"scheduler": client}, sum(per_worker.values()) or 1,
                            max(per_worker.values(), default=1))
        else:
            name = scheduler or dask.config.get("scheduler", None) or "threads"
            threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
            if name in ("sync", "synchronous", "single-threaded"):
                threads = 1
            yield Scheduler({"scheduler": name}, threads, threads)
    finally:
        if own_client:
            client.close()


def deconvolve_chunked(
    image,
    psf,
    method: str = "auto",
    *,
    iterations: int | None = None,
    regularization="auto",
    chunks=None,
    depth=None,
    sample=None,
    scheduler=None,
    out=None,
    compute: bool = True,
    callback: Callable | None = None,
    plan: ChunkPlan | None = None,
    **deconvolve_kwargs,
):
    """Deconvolve an image larger than memory, block by block, on any dask scheduler.

    The forward model is that of :func:`psfkit.deconvolve`, ``y = h * x + n`` with a
    shift-invariant PSF ``h``. The image is split into blocks overlapping by ``depth``
    pixels (:func:`dask.array.map_overlap`, no padding at the outer borders); each block
    is deconvolved in memory with the same parameters, chosen once by
    :func:`plan_chunked`, and trimmed. The result matches :func:`psfkit.deconvolve` on
    the whole image to well within 1 % and shows no seams.

    Parameters
    ----------
    image : (..., N1, ..., ND) array-like or dask array
        The blurred image, any real dtype; a NumPy array, ``numpy.memmap``, dask array or
        anything with ``shape``, ``dtype`` and NumPy slicing. Leading axes (time,
        channels) are frames deconvolved independently.
    psf : (M1, ..., MD) ndarray or PsfMap
        The PSF, 2D or 3D, origin at its centre pixel; or a :class:`psfkit.PsfMap` of the
        image's spatial shape, of which each block gets its part.
    method, iterations, regularization, **deconvolve_kwargs
        As for :func:`psfkit.deconvolve`.
    chunks, depth, sample
        See :func:`plan_chunked`.
    scheduler : optional
        Where to run: ``None`` (a ``dask.distributed`` client if one is active, else
        dask's default), a ``distributed.Client``, a scheduler address such as
        ``"tcp://10.0.0.1:8786"``, or a name :func:`dask.compute` accepts (``"threads"``,
        ``"processes"``, ``"synchronous"``).
    out : array-like, optional
        Where to write the float32 result (anything with NumPy slice assignment: an
        ndarray, ``numpy.memmap``, ``tifffile.memmap``, zarr array). Default: a new
        ndarray.
    compute : bool
        With ``False`` nothing runs: the lazy dask array is returned (automatic choices
        are still made now, on ``sample``), to be computed or stored by the caller.
    callback : callable, optional
        ``callback(blocks_done, block_count, None)`` after each group of blocks; return
        ``False`` to stop. Blocks not yet computed are then filled with the input, so the
        result is never half-empty.
    plan : ChunkPlan, optional
        A plan from :func:`plan_chunked`; overrides the planning arguments.

    Returns
    -------
    ndarray or dask.array.Array
        ``out`` (or a new float32 array) holding the deconvolved image, or the lazy dask
        array when ``compute=False``.

    Examples
    --------
    >>> import numpy as np, psfkit
    >>> from psfkit.chunked import deconvolve_chunked
    >>> psf = psfkit.make_psf("gaussian", (9, 9), sigma=1.5)
    >>> image = np.random.default_rng(0).random((128, 128), dtype=np.float32)
    >>> deconvolve_chunked(image, psf, "wiener", regularization=1e-2, chunks=64).shape
    (128, 128)
    """
    optional_callable(callback)
    if plan is not None:
        _checked_plan(plan, np.shape(image))
    if compute and out is None:
        _check_result_fits(np.shape(image))
    with open_scheduler(scheduler) as where:
        if plan is None:
            plan = plan_chunked(image, psf, method, iterations=iterations,
                                regularization=regularization, chunks=chunks, depth=depth,
                                sample=sample, concurrency=where.per_worker,
                                **deconvolve_kwargs)
        result = chunked_graph(image, psf, plan)
        if not compute:
            return result
        if out is None:
            out = np.empty(result.shape, dtype=np.float32)
        else:
            float_output(out, result.shape)
        return store_blocks(result, out, where, image=image, callback=callback)


def _check_result_fits(shape) -> None:
    """``ValueError`` when a float32 result of ``shape`` is larger than the memory
    available, before any work is done."""
    fits_in_memory(4 * float(np.prod(shape, dtype=np.float64)), f"the result {tuple(shape)}",
                   "pass out= an array on disk (numpy.memmap, tifffile.memmap, zarr) or "
                   "compute=False and store the dask array yourself")


def _block_slices(chunks) -> list[tuple[slice, ...]]:
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in chunks]
    return [tuple(slice(int(starts[a][i]), int(starts[a][i] + chunks[a][i]))
                  for a, i in enumerate(index))
            for index in np.ndindex(*[len(c) for c in chunks])]


def store_blocks(result, out, scheduler: Scheduler, *, image=None, callback=None,
                 after_group: Callable | None = None):
    """Compute the blocks of the dask array ``result`` in groups and write them to ``out``.

    Each group holds as many blocks as ``scheduler`` (from :func:`open_scheduler`) runs at
    once, so memory stays bounded by the blocks in flight; the writing happens in this
    process. ``callback(done, total, None)`` follows the blocks; when it returns ``False``
    the remaining blocks are copied from ``image`` (if given) and the loop stops.
    ``after_group()`` runs after every group (e.g. to release a memory map's pages).
    """
    import dask

    optional_callable(callback)
    optional_callable(after_group, "after_group")
    indices = list(np.ndindex(*result.numblocks))
    slices = _block_slices(result.chunks)
    total = len(indices)
    group = max(int(scheduler.concurrency), 1)
    for start in range(0, total, group):
        batch = indices[start:start + group]
        values = dask.compute(*[result.blocks[i] for i in batch], **scheduler.compute_kwargs)
        for index, value in zip(range(start, start + len(batch)), values, strict=True):
            out[slices[index]] = value
        del values
        if after_group is not None:
            after_group()
        done = start + len(batch)
        if done < total and not report(callback, done, total, None):
            if image is not None:
                for index in range(done, total):
                    out[slices[index]] = np.asarray(image[slices[index]], np.float32)
            return out
    report(callback, total, total, None)
    return out
