"""What every psfkit widget shares: layer pickers, layer output, and running a core function
in a thread worker with a progress bar, a cancel button and errors shown as notifications.

A widget subclasses :class:`PsfkitWidget`, lists its input widgets, and implements
``prepare`` (read and check the inputs, return a job taking the core's ``callback``) and
``finish`` (turn the job's result into layers). Input errors raised in ``prepare`` and any
exception in the job become napari notifications; no layer changes unless the job succeeds.
``widget.worker`` is the running worker, and ``None`` again once it has finished and the
widget has handled its result: wait on that (a fast worker can emit its own ``finished``
before a caller has connected to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Widget
from napari.qt.threading import create_worker
from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

if TYPE_CHECKING:
    import napari


def layer_picker(
    viewer: napari.viewer.Viewer, kind: str | tuple[str, ...], label: str, *,
    optional: bool = False, none_label: str = "(none)",
) -> ComboBox:
    """A drop-down of the viewer's layers of ``kind`` ("Image", "Shapes", "Points", ...,
    or a tuple of them); an ``optional`` one starts with ``none_label`` for no layer."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)

    def choices(_widget=None):
        layers = [(layer.name, layer) for layer in viewer.layers
                  if type(layer).__name__ in kinds]
        return ([(none_label, None)] if optional else []) + layers

    picker = ComboBox(label=label, choices=choices, nullable=optional)
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                  viewer.layers.events.reordered):
        event.connect(lambda _e: picker.reset_choices())
    return picker


def layer_array(layer, role: str, *, ndim=(2, 3), allow_rgb: bool = False) -> np.ndarray:
    """The data of an Image layer as a plain ndarray, or a ``ValueError`` that says why not."""
    if layer is None:
        raise ValueError(f"Choose a {role} layer.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    data = np.asarray(data)
    if data.size == 0:
        raise ValueError(f"The {role} layer '{layer.name}' is empty.")
    spatial = data.ndim - 1 if getattr(layer, "rgb", False) else data.ndim
    if getattr(layer, "rgb", False) and not allow_rgb:
        raise ValueError(f"The {role} layer '{layer.name}' is RGB; this tool needs one channel.")
    if spatial not in ndim:
        allowed = " or ".join(f"{n}D" for n in ndim)
        raise ValueError(f"The {role} layer '{layer.name}' is {spatial}D; it must be {allowed}.")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"The {role} layer '{layer.name}' does not hold real numbers.")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"The {role} layer '{layer.name}' contains NaN or infinite values.")
    return data


def layer_pair(sharp_layer, blurred_layer, *, allow_rgb: bool = False):
    """The data of a sharp and a blurred Image layer, which must be two layers of one shape
    (the region drawn on one is cut out of both)."""
    sharp = layer_array(sharp_layer, "sharp", allow_rgb=allow_rgb)
    blurred = layer_array(blurred_layer, "blurred", allow_rgb=allow_rgb)
    if sharp_layer is blurred_layer:
        raise ValueError("Choose two different layers: a sharp and a blurred one.")
    if sharp.shape != blurred.shape:
        raise ValueError(f"The sharp layer '{sharp_layer.name}' {sharp.shape} and the "
                         f"blurred layer '{blurred_layer.name}' {blurred.shape} differ in "
                         "shape: they must have the same shape.")
    return sharp, blurred


def to_image_pixels(layer, image_layer, points) -> np.ndarray:
    """Positions given in ``layer``'s data coordinates, in ``image_layer``'s pixel indices
    (through world coordinates, so scale and translate of both layers apply)."""
    return np.array([image_layer.world_to_data(layer.data_to_world(p)) for p in points])


def shape_box(shapes_layer, image_layer, spatial_shape, *, minimum: int) -> tuple[slice, ...]:
    """The bounding box of the first shape of ``shapes_layer`` in ``image_layer``'s pixel
    indices, clipped to ``spatial_shape``; ``ValueError`` when there is no shape or the box
    spans fewer than ``minimum`` pixels along some axis. A 2D shape drawn on one plane of a
    volume spans all its planes."""
    if len(shapes_layer.data) == 0:
        raise ValueError(f"The shapes layer '{shapes_layer.name}' has no shape.")
    corners = to_image_pixels(shapes_layer, image_layer, shapes_layer.data[0])
    ndim = len(spatial_shape)
    # an RGB layer's pixel indices end with the channel axis
    corners = corners[:, :ndim] if getattr(image_layer, "rgb", False) else corners[:, -ndim:]
    low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, None)
    high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, spatial_shape)
    if ndim == 3 and high[0] - low[0] <= 1:
        low[0], high[0] = 0, spatial_shape[0]
    if np.any(high - low < minimum):
        raise ValueError(f"The shape in '{shapes_layer.name}' is too small: the region must "
                         f"span at least {minimum} pixels along every axis.")
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def upsert_layer(viewer: napari.viewer.Viewer, data, name: str, kind: str = "image",
                 **kwargs) -> Any:
    """Add a layer called ``name``, or update it in place if it already exists."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        if type(layer).__name__.lower() == kind:
            layer.data = data
            for key in ("scale", "metadata", "features", "face_color", "translate"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return layer
        viewer.layers.remove(layer)
    return getattr(viewer, f"add_{kind}")(data, name=name, **kwargs)


class _JobFailed:
    """What a job returns instead of raising, so its error becomes a notification."""

    def __init__(self, error: Exception):
        self.error = error


class _ProgressRelay(QObject):
    """Carries progress from the worker thread to the GUI thread (a queued Qt signal)."""

    step = Signal(int, int)

    @classmethod
    def advancing(cls, bar) -> _ProgressRelay:
        """A relay whose ``(step, total)`` signals move ``bar`` in the GUI thread."""
        relay = cls()

        def advance(step: int, total: int) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(step - bar.n)

        relay.step.connect(advance)
        return relay


def _guarded(job: Callable[[Callable], Any]) -> Callable[[Callable], Any]:
    """``job`` returning its exception as a :class:`_JobFailed` instead of raising it, so it
    reaches the user as one clear notification, not a traceback from the worker machinery."""
    def guarded_job(callback):
        try:
            return job(callback)
        except Exception as error:
            return _JobFailed(error)
    return guarded_job


class PsfkitWidget(Container):
    """Base of the psfkit widgets: inputs, Run and Cancel buttons, a status line."""

    #: shown on the progress bar
    description = "psfkit"

    def __init__(self, viewer: napari.viewer.Viewer, inputs: list[Widget],
                 run_text: str = "Run"):
        super().__init__()
        self.viewer = viewer
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        self.extend([*inputs, buttons, self.status])
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.worker = None
        self.last_error: str | None = None

    # -- to implement -------------------------------------------------------------------
    def prepare(self) -> Callable[[Callable], Any]:
        """Read and check the inputs; return ``job(callback) -> result``."""
        raise NotImplementedError

    def finish(self, result) -> None:
        """Show ``result`` as layers and in the status line."""
        raise NotImplementedError

    # -- machinery ----------------------------------------------------------------------
    def fail(self, message: str) -> None:
        self.last_error = message
        self.status.value = f"Error: {message}"
        show_error(message)

    def run(self, *_args):
        """Start the job in a thread worker; returns the worker (``None`` on bad input)."""
        if self.worker is not None:
            return self.worker
        self.last_error = None
        try:
            job = self.prepare()
        except (ValueError, TypeError) as error:
            self.fail(str(error))
            return None

        bar = cancelable_progress(total=0, desc=self.description, cancel_callback=self.cancel)
        relay = _ProgressRelay.advancing(bar)

        def callback(step, total, current=None):
            relay.step.emit(int(step), int(total or 0))
            return not worker.abort_requested

        worker = create_worker(_guarded(job), callback, _start_thread=False)
        worker.returned.connect(self._returned)
        worker.finished.connect(lambda: self._finished(worker, bar, relay))
        self.worker = worker
        self._relay = relay
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "Running…"
        worker.start()
        return worker

    def _finished(self, worker, bar, relay) -> None:
        """Close the progress bar and make the widget ready for the next run."""
        if worker.abort_requested:
            self.status.value = "Cancelled: no layer was changed."
            show_info("psfkit: cancelled, no layer was changed.")
        bar.close()
        relay.deleteLater()
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def cancel(self, *_args) -> None:
        if self.worker is not None:
            self.worker.quit()

    def _returned(self, result) -> None:
        # napari's worker emits ``returned`` only when it was not asked to quit
        if isinstance(result, _JobFailed):
            error = result.error
            message = str(error) if isinstance(error, ValueError | TypeError) else (
                f"{type(error).__name__}: {error}")
            self.fail(message)
            return
        try:
            self.finish(result)
        except (ValueError, TypeError) as error:
            self.fail(str(error))
