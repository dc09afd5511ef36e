"""The ``callback`` hook that lets a caller follow and stop long computations.

Every long-running core function accepts ``callback=None``. It is called as
``callback(step, total, current)`` after each step, where ``step`` counts from 1, ``total``
is the planned number of steps (or ``None`` when unknown) and ``current`` is the current
estimate (or ``None``). Returning ``False`` stops the computation early; it then returns
what it has so far. The napari widgets use this for their progress bars and cancel buttons.
:class:`PartsProgress` turns the reports of parts run one after the other (the tiles of a
map) into one count over the whole run.
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


#: Steps each part counts in :class:`PartsProgress`: its own progress in percent.
STEPS_PER_PART = 100


class PartsProgress:
    """Progress over ``count`` parts of equal weight run one after the other (the tiles of
    a map), each reporting its own steps by the convention above.

    The whole run counts :data:`STEPS_PER_PART` steps per part, and a part's own fraction
    ``step / total`` is scaled into its share, so the count only goes up however each part
    plans (or re-plans) its steps; a part that reports no total moves the count at its end
    only. Once the caller has asked to stop, :attr:`stopped` is set and every later report
    answers ``False``, so the running part stops and no further part should start.
    """

    def __init__(self, callback: Callback | None, count: int):
        self.callback = callback
        self.total = max(int(count), 1) * STEPS_PER_PART
        self.step = 0
        self.stopped = False

    def _report(self, step: int, current=None) -> bool:
        self.step = max(self.step, step)
        if not self.stopped and not report(self.callback, self.step, self.total, current):
            self.stopped = True
        return not self.stopped

    def part(self, index: int) -> Callback:
        """The callback of part ``index``: relays its steps as steps of the whole run."""
        def relay(step, total=None, current=None):
            # rounded up, so a part's first step moves the count; its last share is its end
            within = min(-(-STEPS_PER_PART * int(step) // int(total)), STEPS_PER_PART - 1
                         ) if total else 0
            return self._report(index * STEPS_PER_PART + within, current)
        return relay

    def part_done(self, index: int) -> bool:
        """Count part ``index`` as finished; ``False`` when the caller asked to stop."""
        return self._report((index + 1) * STEPS_PER_PART)
