"""Parametric kernels: the Gaussian family sampled at pixel centres, the rest integrated
over each pixel.

Every model is a function of the offset ``(y, x)`` (or ``(z, y, x)``) from the kernel's
centre pixel ``shape // 2``, in pixels, and is returned with unit sum. The Gaussian, the
elliptical Gaussian and the Moffat profile are **sampled at pixel centres** by default, as
the filters of scipy.ndimage, scikit-image, DIPlib and MATLAB's ``fspecial`` sample them, so
that ``sigma`` means what ``scipy.ndimage.gaussian_filter(image, sigma)`` means (a blur by
that filter fits as that sigma); with ``pixel_integrated=True`` they are integrated over
each pixel instead (the light a camera pixel collects from a Gaussian spot; its variance is
larger by the pixel's 1/12). The other models are always integrated over each pixel: a
disk's edge, a motion segment, a thin ring or an Airy ring carry detail finer than a pixel,
and integrating keeps narrow ones at their true width. Every rendering is a continuous
function of its parameters (edges are anti-aliased on the sub-pixel grid), which is what
lets :func:`psfkit.fit_kernel` fit them by least squares. Parameter names are the public
contract:

========================  ==============================  ===============================
model                     parameters (pixels, radians)    profile
========================  ==============================  ===============================
``gaussian``              ``sigma`` (scalar or per axis)  ``exp(-r² / 2σ²)``
``elliptical_gaussian``   ``sigma_y, sigma_x, angle``     rotated Gaussian
``moffat``                ``alpha, beta``                 ``(1 + r²/α²)^-β``
``airy``                  ``radius`` (first zero)         ``(2 J1(v) / v)²``, v = 3.8317 r / radius
``widefield_airy``        ``numerical_aperture,           Airy with radius ``0.61 λ / NA``
                          wavelength, pixel_size``
``disk``                  ``radius``                      ``1`` for ``r <= radius``
``ring``                  ``diameter, width``             ``exp(-(r - diameter/2)² / 2 width²)``
``motion``                ``length, angle``               a line segment through the centre
``widefield`` (3D)        ``numerical_aperture,           vectorial (or scalar)
                          wavelength, spacing``, and      Gibson–Lanni PSF
                          optionally ``immersion_index,   (:func:`psfkit.widefield_psf`)
                          sample_index, depth, theory,
                          coverslip_index``
``confocal`` (3D)         as ``widefield`` plus           excitation PSF × emission PSF
                          ``excitation_wavelength``       (:func:`psfkit.confocal_psf`)
========================  ==============================  ===============================

Angles are measured from the x axis (last axis) towards the y axis, in radians. The
elliptical Gaussian has ``sigma_x`` along the direction ``angle`` and ``sigma_y`` along
``angle + π/2``. The microscope models ``widefield_airy``, ``widefield`` and ``confocal``
take physical lengths instead of pixels: ``wavelength`` (emission, in vacuum),
``excitation_wavelength``, ``depth`` (of the source below the coverslip) and ``pixel_size``
or the voxel size ``spacing`` ``(z, y, x)`` in one unit, e.g. µm; ``immersion_index``
defaults to oil (1.515) and ``sample_index`` to the immersion's; ``theory`` is
``"vectorial"`` (the default) or ``"scalar"``, the light model of :mod:`psfkit.optics`.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from ._validate import finite_result, fits_in_memory, flag, kernel_shape
from .optics import confocal_psf, widefield_psf

#: First zero of the Bessel function J1: the Airy pattern's first dark ring is at v = J1_ZERO.
J1_ZERO = 3.831705970207512

#: The models that :func:`psfkit.fit_kernel` fits (``widefield_airy`` is ``airy`` in
#: microscope units and is only rendered).
MODELS = ("gaussian", "elliptical_gaussian", "moffat", "airy", "disk", "ring", "motion")

#: The models sampled at pixel centres unless ``pixel_integrated=True``: the profiles that
#: image filters (scipy.ndimage, scikit-image, DIPlib, MATLAB's fspecial) sample, so that
#: their parameters mean what the filters' parameters mean.
CENTRE_SAMPLED_MODELS = ("gaussian", "elliptical_gaussian", "moffat")

#: Sub-samples per pixel and axis used to integrate a profile over each pixel.
SUBSAMPLES = 9


def _normalise(kernel: np.ndarray) -> np.ndarray:
    total = kernel.sum()
    if not total > 0:
        raise ValueError("the kernel has no weight inside its shape; enlarge the shape")
    return kernel / total


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


def _subsamples(shape) -> int:
    """Sub-samples per pixel and axis: fewer on large kernels, whose features are wide
    (a function of the shape only, so a fit's rendering stays continuous)."""
    largest = max(shape)
    return SUBSAMPLES if largest <= 45 else 5 if largest <= 101 else 3


def _samples_per_pixel(shape, pixel_integrated: bool) -> int:
    """Samples per pixel and axis: 1 (the pixel centre) for a centre-sampled profile,
    enough to integrate over the pixel otherwise."""
    return _subsamples(shape) if pixel_integrated else 1


def _render_2d(profile, shape, factor: int | None = None) -> np.ndarray:
    """Average ``profile(y, x)`` over ``factor²`` sub-samples per pixel (float64); one
    sample per pixel is the profile at the pixel centres."""
    factor = factor or _subsamples(shape)
    y, x = _subpixel_offsets(shape, factor)
    # a profile far wider or narrower than a pixel overflows on its way to exp(-inf) = 0;
    # a kernel left with no weight is refused by _normalise, an infinite one by make_psf
    with np.errstate(over="ignore"):
        values = profile(y, x)
    return _normalise(_bin_mean(values, factor))


def _soft_inside(distance_inside, factor: int = SUBSAMPLES):
    """Coverage of a sub-sample by a region, from the signed distance of its centre to the
    region's edge (positive inside): a linear ramp one sub-sample wide, so that moving
    an edge changes the rendering continuously rather than in sub-sample steps."""
    return np.clip(distance_inside * factor + 0.5, 0.0, 1.0)


# -- float64 renderers (used by the fits; no validation of the shape) ---------------------


def _gaussian_1d(n: int, sigma: float, pixel_integrated: bool) -> np.ndarray:
    """A Gaussian of ``sigma`` on ``n`` pixels centred on ``n // 2``: sampled at the pixel
    centres, or integrated exactly over each pixel (unnormalised)."""
    if pixel_integrated:
        edges = np.arange(n + 1) - n // 2 - 0.5
        return np.diff(scipy.special.ndtr(edges / sigma))
    # a sigma far below a pixel overflows on its way to exp(-inf) = 0; the centre stays 1
    with np.errstate(over="ignore"):
        return np.exp(-0.5 * ((np.arange(n) - n // 2) / sigma) ** 2)


def _gaussian(shape, sigma, pixel_integrated=False) -> np.ndarray:
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (len(shape),))
    if np.any(sigma <= 0):
        raise ValueError(f"sigma must be positive, got {sigma}")
    kernel = np.ones((1,) * len(shape))
    for axis, (n, s) in enumerate(zip(shape, sigma, strict=True)):
        profile = _gaussian_1d(n, s, pixel_integrated)
        kernel = kernel * profile.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return _normalise(kernel)


def _elliptical_gaussian(shape, sigma_y, sigma_x, angle=0.0,
                         pixel_integrated=False) -> np.ndarray:
    if sigma_y <= 0 or sigma_x <= 0:
        raise ValueError("sigma_y and sigma_x must be positive")
    c, s = np.cos(angle), np.sin(angle)

    def profile(y, x):
        u = c * x + s * y
        v = -s * x + c * y
        return np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))

    return _render_2d(profile, shape, _samples_per_pixel(shape, pixel_integrated))


def _moffat(shape, alpha, beta, pixel_integrated=False) -> np.ndarray:
    if alpha <= 0 or beta <= 0:
        raise ValueError("alpha and beta must be positive")
    # alpha * alpha, not alpha**2: a float's ** raises OverflowError where * gives inf
    # (a Moffat wider than the kernel: flat), and both round the same
    alpha_squared = alpha * alpha
    return _render_2d(lambda y, x: (1 + (y**2 + x**2) / alpha_squared) ** (-beta), shape,
                      _samples_per_pixel(shape, pixel_integrated))


def _airy(shape, radius) -> np.ndarray:
    if radius <= 0:
        raise ValueError("radius must be positive")

    def profile(y, x):
        v = J1_ZERO * np.hypot(y, x) / radius
        with np.errstate(invalid="ignore", divide="ignore"):
            amplitude = np.where(v > 1e-8, 2 * scipy.special.j1(v) / v, 1.0)
        return amplitude**2

    return _render_2d(profile, shape)


def _widefield_airy(shape, numerical_aperture, wavelength, pixel_size) -> np.ndarray:
    if numerical_aperture <= 0 or wavelength <= 0 or pixel_size <= 0:
        raise ValueError("numerical_aperture, wavelength and pixel_size must be positive")
    return _airy(shape, airy_radius(numerical_aperture, wavelength, pixel_size))


def _disk(shape, radius) -> np.ndarray:
    if radius <= 0:
        raise ValueError("radius must be positive")
    factor = _subsamples(shape)
    return _render_2d(lambda y, x: _soft_inside(radius - np.hypot(y, x), factor), shape,
                      factor)


def _ring(shape, diameter, width) -> np.ndarray:
    if diameter <= 0 or width <= 0:
        raise ValueError("diameter and width must be positive")
    return _render_2d(
        lambda y, x: np.exp(-0.5 * ((np.hypot(y, x) - diameter / 2) / width) ** 2), shape
    )


def _motion(shape, length, angle=0.0) -> np.ndarray:
    """Length of the segment inside each pixel square (exact pixel integration)."""
    if length <= 0:
        raise ValueError("length must be positive")
    direction = (np.sin(angle), np.cos(angle))  # (y, x) components
    half = length / 2
    t_low = np.full(shape, -half)
    t_high = np.full(shape, half)
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij", sparse=True)
    for centre, component in zip(grids, direction, strict=True):
        if abs(component) < 1e-12:
            # the segment runs parallel to this pair of pixel edges: inside or not at all
            outside = np.abs(centre) > 0.5
            t_high = np.where(outside, -np.inf, t_high)
            continue
        a = (centre - 0.5) / component
        b = (centre + 0.5) / component
        t_low = np.maximum(t_low, np.minimum(a, b))
        t_high = np.minimum(t_high, np.maximum(a, b))
    return _normalise(np.clip(t_high - t_low, 0.0, None))


_RENDERERS = {
    "gaussian": _gaussian,
    "elliptical_gaussian": _elliptical_gaussian,
    "moffat": _moffat,
    "airy": _airy,
    "disk": _disk,
    "ring": _ring,
    "motion": _motion,
    "widefield_airy": _widefield_airy,
    "widefield": widefield_psf,
    "confocal": confocal_psf,
}

#: Models rendered in 3D only, from a microscope's optics (:mod:`psfkit.optics`).
OPTICAL_MODELS = ("widefield", "confocal")


def render(model: str, shape, *, pixel_integrated: bool = False, **params) -> np.ndarray:
    """Like :func:`make_psf` but in float64 and without checking ``shape`` (for fits)."""
    try:
        renderer = _RENDERERS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(_RENDERERS)}") from None
    if model in CENTRE_SAMPLED_MODELS:
        params = {**params, "pixel_integrated": pixel_integrated}
    return renderer(tuple(shape), **params)


def _shape_for(model: str, shape) -> tuple[int, ...]:
    if model == "gaussian":
        ndim = len(shape) if np.ndim(shape) == 1 else 2
        return kernel_shape(shape, ndim)
    if model in OPTICAL_MODELS:
        return kernel_shape(shape, 3)
    return kernel_shape(shape, 2)


# -- public renderers (float32, checked shape) ---------------------------------------------


def airy_radius(numerical_aperture: float, wavelength: float, pixel_size: float) -> float:
    """Radius of the first dark ring, ``0.61 λ / NA``, in pixels of ``pixel_size``."""
    return float(J1_ZERO / (2 * np.pi) * wavelength / numerical_aperture / pixel_size)


def gaussian(shape, sigma, *, pixel_integrated: bool = False) -> np.ndarray:
    """Gaussian sampled at pixel centres (or integrated exactly over each pixel with
    ``pixel_integrated=True``); ``sigma`` is a scalar or one per axis."""
    return make_psf("gaussian", shape, sigma=sigma, pixel_integrated=pixel_integrated)


def elliptical_gaussian(shape, sigma_y: float, sigma_x: float, angle: float = 0.0, *,
                        pixel_integrated: bool = False) -> np.ndarray:
    """Gaussian with ``sigma_x`` along the direction ``angle`` (radians, x towards y) and
    ``sigma_y`` across it, sampled at pixel centres (or integrated over each pixel)."""
    return make_psf("elliptical_gaussian", shape, sigma_y=sigma_y, sigma_x=sigma_x, angle=angle,
                    pixel_integrated=pixel_integrated)


def moffat(shape, alpha: float, beta: float, *, pixel_integrated: bool = False) -> np.ndarray:
    """Moffat profile ``(1 + r²/alpha²)^-beta``, the usual model of atmospheric seeing,
    sampled at pixel centres (or integrated over each pixel)."""
    return make_psf("moffat", shape, alpha=alpha, beta=beta, pixel_integrated=pixel_integrated)


def airy(shape, radius: float) -> np.ndarray:
    """Airy pattern of an ideal circular pupil whose first dark ring is at ``radius`` px."""
    return make_psf("airy", shape, radius=radius)


def widefield_airy(shape, numerical_aperture: float, wavelength: float, pixel_size: float):
    """Airy PSF of a widefield microscope: first zero at ``0.61 λ / NA`` (same length units)."""
    return make_psf("widefield_airy", shape, numerical_aperture=numerical_aperture,
                    wavelength=wavelength, pixel_size=pixel_size)


def disk(shape, radius: float) -> np.ndarray:
    """Uniform disk of ``radius`` px: the geometric-optics defocus blur."""
    return make_psf("disk", shape, radius=radius)


def ring(shape, diameter: float, width: float) -> np.ndarray:
    """Thin ring of ``diameter`` px with a Gaussian cross-section of standard deviation
    ``width`` px: the defocus blur of a lens with a bright pupil rim (seed 001)."""
    return make_psf("ring", shape, diameter=diameter, width=width)


def motion(shape, length: float, angle: float = 0.0) -> np.ndarray:
    """Straight motion blur: a segment of ``length`` px centred on the kernel, at ``angle``
    radians from the x axis towards the y axis, each pixel holding the length of the
    segment that crosses it."""
    return make_psf("motion", shape, length=length, angle=angle)


#: The model parameters that may be given once per axis.
PER_AXIS_PARAMETERS = ("sigma", "spacing")

#: The model parameters that are a choice by name (checked by the renderer), not numbers.
NAMED_CHOICES = ("theory",)


def _check_parameters(model: str, params: dict) -> None:
    """Every parameter must be a finite real number (or, for ``sigma`` and ``spacing``,
    one per axis)."""
    for name, value in params.items():
        if name in NAMED_CHOICES:
            continue
        try:
            values = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{name} of the {model!r} model must be a number, got "
                            f"{value!r}") from None
        if values.ndim != 0 and name not in PER_AXIS_PARAMETERS:
            raise TypeError(f"{name} of the {model!r} model must be one number, got "
                            f"{value!r}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} of the {model!r} model must be finite, got {value!r}")


#: Float64 arrays of the kernel's size that rendering a model holds at once, at most.
RENDER_COPIES = 6


def make_psf(model: str, shape, *, pixel_integrated: bool = False, **params) -> np.ndarray:
    """Render ``model`` on an odd ``shape`` with unit sum.

    Parameters
    ----------
    model : str
        One of ``gaussian`` (2D or 3D), ``elliptical_gaussian``, ``moffat``, ``airy``,
        ``widefield_airy``, ``disk``, ``ring``, ``motion`` (2D), ``widefield``,
        ``confocal`` (3D); see the module docstring.
    shape : int or tuple of int
        Odd kernel shape; an int means a square 2D kernel (a cube for the 3D-only
        models).
    pixel_integrated : bool
        For ``gaussian``, ``elliptical_gaussian`` and ``moffat``: integrate the profile
        over each pixel instead of sampling it at the pixel centres. The default samples,
        as ``scipy.ndimage.gaussian_filter``, scikit-image, DIPlib and MATLAB's
        ``fspecial`` do, so ``make_psf("gaussian", shape, sigma=s)`` is the kernel of
        ``gaussian_filter(image, s)`` (up to its truncation at 4 sigma); integrating gives
        the light a pixel collects from a Gaussian spot, whose variance is larger by the
        pixel's 1/12. The other models are always integrated over each pixel. The same
        option of :func:`psfkit.fit_kernel` fits the same rendering.
    **params
        The model's parameters, in pixels and radians (the microscope models take
        physical lengths, see the module docstring).

    Returns
    -------
    ndarray of float32
        The kernel, with its centre at ``shape // 2`` and unit sum.

    Examples
    --------
    >>> psf = make_psf("gaussian", (15, 15), sigma=2.0)
    >>> psf.shape, round(float(psf.sum()), 5)
    ((15, 15), 1.0)

    The centre-sampled Gaussian is the filter's kernel (here of the filter's size, 4 sigma
    on each side):

    >>> import scipy.ndimage
    >>> impulse = np.zeros((13, 13))
    >>> impulse[6, 6] = 1.0
    >>> filtered = scipy.ndimage.gaussian_filter(impulse, 1.5)
    >>> bool(np.abs(make_psf("gaussian", (13, 13), sigma=1.5) - filtered).max() < 1e-7)
    True
    """
    if model not in _RENDERERS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(_RENDERERS)}")
    shape = _shape_for(model, shape)
    # the models render in float64 with a few temporaries of the kernel's size
    fits_in_memory(RENDER_COPIES * 8 * float(np.prod(shape, dtype=np.float64)),
                   f"a {model} PSF of shape {shape}", "a PSF needs a few times its width, "
                   "not the image's size: choose a smaller shape")
    pixel_integrated = flag(pixel_integrated, "pixel_integrated")
    _check_parameters(model, params)
    try:
        kernel = render(model, shape, pixel_integrated=pixel_integrated, **params)
    except TypeError as error:
        raise TypeError(f"wrong parameters for the {model!r} model: {error}") from None
    return finite_result(kernel.astype(np.float32), "make_psf",
                         fix=f"choose {model} parameters of a few pixels for this shape")
