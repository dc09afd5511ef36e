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


def dock(viewer, display_name: str):
    """The psfkit widget ``display_name`` docked as the Plugins menu docks it (which hands
    it napari's ``PublicOnlyProxy`` of the viewer and its layers)."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-psfkit", display_name)
    return widget


def activity_cancel_button(viewer):
    """The Cancel button of the running job's progress bar in napari's activity dock."""
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar

    bars = viewer.window._qt_window.findChildren(QtLabeledProgressBar)
    assert len(bars) == 1, f"expected one progress bar, found {len(bars)}"
    return bars[0].cancel_button
