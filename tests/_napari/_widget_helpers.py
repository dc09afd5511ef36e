"""Helpers for the widget tests (imported by the test modules in this folder)."""


def run_to_end(qtbot, widget, *, expect_error: bool = False, timeout: int = 60_000):
    """Run ``widget`` and wait until its worker is done and handled.

    The widget drops its worker once the worker's ``finished`` signal has reached the GUI
    thread; waiting on that flag, rather than connecting to ``finished`` after the start,
    cannot miss a job that ends within microseconds.
    """
    worker = widget.run()
    assert worker is not None, widget.last_error
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    if not expect_error:
        assert widget.last_error is None, widget.last_error
    return worker
