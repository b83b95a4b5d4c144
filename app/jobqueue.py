"""The conversion queue: jobs run one after another on the heavy runner (never all at once, unlike
the peer GUI), each keeping its progress, log, error and outputs after it ends.

Signals (JobQueue):
    job_added(object), job_changed(object): a Job was queued / changed state or progress.
    job_succeeded(object): a job finished with outputs (the Evaluate and Chat panes pick them up).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from quantpress.app.tasks import Runner, Task
from quantpress.app.widgets.common import format_seconds
from quantpress.core.jobs import Progress

MAX_LOG_LINES = 2000


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(eq=False)
class Job:
    """One queued conversion. ``fn(report=, cancel=)`` returns the list of output paths (or results)."""

    title: str
    fn: Callable[..., Any]
    out_dir: Path | None = None
    state: JobState = JobState.QUEUED
    fraction: float = 0.0
    message: str = ""
    eta_seconds: float | None = None
    log: list[str] = field(default_factory=list)
    error: BaseException | None = None
    error_details: str = ""
    outputs: list[Path] = field(default_factory=list)
    result: Any = None
    started_at: float | None = None
    ended_at: float | None = None
    task: Task | None = None
    cancel_requested: bool = False

    def add_log(self, line: str) -> None:
        self.log.append(f"[{time.strftime('%H:%M:%S')}] {line}")
        if len(self.log) > MAX_LOG_LINES:
            del self.log[: len(self.log) - MAX_LOG_LINES]

    @property
    def active(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the job started (0 before), up to its end once it has ended."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or now or time.monotonic()) - self.started_at

    def status_text(self) -> str:
        if self.active and self.cancel_requested:
            return "Cancelling… (stopping at the next tensor; its partial file is removed)"
        if self.state is JobState.RUNNING:
            elapsed = f"{format_seconds(self.elapsed())} elapsed"
            if self.fraction <= 0 and not self.message:
                return f"Starting… · {elapsed}"  # no "0% · " before the first report
            left = f"about {format_seconds(self.eta_seconds)} left" if self.eta_seconds is not None else "estimating time left"
            return " · ".join(filter(None, (f"{self.fraction * 100:.0f}%", self.message, elapsed, left)))
        if self.state is JobState.DONE and self.started_at and self.ended_at:
            return f"Done in {format_seconds(self.ended_at - self.started_at)}"
        if self.state is JobState.FAILED:
            return f"Failed: {str(self.error) or type(self.error).__name__}"
        return {"queued": "Waiting for the job before it", "cancelled": "Cancelled; nothing was left behind"}.get(
            self.state.value, self.state.value)


def log_line(p: Progress) -> str:
    """A progress message for the log, with its stage in front unless the message already starts with it
    (no "importance: importance: …")."""
    if not p.stage or p.message.lower().startswith(p.stage.lower()):
        return p.message
    return f"{p.stage}: {p.message}"


def outputs_of(result: Any) -> list[Path]:
    """Output paths from whatever the job returned: paths, or results with ``.output``/``.path``."""
    items = result if isinstance(result, (list, tuple)) else [result]
    paths = []
    for item in items:
        if isinstance(item, (str, Path)):
            paths.append(Path(item))
            continue
        paths.extend(Path(g) for g in getattr(item, "gguf_files", ()) or ())  # AWQ -> GGUF
        for attr in ("output", "path", "out"):
            value = getattr(item, attr, None)
            if isinstance(value, (str, Path)):
                paths.append(Path(value))
                break
    return paths


def queue_summary(jobs: list[Job], now: float | None = None) -> tuple[str, float]:
    """The total of ``jobs`` (the queue's batch: the jobs added since it was last idle): a line ("2 of
    3 jobs left · 1 min 05 s elapsed · about 2 min left for the running job, then 1 more") and the
    fraction of the batch done, the running job counted by its own fraction. Waiting jobs have no time of their own until
    they run (their work depends on the machine's measured speed), so they are counted, not timed."""
    batch = [j for j in jobs if j.state is not JobState.CANCELLED or j.started_at is not None]  # not the withdrawn
    active = [j for j in batch if j.active]
    if not active:
        return "", 0.0
    done = sum(1 for j in batch if not j.active)
    running = next((j for j in active if j.state is JobState.RUNNING), None)
    waiting = len(active) - (running is not None)
    fraction = (done + (running.fraction if running else 0.0)) / max(1, len(batch))
    started = [j.started_at for j in batch if j.started_at is not None]
    parts = [f"{len(active)} of {len(batch)} job{'s' if len(batch) != 1 else ''} left"]
    if started:
        parts.append(f"{format_seconds((now or time.monotonic()) - min(started))} elapsed")
    if running is not None and running.eta_seconds is not None:
        parts.append(f"about {format_seconds(running.eta_seconds)} left for the running job"
                     + (f", then {waiting} more" if waiting else ""))
    return " · ".join(parts), fraction


class JobQueue(QObject):
    job_added = Signal(object)
    job_changed = Signal(object)
    job_succeeded = Signal(object)

    def __init__(self, runner: Runner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.jobs: list[Job] = []
        self._current: Job | None = None
        self._batch: list[Job] = []  # the jobs added since the queue was last idle (its total)
        self._ticker = QTimer(self)  # the elapsed time moves on between progress reports
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._tick)

    def summary(self) -> tuple[str, float]:
        return queue_summary(self._batch)

    @Slot()
    def _tick(self) -> None:
        if self._current is None:
            self._ticker.stop()
        else:
            self.job_changed.emit(self._current)

    def add(self, job: Job) -> Job:
        job.add_log(f"Queued: {job.title}")
        if not self.active():
            self._batch = []
        self._batch.append(job)
        self.jobs.append(job)
        self.job_added.emit(job)
        self._start_next()
        return job

    def cancel(self, job: Job) -> None:
        job.cancel_requested = True
        if job.state is JobState.QUEUED:
            job.state = JobState.CANCELLED
            job.add_log("Cancelled before it started")
            self.job_changed.emit(job)
        elif job.state is JobState.RUNNING and job.task is not None:
            job.add_log("Cancel requested; stopping at the next tensor")
            job.task.cancel()
            self.job_changed.emit(job)

    def cancel_all(self) -> None:
        for job in self.jobs:
            if job.active:
                self.cancel(job)

    def active(self) -> list[Job]:
        return [j for j in self.jobs if j.active]

    def clear_finished(self) -> list[Job]:
        removed = [j for j in self.jobs if not j.active]
        self.jobs = [j for j in self.jobs if j.active]
        return removed

    def _start_next(self) -> None:
        if self._current is not None:
            return
        job = next((j for j in self.jobs if j.state is JobState.QUEUED), None)
        if job is None:
            return
        if self.runner.closed:  # the app is shutting down: nothing new starts
            self.cancel_all()
            return
        self._current = job
        job.state = JobState.RUNNING
        job.started_at = time.monotonic()
        job.add_log("Started")
        self._ticker.start()
        task = self.runner.submit(job.title, job.fn)
        job.task = task
        task.progress.connect(self._on_progress)
        task.succeeded.connect(self._on_succeeded)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        task.finished.connect(self._on_finished)
        self.job_changed.emit(job)

    def _job_of(self, task: Any) -> Job | None:
        return next((j for j in self.jobs if j.task is task), None)

    @Slot(object)
    def _on_progress(self, p: Progress) -> None:
        job = self._job_of(self.sender())
        if job is None:
            return
        if p.message and p.message != job.message:
            job.add_log(log_line(p))
        job.fraction = p.fraction
        job.message = p.message or p.stage
        job.eta_seconds = p.eta_seconds
        self.job_changed.emit(job)

    @Slot(object)
    def _on_succeeded(self, result: Any) -> None:
        job = self._job_of(self.sender())
        if job is None:
            return
        job.result = result
        job.outputs = outputs_of(result)
        job.state = JobState.DONE
        job.fraction = 1.0
        for path in job.outputs:
            job.add_log(f"Wrote {path}")
        for note in dict.fromkeys(n for item in (result if isinstance(result, (list, tuple)) else [result])
                                  for n in getattr(item, "notes", ()) if isinstance(n, str)):
            job.add_log(f"Note: {note}")  # e.g. experts the calibration text never reached
        self.job_succeeded.emit(job)

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        task = self.sender()
        job = self._job_of(task)
        if job is None:
            return
        job.state = JobState.FAILED
        job.error = exc
        job.error_details = task.error_details if isinstance(task, Task) else ""
        job.add_log(f"Failed: {exc}")
        if job.error_details:
            job.log.extend(job.error_details.rstrip().splitlines())

    @Slot()
    def _on_cancelled(self) -> None:
        job = self._job_of(self.sender())
        if job is not None:
            job.state = JobState.CANCELLED
            job.add_log("Cancelled; temporary files removed")

    @Slot()
    def _on_finished(self) -> None:
        job = self._job_of(self.sender())
        if job is None:
            return
        job.ended_at = time.monotonic()
        job.task = None  # the runner deletes the Task later; never touch it after this
        self.job_changed.emit(job)
        if self._current is job:
            self._current = None
        self._start_next()
