"""The parametric models :func:`psfkit.fit_kernel` fits, as its optimiser sees them.

A :class:`_Model` is one model's internal parameter vector ``v``: its bounds, the map to
the public parameters, the radius that holds the kernel, the starting vectors of a size,
the FWHM, and what becomes of ``v`` when the images are binned. The Gaussian is built for
its dimension, spacing and isotropy (:func:`_gaussian_model`); the 2D-only models are
fixed (:func:`_models_2d`). :func:`_kernel_shape` is the odd kernel shape that holds one,
and :func:`_parameter_errors` carries the covariance of ``v`` to the public parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .models import render

#: FWHM of a Gaussian in units of its sigma.
GAUSSIAN_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: FWHM of the Airy pattern in units of its first-zero radius.
AIRY_FWHM = 2 * 1.616339948310703 / 3.831705970207512
#: The public parameters of each model that are lengths in pixels (the others are angles
#: and exponents): the ones ``KernelFit.params_physical`` gives in the units of a spacing.
LENGTH_PARAMETERS = {
    "gaussian": ("sigma",), "elliptical_gaussian": ("sigma_y", "sigma_x"),
    "moffat": ("alpha",), "airy": ("radius",), "disk": ("radius",),
    "ring": ("diameter", "width"), "motion": ("length",),
}
#: Smallest Gaussian sigma a fit reports, in pixels, when the Gaussian is sampled at pixel
#: centres: narrower, it is one pixel to within float64 rounding of its derivative (its
#: neighbours hold exp(-1 / 2σ²), 2e-22 at 0.1 px), so the fit could not walk to a lower
#: bound; at 0.25 px they still hold 3e-4. Integrated over pixels the bound is 0.1 px.
SAMPLED_GAUSSIAN_MIN_SIGMA = 0.25


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
    #: render integrated over each pixel rather than sampled at the pixel centres (only
    #: for the models of :data:`psfkit.models.CENTRE_SAMPLED_MODELS`; the others always are)
    pixel_integrated: bool = False

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
        coarse = _gaussian_model(len(factors), self.isotropic, spacing * factors,
                                 self.pixel_integrated)
        if self.isotropic:  # v is the physical sigma in units of the finest spacing
            ratio = spacing.min() / (spacing * factors).min()
            return coarse, lambda v: np.asarray(v) * ratio
        return coarse, lambda v: np.asarray(v) / factors

    def render(self, shape, v) -> np.ndarray:
        """The kernel of parameters ``v`` rendered on ``shape`` (float64, unit sum)."""
        return render(self.name, shape, pixel_integrated=self.pixel_integrated,
                      **self.public(v))


def _canonical_angle(angle: float) -> float:
    """An axis direction in [0, π): θ and θ + π describe the same kernel."""
    angle = float(angle) % math.pi
    # the remainder of a tiny negative angle rounds up to π itself
    return 0.0 if angle >= math.pi else angle


def _ellipse_from_cholesky(v) -> dict:
    """Covariance ``L Lᵀ`` with ``L = [[a, 0], [b, c]]`` (y, x order) -> sigmas and angle.

    One canonical form for each ellipse: ``sigma_y`` is the major axis (``sigma_y >=
    sigma_x``) and ``angle`` in [0, π) is the direction of the minor axis ``sigma_x`` (the
    renderer's ``sigma_x`` lies along ``angle``, ``sigma_y`` along ``angle + π/2``), so the
    result is unique up to a circular kernel, whose angle is arbitrary.
    """
    a, b, c = (float(t) for t in v)
    covariance = np.array([[a * a, a * b], [a * b, b * b + c * c]])
    values, vectors = np.linalg.eigh(covariance)
    minor = vectors[:, 0]  # (y, x) components of the minor axis
    return {"sigma_y": float(np.sqrt(values[1])),
            "sigma_x": float(np.sqrt(max(values[0], 1e-300))),
            "angle": _canonical_angle(math.atan2(minor[0], minor[1]))}


def _gaussian_model(ndim: int, isotropic: bool, spacing, pixel_integrated: bool) -> _Model:
    """The Gaussian in ``ndim`` dimensions: one sigma isotropic in ``spacing`` units, or one
    sigma per axis in pixels; integrated over pixels or sampled at their centres."""
    spacing = np.asarray(spacing, dtype=float)
    smallest = 0.1 if pixel_integrated else SAMPLED_GAUSSIAN_MIN_SIGMA
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

        lower, upper = (smallest,), (np.inf,)
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

        lower, upper = (smallest,) * ndim, (np.inf,) * ndim

    def fwhm(params):
        sigma = params["sigma"]
        if np.isscalar(sigma):
            return GAUSSIAN_FWHM * sigma
        return tuple(GAUSSIAN_FWHM * s for s in sigma)

    return _Model("gaussian", lower, upper, public, extent, starts, fwhm,
                  spacing=tuple(spacing), isotropic=isotropic,
                  pixel_integrated=pixel_integrated)


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


def _model_for(name: str, ndim: int, isotropic: bool, spacing,
               pixel_integrated: bool) -> _Model:
    """The model called ``name`` (the caller has checked that it applies in ``ndim``),
    rendered integrated over pixels or sampled at their centres."""
    if name == "gaussian":
        return _gaussian_model(ndim, isotropic, spacing, pixel_integrated)
    return replace(_models_2d()[name], pixel_integrated=pixel_integrated)


def _kernel_shape(model: _Model, v, ndim, image_shape, shift) -> tuple[int, ...]:
    """Odd shape that holds the model, capped so a useful region remains valid."""
    radius = np.broadcast_to(np.ceil(np.asarray(model.extent(v), dtype=float)), (ndim,))
    cap = (np.array(image_shape) - 2 * np.ceil(np.abs(shift)) - 8) // 2
    radius = np.clip(radius, 1, np.maximum(cap, 1)).astype(int)
    return tuple(int(2 * r + 1) for r in radius)


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
