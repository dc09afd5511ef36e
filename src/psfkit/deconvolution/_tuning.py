"""The constants of the automatic deconvolution that were chosen on the benchmark suite,
in one place.

Each was picked once by running ``benchmarks/bench_deconvolve.py`` (its quality part, or
the part named below, or ``benchmarks/bench_auto.py --tune`` for the risk choice's) over
a range of values. To re-derive one, run the method it belongs to with another value, e.g.
``deconvolve(image, psf, "rl_mix", tuning=AutoTuning(point_source_kurtosis=20.0))``: the
``tuning`` keyword reaches every place the constants are used (``method="auto"`` passes it
to its ``rl_mix`` candidate too), so no module is patched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoTuning:
    """Tuned constants of ``method="auto"`` (the risk choice), ``rl_mix``, ``rl_tv`` and the
    accelerated ``richardson_lucy``; the defaults are the values chosen on the benchmark
    suite."""

    #: ``rl_mix`` runs its Richardson–Lucy part this many times the iterations at which the
    #: discrepancy principle is first met, before the TV smoothing brings the misfit back
    #: to the noise, for extended objects (photographs, blobs). Quality part of the suite.
    extension_extended: float = 2.0

    #: The same for point-like objects (see ``point_source_kurtosis``), whose error keeps
    #: falling long after the residual reaches the noise as Richardson–Lucy concentrates
    #: their light. Quality part of the suite.
    extension_points: float = 5.0

    #: An estimate whose excess kurtosis (at the discrepancy stop) is above this is taken
    #: to be made of point sources (stars, beads): on the suite, star fields give
    #: 60–20 000, fluorescence-like blobs 1–24 and photographs about -1.
    point_source_kurtosis: float = 50.0

    #: RL-TV's automatic weight is this times the relative noise ``sqrt(var / level) /
    #: level`` at the mean level (``NoiseModel.relative_noise``); used by ``rl_tv`` and by
    #: ``rl_mix``'s RL-TV member. Quality part of the suite.
    rl_tv_strength: float = 0.1

    #: RL-TV iterations of ``rl_mix``'s last step, started from the TV-smoothed estimate
    #: and accelerated like its RL part. Fewer favour blobs and more favour photographs.
    #: ``benchmarks/tune_auto.py --quick --only rl_tv_refinement_iterations`` picks the
    #: fewest within 0.2 % of the least geometric mean on its tuning set
    #: (``results/tuning_quick.md``): 10; 30 accelerated ones give 1.001 / 1.058 of its error
    #: (geometric mean / worst) there and 1.010 / 1.105 on the hold-out set. It replaces 30
    #: unaccelerated iterations (three times the cost).
    rl_tv_refinement_iterations: int = 10

    #: Fast (Beck–Teboulle) dual projection iterations of ``rl_mix``'s TV smoothing of the
    #: whole result, from a cold start, picked like the above (``--only
    #: smoothing_iterations``): 15; 40 give 0.998 / 0.986 (geometric mean / best) of its error
    #: on the tuning set and 0.999 / 0.994 on the hold-out set. It replaces 80 plain
    #: projection iterations (about four times the cost).
    smoothing_iterations: int = 15

    #: Largest extrapolation step of the geometric acceleration with the cosine step rule
    #: (``method="richardson_lucy"``), whose iterations are stopped early, so their path
    #: matters as well as their speed: larger steps (0.9–0.95) go faster on deep runs, but
    #: their least error on smooth scenes stays up to 0.8 % above plain RL's best; with 0.8
    #: it is within 0.5 % (acceleration part of the benchmark).
    max_geometric_extrapolation: float = 0.8

    #: ``method="auto"`` runs its Richardson–Lucy path to this many times the iterations
    #: at which the discrepancy principle is first met, and chooses its stopping point on
    #: that path (its probe path is as long, so the factor sets most of the search's
    #: cost). ``bench_auto.py --tune risk_rl_extension`` on its tuning set (error over the
    #: best truth-chosen psfkit method, see ``benchmarks/results/``
    #: ``auto_tuning_risk_rl_extension.md``): the later stopping points are never chosen
    #: over ``rl_mix`` or an earlier one, so 1.5 is as good as 4 (which it replaces) at
    #: under half the path.
    risk_rl_extension: float = 1.5

    #: ``method="auto"`` weighs the residual by ``μ / (|H|² + μ)`` with this ``μ`` (None:
    #: plain SURE, the prediction risk), so that its risk sees the noise a method leaves
    #: where the PSF passes little. ``bench_auto.py --tune risk_emphasis`` on its tuning
    #: set (error over the best truth-chosen psfkit method, geometric mean / worst, see
    #: ``benchmarks/results/auto_tuning_risk_emphasis.md``): 1.038 / 1.214 without it,
    #: 1.027 / 1.134 from 1 down to 0.03 (the value before this re-derivation), 1.017 /
    #: 1.076 at 0.01, which is taken.
    risk_emphasis: float | None = 0.01

    def discrepancy_extension(self, points: bool) -> float:
        """The extension factor for point sources (``points``) or extended objects."""
        return self.extension_points if points else self.extension_extended


#: The values every run uses unless a ``tuning`` is passed.
DEFAULT_TUNING = AutoTuning()
