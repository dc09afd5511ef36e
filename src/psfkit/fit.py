"""Parametric kernel fits between a sharp and a blurred image (being built)."""

from __future__ import annotations


def fit_kernel(sharp, blurred, model="gaussian", *, shape=None, callback=None, **kwargs):
    """Fit a parametric kernel between ``sharp`` and ``blurred`` (not implemented yet)."""
    raise NotImplementedError("fit_kernel is being built (issue: parametric fits)")
