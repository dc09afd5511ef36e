"""What every deconvolution method receives (:class:`Request`) and returns
(:class:`MethodResult`), and the slab size of the loops that keep their temporaries small."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._operators import BUILD_FRESH, OperatorCache
from ._tuning import DEFAULT_TUNING, AutoTuning

#: Default iteration budgets when neither the user nor a stopping rule decides.
DEFAULT_ITERATIONS = {"richardson_lucy": 100, "rl_tv": 200, "fista_tv": 200,
                      "rl_mix": 300}

#: The largest ``iterations`` a user may ask for. The budgets above are at most 300 and the
#: discrepancy stop fires earlier still; an iteration of a 512×512 image takes about 20 ms
#: on two cores, so 100 000 of them take over half an hour (days for a large volume) and
#: keep 100 000 entries of ``info.history``. A larger count is a typo or a computed value
#: gone wrong (1e12 would run for decades), and is refused before any work.
MAX_ITERATIONS = 100_000


@dataclass(frozen=True)
class Request:
    """The settings of one run, as :func:`psfkit.deconvolve` validated them.

    ``iterations`` None leaves the stop to the method's rule; ``regularization`` and
    ``smoothing`` may be ``"auto"``; ``acceleration_steps`` replays an earlier run's
    extrapolation steps and ``regularization_schedule`` an earlier ``fista_tv`` run's
    automatic weights; ``operators`` gives the PSF's blur operators (kept across images
    by a :class:`psfkit.Deconvolver`).
    """

    iterations: int | None = None
    regularization: float | str = "auto"
    smoothing: float | str = "auto"
    acceleration: str | None = "geometric"
    acceleration_steps: list | None = None
    regularization_schedule: list | None = None
    callback: Callable | None = None
    tuning: AutoTuning = DEFAULT_TUNING
    operators: OperatorCache = BUILD_FRESH


@dataclass(frozen=True)
class MethodResult:
    """What a method computed and how: the fields of a ``DeconvolutionInfo`` but the
    noise, which :func:`psfkit.deconvolve` adds."""

    image: np.ndarray
    method: str
    iterations: int = 0
    regularization: float = 0.0
    smoothing: float = 0.0
    steps: tuple = ()
    acceleration: str | None = None
    stopped_by: str = "iterations"
    history: tuple = ()
    #: ``fista_tv``'s automatic TV weight at each iteration (empty for a fixed weight and
    #: the other methods)
    regularization_schedule: tuple = ()
    #: how ``method="auto"`` chose this result (a ``_risk.RiskChoice``), else None
    choice: object = None


def slab_rows(shape) -> int:
    """How many leading-axis rows a slab-wise loop takes at once: at most 32, and at most
    about 2**18 samples, so a slab of a volume is a few planes, not half of it."""
    row_size = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return max(1, min(32, 2**18 // max(row_size, 1)))
