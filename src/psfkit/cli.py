"""The batch face of psfkit: ``psfkit demo`` and ``psfkit deconvolve`` on TIFF files.

``psfkit deconvolve in.tif --psf psf.tif -o out.tif`` deconvolves an image (2D, 3D, or a
stack of frames along leading axes) with a PSF. The input is read through a memory map and
the output written into one. Frames are deconvolved one by one in memory
(:func:`psfkit.frames.deconvolve_frames`); when a frame is too large for that
(:func:`psfkit.frames.frame_in_blocks`), or ``--chunks`` or a local ``--scheduler`` is
given, the image goes through :mod:`psfkit.chunked` and is written block by block. With
``--scheduler ADDRESS`` (``dask.distributed``) whole files are spread over the cluster's
workers, one task per file (:func:`psfkit.batch.run_jobs`), and only the files whose
frames are too large go in blocks, from here. A progress bar goes to stderr. The output is
written to a temporary file next to its destination and renamed into place only when
complete, so a crash or Ctrl-C never leaves a half-written file; the input is never
overwritten.

Exit codes: 0 success, 1 the computation failed, 2 bad arguments or unreadable input,
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments or input files: reported in one line, exit code 2."""


def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on bundled sample data and write the results")
    parser.add_argument("-o", "--output", default="psfkit-demo",
                        help="folder for the TIFF results and the summary figure")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from .demo import run_demo

    try:
        return run_demo(args.output)["exit_code"]
    except (ValueError, OSError) as error:
        print(f"psfkit demo: error: {error}", file=sys.stderr)
        return EXIT_USAGE


# ------------------------------------------------------------------------- deconvolve


def _number(text: str, *, minimum: float | None = None, positive: bool = False,
            auto: bool = False):
    """A finite number from the command line (``"auto"`` too with ``auto``), at least
    ``minimum`` or, with ``positive``, above 0; argparse names the option in its error."""
    from ._validate import real_number

    if auto and text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        expected = "a number or 'auto'" if auto else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    try:
        return real_number(value, "value", minimum=minimum, positive=positive)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _regularization(text: str):
    return _number(text, minimum=0.0, auto=True)


def _background(text: str) -> float:
    return _number(text)


def _memory_limit(text: str) -> float:
    return _number(text, positive=True)


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _depth(text: str) -> int:
    return _whole(text, 0)


def _chunks(text: str):
    if text == "auto":
        return "auto"
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or block sizes like 64,512,512, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"block sizes must be >= 1, got {text}")
    return sizes[0] if len(sizes) == 1 else sizes


def _add_deconvolve(subparsers) -> None:
    parser = subparsers.add_parser(
        "deconvolve", help="deconvolve TIFF images with a TIFF PSF",
        description="Deconvolve TIFF images (2D, 3D, or frames along leading axes) with a "
                    "TIFF PSF. Without options every choice is automatic. One image: "
                    "'-o out.tif'. Many (files, globs, folders): outputs go into the "
                    "folder -o names, or beside each input, named by --output-pattern; "
                    "finished outputs are skipped, so a stopped batch restarts where it "
                    "was. Each output gets a JSON sidecar (<output>.json) saying how it "
                    "was made.")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="input TIFFs: files, globs ('plate/*.tif') or folders")
    parser.add_argument("--psf", required=True, help="PSF TIFF, 2D or 3D, centred; "
                        "resampled to each image's voxel size when both files state one. "
                        "Or a PSF map (psfkit estimate, fit or beads with --grid) for a "
                        "blur that changes across the field: the images must have the "
                        "shape and voxel size it was made on")
    parser.add_argument("-o", "--output", default=None,
                        help="output TIFF for one image, or the folder for many")
    parser.add_argument("--output-pattern", default=None, metavar="PATTERN",
                        help="output file names, from {stem} (input name without its "
                             "suffix) and {name}; default '{stem}_deconvolved.tif'")
    from .deconvolution import METHODS

    parser.add_argument("--method", default="auto", choices=METHODS,
                        help="deconvolution method (default: auto)")
    parser.add_argument("--iterations", type=_positive_int, default=None,
                        help="iteration count of the iterative methods (default: automatic)")
    parser.add_argument("--regularization", type=_regularization, default="auto",
                        help="regularization weight, or 'auto' (default)")
    parser.add_argument("--no-acceleration", action="store_true",
                        help="plain Richardson-Lucy, without Biggs-Andrews acceleration")
    parser.add_argument("--background", type=_background, default=None,
                        help="constant camera offset / sky level (default: estimated)")
    parser.add_argument("--same-choices", action="store_true",
                        help="make the automatic choices (method, noise model, iterations, "
                             "regularization) on the first image and apply them to all, "
                             "so intensities compare across a plate")
    parser.add_argument("--parameters", default=None, metavar="JSON",
                        help="take every parameter from a sidecar (<output>.json) or a "
                             "JSON dict, to make an output again bit for bit")
    parser.add_argument("--dtype", default="float32", choices=("float32", "uint16"),
                        help="output type: float32 (default, never rescaled) or uint16 "
                             "(values times --scale, rounded; saturation is reported)")
    parser.add_argument("--scale", type=_scale, default=1.0,
                        help="with --dtype uint16: the factor applied before rounding "
                             "(default 1; recorded in the sidecar)")
    parser.add_argument("--chunks", type=_chunks, default=None,
                        help="deconvolve in overlapping blocks of this size, e.g. 64,512,512 "
                             "or 'auto' (default: only for frames over 256 MiB as float32)")
    parser.add_argument("--depth", type=_depth, default=None,
                        help="overlap between blocks in pixels (default: from the PSF)")
    parser.add_argument("--memory-limit", type=_memory_limit, default=2.0,
                        help="GiB the blocks in flight may use together; sets the default "
                             "block size (default: 2)")
    parser.add_argument("--scheduler", default=None,
                        help="a dask.distributed scheduler's address such as "
                             "tcp://host:8786: whole files go to its workers, which must "
                             "see the same paths (only frames over 256 MiB go in blocks); "
                             "or threads, processes, synchronous: blocks on this machine")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (never an input)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_deconvolve)


def _scale(text: str) -> float:
    return _number(text, positive=True)


class ProgressBar:
    """A one-line text progress bar on a stream (stderr); redraws at most 10x a second
    on a terminal and at every 10 % otherwise, so logs stay short."""

    def __init__(self, label: str, stream=None, width: int = 30, enabled: bool = True):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self.step = 0
        self.total = None

    def __call__(self, step, total=None, current=None) -> bool:
        self.step, self.total = int(step), (int(total) if total else None)
        if not self.enabled:
            return True
        now = time.perf_counter()
        if self.interactive:
            if now - self._last_draw >= 0.1 or (self.total and self.step >= self.total):
                self._draw("\r")
                self._last_draw = now
        elif self.total:
            decile = 10 * self.step // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self._draw("", "\n")
        return True

    def _draw(self, prefix: str, suffix: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        if self.total:
            filled = int(self.width * min(self.step / self.total, 1.0))
            bar = "#" * filled + "-" * (self.width - filled)
            text = f"{self.label} [{bar}] {self.step}/{self.total} {elapsed:5.1f}s"
        else:
            text = f"{self.label} {self.step} {elapsed:5.1f}s"
        self.stream.write(prefix + text + suffix)
        self.stream.flush()

    def line(self, text: str) -> None:
        """Write ``text`` on a line of its own, above the bar on a terminal."""
        if not self.enabled:
            return
        self.stream.write(("\r\033[K" if self.interactive else "") + text + "\n")
        if self.interactive:
            self._draw("")
        self.stream.flush()

    def close(self, message: str = "") -> None:
        if self.enabled:
            if self.interactive:
                self._draw("\r")
                self.stream.write("\n")
            if message:
                self.stream.write(message + "\n")
            self.stream.flush()


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _release_pages(array) -> None:
    """Write a memory map's dirty pages and drop its pages from this process's memory."""
    base = array
    while base is not None and getattr(base, "_mmap", None) is None:
        base = getattr(base, "base", None)
    handle = getattr(base, "_mmap", None)
    if handle is None:
        return
    with contextlib.suppress(ValueError, OSError, AttributeError):
        handle.flush()
        handle.madvise(mmap.MADV_DONTNEED)


def _check_output_folder(folder: str) -> None:
    """A ``UsageError`` when no file can be written in ``folder``."""
    if not os.path.isdir(folder):
        raise UsageError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to the output folder {folder} (permission denied); "
                         f"choose another output")


def _single_output(args) -> bool:
    """Whether the command names one input file and its output file (the one-image form,
    whose refusals end the command with exit code 2 as they always did)."""
    from .batch import is_glob

    return (len(args.images) == 1 and args.output is not None and args.output_pattern is None
            and not os.path.isdir(args.output) and not os.path.isdir(args.images[0])
            and not is_glob(args.images[0]))


def _jobs(args):
    """The batch's jobs, checked: one-image form or many, each output folder writable."""
    from .batch import Job, plan_jobs

    if _single_output(args):
        return [Job(args.images[0], args.output)], []
    if args.output is None and args.output_pattern is None:
        raise UsageError("name the output: -o FILE for one image, -o FOLDER or "
                         "--output-pattern '{stem}_deconvolved.tif' for many")
    if args.output is not None and not os.path.isdir(args.output):
        if os.path.isfile(args.output) or args.output.lower().endswith((".tif", ".tiff")):
            raise UsageError(f"the output {args.output} names a file; for many images (a "
                             f"glob or a folder) name a folder")
    try:
        jobs, unmatched = plan_jobs(args.images, output_folder=args.output,
                                    pattern=args.output_pattern)
    except ValueError as error:
        raise UsageError(str(error)) from None
    # a glob or folder that holds the PSF file too does not deconvolve the PSF
    jobs = [job for job in jobs if os.path.abspath(job.input) != os.path.abspath(args.psf)]
    if not jobs and unmatched:
        raise UsageError("; ".join(unmatched))
    if args.output is not None and os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        os.makedirs(args.output, exist_ok=True)  # a new folder in an existing one
    for folder in sorted({os.path.dirname(os.path.abspath(job.output)) for job in jobs}):
        _check_output_folder(folder)
    return jobs, unmatched


def _check_job(job, overwrite: bool) -> None:
    """A ``UsageError`` when the job's input is missing, is its own output, or its output
    is a folder or (in the one-image form) exists without ``overwrite``."""
    if not os.path.isfile(job.input):
        raise UsageError(f"image file not found: {job.input}")
    if os.path.exists(job.output) and _same_file(job.input, job.output):
        raise UsageError(f"refusing to overwrite the input {job.input}; choose another output")
    if os.path.isdir(job.output):
        raise UsageError(f"the output {job.output} is a folder; name a file in it, e.g. "
                         f"{os.path.join(job.output, 'deconvolved.tif')}")
    if os.path.exists(job.output) and not overwrite:
        raise UsageError(f"{job.output} exists; pass --overwrite to replace it")
    _check_output_folder(os.path.dirname(os.path.abspath(job.output)))


def _deconvolve_arguments(args) -> dict:
    """The keyword arguments of :func:`psfkit.deconvolve` the options ask for (all of them
    from ``--parameters`` when given)."""
    if args.parameters is not None:
        from .provenance import sidecar_parameters

        try:
            return sidecar_parameters(args.parameters)
        except ValueError as error:
            raise UsageError(str(error)) from None
    options = dict(method=args.method, iterations=args.iterations,
                   regularization=args.regularization)
    if args.no_acceleration:
        options["acceleration"] = None
    if args.background is not None:
        options["background"] = args.background
    return options


@dataclass(frozen=True)
class _PsfOnImage:
    """The PSF on one image's voxel grid (:meth:`_PsfForImages.for_image`).

    ``spacing`` and ``unit`` are the output's voxel size (the image's, else the PSF's;
    ``None`` when neither file states one), ``resampled`` the ``{"from", "to"}`` spacings
    of a resampling (else ``None``), ``assumed`` what was assumed for a voxel size a file
    does not give, in words without the file's name (else ``None``), and ``notes`` the
    lines to say (a resampling done for this image)."""

    psf: np.ndarray
    deconvolver: object
    spacing: tuple | None
    unit: str
    resampled: dict | None
    assumed: str | None
    notes: tuple


def _psf_for_images(path: str):
    """The ``--psf`` file prepared for the batch: a PSF map's (:func:`psfkit.io.save_psf_map`)
    or a PSF's."""
    from .io import is_psf_map_file

    return (_PsfMapForImages if is_psf_map_file(path) else _PsfForImages)(path)


def _read_psf_file(load, path: str):
    """``load(path)``, a file's refusal (``ValueError``) turned into one usage line."""
    try:
        return load(path)
    except ValueError as error:
        raise UsageError(str(error)) from None


class _PsfMapForImages:
    """A PSF map, read and prepared once, for images of the shape it describes. A map is
    in the pixel coordinates of its image, so it is never resampled: an image of another
    shape or voxel size is refused. Like :class:`_PsfForImages`, each thread gets its own
    :class:`psfkit.Deconvolver`."""

    def __init__(self, path: str):
        from .io import load_psf_map

        self.file = _read_psf_file(load_psf_map, path)
        self.path = path
        self.map = self.file.psf_map
        self.ndim = self.map.ndim
        self.spacing = self.file.spacing
        self._deconvolvers: dict = {}
        #: what the sidecar records of the map
        self.record = {"grid": list(self.map.grid), "image_shape": list(self.map.shape),
                       "psf_shape": list(self.map.psf_shape), "model": self.map.model}

    def for_image(self, image_file) -> _PsfOnImage:
        """The map for an image of the map's shape (as :meth:`_PsfForImages.for_image`),
        else a ``UsageError`` naming both shapes or both voxel sizes."""
        from . import Deconvolver

        shape = tuple(image_file.data.shape)
        spatial = shape[len(shape) - self.ndim:]
        name = os.path.basename(image_file.path)
        if spatial != tuple(self.map.shape):
            raise UsageError(f"the PSF map {self.path} was made on images of shape "
                             f"{tuple(self.map.shape)}, but {name} has shape {spatial}; "
                             f"make the map on images of this size (psfkit estimate, fit "
                             f"or beads with --grid)")
        image_spacing = image_file.spatial_spacing(self.ndim)
        if (image_spacing is not None and self.spacing is not None
                and image_file.unit == self.file.unit
                and not np.allclose(image_spacing, self.spacing, rtol=1e-6, atol=0)):
            raise UsageError(f"the PSF map {self.path} was made at voxel size {self.spacing} "
                             f"{self.file.unit}, but {name} has {image_spacing} "
                             f"{image_file.unit}; a map is not resampled: make it on "
                             f"images of this voxel size")
        deconvolver = self._deconvolvers.setdefault(threading.get_ident(),
                                                    Deconvolver(self.map))
        if image_spacing is not None:
            spacing, unit = image_spacing, image_file.unit
        else:
            spacing, unit = self.spacing, self.file.unit
        return _PsfOnImage(self.map, deconvolver, spacing, unit, None, None, ())


class _PsfForImages:
    """The PSF, read and prepared once, and its versions resampled to each image voxel
    size met (each with its :class:`psfkit.Deconvolver`, which keeps its operators). It
    is sent to each worker of a cluster once; a Deconvolver's kept operators are plain
    dicts, so each thread gets its own versions."""

    def __init__(self, path: str):
        from .io import load_psf

        self.file = _read_psf_file(load_psf, path)
        self.path = path
        self.record = None  # a PSF, not a map
        self.ndim = self.file.data.ndim
        self.spacing = self.file.spatial_spacing(self.ndim)
        self._versions: dict = {}

    def _assumption(self, image_file, image_spacing) -> str | None:
        """What is assumed when the image or the PSF gives no voxel size, or their units
        differ (``None`` when both are known in one unit)."""
        if image_spacing is None and self.spacing is None:
            return ("neither the image nor the PSF gives a voxel size; the PSF is taken to "
                    "be sampled like the image")
        if image_spacing is None:
            return (f"no voxel size along {image_file.unknown_axes(self.ndim)}; taken as "
                    f"the PSF's {self.spacing} {self.file.unit}")
        if self.spacing is None:
            return (f"the PSF gives no voxel size along {self.file.unknown_axes(self.ndim)};"
                    f" it is taken to be sampled like the image ({image_spacing} "
                    f"{image_file.unit})")
        if image_file.unit != self.file.unit:
            return (f"voxel size in {image_file.unit}, the PSF's in {self.file.unit}; the "
                    f"PSF is taken to be sampled like the image")
        return None

    def for_image(self, image_file) -> _PsfOnImage:
        """The PSF on the voxel grid of ``image_file``: resampled when both spacings are
        known (in one unit) and differ, else as read."""
        image_spacing = image_file.spatial_spacing(self.ndim)
        assumed = self._assumption(image_file, image_spacing)
        target = None
        if assumed is None and not np.allclose(image_spacing, self.spacing, rtol=1e-6,
                                               atol=0):
            target = image_spacing
        key = (target, threading.get_ident())
        notes = ()
        if key not in self._versions:
            psf, deconvolver, notes = self._version(target, image_file.unit)
            self._versions[key] = psf, deconvolver
        psf, deconvolver = self._versions[key]
        resampled = None if target is None else {"from": list(self.spacing),
                                                 "to": list(target)}
        if image_spacing is not None:
            spacing, unit = image_spacing, image_file.unit
        else:
            spacing, unit = self.spacing, self.file.unit
        return _PsfOnImage(psf, deconvolver, spacing, unit, resampled, assumed, notes)

    def _version(self, target, unit: str) -> tuple:
        """The PSF resampled to voxels of ``target`` (as read when ``None``), its
        Deconvolver, and the lines that say what the resampling did."""
        import warnings

        from . import Deconvolver, resample_psf

        psf, notes = self.file.data, ()
        if target is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                psf = resample_psf(psf, self.spacing, target)
            notes = (f"resampled the PSF from {self.spacing} {self.file.unit} voxels to the "
                     f"image's {target} {unit}: shape {self.file.data.shape} -> {psf.shape}",
                     *(f"warning: {warning.message}" for warning in caught))
        return psf, Deconvolver(psf), notes


def _deconvolve_in_blocks(image, psf, options, out, args, bar):
    """Plan for the scheduler's concurrency, then write block by block into the memory map
    ``out``, releasing its pages after every group of blocks; return the plan."""
    from .chunked import chunked_graph, open_scheduler, plan_chunked, store_blocks

    chunks = None if args.chunks in (None, "auto") else args.chunks
    with open_scheduler(args.scheduler) as scheduler:
        plan = plan_chunked(image, psf, chunks=chunks, depth=args.depth,
                            memory_limit=args.memory_limit * 2**30,
                            concurrency=scheduler.per_worker, **options)
        bar.label = f"{bar.label}: {plan.block_count} blocks"
        store_blocks(chunked_graph(image, psf, plan), out, scheduler, callback=bar,
                     after_group=lambda: _release_pages(out))
    return plan


def _deconvolve_into(out, image, psf, deconvolver, options, args, bar) -> tuple:
    """Deconvolve ``image`` into the float32 memory map ``out``, frame by frame (with the
    PSF's ``deconvolver``) or in blocks; return the run's report (of the first frame), the
    explicit parameters that repeat it, and the block sizes and overlap (``None`` when it
    ran frame by frame)."""
    from ._validate import check_finite_result
    from .frames import deconvolve_frames

    spatial = image.shape[len(image.shape) - psf.ndim:]
    if _in_blocks(spatial, args):
        plan = _deconvolve_in_blocks(image, psf, options, out, args, bar)
        report, parameters = dict(plan.parameters), dict(plan.parameters)
        blocks = {"chunks": [sizes[0] for sizes in plan.chunks], "depth": list(plan.depth)}
    else:
        report = deconvolve_frames(image, psf, out=out, callback=bar, deconvolver=deconvolver,
                                   **options).reports[0]
        parameters, blocks = dict(report["parameters"]), None
    check_finite_result(out, "the result", "nothing was written; change the options, e.g. "
                        "leave --regularization and --background automatic")
    return report, parameters, blocks


#: The signals that stop a run: Ctrl-C and a polite kill.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum, frame):
    """Stop the run (a ``KeyboardInterrupt``, so that it removes its temporary file), and
    ignore any further stop signal: a second Ctrl-C during that clean-up would otherwise
    leave the file behind and end in a traceback."""
    for stop in _STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise KeyboardInterrupt


def _run_deconvolve(args) -> int:
    previous = {}
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        previous = {stop: signal.signal(stop, _interrupt) for stop in _STOP_SIGNALS}
    try:
        return _deconvolve_batch(args)
    except UsageError as error:
        print(f"psfkit deconvolve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # the stop signals stay ignored: the process is ending, and a Ctrl-C between a
        # restored handler and the exit would turn the clean exit 130 into a traceback
        previous = {}
        stopped = ("the files not yet started were cancelled, those a worker had started "
                   "are finished whole" if _is_address(args.scheduler)
                   else "the output in progress was not written")
        print(f"\npsfkit deconvolve: interrupted; {stopped} (run the command again to go "
              f"on)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _checked_image(job, psf_ndim: int):
    """The job's image file, read lazily where the file allows, checked to fit the PSF."""
    from .io import read_image

    try:
        image_file = read_image(job.input, lazy=True)
    except ValueError as error:
        raise UsageError(str(error)) from None
    shape = tuple(image_file.data.shape)
    if len(shape) < psf_ndim:
        raise UsageError(f"the PSF must have at most the image's dimensions; got a "
                         f"{psf_ndim}D PSF and image {shape}")
    return image_file


def _check_psf_fits(psf, shape) -> None:
    spatial = shape[len(shape) - psf.ndim:]
    if any(k > n for k, n in zip(psf.shape, spatial, strict=True)):
        raise UsageError(f"the PSF {psf.shape} is larger than the image {spatial}")


def _summary(parameters: dict) -> str:
    return ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in parameters.items()
                     if key in ("method", "iterations", "regularization", "stopped_by"))


def _computation_failures() -> tuple:
    """The exceptions that mean the computation failed rather than the arguments: out of
    memory, the file system, and a dask worker killed (for exceeding its memory)."""
    failures = (MemoryError, OSError, RuntimeError)
    with contextlib.suppress(ImportError):
        from distributed import KilledWorker

        failures += (KilledWorker,)
    return failures


#: The largest value of a uint16 output.
UINT16_MAX = 65535


def _write_uint16(work, temporary: str, spacing, unit: str, scale: float, ndim: int) -> dict:
    """Write the float32 result ``work`` times ``scale``, rounded and clipped to uint16,
    into a new TIFF at ``temporary``, frame by frame; return the type, the scale and how
    many pixels saturated at 65535 or were clipped at 0."""
    from .io import create_image

    out = create_image(temporary, work.shape, np.uint16, spacing, unit, spatial_ndim=ndim)
    above = below = 0
    for index in np.ndindex(*work.shape[:1]) if work.ndim > ndim else [()]:
        values = np.asarray(work[index], dtype=np.float64) * scale
        above += int(np.count_nonzero(values > UINT16_MAX))
        below += int(np.count_nonzero(values < 0))
        out[index] = np.clip(np.rint(values), 0, UINT16_MAX).astype(np.uint16)
    out.flush()
    del out
    return {"dtype": "uint16", "scale": scale, "saturated_pixels": above,
            "clipped_below_zero": below}


def _uint16_line(name: str, output_type: dict, size: int) -> str:
    """The line that makes a uint16 output's saturation visible ('' when none)."""
    above, below = output_type["saturated_pixels"], output_type["clipped_below_zero"]
    if not (above or below):
        return ""
    return (f"warning: {name}: {above} pixels ({100 * above / size:.3g} %) saturated at "
            f"{UINT16_MAX} and {below} clipped at 0 (uint16, scale {output_type['scale']:g}); "
            f"a smaller --scale or float32 keeps them")


@dataclass(frozen=True)
class _FileOutcome:
    """What deconvolving one file gives back to the batch: the explicit parameters that
    repeat it, what was assumed for a voxel size (:attr:`_PsfOnImage.assumed`), the lines
    to say, and the summary of the run."""

    parameters: dict
    assumed: str | None
    notes: tuple
    summary: str


class _FileDeconvolution:
    """Deconvolves one job's file into its output and sidecar, atomically: the batch's
    per-file work (:func:`psfkit.batch.run_jobs`), here or on a dask worker. It says
    nothing itself: the lines go back in its :class:`_FileOutcome`."""

    def __init__(self, args, psf: _PsfForImages, options: dict):
        self.args = args
        self.psf = psf
        self.options = options
        self.count = 0
        self.total = 0

    def __call__(self, job) -> _FileOutcome:
        from .batch import JobFailure

        self.count += 1
        try:
            return self._deconvolve(job)
        except (UsageError, ValueError, TypeError) as error:
            raise JobFailure(str(error)) from None
        except _computation_failures() as error:
            hint = ("; a dask worker died, usually for exceeding its memory: give the "
                    "workers more memory or pass smaller --chunks"
                    if type(error).__name__ == "KilledWorker" else "")
            raise JobFailure(f"failed: {type(error).__name__}: {error}{hint}",
                             usage=False) from None

    def _deconvolve(self, job) -> _FileOutcome:
        from .io import atomic_output, sidecar_text, write_sidecar

        started = time.perf_counter()
        _check_job(job, overwrite=True)
        image_file = _checked_image(job, self.psf.ndim)
        grid = self.psf.for_image(image_file)
        image = image_file.data
        _check_psf_fits(grid.psf, tuple(image.shape))
        label = "deconvolving" if self.total <= 1 else (
            f"[{self.count}/{self.total}] {os.path.basename(job.input)}")
        bar = ProgressBar(label, enabled=not self.args.quiet)
        try:
            with atomic_output(job.output) as temporary:
                report, parameters, blocks, output_type = self._write(
                    job, temporary, image, grid, bar)
                record = self._record(job, image_file, report, parameters, blocks, grid,
                                      output_type, time.perf_counter() - started)
                sidecar_text(job.output, record)  # a non-finite record: no output at all
            write_sidecar(job.output, record)
        except BaseException:
            bar.close()
            raise
        summary = _summary(report)
        bar.close(f"wrote {job.output} ({summary})")
        notes = grid.notes
        if output_type["dtype"] == "uint16":
            line = _uint16_line(job.output, output_type, int(np.prod(image.shape)))
            notes += (line,) if line else ()
        return _FileOutcome(parameters, grid.assumed, notes, summary)

    def _write(self, job, temporary: str, image, grid: _PsfOnImage, bar):
        """Deconvolve ``image`` with the PSF on its grid into the TIFF ``temporary`` that
        becomes the job's output (float32, or uint16 through a float32 scratch file beside
        it, which a killed run's successor removes); return the report, parameters, blocks
        and output type."""
        from .io import create_image, scratch_beside

        with contextlib.ExitStack() as stack:
            work = temporary
            if self.args.dtype == "uint16":
                work = stack.enter_context(scratch_beside(job.output))
            out = create_image(work, tuple(image.shape), np.float32, grid.spacing,
                               grid.unit, spatial_ndim=grid.psf.ndim)
            report, parameters, blocks = _deconvolve_into(
                out, image, grid.psf, grid.deconvolver, self.options, self.args, bar)
            out.flush()
            del out
            output_type = {"dtype": "float32", "scale": 1.0}
            if self.args.dtype == "uint16":
                output_type = _write_uint16(_work_array(work), temporary, grid.spacing,
                                            grid.unit, self.args.scale, grid.psf.ndim)
        return report, parameters, blocks, output_type

    def _record(self, job, image_file, report, parameters, blocks, grid: _PsfOnImage,
                output_type, seconds) -> dict:
        """The sidecar record of the job's output; ``grid`` gives the output's voxel size,
        the PSF's resampling and what was assumed (:meth:`_PsfForImages.for_image`)."""
        from .provenance import deconvolution_record

        frames = int(np.prod(image_file.data.shape[:image_file.data.ndim - self.psf.ndim]))
        options = []
        if blocks is not None:
            options += ["--chunks", ",".join(map(str, blocks["chunks"])),
                        "--depth", str(max(blocks["depth"]))]
        if output_type["dtype"] == "uint16":
            options += ["--dtype", "uint16", "--scale", repr(output_type["scale"])]
        return deconvolution_record(
            image=job.input, psf=self.psf.path, output=job.output, report=report,
            parameters=parameters, spacing=list(grid.spacing) if grid.spacing else None,
            unit=grid.unit, psf_spacing=list(self.psf.spacing) if self.psf.spacing else None,
            resampled=grid.resampled, assumed=grid.assumed, psf_map=self.psf.record, frames=frames,
            stack=image_file.data.ndim > self.psf.ndim, blocks=blocks, seconds=seconds,
            output_type=output_type, command_options=options)


def _work_array(path: str):
    """The float32 result written at ``path``, memory-mapped for reading."""
    import tifffile

    return tifffile.memmap(path, mode="r")


def _deconvolve_batch(args) -> int:
    """Deconvolve every job of the command; the one-image form refuses as it always did,
    many images report each bad file in one line, go on and end with a summary."""
    def say(line: str) -> None:
        if line and line not in said:
            said.add(line)
            print(f"psfkit deconvolve: {line}", file=sys.stderr)

    said: set = set()
    options = _deconvolve_arguments(args)
    jobs, unmatched = _jobs(args)
    single = _single_output(args)
    if single:
        _check_job(jobs[0], args.overwrite)
    work = _FileDeconvolution(args, _psf_for_images(args.psf), options)
    work.total = len(jobs)
    outcomes = _BatchOutcomes(work, say, args.same_choices)
    for line in unmatched:
        say(f"error: {line}")
    report = (lambda line: None) if single else (lambda line: say(f"error: {line}"))
    # the one-image form checked its output above, so it runs even when one exists
    result = _run_batch(jobs, work, outcomes, args, report, overwrite=args.overwrite or single)
    for line in outcomes.assumption_lines(len(result.written)):
        say(line)
    if single:
        return _single_exit_code(result)
    say(result.summary() + (f"; {len(unmatched)} inputs matched no file" if unmatched
                            else ""))
    return EXIT_USAGE if unmatched and not result.failed else result.exit_code()


def _single_exit_code(result) -> int:
    """The one-image form's exit code: its refusal raised as a ``UsageError`` (exit code
    2), a failed computation one line and exit code 1."""
    if not result.failed:
        return EXIT_OK
    failure = result.failed[0][1]
    if failure.usage:
        raise UsageError(str(failure))
    print(f"psfkit deconvolve: {failure}", file=sys.stderr)
    return EXIT_FAILED


class _BatchOutcomes:
    """What the files of a batch gave back, taken in here as each one is written: its
    lines said (once each), what it assumed for a voxel size counted per assumption, and,
    with ``same_choices``, the first written file's choices handed to ``work`` for the
    files after it."""

    #: The file names a line about many files lists before it says how many more.
    LISTED_FILES = 3

    def __init__(self, work: _FileDeconvolution, say, same_choices: bool):
        self.work = work
        self.say = say
        self.same_choices = same_choices
        self.adopted = False
        self.assumed: dict[str, list[str]] = {}

    def __call__(self, job, outcome: _FileOutcome) -> None:
        for note in outcome.notes:
            self.say(note)
        if outcome.assumed is not None:
            self.assumed.setdefault(outcome.assumed, []).append(os.path.basename(job.input))
        if self.same_choices and not self.adopted:
            self.work.options, self.adopted = outcome.parameters, True

    def assumption_lines(self, written: int) -> list[str]:
        """One line per distinct assumption: naming the file when one file made it, else
        the count of the ``written`` files that did and the first few names (sorted, as
        the files of a cluster finish in any order)."""
        lines = []
        for assumption, names in self.assumed.items():
            names = sorted(names)
            if len(names) == 1:
                lines.append(f"{names[0]}: {assumption}")
                continue
            listed = ", ".join(names[:self.LISTED_FILES])
            if len(names) > self.LISTED_FILES:
                listed += f" and {len(names) - self.LISTED_FILES} more"
            lines.append(f"{assumption}, for {len(names)} of {written} files: {listed}")
        return lines


def _is_address(scheduler) -> bool:
    """Whether ``--scheduler`` names a ``dask.distributed`` scheduler (``tcp://...``)."""
    return isinstance(scheduler, str) and "://" in scheduler


def _run_batch(jobs, work, outcomes, args, report, *, overwrite: bool):
    """Run the jobs here, one after the other, or spread whole files over the cluster that
    ``--scheduler ADDRESS`` names (:func:`_run_on_cluster`)."""
    from .batch import run_jobs

    if not _is_address(args.scheduler):
        return run_jobs(jobs, work, overwrite=overwrite, report=report, done=outcomes)
    from .chunked import open_scheduler

    with contextlib.ExitStack() as stack:
        try:
            scheduler = stack.enter_context(open_scheduler(args.scheduler))
        except OSError as error:  # no scheduler at that address
            raise UsageError(f"cannot reach the dask scheduler {args.scheduler} ({error}); "
                             f"check the address, e.g. tcp://host:8786, and that the "
                             f"scheduler runs") from None
        return _run_on_cluster(jobs, work, outcomes, scheduler.client, args, report,
                               overwrite)


def _run_on_cluster(jobs, work, outcomes, client, args, report, overwrite: bool):
    """Whole files as tasks on the workers of ``client``; the files that go in blocks
    (:func:`_in_blocks`) afterwards, from here, their blocks on the same workers. With
    ``--same-choices`` the files are sent one at a time until one is written, so that its
    choices reach the others."""
    from .batch import BatchResult, run_jobs

    whole, in_blocks = [], []
    for job in jobs:
        (in_blocks if _file_in_blocks(job, work.psf.ndim, args) else whole).append(job)
    # on a worker: the file at once, no progress bar of its own
    remote = _FileDeconvolution(argparse.Namespace(**{**vars(args), "scheduler": None,
                                                      "quiet": True}), work.psf, work.options)
    remote.total = len(jobs)
    bar = ProgressBar(f"deconvolving on {args.scheduler}: files", enabled=not args.quiet)

    def done(job, outcome: _FileOutcome) -> None:
        outcomes(job, outcome)
        bar.line(f"wrote {job.output} ({outcome.summary})")

    result, remaining = BatchResult(), whole
    try:
        while remaining:
            group = remaining[:1] if outcomes.same_choices and not outcomes.adopted \
                else remaining
            remaining = remaining[len(group):]
            before = len(whole) - len(remaining) - len(group)  # one count over the groups
            remote.options = work.options
            result.add(run_jobs(group, remote, overwrite=overwrite, report=report,
                                done=done, client=client,
                                progress=_counted_from(bar, before, len(whole))))
    finally:
        bar.close()
    result.add(run_jobs(in_blocks, work, overwrite=overwrite, report=report, done=outcomes))
    return result


def _counted_from(bar: ProgressBar, before: int, total: int):
    """The ``progress(finished, _)`` of a part of a batch: ``bar`` drawn at the ``before``
    files of the parts before it plus the part's own, out of ``total``."""
    return lambda finished, _total: bar(before + finished, total)


def _file_in_blocks(job, psf_ndim: int, args) -> bool:
    """Whether the job's file goes through the blocks (:func:`_in_blocks`) by its header;
    an unreadable file is not, so that its task reports it as the local batch does."""
    from .io import read_image

    try:
        shape = tuple(read_image(job.input, lazy=True).data.shape)
    except (ValueError, OSError):
        return False
    return _in_blocks(shape[len(shape) - psf_ndim:], args)


def _in_blocks(spatial_shape, args) -> bool:
    """Whether an image of frames of ``spatial_shape`` is deconvolved in overlapping
    blocks rather than a frame at once: when ``--chunks`` asks for it, when a frame is
    too large to deconvolve at once (:func:`psfkit.frames.frame_in_blocks`, the one size
    rule, on one machine as on one worker of a cluster), and with ``--scheduler`` naming
    one of dask's local schedulers (threads, processes, synchronous)."""
    from .frames import frame_in_blocks

    return (args.chunks is not None or frame_in_blocks(spatial_shape)
            or (args.scheduler is not None and not _is_address(args.scheduler)))


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, like every other error of
    the command line, with a pointer to ``-h`` instead of the whole usage text."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="psfkit", description="Find the blur between images and undo it.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo(subparsers)
    _add_deconvolve(subparsers)
    from . import _cli_commands as commands

    commands.add_estimate(subparsers)
    commands.add_fit(subparsers)
    commands.add_psf(subparsers)
    commands.add_beads(subparsers)
    commands.add_convolve(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
