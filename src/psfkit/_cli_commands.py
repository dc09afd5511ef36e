"""The capability subcommands of the command line: ``psfkit estimate``, ``fit``, ``psf``,
``beads`` and ``convolve``, each the face of one core function on TIFF files.

Every subcommand reads its inputs as finite float arrays (a missing, unreadable, NaN or
wrongly shaped file is refused in one line naming it), checks every output path before any
work (never an input, never an existing file without ``--overwrite``), shows a progress bar
on stderr where the work is long (``-q`` silences it), prints its results on stdout, and
writes each output as float32 to a temporary file renamed into place only when complete.
The parameters and measured numbers of the run go into the TIFF description, under
``psfkit_<command>``. Exit codes are those of :mod:`psfkit.cli`: 0 success, 1 the
computation failed, 2 bad arguments or input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from .cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ProgressBar,
    UsageError,
    _interrupt,
    _number,
    _publish,
    _read_tiff,
    _same_file,
    _temporary_output,
)

# -------------------------------------------------------------------- shared mechanics


def _shape(text: str):
    """A kernel shape from the command line: ``15`` or one size per axis, ``9,15,15``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an odd size like 15, or one per axis like 9,15,15, got {text!r}"
        ) from None
    return sizes[0] if len(sizes) == 1 else sizes


def _spacing(text: str) -> tuple[float, ...]:
    """A pixel spacing: one positive number, or one per axis like ``0.3,0.1,0.1``."""
    return tuple(_number(part, positive=True) for part in text.split(","))


def _add_common(parser, *, overwrite: bool = True) -> None:
    """The options every subcommand shares: ``--overwrite`` and ``-q``."""
    if overwrite:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace existing output files (never an input)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or messages on stderr (results still go to "
                             "stdout)")


def _guarded(command: str, work, args) -> int:
    """Run ``work(args)`` for subcommand ``command`` and return its exit code; an error is
    reported in one line on stderr with its exit code, never as a traceback.

    Bad input (a :class:`UsageError`, or a ``ValueError``/``TypeError`` of the core, which
    names the argument and the fix) exits 2, Ctrl-C or SIGTERM 130, any other failure 1.
    """
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return work(args)
    except (UsageError, ValueError, TypeError) as error:
        print(f"psfkit {command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\npsfkit {command}: interrupted; files not yet complete were not written",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # out of memory, the file system, ...: one line, not a trace
        print(f"psfkit {command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def read_image(path: str, role: str, ndim=(2, 3)) -> np.ndarray:
    """The TIFF at ``path`` as a finite float32 array of ``ndim`` dimensions, or a
    :class:`UsageError` naming the file (``role`` says which input it is)."""
    from ._validate import as_float_array

    if not os.path.isfile(path):
        raise UsageError(f"{role} file not found: {path}")
    try:
        return as_float_array(_read_tiff(path, role), f"the {role} TIFF {path}", ndim=ndim)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def check_outputs(outputs, inputs, overwrite: bool) -> None:
    """Refuse, before any work, an output (``None`` for one not asked for) that is an input,
    a folder, an existing file without ``overwrite``, named twice, or in a folder that does
    not exist or cannot be written."""
    outputs = [path for path in outputs if path is not None]
    for output in outputs:
        if os.path.exists(output) and any(_same_file(path, output) for path in inputs):
            raise UsageError(f"refusing to overwrite the input {output}; choose another output")
        if os.path.isdir(output):
            raise UsageError(f"the output {output} is a folder; name a file in it")
        if os.path.exists(output) and not overwrite:
            raise UsageError(f"{output} exists; pass --overwrite to replace it")
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder):
            raise UsageError(f"output folder does not exist: {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write to the output folder {folder} (permission "
                             f"denied); choose another output")
    absolute = [os.path.abspath(path) for path in outputs]
    if len(set(absolute)) != len(absolute):
        raise UsageError(f"the same file is named for two outputs: {outputs}")


def write_atomically(path: str, write) -> None:
    """Call ``write(temporary_path)`` on a new file beside ``path``, then rename it into
    place; a failure or Ctrl-C removes the temporary file and leaves ``path`` as it was."""
    temporary = _temporary_output(os.path.dirname(os.path.abspath(path)))
    try:
        write(temporary)
        _publish(temporary, path)
        temporary = None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)


def write_tiff(path: str, array, command: str, record: dict) -> None:
    """Write ``array`` as a float32 TIFF with ``record`` (JSON) in its description under
    ``psfkit_<command>``; a non-finite array is refused, never written."""
    import tifffile

    from ._validate import check_finite_result
    from .metadata import plain

    data = np.asarray(array, dtype=np.float32)
    check_finite_result(data, f"the {command} result for {path}",
                        "nothing was written; check the inputs")
    description = {f"psfkit_{command}": json.dumps(plain(record))}
    # minisblack: a kernel of 3 or 4 planes is planes, not an RGB(A) image
    write_atomically(path, lambda temporary: tifffile.imwrite(
        temporary, data, photometric="minisblack", metadata=description))


def read_record(path: str, command: str) -> dict:
    """The ``psfkit_<command>`` record in a TIFF's description, ``{}`` when there is none."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        metadata = tif.shaped_metadata
    entry = (metadata[0] if metadata else {}).get(f"psfkit_{command}")
    return json.loads(entry) if isinstance(entry, str) else {}


def numbers_text(value, digits: int = 4) -> str:
    """A number, or several as ``(a, b, c)``, with ``digits`` significant digits."""
    values = np.ravel(np.asarray(value, dtype=float))
    texts = [f"{v:.{digits}g}" for v in values]
    return texts[0] if np.ndim(value) == 0 else "(" + ", ".join(texts) + ")"


def _table(rows) -> str:
    """``(name, value)`` rows as two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _progress(label: str, args) -> ProgressBar:
    return ProgressBar(label, enabled=not args.quiet)


# ---------------------------------------------------------------------------- estimate


def add_estimate(subparsers) -> None:
    """Register ``psfkit estimate SHARP BLURRED -o KERNEL.tif``."""
    from .estimate import METHODS

    parser = subparsers.add_parser(
        "estimate", help="find the blur kernel between a sharp and a blurred image",
        description="Find the kernel that blurs SHARP into BLURRED (two TIFF images of the "
                    "same scene, 2D, 3D or RGB) and write it as a TIFF. Prints the shift "
                    "between the images, the gain and offset of the intensities, and the "
                    "residual over the noise: about 1 when the kernel explains the blurred "
                    "image down to its noise.")
    parser.add_argument("sharp", help="the sharp (or sharper) image, TIFF")
    parser.add_argument("blurred", help="the blurred image of the same scene, TIFF")
    parser.add_argument("-o", "--output", required=True,
                        help="kernel TIFF to write (float32, unit sum, centred)")
    parser.add_argument("--residual", default=None,
                        help="also write BLURRED minus the model's prediction, TIFF")
    parser.add_argument("--reblurred", default=None,
                        help="also write the model's prediction of BLURRED, TIFF")
    parser.add_argument("--shape", type=_shape, default=None,
                        help="odd kernel size, e.g. 15 or 9,15,15 (default: chosen from "
                             "the data)")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="solver: lsq (exact, constrained), fourier (fast) or auto "
                             "(default)")
    _add_common(parser)
    parser.set_defaults(handler=lambda args: _guarded("estimate", _run_estimate, args))


def _estimate_report(estimate) -> str:
    """The numbers ``psfkit estimate`` prints."""
    return _table([
        ("kernel", f"{'x'.join(map(str, estimate.shape))} px ({estimate.method}, "
                   f"{estimate.iterations} iterations)"),
        ("shift", f"{numbers_text(estimate.shift)} px"),
        ("gain", numbers_text(estimate.gain)),
        ("offset", numbers_text(estimate.offset)),
        ("noise sigma", numbers_text(estimate.noise_sigma)),
        ("residual/noise", numbers_text(estimate.residual_ratio, 3)),
    ])


def _run_estimate(args) -> int:
    from .estimate import estimate_kernel
    from .metadata import run_metadata

    inputs = (args.sharp, args.blurred)
    check_outputs((args.output, args.residual, args.reblurred), inputs, args.overwrite)
    sharp = read_image(args.sharp, "sharp")
    blurred = read_image(args.blurred, "blurred")
    bar = _progress("estimating", args)
    estimate = estimate_kernel(sharp, blurred, args.shape, method=args.method, callback=bar)
    record = dict(run_metadata(estimate), sharp=os.path.basename(args.sharp),
                  blurred=os.path.basename(args.blurred))
    written = [args.output]
    write_tiff(args.output, estimate.kernel, "estimate", record)
    for path, array in ((args.residual, estimate.residual),
                        (args.reblurred, estimate.reblurred)):
        if path is not None:
            write_tiff(path, array, "estimate", record)
            written.append(path)
    bar.close(f"wrote {', '.join(written)}")
    print(_estimate_report(estimate))
    return EXIT_OK


# --------------------------------------------------------------------------------- fit

#: Model names a user may type beside those of :data:`psfkit.MODELS`.
MODEL_ALIASES = {"defocus": "disk"}


def add_fit(subparsers) -> None:
    """Register ``psfkit fit SHARP BLURRED --model MODEL``."""
    from ._least_squares import LOSSES
    from .models import MODELS

    parser = subparsers.add_parser(
        "fit", help="fit a blur model (Gaussian, defocus, motion, ...) between two images",
        description="Fit a parametric blur model that turns SHARP into BLURRED (two TIFF "
                    "images of the same scene) and print its parameters with their standard "
                    "errors, the gain, offset and shift, and the residual over the noise "
                    "(about 1 when the model explains the blurred image down to its noise).")
    parser.add_argument("sharp", help="the sharp (or sharper) image, TIFF")
    parser.add_argument("blurred", help="the blurred image of the same scene, TIFF")
    parser.add_argument("--model", default="gaussian",
                        choices=[*MODELS, *MODEL_ALIASES, "auto"],
                        help="blur model (default: gaussian; defocus is the disk; auto fits "
                             "every model and keeps the best)")
    parser.add_argument("--json", default=None,
                        help="write the parameters, errors, model and residual ratio as JSON")
    parser.add_argument("-o", "--output", default=None,
                        help="also write the fitted kernel as a TIFF (float32, unit sum)")
    parser.add_argument("--shape", type=_shape, default=None,
                        help="odd size on which the kernel is rendered (default: from the data)")
    parser.add_argument("--spacing", type=_spacing, default=None,
                        help="pixel size, one number or one per axis like 0.3,0.1,0.1; sizes "
                             "are also reported in these units")
    parser.add_argument("--loss", choices=LOSSES, default="linear",
                        help="linear (least squares, default) or a robust loss for pairs that "
                             "are not exactly one image blurred into the other")
    _add_common(parser)
    parser.set_defaults(handler=lambda args: _guarded("fit", _run_fit, args))


def fit_record(fit) -> dict:
    """What ``psfkit fit --json`` writes: the fit's metadata and its residual ratio, the RMS
    residual over the noise (the square root of the reduced chi²)."""
    from .metadata import run_metadata

    return dict(run_metadata(fit), residual_ratio=float(np.sqrt(fit.reduced_chi2)))


def _fit_report(fit, physical: bool) -> str:
    """The table ``psfkit fit`` prints: every parameter with its standard error, and with
    ``physical`` the sizes in the units of the spacing."""
    status = "converged" if fit.success else f"not converged: {fit.message}"
    rows = [("model", f"{fit.model} ({status})"), ("parameter", "value ± error")]
    for name, value in {**fit.params, "gain": fit.gain, "offset": fit.offset,
                        "shift": fit.shift}.items():
        error = fit.errors.get(name)
        rows.append((name, f"{numbers_text(value, 5)} ± "
                           f"{'?' if error is None else numbers_text(error, 2)}"))
    rows += [("FWHM", f"{numbers_text(fit.fwhm)} px"),
             ("ellipticity", f"{fit.ellipticity:.3f}"),
             ("residual/noise", numbers_text(np.sqrt(fit.reduced_chi2), 3))]
    for name, value in (fit.physical if physical else {}).items():
        rows.append((f"{name} (spacing units)", numbers_text(value)))
    if fit.ranking:
        rows.append(("ranking (BIC)", ", ".join(name for name, *_ in fit.ranking)))
    return _table(rows)


def _run_fit(args) -> int:
    from .fit import fit_kernel

    inputs = (args.sharp, args.blurred)
    check_outputs((args.json, args.output), inputs, args.overwrite)
    sharp = read_image(args.sharp, "sharp")
    blurred = read_image(args.blurred, "blurred")
    bar = _progress("fitting", args)
    fit = fit_kernel(sharp, blurred, MODEL_ALIASES.get(args.model, args.model),
                     shape=args.shape, spacing=args.spacing, loss=args.loss, callback=bar)
    record = dict(fit_record(fit), sharp=os.path.basename(args.sharp),
                  blurred=os.path.basename(args.blurred))
    written = []
    if args.output is not None:
        write_tiff(args.output, fit.kernel, "fit", record)
        written.append(args.output)
    if args.json is not None:
        text = json.dumps(record, indent=2, allow_nan=False) + "\n"
        write_atomically(args.json, lambda temporary: Path(temporary).write_text(text))
        written.append(args.json)
    bar.close(f"wrote {', '.join(written)}" if written else "")
    print(_fit_report(fit, physical=args.spacing is not None))
    return EXIT_OK
