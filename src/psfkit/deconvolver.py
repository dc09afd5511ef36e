"""Many images, one PSF (or one PSF map): :class:`Deconvolver` prepares the PSF once and
keeps its transforms per image shape, so a batch pays its set-up once.

``Deconvolver(psf, method, **options)(image)`` returns what
``deconvolve(image, psf, method, **options)`` returns, bit for bit: the PSF is validated
and normalised once, and the blur operators the methods build from it (the OTF on each
image shape's padded grid, see :mod:`psfkit.deconvolution._operators`) are kept for the next
image of that shape. A :class:`psfkit.PsfMap` is prepared once too (its tiles clipped and
normalised, their weights over the image) and its varying blur operator, with one
transform per tile, is kept likewise. With ``same_choices=True`` the automatic choices
made on the first image (method, noise model, iterations, regularization:
``info.parameters``) are applied to every later image, so the intensities of a plate are
treated alike.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._validate import as_float_array, psf_fits
from .deconvolution import (
    DEFAULT_TUNING,
    _check_working_memory,
    check_parameters,
    normalise_psf,
    solve,
)
from .deconvolution._operators import OperatorCache
from .deconvolution._varying import VaryingPsf
from .frames import checked_choices, explicit_parameters, has_signal
from .psf_map import PsfMap, check_map_fits

__all__ = ["Deconvolver"]

#: Keyword arguments of :func:`psfkit.deconvolve` that belong to one call, not to the
#: plan: they are arguments of :meth:`Deconvolver.__call__`.
PER_CALL = ("callback", "return_info")


class Deconvolver:
    """Deconvolve many images with one PSF, preparing it once.

    Parameters
    ----------
    psf : (M, N) or (P, M, N) ndarray, or PsfMap
        The PSF, centred on its centre pixel; clipped to nonnegative values and normalised
        to unit sum once. Every image must have its dimensionality. Or a
        :class:`psfkit.PsfMap` of a blur that changes across the field: every image must
        then have the map's image shape, and the results are those of
        ``deconvolve(image, psf_map, ...)``.
    method : str
        As for :func:`psfkit.deconvolve`.
    same_choices : bool
        Make the automatic choices (method, noise model, iterations, regularization,
        smoothing, acceleration steps) on the first image that has signal and apply them to
        every later image, instead of choosing afresh per image: consistent quantitation
        across a plate. Explicit options are kept as given.
    **options
        The other keyword arguments of :func:`psfkit.deconvolve` (``iterations``,
        ``regularization``, ``background``, ...), validated here.

    Attributes
    ----------
    choices : dict or None
        With ``same_choices``, the explicit keyword arguments applied to the images after
        the first (``None`` until an image with signal has been deconvolved); passing them
        to :func:`psfkit.deconvolve` repeats any of those runs.

    Notes
    -----
    The kept operators hold about one complex transform of the padded grid (one float32
    copy of the image) per method operator, for the last few image shapes
    (:data:`psfkit.deconvolution._operators.KEPT_SHAPES`).

    Examples
    --------
    >>> from psfkit import Deconvolver, make_psf
    >>> from psfkit.samples import blurred_pair
    >>> psf = make_psf("gaussian", (9, 9), sigma=1.5)
    >>> images = [blurred_pair(psf, (64, 64), noise=0.01, rng=seed).blurred
    ...           for seed in range(3)]
    >>> deconvolver = Deconvolver(psf, "richardson_lucy", iterations=10)
    >>> [deconvolver(image).shape for image in images]
    [(64, 64), (64, 64), (64, 64)]
    """

    def __init__(self, psf, method: str = "auto", *, same_choices: bool = False,
                 **options):
        misplaced = [name for name in PER_CALL if name in options]
        if misplaced:
            raise TypeError(f"{misplaced[0]} is an argument of each call, "
                            f"deconvolver(image, {misplaced[0]}=...), not of Deconvolver")
        if not isinstance(same_choices, bool):
            raise TypeError(f"same_choices must be True or False, got {same_choices!r}")
        check_parameters(method, **options)  # refuses a bad option now, by name
        if isinstance(psf, PsfMap):
            #: the map as given, and prepared for its image shape (the one it fits)
            self.psf_map = psf
            self.psf = VaryingPsf.of(psf, psf.shape)
        else:
            psf = as_float_array(psf, "psf", ndim=(2, 3))
            self.psf_map = None
            self.psf = normalise_psf(psf, psf.ndim)
        self.method = method
        self.options = dict(options)
        self.same_choices = same_choices
        self.choices: dict | None = None
        self.operators = OperatorCache(self.psf)

    def _parameters(self) -> dict:
        """The keyword arguments of the next run: the chosen ones once adopted."""
        if self.choices is not None:
            return dict(self.choices)
        return dict(self.options, method=self.method)

    def __call__(self, image, *, callback=None, return_info: bool = False):
        """Deconvolve ``image``: what :func:`psfkit.deconvolve` returns for this PSF and
        these options (``(result, info)`` with ``return_info``)."""
        result, info = self.run(image, **self._parameters(), callback=callback,
                                return_info=True)
        if self.same_choices and self.choices is None and has_signal(image):
            chosen = explicit_parameters(dict(self.options, method=self.method), info)
            self.choices = checked_choices(chosen, "the first image")
        return (result, info) if return_info else result

    def run(self, image, method: str = "auto", *, callback=None, return_info: bool = False,
            tuning=DEFAULT_TUNING, **options):
        """``deconvolve(image, psf, method, **options)`` with this PSF and its kept
        operators, but the options given here instead of the Deconvolver's: for a caller
        that chooses them per image (the frames of a stack repeating the first one's)."""
        request, noise_keywords = check_parameters(method, callback=callback, tuning=tuning,
                                                   **options)
        _check_working_memory(np.shape(image))
        image = as_float_array(image, "image")
        if self.psf_map is not None:
            check_map_fits(self.psf_map, image.shape)
        elif image.ndim != self.psf.ndim:
            raise ValueError(f"psf must be {image.ndim}D like the image, got shape "
                             f"{self.psf.shape}")
        psf_fits(self.psf.shape, image.shape)
        request = replace(request, operators=self.operators)
        result, info = solve(image, self.psf, method, request, noise_keywords)
        return (result, info) if return_info else result

    def kept_operators(self) -> dict:
        """The operators kept per image shape, e.g. ``{(512, 512): ["blur", "convolver"]}``."""
        return self.operators.kept()

