"""Error measures against a known truth, shared by the demo, the tests and the benchmarks.

``kernel_error`` compares two kernels centred on their centre pixels; ``image_error``
compares a restored image with the true scene after the best affine intensity match, since
a deconvolution is free to return its result in other intensity units; ``block_border_mask``
marks where a chunked computation could leave seams.
"""

from __future__ import annotations

import numpy as np

from .operators import centre_embed


def kernel_error(estimate: np.ndarray, truth: np.ndarray, *, normalize: bool = False) -> float:
    """``||estimate - truth|| / ||truth||`` with both kernels centred in a common shape.

    With ``normalize=True`` both are scaled to unit sum first, so only their shapes count.
    """
    shape = tuple(max(a, b) for a, b in zip(np.shape(estimate), np.shape(truth), strict=True))
    a = centre_embed(np.asarray(estimate, dtype=np.float64), shape)
    b = centre_embed(np.asarray(truth, dtype=np.float64), shape)
    if normalize:
        a = a / a.sum() if a.sum() != 0 else a
        b = b / b.sum()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def image_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative L2 error after the best affine intensity match ``a * estimate + b``."""
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    truth = np.asarray(truth, dtype=np.float64).ravel()
    design = np.stack([estimate, np.ones_like(estimate)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, truth, rcond=None)
    return float(np.linalg.norm(design @ coefficients - truth) / np.linalg.norm(truth))


def block_border_mask(shape, chunks, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` of an internal border between blocks of size ``chunks``."""
    mask = np.zeros(tuple(shape), dtype=bool)
    for axis, size in enumerate(chunks):
        for cut in range(size, shape[axis], size):
            index = [slice(None)] * len(shape)
            index[axis] = slice(cut - width, cut + width)
            mask[tuple(index)] = True
    return mask
