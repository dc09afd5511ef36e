"""The batch face of psfkit: ``psfkit demo`` and ``psfkit deconvolve`` on TIFF files.

``psfkit deconvolve in.tif --psf psf.tif -o out.tif`` deconvolves an image (2D, 3D, or a
stack of frames along leading axes) with a PSF. The input is read through a memory map and
the output written into one. Frames are deconvolved one by one in memory
(:func:`psfkit.frames.deconvolve_frames`); when a frame is too large for that
(:func:`psfkit.frames.frame_in_blocks`), or ``--chunks`` or ``--scheduler`` is given, the
image goes through :mod:`psfkit.chunked` and is written block by block, on the local
threads or a ``dask.distributed`` cluster. A progress bar goes to stderr. The output is
written to a temporary file next to its destination and renamed into place only when
complete, so a crash or Ctrl-C never leaves a half-written file; the input is never
overwritten.

Exit codes: 0 success, 1 the computation failed, 2 bad arguments or unreadable input,
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import signal
import sys
import tempfile
import time

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
        "deconvolve", help="deconvolve a TIFF image with a TIFF PSF",
        description="Deconvolve a TIFF image (2D, 3D, or frames along leading axes) with a "
                    "TIFF PSF. Without options every choice is automatic.")
    parser.add_argument("image", help="input TIFF")
    parser.add_argument("--psf", required=True, help="PSF TIFF, 2D or 3D, centred")
    parser.add_argument("-o", "--output", required=True, help="output TIFF (float32)")
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
    parser.add_argument("--chunks", type=_chunks, default=None,
                        help="deconvolve in overlapping blocks of this size, e.g. 64,512,512 "
                             "or 'auto' (default: only for frames over 256 MiB as float32)")
    parser.add_argument("--depth", type=_depth, default=None,
                        help="overlap between blocks in pixels (default: from the PSF)")
    parser.add_argument("--memory-limit", type=_memory_limit, default=2.0,
                        help="GiB the blocks in flight may use together; sets the default "
                             "block size (default: 2)")
    parser.add_argument("--scheduler", default=None,
                        help="dask scheduler: an address such as tcp://host:8786, or "
                             "threads, processes, synchronous (implies blocks)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (never the input)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_deconvolve)


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

    def close(self, message: str = "") -> None:
        if self.enabled:
            if self.interactive:
                self._draw("\r")
                self.stream.write("\n")
            if message:
                self.stream.write(message + "\n")
            self.stream.flush()


def _read_tiff(path: str, role: str, *, lazy: bool = False):
    """The TIFF's array: with ``lazy``, a :class:`psfkit.chunked.FileArray` that reads
    blocks on demand when the pixels are stored uncompressed in one piece; else read."""
    import tifffile

    from .chunked import FileArray

    try:
        if lazy:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                offset = series.dataoffset
                if offset is not None:
                    dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
                    return FileArray(path, offset, series.shape, dtype)
        return tifffile.imread(path)
    except Exception as error:  # tifffile raises many kinds on a bad file
        raise UsageError(f"cannot read the {role} TIFF {path}: {error}") from None


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


def _record_metadata(path: str, parameters: dict, args) -> None:
    """Put the run's parameters and file names into the finished TIFF's description, under
    ``psfkit_deconvolve`` beside tifffile's own entries (the output is created before the
    run has made its choices)."""
    import tifffile

    from .metadata import plain

    entries = dict(plain(parameters), psf=os.path.basename(args.psf),
                   source=os.path.basename(args.image))
    description = json.loads(tifffile.tiffcomment(path))
    description["psfkit_deconvolve"] = json.dumps(entries)
    tifffile.tiffcomment(path, json.dumps(description))


def _check_paths(args) -> None:
    for path, role in ((args.image, "image"), (args.psf, "PSF")):
        if not os.path.isfile(path):
            raise UsageError(f"{role} file not found: {path}")
        if os.path.exists(args.output) and _same_file(path, args.output):
            raise UsageError(f"refusing to overwrite the input {path}; choose another output")
    if os.path.isdir(args.output):
        raise UsageError(f"the output {args.output} is a folder; name a file in it, e.g. "
                         f"{os.path.join(args.output, 'deconvolved.tif')}")
    if os.path.exists(args.output) and not args.overwrite:
        raise UsageError(f"{args.output} exists; pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to the output folder {folder} (permission denied); "
                         f"choose another output")


def _deconvolve_arguments(args) -> dict:
    options = dict(method=args.method, iterations=args.iterations,
                   regularization=args.regularization)
    if args.no_acceleration:
        options["acceleration"] = None
    if args.background is not None:
        options["background"] = args.background
    return options


def _deconvolve_in_blocks(image, psf, options, out, args, bar) -> dict:
    """Plan for the scheduler's concurrency, then write block by block into the memory map
    ``out``, releasing its pages after every group of blocks; return the parameters used."""
    from .chunked import chunked_graph, open_scheduler, plan_chunked, store_blocks

    chunks = None if args.chunks in (None, "auto") else args.chunks
    with open_scheduler(args.scheduler) as scheduler:
        plan = plan_chunked(image, psf, chunks=chunks, depth=args.depth,
                            memory_limit=args.memory_limit * 2**30,
                            concurrency=scheduler.per_worker, **options)
        bar.label = f"deconvolving {plan.block_count} blocks"
        store_blocks(chunked_graph(image, psf, plan), out, scheduler, callback=bar,
                     after_group=lambda: _release_pages(out))
    return plan.parameters


def _deconvolve_into(out, image, psf, args, bar) -> dict:
    """Deconvolve ``image`` into the memory map ``out``, frame by frame or in blocks;
    return the parameters used (of the first frame)."""
    from ._validate import check_finite_result
    from .frames import deconvolve_frames, frame_in_blocks

    options = _deconvolve_arguments(args)
    spatial = image.shape[len(image.shape) - psf.ndim:]
    if args.chunks is not None or args.scheduler is not None or frame_in_blocks(spatial):
        parameters = _deconvolve_in_blocks(image, psf, options, out, args, bar)
    else:
        parameters = deconvolve_frames(image, psf, out=out, callback=bar,
                                       **options).reports[0]
    check_finite_result(out, "the result", "nothing was written; change the options, e.g. "
                        "leave --regularization and --background automatic")
    return parameters


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
        return _deconvolve_files(args)
    except UsageError as error:
        print(f"psfkit deconvolve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # the stop signals stay ignored: the process is ending, and a Ctrl-C between a
        # restored handler and the exit would turn the clean exit 130 into a traceback
        previous = {}
        print("\npsfkit deconvolve: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _read_inputs(args):
    """The PSF (2D or 3D) and the image (read lazily where the file allows), checked to fit
    together."""
    psf = np.asarray(_read_tiff(args.psf, "PSF"))
    psf = np.squeeze(psf) if psf.ndim > 3 else psf
    image = _read_tiff(args.image, "image", lazy=True)
    shape = tuple(image.shape)
    if psf.ndim not in (2, 3) or len(shape) < psf.ndim:
        raise UsageError(f"the PSF must be 2D or 3D and have at most the image's dimensions; "
                         f"got PSF {psf.shape} and image {shape}")
    spatial = shape[len(shape) - psf.ndim:]
    if any(k > n for k, n in zip(psf.shape, spatial, strict=True)):
        raise UsageError(f"the PSF {psf.shape} is larger than the image {spatial}")
    return psf, image


def _publish(temporary: str, output: str) -> None:
    """Give the finished temporary file the usual permissions and rename it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp made it private
    os.replace(temporary, output)


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


def _temporary_output(folder: str) -> str:
    """A new empty temporary file in ``folder``, beside the output it becomes."""
    try:
        descriptor, temporary = tempfile.mkstemp(suffix=".tif", prefix=".psfkit-", dir=folder)
    except OSError as error:
        raise UsageError(f"cannot create a file in the output folder {folder}: "
                         f"{error.strerror}") from None
    os.close(descriptor)
    return temporary


def _deconvolve_files(args) -> int:
    import tifffile

    _check_paths(args)
    psf, image = _read_inputs(args)
    temporary = _temporary_output(os.path.dirname(os.path.abspath(args.output)))
    bar = ProgressBar("deconvolving", enabled=not args.quiet)
    try:
        try:
            # minisblack: a stack of 3 or 4 frames is frames, not an RGB(A) image
            out = tifffile.memmap(temporary, shape=tuple(image.shape), dtype=np.float32,
                                  photometric="minisblack")
            parameters = _deconvolve_into(out, image, psf, args, bar)
            out.flush()
            del out  # closes the map before the description is rewritten
            _record_metadata(temporary, parameters, args)
            _publish(temporary, args.output)
            temporary = None
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from None
        except _computation_failures() as error:
            bar.close()
            hint = ("; a dask worker died, usually for exceeding its memory: give the "
                    "workers more memory or pass smaller --chunks"
                    if type(error).__name__ == "KilledWorker" else "")
            print(f"psfkit deconvolve: failed: {type(error).__name__}: {error}{hint}",
                  file=sys.stderr)
            return EXIT_FAILED
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)
    bar.close(f"wrote {args.output} ({_summary(parameters)})")
    return EXIT_OK


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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
