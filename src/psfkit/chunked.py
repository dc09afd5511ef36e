"""Chunked deconvolution with dask for data larger than memory (being built)."""

from __future__ import annotations


def deconvolve_chunked(image, psf, **kwargs):
    """Deconvolve a dask array chunk by chunk (not implemented yet)."""
    raise NotImplementedError("chunked deconvolution is being built (issue: deconvolution)")
