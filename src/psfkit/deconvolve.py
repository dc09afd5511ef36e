"""Deconvolution with a known PSF (being built)."""

from __future__ import annotations


def deconvolve(image, psf, method="auto", *, iterations=None, regularization="auto",
               callback=None, **kwargs):
    """Deconvolve ``image`` by ``psf`` (not implemented yet)."""
    raise NotImplementedError("deconvolve is being built (issue: deconvolution)")
