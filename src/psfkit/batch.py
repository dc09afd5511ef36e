"""Many input files, one command: inputs from files, globs and folders, outputs named by a
pattern or put in a folder, finished outputs skipped, one bad file reported and skipped.

:func:`plan_jobs` turns the command line's inputs into :class:`Job` s (input, output), and
:func:`run_jobs` runs a per-file function over them: an output that is complete (the file
and its JSON sidecar, :func:`psfkit.io.sidecar_path`) is skipped unless ``overwrite``, so a
stopped batch restarts where it was; the temporary files an earlier run left when it was
killed are removed first; a file that fails is reported in one line and the batch goes on;
the result counts what was written, skipped and failed. Nothing here knows what the
per-file function computes, so every subcommand that maps files to files can use it.

Given a ``dask.distributed`` client, :func:`run_jobs` spreads whole files over the cluster's
workers instead: the per-file function is sent to every worker once (scattered), each file
is one task that reads its input and writes its output there (the workers must see the
same paths), and the results are collected as they complete; Ctrl-C cancels the tasks.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .io import remove_stale_temporaries, sidecar_path

__all__ = ["BatchResult", "Job", "JobFailure", "plan_jobs", "run_jobs"]

#: The file name endings taken from a folder given as input.
TIFF_SUFFIXES = (".tif", ".tiff")

#: The output name pattern when an output folder is given without one.
DEFAULT_PATTERN = "{stem}_deconvolved.tif"


@dataclass(frozen=True)
class Job:
    """One input file and the output it makes."""

    input: str
    output: str


class JobFailure(Exception):
    """One file failed; ``usage`` when the file or the arguments were at fault (exit code
    2), else the computation (exit code 1)."""

    def __init__(self, message: str, usage: bool = True):
        super().__init__(message)
        self.usage = usage

    def __reduce__(self):
        # a failure on a dask worker reaches the batch pickled, its kind kept
        return JobFailure, (str(self), self.usage)


@dataclass
class BatchResult:
    """What :func:`run_jobs` did: the outputs written and skipped, and the failures as
    ``(job, JobFailure)``."""

    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        """Count ``other``'s outputs and failures too (a batch run in parts)."""
        self.written += other.written
        self.skipped += other.skipped
        self.failed += other.failed

    def summary(self) -> str:
        """One line: how many outputs were written, skipped and failed."""
        text = f"{len(self.written)} written, {len(self.skipped)} skipped"
        if self.skipped:
            text += " (output exists; --overwrite replaces it)"
        return text + f", {len(self.failed)} failed"

    def exit_code(self) -> int:
        """0 when nothing failed, 1 when a computation failed, else 2 (bad files)."""
        if not self.failed:
            return 0
        return 2 if all(failure.usage for _, failure in self.failed) else 1


def is_glob(text: str) -> bool:
    """Whether an input argument is a glob pattern."""
    return any(character in text for character in "*?[")


def _files_of(argument: str) -> list[str]:
    """The files an input argument names: itself, a glob's matches (sorted), or a folder's
    TIFFs (sorted, hidden files left out); a name that matches nothing is kept, so its
    job reports it."""
    if os.path.isdir(argument):
        return sorted(os.path.join(argument, name) for name in os.listdir(argument)
                      if name.lower().endswith(TIFF_SUFFIXES) and not name.startswith(".")
                      and os.path.isfile(os.path.join(argument, name)))
    if is_glob(argument):
        return sorted(path for path in glob.glob(argument) if os.path.isfile(path))
    return [argument]


def output_name(input_path: str, pattern: str) -> str:
    """The output file name of ``input_path`` by ``pattern`` (``{stem}``: the name without
    its suffix, ``{name}``: the whole name)."""
    name = os.path.basename(input_path)
    stem = name[:-len(suffix)] if (suffix := _suffix(name)) else name
    try:
        return pattern.format(stem=stem, name=name)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"--output-pattern {pattern!r} must use only {{stem}} and {{name}}, "
                         f"e.g. '{{stem}}_deconvolved.tif' ({error})") from None


def _suffix(name: str) -> str:
    """The suffix of a file name, ``.ome.tif`` counted whole."""
    lowered = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if lowered.endswith(suffix):
            return name[-len(suffix):]
    return os.path.splitext(name)[1]


def plan_jobs(inputs, *, output_folder: str | None = None,
              pattern: str | None = None) -> tuple[list[Job], list[str]]:
    """The jobs of a batch, and one line per input argument that matched no file.

    Each input is a file, a glob or a folder (its TIFFs). Outputs are named by ``pattern``
    (default :data:`DEFAULT_PATTERN`) inside ``output_folder``, or beside each input when
    no folder is given. An input that is another input's output (a folder deconvolved into
    itself before) is left out, and so are repeated inputs.
    """
    pattern = pattern or DEFAULT_PATTERN
    files, unmatched = [], []
    for argument in inputs:
        found = _files_of(argument)
        if not found:
            unmatched.append(f"{argument} matches no file")
        files.extend(path for path in found if path not in files)
    jobs = [Job(path, os.path.join(output_folder or os.path.dirname(path) or ".",
                                   output_name(path, pattern))) for path in files]
    outputs = {os.path.abspath(job.output) for job in jobs}
    return [job for job in jobs if os.path.abspath(job.input) not in outputs], unmatched


def is_complete(output: str) -> bool:
    """Whether an output was finished: the file and its sidecar exist."""
    return os.path.isfile(output) and os.path.isfile(sidecar_path(output))


def run_jobs(jobs, work: Callable[[Job], object], *, overwrite: bool = False,
             report: Callable[[str], None] = print,
             done: Callable[[Job, object], None] | None = None, client=None,
             progress: Callable | None = None) -> BatchResult:
    """Run ``work(job)`` for every job whose output is not complete (or all with
    ``overwrite``) and return what was written, skipped and failed.

    A :class:`JobFailure` is reported through ``report`` in one line naming the input, and
    the next job runs; ``done(job, value)`` receives what ``work`` returned for each
    output written, and ``progress(finished, len(jobs))`` follows the count of jobs
    finished (the skipped ones first). A ``KeyboardInterrupt`` stops the batch (the
    interrupted output is not written: ``work`` writes atomically).

    With a ``distributed.Client`` as ``client``, the jobs run as tasks on its workers, in
    any order: ``work`` (picklable, and writing its output where this process can see it)
    is scattered to every worker once, and ``done``, ``report`` and ``progress`` run here
    as each task completes. A worker that dies running a file fails that file (a
    computation failure). Interrupted, the batch cancels its tasks; those already running
    finish their file whole.
    """
    result = BatchResult()
    pending = []
    for job in jobs:
        remove_stale_temporaries(job.output)
        remove_stale_temporaries(sidecar_path(job.output))
        if not overwrite and is_complete(job.output):
            result.skipped.append(job)
        else:
            pending.append(job)
    outcomes = (_run_here(pending, work) if client is None
                else _run_on_cluster(pending, work, client))
    with contextlib.closing(outcomes):  # an interrupt here cancels the tasks at once
        for finished, (job, value) in enumerate(outcomes, start=len(result.skipped) + 1):
            if progress is not None:
                progress(finished, len(jobs))
            if isinstance(value, JobFailure):
                result.failed.append((job, value))
                report(f"{os.path.basename(job.input)}: {value}")
                continue
            result.written.append(job)
            if done is not None:
                done(job, value)
    return result


def _run_job(work, job: Job):
    """One job, here or as the task of one file on a worker: ``work(job)``, or the
    :class:`JobFailure` it raised as its value."""
    try:
        return work(job)
    except JobFailure as failure:
        return failure


def _run_here(jobs, work) -> Iterator[tuple[Job, object]]:
    """``(job, value)`` for each job in turn, in this process."""
    for job in jobs:
        yield job, _run_job(work, job)


def _run_on_cluster(jobs, work, client) -> Iterator[tuple[Job, object]]:
    """``(job, value)`` for each job as its task on ``client``'s workers completes."""
    from distributed import KilledWorker, as_completed

    if not jobs:
        return
    shared = client.scatter(work, broadcast=True, hash=False)
    futures = {client.submit(_run_job, shared, job, pure=False): job for job in jobs}
    try:
        for future in as_completed(futures, loop=client.loop):
            job = futures.pop(future)
            try:
                value = future.result()
            except KilledWorker as error:
                value = JobFailure(f"failed: the worker running it died ({error}), "
                                   f"usually for exceeding its memory: give the workers "
                                   f"more memory", usage=False)
            yield job, value
    finally:  # interrupted (or a task raised): no file still waiting is started
        if futures:
            client.cancel(list(futures))
