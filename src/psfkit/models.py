"""Parametric kernels, rendered as the integral of the model over each pixel.

Every model is a function of the offset ``(y, x)`` (or ``(z, y, x)``) from the kernel's
centre pixel ``shape // 2``, in pixels, and is returned with unit sum. Integrating over the
pixel, rather than sampling at pixel centres, keeps narrow kernels (a Gaussian of sigma
0.5 px, a small disk) at their true width. Parameter names are the public contract:

========================  ==============================  ===============================
model                     parameters (pixels, radians)    profile
========================  ==============================  ===============================
``gaussian``              ``sigma`` (scalar or per axis)  ``exp(-r² / 2σ²)``
``elliptical_gaussian``   ``sigma_y, sigma_x, angle``     rotated Gaussian
``moffat``                ``alpha, beta``                 ``(1 + r²/α²)^-β``
``airy``                  ``radius`` (first zero)         ``(2 J1(v) / v)²``, v = 3.8317 r / radius
``disk``                  ``radius``                      ``1`` for ``r <= radius``
``ring``                  ``diameter, width``             ``exp(-(r - diameter/2)² / 2 width²)``
``motion``                ``length, angle``               a line segment through the centre
========================  ==============================  ===============================
"""

from __future__ import annotations

import numpy as np
import scipy.special

from ._validate import odd_shape

#: First zero of the Bessel function J1: the Airy pattern's first dark ring is at v = J1_ZERO.
J1_ZERO = 3.831705970207512

MODELS = ("gaussian", "elliptical_gaussian", "moffat", "airy", "disk", "ring", "motion")


def _normalise(kernel: np.ndarray) -> np.ndarray:
    total = kernel.sum()
    if not total > 0:
        raise ValueError("the kernel has no weight inside its shape; enlarge the shape")
    return (kernel / total).astype(np.float32)


def _subpixel_offsets(shape, factor: int):
    """Offsets from the centre of ``factor`` sub-samples per pixel, per axis (sparse)."""
    axes = []
    for n in shape:
        centre_pixel = n // 2
        sub = (np.arange(n * factor) + 0.5) / factor - 0.5
        axes.append(sub - centre_pixel)
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def _bin_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``-sized blocks along every axis."""
    shape = []
    for n in values.shape:
        shape += [n // factor, factor]
    return values.reshape(shape).mean(axis=tuple(range(1, 2 * values.ndim, 2)))


def _render_2d(profile, shape, factor: int = 9) -> np.ndarray:
    y, x = _subpixel_offsets(shape, factor)
    return _normalise(_bin_mean(profile(y, x), factor))


def gaussian(shape, sigma) -> np.ndarray:
    """Gaussian integrated exactly over each pixel; ``sigma`` is a scalar or one per axis."""
    shape = odd_shape(shape, len(shape) if not np.isscalar(shape) else 2)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (len(shape),))
    if np.any(sigma <= 0):
        raise ValueError(f"sigma must be positive, got {sigma}")
    kernel = np.ones((1,) * len(shape))
    for axis, (n, s) in enumerate(zip(shape, sigma, strict=True)):
        edges = np.arange(n + 1) - n // 2 - 0.5
        profile = np.diff(scipy.special.ndtr(edges / s))
        kernel = kernel * profile.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return _normalise(kernel)


def elliptical_gaussian(shape, sigma_y: float, sigma_x: float, angle: float = 0.0) -> np.ndarray:
    """Gaussian with axes ``sigma_y``, ``sigma_x`` rotated by ``angle`` (radians, x towards y)."""
    shape = odd_shape(shape, 2)
    if sigma_y <= 0 or sigma_x <= 0:
        raise ValueError("sigma_y and sigma_x must be positive")
    c, s = np.cos(angle), np.sin(angle)

    def profile(y, x):
        u = c * x + s * y
        v = -s * x + c * y
        return np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))

    return _render_2d(profile, shape)


def moffat(shape, alpha: float, beta: float) -> np.ndarray:
    """Moffat profile ``(1 + r²/alpha²)^-beta``, the usual model of atmospheric seeing."""
    shape = odd_shape(shape, 2)
    if alpha <= 0 or beta <= 0:
        raise ValueError("alpha and beta must be positive")
    return _render_2d(lambda y, x: (1 + (y**2 + x**2) / alpha**2) ** (-beta), shape)


def airy(shape, radius: float) -> np.ndarray:
    """Airy pattern of an ideal circular pupil whose first dark ring is at ``radius`` px."""
    shape = odd_shape(shape, 2)
    if radius <= 0:
        raise ValueError("radius must be positive")

    def profile(y, x):
        v = J1_ZERO * np.hypot(y, x) / radius
        with np.errstate(invalid="ignore", divide="ignore"):
            amplitude = np.where(v > 1e-8, 2 * scipy.special.j1(v) / v, 1.0)
        return amplitude**2

    return _render_2d(profile, shape)


def widefield_airy(shape, numerical_aperture: float, wavelength: float, pixel_size: float):
    """Airy PSF of a widefield microscope: first zero at ``0.61 λ / NA`` (same length units)."""
    if numerical_aperture <= 0 or wavelength <= 0 or pixel_size <= 0:
        raise ValueError("numerical_aperture, wavelength and pixel_size must be positive")
    radius = J1_ZERO / (2 * np.pi) * wavelength / numerical_aperture / pixel_size
    return airy(shape, radius)


def disk(shape, radius: float) -> np.ndarray:
    """Uniform disk of ``radius`` px: the geometric-optics defocus blur."""
    shape = odd_shape(shape, 2)
    if radius <= 0:
        raise ValueError("radius must be positive")
    return _render_2d(lambda y, x: (y**2 + x**2 <= radius**2).astype(float), shape, factor=15)


def ring(shape, diameter: float, width: float) -> np.ndarray:
    """Thin ring of ``diameter`` px with a Gaussian cross-section of standard deviation
    ``width`` px: the defocus blur of a lens with a bright pupil rim (seed 001)."""
    shape = odd_shape(shape, 2)
    if diameter <= 0 or width <= 0:
        raise ValueError("diameter and width must be positive")
    return _render_2d(
        lambda y, x: np.exp(-0.5 * ((np.hypot(y, x) - diameter / 2) / width) ** 2), shape
    )


def motion(shape, length: float, angle: float = 0.0) -> np.ndarray:
    """Straight motion blur of ``length`` px centred on the kernel, at ``angle`` radians
    from the x axis towards the y axis. Drawn as a segment one pixel wide."""
    shape = odd_shape(shape, 2)
    if length <= 0:
        raise ValueError("length must be positive")
    c, s = np.cos(angle), np.sin(angle)

    def profile(y, x):
        along = c * x + s * y
        across = -s * x + c * y
        # box of the segment's length convolved with a 1 px wide pixel footprint
        inside_along = np.clip(length / 2 + 0.5 - np.abs(along), 0, 1)
        inside_across = np.abs(across) <= 0.5
        return np.minimum(inside_along, 1.0) * inside_across

    return _render_2d(profile, shape, factor=15)


_RENDERERS = {
    "gaussian": gaussian,
    "elliptical_gaussian": elliptical_gaussian,
    "moffat": moffat,
    "airy": airy,
    "disk": disk,
    "ring": ring,
    "motion": motion,
    "widefield_airy": widefield_airy,
}


def make_psf(model: str, shape, **params) -> np.ndarray:
    """Render ``model`` on an odd ``shape`` with unit sum; see the module table for models.

    Examples
    --------
    >>> psf = make_psf("gaussian", (15, 15), sigma=2.0)
    >>> psf.shape, round(float(psf.sum()), 5)
    ((15, 15), 1.0)
    """
    try:
        renderer = _RENDERERS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(_RENDERERS)}") from None
    return renderer(shape, **params)
