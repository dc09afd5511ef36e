"""FFT convolution and the grid helpers around it: the one place where psfkit convolves,
correlates, pads, crops and shifts arrays.

Linear (never circular) convolution of a fixed array ``f`` of shape ``A`` with a variable
array ``g`` of shape ``B`` is computed on a zero-padded grid of at least ``A + B - 1``
samples per axis, rounded up to a length that scipy.fft handles fast. The fixed operand's
transform (its OTF when it is a PSF) is computed once and kept. Output regions follow
``scipy.signal.fftconvolve``: ``"full"`` (``A + B - 1``), ``"same"`` (shape of ``g``,
centred) and ``"valid"`` (``|A - B| + 1``, where every output sample sees only real data).
A kernel's origin is its centre pixel ``shape // 2``.

Around the convolution live the helpers every solver shares: a kernel embedded in (and cut
back from) a periodic grid with its centre on index 0 (:func:`periodic_embed`,
:func:`periodic_crop`, :func:`kernel_otf`), the frequencies of a real-FFT grid
(:func:`frequencies`), a box cut around any pixel with zeros outside the array
(:func:`centre_embed`) and a band-limited sub-pixel translation (:func:`fourier_shift`).

Every linear operator in psfkit speaks one vocabulary, that of pylops' ``matvec`` /
``rmatvec``: ``apply(x)`` maps the unknown to the data and ``adjoint(y)`` applies the
transpose, with ``<apply(x), y> == <x, adjoint(y)>``; a solver that needs more (a
curvature, a sensitivity ``adjoint(1)``) builds it from these two.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from ._validate import all_finite, as_float_array, finite_result, whole_number

#: Threads used by every FFT in psfkit.
WORKERS = os.cpu_count() or 1

MODES = ("full", "same", "valid")


def fast_shape(shape) -> tuple[int, ...]:
    """Smallest shape ``>= shape`` per axis whose lengths real FFTs handle fast."""
    return tuple(scipy.fft.next_fast_len(int(n), real=True) for n in shape)


def fast_length_at_most(n: int) -> int:
    """The largest length ``<= n`` (at least 1) that real FFTs handle fast: ``n`` itself
    when it is one, else a few samples less (a length with a large prime factor, such as
    482 = 2 · 241, transforms 10–25 times slower than 480)."""
    length = max(int(n), 1)
    while scipy.fft.next_fast_len(length, real=True) != length:
        length -= 1
    return length


def _output_slices(full_shape, out_shape) -> tuple[slice, ...]:
    starts = [(f - o) // 2 for f, o in zip(full_shape, out_shape, strict=True)]
    return tuple(slice(s, s + o) for s, o in zip(starts, out_shape, strict=True))


def output_shape(fixed_shape, other_shape, mode: str) -> tuple[int, ...]:
    """Shape of ``convolve(fixed, other, mode)``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "full":
        return tuple(a + b - 1 for a, b in zip(fixed_shape, other_shape, strict=True))
    if mode == "same":
        return tuple(other_shape)
    return tuple(abs(a - b) + 1 for a, b in zip(fixed_shape, other_shape, strict=True))


class Convolver:
    """Linear convolution with a fixed array, and its adjoint, through cached FFTs.

    ``Convolver(f, g_shape).apply(g, mode)`` equals
    ``scipy.signal.fftconvolve(g, f, mode)`` in float32, and ``adjoint(r, mode)`` applies
    the transpose of that linear map in ``g`` (a correlation with ``f``), so that
    ``<apply(g), r> == <g, adjoint(r)>``. Either operand may be the larger: use the PSF as
    ``fixed`` to blur images, or the sharp image as ``fixed`` to fit a kernel.

    ``fixed`` must be a finite, non-empty real array and ``other_shape`` positive ints;
    :meth:`apply` and :meth:`adjoint` refuse an operand with NaN or infinite values.
    """

    def __init__(self, fixed: np.ndarray, other_shape, *, workers: int | None = None):
        fixed = as_float_array(fixed, "fixed", ndim=())
        other_shape = tuple(whole_number(n, "other_shape", minimum=1)
                            for n in np.atleast_1d(other_shape).tolist())
        if fixed.ndim != len(other_shape):
            raise ValueError(
                f"fixed and other_shape differ in dimensionality: {fixed.shape} and "
                f"{other_shape}"
            )
        self.fixed_shape = fixed.shape
        self.other_shape = other_shape
        self.full_shape = tuple(a + b - 1 for a, b in zip(fixed.shape, other_shape, strict=True))
        self.grid_shape = fast_shape(self.full_shape)
        self.workers = WORKERS if workers is None else workers
        self.fixed_ft = scipy.fft.rfftn(fixed, self.grid_shape, workers=self.workers)

    def forward_transform(self, other: np.ndarray) -> np.ndarray:
        """Spectrum of ``other`` on the padded grid (reuse it to avoid a second FFT)."""
        return scipy.fft.rfftn(
            np.asarray(other, dtype=np.float32), self.grid_shape, workers=self.workers
        )

    def apply(self, other: np.ndarray, mode: str = "full", *, spectrum=None) -> np.ndarray:
        """``fixed * other`` cropped to ``mode``; ``spectrum`` may hold ``other``'s FFT."""
        if spectrum is None:
            if tuple(np.shape(other)) != self.other_shape:
                raise ValueError(f"expected shape {self.other_shape}, got {np.shape(other)}")
            _refuse_non_finite(other, "other")
            spectrum = self.forward_transform(other)
        spectrum = spectrum * self.fixed_ft
        full = inverse_rfftn(spectrum, self.grid_shape, workers=self.workers)
        out_shape = output_shape(self.fixed_shape, self.other_shape, mode)
        return full[_output_slices(self.full_shape, out_shape)]

    def adjoint(self, residual: np.ndarray, mode: str = "full") -> np.ndarray:
        """Transpose of ``apply(·, mode)``: correlate ``residual`` with ``fixed``."""
        out_shape = output_shape(self.fixed_shape, self.other_shape, mode)
        if tuple(residual.shape) != out_shape:
            raise ValueError(f"expected residual of shape {out_shape}, got {residual.shape}")
        _refuse_non_finite(residual, "residual")
        embedded = np.zeros(self.grid_shape, dtype=np.float32)
        embedded[_output_slices(self.full_shape, out_shape)] = residual
        spectrum = scipy.fft.rfftn(embedded, workers=self.workers)
        multiply_by_conjugate(spectrum, self.fixed_ft)
        full = inverse_rfftn(spectrum, self.grid_shape, workers=self.workers)
        return full[tuple(slice(0, n) for n in self.other_shape)]


def _refuse_non_finite(array: np.ndarray, name: str) -> None:
    """A ``ValueError`` naming ``name`` when ``array`` holds NaN or an infinity (a blur of
    it would spread them over the whole output)."""
    if not all_finite(np.asarray(array)):
        raise ValueError(f"{name} contains NaN or infinite values")


def multiply_by_conjugate(spectrum: np.ndarray, factor: np.ndarray) -> None:
    """``spectrum *= conj(factor)`` in place, without making a conjugated copy of
    ``factor``: conjugate, multiply, conjugate back."""
    np.conjugate(spectrum, out=spectrum)
    spectrum *= factor
    np.conjugate(spectrum, out=spectrum)


def inverse_rfftn(spectrum: np.ndarray, grid_shape, *, workers: int | None = None
                  ) -> np.ndarray:
    """``scipy.fft.irfftn(spectrum, grid_shape)``, overwriting ``spectrum``.

    A multi-axis ``irfftn`` allocates a hidden copy of the whole spectrum (pocketfft's
    complex-to-real path ignores ``overwrite_x``), which ``tracemalloc`` does not see but
    which raises the resident peak by one grid; here the complex transforms over the
    leading axes run in place instead, then one real transform along the last axis.
    """
    workers = WORKERS if workers is None else workers
    if spectrum.ndim > 1:
        spectrum = scipy.fft.ifftn(spectrum, axes=tuple(range(spectrum.ndim - 1)),
                                   workers=workers, overwrite_x=True)
    return scipy.fft.irfft(spectrum, grid_shape[-1], axis=-1, workers=workers)


def inner(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` over two arrays of one shape, as a float, without BLAS.

    A threaded BLAS dot product wakes its threads on every call; when other processes hold
    the cores it was measured thousands of times slower than this single-threaded sum
    (18 ms instead of 4 µs for 32 768 doubles on 2 busy cores). ``einsum`` also reads
    strided views where they are, while ``np.vdot`` copies them first.
    """
    axes = "abcdefghijklmnopqrstuvwxyz"[:np.ndim(a)]
    return float(np.einsum(f"{axes},{axes}->", a, b))


def norm(a: np.ndarray) -> float:
    """Euclidean norm of all the values of ``a``, without BLAS (see :func:`inner`)."""
    return float(np.sqrt(inner(a, a)))


def convolve(image: np.ndarray, kernel: np.ndarray, mode: str = "same") -> np.ndarray:
    """Linearly convolve ``image`` with a centred ``kernel`` (zero outside the image).

    ``mode="valid"`` keeps only the samples that see no zero padding, which is how a
    camera crop of a blurred scene is simulated. Both operands must be finite, and so is the
    result (an overflow of float32 is refused by name).
    """
    image = as_float_array(image, "image", ndim=())
    kernel = as_float_array(kernel, "kernel", ndim=())
    if mode not in MODES:  # refused before any work
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if kernel.ndim != image.ndim:
        raise ValueError(f"kernel must have as many axes as image ({image.ndim}), got shape "
                         f"{kernel.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, by name
        result = Convolver(kernel, image.shape).apply(image, mode)
    return finite_result(result, "convolve", fix="rescale image or kernel so that the blur "
                         "stays within float32's range (±3.4e38)")


def frequencies(grid_shape) -> list[np.ndarray]:
    """Per axis, the frequencies (cycles per sample, float64) of a real-FFT spectrum of a
    grid of ``grid_shape``, each shaped to broadcast against that spectrum: full
    ``fftfreq`` axes first, the last axis halved (``rfftfreq``)."""
    ndim = len(grid_shape)
    axes = []
    for axis, n in enumerate(grid_shape):
        freq = scipy.fft.rfftfreq(n) if axis == ndim - 1 else scipy.fft.fftfreq(n)
        axes.append(freq.reshape([-1 if a == axis else 1 for a in range(ndim)]))
    return axes


def periodic_embed(kernel: np.ndarray, grid_shape) -> np.ndarray:
    """A centred kernel zero-padded into a periodic grid with its centre pixel on index 0.

    The last ``len(grid_shape)`` axes of ``kernel`` are the kernel's; any leading axes stack
    several kernels. :func:`periodic_crop` is the inverse.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    ndim = len(grid_shape)
    shape = kernel.shape[kernel.ndim - ndim:]
    if any(k > g for k, g in zip(shape, grid_shape, strict=True)):
        raise ValueError(f"kernel {shape} is larger than the grid {tuple(grid_shape)}")
    padded = np.zeros((*kernel.shape[:kernel.ndim - ndim], *grid_shape), dtype=np.float32)
    wrapped = np.ix_(*[(np.arange(k) - k // 2) % g for k, g in zip(shape, grid_shape,
                                                                   strict=True)])
    padded[(Ellipsis, *wrapped)] = kernel
    return padded


def periodic_crop(array: np.ndarray, shape) -> np.ndarray:
    """The centred kernel of odd ``shape`` around index 0 of a periodic ``array``."""
    rolled = np.roll(array, [k // 2 for k in shape], axis=tuple(range(array.ndim)))
    return np.ascontiguousarray(rolled[tuple(slice(0, k) for k in shape)])


def kernel_otf(kernel: np.ndarray, grid_shape, *, workers: int | None = None) -> np.ndarray:
    """Transfer function of a centred kernel on a periodic grid of ``grid_shape``: the
    spectrum of :func:`periodic_embed`, so multiplying by it blurs without shifting."""
    return scipy.fft.rfftn(periodic_embed(kernel, grid_shape),
                           workers=WORKERS if workers is None else workers)


def centre_embed(array: np.ndarray, shape, centre=None) -> np.ndarray:
    """The box of ``shape`` whose centre pixel ``shape // 2`` lies on index ``centre`` of
    ``array`` (default: ``array``'s own centre pixel), zero where it leaves ``array``.

    With the default centre this crops or zero-pads a centred kernel to another shape; with
    a ``centre`` it cuts a stamp around a source. A new array of ``array``'s dtype.
    """
    array = np.asarray(array)
    shape = tuple(int(n) for n in shape)
    centre = [n // 2 for n in array.shape] if centre is None else [int(c) for c in centre]
    out = np.zeros(shape, dtype=array.dtype)
    source, target = [], []
    for c, m, n in zip(centre, shape, array.shape, strict=True):
        start = c - m // 2
        low, high = max(start, 0), min(start + m, n)
        if high <= low:
            return out
        source.append(slice(low, high))
        target.append(slice(low - start, high - start))
    out[tuple(target)] = array[tuple(source)]
    return out


def fourier_shift(array: np.ndarray, shift, *, edges: str = "zero") -> np.ndarray:
    """Translate ``array`` by a sub-pixel ``shift`` with a band-limited (sinc) interpolator.

    The array is padded before the transform so that content leaving one side does not
    re-enter at the other: with zeros (``edges="zero"``, for kernels and PSFs, which are zero
    at their borders) or by mirroring (``edges="mirror"``, for scenes that run off the frame).
    ``moved(x) = array(x - shift)``; the result is float32 (computed in float32 for
    ``"zero"``, in the input's precision for ``"mirror"``).
    """
    array = np.asarray(array)
    shift = np.broadcast_to(np.asarray(shift, dtype=float), (array.ndim,))
    if edges == "zero":
        array = array.astype(np.float32, copy=False)
        pad = [int(np.ceil(abs(s))) + 2 for s in shift]
        grid = fast_shape([n + 2 * p for n, p in zip(array.shape, pad, strict=True)])
        padded = np.zeros(grid, dtype=np.float32)
        padded[tuple(slice(p, p + n) for p, n in zip(pad, array.shape, strict=True))] = array
    elif edges == "mirror":
        pad = [int(np.ceil(abs(s))) + 16 for s in shift]
        padded = np.pad(array, [(p, p) for p in pad], mode="symmetric")
    else:
        raise ValueError(f"edges must be 'zero' or 'mirror', got {edges!r}")
    spectrum = scipy.fft.rfftn(padded, workers=WORKERS)
    spectrum = ndi.fourier_shift(spectrum, shift, n=padded.shape[-1], axis=array.ndim - 1)
    moved = scipy.fft.irfftn(spectrum, padded.shape, workers=WORKERS)
    inside = tuple(slice(p, p + n) for p, n in zip(pad, array.shape, strict=True))
    return moved[inside].astype(np.float32, copy=False)


class BlurOperator:
    """``valid(psf * object)`` and its adjoint on a compact periodic grid, in float32: the
    operator of the iterative deconvolution methods.

    The object occupies grid indices ``[0, N + K - 1)`` per axis and the image the
    ``valid`` slice ``[K - 1, K - 1 + N)``. Because the grid is at least as long as the
    object, the circular convolution equals the linear one on the valid slice, and the
    adjoint (a circular correlation) of anything supported there lands inside the object.
    Arrays passed around are full grid arrays so no re-embedding happens per iteration:
    ``apply(x)[valid]`` is ``valid(psf * x[object])``, and ``adjoint(y)`` of a grid array
    that is zero outside ``valid`` is its correlation with the PSF, so that
    ``<apply(x)[valid], y[valid]> == <x[object], adjoint(y)[object]>``.
    """

    #: ``adjoint(1)`` is exactly 1 on the object pixels whose PSF footprint lies inside the
    #: image (what the Richardson–Lucy boundary weights rely on)
    unit_interior_sensitivity = True

    def __init__(self, psf: np.ndarray, image_shape, *, workers: int | None = None):
        psf = np.asarray(psf, dtype=np.float32)
        self.workers = WORKERS if workers is None else workers
        self.image_shape = tuple(int(n) for n in image_shape)
        self.psf_shape = psf.shape
        self.object_shape = tuple(n + k - 1 for n, k in zip(self.image_shape, psf.shape,
                                                             strict=True))
        self.grid_shape = fast_shape(self.object_shape)
        # the PSF's corner on index 0 (not its centre): the valid slice starts at K - 1
        self.otf = scipy.fft.rfftn(psf, self.grid_shape, workers=self.workers)
        self.valid = tuple(slice(k - 1, k - 1 + n) for n, k in zip(self.image_shape,
                                                                    psf.shape, strict=True))
        self.object = tuple(slice(0, n) for n in self.object_shape)
        # the object pixel seen straight through a centred kernel's origin (shape // 2)
        self.output = tuple(slice(k - 1 - k // 2, k - 1 - k // 2 + n)
                            for n, k in zip(self.image_shape, psf.shape, strict=True))

    def zeros(self) -> np.ndarray:
        """A float32 grid array of zeros."""
        return np.zeros(self.grid_shape, dtype=np.float32)

    def apply(self, grid_object: np.ndarray) -> np.ndarray:
        """Circular blur of a grid array; its ``valid`` slice is ``valid(psf * object)``."""
        spectrum = scipy.fft.rfftn(grid_object, workers=self.workers)
        spectrum *= self.otf
        return self._inverse(spectrum)

    def adjoint(self, grid_residual: np.ndarray) -> np.ndarray:
        """Correlation with the PSF of a grid array that is zero outside ``valid``."""
        spectrum = scipy.fft.rfftn(grid_residual, workers=self.workers)
        del grid_residual  # lets a caller that passed its last reference free the memory
        multiply_by_conjugate(spectrum, self.otf)
        return self._inverse(spectrum)

    def _inverse(self, spectrum: np.ndarray) -> np.ndarray:
        """``irfftn`` of a half spectrum, which it overwrites (no hidden spectrum copy)."""
        return inverse_rfftn(spectrum, self.grid_shape, workers=self.workers)

    def zero_outside_valid(self, grid: np.ndarray) -> None:
        """Set every grid sample outside the ``valid`` slice to zero, in place."""
        for axis, region in enumerate(self.valid):
            before = [slice(None)] * grid.ndim
            before[axis] = slice(0, region.start)
            grid[tuple(before)] = 0
            before[axis] = slice(region.stop, None)
            grid[tuple(before)] = 0

    def sensitivity(self) -> np.ndarray:
        """``H^T 1``: how much of each object pixel's light reaches the image."""
        ones = self.zeros()
        ones[self.valid] = 1
        return self.adjoint(ones)
