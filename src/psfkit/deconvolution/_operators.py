"""The PSF's operators per image shape: built when a method first needs them and, for a
:class:`psfkit.Deconvolver`, kept for the next image of that shape.

Every method gets its blur operator, its convolver and its transfer function from the
:class:`OperatorCache` in its :class:`~psfkit.deconvolution._common.Request`. A single
:func:`psfkit.deconvolve` call keeps nothing (:data:`BUILD_FRESH`), so its memory peak is
what it always was; a Deconvolver's cache keeps the operators of its one PSF for the last
:data:`KEPT_SHAPES` image shapes, so a batch pays each transform once. A kept operator is
the very object a fresh build would give (the same FFT of the same PSF on the same grid),
so results are bit for bit those of a fresh call.

The operators are read-only once built, so threads may share them; the cache's own
bookkeeping is guarded by a lock, as a dask worker's threads share one Deconvolver.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from psfkit.operators import BlurOperator, Convolver, kernel_otf

#: How many image shapes a Deconvolver keeps operators for; a batch of mixed shapes keeps
#: its most recent ones (each costs about one float32 copy of the image per operator).
KEPT_SHAPES = 4


class OperatorCache:
    """The operators of the PSF ``psf`` (an array, or a map prepared as a
    :class:`~psfkit.deconvolution._varying.VaryingPsf`) per image shape, kept for up to
    ``kept_shapes`` shapes (0: every request builds a new one). Asked for another PSF
    than its own, it builds a new operator and keeps nothing."""

    def __init__(self, psf: np.ndarray | None = None, kept_shapes: int = KEPT_SHAPES):
        self.psf = psf
        self.kept_shapes = kept_shapes if psf is not None else 0
        self._by_shape: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, kind: str, psf, shape, build):
        """The ``kind`` operator of ``psf`` for ``shape``: kept, or built by ``build()``
        (by one thread at a time: the others wait for it rather than build their own)."""
        if self.kept_shapes == 0 or psf is not self.psf:
            return build()
        shape = tuple(int(n) for n in shape)
        with self._lock:
            operators = self._by_shape.setdefault(shape, {})
            self._by_shape.move_to_end(shape)
            while len(self._by_shape) > self.kept_shapes:
                self._by_shape.popitem(last=False)
            if kind not in operators:
                operators[kind] = build()
            return operators[kind]

    def __getstate__(self) -> dict:
        """What a copy sent to another process holds: no lock (a new one is made there)."""
        return {name: value for name, value in vars(self).items() if name != "_lock"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._lock = threading.Lock()

    def blur_operator(self, psf, image_shape):
        """``BlurOperator(psf, image_shape)``, or for the map of a blur that changes across
        the field (a :class:`~psfkit.deconvolution._varying.VaryingPsf`) its
        ``VaryingBlurOperator``, which holds the per-tile convolvers."""
        from ._varying import VaryingBlurOperator, VaryingPsf

        build = VaryingBlurOperator if isinstance(psf, VaryingPsf) else BlurOperator
        return self._get("blur", psf, image_shape, lambda: build(psf, image_shape))

    def convolver(self, psf, image_shape) -> Convolver:
        """``Convolver(psf, image_shape)``, or for a PSF map its ``VaryingConvolver``
        (the modes ``"valid"`` and ``"same"``)."""
        from ._varying import VaryingConvolver, VaryingPsf

        build = VaryingConvolver if isinstance(psf, VaryingPsf) else Convolver
        return self._get("convolver", psf, image_shape, lambda: build(psf, image_shape))

    def otf(self, psf: np.ndarray, grid_shape) -> np.ndarray:
        """``kernel_otf(psf, grid_shape)`` (the direct methods' transfer function)."""
        return self._get("otf", psf, grid_shape, lambda: kernel_otf(psf, grid_shape))

    def kept(self) -> dict:
        """The kept operators' kinds per image shape, e.g. ``{(512, 512): ["blur"]}``."""
        with self._lock:
            return {shape: sorted(operators) for shape, operators in self._by_shape.items()}


#: The cache of a single call: builds every operator afresh and keeps none.
BUILD_FRESH = OperatorCache()
