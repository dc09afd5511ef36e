"""The metadata of a run: what a core result records about how it was made, as plain values.

:func:`run_metadata` turns a result of the core (:class:`~psfkit.estimate.KernelEstimate`,
:class:`~psfkit.fit.KernelFit`, :class:`~psfkit.psf.PsfReport`,
:class:`~psfkit.psf.BeadAverage`, :class:`~psfkit.deconvolve.DeconvolutionInfo`) into a dict
of JSON-safe values (str, int, float, bool, None, and lists and dicts of them): the
parameters used and the numbers measured, without the large arrays. The napari widgets put
it in a layer's ``metadata``, the command line in the TIFF description. :func:`plain`
converts any such value.

:func:`python_call` writes the Python source of a core call from the function's name and
its arguments, and :func:`reproduction` the metadata entry (key :data:`REPRODUCE_KEY`) that
holds it with the names of its inputs and, where one exists, the equivalent command line:
every output of the widgets and the command line says how to make it again.
"""

from __future__ import annotations

import math
from functools import singledispatch

import numpy as np

from .beads import BeadAverage
from .deconvolution import DeconvolutionInfo
from .estimate import KernelEstimate
from .fit import KernelFit
from .psf import PsfReport


def plain(value):
    """``value`` with NumPy arrays and scalars turned into lists and Python numbers, tuples
    into lists and dict keys into strings, so ``json.dumps`` and napari can copy it."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@singledispatch
def run_metadata(result) -> dict:
    """The JSON-safe metadata of a core result: its parameters and measured numbers."""
    raise TypeError(f"no metadata for a {type(result).__name__}")


def _fields(result, names: str) -> dict:
    """The attributes ``names`` (separated by spaces) of ``result``, by name."""
    return {name: getattr(result, name) for name in names.split()}


@run_metadata.register(KernelEstimate)
def _estimate_metadata(estimate: KernelEstimate) -> dict:
    """Shift, gain, offset, the fit's quality and the solver's settings."""
    return plain({**_fields(estimate, "shift gain offset residual_ratio noise_sigma "
                                      "kernel_sum regularization method shape"),
                  "iterations": int(estimate.iterations)})


@run_metadata.register(KernelFit)
def _fit_metadata(fit: KernelFit) -> dict:
    """The model, its parameters with their errors, the intensity change and the fit's
    quality."""
    return plain({
        **_fields(fit, "model params"),
        "errors": {name: error for name, error in fit.errors.items() if name in fit.params},
        "shift": fit.shift,
        "shift_error": fit.errors["shift"],
        **_fields(fit, "gain offset fwhm ellipticity reduced_chi2 noise_sigma ranking "
                       "params_physical fwhm_physical pixel_integrated loss"),
        "converged": fit.success,
        "message": fit.message,
    })


@run_metadata.register(PsfReport)
def _psf_metadata(report: PsfReport) -> dict:
    """Width, SNR, centre, background and noise of a PSF prepared from one source, and
    which warnings it raised (saturated, truncated, background uncertain)."""
    return plain({**_fields(report, "fwhm fwhm_physical snr centre background noise_sigma "
                                    "hot_pixels saturated truncated background_uncertain "
                                    "warnings"),
                  "beads_used": 1})


@run_metadata.register(BeadAverage)
def _beads_metadata(average: BeadAverage) -> dict:
    """Width and SNR of an averaged PSF, and how many beads went into it."""
    return plain({**_fields(average, "fwhm fwhm_physical snr beads_used spread"),
                  "beads_detected": len(average.beads["accepted"])})


@run_metadata.register(DeconvolutionInfo)
def _deconvolution_metadata(info: DeconvolutionInfo) -> dict:
    """Everything the run reports but its per-iteration history (long, and only of use to
    a plot): the method, its settings, the noise model, the ``parameters`` that repeat
    the run and, for ``method="auto"``, its choice with the candidates' risks."""
    fields = {name: value for name, value in vars(info).items() if name != "history"}
    if info.choice is not None:
        fields["choice"] = info.choice.as_dict()
    return plain(fields)


#: The metadata key of the entry that says how to make an output again (:func:`reproduction`).
REPRODUCE_KEY = "reproduce"


class Code(str):
    """Python source that :func:`python_call` writes as it is (a variable such as
    ``image``, an expression such as ``image[0:64, 0:64]``), not as a string literal."""

    def __repr__(self) -> str:
        return str(self)


def python_literal(value) -> str:
    """Python source that evaluates to ``value``: NumPy values as Python numbers and lists,
    tuples kept as tuples, floats to the last bit (``repr`` round-trips them), and a
    :class:`Code` as written. A non-finite float has no literal: ``ValueError``."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, np.ndarray):
        return python_literal(value.tolist())
    if isinstance(value, np.generic):
        return python_literal(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a call cannot be written with the non-finite value {value}")
    if isinstance(value, tuple):
        items = [python_literal(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(key)}: {python_literal(item)}"
                               for key, item in value.items()) + "}"
    return repr(value)


def python_call(function: str, *args, **kwargs) -> str:
    """The Python source of ``function(*args, **kwargs)``, e.g.
    ``psfkit.deconvolve(image, psf, method='rl_mix', iterations=14)``, each argument
    written by :func:`python_literal` (a :class:`Code` argument names a variable)."""
    arguments = [python_literal(value) for value in args]
    arguments += [f"{name}={python_literal(value)}" for name, value in kwargs.items()]
    return f"{function}({', '.join(arguments)})"


def region_of(name: str, box) -> Code:
    """The expression ``name[a:b, c:d]`` that cuts the region ``box`` (slices) out of the
    variable ``name``; ``name`` itself when ``box`` is empty."""
    if not box:
        return Code(name)
    return Code(f"{name}[{', '.join(f'{part.start}:{part.stop}' for part in box)}]")


def reproduction(python: str, inputs: dict, command: str | None = None) -> dict:
    """The metadata entry that says how an output was made: ``python``, the call that
    returns it with ``import psfkit`` and each variable of ``inputs`` bound to the data it
    names (a layer, a file), and ``command``, the equivalent command line, when one
    exists."""
    entry = {"python": python, "inputs": {str(k): str(v) for k, v in inputs.items()}}
    if command is not None:
        entry["command"] = command
    return entry
