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

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
    Widget,
)
from napari import layers as napari_layers
from napari.qt.threading import create_worker
from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

if TYPE_CHECKING:
    import napari


def _layer_class(kind: str) -> type:
    """napari's layer class called ``kind`` ("Image", "Shapes", "points", ...)."""
    return getattr(napari_layers, kind.capitalize())


def is_layer_of(layer, kind: str | tuple[str, ...]) -> bool:
    """Whether ``layer`` is a napari layer of ``kind`` (a name or a tuple of names).

    ``isinstance``, not the type's name: a widget docked from the Plugins menu sees
    napari's ``PublicOnlyProxy`` layers, whose type is the proxy's, not the layer's.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    return isinstance(layer, tuple(_layer_class(k) for k in kinds))


class LayerPicker(ComboBox):
    """A drop-down of the viewer's layers of some kinds that keeps the user's choice when
    layers are renamed, added or reordered, and otherwise falls back to a default.

    The default is the first layer ``prefer`` accepts that no picker in ``avoid`` shows,
    else the first layer no picker in ``avoid`` shows, else the first layer; an optional
    picker defaults to its empty entry when it has no ``prefer``.
    """

    def __init__(self, choices, *, optional: bool, prefer=None, avoid=(), **kwargs):
        self._optional = optional
        self.prefer = prefer
        self.avoid = list(avoid)
        self._chosen = False  # the user (or a caller) picked the current value
        self._resetting = False
        super().__init__(choices=choices, **kwargs)
        self.changed.connect(self._remember_choice)
        self._apply_default()

    def _remember_choice(self, _value=None) -> None:
        if not self._resetting:
            self._chosen = True

    def _layers(self) -> list:
        return [value for value in self.choices if value is not None]

    def _default(self):
        layers = self._layers()
        taken = [picker.value for picker in self.avoid]
        free = [layer for layer in layers if not any(layer is t for t in taken)]
        if self.prefer is not None:
            for layer in free:
                if self.prefer(layer):
                    return layer
        if self._optional and (self.prefer is None or not free):
            return None
        return (free or layers or [None])[0]

    def _apply_default(self) -> None:
        default = self._default()
        if default is None and None not in self.choices:
            return  # no layer to show yet
        self._resetting = True
        try:
            self.value = default
        finally:
            self._resetting = False

    def reset_choices(self, *_args) -> None:
        """Re-read the viewer's layers, keeping a chosen layer that still exists (also
        when it was renamed) and re-applying the default otherwise."""
        previous = self.value
        self._resetting = True
        try:
            super().reset_choices()
            still_there = any(previous is layer for layer in self._layers())
            keep = self._chosen and (still_there or (previous is None and self._optional))
            if keep:
                self.value = previous
        finally:
            self._resetting = False
        if not keep:
            self._chosen = False
            self._apply_default()


def layer_picker(
    viewer: napari.viewer.Viewer, kind: str | tuple[str, ...], label: str, *,
    optional: bool = False, none_label: str = "(none)", prefer=None, avoid=(),
) -> LayerPicker:
    """A :class:`LayerPicker` of the viewer's layers of ``kind`` ("Image", "Shapes",
    "Points", ..., or a tuple of them); an ``optional`` one starts with ``none_label``,
    its one entry for no layer."""

    def choices(_widget=None):
        layers = [(layer.name, layer) for layer in viewer.layers if is_layer_of(layer, kind)]
        return ([(none_label, None)] if optional else []) + layers

    picker = LayerPicker(choices, optional=optional, prefer=prefer, avoid=avoid,
                         label=label)
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                  viewer.layers.events.reordered):
        # napari calls callbacks in reverse order by default; in order, a picker that avoids
        # another's layer sees that picker's new value
        event.connect(picker.reset_choices, position="last")
    return picker


def _named_like(*words: str):
    """A test of whether a layer's name contains one of ``words`` (case-insensitive)."""
    return lambda layer: any(word in layer.name.lower() for word in words)


def sharp_and_blurred_pickers(viewer: napari.viewer.Viewer) -> tuple[LayerPicker, LayerPicker]:
    """The sharp and blurred Image pickers of Estimate and Fit, defaulting to two different
    layers (one named "sharp"/"blurred" when there is one), so the first click can work."""
    sharp = layer_picker(viewer, "Image", "sharp", prefer=_named_like("sharp"))
    blurred = layer_picker(viewer, "Image", "blurred", prefer=_named_like("blur"),
                           avoid=[sharp])
    sharp.tooltip = "The sharp (in-focus or reference) image."
    blurred.tooltip = "The blurred image of the same scene, the same shape as the sharp one."
    return sharp, blurred


#: The colormap of every residual layer: diverging, so its contrast limits centre it at 0.
RESIDUAL_COLORMAP = "PiYG"


def residual_style(residual: np.ndarray) -> dict:
    """How a new residual layer is shown: hidden, diverging, with limits symmetric about
    zero (so a grey pixel is a perfect fit)."""
    limit = float(np.abs(residual).max()) or 1.0
    return {"colormap": RESIDUAL_COLORMAP, "contrast_limits": (-limit, limit),
            "visible": False}


#: Decimals a number field keeps: a pixel size of 0.065 µm must not become 0.07.
FIELD_DECIMALS = 4


def number_field(value: float, **kwargs) -> FloatSpinBox:
    """A float field that keeps :data:`FIELD_DECIMALS` decimals (Qt's default is 2)."""
    field = FloatSpinBox(**kwargs)
    field.native.setDecimals(FIELD_DECIMALS)
    field.value = value  # after setDecimals: set before, it would be rounded to 2
    return field


#: What a length is given in when the layer's units are napari's default (pixels) although
#: its scale is not 1: the user's scale has a unit napari was not told.
SCALE_UNITS = "units of scale"


def layer_units(layer, ndim: int) -> tuple[str, ...]:
    """The unit of each of ``layer``'s last ``ndim`` axes as a short symbol ("µm", "nm"),
    :data:`SCALE_UNITS` for an axis napari holds in pixels (its default)."""
    units = getattr(layer, "units", None) or ("pixel",) * layer.ndim
    return tuple(SCALE_UNITS if str(unit) == "pixel" else f"{unit:~P}"
                 for unit in tuple(units)[-ndim:])


def units_of(layer, ndim: int) -> tuple[str, ...]:
    """The napari units of ``layer``'s last ``ndim`` axes ("micrometer", "pixel", ...), for
    an output placed on them: outputs in other units than their inputs make napari stop
    using units for the whole viewer."""
    units = getattr(layer, "units", None) or ("pixel",) * layer.ndim
    return tuple(str(unit) for unit in tuple(units)[-ndim:])


def format_lengths(lengths, units) -> str:
    """Lengths with their units: "0.47 × 0.47 µm" when all axes share one, else each
    with its own ("1.2 µm × 300 nm")."""
    lengths = np.atleast_1d(np.asarray(lengths, dtype=float))
    units = tuple(units)[-lengths.size:]
    if len(set(units)) == 1:
        return " × ".join(f"{value:.3g}" for value in lengths) + f" {units[0]}"
    return " × ".join(f"{value:.3g} {unit}" for value, unit in zip(lengths, units,
                                                                     strict=True))


def format_widths(widths, spacing, units=None) -> str:
    """Widths in pixels, one per axis (or one for all), as "2.35 × 2.35 px", followed by
    the same in ``units`` (one per axis, see :func:`layer_units`) when the pixels are not
    1 unit wide."""
    pixels = np.atleast_1d(np.asarray(widths, dtype=float))
    # the last axes' pixel sizes; one width for all axes is an in-plane width
    spacing = np.asarray(spacing, dtype=float)[-pixels.size:]
    units = (SCALE_UNITS,) * pixels.size if units is None else tuple(units)[-pixels.size:]
    text = " × ".join(f"{w:.2f}" for w in pixels) + " px"
    if np.allclose(spacing, 1.0):
        return text
    return text + f" ({format_lengths(pixels * spacing, units)})"


def wrapping_label(value: str = "") -> Label:
    """A label whose long lines wrap instead of widening the dock."""
    label = Label(value=value)
    label.native.setWordWrap(True)
    return label


def refuse_featureless(data: np.ndarray, role: str, name: str, *,
                       allow_constant: bool = False) -> None:
    """``ValueError`` when ``data`` is all zero or, unless ``allow_constant``, constant:
    there is nothing to estimate or deconvolve in it, and a run would only return noise
    amplified from rounding errors."""
    if not np.any(data):
        raise ValueError(f"The {role} layer '{name}' is all zero: choose a layer with an "
                         "image in it.")
    if not allow_constant and np.ptp(data) == 0:
        raise ValueError(f"The {role} layer '{name}' is constant ({data.flat[0]:g} "
                         "everywhere): choose a layer with an image in it.")


def refuse_masked(data, role: str, name: str) -> None:
    """``ValueError`` when a layer holds a masked array: psfkit would ignore its mask."""
    if np.ma.isMaskedArray(data):
        raise ValueError(f"The {role} layer '{name}' holds a masked array, whose mask psfkit "
                         "would ignore: fill the masked pixels (e.g. with the background) "
                         "in a new layer.")


def layer_array(layer, role: str, *, ndim=(2, 3), allow_rgb: bool = False,
                allow_constant: bool = False) -> np.ndarray:
    """The data of an Image layer as a plain ndarray, or a ``ValueError`` that says why not
    (no layer, empty, RGB, wrong dimensionality, not real, not finite, all zero, or constant
    unless ``allow_constant``)."""
    if layer is None:
        raise ValueError(f"Choose a {role} layer.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    refuse_masked(data, role, layer.name)
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
    refuse_featureless(data, role, layer.name, allow_constant=allow_constant)
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


#: The metadata key that marks a layer as a psfkit output; its value is the output's role
#: ("kernel", "psf", "residual", ...), which the PSF picker of Deconvolve looks for.
OUTPUT_KEY = "psfkit_output"

#: The metadata key under which a map output (its kernel mosaic and parameter maps) carries
#: its :class:`psfkit.PsfMap`: Deconvolve deconvolves with the map of a PSF layer that has
#: one.
PSF_MAP_KEY = "psfkit_psf_map"

#: The metadata key of the call that makes a map output's :class:`psfkit.PsfMap` again
#: (a :func:`psfkit.metadata.reproduction` entry), which Deconvolve's recorded call uses as
#: its PSF.
PSF_MAP_CALL_KEY = "psf_map_reproduce"

#: What an update in place sets on an existing output besides its data; every other
#: keyword (colormap, contrast limits, opacity, ...) styles a new layer only, so a re-run
#: keeps the user's styling.
_UPDATED_IN_PLACE = ("scale", "translate", "metadata", "features", "face_color",
                     "border_color")


def upsert_layer(viewer: napari.viewer.Viewer, data, name: str, kind: str = "image", *,
                 role: str, scale=None, translate=None, units=None, metadata=None,
                 colorbar: bool = False, **kwargs) -> Any:
    """The psfkit output ``name`` holding ``data``: the existing layer of that name updated
    in place (data, scale, translate, units, metadata; also when its dimensionality changes),
    or a new layer.

    Only a layer this plugin wrote (its metadata holds :data:`OUTPUT_KEY`) of the right
    kind is updated; a user's layer of the same name is left alone, and the output is the
    one napari named ``"<name> [1]"`` (or ``[2]``, ...) next to it, so re-runs do not pile
    up copies. ``scale``, ``translate`` and ``units`` default to 1, 0 and pixels per axis.
    ``colorbar`` shows the colorbar of a new image layer (a user who hides it keeps it
    hidden on a re-run).
    """
    ndim = np.ndim(data) if kind == "image" else np.shape(data)[-1]
    values = {"scale": tuple(scale) if scale is not None else (1.0,) * ndim,
              "translate": tuple(translate) if translate is not None else (0.0,) * ndim,
              "units": tuple(units) if units is not None else ("pixel",) * ndim,
              "metadata": {**(metadata or {}), OUTPUT_KEY: role}}
    values.update({key: kwargs.pop(key) for key in _UPDATED_IN_PLACE if key in kwargs})
    layer = _existing_output(viewer, name, kind)
    if layer is None:
        layer = getattr(viewer, f"add_{kind}")(data, name=name, **values, **kwargs)
        if colorbar:
            layer.colorbar.visible = True
        return layer
    layer.data = data
    for key, value in values.items():
        setattr(layer, key, value)
    return layer


def _existing_output(viewer: napari.viewer.Viewer, name: str, kind: str):
    """The psfkit output of ``kind`` called ``name``, or the one napari renamed
    ``"<name> [k]"`` because a user's layer holds ``name``; ``None`` when there is none."""
    numbered = re.compile(re.escape(name) + r" \[\d+\]")
    candidates = sorted((layer for layer in viewer.layers
                         if layer.name == name or numbered.fullmatch(layer.name)),
                        key=lambda layer: layer.name != name)
    for layer in candidates:
        if is_layer_of(layer, kind) and OUTPUT_KEY in layer.metadata:
            return layer
    return None


class MapGrid(Container):
    """Rows × columns of the tile grid of a blur map; 1 × 1 is one kernel for the whole
    image (a widget's ordinary output)."""

    def __init__(self, label: str = "map grid (rows × cols)"):
        self.rows = SpinBox(value=1, min=1, max=32, label="rows")
        self.cols = SpinBox(value=1, min=1, max=32, label="cols")
        super().__init__(widgets=[self.rows, self.cols], layout="horizontal", labels=False,
                         label=label)
        self.tooltip = ("Tiles of a blur map (rows × columns): a kernel per tile where the "
                        "blur changes across the image; 1 × 1 is one kernel for all of it.")
        self.rows.tooltip = "Tiles down the image (1 with 1 column: one kernel)."
        self.cols.tooltip = "Tiles across the image (1 with 1 row: one kernel)."

    @property
    def grid(self) -> tuple[int, int]:
        """The grid as ``(rows, cols)``."""
        return int(self.rows.value), int(self.cols.value)

    @property
    def is_map(self) -> bool:
        """Whether the grid has more than one tile."""
        return self.grid != (1, 1)


class _ActivityProgress(cancelable_progress):
    """A progress bar whose Cancel button in napari's activity dock stops the job at once:
    napari's own only flags the bar, which a thread worker never reads."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


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


#: Where the documentation pages live; a widget's ``docs_page`` is a file in it.
DOCS_URL = "https://github.com/napari-psfkit/napari-psfkit/blob/main/docs/"


def help_label(summary: str, docs_page: str) -> Label:
    """A one-line description of a widget followed by a link to its documentation page."""
    label = wrapping_label(f'{summary} <a href="{DOCS_URL}{docs_page}">Documentation</a>')
    label.native.setOpenExternalLinks(True)
    return label


class PsfkitWidget(Container):
    """Base of the psfkit widgets: a description with a docs link, inputs with tooltips,
    Run and Cancel buttons, a status line."""

    #: shown on the progress bar
    description = "psfkit"
    #: one line at the top of the widget saying what it does, and the page that explains it
    summary = ""
    docs_page = "napari.md"
    #: the tooltip of each input, by the attribute name of its widget, in the user's terms
    tooltips: ClassVar[dict[str, str]] = {}

    def __init__(self, viewer: napari.viewer.Viewer, inputs: list[Widget],
                 run_text: str = "Run"):
        super().__init__()
        self.viewer = viewer
        self.help = help_label(self.summary, self.docs_page)
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.run_button.tooltip = "Start; the progress shows in napari's activity dock."
        self.cancel_button.tooltip = "Stop the running job; no layer is changed."
        self.status = wrapping_label()
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        self.extend([self.help, *inputs, buttons, self.status])
        for name, text in self.tooltips.items():
            getattr(self, name).tooltip = text
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

        bar = _ActivityProgress(total=0, desc=self.description, cancel_callback=self.cancel)
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
