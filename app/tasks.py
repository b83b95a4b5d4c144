"""The one worker pattern of the app: a ``QThreadPool`` + ``QRunnable`` running plain core callables.

    runner = Runner("heavy", parent=window)
    task = runner.submit("convert", partial(convert, plan))   # called as fn(report=..., cancel=...)
    task.progress.connect(pane.on_progress)                    # bound slots, never lambdas over QObjects
    task.failed.connect(pane.on_failed)

A :class:`Task` lives in the GUI thread; every public signal is emitted there, so slots may touch
widgets. The worker thread talks to it only through private queued signals. Progress is coalesced
(only the newest update is kept while one is in flight), streamed text is buffered and delivered in
chunks, so a chatty job can never flood the GUI event queue.

Each :class:`Runner` owns one pool with ONE thread: ``heavy`` (inspect, convert, evaluate: those use all
cores inside native/torch code already) and ``chat`` (its thread talks to the chat model processes,
``chat_process.py``). ``shutdown()`` cancels everything and waits; it runs in ``closeEvent`` and in every test.
"""

from __future__ import annotations

import enum
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot
from quantpress.core.errors import Cancelled
from quantpress.core.jobs import CancelToken, Progress


class TaskState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Task(QObject):
    """One submitted job, seen from the GUI thread.

    Signals:
        started(): the worker began running the callable.
        progress(Progress): the newest progress update (coalesced).
        streamed(str): text chunks from a streaming job (e.g. chat tokens), none lost.
        succeeded(object): the callable's return value.
        failed(object): the exception (never ``Cancelled``); ``error_details`` holds its traceback.
        cancelled(): the job stopped on request (``Cancelled`` raised, or cancelled before it started).
        finished(): always last, exactly once, after one of succeeded/failed/cancelled.
    """

    started = Signal()
    progress = Signal(object)
    streamed = Signal(str)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    finished = Signal()

    # Private: worker thread -> GUI thread (queued because the Task lives in the GUI thread).
    _worker_started = Signal()
    _progress_ready = Signal()
    _stream_ready = Signal()
    _worker_done = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self.state = TaskState.QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.error_details = ""
        self.submitted_at = time.monotonic()
        self.last_progress: Progress | None = None
        self.background = False
        self._lock = threading.Lock()
        self._pending_progress: Progress | None = None
        self._stream_buffer: list[str] = []
        self._outcome: tuple[TaskState, Any] | None = None
        self._finalized = False
        self.runnable_done = threading.Event()  # set by the worker after its very last Qt call
        self._worker_started.connect(self._on_worker_started)
        self._progress_ready.connect(self._on_progress_ready)
        self._stream_ready.connect(self._on_stream_ready)
        self._worker_done.connect(self._finalize)

    # -- GUI thread API ---------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop; it answers with ``cancelled`` (or finishes if it was nearly done)."""
        self.token.cancel()

    @property
    def done(self) -> bool:
        return self._finalized

    # -- worker thread side (thread-safe) --------------------------------------------------------
    def _report(self, progress: Progress) -> None:
        with self._lock:
            first = self._pending_progress is None
            self._pending_progress = progress
        if first:
            self._progress_ready.emit()

    def _stream(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            first = not self._stream_buffer
            self._stream_buffer.append(text)
        if first:
            self._stream_ready.emit()

    # -- GUI thread slots -------------------------------------------------------------------------
    @Slot()
    def _on_worker_started(self) -> None:
        if self.state is TaskState.QUEUED:
            self.state = TaskState.RUNNING
            self.started.emit()

    @Slot()
    def _on_progress_ready(self) -> None:
        with self._lock:
            progress, self._pending_progress = self._pending_progress, None
        if progress is not None and not self._finalized:
            self.last_progress = progress
            self.progress.emit(progress)

    @Slot()
    def _on_stream_ready(self) -> None:
        with self._lock:
            text = "".join(self._stream_buffer)
            self._stream_buffer.clear()
        if text:
            self.streamed.emit(text)

    @Slot()
    def _finalize(self) -> None:
        """Emit the outcome then ``finished``; idempotent (shutdown may get here before the queue)."""
        if self._finalized or self._outcome is None:
            return
        self._finalized = True
        self._on_progress_ready()
        self._on_stream_ready()
        state, value = self._outcome
        self.state = state
        if state is TaskState.SUCCEEDED:
            self.result = value
            self.succeeded.emit(value)
        elif state is TaskState.FAILED:
            self.error = value
            self.failed.emit(value)
        else:
            self.cancelled.emit()
        self.finished.emit()


class _Runnable(QRunnable):
    """Runs ``fn(report=..., cancel=...[, stream=...])`` and records its outcome on the task."""

    def __init__(self, task: Task, fn: Callable[..., Any], streaming: bool) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Runner keeps it until runnable_done, never Qt
        self._task = task
        self._fn = fn
        self._streaming = streaming

    def run(self) -> None:
        task = self._task
        try:
            if task.token.cancelled:
                raise Cancelled()
            task._worker_started.emit()
            kwargs: dict[str, Any] = {"report": task._report, "cancel": task.token}
            if self._streaming:
                kwargs["stream"] = task._stream
            outcome: tuple[TaskState, Any] = (TaskState.SUCCEEDED, self._fn(**kwargs))
        except Cancelled:
            outcome = (TaskState.CANCELLED, None)
        except BaseException as exc:  # noqa: BLE001 - anything must reach the GUI, never kill Qt
            task.error_details = getattr(exc, "child_traceback", "") or "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__))
            outcome = (TaskState.FAILED, exc)
        task._outcome = outcome
        task._worker_done.emit()
        task.runnable_done.set()


class Runner(QObject):
    """A one-thread pool plus the tasks submitted to it.

    Signals:
        changed(): a task was submitted, started or finished (for the status bar).
    """

    changed = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"runner-{name}")
        self.name = name
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._pool.setExpiryTimeout(-1)  # keep the one thread: the chat model lives on it
        self._tasks: list[Task] = []
        self._runnables: dict[int, _Runnable] = {}
        self._closed = False
        self._reaper = QTimer(self)
        self._reaper.setInterval(2000)
        self._reaper.timeout.connect(self._reap)
        self._reaper.start()

    def submit(self, name: str, fn: Callable[..., Any], *, streaming: bool = False, background: bool = False) -> Task:
        """Queue ``fn``; it runs after every task submitted before it on this runner. ``background``
        marks short housekeeping (hardware detection) that the status bar and the quit prompt ignore."""
        if self._closed:
            raise RuntimeError(f"runner {self.name!r} is shut down")
        task = Task(name, self)
        task.background = background
        task.started.connect(self.changed)
        task.finished.connect(self.changed)
        runnable = _Runnable(task, fn, streaming)
        self._tasks.append(task)
        self._runnables[id(task)] = runnable
        self._pool.start(runnable)
        self.changed.emit()
        return task

    @property
    def closed(self) -> bool:
        return self._closed

    def active(self) -> list[Task]:
        """Tasks queued or running (not yet finished)."""
        return [t for t in self._tasks if not t.done]

    def user_tasks(self) -> list[Task]:
        """Active tasks the user started (what the status bar shows and closing asks about)."""
        return [t for t in self.active() if not t.background]

    def running(self) -> Task | None:
        return next((t for t in self._tasks if t.state is TaskState.RUNNING and not t.done), None)

    def cancel_all(self) -> None:
        for task in self.active():
            task.cancel()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the pool is idle, then deliver every outcome. For shutdown and tests."""
        ok = self._pool.waitForDone(timeout_ms)
        for task in list(self._tasks):
            if task.runnable_done.is_set():
                task._finalize()
        return bool(ok)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel all tasks and wait for the thread to go idle; finished is emitted for each."""
        self._closed = True
        self._reaper.stop()
        self.cancel_all()
        ok = self.wait(timeout_ms)
        self._reap()
        return ok

    @Slot()
    def _reap(self) -> None:
        # Drop tasks only once their runnable has fully returned (never from a finished slot).
        keep: list[Task] = []
        for task in self._tasks:
            if task.done and task.runnable_done.is_set():
                self._runnables.pop(id(task), None)
                task.deleteLater()
            else:
                keep.append(task)
        self._tasks = keep
