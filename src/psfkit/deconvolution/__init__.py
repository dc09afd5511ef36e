"""Deconvolution with a known PSF: Wiener, Tikhonov, Richardson–Lucy (plain, accelerated,
total-variation regularised) and FISTA with total variation, plus two automatic choices.

Every method solves the same forward model, the one a camera obeys::

    image = valid(psf * object) + background + noise

The object is larger than the image by ``psf.shape - 1`` per axis, so the light that enters
the frame from outside it is modelled instead of wrapped around. The blur is evaluated on a
compact periodic grid just large enough for the object (:class:`psfkit.operators.BlurOperator`):
on such a grid the valid part of a circular convolution equals the linear one, so no padding
work is repeated inside the iterations. The iterative methods use boundary-aware
normalisation in the manner of Bertero and Boccacci, so pixels near the border converge
like the interior and do not ring. The returned image is the part of the object seen by the
image's own pixels.

The package holds one module per family: ``_direct`` (Wiener, Tikhonov),
``_richardson_lucy`` (RL and RL-TV: the loop, its data and stopping rules),
``_extrapolation`` (RL's acceleration strategies and step rules), ``_tv`` (the TV prox,
FISTA-TV, RL-TV's factor), ``_auto`` (``rl_mix``), ``_risk`` (``auto``: the choice by
estimated risk), ``_noise`` (the noise model),
``_tuning`` (the constants tuned on the benchmark suite) and ``_common`` (what every
method receives and returns). Here live :func:`deconvolve`,
:class:`DeconvolutionInfo` and :data:`METHOD_RUNNERS`, the table from method name to the
function that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from psfkit._validate import (
    as_float_array,
    check_finite_result,
    fits_in_memory,
    magnitude_exponent,
    optional_callable,
    psf_fits,
    real_number,
    whole_number,
)
from psfkit.psf_map import PsfMap

from ._auto import rl_mix
from ._common import DEFAULT_ITERATIONS, MAX_ITERATIONS, MethodResult, Request
from ._direct import tikhonov, wiener
from ._noise import NoiseModel
from ._richardson_lucy import run_richardson_lucy, run_rl_tv
from ._risk import RiskChoice, risk_choice
from ._tuning import DEFAULT_TUNING, AutoTuning
from ._tv import fista_tv
from ._varying import VaryingPsf, piecewise

__all__ = ["ACCELERATIONS", "DEFAULT_ITERATIONS", "DEFAULT_TUNING", "MAX_ITERATIONS", "METHODS",
           "METHOD_RUNNERS", "AutoTuning", "DeconvolutionInfo", "RiskChoice",
           "check_parameters", "deconvolve"]

#: Each method's function: ``run(image, psf, noise, request) -> MethodResult``, with the
#: image and PSF validated (float32, the PSF nonnegative with unit sum).
METHOD_RUNNERS = {
    "wiener": piecewise(wiener),
    "tikhonov": piecewise(tikhonov),
    "richardson_lucy": run_richardson_lucy,
    "rl_tv": run_rl_tv,
    "fista_tv": fista_tv,
    "rl_mix": rl_mix,
    "auto": risk_choice,
}

METHODS = ("auto", "wiener", "tikhonov", "richardson_lucy", "rl_tv", "fista_tv", "rl_mix")
ACCELERATIONS = ("geometric", "biggs_andrews", None)


@dataclass
class DeconvolutionInfo:
    """What :func:`deconvolve` did: the method, its settings and how it stopped."""

    method: str
    iterations: int = 0
    regularization: float = 0.0
    #: weight of ``rl_mix``'s total-variation smoothing (0 for the other methods)
    smoothing: float = 0.0
    #: extrapolation step of each accelerated Richardson–Lucy iteration (for ``rl_mix``, of
    #: its Richardson–Lucy part; its accelerated RL-TV part's steps are not recorded)
    steps: list = field(default_factory=list)
    acceleration: str | None = None
    noise_sigma: float = 0.0
    background: float = 0.0
    stopped_by: str = "iterations"
    history: list = field(default_factory=list)
    #: :func:`deconvolve` keyword arguments that repeat this run with no data-driven
    #: choice: ``deconvolve(other, psf, **info.parameters)`` treats another image (a block,
    #: the next frame) exactly like this one (method, iterations, regularization,
    #: ``rl_mix``'s smoothing, the acceleration and its steps, ``fista_tv``'s automatic
    #: weight schedule and the noise model: background, read_noise, gain).
    parameters: dict = field(default_factory=dict)
    #: ``method="auto"``'s choice (:class:`~psfkit.deconvolution._risk.RiskChoice`): the
    #: candidates, their estimated risks and the winner; its ``summary`` is one sentence.
    #: None for the other methods.
    choice: RiskChoice | None = None

    @classmethod
    def of(cls, result: MethodResult, noise: NoiseModel) -> DeconvolutionInfo:
        """The report of a method's ``result`` under ``noise``, with the parameters that
        repeat it."""
        parameters = dict(method=result.method, regularization=float(result.regularization),
                          **noise.parameters())
        if result.method not in ("wiener", "tikhonov"):
            parameters.update(iterations=max(int(result.iterations), 1),
                              acceleration=result.acceleration)
        if result.method == "rl_mix":
            parameters.update(smoothing=float(result.smoothing))
        if result.steps:
            parameters.update(acceleration_steps=[float(step) for step in result.steps])
        if result.regularization_schedule:
            parameters.update(regularization_schedule=[
                float(weight) for weight in result.regularization_schedule])
        return cls(method=result.method, iterations=result.iterations,
                   regularization=result.regularization, smoothing=result.smoothing,
                   steps=list(result.steps), acceleration=result.acceleration,
                   noise_sigma=noise.rms, background=noise.background,
                   stopped_by=result.stopped_by, history=list(result.history),
                   parameters=parameters, choice=result.choice)


def normalise_psf(psf, ndim: int) -> np.ndarray:
    """The PSF as float32 of ``ndim`` dimensions, clipped at zero and of unit sum."""
    psf = as_float_array(psf, "psf", ndim=(ndim,))
    if psf.ndim != ndim:
        raise ValueError(f"psf must be {ndim}D like the image, got shape {psf.shape}")
    if np.any(psf < 0):
        psf = np.clip(psf, 0, None)
    total = float(psf.sum(dtype=np.float64))
    if not total > 0:
        raise ValueError("psf must have a positive sum")
    return psf / np.float32(total)


#: The largest ``regularization`` of the methods whose weight is relative to the unit-sum
#: PSF's response and so does not depend on the image's scale (all but ``fista_tv``, whose
#: weight is in image units): the automatic choices stay below 1e4 (Wiener's search range)
#: and at 1e6 the regulariser alone decides the result, which is then close to zero.
MAX_REGULARIZATION = 1e6

#: The extrapolation steps of the accelerated Richardson–Lucy are below 1 (at most 0.95,
#: ``_extrapolation.MAX_EXTRAPOLATION``); a step of 1 or more diverges.
MAX_ACCELERATION_STEP = 1.0

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _auto_or_float(value, name: str, maximum: float | None = None):
    """``"auto"``, or ``value`` as a finite float in ``[0, maximum]``."""
    if isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, str):
        raise ValueError(f"{name} must be a number >= 0 or 'auto', got {value!r}")
    return real_number(value, name, minimum=0.0, maximum=maximum)


def _optional_float(value, name: str, minimum: float | None):
    """``None``, or ``value`` as a finite float >= ``minimum`` within float32's range."""
    if value is None:
        return None
    return real_number(value, name, minimum=-_FLOAT32_MAX if minimum is None else minimum,
                       maximum=_FLOAT32_MAX)


def _number_list(values, name: str, maximum: float | None = None):
    """``values`` (None or a sequence) as None or a list of finite floats in
    ``[0, maximum]``, or a ``TypeError``/``ValueError`` naming ``name``."""
    if values is None:
        return None
    if isinstance(values, str) or not np.iterable(values):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    return [real_number(value, f"{name}[i]", minimum=0.0, maximum=maximum)
            for value in values]


def _checked_steps(acceleration_steps):
    """``acceleration_steps`` as a list of floats in ``[0, MAX_ACCELERATION_STEP)``."""
    steps = _number_list(acceleration_steps, "acceleration_steps")
    if steps is None:
        return None
    if any(step >= MAX_ACCELERATION_STEP for step in steps):
        raise ValueError(f"acceleration_steps must each be below {MAX_ACCELERATION_STEP:g} "
                         f"(an earlier run's info.steps), got {max(steps):g}")
    return steps


def _checked_schedule(regularization_schedule, method):
    """``regularization_schedule`` as None or a non-empty list of TV weights, for
    ``fista_tv`` only."""
    weights = _number_list(regularization_schedule, "regularization_schedule", _FLOAT32_MAX)
    if weights is None:
        return None
    if method != "fista_tv":
        raise ValueError(f"regularization_schedule is fista_tv's weight per iteration (an "
                         f"earlier fista_tv run's info.parameters); method {method!r} takes "
                         f"none: leave it out or use method='fista_tv'")
    if not weights:
        raise ValueError("regularization_schedule must hold at least one weight, got an "
                         "empty sequence; leave it out for the automatic weight")
    return weights


def _check_auto_takes_no_weight(method: str, request: Request) -> None:
    """``ValueError`` for a weight or a step list given to ``method="auto"`` (valid values,
    ``request`` being checked), which chooses them per candidate and would otherwise
    ignore them."""
    if method != "auto":
        return
    given = {"regularization": request.regularization, "smoothing": request.smoothing}
    for name, value in given.items():
        if not (isinstance(value, str) and value == "auto"):
            raise ValueError(f"method 'auto' chooses the {name} itself, got {name}="
                             f"{value!r}: leave it 'auto', or name the method it is for, "
                             f"e.g. method='rl_mix'")
    if request.acceleration_steps is not None:
        raise ValueError("method 'auto' computes its own acceleration steps; "
                         "acceleration_steps replay an earlier run of a named method "
                         "(its info.parameters)")


def _checked_request(method, iterations, regularization, smoothing, acceleration,
                     acceleration_steps, regularization_schedule, callback,
                     tuning) -> Request:
    """The settings of :func:`deconvolve`, validated: each a value of its type and range,
    or a ``TypeError``/``ValueError`` naming it."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (acceleration is None or isinstance(acceleration, str)) or (
            acceleration not in ACCELERATIONS):
        raise ValueError(f"acceleration must be one of {ACCELERATIONS}, got {acceleration!r}")
    if not isinstance(tuning, AutoTuning):
        raise TypeError(f"tuning must be an AutoTuning, got {type(tuning).__name__}")
    weight_limit = _FLOAT32_MAX if method == "fista_tv" else MAX_REGULARIZATION
    request = Request(
        iterations=None if iterations is None else whole_number(
            iterations, "iterations", minimum=1, maximum=MAX_ITERATIONS,
            why=" (MAX_ITERATIONS: more would run for hours; the automatic stop needs "
                "far fewer)"),
        regularization=_auto_or_float(regularization, "regularization", weight_limit),
        smoothing=_auto_or_float(smoothing, "smoothing", _FLOAT32_MAX),
        acceleration=acceleration, acceleration_steps=_checked_steps(acceleration_steps),
        regularization_schedule=_checked_schedule(regularization_schedule, method),
        callback=optional_callable(callback), tuning=tuning)
    _check_auto_takes_no_weight(method, request)
    return request


def check_parameters(method: str = "auto", *, iterations=None, regularization="auto",
                     smoothing="auto", acceleration="geometric", acceleration_steps=None,
                     regularization_schedule=None, background=None, read_noise=None,
                     gain=None, callback=None,
                     tuning: AutoTuning = DEFAULT_TUNING) -> tuple[Request, dict]:
    """The keyword arguments of :func:`deconvolve`, validated as it validates them: the
    :class:`Request` and the noise keywords (``background``, ``read_noise``, ``gain``) as
    floats or None. Raises ``TypeError``/``ValueError`` naming the first bad one; used
    also to check choices made on one image before they are applied to others."""
    request = _checked_request(method, iterations, regularization, smoothing, acceleration,
                               acceleration_steps, regularization_schedule, callback, tuning)
    noise = dict(background=_optional_float(background, "background", None),
                 read_noise=_optional_float(read_noise, "read_noise", 0.0),
                 gain=_optional_float(gain, "gain", 0.0))
    return request, noise


#: An image whose largest magnitude is outside ``[1 / EXTREME_MAGNITUDE, EXTREME_MAGNITUDE]``
#: is deconvolved scaled by a power of two to a largest magnitude in ``[0.5, 1)``, and the
#: result scaled back: otherwise squared residuals overflow float32 above about 1e19 and
#: the methods' small floors (1e-30, 1e-12) dominate below about 1e-12. A power of two
#: scales float32 exactly, and images inside the range are not scaled at all. The decision
#: is :func:`psfkit._validate.magnitude_exponent`, the estimators' too; their range
#: (``_validate.ORDINARY_MAGNITUDES``, 2**±20) is narrower, the range in which none of
#: their steps was seen to under- or overflow float32. The two stay apart on purpose: each
#: is the one its functions' results were benchmarked and snapshotted with, and moving
#: either would change results on valid images between 2**20 and 2**40 (1e6 to 1e12, e.g.
#: summed photon counts), which the methods' floors make not exactly scale-invariant.
EXTREME_MAGNITUDE = 2.0**40


def _in_image_units(value, factor: float, image_units: bool = True):
    """A number in the image's units times ``factor``; ``None``, ``"auto"`` and (with
    ``image_units`` false) dimensionless numbers as they are."""
    return value * factor if image_units and isinstance(value, float) else value


def _scaled_problem(image, noise_keywords: dict, request: Request, method: str,
                    exponent: int):
    """The image times ``2**-exponent``, with the noise keywords and the settings in image
    units (``fista_tv``'s regularization and its schedule, the smoothing) scaled alike."""
    factor = 2.0**-exponent
    noise_keywords = {name: _in_image_units(value, factor)
                      for name, value in noise_keywords.items()}
    schedule = request.regularization_schedule
    request = replace(
        request, smoothing=_in_image_units(request.smoothing, factor),
        regularization=_in_image_units(request.regularization, factor, method == "fista_tv"),
        regularization_schedule=None if schedule is None else [
            weight * factor for weight in schedule])
    return np.ldexp(image, -exponent), noise_keywords, request


def _unscaled_result(result: MethodResult, noise: NoiseModel, exponent: int):
    """A result and noise model of the scaled problem of :func:`_scaled_problem` in the
    units of the original image."""
    factor = 2.0**exponent
    with np.errstate(over="ignore"):  # a result beyond float32 is reported as not finite
        image = np.ldexp(result.image, exponent)
    result = replace(result, image=image, smoothing=result.smoothing * factor,
                     regularization=_in_image_units(float(result.regularization), factor,
                                                    result.method == "fista_tv"),
                     regularization_schedule=tuple(
                         weight * factor for weight in result.regularization_schedule))
    return result, noise.scaled(factor)


#: The core's peak memory is about this many float32 copies of the image (the benchmarked
#: peak of ``rl_tv`` and ``rl_mix``), which :func:`deconvolve` checks against the memory
#: available before it starts.
PEAK_IMAGE_COPIES = 10


def _check_working_memory(shape) -> None:
    """``ValueError`` when deconvolving an image of ``shape`` at once would need more than
    the available memory, pointing at :func:`psfkit.deconvolve_chunked` with a block size
    that fits (:func:`psfkit._validate.fits_in_memory`)."""
    bytes_per_voxel = PEAK_IMAGE_COPIES * np.dtype(np.float32).itemsize

    def blocks_that_fit(available: int) -> str:
        # half the memory, for the blocks' overlap and the other blocks in flight
        side = int((0.5 * available / bytes_per_voxel) ** (1 / len(shape)))
        block = tuple(min(n, max(side, 1)) for n in shape)
        return (f"deconvolve it in blocks with psfkit.deconvolve_chunked(image, psf, "
                f"chunks={block})")

    fits_in_memory(bytes_per_voxel * float(np.prod(shape, dtype=np.float64)),
                   f"deconvolving the image {tuple(shape)} at once", blocks_that_fit)


def deconvolve(
    image,
    psf,
    method: str = "auto",
    *,
    iterations: int | None = None,
    regularization="auto",
    smoothing="auto",
    acceleration: str | None = "geometric",
    acceleration_steps=None,
    regularization_schedule=None,
    background: float | None = None,
    read_noise: float | None = None,
    gain: float | None = None,
    callback=None,
    tuning: AutoTuning = DEFAULT_TUNING,
    return_info: bool = False,
):
    """Deconvolve ``image`` by a known ``psf``, without edge ringing or noise blow-up.

    Parameters
    ----------
    image : (M, N) or (P, M, N) ndarray
        Blurred image, any real dtype. Not modified.
    psf : ndarray or PsfMap
        Point spread function with the image's dimensionality, origin at its centre pixel
        ``shape // 2``. It is clipped to be nonnegative and normalised to unit sum. A
        :class:`psfkit.PsfMap` of this image gives a blur that changes across the field
        (:mod:`psfkit.deconvolution._varying`: exact for the iterative methods, piecewise
        for Wiener and Tikhonov).
    method : str
        One of ``METHODS``: "auto", "wiener", "tikhonov", "richardson_lucy", "rl_tv",
        "fista_tv", "rl_mix".
        ``"auto"`` chooses the method, its regularization and when to stop per image from
        the data: among Richardson–Lucy stopping points, Tikhonov weights (2D images) and
        ``"rl_mix"`` by an estimate of the risk (Monte-Carlo SURE); the method that won runs,
        ``info.method`` names it and ``info.choice`` reports the candidates and their risks
        (see :mod:`psfkit.deconvolution._risk`). With a PSF map the candidates are the
        Richardson–Lucy stopping points and ``"rl_mix"``, their risk measured with the map's
        blur (Tikhonov is a filter of one PSF).
        ``"rl_mix"`` is Richardson–Lucy run past the discrepancy principle's stop,
        total-variation smoothed back to the noise level and, unless the object is made of
        point sources, averaged with RL-TV (see :func:`psfkit.deconvolution._auto.rl_mix`).
    iterations : int, optional
        Iteration count of the iterative methods: given, they run exactly this many
        (unless the callback stops them). When omitted, a stopping rule ends them (the
        discrepancy principle; for RL-TV and FISTA-TV convergence), after at most
        ``DEFAULT_ITERATIONS`` for the method.
    regularization : float or "auto"
        Weight of the regulariser; ``"auto"`` chooses it from the noise level. For
        ``"rl_mix"``, the weight of its RL-TV member (0 leaves that member out).
    smoothing : float or "auto"
        ``"rl_mix"`` only: the weight of the total-variation smoothing of its
        Richardson–Lucy member; ``"auto"`` makes the smoothed result fit the data down to the
        noise (the discrepancy principle).
    acceleration : {"geometric", "biggs_andrews", None}
        Richardson–Lucy acceleration by Biggs–Andrews vector extrapolation, of ``log x``
        (``"geometric"``, the default: stays positive without clipping, which keeps point
        sources sharp) or of ``x`` itself (``"biggs_andrews"``, the classic form, with
        clipping at zero). ``None`` gives plain Richardson–Lucy.
    acceleration_steps : sequence of float, optional
        The extrapolation step of each accelerated iteration, as an earlier run reports them
        in ``info.steps``: replays that run's acceleration instead of computing the steps
        from this image, so that blocks of a larger image (:mod:`psfkit.chunked`) or the
        frames of a series follow the same path. ``info.parameters`` includes them.
    regularization_schedule : sequence of float, optional
        ``"fista_tv"`` only: its TV weight at each iteration, as an automatic run reports
        them in ``info.parameters``; replays that run's weights (the last one after the
        end) instead of adapting them to this image. ``regularization`` is then not used.
    background : float, optional
        Constant offset of the image (camera offset, sky level). Estimated when omitted.
    read_noise : float, optional
        Standard deviation of the Gaussian read noise in image units. Estimated with
        ``gain`` from the image when omitted.
    gain : float, optional
        Shot-noise gain: the variance added per unit of signal above the background
        (``var = gain * (mean - background) + read_noise²``); 0 for purely Gaussian noise.
        Estimated from the image when omitted. With ``background``, ``read_noise`` and
        ``gain`` all given, no noise estimate is made.
    callback : callable, optional
        ``callback(step, total, current)`` after each iteration; return ``False`` to stop.
    tuning : AutoTuning, optional
        The constants of the automatic choices that were tuned on the benchmark suite
        (:class:`psfkit.deconvolution._tuning.AutoTuning`); for scripts that re-derive
        them. The default is the tuned values.
    return_info : bool
        Also return a :class:`DeconvolutionInfo`. Its ``parameters`` are keyword arguments
        that repeat the run without any data-driven choice, e.g. on the blocks of a larger
        image (:func:`psfkit.chunked.deconvolve_chunked` does this).

    Returns
    -------
    (M, N) or (P, M, N) ndarray of float32
        The deconvolved image, on the input's grid. With ``return_info``, a tuple
        ``(image, info)``.

    Notes
    -----
    The model is ``y = valid(h * x) + b + n``, with ``x`` larger than ``y`` by the PSF
    support minus one, so the result has no wrap-around artefacts.

    References
    ----------
    .. [1] W. H. Richardson, "Bayesian-based iterative method of image restoration",
       JOSA 62 (1972); L. B. Lucy, AJ 79 (1974).
    .. [2] M. Bertero and P. Boccacci, "A simple method for the reduction of boundary
       effects in the Richardson-Lucy approach to image deconvolution", A&A 437 (2005).
    .. [3] D. S. C. Biggs and M. Andrews, "Acceleration of iterative image restoration
       algorithms", Applied Optics 36 (1997).
    .. [4] N. Dey et al., "Richardson–Lucy algorithm with total variation regularization
       for 3D confocal microscope deconvolution", Microsc. Res. Tech. 69 (2006).
    .. [5] A. Beck and M. Teboulle, "Fast gradient-based algorithms for constrained total
       variation image denoising and deblurring problems", IEEE TIP 18 (2009);
       B. O'Donoghue and E. Candès, "Adaptive restart for accelerated gradient schemes",
       FoCM 15 (2015).
    """
    request, noise_keywords = check_parameters(
        method, iterations=iterations, regularization=regularization, smoothing=smoothing,
        acceleration=acceleration, acceleration_steps=acceleration_steps,
        regularization_schedule=regularization_schedule, background=background,
        read_noise=read_noise, gain=gain, callback=callback, tuning=tuning)
    _check_working_memory(np.shape(image))
    image = as_float_array(image, "image")
    if isinstance(psf, PsfMap):  # blur that changes across the field (_varying)
        psf = VaryingPsf.of(psf, image.shape)
    else:
        psf = normalise_psf(psf, image.ndim)
        psf_fits(psf.shape, image.shape)
    result, info = solve(image, psf, method, request, noise_keywords)
    if return_info:
        return result, info
    return result


def solve(image: np.ndarray, psf: np.ndarray, method: str, request: Request,
          noise_keywords: dict) -> tuple[np.ndarray, DeconvolutionInfo]:
    """The work of :func:`deconvolve` on validated inputs: ``image`` float32, ``psf`` from
    :func:`normalise_psf` and fitting inside it, ``request`` and ``noise_keywords`` from
    :func:`check_parameters`. Returns the finite float32 result and its report."""
    exponent = magnitude_exponent(image, (1 / EXTREME_MAGNITUDE, EXTREME_MAGNITUDE))
    if exponent:
        image, noise_keywords, request = _scaled_problem(image, noise_keywords, request,
                                                         method, exponent)
    noise = NoiseModel.estimate(image, **noise_keywords)
    result = METHOD_RUNNERS[method](image, psf, noise, request)
    if exponent:
        result, noise = _unscaled_result(result, noise, exponent)
    info = DeconvolutionInfo.of(result, noise)
    check_finite_result(result.image, f"deconvolve's result (method {result.method!r})",
                        f"the settings do not suit this image ({info.parameters}): leave "
                        f"regularization, smoothing and the noise keywords to the data, "
                        f"or make the regularization smaller")
    return np.ascontiguousarray(result.image, dtype=np.float32), info
