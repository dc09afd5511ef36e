"""Frames along leading axes: one computation repeated over the frames of a stack.

A stack ``(..., N1, ..., ND)`` holds frames (time points, channels) of ``D`` spatial axes
along its leading axes. :func:`map_frames` runs a per-frame function over them with one
progress count over all frames (the :mod:`psfkit._progress` callback convention) and one
cancel; :func:`deconvolve_frames` uses it to deconvolve a stack. There the first frame makes
the automatic choices and the others repeat them, so a time series does not flicker, and a
frame larger than :data:`CHUNKED_FRAME_BYTES` is deconvolved in overlapping blocks
(:mod:`psfkit.chunked`) instead of at once. The napari widget, the command line and the
blocks of :mod:`psfkit.chunked` all go through here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._progress import report
from ._validate import as_float_array, float_output, optional_callable, positive_int, whole_number
from .deconvolution import check_parameters, deconvolve
from .metadata import Code, plain, python_call, run_metadata
from .psf_map import PsfMap, check_map_fits

#: A frame whose float32 copy is larger than this (256 MiB, 64 M voxels) is deconvolved in
#: overlapping blocks. In memory the core peaks at about 25 times the frame's float32 size
#: (:data:`psfkit.chunked.BYTES_PER_BLOCK_VOXEL` per voxel of its padded grid), so a frame
#: above this limit would need more than 6 GiB at once.
CHUNKED_FRAME_BYTES = 256 << 20

#: Steps counted for a frame before the core reports its own total (an iteration count).
PLANNED_STEPS_PER_FRAME = 100


def frame_in_blocks(spatial_shape) -> bool:
    """Whether a frame of ``spatial_shape`` is deconvolved in overlapping blocks: when its
    float32 copy is larger than :data:`CHUNKED_FRAME_BYTES`."""
    return 4 * int(np.prod(spatial_shape)) > CHUNKED_FRAME_BYTES


@dataclass(frozen=True)
class FramesRun:
    """What :func:`map_frames` returns.

    Attributes
    ----------
    result : array
        The output stack (``out`` when one was given).
    reports : tuple
        What the per-frame function reported, one entry per frame that ran.
    complete : bool
        ``False`` when the callback stopped the run before the last frame.
    """

    result: Any
    reports: tuple
    complete: bool


class _StackProgress:
    """Progress over all frames, built from each frame's own ``(step, total)`` reports.

    The steps of finished frames add up; the current frame and those still to come are
    counted at the current frame's planned total, which the core may lower once it knows
    when it stops, so the count only goes up and ends at the total.
    """

    def __init__(self, callback, frame_count: int, steps_per_frame: int):
        self.callback = callback
        self.frame_count = frame_count
        self.done = 0
        self.per_frame = steps_per_frame

    def _planned(self, frames_left: int) -> int:
        return self.done + self.per_frame * frames_left

    def frame_callback(self, index: int) -> Callable:
        """The callback for frame ``index``: relays its steps as steps of the stack."""
        def relay(step, total=None, current=None):
            if total:
                self.per_frame = int(total)
            return report(self.callback, self.done + step,
                          self._planned(self.frame_count - index))
        return relay

    def frame_done(self, index: int) -> bool:
        """Count frame ``index`` as finished; ``False`` when the caller asked to stop."""
        self.done += self.per_frame
        return report(self.callback, self.done, self._planned(self.frame_count - index - 1))


def map_frames(function: Callable, stack, spatial_ndim: int, *, out=None, callback=None,
               steps_per_frame: int = 1) -> FramesRun:
    """Run ``function`` on every frame of ``stack`` and collect the results in ``out``.

    Parameters
    ----------
    function : callable
        ``function(frame, callback) -> (result, report)`` for one frame, a plain ndarray
        of the last ``spatial_ndim`` axes; ``result`` has the frame's shape, ``callback``
        follows the convention of :mod:`psfkit._progress`.
    stack : (..., N1, ..., ND) array-like
        Anything with ``shape`` and NumPy indexing (a dask array, a memory map...); one
        frame at a time is read.
    spatial_ndim : int
        ``D``, the number of trailing axes that make one frame.
    out : array-like, optional
        Where to write the results (anything with slice assignment and a float32 or
        float64 dtype). Default: a new float32 array.
    callback : callable, optional
        ``callback(step, total, None)`` with the steps of all frames; returning ``False``
        stops the current frame and the run. The frames it did not reach are left as they
        were in ``out`` (0 in a new array).
    steps_per_frame : int
        Steps counted for each frame until ``function`` reports its own total.

    Returns
    -------
    FramesRun
    """
    if not callable(function):
        raise TypeError(f"function must be callable as function(frame, callback), got "
                        f"{function!r}")
    optional_callable(callback)
    stack = stack_array(stack)
    shape = tuple(stack.shape)
    spatial_ndim = whole_number(spatial_ndim, "spatial_ndim", minimum=1, maximum=len(shape),
                                why=f", the number of axes of the stack {shape}")
    steps_per_frame = positive_int(steps_per_frame, "steps_per_frame")
    frames = list(np.ndindex(*shape[:len(shape) - spatial_ndim]))
    # zeros, not empty: the frames a stopped run did not reach must hold numbers
    out = np.zeros(shape, dtype=np.float32) if out is None else float_output(out, shape)
    progress = _StackProgress(callback, len(frames), steps_per_frame)
    reports = []
    for index, frame in enumerate(frames):
        result, frame_report = function(np.asarray(stack[frame]),
                                        progress.frame_callback(index))
        out[frame] = _frame_result(result, shape[len(shape) - spatial_ndim:])
        reports.append(frame_report)
        if not progress.frame_done(index):
            return FramesRun(out, tuple(reports), complete=index + 1 == len(frames))
    return FramesRun(out, tuple(reports), complete=True)


def stack_array(stack):
    """``stack`` itself when it has a ``shape`` and NumPy indexing (an ndarray, a memory
    map, a dask array...), else as an ndarray (a nested list), or a ``ValueError`` naming
    ``stack`` when it is not one array (a ragged list)."""
    if hasattr(stack, "shape") and hasattr(stack, "__getitem__"):
        return stack
    try:
        return np.asarray(stack)
    except ValueError as error:
        raise ValueError(f"stack must be one array with a shape, got a "
                         f"{type(stack).__name__} that is not ({error})") from None


def _frame_result(result, frame_shape) -> np.ndarray:
    """A frame function's ``result`` as an array of ``frame_shape``; ``ValueError`` naming
    ``function`` for another shape, which would be broadcast into the frame silently."""
    result = np.asarray(result)
    if result.shape != tuple(frame_shape):
        raise ValueError(f"function returned shape {result.shape} for a frame of shape "
                         f"{tuple(frame_shape)}; it must return an array of the frame's shape")
    return result


def _left_to_the_data(value) -> bool:
    """Whether a keyword argument of :func:`psfkit.deconvolve` asks the core to choose."""
    return value is None or (isinstance(value, str) and value == "auto")


def explicit_parameters(parameters: dict, info) -> dict:
    """The request ``parameters`` with every choice the core made filled in from ``info``.

    ``info`` is the :class:`~psfkit.deconvolve.DeconvolutionInfo` of a run with these
    ``parameters``; its ``parameters`` are the keyword arguments that repeat that run with
    no data-driven choice (method, iterations, regularization, the noise model...). They
    replace every argument the request left to the data ("auto", ``None`` or absent); a
    value the request gave explicitly is kept as given. Another image (a block, the next
    frame) deconvolved with the result is treated exactly like the first.
    """
    return _with_choices(parameters, info.parameters)


def _with_choices(parameters: dict, chosen: dict) -> dict:
    """:func:`explicit_parameters` from the choices ``chosen`` (an ``info.parameters``)."""
    given = {name: value for name, value in parameters.items()
             if not _left_to_the_data(value)}
    return {**parameters, **chosen, **given, "method": chosen["method"]}


def has_signal(frame) -> bool:
    """Whether ``frame`` varies: the automatic choices (noise level, regularization) made
    on a constant frame are meaningless (an all-zero frame gives a regularization of
    1e14), so no frame without signal makes them for others."""
    frame = np.asarray(frame)
    return bool(frame.max() > frame.min())


def checked_choices(parameters: dict, where: str) -> dict:
    """``parameters``, the explicit keyword arguments from :func:`explicit_parameters`,
    when :func:`psfkit.deconvolve` accepts them as given (finite, in range); else a
    ``ValueError`` saying that the choices made on ``where`` are unusable. Checked before
    choices made on one frame or sample are applied to others."""
    try:
        check_parameters(**parameters)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the automatic choices made on {where} are unusable ({error}); "
                         f"choose where they are made on a region with signal, or give "
                         f"the parameters explicitly") from None
    return parameters


class _FrameDeconvolver:
    """Deconvolves one frame after the other: the first with the request, the others with
    the choices the first one made, each at once or in blocks (:func:`frame_in_blocks`).

    When the stack has several frames and the first is constant, the choices are made on
    the first frame that has signal (:func:`has_signal`); they are checked
    (:func:`checked_choices`) before they are reused, which refuses those made on a stack
    without signal."""

    def __init__(self, psf, parameters: dict, in_blocks: bool, stack, deconvolver=None):
        self.psf = psf
        # a Deconvolver of this PSF runs the frames with its kept operators
        self.deconvolve = deconvolve if deconvolver is None else (
            lambda frame, _psf, **options: deconvolver.run(frame, **options))
        self.parameters = dict(parameters)
        self.in_blocks = in_blocks
        self.stack = stack
        self.frames = list(np.ndindex(*stack.shape[:len(stack.shape) - psf.ndim]))
        self.plan = None  # the block plan, made once and reused for every frame
        self.chosen = False

    def _frame_to_choose_on(self, frame: np.ndarray):
        """``(index, frame)`` of the frame whose data make the automatic choices: the
        first one, unless it is constant and a later one has signal."""
        if len(self.frames) > 1 and not has_signal(frame):
            for index in self.frames[1:]:
                candidate = np.asarray(self.stack[index])
                if has_signal(candidate):
                    return index, candidate
        return self.frames[0], frame

    def __call__(self, frame: np.ndarray, callback) -> tuple[np.ndarray, dict]:
        """The deconvolved frame and the metadata of its run."""
        # chunked builds its blocks on map_frames, so it is imported where it is used
        from .chunked import deconvolve_chunked, plan_chunked

        if not self.chosen:
            index, chooser = self._frame_to_choose_on(frame)
            if self.in_blocks:  # the plan checks the choices it makes
                self.plan = plan_chunked(chooser, self.psf, **self.parameters)
                self.chosen = True
            elif chooser is not frame:
                _, info = self.deconvolve(chooser, self.psf, **self.parameters,
                                          return_info=True)
                self._adopt(info, index)
        if self.in_blocks:
            result = deconvolve_chunked(frame, self.psf, plan=self.plan, callback=callback)
            return result, plain({**self.plan.parameters, "blocks": self.plan.block_count})
        result, info = self.deconvolve(frame, self.psf, **self.parameters,
                                       callback=callback, return_info=True)
        if not self.chosen:
            self._adopt(info, index)
        return result, run_metadata(info)

    def _adopt(self, info, index) -> None:
        """Take the choices of the run ``info`` on frame ``index`` for all frames, once
        :func:`checked_choices` has accepted them."""
        self.parameters = explicit_parameters(self.parameters, info)
        if len(self.frames) > 1:
            checked_choices(self.parameters, f"frame {index}")
        self.chosen = True


def deconvolve_frames(stack, psf, *, out=None, callback=None, in_blocks: bool | None = None,
                      deconvolver=None, **parameters) -> FramesRun:
    """Deconvolve every frame of ``stack`` alike, one frame in memory at a time.

    Parameters
    ----------
    stack : (..., N1, ..., ND) array-like
        Frames along the leading axes (none for a single image); lazy arrays are read one
        frame at a time.
    psf : (M1, ..., MD) ndarray or PsfMap
        The PSF, 2D or 3D; or a :class:`psfkit.PsfMap` of the frames' shape, for a blur
        that changes across the field (the same map for every frame).
    out : array-like, optional
        Where to write the float32 result; default a new array.
    callback : callable, optional
        ``callback(step, total, None)`` over the steps of all frames (iterations, or blocks
        of a frame deconvolved in blocks); return ``False`` to stop.
    in_blocks : bool, optional
        Deconvolve each frame in overlapping blocks (:mod:`psfkit.chunked`) or at once;
        default :func:`frame_in_blocks` of the frame's shape.
    deconvolver : psfkit.Deconvolver, optional
        A Deconvolver of ``psf`` (``Deconvolver(psf)``): the frames deconvolved at once
        use its prepared PSF and kept operators, so a batch of stacks prepares them once;
        the results are the same bit for bit.
    **parameters
        Keyword arguments of :func:`psfkit.deconvolve`. The choices they leave to the data
        are made on the first frame (the first with signal when it is constant), checked
        to be usable, and repeated on the others.

    Returns
    -------
    FramesRun
        ``reports`` holds the :func:`~psfkit.metadata.run_metadata` of each frame's run
        (for a frame in blocks, the block parameters and the block count).
    """
    optional_callable(callback)
    stack = stack_array(stack)
    if isinstance(psf, PsfMap):  # every frame has the map's image shape
        check_map_fits(psf, stack.shape[len(stack.shape) - psf.ndim:], "psf")
    else:
        psf = as_float_array(psf, "psf")
    if psf.ndim > len(stack.shape):
        raise ValueError(f"psf is {psf.ndim}D but the stack {tuple(stack.shape)} has only "
                         f"{len(stack.shape)} axes; pass a PSF of the frames' dimensionality")
    spatial = tuple(stack.shape[len(stack.shape) - psf.ndim:])
    if in_blocks is None:
        in_blocks = frame_in_blocks(spatial)
    elif not isinstance(in_blocks, (bool, np.bool_)):
        raise TypeError(f"in_blocks must be True, False or None, got {in_blocks!r}")
    # the iteration count sets the progress plan, so it is checked (by name) first
    budget = check_parameters(iterations=parameters.get("iterations"))[0].iterations
    frame_deconvolver = _FrameDeconvolver(psf, parameters, in_blocks, stack, deconvolver)
    return map_frames(frame_deconvolver, stack, psf.ndim, out=out, callback=callback,
                      steps_per_frame=budget or PLANNED_STEPS_PER_FRAME)


def repeating_call(request: dict, report: dict, frame_count: int, *,
                   image: str = "image", psf: str = "psf") -> str:
    """The Python source of a call that repeats, bit for bit, a :func:`deconvolve_frames`
    run of the keyword arguments ``request`` whose first frame reported ``report``.

    One frame: ``psfkit.deconvolve(image, psf, ...)``; a stack:
    ``psfkit.frames.deconvolve_frames(image, psf, ...).result``. ``image`` and ``psf`` are
    the source of the two data arguments (variables, or an expression that makes the PSF).
    A run in memory is written with every automatic choice it made (its
    ``info.parameters``, through :func:`explicit_parameters`). Two runs are written with
    their request instead, which makes the same choices again on the same data: a run in
    blocks, and ``fista_tv`` with an automatic weight, which adapts the weight every few
    iterations to the estimated noise level (neither its final weight nor the noise
    keywords repeat that).
    """
    in_memory = "parameters" in report
    parameters = dict(request)
    if in_memory and not _adapts_its_weight(report["parameters"]["method"], request):
        parameters = _with_choices(request, report["parameters"])
    arguments = (Code(image), Code(psf))
    if frame_count == 1 and in_memory:
        return python_call("psfkit.deconvolve", *arguments, **parameters)
    return python_call("psfkit.frames.deconvolve_frames", *arguments, **parameters) + ".result"


def _adapts_its_weight(method: str, request: dict) -> bool:
    """Whether a run of ``method`` adapts an automatic weight during its iterations."""
    return method == "fista_tv" and _left_to_the_data(request.get("regularization", "auto"))
