"""``method="auto"``: the method and its strength chosen per image by an estimate of the risk
that needs no truth, Monte-Carlo SURE on the noise model.

For data ``y = H x + b + n`` whose noise has the variance ``v`` (per pixel, from the noise
model: the gain times the level plus the read noise's variance), the prediction risk of a
deconvolution ``x̂(y)``, ``R = mean((H x̂ − H x)²) / v̄`` in units of the mean noise variance
``v̄``, has Stein's unbiased estimate (exact for Gaussian noise, through the Gaussian
approximation for shot noise)::

    SURE = mean((y − b − H x̂)²) / v̄ − 1 + 2 mean(v_i ∂(H x̂)_i / ∂y_i) / v̄

The divergence is measured with one random probe ``p`` of unit variance (Ramani, Blu and
Unser): ``mean(s p (H x̂(y + ε s p) − H x̂(y))) / (ε v̄)`` with ``s = √v``, whose expectation
is the weighted divergence because ``E[p pᵀ] = I``. The risk is estimated on the full data,
not on a half of it, so a choice needs no mapping from half the counts to all of them.

The risk weighs every pixel's error alike, as the image's error does; it is not whitened
(``mean((H x̂ − H x)² / v)``), which under shot noise weighs a pixel's error by the inverse
of its level. On the sparse puncta at 50 photons of ``benchmarks/bench_auto.py`` a dark
pixel's error then counted up to 30 times a spot's, and the whitened risk preferred
``rl_mix`` (error 0.43) over Richardson–Lucy at 3 or 4 iterations (0.33, 0.31) even when
computed with the truth (``benchmarks/diagnose_auto_risk.py``). Under Gaussian noise the two
risks are the same up to a constant factor, and so is the choice.

The candidates share their work: one accelerated Richardson–Lucy path gives every stopping
point, and its probe path (the same extrapolation steps replayed on ``y + ε s p``) every
divergence; one Fourier factorisation gives every Tikhonov ``λ``, whose filter is linear, so
its divergence is exact with ``ε = 1``. The risks are measured where ``H x̂`` is defined
by the data (the pixels whose PSF footprint lies inside the image) on a central region of
about :data:`RISK_SEARCH_SAMPLES` samples (:func:`risk_region`); the winner then runs on the
whole image with the settings chosen there (its stopping point, its ``λ``, or ``rl_mix``'s
iterations, weights and steps), which ``info.parameters`` repeat.

Tikhonov is a candidate for 2D images only. The risk is a prediction risk: it scores how
well ``H x̂`` predicts ``H x``, so it cannot see what ``H`` does not pass, and a 3D
widefield PSF passes nothing in its missing cone, where RL keeps a non-negative estimate
and a linear filter does not. On the 3D bead volume of
``benchmarks/bench_optics_deconvolution.py`` the least risk went to Tikhonov on all six runs
with the true or the optics PSF (three seeds), with errors of 0.21–0.46 against 0.16 for
RL, the next candidate, and 0.38–0.40 for the blurred input. No 3D case of the tuning or
validation sets chose Tikhonov, so their tables do not change.

With a PSF map (a blur that changes across the field, :mod:`._varying`) the choice is the
same among the candidates that take a map, RL's stopping points and ``rl_mix``, on the
map's part under the region (:meth:`VaryingPsf.cropped`: the whole image's blur restricted
to the region, exactly), with ``H x̂`` the map's blur (:class:`VaryingConvolver`) and the
emphasis of the PSF at the region's centre (any fixed weighting leaves SURE unbiased).
Tikhonov is not a candidate: it is a filter of one PSF, which a map approximates
piecewise, so its estimate is not the one whose risk the exact map's model would measure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from psfkit._progress import report
from psfkit.noise import central_region
from psfkit.operators import WORKERS, fast_length_at_most, inverse_rfftn

from ._auto import rl_mix
from ._common import MethodResult, Request
from ._direct import _laplacian_power, _smooth_extension, tikhonov
from ._extrapolation import make_extrapolation
from ._noise import NoiseModel
from ._operators import OperatorCache
from ._richardson_lucy import (
    RL_STEP_RULE,
    DiscrepancyStop,
    PoissonData,
    ProgressSpan,
    richardson_lucy,
    run_richardson_lucy,
)
from ._varying import VaryingPsf, central_psf

#: The risks are measured on a central region of at most this many samples (and at least
#: three PSF extents per axis): the risk is a mean over pixels, and a larger region gives
#: the same choice at a higher cost.
RISK_SEARCH_SAMPLES = 2**18


def risk_region(shape, psf_shape) -> tuple[slice, ...]:
    """The central region where the risks are measured: the whole image when it has at
    most :data:`RISK_SEARCH_SAMPLES` samples; else a region of about that many (and of at
    least three PSF extents per axis), each axis a few samples shorter or longer where that
    makes its valid part, which every risk's weighting transforms (:class:`_Emphasis`), a
    fast FFT length: 482 = 2 · 241 valid samples (a 31-sample PSF on a 512-sample region)
    transform 10–25 times slower than 480."""
    region = central_region(shape, RISK_SEARCH_SAMPLES, [3 * k for k in psf_shape])
    if all(r.stop - r.start == n for r, n in zip(region, shape, strict=True)):
        return region
    sizes = [_fast_valid_size(r.stop - r.start, k, n)
             for r, k, n in zip(region, psf_shape, shape, strict=True)]
    starts = [(n - size) // 2 for n, size in zip(shape, sizes, strict=True)]
    return tuple(slice(start, start + size) for start, size in zip(starts, sizes,
                                                                    strict=True))


def _fast_valid_size(size: int, psf_size: int, image_size: int) -> int:
    """The length nearest ``size`` (within the image's) whose valid part
    ``length - psf_size + 1`` is a fast FFT length (the shorter one on a tie)."""
    valid = size - psf_size + 1
    lengths = (fast_length_at_most(valid), scipy.fft.next_fast_len(valid, real=True))
    inside = [length for length in lengths if length + psf_size - 1 <= image_size]
    return min(inside, key=lambda length: (abs(length - valid), length)) + psf_size - 1


#: The Richardson–Lucy stopping points considered: about 25 % apart, as RL's error changes
#: by a few per cent between them near its best.
RL_CANDIDATES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 19, 24, 30, 38, 48, 60, 76, 96, 120, 150,
                 190, 240, 300)

#: The Tikhonov weights considered (relative to the unit-sum PSF's response, so they do not
#: depend on the image's scale): three per decade over the range where its error varies.
TIKHONOV_CANDIDATES = tuple(float(value) for value in np.logspace(-6, 1, 22))

#: The probe's size in noise standard deviations: large enough that float32 round-off in
#: the probe path's difference stays far below it, small enough that RL is linear over it.
PROBE_SCALE = 0.1

#: The probe's seed: the choice is a deterministic function of the image.
PROBE_SEED = 20080901


@dataclass(frozen=True)
class Candidate:
    """One setting considered: the method, its setting (iterations or ``λ``) and the
    estimated prediction risk (0 is a perfect prediction of the blurred truth)."""

    method: str
    setting: float
    risk: float

    def describe(self) -> str:
        """``"richardson_lucy, 12 iterations"`` or ``"tikhonov, λ = 0.001"``."""
        if self.method == "tikhonov":
            return f"tikhonov, λ = {self.setting:.3g}"
        return f"{self.method}, {int(self.setting)} iterations"


@dataclass(frozen=True)
class RiskChoice:
    """The choice of ``method="auto"``: every candidate with its estimated risk, and the
    winner, the candidate of least risk."""

    candidates: tuple
    winner: Candidate
    region: tuple

    @property
    def summary(self) -> str:
        """One sentence for a status bar: what won, and against how many and what."""
        others = [c for c in self.candidates if c.method != self.winner.method]
        runner = min(others, key=lambda c: c.risk) if others else None
        against = (f"; the best {runner.method} candidate's risk was {runner.risk:.3g}"
                   if runner else "")
        return (f"{self.winner.describe()} chosen among {len(self.candidates)} candidates "
                f"for the least estimated risk (SURE {self.winner.risk:.3g}{against}).")

    def as_dict(self) -> dict:
        """The choice as plain values, for metadata: the summary, the winner and every
        candidate as ``[method, setting, risk]``."""
        return {"summary": self.summary, "winner": [self.winner.method, self.winner.setting,
                                                    self.winner.risk],
                "candidates": [[c.method, c.setting, c.risk] for c in self.candidates],
                "region": [list(bounds) for bounds in self.region]}

    def risks(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """The settings and estimated risks of one method's candidates, as arrays."""
        chosen = [(c.setting, c.risk) for c in self.candidates if c.method == method]
        settings, risks = zip(*chosen, strict=True) if chosen else ((), ())
        return np.array(settings, dtype=float), np.array(risks, dtype=float)


def noise_variance(level: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """The noise variance of each pixel whose mean is ``level`` (background included):
    ``gain * level + intercept`` for shot noise, at least the read noise's and one count's
    variance; the model's variance for Gaussian noise."""
    if not noise.poisson:
        return np.full(level.shape, max(noise.rms**2, 1e-30), dtype=np.float32)
    floor = max(noise.intercept + noise.gain * noise.background, noise.gain**2, 1e-30)
    variance = level * np.float32(noise.gain) + np.float32(noise.intercept)
    return np.maximum(variance, np.float32(floor))


class _RiskMeter:
    """SURE of candidates on one region: ``y``, the noise variance, the probe and the valid
    pixels, and the blurred model of an estimate there.

    The variance is that of a pilot estimate's model (:meth:`set_pilot`), a far better
    estimate of each pixel's mean than the noisy data, which matters where there are few
    counts (star fields); it is fixed before any divergence is measured.
    """

    def __init__(self, image: np.ndarray, psf: np.ndarray, noise: NoiseModel,
                 operators, emphasis: float | None = None):
        self.image, self.noise = image, noise
        self.crop = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n - k + 1)
                          for n, k in zip(image.shape, psf.shape, strict=True))
        self.blur = operators.convolver(psf, image.shape)
        probe = np.random.default_rng(PROBE_SEED).standard_normal(image.shape)
        self.probe = probe.astype(np.float32)
        self.weighting = None if emphasis is None else _Emphasis(
            central_psf(psf), tuple(c.stop - c.start for c in self.crop), emphasis)
        self.set_pilot(None)

    def set_pilot(self, estimate: np.ndarray | None) -> None:
        """Take the variance from the model of ``estimate`` (None: from the data averaged
        over 3 pixels per axis)."""
        if estimate is None:
            level = ndi.uniform_filter(self.image, 3, mode="nearest")
        else:
            level = self.blur.apply(estimate, "same") + np.float32(self.noise.background)
        variance = noise_variance(level, self.noise)
        self.deviation = np.sqrt(variance)
        mean_variance = float(np.mean(variance[self.crop], dtype=np.float64))
        #: ``1 / √v̄``: the risk's unit is the mean noise variance on the valid pixels
        self.unit = np.float32(1.0 / np.sqrt(mean_variance))
        probe = self.perturbation(1.0)[self.crop]
        if self.weighting is not None:
            probe = self.weighting.apply(probe, self.weighting.weights)
        self.weighted_probe = probe * (self.unit * self.unit)

    def perturbation(self, scale: float) -> np.ndarray:
        """``scale s p``: the probe in the data's units."""
        return self.probe * self.deviation * np.float32(scale)

    def model(self, estimate: np.ndarray) -> np.ndarray:
        """``H x̂`` on the valid pixels."""
        return self.blur.apply(estimate, "valid")

    def fit(self, model: np.ndarray) -> float:
        """``mean(|B (y − b − H x̂)|²) / v̄`` over the valid pixels (``B = 1`` without
        emphasis)."""
        residual = self.image[self.crop] - np.float32(self.noise.background) - model
        residual *= self.unit
        if self.weighting is not None:
            residual = self.weighting.apply(residual, self.weighting.root)
        residual *= residual
        return float(np.mean(residual, dtype=np.float64))

    def divergence(self, change: np.ndarray, scale: float) -> float:
        """The weighted divergence ``tr(BᵀB J V) / (N v̄)`` (``V`` the noise variances)
        from the change of ``H x̂`` that the perturbation of ``scale`` caused."""
        return float(np.mean(change * self.weighted_probe, dtype=np.float64)) / scale

    def risk(self, model: np.ndarray, perturbed_model: np.ndarray, scale: float) -> float:
        """SURE of an estimate whose model is ``model`` and, on the data perturbed by the
        probe of ``scale``, ``perturbed_model``: ``tr(B V Bᵀ) / (N v̄)`` is the trace of
        ``BᵀB`` over ``N``, as ``BᵀB`` is circulant."""
        trace = 1.0 if self.weighting is None else self.weighting.trace
        return (self.fit(model) - trace
                + 2.0 * self.divergence(perturbed_model - model, scale))


def _folded_power(psf: np.ndarray, shape) -> np.ndarray:
    """``|H|²`` at the frequencies of a periodic grid of ``shape`` (a half spectrum), also
    when the PSF is larger than the grid: the PSF summed modulo the grid has the same
    Fourier coefficients there."""
    padded = [-(-k // n) * n for k, n in zip(psf.shape, shape, strict=True)]
    folded = np.pad(psf, [(0, p - k) for p, k in zip(padded, psf.shape, strict=True)])
    for axis, n in enumerate(shape):
        folded = folded.reshape((*folded.shape[:axis], -1, n, *folded.shape[axis + 1:]))
        folded = folded.sum(axis=axis)
    spectrum = scipy.fft.rfftn(folded, workers=WORKERS)
    return spectrum.real**2 + spectrum.imag**2


class _Emphasis:
    """The weighting ``BᵀB = μ / (HᵀH + μ)`` (periodic on the valid pixels) that turns the
    prediction risk ``|B H (x̂ − x)|²`` into one close to the estimation risk where the PSF
    passes more than ``μ`` of the power, damped below: Eldar's generalised SURE with a
    regularised pseudo-inverse. Without it, SURE weighs every frequency by ``|H|²`` and
    barely sees the noise a method leaves at the frequencies the blur removes."""

    def __init__(self, psf: np.ndarray, shape, emphasis: float):
        self.shape = shape
        power = _folded_power(psf, shape)
        self.weights = (emphasis / (power + emphasis)).astype(np.float32)
        self.root = np.sqrt(self.weights)
        # the trace of a circulant over N: its mean over the whole spectrum
        self.trace = float(inverse_rfftn(self.weights.astype(np.complex64), shape).flat[0])

    def apply(self, array: np.ndarray, filter_: np.ndarray) -> np.ndarray:
        """``array`` filtered by ``filter_`` (a half spectrum), periodically."""
        spectrum = scipy.fft.rfftn(array, workers=WORKERS)
        spectrum *= filter_
        return inverse_rfftn(spectrum, self.shape)


class _Steps:
    """One progress report over the stages of the choice (the RL path, its probe,
    ``rl_mix`` twice, the winner's run): every step of any stage is the next step, so the
    count only goes up, and the planned total grows when a stage turns out longer."""

    def __init__(self, callback, planned: int):
        self.callback, self.planned, self.done = callback, planned, 0

    def __call__(self, step=None, total=None, current=None) -> bool:
        """One more step; False when the caller's callback asks to stop."""
        self.done += 1
        self.planned = max(self.planned, self.done)
        return report(self.callback, self.done, self.planned, None)

    def finish(self) -> None:
        """The last report, the step that hands the result back: the count reaches the
        total (a step of its own, so no step number is reported twice)."""
        if self.callback is not None and self.done < self.planned:
            self.done += 1
            self.planned = self.done
            report(self.callback, self.done, self.planned, None)


class _PathRecorder:
    """The progress callback of an RL path on the region: at the ``wanted`` iterations
    keeps the estimate (``kept``) or hands it to ``visit``, and counts a step of
    ``steps``."""

    def __init__(self, steps: _Steps, wanted, visit=None):
        self.steps, self.wanted, self.visit = steps, set(wanted), visit
        self.kept = {}

    def __call__(self, step, planned, current):
        if step in self.wanted:
            if self.visit is None:
                self.kept[step] = np.array(current)
            else:
                self.visit(step, current)
        return self.steps()


def _rl_candidates(meter: _RiskMeter, psf, noise: NoiseModel, request: Request,
                   budget: int, steps: _Steps) -> tuple[list, dict, object]:
    """The RL stopping points with their risks: the path on ``y`` to the tuned multiple of
    its discrepancy stop (at most ``budget``), then its probe path. Returns the candidates,
    the kept estimates by iteration and the path's run (None when the callback stopped)."""
    image = meter.image
    problem = PoissonData.from_image(image, noise)
    blur_operator = request.operators.blur_operator(psf, image.shape)
    stop = DiscrepancyStop(problem, extension=request.tuning.risk_rl_extension)
    recorder = _PathRecorder(steps, RL_CANDIDATES)
    run = richardson_lucy(
        problem, blur_operator, iterations=budget,
        extrapolation=make_extrapolation(request.acceleration, blur_operator,
                                         step_rule=RL_STEP_RULE, tuning=request.tuning),
        stops=[stop], progress=ProgressSpan(recorder))
    if run.stopped_by == "callback":
        return [], recorder.kept, None
    recorder.kept[run.iterations] = np.array(run.image)
    reached = len(stop.history) if stop.reached else run.iterations
    meter.set_pilot(recorder.kept[min(recorder.kept, key=lambda step: abs(step - reached))])
    models = {step: meter.model(estimate) for step, estimate in recorder.kept.items()}
    risks = {}

    def measure(step, estimate):
        risks[step] = meter.risk(models[step], meter.model(estimate), PROBE_SCALE)

    perturbed = PoissonData.from_image(image + meter.perturbation(PROBE_SCALE), noise)
    steps.planned = steps.done + 3 * run.iterations  # the probe, then rl_mix about as long
    probe_recorder = _PathRecorder(steps, models, visit=measure)
    probe_run = richardson_lucy(
        perturbed, blur_operator, iterations=run.iterations,
        extrapolation=make_extrapolation(request.acceleration, blur_operator,
                                         step_rule=RL_STEP_RULE, replay=run.steps,
                                         tuning=request.tuning),
        progress=ProgressSpan(probe_recorder))
    if probe_run.stopped_by == "callback":
        return [], recorder.kept, None
    candidates = [Candidate("richardson_lucy", float(step), risks[step])
                  for step in sorted(risks)]
    return candidates, recorder.kept, run


def _tikhonov_models(meter: _RiskMeter, psf, operators):
    """Yield ``(λ, H x̂, change)`` for every Tikhonov weight, from one factorisation: the
    blurred estimate ``H x̂`` (background removed, on the valid pixels) is the data filtered
    by ``|H|² / (|H|² + λ P)`` on the faded extension and read where the PSF footprint lies
    inside the image, where the periodic blur of the extended estimate is the valid blur of
    the estimate, so no estimate is formed; ``change`` is the probe (of unit scale)
    filtered alike, the exact change of ``H x̂`` as the filter is linear."""
    image = meter.image
    extended, inside = _smooth_extension(image, psf.shape)
    grid = extended.shape
    valid = tuple(slice(i.start + c.start, i.start + c.stop)
                  for i, c in zip(inside, meter.crop, strict=True))
    otf = operators.otf(psf, grid)
    spectrum = scipy.fft.rfftn(extended, workers=WORKERS)
    probe_extended, _ = _smooth_extension(meter.perturbation(1.0), psf.shape)
    probe_spectrum = scipy.fft.rfftn(probe_extended, workers=WORKERS)
    del extended, probe_extended
    power = (otf.real**2 + otf.imag**2).astype(np.float32)
    penalty = _laplacian_power(grid)
    for weight in TIKHONOV_CANDIDATES:
        passed = power / (power + np.float32(weight) * penalty)
        # Tikhonov filters the image with its background, RL's estimates exclude it
        model = inverse_rfftn(spectrum * passed, grid)[valid] - np.float32(
            meter.noise.background)
        yield weight, model, inverse_rfftn(probe_spectrum * passed, grid)[valid]


def _tikhonov_candidates(meter: _RiskMeter, psf, operators) -> list:
    """The Tikhonov weights with their risks (:func:`_tikhonov_models`; ``ε = 1``)."""
    return [Candidate("tikhonov", weight, meter.risk(model, model + change, 1.0))
            for weight, model, change in _tikhonov_models(meter, psf, operators)]


#: The methods that are candidates at their automatic settings (each runs twice on the
#: region: on the data, then repeating its settings on the probe), by name.
AUTOMATIC_CANDIDATES = {"rl_mix": rl_mix}


def _automatic_candidate(method: str, meter: _RiskMeter, psf, noise: NoiseModel,
                         request: Request, steps: _Steps):
    """``method`` at its automatic settings with its risk: the probe run repeats those
    settings (iterations, steps and weights) on the perturbed data. Returns the candidate
    (its setting: the iterations) and the result; None for both when the callback
    stopped."""
    run = AUTOMATIC_CANDIDATES[method]
    automatic = replace(request, iterations=None, regularization="auto", smoothing="auto",
                        acceleration_steps=None, callback=steps)
    result = run(meter.image, psf, noise, automatic)
    if result.stopped_by == "callback":
        return None, None
    steps.planned = steps.done * 2 + result.iterations
    perturbed = run(meter.image + meter.perturbation(PROBE_SCALE), psf, noise,
                    _repeating(automatic, result))
    if perturbed.stopped_by == "callback":
        return None, None
    risk = meter.risk(meter.model(result.image), meter.model(perturbed.image), PROBE_SCALE)
    return Candidate(method, float(result.iterations), risk), result


def _repeating(request: Request, result: MethodResult) -> Request:
    """``request`` set to repeat an automatic run's ``result`` with no data-driven choice:
    its iterations, weights and acceleration steps."""
    return replace(request, iterations=max(result.iterations, 1),
                   regularization=result.regularization, smoothing=result.smoothing,
                   acceleration_steps=list(result.steps))


def _cancelled(image) -> MethodResult:
    """What a run stopped by the callback before its choice returns: the image as it is."""
    return MethodResult(image=np.array(image), method="richardson_lucy",
                        stopped_by="callback")


def risk_choice(image, psf, noise: NoiseModel, request: Request) -> MethodResult:
    """``method="auto"``: Richardson–Lucy at every candidate stopping point, Tikhonov at
    every candidate ``λ`` (2D only, one PSF only) and ``rl_mix``, scored by Monte-Carlo SURE
    on a central region; the candidate of least estimated risk is run on the whole image
    (see the module's docstring, also for a PSF map). The result's ``method`` and settings
    are the winner's; ``choice`` holds the :class:`RiskChoice`. ``request.iterations``
    bounds the RL path (default 300)."""
    region = risk_region(image.shape, psf.shape)
    whole = all(r.stop - r.start == n for r, n in zip(region, image.shape, strict=True))
    region_psf = psf.cropped(region) if isinstance(psf, VaryingPsf) and not whole else psf
    budget = request.iterations or RL_CANDIDATES[-1]
    steps = _Steps(request.callback, 2 * budget)
    search = _search(np.ascontiguousarray(image[region]), region_psf, noise,
                     _sharing_operators(request, region_psf), budget, steps)
    if search is None:
        return _cancelled(image)
    candidates, kept, path, automatic_results = search
    winner = min(candidates, key=lambda candidate: candidate.risk)
    choice = RiskChoice(candidates=tuple(candidates), winner=winner,
                        region=tuple((r.start, r.stop) for r in region))
    result = _winner_on_the_image(image, psf, noise, replace(request, callback=steps),
                                  winner, kept if whole else None, path,
                                  automatic_results)
    steps.finish()
    return replace(result, stopped_by="risk" if result.stopped_by != "callback"
                   else "callback", choice=choice)


def _sharing_operators(request: Request, psf) -> Request:
    """``request`` with one cache of the operators of ``psf`` (a PSF or a map's part) for
    the stages on the search region, which need the same ones (the RL path and its probe,
    ``rl_mix`` twice, the risk's blur), unless it brings a cache (a Deconvolver's). The
    whole image's run keeps the caller's, so a single call's memory peak there is what it
    was."""
    if request.operators.kept_shapes:
        return request
    return replace(request, operators=OperatorCache(psf))


def _search(image: np.ndarray, psf, noise: NoiseModel, request: Request, budget: int,
            steps: _Steps):
    """Every candidate with its risk on the search region ``image``: the RL path's
    stopping points (at most ``budget`` iterations), the Tikhonov weights (2D) and the
    automatic candidates. Returns the candidates, the RL path's kept estimates, its run and
    the automatic candidates' results by method; None when the callback stopped."""
    meter = _RiskMeter(image, psf, noise, request.operators, request.tuning.risk_emphasis)
    candidates, kept, path = _rl_candidates(meter, psf, noise, request, budget, steps)
    if path is None:
        return None
    if image.ndim == 2 and not isinstance(psf, VaryingPsf):  # see the module docstring
        candidates += _tikhonov_candidates(meter, psf, request.operators)
    automatic_results = {}
    for method in AUTOMATIC_CANDIDATES:
        candidate, result = _automatic_candidate(method, meter, psf, noise, request, steps)
        if candidate is None:
            return None
        candidates.append(candidate)
        automatic_results[method] = result
    return candidates, kept, path, automatic_results


def _winner_on_the_image(image, psf, noise: NoiseModel, request: Request,
                         winner: Candidate, kept, path, automatic_results) -> MethodResult:
    """The winner run on the whole image with the settings the region chose; when the
    region was the whole image (``kept`` not None), the estimate its path or its automatic
    run already computed.

    An automatic candidate (``rl_mix``) repeats its run on the region (its iterations,
    weights and acceleration steps), as a Richardson–Lucy winner repeats its stopping point
    and :func:`psfkit.deconvolve_chunked` repeats one region's choices on every block: the
    region is where the choice was judged. Searching them again on the whole image (its
    discrepancy stop, point-source test and smoothing-weight search) costs 0.6 of one
    accelerated RL run at 2048²; repeating them instead changed the error of 14
    ``rl_mix`` winners of 1024² and 2048² by -0.1 % in geometric mean, from -1.1 % to
    +0.95 % (``benchmarks/results/auto_cost.md``): the region's discrepancy stop is
    sometimes one iteration off the whole image's, either way.
    """
    if winner.method == "tikhonov":
        return tikhonov(image, psf, noise, Request(regularization=winner.setting))
    if winner.method in AUTOMATIC_CANDIDATES:
        result = automatic_results[winner.method]
        if kept is not None:
            return result
        return AUTOMATIC_CANDIDATES[winner.method](image, psf, noise,
                                                   _repeating(request, result))
    iterations = int(winner.setting)
    if kept is not None:
        return MethodResult(image=kept[iterations], method="richardson_lucy",
                            iterations=iterations, steps=path.steps[:iterations],
                            acceleration=request.acceleration)
    request.callback.planned = request.callback.done + iterations
    return run_richardson_lucy(image, psf, noise, replace(
        request, iterations=iterations, acceleration_steps=None))
