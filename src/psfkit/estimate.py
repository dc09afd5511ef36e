"""Non-parametric kernel estimation between a sharp and a blurred image (being built)."""

from __future__ import annotations


def estimate_kernel(sharp, blurred, shape=None, *, method="auto", regularization="auto",
                    callback=None, **kwargs):
    """Estimate the kernel that blurs ``sharp`` into ``blurred`` (not implemented yet)."""
    raise NotImplementedError("estimate_kernel is being built (issue: kernel estimation)")
