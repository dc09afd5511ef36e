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
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft

from ._progress import report
from ._validate import as_float_array, odd_shape
from .align import edge_window, estimate_shift
from .models import MODELS, render
from .noise import noise_sigma
from .operators import WORKERS, fast_shape, frequencies, inner, periodic_embed

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

    def binned(self, factors) -> tuple[_Model, Callable]:
        """The model on images binned by ``factors`` (per axis), with the map of ``v`` to
        the binned pixels."""
        factors = np.asarray(factors, dtype=float)
        if self.name != "gaussian":  # 2D models: one factor for both axes
            f = float(factors[0])
            return self, lambda v: self.scaled(v, 1 / f)
        spacing = np.asarray(self.spacing)
        coarse = _gaussian_model(len(factors), self.isotropic, spacing * factors)
        if self.isotropic:  # v is the physical sigma in units of the finest spacing
            ratio = spacing.min() / (spacing * factors).min()
            return coarse, lambda v: np.asarray(v) * ratio
        return coarse, lambda v: np.asarray(v) / factors

    def render(self, shape, v) -> np.ndarray:
        """The kernel of parameters ``v`` rendered on ``shape`` (float64, unit sum)."""
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
    """The Gaussian in ``ndim`` dimensions: one sigma isotropic in ``spacing`` units, or one
    sigma per axis in pixels."""
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
    """The 2D-only models by name."""
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
    """The model called ``name`` (the caller has checked that it applies in ``ndim``)."""
    if name == "gaussian":
        return _gaussian_model(ndim, isotropic, spacing)
    return _models_2d()[name]


# -- the parameter vector and the forward model on a padded periodic grid ------------------


@dataclass(frozen=True)
class _Packing:
    """The order of the optimiser's vector ``x = [v, shift, gain, offset]``.

    ``v`` holds the model's own parameters, ``shift`` one entry per image axis, then come
    the gain and the offset. This is the one place that knows the order; everything else
    reads ``x`` (and its covariance) through these slices and indices.
    """

    model: slice
    shift: slice
    gain: int
    offset: int

    @classmethod
    def of(cls, model_size: int, ndim: int) -> _Packing:
        """The packing of ``model_size`` model parameters in ``ndim`` dimensions."""
        gain = model_size + ndim
        return cls(slice(0, model_size), slice(model_size, gain), gain, gain + 1)

    @property
    def kernel_and_shift(self) -> slice:
        """The entries whose derivatives come from the kernel's rows (``v`` and shift)."""
        return slice(0, self.gain)

    @property
    def intensity(self) -> slice:
        """Gain and offset together."""
        return slice(self.gain, self.offset + 1)

    @property
    def size(self) -> int:
        """The length of ``x``."""
        return self.offset + 1

    def pack(self, v, shift, gain: float, offset: float) -> np.ndarray:
        """The vector ``x`` of these parts, float64."""
        return np.concatenate([v, shift, [gain, offset]]).astype(float)

    def bounds(self, model: _Model) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of ``x``: the model's own, the rest unbounded."""
        free = np.full(self.size - self.model.stop, np.inf)
        return (np.concatenate([model.lower, -free]), np.concatenate([model.upper, free]))


def _slices(starts, stops) -> tuple[slice, ...]:
    """``slice(start, stop)`` per axis, as Python ints."""
    return tuple(slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True))


def _valid_bounds(image_shape, kernel_shape, margin) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop per axis of the output samples whose kernel support, moved by up to
    ``margin`` px, lies inside an image of ``image_shape``."""
    half = np.array(kernel_shape) // 2
    start = half + margin
    stop = np.array(image_shape) - half - margin
    if np.any(stop - start < 4):
        raise ValueError(
            f"the kernel {tuple(kernel_shape)} plus a shift margin of "
            f"{margin.tolist()} px leaves no valid region in images of shape "
            f"{tuple(image_shape)}; use larger images or a smaller kernel shape")
    return start, stop


def _central_crop(start, stop, crop, reach, image_shape):
    """A centred sub-window of ``[start, stop)`` at most ``crop`` long per axis, and the
    box of the image it reads: ``reach`` px more on each side and 8 spare, within the
    image."""
    centre = (start + stop) // 2
    length = np.minimum(stop - start, crop)
    start, stop = centre - length // 2, centre - length // 2 + length
    low = np.maximum(start - reach - 8, 0)
    high = np.minimum(stop + reach + 8, image_shape)
    return start, stop, low, high


class _Problem:
    """The forward model ``blurred ≈ gain · (kernel ∗ shift(sharp)) + offset`` over a fixed
    window, with ``shift(sharp)(x) = sharp(x - shift)``.

    :meth:`apply` evaluates ``kernel ∗ shift(sharp)`` (gain 1, offset 0) on the window, the
    part of ``blurred`` kept in :attr:`data`; :meth:`apply_to_image` evaluates it over the
    whole frame; :meth:`apply_with_derivatives` gives the optimiser several kernels' models
    at once and the derivatives along the shift. ``sharp`` sits in a grid padded by
    mirroring, so the band-limited sub-pixel shift (a phase ramp) sees no artificial edge;
    only output samples whose kernel support, moved by up to ``margin`` px, lies inside
    ``sharp`` are compared with ``blurred``. With ``crop``, only a centred sub-window of at
    most that many samples per axis is compared (cheap searches).
    """

    def __init__(self, sharp, blurred, kernel_shape, margin, crop=None):
        self.kernel_shape = tuple(kernel_shape)
        margin = np.ceil(np.asarray(margin, dtype=float)).astype(int)
        start, stop = _valid_bounds(sharp.shape, kernel_shape, margin)
        origin = np.zeros(sharp.ndim, dtype=int)
        if crop is not None:
            reach = np.array(kernel_shape) // 2 + margin
            start, stop, origin, high = _central_crop(start, stop, crop, reach, sharp.shape)
            sharp = sharp[_slices(origin, high)]
            start, stop = start - origin, stop - origin
        # the window never reads beyond the image by more than the margin; a few more
        # mirrored samples keep the band-limited shift free of edge ringing
        self.pad = margin + 4
        self.image_shape = sharp.shape
        self.grid_shape = fast_shape(np.array(sharp.shape) + 2 * self.pad)
        after = np.array(self.grid_shape) - np.array(sharp.shape) - self.pad
        padded = np.pad(sharp, [(int(p), int(a)) for p, a in zip(self.pad, after, strict=True)],
                        mode="symmetric")
        self.sharp_ft = scipy.fft.rfftn(padded.astype(np.float32), workers=WORKERS)
        self.grid_window = _slices(start + self.pad, stop + self.pad)
        self.data_window = _slices(start + origin, stop + origin)
        self.data = blurred[self.data_window].astype(np.float64)
        # angular frequencies per axis, broadcastable against the rfft grid
        self.omegas = [(2 * np.pi * f).astype(np.float32) for f in frequencies(self.grid_shape)]

    def otfs(self, kernels: np.ndarray) -> np.ndarray:
        """Transfer functions on the grid of centred kernels stacked on axis 0."""
        ndim = len(self.grid_shape)
        return scipy.fft.rfftn(periodic_embed(kernels, self.grid_shape),
                               axes=tuple(range(1, ndim + 1)), workers=WORKERS)

    def phase_ramp(self, shift) -> np.ndarray:
        """The spectrum's factor that translates by ``shift`` (band-limited)."""
        ramp = np.ones((1,) * len(self.grid_shape), dtype=np.complex64)
        for omega, s in zip(self.omegas, shift, strict=True):
            ramp = ramp * np.exp(-1j * omega * np.float32(s)).astype(np.complex64)
        return ramp

    def _on_grid(self, spectra: np.ndarray) -> np.ndarray:
        """Inverse transforms of ``sharp_ft · spectra`` (stacked on leading axes)."""
        ndim = len(self.grid_shape)
        return scipy.fft.irfftn(self.sharp_ft * spectra, self.grid_shape,
                                axes=tuple(range(spectra.ndim - ndim, spectra.ndim)),
                                workers=WORKERS)

    def _model_on_grid(self, kernel, shift) -> np.ndarray:
        """``kernel ∗ shift(sharp)`` over the whole padded grid."""
        return self._on_grid(self.otfs(kernel[None])[0] * self.phase_ramp(shift))

    def apply(self, kernel, shift) -> np.ndarray:
        """``kernel ∗ shift(sharp)`` on the window, float64."""
        return self._model_on_grid(kernel, shift)[self.grid_window].astype(np.float64)

    def apply_with_derivatives(self, kernels, shift) -> np.ndarray:
        """One row per output, each the window flattened (float64): ``kernel ∗ shift(sharp)``
        for every stacked kernel, then the derivative of the first one's along each shift
        axis (analytic: ``-iω`` times its spectrum)."""
        spectra = self.otfs(kernels) * self.phase_ramp(shift)
        spectra = np.concatenate(
            [spectra, np.stack([-1j * omega * spectra[0] for omega in self.omegas])])
        windowed = self._on_grid(spectra)[(..., *self.grid_window)]
        return windowed.reshape(len(spectra), -1).astype(np.float64)

    def apply_to_image(self, kernel, shift) -> np.ndarray:
        """``kernel ∗ shift(sharp)`` over the whole frame of ``sharp`` (outside the window it
        relies on the mirrored padding)."""
        frame = _slices(self.pad, self.pad + self.image_shape)
        return self._model_on_grid(kernel, shift)[frame]


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


def _bic(rss: float, count: int, nparams: int) -> float:
    """Bayesian information criterion ``M ln(RSS / M) + P ln(M)`` of ``count`` residuals."""
    return count * math.log(max(rss, 1e-300) / count) + nparams * math.log(count)


def _reduced_chi2(rss: float, count: int, nparams: int, noise: float) -> float:
    """Residual variance (``count - nparams`` degrees of freedom) over ``noise²``."""
    return rss / max(count - nparams, 1) / noise**2


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
    """``1 - minor / major`` axis of the second moments of ``kernel`` (negative values
    clipped), in the units of ``spacing``."""
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


def _flatten(params: dict) -> tuple[list[tuple[str, int | None]], np.ndarray]:
    """The values of ``params`` in one vector, with ``(name, index)`` per entry (index
    ``None`` for a scalar parameter)."""
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
    """The inverse of :func:`_flatten`: ``errors`` back into a dict of floats and tuples."""
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


@dataclass(frozen=True)
class _Request:
    """What the caller of :func:`fit_kernel` asked for, checked and completed."""

    names: tuple[str, ...]
    spacing: tuple[float, ...]
    isotropic: bool
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


def _request(ndim, model, shape, spacing, loss, f_scale, isotropic,
             max_evaluations) -> _Request:
    """The arguments of :func:`fit_kernel` checked, with their defaults filled in."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
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
    return _Request(tuple(names), spacing, isotropic, shape, loss, f_scale, max_evaluations)


@dataclass(frozen=True)
class _Normalised:
    """The pair in normalised units (zero mean, unit standard deviation, float32), the
    scales that undo it, and the noise of the normalised ``blurred``."""

    sharp: np.ndarray
    blurred: np.ndarray
    sharp_mean: float
    sharp_std: float
    blurred_mean: float
    blurred_std: float
    noise: float

    @classmethod
    def of(cls, sharp, blurred) -> _Normalised:
        """Normalise ``sharp`` and ``blurred``; both must vary."""
        sharp_mean, sharp_std = float(sharp.mean()), float(sharp.std())
        blurred_mean, blurred_std = float(blurred.mean()), float(blurred.std())
        if sharp_std == 0 or blurred_std == 0:
            raise ValueError("sharp and blurred must not be constant")
        a = ((sharp - sharp_mean) / sharp_std).astype(np.float32)
        b = ((blurred - blurred_mean) / blurred_std).astype(np.float32)
        return cls(a, b, sharp_mean, sharp_std, blurred_mean, blurred_std, noise_sigma(b))

    def caller_intensity(self, gain, offset, covariance) -> tuple[float, float, dict]:
        """Normalised ``gain``, ``offset`` (and their 2 × 2 covariance) in the caller's
        intensity units: the two values and their errors by name."""
        caller_gain = float(self.blurred_std * gain / self.sharp_std)
        caller_offset = float(self.blurred_mean + self.blurred_std * offset
                              - caller_gain * self.sharp_mean)
        linear = np.array([[self.blurred_std / self.sharp_std, 0.0],
                           [-self.blurred_std * self.sharp_mean / self.sharp_std,
                            self.blurred_std]])
        linear_cov = linear @ covariance @ linear.T
        errors = {"gain": float(np.sqrt(max(linear_cov[0, 0], 0))),
                  "offset": float(np.sqrt(max(linear_cov[1, 1], 0)))}
        return caller_gain, caller_offset, errors


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
    request = _request(sharp.ndim, model, shape, spacing, loss, f_scale, isotropic,
                       max_evaluations)
    pair = _Normalised.of(sharp, blurred)
    scale = 2.0 * pair.noise if request.f_scale is None else float(request.f_scale)
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
    return _result(best, blurred, pair, request, ranking)


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
        spec = _model_for(name, pair.sharp.ndim, request.isotropic, request.spacing)
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


# -- starting points ------------------------------------------------------------------------


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
        scores.append(_linear_fit(search.apply(kernel, shift), search.data)[2])
    return scores


def _coarse_candidates(spec: _Model, pair: _Normalised, shift0, margin) -> list[np.ndarray]:
    """Starting vectors: a ladder of sizes compared on a binned copy of the pair, the best
    two then bracketed (0.8, 1 and 1.25 times); the whole ladder when the images are too
    small to bin."""
    candidates = [v for size in _size_scales(pair.sharp.ndim) for v in spec.starts([size])]
    factors = _pyramid_factors(pair.sharp.shape, uniform=spec.name != "gaussian")
    if not np.any(factors > 1):
        return candidates
    coarse_spec, to_coarse = spec.binned(factors)
    scores = _search_scores(coarse_spec, _bin(pair.sharp, factors), _bin(pair.blurred, factors),
                            shift0 / factors, [to_coarse(v) for v in candidates], None,
                            margin / factors + 1)
    best = np.argsort(scores)[:2]
    return [spec.scaled(candidates[i], r) for i in best for r in (0.8, 1.0, 1.25)]


def _defocus_candidates(spec: _Model, pair: _Normalised) -> list[np.ndarray]:
    """For the defocus models (disk, ring), the start read from the cepstrum, if any."""
    if spec.name not in ("disk", "ring"):
        return []
    try:
        diameter = defocus_diameter(pair.blurred, sharp=pair.sharp)
    except ValueError:
        return []
    if spec.name == "disk":
        return [np.array([diameter / 2])]
    return [np.array([diameter, max(0.5, 0.05 * diameter)])]


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


# -- the optimiser --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loss:
    """A loss of :func:`scipy.optimize.least_squares` (``name``), on residuals divided by
    ``scale``."""

    name: str
    scale: float

    def rho(self, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rho(z)`` and ``rho'(z)`` of the squared scaled residual ``z``."""
        z = (residual / self.scale) ** 2
        if self.name == "linear":
            return z, np.ones_like(z)
        if self.name == "soft_l1":
            root = np.sqrt(1 + z)
            return 2 * (root - 1), 1 / root
        if self.name == "huber":
            outer = z > 1
            root = np.sqrt(np.where(outer, z, 1.0))
            return np.where(outer, 2 * root - 1, z), np.where(outer, 1 / root, 1.0)
        if self.name == "cauchy":
            return np.log1p(z), 1 / (1 + z)
        return np.arctan(z), 1 / (1 + z**2)  # arctan

    def cost(self, residual: np.ndarray) -> float:
        """``½ scale² Σ rho``, which is ``½ Σ r²`` for the linear loss."""
        return 0.5 * self.scale**2 * float(self.rho(residual)[0].sum())

    def weighted(self, jacobian: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The (transposed) Jacobian's rows weighted by ``rho'`` (reweighted least squares)."""
        if self.name == "linear":
            return jacobian
        return jacobian * self.rho(residual)[1]


@dataclass(frozen=True)
class _Evaluation:
    """The objective at ``x``: residual, transposed Jacobian (one row per entry of ``x``)
    and cost."""

    x: np.ndarray
    residual: np.ndarray
    jacobian: np.ndarray
    cost: float


class _Objective:
    """The robust least-squares objective of one model on one problem, as a function of the
    packed vector ``x`` (see :class:`_Packing`); each call of :meth:`evaluate` or
    :meth:`start` renders and transforms the model once (one evaluation)."""

    def __init__(self, spec: _Model, problem: _Problem, loss: _Loss):
        self.spec, self.problem, self.loss = spec, problem, loss
        self.packing = _Packing.of(len(spec.lower), len(problem.kernel_shape))
        self.lower, self.upper = self.packing.bounds(spec)
        self.data = problem.data.ravel()

    def _rows(self, x) -> np.ndarray:
        """The model and its kernel- and shift-derivatives at ``x`` (gain 1, offset 0), one
        row each; kernel derivatives are central differences within the bounds."""
        v, shift = x[self.packing.model], x[self.packing.shift]
        shape = self.problem.kernel_shape
        kernels = [self.spec.render(shape, v)]
        steps = 1e-4 * np.maximum(np.abs(v), 1.0)
        for i in range(v.size):
            up, down = v.copy(), v.copy()
            up[i] = min(v[i] + steps[i], self.spec.upper[i])
            down[i] = max(v[i] - steps[i], self.spec.lower[i])
            kernels.append((self.spec.render(shape, up) - self.spec.render(shape, down))
                           / (up[i] - down[i]))
        return self.problem.apply_with_derivatives(np.array(kernels), shift)

    def _assemble(self, x, rows) -> _Evaluation:
        """Residual, Jacobian and cost at ``x`` from the rows of :meth:`_rows`."""
        packing = self.packing
        residual = x[packing.gain] * rows[0] + x[packing.offset] - self.data
        jacobian = np.empty((x.size, self.data.size))
        jacobian[packing.kernel_and_shift] = rows[1:] * x[packing.gain]
        jacobian[packing.gain] = rows[0]
        jacobian[packing.offset] = 1.0
        return _Evaluation(x, residual, jacobian, self.loss.cost(residual))

    def evaluate(self, x) -> _Evaluation:
        """The objective at ``x``."""
        return self._assemble(x, self._rows(x))

    def start(self, v0, shift0) -> _Evaluation:
        """The objective at ``v0``, ``shift0`` (within the bounds), with the gain and offset
        that fit best there solved linearly."""
        packing = self.packing
        x = np.clip(packing.pack(v0, shift0, 1.0, 0.0), self.lower, self.upper)
        rows = self._rows(x)
        x[packing.gain], x[packing.offset], _ = _linear_fit(rows[0], self.data)
        return self._assemble(x, rows)


@dataclass(frozen=True)
class _NormalEquations:
    """``JᵀWJ δ = -JᵀWr`` at one point, with the damping diagonal of Levenberg–Marquardt and
    each parameter's standard error (steps far below it are not worth taking)."""

    matrix: np.ndarray
    gradient: np.ndarray
    diagonal: np.ndarray
    uncertainty: np.ndarray

    @classmethod
    def at(cls, point: _Evaluation, loss: _Loss) -> _NormalEquations:
        """The normal equations of the objective at ``point``."""
        weighted = loss.weighted(point.jacobian, point.residual)
        normal = _gram(weighted, point.jacobian)
        gradient = np.einsum("ik,k->i", weighted, point.residual)
        diagonal = np.maximum(np.diag(normal), 1e-12 * max(np.diag(normal).max(), 1e-300))
        dof = max(point.residual.size - point.x.size, 1)
        uncertainty = np.sqrt(np.abs(np.diag(np.linalg.pinv(normal))) * 2 * point.cost / dof)
        return cls(normal, gradient, diagonal, uncertainty)


@dataclass(frozen=True)
class _Step:
    """The outcome of one damped step: the accepted point (``None`` when no step lowered
    the cost), the damping it was taken with and the evaluations used so far."""

    accepted: _Evaluation | None
    damping: float
    evaluations: int


def _damped_step(objective: _Objective, point: _Evaluation, damping: float, evaluations: int,
                 max_evaluations: int) -> _Step:
    """Raise the damping until a step lowers the cost, the step falls far below the
    parameters' uncertainty, or the evaluations run out."""
    normal = _NormalEquations.at(point, objective.loss)
    while evaluations < max_evaluations and damping < 1e10:
        try:
            step = np.linalg.solve(normal.matrix + damping * np.diag(normal.diagonal),
                                   -normal.gradient)
        except np.linalg.LinAlgError:
            damping *= 10
            continue
        trial = np.clip(point.x + step, objective.lower, objective.upper)
        if np.all(np.abs(trial - point.x) <= 1e-2 * normal.uncertainty):
            break  # the step is far below the parameters' own uncertainty
        # with a good start nearly every step is accepted: get its Jacobian at once
        evaluation = objective.evaluate(trial)
        evaluations += 1
        if evaluation.cost <= point.cost:
            return _Step(evaluation, damping, evaluations)
        damping *= 10
    return _Step(None, damping, evaluations)


@dataclass(frozen=True)
class _Optimum:
    """Where :func:`_optimise` stopped: the parameters (read from ``x`` by ``packing``),
    their covariance ``(JᵀJ)⁻¹ · RSS / (M − P)`` in the order of ``x``, the residual sum of
    squares over ``count`` samples, and how the optimisation ended."""

    v: np.ndarray
    shift: np.ndarray
    gain: np.float64
    offset: np.float64
    packing: _Packing
    covariance: np.ndarray
    rss: float
    count: int
    success: bool
    message: str
    evaluations: int

    @property
    def nparams(self) -> int:
        return self.packing.size

    @property
    def criterion(self) -> float:
        """The BIC of the fit on its own window."""
        return _bic(self.rss, self.count, self.nparams)


def _optimise(objective: _Objective, v0, shift0, max_evaluations, callback) -> _Optimum:
    """Levenberg–Marquardt on the normal equations (robust losses by reweighting).

    The residual has hundreds of thousands of samples but only a handful of parameters, so
    the ``P × P`` normal equations ``JᵀWJ δ = -JᵀWr`` are solved instead of factorising
    ``J``; this keeps a fit of a 512² pair well under a second. Bounds are kept by clipping.
    """
    point = objective.start(v0, shift0)
    evaluations, damping = 1, 1e-3
    success, message = False, _MAX_EVALUATIONS
    while evaluations < max_evaluations:
        step = _damped_step(objective, point, damping, evaluations, max_evaluations)
        evaluations = step.evaluations
        if step.accepted is None:
            success, message = True, "converged"
            break
        point, damping = step.accepted, max(step.damping / 5, 1e-9)
        if not report(callback, evaluations, max_evaluations, None):
            success, message = False, _STOPPED
            break
    rss = inner(point.residual, point.residual)
    count = point.residual.size
    dof = max(count - point.x.size, 1)
    covariance = np.linalg.pinv(_gram(point.jacobian, point.jacobian)) * rss / dof
    x, packing = point.x, objective.packing
    return _Optimum(x[packing.model], x[packing.shift], x[packing.gain], x[packing.offset],
                    packing, covariance, rss, count, success, message, evaluations)


# -- the result -----------------------------------------------------------------------------


def _bound_message(spec: _Model, v, message: str) -> str:
    """``message``, with a warning when a parameter sits at its bound."""
    at_lower = np.isclose(v, spec.lower, rtol=1e-6, atol=1e-9)
    at_upper = np.isclose(v, spec.upper, rtol=1e-6, atol=1e-9)
    if np.any(at_lower | at_upper):
        message += ("; a parameter sits at its bound (e.g. no measurable blur), so its error "
                    "is not meaningful")
    return message


def _parameter_errors(spec: _Model, v, covariance) -> dict:
    """Standard errors of the public parameters, from the ``covariance`` of ``v`` by the
    delta method (central differences of ``spec.public``; angles wrap at ±π/2)."""
    names, values = _flatten(spec.public(v))
    angles = [k for k, n in enumerate(names) if n[0] == "angle"]
    transform = np.zeros((len(values), v.size))
    for i in range(v.size):
        step = 1e-6 * max(abs(v[i]), 1.0)
        up, down = v.copy(), v.copy()
        up[i] += step
        down[i] -= step
        difference = _flatten(spec.public(up))[1] - _flatten(spec.public(down))[1]
        if angles:
            difference[angles] = np.remainder(difference[angles] + np.pi / 2, np.pi) - np.pi / 2
        transform[:, i] = difference / (2 * step)
    parameter_cov = transform @ covariance @ transform.T
    return _errors_dict(names, np.sqrt(np.clip(np.diag(parameter_cov), 0, None)))


def _physical(spec: _Model, params: dict, spacing) -> dict:
    """Sigma and FWHM per axis in ``spacing`` units (Gaussian only; empty otherwise)."""
    if spec.name != "gaussian":
        return {}
    sigma = np.broadcast_to(np.asarray(params["sigma"], float), (len(spacing),))
    return {"sigma": tuple(float(s * d) for s, d in zip(sigma, spacing, strict=True)),
            "fwhm": tuple(float(GAUSSIAN_FWHM * s * d)
                          for s, d in zip(sigma, spacing, strict=True))}


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
    return KernelFit(
        model=spec.name, params=params, errors=errors, kernel=kernel64.astype(np.float32),
        residual=residual, reblurred=reblurred, shift=np.asarray(optimum.shift, dtype=float),
        gain=gain, offset=offset, fwhm=spec.fwhm(params),
        ellipticity=_ellipticity(kernel64, request.spacing),
        reduced_chi2=float(_reduced_chi2(optimum.rss, optimum.count, optimum.nparams,
                                         pair.noise)),
        noise_sigma=float(pair.noise * pair.blurred_std), criterion=float(best.criterion),
        ranking=ranking, physical=_physical(spec, params, request.spacing),
        valid=valid, spacing=request.spacing, loss=request.loss, success=optimum.success,
        message=_bound_message(spec, optimum.v, str(optimum.message)),
        evaluations=optimum.evaluations)


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
    profile = _radial_mean(scipy.fft.fftshift(cepstrum))
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


def _radial_mean(image: np.ndarray) -> np.ndarray:
    """Mean of a 2D ``image`` over rings of integer radius (rounded) around its centre
    pixel ``shape // 2``, by radius."""
    centre = np.array(image.shape) // 2
    y, x = np.indices(image.shape, sparse=True)
    bins = np.round(np.hypot(y - centre[0], x - centre[1])).astype(int)
    counts = np.bincount(bins.ravel())
    return np.bincount(bins.ravel(), image.ravel()) / np.maximum(counts, 1)
