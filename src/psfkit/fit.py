"""Parametric kernel fits between a sharp and a blurred image.

:func:`fit_kernel` finds the parameters of a model kernel (a Gaussian sigma, a defocus
disk's radius, a motion blur's length and angle, ...) that best turn ``sharp`` into
``blurred``, jointly with the intensity gain and offset and the sub-pixel shift between the
images, by nonlinear least squares over the region where the convolution sees only real
data. :func:`defocus_diameter` reads the diameter of a defocus blur from the cepstrum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from ._progress import report
from ._validate import as_float_array, odd_shape
from .align import edge_window, estimate_shift
from .models import MODELS, render
from .noise import noise_sigma
from .operators import WORKERS, fast_shape, inner

#: FWHM of a Gaussian in units of its sigma.
GAUSSIAN_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: FWHM of the Airy pattern in units of its first-zero radius.
AIRY_FWHM = 2 * 1.616339948310703 / 3.831705970207512

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")

#: Largest centred crop, per axis, on which starting points are compared.
_SEARCH_CROP = 256
_STOPPED = "stopped by the callback"
_MAX_EVALUATIONS = "maximum number of evaluations reached"
#: Evaluations each model gets when ``model="auto"`` compares them.
_AUTO_EVALUATIONS = 25


# -- models: parameter vectors, bounds, extents, starting points --------------------------


@dataclass(frozen=True)
class _Model:
    """How ``fit_kernel`` handles one model: the internal parameter vector ``v``."""

    name: str
    lower: tuple
    upper: tuple
    #: v -> public params dict (values in pixels / radians; tuples for per-axis sigmas)
    public: Callable
    #: v -> radius (per axis) in pixels that holds the kernel
    extent: Callable
    #: size scale (px) -> list of starting vectors
    starts: Callable
    #: public params -> FWHM in pixels
    fwhm: Callable
    #: which entries of ``v`` are lengths (scale with the image when it is binned)
    lengths: tuple = ()
    #: Gaussian only: the spacing and isotropy it was built for
    spacing: tuple = ()
    isotropic: bool = False

    def scaled(self, v, factor) -> np.ndarray:
        """``v`` with its lengths multiplied by ``factor``."""
        v = np.array(v, dtype=float)
        mask = np.array(self.lengths or (True,) * v.size)
        v[mask] *= factor
        return v

    def binned(self, factors) -> tuple[_Model, Callable, Callable]:
        """The model on images binned by ``factors`` (per axis), with the maps of ``v`` to
        and from the binned pixels."""
        factors = np.asarray(factors, dtype=float)
        if self.name != "gaussian":  # 2D models: one factor for both axes
            f = float(factors[0])
            return self, lambda v: self.scaled(v, 1 / f), lambda v: self.scaled(v, f)
        spacing = np.asarray(self.spacing)
        coarse = _gaussian_model(len(factors), self.isotropic, spacing * factors)
        if self.isotropic:  # v is the physical sigma in units of the finest spacing
            ratio = spacing.min() / (spacing * factors).min()
            return coarse, lambda v: np.asarray(v) * ratio, lambda v: np.asarray(v) / ratio
        return coarse, lambda v: np.asarray(v) / factors, lambda v: np.asarray(v) * factors

    def render(self, shape, v) -> np.ndarray:
        return render(self.name, shape, **self.public(v))


def _canonical_angle(angle: float) -> float:
    """An axis direction in (-π/2, π/2]: θ and θ + π describe the same kernel."""
    angle = math.remainder(float(angle), math.pi)
    return math.pi / 2 if angle <= -math.pi / 2 else angle


def _ellipse_from_cholesky(v) -> dict:
    """Covariance ``L Lᵀ`` with ``L = [[a, 0], [b, c]]`` (y, x order) -> sigmas and angle.

    The major axis is reported as ``sigma_x`` and ``angle`` is its direction, so the
    result is unique (up to a circular kernel, whose angle is arbitrary).
    """
    a, b, c = (float(t) for t in v)
    covariance = np.array([[a * a, a * b], [a * b, b * b + c * c]])
    values, vectors = np.linalg.eigh(covariance)
    major = vectors[:, 1]  # (y, x) components of the major axis
    return {"sigma_y": float(np.sqrt(max(values[0], 1e-300))),
            "sigma_x": float(np.sqrt(values[1])),
            "angle": _canonical_angle(math.atan2(major[0], major[1]))}


def _gaussian_model(ndim: int, isotropic: bool, spacing) -> _Model:
    spacing = np.asarray(spacing, dtype=float)
    relative = spacing / spacing.min()  # isotropic in physical units: σ_px = σ / relative
    anisotropic = bool(np.any(relative != 1.0))

    if isotropic:
        def public(v):
            if not anisotropic and ndim == 2:
                return {"sigma": float(v[0])}
            return {"sigma": tuple(float(v[0] / r) for r in relative)}

        def extent(v):
            return 4.0 * v[0] / relative + 1.0

        def starts(size):
            return [np.array([s]) for s in size]

        lower, upper = (0.1,), (np.inf,)
    else:
        def public(v):
            return {"sigma": tuple(float(s) for s in v)}

        def extent(v):
            return 4.0 * np.asarray(v) + 1.0

        def starts(size):
            # round in physical units, or round in pixels (a microscope's PSF is longer
            # along z than across by about the usual z step / pixel size ratio)
            shapes = [1 / relative, np.ones(ndim)] if anisotropic else [np.ones(ndim)]
            return [s * shape for s in size for shape in shapes]

        lower, upper = (0.1,) * ndim, (np.inf,) * ndim

    def fwhm(params):
        sigma = params["sigma"]
        if np.isscalar(sigma):
            return GAUSSIAN_FWHM * sigma
        return tuple(GAUSSIAN_FWHM * s for s in sigma)

    return _Model("gaussian", lower, upper, public, extent, starts, fwhm,
                  spacing=tuple(spacing), isotropic=isotropic)


def _models_2d() -> dict[str, _Model]:
    def ellipse_extent(v):
        p = _ellipse_from_cholesky(v)
        return 4.0 * max(p["sigma_x"], p["sigma_y"]) + 1.0

    def moffat_extent(v):
        alpha, beta = v
        # where the profile falls to 1e-4 of its peak, within reason
        return min(alpha * math.sqrt(1e4 ** (1.0 / max(beta, 0.5)) - 1.0), 12.0 * alpha) + 1.0

    def ring_public(v):
        return {"diameter": float(v[0]), "width": float(v[1])}

    return {
        "elliptical_gaussian": _Model(
            "elliptical_gaussian", (0.1, -np.inf, 0.1), (np.inf, np.inf, np.inf),
            _ellipse_from_cholesky, ellipse_extent,
            lambda size: [np.array([s, 0.0, s]) for s in size],
            lambda p: GAUSSIAN_FWHM * math.sqrt(p["sigma_x"] * p["sigma_y"]),
            (True, True, True)),
        "moffat": _Model(
            "moffat", (0.1, 0.5), (np.inf, 20.0),
            lambda v: {"alpha": float(v[0]), "beta": float(v[1])}, moffat_extent,
            # a Moffat of beta 2.5 has the FWHM of a Gaussian of sigma 0.84 alpha
            lambda size: [np.array([s / 0.84 * f, beta]) for s in size
                          for f, beta in ((1.0, 2.5), (1.6, 4.5))],
            lambda p: 2 * p["alpha"] * math.sqrt(2 ** (1 / p["beta"]) - 1), (True, False)),
        "airy": _Model(
            "airy", (0.3,), (np.inf,), lambda v: {"radius": float(v[0])},
            lambda v: 5.0 * v[0] + 1.0,
            # sigma of the best Gaussian is about 0.34 times the first-zero radius
            lambda size: [np.array([s / 0.34]) for s in size],
            lambda p: AIRY_FWHM * p["radius"], (True,)),
        "disk": _Model(
            "disk", (0.3,), (np.inf,), lambda v: {"radius": float(v[0])},
            lambda v: v[0] + 2.0,
            lambda size: [np.array([2.0 * s]) for s in size],
            lambda p: 2.0 * p["radius"], (True,)),
        "ring": _Model(
            "ring", (0.5, 0.2), (np.inf, np.inf), ring_public,
            lambda v: v[0] / 2 + 4.0 * v[1] + 1.0,
            lambda size: [np.array([2.8 * s, max(0.5, 0.15 * s)]) for s in size],
            lambda p: p["diameter"] + GAUSSIAN_FWHM * p["width"], (True, True)),
        "motion": _Model(
            "motion", (0.5, -np.inf), (np.inf, np.inf),
            lambda v: {"length": float(v[0]), "angle": _canonical_angle(v[1])},
            lambda v: v[0] / 2 + 2.0,
            lambda size: [np.array([3.4 * s, a]) for s in size
                          for a in np.arange(12) * np.pi / 12],
            lambda p: p["length"], (True, False)),
    }


def _model_for(name: str, ndim: int, isotropic: bool, spacing) -> _Model:
    if name == "gaussian":
        return _gaussian_model(ndim, isotropic, spacing)
    if ndim != 2:
        raise ValueError(f"the {name!r} model is 2D only; in 3D fit 'gaussian'")
    return _models_2d()[name]


# -- the forward model on a padded periodic grid -------------------------------------------


class _Problem:
    """``blurred ≈ gain · (kernel ∗ shift(sharp)) + offset`` over a fixed window.

    ``sharp`` sits in a grid padded by mirroring, so the band-limited sub-pixel shift (a
    phase ramp) sees no artificial edge; only output samples whose kernel support, moved
    by up to ``margin`` px, lies inside ``sharp`` are compared with ``blurred``.
    """

    def __init__(self, sharp, blurred, kernel_shape, margin, crop=None):
        ndim = sharp.ndim
        self.kernel_shape = tuple(kernel_shape)
        half = np.array(kernel_shape) // 2
        margin = np.ceil(np.asarray(margin, dtype=float)).astype(int)
        start = half + margin
        stop = np.array(sharp.shape) - half - margin
        if np.any(stop - start < 4):
            raise ValueError(
                f"the kernel {tuple(kernel_shape)} plus a shift margin of "
                f"{margin.tolist()} px leaves no valid region in images of shape "
                f"{sharp.shape}; use larger images or a smaller kernel shape")
        if crop is not None:  # compare a centred sub-window only (cheap searches)
            centre = (start + stop) // 2
            length = np.minimum(stop - start, crop)
            start, stop = centre - length // 2, centre - length // 2 + length
            lo = np.maximum(start - half - margin - 8, 0)
            hi = np.minimum(stop + half + margin + 8, sharp.shape)
            sharp = sharp[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
            self.origin = lo
            start, stop = start - lo, stop - lo
        else:
            self.origin = np.zeros(ndim, dtype=int)
        self.window = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        # the window never reads beyond the image by more than the margin; a few more
        # mirrored samples keep the band-limited shift free of edge ringing
        pad = margin + 4
        self.grid_shape = fast_shape(np.array(sharp.shape) + 2 * pad)
        after = np.array(self.grid_shape) - np.array(sharp.shape) - pad
        padded = np.pad(sharp, [(int(p), int(a)) for p, a in zip(pad, after, strict=True)],
                        mode="symmetric")
        self.pad = pad
        self.grid_window = tuple(slice(int(a + p), int(b + p))
                                 for a, b, p in zip(start, stop, pad, strict=True))
        self.sharp_ft = scipy.fft.rfftn(padded.astype(np.float32), workers=WORKERS)
        window_full = tuple(slice(int(a + o), int(b + o))
                            for a, b, o in zip(start, stop, self.origin, strict=True))
        self.data = blurred[window_full].astype(np.float64)
        self.data_window = window_full
        # angular frequencies per axis, broadcastable against the rfft grid
        self.omegas = []
        for axis, n in enumerate(self.grid_shape):
            f = (scipy.fft.rfftfreq(n) if axis == ndim - 1 else scipy.fft.fftfreq(n))
            shape = [1] * ndim
            shape[axis] = -1
            self.omegas.append((2 * np.pi * f).reshape(shape).astype(np.float32))

    def kernel_spectra(self, kernels: np.ndarray) -> np.ndarray:
        """rfftn of centred kernels (stacked on axis 0) on the grid, origin at index 0."""
        kernels = np.asarray(kernels, dtype=np.float32)
        ndim = len(self.grid_shape)
        padded = np.zeros((kernels.shape[0], *self.grid_shape), dtype=np.float32)
        # the centre pixel goes to index 0, the rest wraps around (no roll of the grid)
        wrapped = np.ix_(range(kernels.shape[0]), *[
            (np.arange(k) - k // 2) % n for k, n in zip(self.kernel_shape, self.grid_shape,
                                                       strict=True)])
        padded[wrapped] = kernels
        return scipy.fft.rfftn(padded, axes=tuple(range(1, ndim + 1)), workers=WORKERS)

    def ramp(self, shift) -> np.ndarray:
        ramp = np.ones((1,) * len(self.grid_shape), dtype=np.complex64)
        for omega, s in zip(self.omegas, shift, strict=True):
            ramp = ramp * np.exp(-1j * omega * np.float32(s)).astype(np.complex64)
        return ramp

    def blur(self, spectra: np.ndarray) -> np.ndarray:
        """Inverse transforms of ``sharp_ft · spectra`` (stacked), cropped to the window."""
        ndim = len(self.grid_shape)
        out = scipy.fft.irfftn(self.sharp_ft * spectra, self.grid_shape,
                               axes=tuple(range(spectra.ndim - ndim, spectra.ndim)),
                               workers=WORKERS)
        return out[(..., *self.grid_window)]

    def convolved(self, kernel, shift) -> np.ndarray:
        spectrum = self.kernel_spectra(kernel[None])[0] * self.ramp(shift)
        return self.blur(spectrum).astype(np.float64)

    def full_convolved(self, kernel, shift, shape) -> np.ndarray:
        """The model over the whole grid, cropped to the images' ``shape`` (uncropped
        problems only)."""
        spectrum = self.kernel_spectra(kernel[None])[0] * self.ramp(shift)
        full = scipy.fft.irfftn(self.sharp_ft * spectrum, self.grid_shape, workers=WORKERS)
        return full[tuple(slice(int(p), int(p) + n) for p, n in zip(self.pad, shape,
                                                                       strict=True))]


def _gram(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``rows @ other.T`` for a few long rows (symmetric when ``rows is other``), BLAS-free
    for the reason given in :func:`psfkit.operators.inner`."""
    count = len(rows)
    gram = np.empty((count, count))
    for i in range(count):
        for j in range(i, count):
            gram[i, j] = gram[j, i] = inner(rows[i], other[j])
    return gram


def _linear_fit(model: np.ndarray, data: np.ndarray) -> tuple[float, float, float]:
    """Least-squares gain and offset of ``data ≈ gain · model + offset``; and the RSS."""
    m = model.ravel().astype(np.float64, copy=False)
    d = data.ravel().astype(np.float64, copy=False)
    count = m.size
    m_sum, d_sum = float(m.sum()), float(d.sum())
    mm = inner(m, m) - m_sum**2 / count
    md = inner(m, d) - m_sum * d_sum / count
    dd = inner(d, d) - d_sum**2 / count
    gain = md / mm if mm > 0 else 0.0
    offset = (d_sum - gain * m_sum) / count
    return gain, offset, max(dd - gain * md, 0.0)


# -- result ---------------------------------------------------------------------------------


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
    physical : dict
        ``params`` sizes and ``fwhm`` multiplied by ``spacing`` (Gaussian only).
    valid : tuple of slice
        The region of ``blurred`` that was compared.
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
    physical: dict = field(default_factory=dict)
    valid: tuple = ()
    spacing: tuple = ()
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
        lines.append(f"FWHM = {_format(self.fwhm)} px, ellipticity = {self.ellipticity:.3f}")
        lines.append(f"reduced chi² = {self.reduced_chi2:.3g}")
        return "\n".join(lines)


def _format(value) -> str:
    if value is None:
        return "?"
    if np.ndim(value):
        return "(" + ", ".join(f"{float(v):.4g}" for v in value) + ")"
    return f"{float(value):.4g}"


# -- the fit --------------------------------------------------------------------------------


def _ellipticity(kernel: np.ndarray, spacing) -> float:
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


def _flatten(params: dict) -> tuple[list[str], np.ndarray]:
    names, values = [], []
    for name, value in params.items():
        if np.ndim(value):
            names += [(name, i) for i in range(len(value))]
            values += [float(v) for v in value]
        else:
            names.append((name, None))
            values.append(float(value))
    return names, np.array(values)


def _errors_dict(names, errors) -> dict:
    out: dict = {}
    for (name, index), error in zip(names, errors, strict=True):
        if index is None:
            out[name] = float(error)
        else:
            out.setdefault(name, []).append(float(error))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def _kernel_shape(model: _Model, v, ndim, image_shape, shift) -> tuple[int, ...]:
    """Odd shape that holds the model, capped so a useful region remains valid."""
    radius = np.broadcast_to(np.ceil(np.asarray(model.extent(v), dtype=float)), (ndim,))
    cap = (np.array(image_shape) - 2 * np.ceil(np.abs(shift)) - 8) // 3
    radius = np.clip(radius, 1, np.maximum(cap, 1)).astype(int)
    return tuple(int(2 * r + 1) for r in radius)


def _size_scales(ndim) -> np.ndarray:
    """Sizes (px) tried as starting points: geometric steps of about 22 %."""
    return np.geomspace(0.4, 24.0, 22 if ndim == 2 else 14)


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
        isotropic in these units; ``physical`` reports sizes in them.
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
    max_evaluations : int
        Cap on model evaluations of the final optimisation.
    callback : callable, optional
        ``callback(step, total, current)`` after each evaluation; return ``False`` to stop
        (the best point so far is returned).

    Returns
    -------
    KernelFit
        ``params`` per model: gaussian ``sigma`` (a float, or one per axis for a 3D or
        anisotropic fit); elliptical_gaussian ``sigma_y, sigma_x, angle`` (``sigma_x`` the
        major axis, ``angle`` its direction); moffat ``alpha, beta``; airy ``radius`` (first
        zero); disk ``radius``; ring ``diameter, width``; motion ``length, angle``.

    Notes
    -----
    The forward model is ``blurred(x) = gain · (k_θ ∗ sharp)(x - shift) + offset + noise``
    with ``k_θ`` rendered by :func:`psfkit.make_psf` (integrated over pixels), the shift
    applied as a band-limited phase ramp. It is compared with ``blurred`` only where the
    kernel's support lies inside ``sharp`` ("valid" convolution), so light entering the
    frame from outside does not bias the fit. Parameters, gain, offset and shift are
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
    if sharp.shape != blurred.shape:
        raise ValueError(f"sharp and blurred differ in shape: {sharp.shape} and {blurred.shape}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    ndim = sharp.ndim
    if spacing is None:
        spacing = (1.0,) * ndim
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, float), (ndim,)))
    if any(not (s > 0 and math.isfinite(s)) for s in spacing):
        raise ValueError(f"spacing must be positive, got {spacing}")
    if isotropic is None:
        isotropic = ndim == 2
    if shape is not None:
        shape = odd_shape(shape, ndim)
    if model == "auto":
        names = MODELS if ndim == 2 else ("gaussian",)
    elif model in MODELS:
        names = (model,)
    else:
        raise ValueError(f"unknown model {model!r}; choose from {('auto', *MODELS)}")
    if ndim != 2 and names != ("gaussian",):
        raise ValueError(f"the {model!r} model is 2D only; in 3D fit 'gaussian'")

    # work in normalised units: zero mean, unit standard deviation
    sharp_mean, sharp_std = float(sharp.mean()), float(sharp.std())
    blurred_mean, blurred_std = float(blurred.mean()), float(blurred.std())
    if sharp_std == 0 or blurred_std == 0:
        raise ValueError("sharp and blurred must not be constant")
    a = ((sharp - sharp_mean) / sharp_std).astype(np.float32)
    b = ((blurred - blurred_mean) / blurred_std).astype(np.float32)
    noise = noise_sigma(b)

    # a tenth of a pixel is plenty for a start: the fit refines the shift
    shift0 = estimate_shift(a, b, upsample=10)
    # when comparing models, the wrong ones need not converge to the last digit
    budget = min(max_evaluations, _AUTO_EVALUATIONS) if len(names) > 1 else max_evaluations
    fits = []
    for step, name in enumerate(names, 1):
        spec = _model_for(name, ndim, isotropic, spacing)
        inner_callback = callback
        if callback is not None and len(names) > 1:
            def inner_callback(_s, _t, current, step=step):
                return report(callback, step, len(names), current)
        fits.append(_fit_one(spec, a, b, shape, shift0, noise, loss, f_scale, budget,
                             inner_callback))
        if fits[-1]["message"] == _STOPPED:
            break
    ranking = []
    if len(fits) > 1:
        ranking = _rank(fits, a, b, noise)
    best = min(fits, key=lambda f: f["criterion"])
    if budget < max_evaluations and best["message"] == _MAX_EVALUATIONS:
        # the winner ran out of its share: let it finish (from its own result)
        finished = _optimise(best["spec"], best["problem"], best["v"],
                             best["x"][len(best["v"]):len(best["v"]) + ndim], noise, loss,
                             f_scale, max_evaluations, callback)
        finished.update(spec=best["spec"], problem=best["problem"])
        best = finished
    return _result(best, sharp, blurred, a, spacing, (sharp_mean, sharp_std),
                   (blurred_mean, blurred_std), noise, ranking, loss)


def _rank(fits, a, b, noise) -> list[tuple[str, float, float]]:
    """Compare fits of different models on the same pixels: the valid region of the
    largest kernel. Each fit's criterion becomes the BIC on that common region."""
    windows = [f["problem"].data_window for f in fits]
    common = tuple(slice(max(w[i].start for w in windows), min(w[i].stop for w in windows))
                   for i in range(a.ndim))
    count = int(np.prod([s.stop - s.start for s in common]))
    data = b[common].astype(np.float64)
    for f in fits:
        problem, x, nv = f["problem"], f["x"], len(f["v"])
        kernel = f["spec"].render(problem.kernel_shape, f["v"]).astype(np.float32)
        prediction = problem.full_convolved(kernel, x[nv:nv + a.ndim], a.shape)[common]
        rss = float(((x[-2] * prediction + x[-1] - data) ** 2).sum())
        f["criterion"] = count * math.log(max(rss, 1e-300) / count) + f["nparams"] * math.log(
            count)
        f["common_chi2"] = rss / max(count - f["nparams"], 1) / noise**2
    fits.sort(key=lambda f: f["criterion"])
    return [(f["spec"].name, f["criterion"], f["common_chi2"]) for f in fits]


def _pyramid_factors(shape, uniform: bool) -> np.ndarray:
    """Binning factor per axis (1, 2 or 4) that leaves at least 64 px along it; the
    smallest of them on every axis when ``uniform``."""
    factors = np.ones(len(shape), dtype=int)
    for axis, n in enumerate(shape):
        while factors[axis] < 4 and n // (2 * factors[axis]) >= 64:
            factors[axis] *= 2
    return np.full(len(shape), factors.min()) if uniform else factors


def _bin(image: np.ndarray, factors) -> np.ndarray:
    """Mean over blocks of ``factors`` (per axis) samples (the remainder is dropped)."""
    cropped = image[tuple(slice(0, n - n % f) for n, f in zip(image.shape, factors,
                                                              strict=True))]
    shape = []
    for n, f in zip(cropped.shape, factors, strict=True):
        shape += [n // f, f]
    return cropped.reshape(shape).mean(axis=tuple(range(1, 2 * image.ndim, 2)))


def _search_scores(spec: _Model, a, b, shift, candidates, shape, margin) -> list[float]:
    """Residual sum of squares of each candidate (gain and offset solved linearly) on a
    central crop, all rendered on one kernel shape that holds the largest."""
    ndim = a.ndim
    if shape is None:
        extents = [_kernel_shape(spec, v, ndim, a.shape, margin) for v in candidates]
        shape = tuple(max(e[i] for e in extents) for i in range(ndim))
    search = _Problem(a, b, shape, margin, crop=_SEARCH_CROP)
    scores = []
    for v in candidates:
        kernel = spec.render(shape, v)
        scores.append(_linear_fit(search.convolved(kernel, shift), search.data)[2])
    return scores


def _fit_one(spec: _Model, a, b, shape, shift0, noise, loss, f_scale, max_evaluations,
             callback):
    """Search a starting point, then optimise; a dict of everything ``_result`` needs."""
    ndim = a.ndim
    # starting point: a ladder of sizes compared on a binned copy of the images, then the
    # best two refined at full resolution on a central crop
    candidates = [v for size in _size_scales(ndim) for v in spec.starts([size])]
    margin = np.abs(shift0) + 1.5
    factors = _pyramid_factors(a.shape, uniform=spec.name != "gaussian")
    if np.any(factors > 1):
        coarse_spec, to_coarse, _ = spec.binned(factors)
        scores = _search_scores(coarse_spec, _bin(a, factors), _bin(b, factors),
                                shift0 / factors, [to_coarse(v) for v in candidates], None,
                                margin / factors + 1)
        best = np.argsort(scores)[:2]
        candidates = [spec.scaled(candidates[i], r) for i in best
                      for r in (0.8, 1.0, 1.25)]
    if spec.name in ("disk", "ring") and ndim == 2:
        try:
            diameter = defocus_diameter(b, sharp=a)
        except ValueError:
            diameter = None
        if diameter is not None:
            candidates.append(np.array([diameter / 2]) if spec.name == "disk"
                              else np.array([diameter, max(0.5, 0.05 * diameter)]))
    scores = _search_scores(spec, a, b, shift0, candidates, shape, margin)
    start = candidates[int(np.argmin(scores))]

    for _attempt in range(2):
        # a generous shape, so that the fit rarely outgrows it and has to be repeated
        kernel_shape = shape or _kernel_shape(spec, spec.scaled(start, 1.25), ndim, a.shape,
                                              margin)
        problem = _Problem(a, b, kernel_shape, margin)
        outcome = _optimise(spec, problem, start, shift0, noise, loss, f_scale,
                            max_evaluations, callback)
        needed = _kernel_shape(spec, outcome["v"], ndim, a.shape, margin)
        fits_inside = all(n <= k for n, k in zip(needed, kernel_shape, strict=True))
        if shape is not None or outcome["message"] == _STOPPED or fits_inside:
            break
        start = outcome["v"]
    outcome["spec"] = spec
    outcome["problem"] = problem
    return outcome


def _robust(loss: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rho(z)`` and ``rho'(z)`` of the losses of :func:`scipy.optimize.least_squares`,
    ``z`` being the squared scaled residual."""
    if loss == "linear":
        return z, np.ones_like(z)
    if loss == "soft_l1":
        root = np.sqrt(1 + z)
        return 2 * (root - 1), 1 / root
    if loss == "huber":
        outer = z > 1
        root = np.sqrt(np.where(outer, z, 1.0))
        return np.where(outer, 2 * root - 1, z), np.where(outer, 1 / root, 1.0)
    if loss == "cauchy":
        return np.log1p(z), 1 / (1 + z)
    return np.arctan(z), 1 / (1 + z**2)  # arctan


def _optimise(spec: _Model, problem: _Problem, v0, shift0, noise, loss, f_scale,
              max_evaluations, callback):
    """Levenberg–Marquardt on the normal equations (robust losses by reweighting).

    The residual has hundreds of thousands of samples but only a handful of parameters, so
    the ``P × P`` normal equations ``JᵀWJ δ = -JᵀWr`` are solved instead of factorising
    ``J``; this keeps a fit of a 512² pair well under a second. Bounds are kept by clipping.
    """
    ndim = len(problem.kernel_shape)
    nv = len(v0)
    data = problem.data.ravel()
    lower = np.concatenate([spec.lower, np.full(ndim, -np.inf), [-np.inf, -np.inf]])
    upper = np.concatenate([spec.upper, np.full(ndim, np.inf), [np.inf, np.inf]])
    scale = 2.0 * noise if f_scale is None else float(f_scale)
    evaluations = 0

    def render(v):
        return spec.render(problem.kernel_shape, v)

    def transforms(x, with_jacobian):
        """Model, kernel- and shift-derivatives at ``x`` (gain 1, offset 0), one row each."""
        nonlocal evaluations
        v, shift = x[:nv], x[nv:nv + ndim]
        kernels = [render(v)]
        if with_jacobian:
            steps = 1e-4 * np.maximum(np.abs(v), 1.0)
            for i in range(nv):
                up, down = v.copy(), v.copy()
                up[i] = min(v[i] + steps[i], spec.upper[i])
                down[i] = max(v[i] - steps[i], spec.lower[i])
                kernels.append((render(up) - render(down)) / (up[i] - down[i]))
        spectra = problem.kernel_spectra(np.array(kernels)) * problem.ramp(shift)
        if with_jacobian:
            spectra = np.concatenate(
                [spectra, np.stack([-1j * omega * spectra[0] for omega in problem.omegas])])
        evaluations += 1
        return problem.blur(spectra).reshape(len(spectra), -1).astype(np.float64)

    def assemble(x, rows):
        """Residual and (transposed) Jacobian from the rows of ``transforms``."""
        residual = x[-2] * rows[0] + x[-1] - data
        jacobian = np.empty((x.size, data.size))
        jacobian[:nv + ndim] = rows[1:] * x[-2]
        jacobian[-2] = rows[0]
        jacobian[-1] = 1.0
        return residual, jacobian

    def cost_of(residual):
        rho, _ = _robust(loss, (residual / scale) ** 2)
        return 0.5 * scale**2 * float(rho.sum())

    x = np.concatenate([v0, shift0, [1.0, 0.0]]).astype(float)
    x = np.clip(x, lower, upper)
    rows = transforms(x, True)
    x[-2], x[-1], _ = _linear_fit(rows[0], data)
    residual, jacobian = assemble(x, rows)
    cost = cost_of(residual)
    damping = 1e-3
    success, message = False, _MAX_EVALUATIONS
    dof = max(data.size - x.size, 1)
    while evaluations < max_evaluations:
        if loss == "linear":
            weighted = jacobian
        else:
            weighted = jacobian * _robust(loss, (residual / scale) ** 2)[1]
        normal = _gram(weighted, jacobian)
        gradient = np.einsum("ik,k->i", weighted, residual)
        diagonal = np.maximum(np.diag(normal), 1e-12 * max(np.diag(normal).max(), 1e-300))
        uncertainty = np.sqrt(np.abs(np.diag(np.linalg.pinv(normal))) * 2 * cost / dof)
        accepted = False
        while evaluations < max_evaluations and damping < 1e10:
            try:
                step = np.linalg.solve(normal + damping * np.diag(diagonal), -gradient)
            except np.linalg.LinAlgError:
                damping *= 10
                continue
            trial = np.clip(x + step, lower, upper)
            if np.all(np.abs(trial - x) <= 1e-2 * uncertainty):
                break  # the step is far below the parameters' own uncertainty
            # with a good start nearly every step is accepted: get its Jacobian at once
            trial_residual, trial_jacobian = assemble(trial, transforms(trial, True))
            trial_cost = cost_of(trial_residual)
            if trial_cost <= cost:
                accepted = True
                break
            damping *= 10
        if not accepted:
            success, message = True, "converged"
            break
        x, cost = trial, trial_cost
        residual, jacobian = trial_residual, trial_jacobian
        damping = max(damping / 5, 1e-9)
        if not report(callback, evaluations, max_evaluations, None):
            success, message = False, _STOPPED
            break

    rss = inner(residual, residual)
    count = residual.size
    nparams = x.size
    dof = max(count - nparams, 1)
    covariance = np.linalg.pinv(_gram(jacobian, jacobian)) * rss / dof
    return {"x": x, "v": x[:nv], "covariance": covariance, "rss": rss, "count": count,
            "nparams": nparams,
            "criterion": count * math.log(max(rss, 1e-300) / count) + nparams * math.log(count),
            "success": success, "message": message, "evaluations": evaluations}


def _result(fit, sharp, blurred, a, spacing, sharp_scale, blurred_scale, noise, ranking,
            loss) -> KernelFit:
    spec: _Model = fit["spec"]
    problem: _Problem = fit["problem"]
    x, covariance = fit["x"], fit["covariance"]
    ndim = sharp.ndim
    nv = len(fit["v"])
    v, shift = x[:nv], x[nv:nv + ndim]
    params = spec.public(v)
    message = str(fit["message"])
    at_lower = np.isclose(v, spec.lower, rtol=1e-6, atol=1e-9)
    at_upper = np.isclose(v, spec.upper, rtol=1e-6, atol=1e-9)
    if np.any(at_lower | at_upper):
        message += ("; a parameter sits at its bound (e.g. no measurable blur), so its error "
                    "is not meaningful")

    # errors of the public parameters by the delta method
    names, values = _flatten(params)
    transform = np.zeros((len(values), nv))
    for i in range(nv):
        step = 1e-6 * max(abs(v[i]), 1.0)
        up, down = v.copy(), v.copy()
        up[i] += step
        down[i] -= step
        difference = _flatten(spec.public(up))[1] - _flatten(spec.public(down))[1]
        if any(n[0] == "angle" for n in names):  # angles wrap at ±π/2
            at = [k for k, n in enumerate(names) if n[0] == "angle"]
            difference[at] = np.remainder(difference[at] + np.pi / 2, np.pi) - np.pi / 2
        transform[:, i] = difference / (2 * step)
    parameter_cov = transform @ covariance[:nv, :nv] @ transform.T
    errors = _errors_dict(names, np.sqrt(np.clip(np.diag(parameter_cov), 0, None)))

    # back to the caller's intensity units
    sharp_mean, sharp_std = sharp_scale
    blurred_mean, blurred_std = blurred_scale
    g, o = x[-2], x[-1]
    gain = float(blurred_std * g / sharp_std)
    offset = float(blurred_mean + blurred_std * o - gain * sharp_mean)
    linear = np.array([[blurred_std / sharp_std, 0.0],
                       [-blurred_std * sharp_mean / sharp_std, blurred_std]])
    linear_cov = linear @ covariance[-2:, -2:] @ linear.T
    errors["gain"] = float(np.sqrt(max(linear_cov[0, 0], 0)))
    errors["offset"] = float(np.sqrt(max(linear_cov[1, 1], 0)))
    shift_errors = np.sqrt(np.clip(np.diag(covariance)[nv:nv + ndim], 0, None))
    errors["shift"] = tuple(float(e) for e in shift_errors)

    kernel64 = spec.render(problem.kernel_shape, v)
    kernel = kernel64.astype(np.float32)
    prediction = problem.full_convolved(kernel, shift, sharp.shape) * g + o
    reblurred = (prediction * blurred_std + blurred_mean).astype(np.float32)
    residual = np.zeros(blurred.shape, dtype=np.float32)
    valid = problem.data_window
    residual[valid] = blurred[valid] - reblurred[valid]

    fwhm = spec.fwhm(params)
    physical = {}
    if spec.name == "gaussian":
        sigma = np.broadcast_to(np.asarray(params["sigma"], float), (ndim,))
        physical = {"sigma": tuple(float(s * d) for s, d in zip(sigma, spacing, strict=True)),
                    "fwhm": tuple(float(GAUSSIAN_FWHM * s * d)
                                  for s, d in zip(sigma, spacing, strict=True))}
    dof = max(fit["count"] - fit["nparams"], 1)
    return KernelFit(
        model=spec.name, params=params, errors=errors, kernel=kernel, residual=residual,
        reblurred=reblurred, shift=np.asarray(shift, dtype=float), gain=gain, offset=offset,
        fwhm=fwhm, ellipticity=_ellipticity(kernel64, spacing),
        reduced_chi2=float(fit["rss"] / dof / noise**2),
        noise_sigma=float(noise * blurred_std), criterion=float(fit["criterion"]),
        ranking=ranking, physical=physical, valid=valid, spacing=spacing, loss=loss,
        success=fit["success"], message=message, evaluations=fit["evaluations"])


# -- defocus diameter from the cepstrum --------------------------------------------------


def defocus_diameter(blurred, *, sharp=None, min_diameter: float = 3.0,
                     max_diameter: float | None = None) -> float:
    """Diameter (px) of a defocus blur, read from the cepstrum of ``blurred``.

    A defocus kernel (a disk or a ring of diameter ``D``) has a transfer function whose
    zeros repeat every ``1 / D`` in frequency, so the log power spectrum ripples with
    that period and its inverse transform, the cepstrum, has a ring at radius ``D``.
    When ``sharp`` is given, its log spectrum is subtracted, which removes the scene's own
    ripples and leaves the kernel's.

    Parameters
    ----------
    blurred : (M, N) ndarray
        The defocused image.
    sharp : (M, N) ndarray, optional
        The same scene in focus.
    min_diameter, max_diameter : float
        Range searched, in pixels (default up to a quarter of the smaller side).

    Returns
    -------
    float
        The diameter, refined to sub-pixel precision by a parabola through the extremum
        of the radially averaged cepstrum.
    """
    blurred = as_float_array(blurred, "blurred", ndim=(2,))
    window = edge_window(blurred.shape, alpha=0.5)
    grid = fast_shape(blurred.shape)

    def log_power(image):
        spectrum = scipy.fft.rfftn((image - image.mean()) * window, grid, workers=WORKERS)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float64)
        return np.log(power + 1e-6 * power.mean())

    log_spectrum = log_power(blurred)
    if sharp is not None:
        sharp = as_float_array(sharp, "sharp", ndim=(2,))
        if sharp.shape != blurred.shape:
            raise ValueError("sharp and blurred differ in shape")
        log_spectrum = log_spectrum - log_power(sharp)
    cepstrum = scipy.fft.irfftn(log_spectrum, grid, workers=WORKERS)
    cepstrum = scipy.fft.fftshift(cepstrum)
    centre = np.array(grid) // 2
    y, x = np.indices(grid, sparse=True)
    radius = np.hypot(y - centre[0], x - centre[1])
    bins = np.round(radius).astype(int)
    counts = np.bincount(bins.ravel())
    profile = np.bincount(bins.ravel(), cepstrum.ravel()) / np.maximum(counts, 1)
    high = int(max_diameter or min(blurred.shape) / 4)
    low = max(math.ceil(min_diameter), 2)
    if high <= low + 2:
        raise ValueError(f"image of shape {blurred.shape} is too small to measure defocus")
    # zeros of the transfer function make the cepstrum dip at quefrency D
    segment = profile[low:high + 1]
    index = int(np.argmin(segment)) + low
    if index <= low or index >= high:
        raise ValueError("no defocus ring found in the cepstrum")
    left, middle, right = profile[index - 1:index + 2]
    curvature = left - 2 * middle + right
    offset = 0.5 * (left - right) / curvature if curvature > 0 else 0.0
    return float(index + np.clip(offset, -0.5, 0.5))
