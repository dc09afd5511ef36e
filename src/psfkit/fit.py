"""Parametric kernel fits between a sharp and a blurred image.

:func:`fit_kernel` finds the parameters of a model kernel (a Gaussian sigma, a defocus
disk's radius, a motion blur's length and angle, ...) that best turn ``sharp`` into
``blurred``, jointly with the intensity gain and offset and the sub-pixel shift between the
images, by nonlinear least squares over the region where the convolution sees only real
data: ``blurred ≈ gain · (kernel ∗ shift(sharp)) + offset``.

Here live the public :func:`fit_kernel` and :class:`KernelFit`, the phases of a fit (the
request checked, each model fitted from its best starting point, the models ranked) and
the result in the caller's units. The models are in :mod:`psfkit._fit_models`, the forward
model in :mod:`psfkit._fit_problem`, the optimiser in :mod:`psfkit._least_squares`, the
starting points in :mod:`psfkit._starting_points`, and :func:`psfkit.defocus_diameter`
in :mod:`psfkit.defocus`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ._fit_models import (
    LENGTH_PARAMETERS,
    _kernel_shape,
    _Model,
    _model_for,
    _parameter_errors,
)
from ._fit_problem import _Normalised, _Problem
from ._least_squares import (
    _MAX_EVALUATIONS,
    _STOPPED,
    LOSSES,
    _bic,
    _Loss,
    _Objective,
    _optimise,
    _Optimum,
    _reduced_chi2,
)
from ._physical import in_spacing_units, lengths_in_spacing_units
from ._progress import report
from ._starting_points import _coarse_candidates, _defocus_candidates, _search_scores
from ._validate import (
    as_float_array,
    finite_result,
    flag,
    kernel_shape,
    matching_pair,
    optional_callable,
    per_axis_spacing,
    power_of_two_scale,
    real_number,
    whole_number,
)
from .align import estimate_shift
from .models import MODELS

#: Evaluations each model gets when ``model="auto"`` compares them.
_AUTO_EVALUATIONS = 25

#: Largest robust-loss scale, in units of the standardised ``blurred``: its residuals are of
#: order 1, so beyond this every robust loss is the linear one to 12 digits, and a larger
#: scale would only overflow when squared.
_QUADRATIC_LOSS_SCALE = 1e6


# -- the public result -------------------------------------------------------------------


@dataclass
class KernelFit:
    """A parametric kernel fitted between a sharp and a blurred image.

    ``blurred ≈ gain · (kernel ∗ shift(sharp)) + offset``, where ``kernel`` is the model
    rendered with ``params`` and ``shift(sharp)(x) = sharp(x - shift)``.

    Attributes
    ----------
    model : str
        The model fitted (the best one when ``model="auto"`` was asked for).
    params : dict
        The model's parameters in pixels (angles in radians); see :func:`fit_kernel`.
    errors : dict
        Standard errors of ``params`` (and of ``gain``, ``offset``, ``shift``) from the
        Jacobian at the solution, scaled by the residual variance.
    kernel : ndarray of float32
        The fitted model rendered on ``kernel.shape``, centred, unit sum.
    residual : ndarray of float32
        ``blurred`` minus the fitted prediction, shape of ``blurred``; zero outside the
        compared region ``valid``.
    reblurred : ndarray of float32
        The prediction ``gain · (kernel ∗ shift(sharp)) + offset``, shape of ``blurred``
        (outside ``valid`` it relies on mirrored ``sharp`` and is only indicative).
    shift : ndarray
        Translation of ``blurred`` relative to ``sharp``, per axis, in pixels.
    gain, offset : float
        Intensity change between ``sharp`` and ``blurred``.
    fwhm : float or tuple of float
        Full width at half maximum of the model in pixels (per axis for a per-axis
        Gaussian; for an elliptical Gaussian, that of the circle of equal area; for a ring,
        its outer diameter at half maximum).
    ellipticity : float
        ``1 - minor / major`` of the kernel's second moments (in physical units when a
        ``spacing`` was given).
    reduced_chi2 : float
        Residual variance over the noise variance estimated from ``blurred``; about 1 when
        the model explains the data down to the noise.
    noise_sigma : float
        The noise estimate, in the units of ``blurred``.
    criterion : float
        Bayesian information criterion ``M ln(RSS / M) + P ln(M)`` of the fit.
    ranking : list of (str, float, float)
        For ``model="auto"``: every model with its criterion and reduced chi², best first.
    params_physical : dict or None
        ``params`` with their lengths (sigmas, radii, diameters, widths, lengths) in the
        units of ``spacing``, angles and ``beta`` unchanged; ``None`` when no ``spacing``
        was given, or for a 2D-only model on pixels that are not square (it is round in
        pixels, so its physical size depends on the direction). The same rule as
        :attr:`PsfReport.fwhm_physical <psfkit.PsfReport>` and
        :attr:`BeadAverage.fwhm_physical <psfkit.BeadAverage>`.
    fwhm_physical : float, tuple of float or None
        ``fwhm`` in the units of ``spacing`` (per axis when ``fwhm`` is), ``None`` as for
        ``params_physical``.
    valid : tuple of slice
        The region of ``blurred`` that was compared.
    spacing : tuple of float
        The pixel spacing per axis the fit used (ones when none was given: sizes are then
        in pixels and the ``*_physical`` fields are ``None``).
    pixel_integrated : bool
        Whether the model was integrated over pixels (see :func:`fit_kernel`);
        ``make_psf(model, shape, pixel_integrated=pixel_integrated, **params)`` renders
        ``kernel`` again.
    """

    model: str
    params: dict
    errors: dict
    kernel: np.ndarray
    residual: np.ndarray
    reblurred: np.ndarray
    shift: np.ndarray
    gain: float
    offset: float
    fwhm: float | tuple
    ellipticity: float
    reduced_chi2: float
    noise_sigma: float
    criterion: float
    ranking: list = field(default_factory=list)
    params_physical: dict | None = None
    fwhm_physical: float | tuple | None = None
    valid: tuple = ()
    spacing: tuple = ()
    pixel_integrated: bool = False
    loss: str = "linear"
    success: bool = True
    message: str = ""
    evaluations: int = 0

    def summary(self) -> str:
        """One line per parameter, ``name = value ± error``."""
        lines = [f"model: {self.model}"]
        for name, value in {**self.params, "gain": self.gain, "offset": self.offset,
                            "shift": tuple(self.shift)}.items():
            error = self.errors.get(name)
            lines.append(f"{name} = {_format(value)} ± {_format(error)}")
        physical = ("" if self.fwhm_physical is None
                    else f" ({_format(self.fwhm_physical)} in the units of spacing)")
        lines.append(f"FWHM = {_format(self.fwhm)} px{physical}, "
                     f"ellipticity = {self.ellipticity:.3f}")
        lines.append(f"reduced chi² = {self.reduced_chi2:.3g}")
        return "\n".join(lines)


def _format(value) -> str:
    if value is None:
        return "?"
    if np.ndim(value):
        return "(" + ", ".join(f"{float(v):.4g}" for v in value) + ")"
    return f"{float(value):.4g}"


# -- the fit -----------------------------------------------------------------------------


def _ellipticity(kernel: np.ndarray, spacing) -> float:
    """``1 - minor / major`` axis of the second moments of ``kernel`` (negative values
    clipped), in the units of ``spacing``."""
    # a ratio of axes: spacing is divided by an exact power of two near its largest entry,
    # so that the moments of an extreme spacing (1e300) do not overflow
    spacing = np.asarray(spacing, dtype=float) / power_of_two_scale(np.asarray(spacing))
    weights = np.clip(kernel.astype(np.float64), 0, None)
    weights /= weights.sum()
    coords = [((np.arange(n) - n // 2) * s) for n, s in zip(kernel.shape, spacing, strict=True)]
    grids = np.meshgrid(*coords, indexing="ij")
    means = [float((g * weights).sum()) for g in grids]
    covariance = np.array([[float(((gi - mi) * (gj - mj) * weights).sum())
                            for gj, mj in zip(grids, means, strict=True)]
                           for gi, mi in zip(grids, means, strict=True)])
    values = np.linalg.eigvalsh(covariance)
    if values[-1] <= 0:
        return 0.0
    return float(1.0 - math.sqrt(max(values[0], 0.0) / values[-1]))


@dataclass(frozen=True)
class _Request:
    """What the caller of :func:`fit_kernel` asked for, checked and completed."""

    names: tuple[str, ...]
    spacing: tuple[float, ...]
    #: whether the caller gave the spacing (sizes in physical units are reported only then)
    spacing_given: bool
    isotropic: bool
    pixel_integrated: bool
    shape: tuple[int, ...] | None
    loss: str
    f_scale: float | None
    max_evaluations: int

    @property
    def budget(self) -> int:
        """Evaluations of each model's fit: when comparing models, the wrong ones need not
        converge to the last digit."""
        if len(self.names) > 1:
            return min(self.max_evaluations, _AUTO_EVALUATIONS)
        return self.max_evaluations


def _request(ndim, model, shape, spacing, loss, f_scale, isotropic, pixel_integrated,
             max_evaluations) -> _Request:
    """The arguments of :func:`fit_kernel` checked, with their defaults filled in."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    spacing_given = spacing is not None
    spacing = per_axis_spacing(spacing, ndim)
    if isotropic is None:
        isotropic = ndim == 2
    pixel_integrated = flag(pixel_integrated, "pixel_integrated")
    if shape is not None:
        shape = kernel_shape(shape, ndim)
    if f_scale is not None:
        f_scale = real_number(f_scale, "f_scale", positive=True)
    max_evaluations = whole_number(max_evaluations, "max_evaluations", minimum=1)
    if model == "auto":
        names = MODELS if ndim == 2 else ("gaussian",)
    elif model in MODELS:
        names = (model,)
    else:
        raise ValueError(f"unknown model {model!r}; choose from {('auto', *MODELS)}")
    if ndim != 2 and names != ("gaussian",):
        raise ValueError(f"the {model!r} model is 2D only; in 3D fit 'gaussian'")
    return _Request(tuple(names), spacing, spacing_given, isotropic, pixel_integrated, shape,
                    loss, f_scale, max_evaluations)


def fit_kernel(
    sharp,
    blurred,
    model: str = "gaussian",
    *,
    shape=None,
    spacing=None,
    loss: str = "linear",
    f_scale: float | None = None,
    isotropic: bool | None = None,
    pixel_integrated: bool = False,
    max_evaluations: int = 100,
    callback=None,
) -> KernelFit:
    """Fit a parametric kernel that blurs ``sharp`` into ``blurred``.

    Parameters
    ----------
    sharp, blurred : (M, N) or (L, M, N) ndarray
        The two images, same shape, any real dtype. Not modified.
    model : str
        ``"gaussian"`` (2D and 3D), ``"elliptical_gaussian"``, ``"moffat"``, ``"airy"``,
        ``"disk"``, ``"ring"``, ``"motion"`` (2D), or ``"auto"`` to fit every model that
        applies and keep the best by the Bayesian information criterion.
    shape : int or tuple of int, optional
        Odd shape on which the kernel is rendered; by default chosen from the data so it
        holds the model.
    spacing : sequence of float, optional
        Pixel (voxel) size per axis, e.g. the layer scale. An isotropic Gaussian is
        isotropic in these units; ``params_physical`` and ``fwhm_physical`` report sizes
        in them.
    loss : str
        ``"linear"`` (least squares) or a robust loss of :func:`scipy.optimize.least_squares`
        (``"soft_l1"``, ``"huber"``, ``"cauchy"``, ``"arctan"``) for pairs that were not
        really made by blurring one into the other.
    f_scale : float, optional
        Residual size where a robust loss starts to discount, in the units of
        ``blurred``; by default twice the noise estimate.
    isotropic : bool, optional
        Fit one Gaussian sigma (in ``spacing`` units) rather than one per axis. Default:
        True in 2D, False in 3D (microscope PSFs are longer along z).
    pixel_integrated : bool
        Fit the Gaussian, elliptical Gaussian and Moffat models integrated over each pixel
        instead of sampled at the pixel centres, as :func:`psfkit.make_psf` renders them
        with the same option. The default (sampled) returns the ``sigma`` of
        ``scipy.ndimage.gaussian_filter`` (and of scikit-image, DIPlib and MATLAB's
        ``fspecial``), so a fitted sigma can be checked by re-blurring with those
        filters; integrated, it returns the sigma of a Gaussian spot before the pixels
        collected it (smaller by the pixel's 1/12 variance). The other models are always
        integrated over pixels.
    max_evaluations : int
        Cap on model evaluations of the final optimisation.
    callback : callable, optional
        ``callback(step, total, current)`` after each evaluation; return ``False`` to stop
        (the best point so far is returned).

    Returns
    -------
    KernelFit
        ``params`` per model: gaussian ``sigma`` (a float, or one per axis for a 3D or
        anisotropic fit); elliptical_gaussian ``sigma_y, sigma_x, angle`` in one canonical
        form (``sigma_y >= sigma_x``, the major axis first; ``angle`` in [0, π) the
        direction of ``sigma_x``, as :func:`psfkit.make_psf` takes them); moffat
        ``alpha, beta``; airy ``radius`` (first zero); disk ``radius``; ring ``diameter,
        width``; motion ``length, angle`` (angle in [0, π)).

    Notes
    -----
    The forward model is ``blurred(x) = gain · (k_θ ∗ sharp)(x - shift) + offset + noise``
    with ``k_θ`` rendered by :func:`psfkit.make_psf` (with the same ``pixel_integrated``),
    the shift applied as a band-limited phase ramp. It is compared with ``blurred`` only
    where the kernel's support lies inside ``sharp`` ("valid" convolution), so light
    entering the frame from outside does not bias the fit. Parameters, gain, offset and shift are
    fitted together by Levenberg–Marquardt on the ``P × P`` normal equations (robust losses
    by iteratively reweighted least squares, bounds by clipping); kernel derivatives are
    central differences of the rendering, shift derivatives are analytic. The starting
    point is found from the data: the shift by phase correlation, then the size by
    comparing a ladder of sizes on a binned copy of the pair and refining the best two on a
    central crop (for defocus models, the cepstrum diameter of :func:`defocus_diameter` is
    one more candidate), with gain and offset solved linearly for each. Errors are
    ``sqrt(diag((JᵀJ)⁻¹) · RSS / (M − P))``, propagated to ``params`` by the delta method.
    ``model="auto"`` compares the models by the BIC on the valid region of the largest
    kernel, so that all are judged on the same pixels.

    References
    ----------
    .. [1] K. Levenberg, "A method for the solution of certain non-linear problems in
       least squares", Quart. Appl. Math. 2, 164–168 (1944); D. W. Marquardt, SIAM J.
       Appl. Math. 11, 431–441 (1963).
    .. [2] G. Schwarz, "Estimating the dimension of a model", Ann. Statist. 6, 461–464
       (1978).
    .. [3] B. P. Bogert, M. J. R. Healy, J. W. Tukey, "The quefrency alanysis of time
       series for echoes", Proc. Symp. Time Series Analysis, 209–243 (1963) (the cepstrum).

    Examples
    --------
    >>> from psfkit import make_psf
    >>> from psfkit.samples import blurred_pair
    >>> pair = blurred_pair(make_psf("gaussian", 21, sigma=2.0), (128, 128), noise=0.01)
    >>> fit = fit_kernel(pair.sharp, pair.blurred, "gaussian")
    >>> round(fit.params["sigma"], 1)
    2.0
    """
    sharp = as_float_array(sharp, "sharp")
    blurred = as_float_array(blurred, "blurred")
    matching_pair(sharp, blurred)
    request = _request(sharp.ndim, model, shape, spacing, loss, f_scale, isotropic,
                       pixel_integrated, max_evaluations)
    callback = optional_callable(callback)
    pair = _Normalised.of(sharp, blurred)
    # f_scale is given in the units of blurred; the loss sees standardised residuals
    scale = (2.0 * pair.noise if request.f_scale is None
             else min(request.f_scale / pair.blurred_std, _QUADRATIC_LOSS_SCALE))
    robust = _Loss(request.loss, scale)
    # a tenth of a pixel is plenty for a start: the fit refines the shift
    shift0 = estimate_shift(pair.sharp, pair.blurred, upsample=10)
    fits = _fit_models(request, pair, shift0, robust, callback)
    ranking = []
    if len(fits) > 1:
        fits, ranking = _rank(fits, pair.blurred, pair.noise)
    best = min(fits, key=lambda f: f.criterion)
    if request.budget < request.max_evaluations and best.optimum.message == _MAX_EVALUATIONS:
        # the winner ran out of its share: let it finish (from its own result)
        optimum = _optimise(_Objective(best.spec, best.problem, robust), best.optimum.v,
                            best.optimum.shift, request.max_evaluations, callback)
        best = _ModelFit.of(best.spec, best.problem, optimum)
    return finite_result(_result(best, blurred, pair, request, ranking), "fit_kernel")


@dataclass(frozen=True)
class _ModelFit:
    """One model fitted: its problem, the optimiser's outcome, and the criterion it is
    judged by (its own BIC, or the BIC on the region common to all models)."""

    spec: _Model
    problem: _Problem
    optimum: _Optimum
    criterion: float

    @classmethod
    def of(cls, spec: _Model, problem: _Problem, optimum: _Optimum) -> _ModelFit:
        """The fit judged by its own BIC."""
        return cls(spec, problem, optimum, optimum.criterion)

    def rendered(self) -> np.ndarray:
        """The fitted kernel on the problem's kernel shape (float64)."""
        return self.spec.render(self.problem.kernel_shape, self.optimum.v)

    def prediction(self) -> np.ndarray:
        """``gain · (kernel ∗ shift(sharp)) + offset`` over the whole frame, in normalised
        units."""
        optimum = self.optimum
        kernel = self.rendered()
        return optimum.gain * self.problem.apply_to_image(kernel, optimum.shift) + optimum.offset


def _fit_models(request: _Request, pair: _Normalised, shift0, loss: _Loss,
                callback) -> list[_ModelFit]:
    """Fit each requested model in turn (until the callback asks to stop); with several,
    the callback sees one step per model."""
    names = request.names
    fits = []
    for step, name in enumerate(names, 1):
        spec = _model_for(name, pair.sharp.ndim, request.isotropic, request.spacing,
                          request.pixel_integrated)
        model_callback = callback
        if callback is not None and len(names) > 1:
            def model_callback(_s, _t, current, step=step):
                return report(callback, step, len(names), current)
        fits.append(_fit_one(spec, pair, request.shape, shift0, loss, request.budget,
                             model_callback))
        if fits[-1].optimum.message == _STOPPED:
            break
    return fits


def _rank(fits: list[_ModelFit], blurred, noise) -> tuple[list[_ModelFit], list[tuple]]:
    """Compare fits of different models on the same pixels: the valid region of the
    largest kernel. Returns the fits, best first, each judged by its BIC on that common
    region, and ``(name, criterion, reduced chi²)`` for each."""
    windows = [f.problem.data_window for f in fits]
    common = tuple(slice(max(w[i].start for w in windows), min(w[i].stop for w in windows))
                   for i in range(blurred.ndim))
    count = int(np.prod([s.stop - s.start for s in common]))
    data = blurred[common].astype(np.float64)
    scored = []
    for f in fits:
        prediction = f.prediction()[common]
        rss = float(((prediction - data) ** 2).sum())
        nparams = f.optimum.nparams
        scored.append((replace(f, criterion=_bic(rss, count, nparams)),
                       _reduced_chi2(rss, count, nparams, noise)))
    scored.sort(key=lambda pair: pair[0].criterion)
    return ([f for f, _ in scored],
            [(f.spec.name, f.criterion, chi2) for f, chi2 in scored])


def _fit_one(spec: _Model, pair: _Normalised, shape, shift0, loss: _Loss, max_evaluations,
             callback) -> _ModelFit:
    """Search a starting point at full resolution on a central crop among the candidates,
    then optimise on the whole valid region (a second time on a larger kernel shape if the
    fit outgrew the first)."""
    a, b = pair.sharp, pair.blurred
    margin = np.abs(shift0) + 1.5
    candidates = (_coarse_candidates(spec, pair, shift0, margin)
                  + _defocus_candidates(spec, pair))
    scores = _search_scores(spec, a, b, shift0, candidates, shape, margin)
    start = candidates[int(np.argmin(scores))]

    for _attempt in range(2):
        # a generous shape, so that the fit rarely outgrows it and has to be repeated
        kernel_shape = shape or _kernel_shape(spec, spec.scaled(start, 1.25), a.ndim, a.shape,
                                              margin)
        problem = _Problem(a, b, kernel_shape, margin)
        optimum = _optimise(_Objective(spec, problem, loss), start, shift0, max_evaluations,
                            callback)
        needed = _kernel_shape(spec, optimum.v, a.ndim, a.shape, margin)
        fits_inside = all(n <= k for n, k in zip(needed, kernel_shape, strict=True))
        if shape is not None or optimum.message == _STOPPED or fits_inside:
            break
        start = optimum.v
    return _ModelFit.of(spec, problem, optimum)


# -- the result in the caller's units ----------------------------------------------------


def _bound_message(spec: _Model, v, message: str) -> str:
    """``message``, with a warning when a parameter sits at its bound."""
    at_lower = np.isclose(v, spec.lower, rtol=1e-6, atol=1e-9)
    at_upper = np.isclose(v, spec.upper, rtol=1e-6, atol=1e-9)
    if np.any(at_lower | at_upper):
        message += ("; a parameter sits at its bound (e.g. no measurable blur), so its error "
                    "is not meaningful")
    return message


def _result(best: _ModelFit, blurred, pair: _Normalised, request: _Request,
            ranking) -> KernelFit:
    """The public result of the chosen fit, in the caller's units."""
    spec, problem, optimum = best.spec, best.problem, best.optimum
    packing, covariance = optimum.packing, optimum.covariance
    params = spec.public(optimum.v)
    errors = _parameter_errors(spec, optimum.v, covariance[packing.model, packing.model])
    intensity = packing.intensity
    gain, offset, intensity_errors = pair.caller_intensity(
        optimum.gain, optimum.offset, covariance[intensity, intensity])
    errors.update(intensity_errors)
    shift_errors = np.sqrt(np.clip(np.diag(covariance)[packing.shift], 0, None))
    errors["shift"] = tuple(float(e) for e in shift_errors)

    kernel64 = best.rendered()
    prediction = best.prediction()
    reblurred = (prediction * pair.blurred_std + pair.blurred_mean).astype(np.float32)
    residual = np.zeros(blurred.shape, dtype=np.float32)
    valid = problem.data_window
    residual[valid] = blurred[valid] - reblurred[valid]
    spacing = request.spacing if request.spacing_given else None
    fwhm = spec.fwhm(params)
    return KernelFit(
        model=spec.name, params=params, errors=errors, kernel=kernel64.astype(np.float32),
        residual=residual, reblurred=reblurred, shift=np.asarray(optimum.shift, dtype=float),
        gain=gain, offset=offset, fwhm=fwhm,
        ellipticity=_ellipticity(kernel64, request.spacing),
        reduced_chi2=float(_reduced_chi2(optimum.rss, optimum.count, optimum.nparams,
                                         pair.noise)),
        noise_sigma=float(pair.noise * pair.blurred_std), criterion=float(best.criterion),
        ranking=ranking,
        params_physical=lengths_in_spacing_units(params, LENGTH_PARAMETERS[spec.name], spacing),
        fwhm_physical=in_spacing_units(fwhm, spacing),
        valid=valid, spacing=request.spacing, pixel_integrated=request.pixel_integrated,
        loss=request.loss, success=optimum.success,
        message=_bound_message(spec, optimum.v, str(optimum.message)),
        evaluations=optimum.evaluations)
