"""The profile plot of the Fit PSF model, Prepare PSF and Average beads widgets: the
radial (and, for a 3D PSF, the axial) profile of each PSF through its centre, computed by
:mod:`psfkit.profiles`, with the FWHM marked at half maximum.

The plot is one matplotlib canvas inside its widget, hidden until the first result; every
run redraws it, so re-running never adds a second plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from psfkit.profiles import Profile, axial_profile, radial_profile

#: Height of one panel of the plot in the widget, in pixels (a 3D PSF has two, stacked).
PANEL_HEIGHT = 220


@dataclass(frozen=True)
class Curve:
    """One PSF as the plot shows it: its label, its radial profile and, in 3D, its axial
    one (distances in ``unit``)."""

    label: str
    radial: Profile
    axial: Profile | None


def curve(label: str, psf: np.ndarray, spacing) -> Curve:
    """The :class:`Curve` of ``psf`` on a grid of ``spacing`` (its profiles from the core)."""
    psf = np.asarray(psf)
    return Curve(label, radial_profile(psf, spacing=spacing),
                 axial_profile(psf, spacing=spacing) if psf.ndim == 3 else None)


def _length_unit(units, spacing) -> str:
    """The unit the profiles' distances are in: "px" when the pixels are 1 unit wide."""
    return "px" if np.allclose(spacing, 1.0) else units[-1]


class ProfilePlot:
    """A matplotlib canvas showing the profiles of one or more PSFs with their FWHM."""

    def __init__(self, parent_layout):
        self.figure = Figure(figsize=(3.2, 2.2), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(PANEL_HEIGHT)
        self.canvas.setVisible(False)
        parent_layout.addWidget(self.canvas)
        self.curves: tuple[Curve, ...] = ()

    def show(self, curves, spacing, units) -> None:
        """Redraw the plot with ``curves`` (distances on a grid of ``spacing``, whose
        per-axis ``units`` label the axes) and make it visible."""
        self.curves = tuple(curves)
        unit = _length_unit(units, spacing)
        self.figure.clear()
        three_d = any(c.axial is not None for c in self.curves)
        panels = self.figure.subplots(2 if three_d else 1, 1, squeeze=False)[:, 0]
        self.canvas.setMinimumHeight(PANEL_HEIGHT * len(panels))
        self._draw(panels[0], [c.radial for c in self.curves], "radial", unit)
        if three_d:
            self._draw(panels[1], [c.axial for c in self.curves], "axial",
                       _length_unit(units[:1], spacing[:1]))
        self.canvas.setVisible(True)
        self.canvas.draw_idle()

    def _draw(self, axes, profiles, title: str, unit: str) -> None:
        """One panel: each profile as a line, its FWHM as a dashed segment at half its
        maximum (from the centre out, for a radial profile), its width in the legend."""
        for index, (c, profile) in enumerate(zip(self.curves, profiles, strict=True)):
            colour = f"C{index}"
            axes.plot(profile.distance, profile.value, color=colour,
                      marker="." if index == 0 else None,
                      label=f"{c.label}: FWHM {profile.fwhm:.3g} {unit}")
            low, high = profile.half_maximum_edges
            if np.isfinite(profile.fwhm):
                axes.hlines(profile.half_maximum, 0.0 if title == "radial" else low, high,
                            colors=colour, linestyles="dashed", linewidth=1)
        axes.set_title(title, fontsize="small")
        axes.set_xlabel(f"{'radius' if title == 'radial' else 'z'} ({unit})",
                        fontsize="small")
        axes.set_ylabel("PSF", fontsize="small")
        axes.tick_params(labelsize="x-small")
        axes.legend(fontsize="x-small", frameon=False, loc="best")
