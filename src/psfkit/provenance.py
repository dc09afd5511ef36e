"""How an output was made: the record psfkit writes beside each output as a JSON sidecar
(``<output>.json``, :func:`psfkit.io.write_sidecar`).

:func:`deconvolution_record` collects the psfkit version, the input and PSF files with
their SHA-256 checksums, the voxel sizes (and what was assumed for one a file does not
give), the full parameters (``info.parameters``, which repeat the run with no data-driven
choice), the noise model, iterations and stopping rule, the time and peak memory, the
output's type and scale, and a command line and a Python call that make the same output
again from the sidecar. :func:`deconvolve_command` is the
one builder of a ``psfkit deconvolve`` command line (the sidecars' and the napari
widget's); :func:`sidecar_parameters` reads the parameters back.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys

from .io import file_checksum

__all__ = ["deconvolution_record", "deconvolve_command", "peak_memory_bytes", "sidecar_parameters"]

#: The entries of a deconvolution report that describe the noise model.
NOISE_MODEL = ("background", "read_noise", "gain", "noise_sigma")


def peak_memory_bytes() -> int | None:
    """The process's peak resident memory so far, in bytes (``None`` where the platform
    does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB


def _file_entry(path: str) -> dict:
    """A file's absolute path and SHA-256."""
    return {"path": os.path.abspath(path), "sha256": file_checksum(path)}


def _python_call(image: str, psf: str, sidecar: str, resampled, stack: bool,
                 blocks: dict | None, psf_map: bool = False) -> str:
    """Python statements that recompute the output from the sidecar's parameters."""
    read_psf = (f"psfkit.load_psf_map({psf!r}).psf_map" if psf_map
                else f"psfkit.load_psf({psf!r}).data")
    lines = ["import json, psfkit, psfkit.frames",
             f"parameters = json.load(open({sidecar!r}, encoding='utf-8'))['parameters']",
             f"psf = {read_psf}"]
    if resampled:
        lines.append(f"psf = psfkit.resample_psf(psf, {tuple(resampled['from'])!r}, "
                     f"{tuple(resampled['to'])!r})")
    lines.append(f"image = psfkit.read_image({image!r}).data")
    if blocks is not None:
        lines.append(f"result = psfkit.deconvolve_chunked(image, psf, "
                     f"chunks={tuple(blocks['chunks'])!r}, depth={max(blocks['depth'])}, "
                     f"**parameters)")
    elif stack:
        lines.append("result = psfkit.frames.deconvolve_frames(image, psf, **parameters)"
                     ".result")
    else:
        lines.append("result = psfkit.deconvolve(image, psf, **parameters)")
    return "\n".join(lines)


def deconvolve_command(image: str, psf: str, output: str, *, request: dict | None = None,
                       parameters_file: str | None = None, options=()) -> str:
    """The ``psfkit deconvolve`` command line, quoted for a POSIX shell, that deconvolves
    the TIFF ``image`` with the TIFF ``psf`` into ``output``.

    The parameters come from the sidecar or JSON file ``parameters_file`` (``--parameters``,
    which repeats a run bit for bit), else from the :func:`psfkit.deconvolve` keyword
    arguments ``request`` (method, iterations, regularization, acceleration, background;
    the automatic ones are left out). ``options`` are further words of the command
    (``--chunks``, ``--dtype``...).
    """
    words = ["psfkit", "deconvolve", image, "--psf", psf, "-o", output]
    if parameters_file is not None:
        words += ["--parameters", parameters_file]
    request = request or {}
    if request.get("method", "auto") != "auto":
        words += ["--method", request["method"]]
    if request.get("iterations") is not None:
        words += ["--iterations", str(request["iterations"])]
    if request.get("regularization", "auto") != "auto":
        words += ["--regularization", repr(float(request["regularization"]))]
    if "acceleration" in request and request["acceleration"] is None:
        words.append("--no-acceleration")
    if request.get("background") is not None:
        words += ["--background", repr(float(request["background"]))]
    return shlex.join([*words, *options])


def deconvolution_record(*, image: str, psf: str, output: str, report: dict,
                         parameters: dict, spacing, unit: str, psf_spacing, resampled,
                         assumed: str | None = None, frames: int, stack: bool,
                         blocks: dict | None, seconds: float,
                         output_type: dict, command_options=(),
                         psf_map: dict | None = None) -> dict:
    """The sidecar record of one deconvolved file.

    ``report`` is the run's :func:`psfkit.metadata.run_metadata` (or a block plan's
    parameters), ``parameters`` the explicit keyword arguments that repeat it,
    ``resampled`` ``{"from": psf_spacing, "to": image_spacing}`` when the PSF was resampled,
    ``assumed`` what was assumed for a voxel size the image or the PSF does not give,
    ``psf_map`` the grid, image shape, PSF shape and model when ``psf`` is a PSF map file
    (:func:`psfkit.io.save_psf_map`; recorded as the PSF's ``map``),
    ``stack`` whether the image has frames along leading axes, ``blocks`` the block
    sizes and overlap when it ran in blocks, ``output_type`` the
    dtype and, for integers, the scale and the saturated pixel counts, and
    ``command_options`` the options the command line needs besides the parameters. The
    record's ``choice`` is ``method="auto"``'s (candidates, risks, winner and a summary
    sentence) when the report has one, else None.
    """
    from . import __version__

    sidecar = output + ".json"
    return {
        "psfkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "output": os.path.abspath(output),
        "inputs": [_file_entry(image)],
        "psf": {**_file_entry(psf), "spacing": psf_spacing, "resampled": resampled,
                **({"map": psf_map} if psf_map is not None else {})},
        "spacing": spacing,
        "unit": unit,
        "assumed": assumed,
        "method": parameters.get("method"),
        "parameters": parameters,
        "noise_model": {name: report.get(name, parameters.get(name))
                        for name in NOISE_MODEL},
        "iterations": report.get("iterations", parameters.get("iterations")),
        "stopped_by": report.get("stopped_by"),
        # method="auto"'s choice (RiskChoice.as_dict: the summary, winner and candidates)
        "choice": report.get("choice"),
        "frames": frames,
        "blocks": blocks,
        "output_type": output_type,
        "seconds": round(seconds, 3),
        "peak_memory_bytes": peak_memory_bytes(),
        "command": deconvolve_command(image, psf, output + ".again.tif", parameters_file=sidecar,
                                      options=command_options),
        "python": _python_call(image, psf, sidecar, resampled, stack, blocks,
                               psf_map is not None),
    }


def sidecar_parameters(path: str) -> dict:
    """The deconvolution parameters in a JSON file: a sidecar's ``parameters``, or a plain
    dict of :func:`psfkit.deconvolve` keyword arguments. ``ValueError`` naming the file
    when it is unreadable or holds no such dict."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the parameters file {path}: {error}") from None
    parameters = content.get("parameters", content) if isinstance(content, dict) else None
    if not isinstance(parameters, dict) or "method" not in parameters:
        raise ValueError(f"the parameters file {path} holds no deconvolution parameters "
                         f"(a sidecar's 'parameters' with a 'method')")
    return parameters
