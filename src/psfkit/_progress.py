"""The ``callback`` hook that lets a caller follow and stop long computations.

Every long-running core function accepts ``callback=None``. It is called as
``callback(step, total, current)`` after each step, where ``step`` counts from 1, ``total``
is the planned number of steps (or ``None`` when unknown) and ``current`` is the current
estimate (or ``None``). Returning ``False`` stops the computation early; it then returns
what it has so far. The napari widgets use this for their progress bars and cancel buttons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Callback = Callable[[int, "int | None", Any], "bool | None"]


def report(callback: Callback | None, step: int, total: int | None, current=None) -> bool:
    """Call ``callback`` if given; return ``False`` when the caller asked to stop."""
    if callback is None:
        return True
    return callback(step, total, current) is not False
