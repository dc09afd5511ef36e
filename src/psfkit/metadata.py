"""The metadata of a run: what a core result records about how it was made, as plain values.

:func:`run_metadata` turns a result of the core (:class:`~psfkit.estimate.KernelEstimate`,
:class:`~psfkit.fit.KernelFit`, :class:`~psfkit.psf.PsfReport`,
:class:`~psfkit.psf.BeadAverage`, :class:`~psfkit.deconvolve.DeconvolutionInfo`) into a dict
of JSON-safe values (str, int, float, bool, None, and lists and dicts of them): the
parameters used and the numbers measured, without the large arrays. The napari widgets put
it in a layer's ``metadata``, the command line in the TIFF description. :func:`plain`
converts any such value.
"""

from __future__ import annotations

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
                       "physical loss"),
        "converged": fit.success,
        "message": fit.message,
    })


@run_metadata.register(PsfReport)
def _psf_metadata(report: PsfReport) -> dict:
    """Width, SNR, centre, background and noise of a PSF prepared from one source."""
    return plain({**_fields(report, "fwhm fwhm_physical snr centre background noise_sigma "
                                    "hot_pixels warnings"),
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
    the run and, for ``method="sure"``, its choice with the candidates' risks."""
    fields = {name: value for name, value in vars(info).items() if name != "history"}
    if info.choice is not None:
        fields["choice"] = info.choice.as_dict()
    return plain(fields)
