"""Measured PSFs from beads, LEDs and stars (being built)."""

from __future__ import annotations


def prepare_psf(image, shape=None, **kwargs):
    """Clean, centre and normalise a measured PSF (not implemented yet)."""
    raise NotImplementedError("prepare_psf is being built (issue: measured PSFs)")


def average_beads(image, **kwargs):
    """Average many beads into one PSF (not implemented yet)."""
    raise NotImplementedError("average_beads is being built (issue: measured PSFs)")
