"""What a kernel fit is posed on: the normalised pair, the optimiser's vector and the
forward model.

The forward model is ``blurred ≈ gain · (kernel ∗ shift(sharp)) + offset`` with
``shift(sharp)(x) = sharp(x - shift)``; :class:`_Problem` evaluates it on a periodic grid
padded by mirroring (the shift a band-limited phase ramp) and keeps only the window where
the kernel sees real data. :class:`_Packing` is the order of the optimiser's vector
``x = [v, shift, gain, offset]``, and :class:`_Normalised` the pair in normalised units
with the way back to the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from ._fit_models import _Model
from ._validate import rescaled
from .noise import floored_noise_sigma
from .operators import WORKERS, fast_shape, frequencies, periodic_embed


@dataclass(frozen=True)
class _Normalised:
    """The pair in normalised units (zero mean, unit standard deviation, float32), the
    scales that undo it, and the noise of the normalised ``blurred`` (its quantisation
    noise when the estimate finds none, :func:`psfkit.noise.floored_noise_sigma`)."""

    sharp: np.ndarray
    blurred: np.ndarray
    sharp_mean: float
    sharp_std: float
    blurred_mean: float
    blurred_std: float
    noise: float

    @classmethod
    def of(cls, sharp, blurred) -> _Normalised:
        """Normalise ``sharp`` and ``blurred``; both must vary.

        The moments are taken of each image divided by an exact power of two
        (:func:`psfkit._validate.rescaled`), so that images of 1e-30 or 1e30 neither
        under- nor overflow in float32, and multiplied back into the caller's units.
        """
        sharp, sharp_scale = rescaled(sharp)
        blurred, blurred_scale = rescaled(blurred)
        sharp_mean, sharp_std = float(sharp.mean()), float(sharp.std())
        blurred_mean, blurred_std = float(blurred.mean()), float(blurred.std())
        if sharp_std == 0 or blurred_std == 0:
            raise ValueError("sharp and blurred must not be constant")
        a = ((sharp - sharp_mean) / sharp_std).astype(np.float32)
        b = ((blurred - blurred_mean) / blurred_std).astype(np.float32)
        return cls(a, b, sharp_mean * sharp_scale, sharp_std * sharp_scale,
                   blurred_mean * blurred_scale, blurred_std * blurred_scale,
                   floored_noise_sigma(b))

    def caller_intensity(self, gain, offset, covariance) -> tuple[float, float, dict]:
        """Normalised ``gain``, ``offset`` (and their 2 × 2 covariance) in the caller's
        intensity units: the two values and their errors by name."""
        caller_gain = float(self.blurred_std * gain / self.sharp_std)
        caller_offset = float(self.blurred_mean + self.blurred_std * offset
                              - caller_gain * self.sharp_mean)
        linear = np.array([[self.blurred_std / self.sharp_std, 0.0],
                           [-self.blurred_std * self.sharp_mean / self.sharp_std,
                            self.blurred_std]])
        linear_cov = linear @ covariance @ linear.T
        errors = {"gain": float(np.sqrt(max(linear_cov[0, 0], 0))),
                  "offset": float(np.sqrt(max(linear_cov[1, 1], 0)))}
        return caller_gain, caller_offset, errors


@dataclass(frozen=True)
class _Packing:
    """The order of the optimiser's vector ``x = [v, shift, gain, offset]``.

    ``v`` holds the model's own parameters, ``shift`` one entry per image axis, then come
    the gain and the offset. This is the one place that knows the order; everything else
    reads ``x`` (and its covariance) through these slices and indices.
    """

    model: slice
    shift: slice
    gain: int
    offset: int

    @classmethod
    def of(cls, model_size: int, ndim: int) -> _Packing:
        """The packing of ``model_size`` model parameters in ``ndim`` dimensions."""
        gain = model_size + ndim
        return cls(slice(0, model_size), slice(model_size, gain), gain, gain + 1)

    @property
    def kernel_and_shift(self) -> slice:
        """The entries whose derivatives come from the kernel's rows (``v`` and shift)."""
        return slice(0, self.gain)

    @property
    def intensity(self) -> slice:
        """Gain and offset together."""
        return slice(self.gain, self.offset + 1)

    @property
    def size(self) -> int:
        """The length of ``x``."""
        return self.offset + 1

    def pack(self, v, shift, gain: float, offset: float) -> np.ndarray:
        """The vector ``x`` of these parts, float64."""
        return np.concatenate([v, shift, [gain, offset]]).astype(float)

    def bounds(self, model: _Model) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of ``x``: the model's own, the rest unbounded."""
        free = np.full(self.size - self.model.stop, np.inf)
        return (np.concatenate([model.lower, -free]), np.concatenate([model.upper, free]))


def _slices(starts, stops) -> tuple[slice, ...]:
    """``slice(start, stop)`` per axis, as Python ints."""
    return tuple(slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True))


def _valid_bounds(image_shape, kernel_shape, margin) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop per axis of the output samples whose kernel support, moved by up to
    ``margin`` px, lies inside an image of ``image_shape``."""
    half = np.array(kernel_shape) // 2
    start = half + margin
    stop = np.array(image_shape) - half - margin
    if np.any(stop - start < 4):
        raise ValueError(
            f"the kernel {tuple(kernel_shape)} plus a shift margin of "
            f"{margin.tolist()} px leaves no valid region in images of shape "
            f"{tuple(image_shape)}; use larger images or a smaller kernel shape")
    return start, stop


def _central_crop(start, stop, crop, reach, image_shape):
    """A centred sub-window of ``[start, stop)`` at most ``crop`` long per axis, and the
    box of the image it reads: ``reach`` px more on each side and 8 spare, within the
    image."""
    centre = (start + stop) // 2
    length = np.minimum(stop - start, crop)
    start, stop = centre - length // 2, centre - length // 2 + length
    low = np.maximum(start - reach - 8, 0)
    high = np.minimum(stop + reach + 8, image_shape)
    return start, stop, low, high


class _Problem:
    """The forward model ``blurred ≈ gain · (kernel ∗ shift(sharp)) + offset`` over a fixed
    window, with ``shift(sharp)(x) = sharp(x - shift)``.

    :meth:`apply` evaluates ``kernel ∗ shift(sharp)`` (gain 1, offset 0) on the window, the
    part of ``blurred`` kept in :attr:`data`; :meth:`apply_to_image` evaluates it over the
    whole frame; :meth:`apply_with_derivatives` gives the optimiser several kernels' models
    at once and the derivatives along the shift. ``sharp`` sits in a grid padded by
    mirroring, so the band-limited sub-pixel shift (a phase ramp) sees no artificial edge;
    only output samples whose kernel support, moved by up to ``margin`` px, lies inside
    ``sharp`` are compared with ``blurred``. With ``crop``, only a centred sub-window of at
    most that many samples per axis is compared (cheap searches).
    """

    def __init__(self, sharp, blurred, kernel_shape, margin, crop=None):
        self.kernel_shape = tuple(kernel_shape)
        margin = np.ceil(np.asarray(margin, dtype=float)).astype(int)
        start, stop = _valid_bounds(sharp.shape, kernel_shape, margin)
        origin = np.zeros(sharp.ndim, dtype=int)
        if crop is not None:
            reach = np.array(kernel_shape) // 2 + margin
            start, stop, origin, high = _central_crop(start, stop, crop, reach, sharp.shape)
            sharp = sharp[_slices(origin, high)]
            start, stop = start - origin, stop - origin
        # the window never reads beyond the image by more than the margin; a few more
        # mirrored samples keep the band-limited shift free of edge ringing
        self.pad = margin + 4
        self.image_shape = sharp.shape
        self.grid_shape = fast_shape(np.array(sharp.shape) + 2 * self.pad)
        after = np.array(self.grid_shape) - np.array(sharp.shape) - self.pad
        padded = np.pad(sharp, [(int(p), int(a)) for p, a in zip(self.pad, after, strict=True)],
                        mode="symmetric")
        self.sharp_ft = scipy.fft.rfftn(padded.astype(np.float32), workers=WORKERS)
        self.grid_window = _slices(start + self.pad, stop + self.pad)
        self.data_window = _slices(start + origin, stop + origin)
        self.data = blurred[self.data_window].astype(np.float64)
        # angular frequencies per axis, broadcastable against the rfft grid
        self.omegas = [(2 * np.pi * f).astype(np.float32) for f in frequencies(self.grid_shape)]

    def otfs(self, kernels: np.ndarray) -> np.ndarray:
        """Transfer functions on the grid of centred kernels stacked on axis 0."""
        ndim = len(self.grid_shape)
        return scipy.fft.rfftn(periodic_embed(kernels, self.grid_shape),
                               axes=tuple(range(1, ndim + 1)), workers=WORKERS)

    def phase_ramp(self, shift) -> np.ndarray:
        """The spectrum's factor that translates by ``shift`` (band-limited)."""
        ramp = np.ones((1,) * len(self.grid_shape), dtype=np.complex64)
        for omega, s in zip(self.omegas, shift, strict=True):
            ramp = ramp * np.exp(-1j * omega * np.float32(s)).astype(np.complex64)
        return ramp

    def _on_grid(self, spectra: np.ndarray) -> np.ndarray:
        """Inverse transforms of ``sharp_ft · spectra`` (stacked on leading axes)."""
        ndim = len(self.grid_shape)
        return scipy.fft.irfftn(self.sharp_ft * spectra, self.grid_shape,
                                axes=tuple(range(spectra.ndim - ndim, spectra.ndim)),
                                workers=WORKERS)

    def _model_on_grid(self, kernel, shift) -> np.ndarray:
        """``kernel ∗ shift(sharp)`` over the whole padded grid."""
        return self._on_grid(self.otfs(kernel[None])[0] * self.phase_ramp(shift))

    def apply(self, kernel, shift) -> np.ndarray:
        """``kernel ∗ shift(sharp)`` on the window, float64."""
        return self._model_on_grid(kernel, shift)[self.grid_window].astype(np.float64)

    def apply_with_derivatives(self, kernels, shift) -> np.ndarray:
        """One row per output, each the window flattened (float64): ``kernel ∗ shift(sharp)``
        for every stacked kernel, then the derivative of the first one's along each shift
        axis (analytic: ``-iω`` times its spectrum)."""
        spectra = self.otfs(kernels) * self.phase_ramp(shift)
        spectra = np.concatenate(
            [spectra, np.stack([-1j * omega * spectra[0] for omega in self.omegas])])
        windowed = self._on_grid(spectra)[(..., *self.grid_window)]
        return windowed.reshape(len(spectra), -1).astype(np.float64)

    def apply_to_image(self, kernel, shift) -> np.ndarray:
        """``kernel ∗ shift(sharp)`` over the whole frame of ``sharp`` (outside the window it
        relies on the mirrored padding)."""
        frame = _slices(self.pad, self.pad + self.image_shape)
        return self._model_on_grid(kernel, shift)[frame]
