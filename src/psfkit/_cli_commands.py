"""The capability subcommands of the command line: ``psfkit estimate``, ``fit``, ``psf``,
``beads`` and ``convolve``, each the face of one core function on TIFF files.

Every subcommand reads its inputs as finite float arrays (a missing, unreadable, NaN or
wrongly shaped file is refused in one line naming it), checks every output path before any
work (never an input, never an existing file without ``--overwrite``), shows a progress bar
on stderr where the work is long (``-q`` silences it), prints its results on stdout, and
writes each output as float32 to a temporary file renamed into place only when complete.
Images are read and written with their voxel size (:mod:`psfkit.io`); beside each output a
JSON sidecar ``<output>.json`` records the psfkit version, the inputs with their checksums
(:func:`provenance`) and the parameters and measured numbers of the run. Exit codes are those of
:mod:`psfkit.cli`: 0 success, 1 the computation failed, 2 bad arguments or input, 130
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import os
import signal
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
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
    _positive_int,
    _same_file,
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


def _subcommand(subparsers, name: str, run, *, help: str, description: str):
    """A new subcommand ``name`` whose handler is ``run(args)`` under :func:`_guarded`,
    with the options every subcommand shares: ``--overwrite`` and ``-q``."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (never an input)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or messages on stderr (results still go to "
                             "stdout)")
    parser.set_defaults(handler=lambda args: _guarded(name, run, args))
    return parser


def _add_spacing(parser) -> None:
    """``--spacing``: the pixel size, with which sizes are also reported in its units."""
    parser.add_argument("--spacing", type=_spacing, default=None,
                        help="pixel size, one number or one per axis like 0.3,0.1,0.1; "
                             "sizes are also reported in these units")


def _add_pair(parser) -> None:
    """The two positional images of ``estimate`` and ``fit``."""
    parser.add_argument("sharp", help="the sharp (or sharper) image, TIFF")
    parser.add_argument("blurred", help="the blurred image of the same scene, TIFF")


def _read_pair(args) -> tuple[Input, Input]:
    """The sharp and blurred images named by ``args``."""
    return read_input(args.sharp, "sharp"), read_input(args.blurred, "blurred")


def _pair_paths(args) -> dict:
    """The pair's files by role, as a run's record holds them."""
    return {"sharp": args.sharp, "blurred": args.blurred}


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


@dataclass(frozen=True)
class Input:
    """An input file read and checked: its finite float32 ``data``, the voxel size of its
    spatial axes in µm (``None`` when the file does not say) and its ``path``."""

    data: np.ndarray
    spacing: tuple | None
    path: str


def read_input(path: str, role: str, ndim=(2, 3)) -> Input:
    """The TIFF at ``path`` (:func:`psfkit.io.read_image`) as a finite float32 array of
    ``ndim`` dimensions, or a :class:`UsageError` naming the file (``role`` says which
    input it is)."""
    from ._validate import as_float_array
    from .io import read_image

    try:
        image = read_image(path, role=role)
        data = as_float_array(image.data, f"the {role} TIFF {path}", ndim=ndim)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    return Input(data, image.spatial_spacing(data.ndim), path)


def chosen_spacing(option, image: Input) -> tuple | None:
    """The voxel size a run uses: ``--spacing`` (one number for every axis, or one per
    axis) when given, else the one ``image``'s file records (``None`` when unknown)."""
    if option is None:
        return image.spacing
    return option * image.data.ndim if len(option) == 1 else option


def provenance(command: str, inputs: dict[str, str], result: dict) -> dict:
    """The record written beside an output, in the words of :mod:`psfkit.provenance`: the
    psfkit version, when, the subcommand, each input file with its ``role``, absolute path
    and SHA-256, and the ``result``'s metadata."""
    from . import __version__
    from .provenance import _file_entry

    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"psfkit_version": __version__, "created": created, "subcommand": command,
            "inputs": [{"role": role, **_file_entry(path)} for role, path in inputs.items()],
            **result}


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


def write_output(path: str, array, spacing, record: dict) -> None:
    """Write ``array`` as a float32 TIFF with its voxel size (:func:`psfkit.io.write_image`,
    atomically) and ``record`` in its JSON sidecar ``<path>.json``; a non-finite array or
    record is refused before either is written."""
    from ._validate import check_finite_result
    from .io import sidecar_text, write_image, write_sidecar

    data = np.asarray(array, dtype=np.float32)
    check_finite_result(data, f"the result for {path}", "nothing was written; check the "
                        "inputs")
    sidecar_text(path, record)
    write_image(path, data, spacing)
    write_sidecar(path, record)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (JSON, CSV) to ``path`` atomically (:func:`psfkit.io.atomic_output`)."""
    from .io import atomic_output

    with atomic_output(path) as temporary:
        Path(temporary).write_text(text, encoding="utf-8")


def numbers_text(value, digits: int = 4, *, decimals: int | None = None) -> str:
    """A number, or several as ``(a, b, c)``, with ``digits`` significant digits (or,
    with ``decimals``, that many digits after the point, as a ratio near 1 reads best)."""
    values = np.ravel(np.asarray(value, dtype=float))
    texts = [f"{v:.{decimals}f}" if decimals is not None else f"{v:.{digits}g}"
             for v in values]
    return texts[0] if np.ndim(value) == 0 else "(" + ", ".join(texts) + ")"


def _table(rows) -> str:
    """``(name, value)`` rows as two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _progress(label: str, args) -> ProgressBar:
    return ProgressBar(label, enabled=not args.quiet)


# ----------------------------------------------------------------------- PSF maps (--grid)


def _add_grid(parser, what: str) -> None:
    """``--grid ROWS COLS``: measure ``what`` per tile of a grid and write a PSF map."""
    parser.add_argument("--grid", type=_positive_int, nargs="+", default=None,
                        metavar="N",
                        help=f"for a blur that changes across the field: {what} on a grid "
                             f"of ROWS x COLS overlapping tiles (for a volume, over its "
                             f"last two axes, or one count per axis) and write a PSF map "
                             f"to -o, which psfkit deconvolve --psf takes")


def _refuse_with_grid(args, options: dict) -> None:
    """A ``UsageError`` when an option that has no meaning for a map is given with
    ``--grid`` (``options``: attribute name to the option's spelling and why)."""
    for attribute, (option, reason) in options.items():
        if getattr(args, attribute) is not None:
            raise UsageError(f"{option} is not available with --grid: {reason}")


def _finite_or_none(value):
    """A tile's diagnostic as JSON values, a non-finite number (a failed tile) as None."""
    value = np.asarray(value)
    if value.ndim:
        return [_finite_or_none(v) for v in value]
    item = value.item()
    return None if isinstance(item, float) and not np.isfinite(item) else item


def map_tiles(psf_map) -> list[dict]:
    """One record per tile of ``psf_map`` in C order of the grid: its grid index, centre
    (pixels), every per-tile diagnostic (None where a failed tile has no number) and, for
    a fitted model's map, the smoothed parameters at its centre (``smoothed``)."""
    tiles = []
    for number, (index, centre) in enumerate(zip(np.ndindex(*psf_map.grid),
                                                 psf_map.tile_centres(), strict=True)):
        tile = {"tile": list(index), "centre": [float(c) for c in centre]}
        for name, values in psf_map.diagnostics.items():
            tile[name] = _finite_or_none(np.asarray(values).reshape(
                (-1, *np.shape(values)[len(psf_map.grid):]))[number])
        if psf_map.parameter_field is not None:
            tile["smoothed"] = psf_map.params_at(centre)
        tiles.append(tile)
    return tiles


def map_metadata(psf_map) -> dict:
    """The record of a PSF map a subcommand writes: its grid, image and PSF shape, model
    and :func:`map_tiles`."""
    return {"grid": list(psf_map.grid), "image_shape": list(psf_map.shape),
            "psf_shape": list(psf_map.psf_shape), "model": psf_map.model,
            "tiles": map_tiles(psf_map)}


def _map_report(psf_map, columns) -> str:
    """The table a map subcommand prints: the grid, the reliable tiles, and per tile the
    ``columns`` (``(label, function of the tile's record)``)."""
    reliable = np.asarray(psf_map.diagnostics.get("reliable", np.ones(psf_map.grid, bool)))
    rows = [("map", f"{' x '.join(map(str, psf_map.grid))} tiles of "
                    f"{'x'.join(map(str, psf_map.psf_shape))} px PSFs over "
                    f"{'x'.join(map(str, psf_map.shape))} px"),
            ("reliable", f"{int(reliable.sum())} of {reliable.size} tiles"
                         + ("" if reliable.all() else " (the others are filled from their "
                                                      "neighbours)"))]
    for tile in map_tiles(psf_map):
        values = ", ".join(f"{label} {text(tile)}" for label, text in columns)
        rows.append((f"tile {tuple(tile['tile'])} at {numbers_text(tile['centre'])}", values))
    return _table(rows)


def _tile_number(value, **format) -> str:
    """A tile's number (or numbers) as text, ``-`` where the tile has none (None: it
    failed, or a region has no beads)."""
    if value is None or None in np.ravel(np.asarray(value, dtype=object)).tolist():
        return "-"
    return numbers_text(value, **format)


def _write_map(path: str, psf_map, spacing, command: str, inputs: dict) -> dict:
    """Write ``psf_map`` to ``path`` (:func:`psfkit.io.save_psf_map`) with its sidecar,
    ``command``'s :func:`provenance` of ``inputs`` and :func:`map_metadata`; return that
    record."""
    from .io import save_psf_map

    record = provenance(command, inputs, map_metadata(psf_map))
    save_psf_map(path, psf_map, spacing, provenance=record)
    return record


# ---------------------------------------------------------------------------- estimate


def add_estimate(subparsers) -> None:
    """Register ``psfkit estimate SHARP BLURRED -o KERNEL.tif``."""
    from .estimate import METHODS

    parser = _subcommand(
        subparsers, "estimate", _run_estimate,
        help="find the blur kernel between a sharp and a blurred image",
        description="Find the kernel that blurs SHARP into BLURRED (two TIFF images of the "
                    "same scene, 2D, 3D or RGB) and write it as a TIFF. Prints the shift "
                    "between the images, the gain and offset of the intensities, and the "
                    "residual over the noise: about 1 when the kernel explains the blurred "
                    "image down to its noise.")
    _add_pair(parser)
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
    _add_grid(parser, "a kernel per tile")


def _estimate_report(estimate) -> str:
    """The numbers ``psfkit estimate`` prints."""
    return _table([
        ("kernel", f"{'x'.join(map(str, estimate.shape))} px ({estimate.method}, "
                   f"{estimate.iterations} iterations)"),
        ("shift", f"{numbers_text(estimate.shift)} px"),
        ("gain", numbers_text(estimate.gain)),
        ("offset", numbers_text(estimate.offset)),
        ("noise sigma", numbers_text(estimate.noise_sigma)),
        ("residual/noise", numbers_text(estimate.residual_ratio, decimals=2)),
    ])


def _run_estimate(args) -> int:
    from .estimate import estimate_kernel
    from .metadata import run_metadata

    if args.grid is not None:
        return _run_estimate_map(args)
    inputs = (args.sharp, args.blurred)
    check_outputs((args.output, args.residual, args.reblurred), inputs, args.overwrite)
    sharp, blurred = _read_pair(args)
    bar = _progress("estimating", args)
    estimate = estimate_kernel(sharp.data, blurred.data, args.shape, method=args.method,
                               callback=bar)
    record = provenance("estimate", _pair_paths(args), run_metadata(estimate))
    spacing = blurred.spacing or sharp.spacing
    written = [args.output]
    write_output(args.output, estimate.kernel, spacing, record)
    for path, array in ((args.residual, estimate.residual),
                        (args.reblurred, estimate.reblurred)):
        if path is not None:
            write_output(path, array, spacing, record)
            written.append(path)
    bar.close(f"wrote {', '.join(written)}")
    print(_estimate_report(estimate))
    return EXIT_OK


def _run_estimate_map(args) -> int:
    """``psfkit estimate --grid``: a kernel per tile, written as a PSF map."""
    from .maps import estimate_kernel_map

    _refuse_with_grid(args, {
        "residual": ("--residual", "the map's sidecar records each tile's residual/noise"),
        "reblurred": ("--reblurred", "the map's sidecar records each tile's residual/noise")})
    check_outputs((args.output,), (args.sharp, args.blurred), args.overwrite)
    sharp, blurred = _read_pair(args)
    bar = _progress(f"estimating on {' x '.join(map(str, args.grid))} tiles", args)
    psf_map = estimate_kernel_map(sharp.data, blurred.data, args.grid, args.shape,
                                  method=args.method, callback=bar)
    _write_map(args.output, psf_map, blurred.spacing or sharp.spacing, "estimate",
               _pair_paths(args))
    bar.close(f"wrote {args.output}")
    print(_map_report(psf_map, [
        ("residual/noise", lambda t: _tile_number(t["residual_ratio"], decimals=2)),
        ("shift (px)", lambda t: _tile_number(t["shift"], digits=3))]))
    return EXIT_OK


# --------------------------------------------------------------------------------- fit

#: Model names a user may type beside those of :data:`psfkit.MODELS`.
MODEL_ALIASES = {"defocus": "disk"}


def add_fit(subparsers) -> None:
    """Register ``psfkit fit SHARP BLURRED --model MODEL``."""
    from ._least_squares import LOSSES
    from .models import MODELS

    parser = _subcommand(
        subparsers, "fit", _run_fit,
        help="fit a blur model (Gaussian, defocus, motion, ...) between two images",
        description="Fit a parametric blur model that turns SHARP into BLURRED (two TIFF "
                    "images of the same scene) and print its parameters with their standard "
                    "errors, the gain, offset and shift, and the residual over the noise "
                    "(about 1 when the model explains the blurred image down to its noise).")
    _add_pair(parser)
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
    _add_spacing(parser)
    parser.add_argument("--loss", choices=LOSSES, default="linear",
                        help="linear (least squares, default) or a robust loss for pairs that "
                             "are not exactly one image blurred into the other")
    _add_grid(parser, "the model fitted per tile, its parameters smoothed over the field,")
    parser.add_argument("--parameter-maps", default=None, metavar="STEM",
                        help="with --grid: also write each smoothed parameter at every "
                             "pixel as a TIFF, STEM_<parameter>.tif (e.g. STEM_sigma.tif)")


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
             ("residual/noise", numbers_text(np.sqrt(fit.reduced_chi2), decimals=2))]
    sizes = dict(fit.params_physical or {}, FWHM=fit.fwhm_physical) if physical else {}
    for name, value in sizes.items():
        if value is not None:
            rows.append((f"{name} (spacing units)", numbers_text(value)))
    if fit.ranking:
        rows.append(("ranking (BIC)", ", ".join(name for name, *_ in fit.ranking)))
    return _table(rows)


def _run_fit(args) -> int:
    from .fit import fit_kernel
    from .metadata import plain

    if args.grid is not None:
        return _run_fit_map(args)
    if args.parameter_maps is not None:
        raise UsageError("--parameter-maps needs --grid: one fit has one set of parameters")
    inputs = (args.sharp, args.blurred)
    check_outputs((args.json, args.output), inputs, args.overwrite)
    sharp, blurred = _read_pair(args)
    bar = _progress("fitting", args)
    spacing = chosen_spacing(args.spacing, sharp)
    fit = fit_kernel(sharp.data, blurred.data, MODEL_ALIASES.get(args.model, args.model),
                     shape=args.shape, spacing=spacing, loss=args.loss, callback=bar)
    record = provenance("fit", _pair_paths(args), fit_record(fit))
    written = []
    if args.output is not None:
        write_output(args.output, fit.kernel, spacing, record)
        written.append(args.output)
    if args.json is not None:
        write_text(args.json, json.dumps(plain(record), indent=2, allow_nan=False) + "\n")
        written.append(args.json)
    bar.close(f"wrote {', '.join(written)}" if written else "")
    print(_fit_report(fit, physical=spacing is not None))
    return EXIT_OK


def _parameter_map_paths(stem: str | None, model: str) -> dict:
    """The TIFF of each of ``model``'s parameters (the arguments of its function in
    :mod:`psfkit.models` besides the shape) that ``--parameter-maps STEM`` writes."""
    import inspect

    from . import models

    if stem is None:
        return {}
    arguments = inspect.signature(getattr(models, model)).parameters.values()
    return {argument.name: f"{stem}_{argument.name}.tif" for argument in arguments
            if argument.name != "shape" and argument.kind is argument.POSITIONAL_OR_KEYWORD}


def _run_fit_map(args) -> int:
    """``psfkit fit --grid``: the model per tile, smoothed, written as a PSF map, the
    per-tile and smoothed parameters as JSON and the parameter maps as TIFFs."""
    from .maps import fit_kernel_map
    from .metadata import plain

    model = MODEL_ALIASES.get(args.model, args.model)
    if model == "auto":
        raise UsageError("--model auto is not available with --grid: one model holds over "
                         "the field; name it, e.g. --model gaussian")
    maps = _parameter_map_paths(args.parameter_maps, model)
    inputs = (args.sharp, args.blurred)
    check_outputs((args.json, args.output, *maps.values()), inputs, args.overwrite)
    sharp, blurred = _read_pair(args)
    spacing = chosen_spacing(args.spacing, sharp)
    bar = _progress(f"fitting on {' x '.join(map(str, args.grid))} tiles", args)
    psf_map = fit_kernel_map(sharp.data, blurred.data, model, args.grid, shape=args.shape,
                             spacing=spacing, loss=args.loss, callback=bar)
    record = provenance("fit", _pair_paths(args), map_metadata(psf_map))
    written = []
    if args.output is not None:
        _write_map(args.output, psf_map, spacing, "fit", _pair_paths(args))
        written.append(args.output)
    if args.json is not None:
        write_text(args.json, json.dumps(plain(record), indent=2, allow_nan=False) + "\n")
        written.append(args.json)
    images = psf_map.parameter_field.images(psf_map.shape) if maps else {}
    for name, path in maps.items():
        write_output(path, images[name], spacing,
                     dict(record, parameter=name))
        written.append(path)
    bar.close(f"wrote {', '.join(written)}" if written else "")
    print(_map_report(psf_map, [
        *[(name, lambda t, name=name: _tile_number(t["smoothed"][name], digits=4))
          for name in psf_map.parameter_field.names],
        ("residual/noise", lambda t: _tile_number(t["residual_ratio"], decimals=2))]))
    return EXIT_OK


# ------------------------------------------------------------------------ psf and beads


def _add_psf_options(parser) -> None:
    """The options ``psf`` and ``beads`` share: the output, its shape and the spacing."""
    parser.add_argument("-o", "--output", required=True,
                        help="PSF TIFF to write (float32, unit sum, centred)")
    parser.add_argument("--shape", type=_shape, default=None,
                        help="odd PSF size, e.g. 25 or 15,25,25 (default: where the signal "
                             "sinks into the noise, plus a margin)")
    _add_spacing(parser)
    parser.add_argument("--saturation", type=_number, default=None,
                        help="camera saturation level (default: detected)")


def add_psf(subparsers) -> None:
    """Register ``psfkit psf BEAD.tif -o PSF.tif``."""
    parser = _subcommand(
        subparsers, "psf", _run_psf,
        help="turn a photo of one bead, LED or star into a clean PSF",
        description="Clean, centre and normalise the photo of one point source (a bead, an "
                    "LED, a star; 2D or 3D TIFF): hot pixels replaced, background removed, "
                    "noise outside the source cut. Prints its centre, width, SNR, "
                    "background and noise, and any warning (saturated, cut by the edge, "
                    "no background around the source).")
    parser.add_argument("image", help="the photo of the point source, TIFF")
    _add_psf_options(parser)
    parser.add_argument("--centre", type=_spacing, default=None,
                        help="rough position of the source, like 30,34 (default: the "
                             "brightest)")


def _warning_rows(messages) -> list[tuple[str, str]]:
    return [("warning", message) for message in messages]


def _width_rows(result, physical: bool) -> list[tuple[str, str]]:
    """The FWHM of a prepared or averaged PSF, with ``physical`` also in spacing units."""
    rows = [("FWHM", f"{numbers_text(result.fwhm)} px")]
    if physical:
        rows.append(("FWHM (spacing units)", numbers_text(result.fwhm_physical)))
    return rows


def _psf_report(report, physical: bool) -> str:
    """The numbers ``psfkit psf`` prints."""
    return _table([
        ("centre", f"{numbers_text(report.centre)} px"),
        *_width_rows(report, physical),
        ("SNR", numbers_text(report.snr, 3)),
        ("background", numbers_text(report.background)),
        ("noise sigma", numbers_text(report.noise_sigma)),
        ("flux", numbers_text(report.flux)),
        ("hot pixels", str(report.hot_pixels)),
        *_warning_rows(report.warnings),
    ])


def _run_psf(args) -> int:
    from .metadata import run_metadata
    from .psf import PsfWarning, prepare_psf

    check_outputs((args.output,), (args.image,), args.overwrite)
    image = read_input(args.image, "image")
    spacing = chosen_spacing(args.spacing, image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)  # in the report, printed below
        psf, report = prepare_psf(image.data, args.shape, centre=args.centre,
                                  saturation=args.saturation, spacing=spacing,
                                  return_info=True)
    record = provenance("psf", {"image": args.image}, run_metadata(report))
    write_output(args.output, psf, spacing, record)
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    print(_psf_report(report, physical=spacing is not None))
    return EXIT_OK


def add_beads(subparsers) -> None:
    """Register ``psfkit beads IMAGE.tif -o PSF.tif [--csv beads.csv]``."""
    parser = _subcommand(
        subparsers, "beads", _run_beads,
        help="average the beads of one image into a PSF, with a table of every bead",
        description="Detect the sub-resolution beads in one image (2D or 3D TIFF), reject "
                    "those at the edge, touching a neighbour, saturated or unlike the others, "
                    "then register and average the rest into a PSF. Prints how many were "
                    "used and why the others were not; --csv writes one row per bead.")
    parser.add_argument("image", help="the image of beads, TIFF")
    _add_psf_options(parser)
    parser.add_argument("--csv", default=None,
                        help="write one row per bead: position, flux, SNR, used, reason")
    parser.add_argument("--threshold", type=lambda text: _number(text, positive=True),
                        default=6.0, help="detection threshold in noise sigmas (default: 6)")
    parser.add_argument("--max-beads", type=_positive_int, default=None,
                        help="use at most this many beads, the brightest (default: all)")
    parser.add_argument("--method", choices=("mean", "median"), default="mean",
                        help="mean (default; least noise) or median (robust to a bad bead)")
    parser.add_argument("--bead-diameter", type=lambda text: _number(text, positive=True),
                        default=None, help="known bead diameter in spacing units, divided "
                                           "out of the average")
    _add_grid(parser, "an average of the beads of each region")


#: Axis names of a bead's position in the CSV, by dimensionality.
_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}


def bead_rows(beads: dict) -> list[dict]:
    """One CSV row per bead of :attr:`psfkit.BeadAverage.beads`: its position per axis, flux
    and SNR (empty when it was rejected before being measured), whether it was used, and
    the reason (``accepted`` or why it was rejected)."""
    def measured(value) -> str:
        return f"{value:.6g}" if np.isfinite(value) else ""

    axes = _AXES[beads["position"].shape[1]]
    return [{"bead": i + 1,
             **{axis: f"{p:.3f}" for axis, p in zip(axes, position, strict=True)},
             "flux": measured(flux), "snr": measured(snr), "used": str(bool(used)).lower(),
             "reason": reason}
            for i, (position, flux, snr, used, reason) in enumerate(zip(
                beads["position"], beads["flux"], beads["snr"], beads["accepted"],
                beads["reason"], strict=True))]


def _csv_text(rows: list[dict]) -> str:
    """``rows`` (dicts with the same keys) as CSV with a header line."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _beads_report(average, physical: bool) -> str:
    """The numbers ``psfkit beads`` prints, with the count of each rejection reason."""
    reasons = Counter(str(r) for r in average.beads["reason"] if r != "accepted")
    return _table([
        ("beads", f"{len(average.beads['reason'])} detected, {average.beads_used} used"),
        *[("rejected", f"{count} {reason}") for reason, count in reasons.most_common()],
        ("PSF", f"{'x'.join(map(str, average.psf.shape))} px"),
        *_width_rows(average, physical),
        ("SNR", numbers_text(average.snr, 3)),
        ("spread", f"{numbers_text(average.spread, 3)} (bead vs average)"),
        *_warning_rows(average.warnings),
    ])


def _run_beads(args) -> int:
    from .beads import average_beads
    from .metadata import run_metadata
    from .psf import PsfWarning

    if args.grid is not None:
        return _run_beads_map(args)
    check_outputs((args.output, args.csv), (args.image,), args.overwrite)
    image = read_input(args.image, "image")
    spacing = chosen_spacing(args.spacing, image)
    bar = _progress("beads", args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)  # in the report, printed below
        average = average_beads(image.data, spacing=spacing, shape=args.shape,
                                method=args.method, threshold=args.threshold,
                                saturation=args.saturation, max_beads=args.max_beads,
                                bead_diameter=args.bead_diameter, callback=bar)
    record = provenance("beads", {"image": args.image}, run_metadata(average))
    write_output(args.output, average.psf, spacing, record)
    written = [args.output]
    if args.csv is not None:
        write_text(args.csv, _csv_text(bead_rows(average.beads)))
        written.append(args.csv)
    bar.close(f"wrote {', '.join(written)}")
    print(_beads_report(average, physical=spacing is not None))
    return EXIT_OK


def _run_beads_map(args) -> int:
    """``psfkit beads --grid``: the beads of each region averaged, written as a PSF map."""
    from .beads import average_beads
    from .psf import PsfWarning

    _refuse_with_grid(args, {"csv": ("--csv", "the map's sidecar records the beads used "
                                              "and the FWHM of each region")})
    check_outputs((args.output,), (args.image,), args.overwrite)
    image = read_input(args.image, "image")
    spacing = chosen_spacing(args.spacing, image)
    bar = _progress(f"beads on {' x '.join(map(str, args.grid))} regions", args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsfWarning)  # a region's warnings are its own
        psf_map = average_beads(image.data, spacing=spacing, shape=args.shape,
                                method=args.method, threshold=args.threshold,
                                saturation=args.saturation, max_beads=args.max_beads,
                                bead_diameter=args.bead_diameter, grid=args.grid,
                                callback=bar)
    _write_map(args.output, psf_map, spacing, "beads", {"image": args.image})
    bar.close(f"wrote {args.output}")
    print(_map_report(psf_map, [
        ("beads", lambda t: str(t["beads_used"])),
        ("FWHM (px)", lambda t: _tile_number(t["fwhm"], digits=3))]))
    return EXIT_OK


# ---------------------------------------------------------------------------- convolve

#: The subcommands whose kernels carry the gain, offset and shift of their pair.
CALIBRATED_COMMANDS = ("estimate", "fit")


def add_convolve(subparsers) -> None:
    """Register ``psfkit convolve KERNEL.tif IMAGE.tif... [-o DIR] [--compare B.tif]``."""
    parser = _subcommand(
        subparsers, "convolve", _run_convolve,
        help="apply a saved kernel to other images: predict their blurred versions",
        description="Blur each IMAGE with KERNEL and write IMAGE's stem + '_convolved.tif'. "
                    "A kernel written by psfkit estimate or fit carries the gain, offset and "
                    "shift of the pair it was found on, and they are applied too, so a kernel "
                    "estimated once on one sharp/blurred pair predicts the blurred version of "
                    "other sharp images taken the same way. With --compare, the prediction is "
                    "compared with the real blurred image: the residual over its noise is "
                    "about 1 when the kernel explains it down to the noise.")
    parser.add_argument("kernel", help="the kernel TIFF (from psfkit estimate, fit, psf, ...)")
    parser.add_argument("images", nargs="+", help="sharp images to blur, TIFF")
    parser.add_argument("-o", "--output-dir", default=None,
                        help="folder for the results (default: beside each image)")
    parser.add_argument("--compare", action="append", default=None, metavar="BLURRED",
                        help="the real blurred version of an image, to report the residual "
                             "against the noise; once per image, in the same order")
    parser.add_argument("--kernel-only", action="store_true",
                        help="apply the kernel alone, without the gain, offset and shift it "
                             "records")


def _calibration(kernel_path: str, kernel_only: bool) -> dict:
    """The gain, offset and shift recorded beside a kernel by ``psfkit estimate``/``fit``
    (1, 0 and none for any other kernel, or with ``kernel_only``)."""
    from .io import read_sidecar, sidecar_path

    calibration = {"gain": 1.0, "offset": 0.0, "shift": None, "calibrated": False}
    if kernel_only or not os.path.isfile(sidecar_path(kernel_path)):
        return calibration
    try:
        record = read_sidecar(kernel_path)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the kernel's record {sidecar_path(kernel_path)}: "
                         f"{error}; pass --kernel-only to ignore it") from None
    if record.get("subcommand") not in CALIBRATED_COMMANDS:
        return calibration
    if np.ndim(record["gain"]) != 0:
        raise UsageError(f"{kernel_path} is an RGB kernel (one per channel); convolve "
                         f"applies one kernel: pass --kernel-only, or estimate on one channel")
    return {"gain": float(record["gain"]), "offset": float(record["offset"]),
            "shift": [float(s) for s in record["shift"]], "calibrated": True}


def _convolved_path(image: str, folder: str | None) -> str:
    """Where the prediction of ``image`` goes: ``<stem>_convolved.tif`` in ``folder`` (by
    default the image's own)."""
    stem = os.path.splitext(os.path.basename(image))[0]
    return os.path.join(folder or os.path.dirname(image), f"{stem}_convolved.tif")


def _convolve_one(kernel: np.ndarray, image: Input, compare: str | None,
                  calibration: dict) -> tuple[np.ndarray, dict]:
    """The prediction of ``image`` and its record (with the residual ratio against the
    ``compare`` file when one is given)."""
    from ._prediction import predict_blurred, prediction_window, residual_ratio
    from ._validate import psf_fits

    if kernel.ndim != image.data.ndim:
        raise UsageError(f"the kernel is {kernel.ndim}D and the image {image.path} is "
                         f"{image.data.ndim}D; they need the same number of axes")
    psf_fits(kernel.shape, image.data.shape, "the kernel", f"image {image.path}")
    predicted = predict_blurred(image.data, kernel, gain=calibration["gain"],
                                offset=calibration["offset"], shift=calibration["shift"])
    result = {name: calibration[name] for name in ("gain", "offset", "shift", "calibrated")}
    if compare is not None:
        observed = read_input(compare, "compared", ndim=(image.data.ndim,))
        if observed.data.shape != image.data.shape:
            raise UsageError(f"the compared image {compare} has shape {observed.data.shape}, "
                             f"the image {image.path} {image.data.shape}; they must match")
        window = prediction_window(predicted.shape, kernel.shape, calibration["shift"])
        result["residual_ratio"] = residual_ratio(observed.data, predicted, window)
    return predicted, result


def _run_convolve(args) -> int:
    from .io import load_psf

    compares = args.compare or []
    if compares and len(compares) != len(args.images):
        raise UsageError(f"--compare is given {len(compares)} times for {len(args.images)} "
                         f"images; give it once per image, in the same order")
    outputs = [_convolved_path(image, args.output_dir) for image in args.images]
    inputs = (args.kernel, *args.images, *compares)
    check_outputs(outputs, inputs, args.overwrite)
    if not os.path.isfile(args.kernel):
        raise UsageError(f"kernel file not found: {args.kernel}")
    kernel = load_psf(args.kernel).data
    calibration = _calibration(args.kernel, args.kernel_only)
    bar = _progress("convolving", args)
    rows = []
    for number, (path, output) in enumerate(zip(args.images, outputs, strict=True)):
        image = read_input(path, "image")
        compare = compares[number] if compares else None
        predicted, result = _convolve_one(kernel, image, compare, calibration)
        inputs = {"kernel": args.kernel, "image": path, **({"compared": compare}
                                                            if compare else {})}
        write_output(output, predicted, image.spacing,
                     provenance("convolve", inputs, result))
        if compare is not None:
            rows.append((os.path.basename(path), f"residual/noise "
                         f"{numbers_text(result['residual_ratio'], decimals=2)} against "
                         f"{os.path.basename(compare)}"))
        bar(number + 1, len(args.images))
    note = ("" if calibration["calibrated"] or args.kernel_only else
            f"; {args.kernel} records no gain, offset or shift, so the kernel was applied "
            f"alone")
    bar.close(f"wrote {', '.join(outputs)}{note}")
    if rows:
        print(_table(rows))
    return EXIT_OK
