"""The one worker pattern: signal order, cancel, failure, streaming, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QObject, Slot
from quantpress.app.tasks import Runner, Task, TaskState
from quantpress.core.errors import Cancelled, InvalidInput
from quantpress.core.jobs import Progress


class Recorder(QObject):
    """Bound slots (never lambdas over QObjects) recording every signal of a task, in order."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.events: list[tuple[str, object]] = []
        self.threads: set[int] = set()
        task.started.connect(self.on_started)
        task.progress.connect(self.on_progress)
        task.streamed.connect(self.on_streamed)
        task.succeeded.connect(self.on_succeeded)
        task.failed.connect(self.on_failed)
        task.cancelled.connect(self.on_cancelled)
        task.finished.connect(self.on_finished)

    def _add(self, name: str, value: object = None) -> None:
        self.threads.add(threading.get_ident())
        self.events.append((name, value))

    @Slot()
    def on_started(self) -> None:
        self._add("started")

    @Slot(object)
    def on_progress(self, p: Progress) -> None:
        self._add("progress", p)

    @Slot(str)
    def on_streamed(self, text: str) -> None:
        self._add("streamed", text)

    @Slot(object)
    def on_succeeded(self, value: object) -> None:
        self._add("succeeded", value)

    @Slot(object)
    def on_failed(self, exc: object) -> None:
        self._add("failed", exc)

    @Slot()
    def on_cancelled(self) -> None:
        self._add("cancelled")

    @Slot()
    def on_finished(self) -> None:
        self._add("finished")

    def names(self) -> list[str]:
        return [n for n, _ in self.events]


@pytest.fixture
def runner(qtbot) -> Iterator[Runner]:  # type: ignore[no-untyped-def]
    r = Runner("test")
    yield r
    r.shutdown()


def test_success_signals_in_order_on_gui_thread(qtbot, runner: Runner) -> None:  # type: ignore[no-untyped-def]
    worker_threads: list[int] = []

    def job(*, report, cancel):  # type: ignore[no-untyped-def]
        worker_threads.append(threading.get_ident())
        for i in range(5):
            report(Progress("work", (i + 1) / 5, f"step {i}", i + 1, 5))
            time.sleep(0.02)
        return 42

    task = runner.submit("ok", job)
    rec = Recorder(task)
    with qtbot.waitSignal(task.finished, timeout=10000):
        pass
    names = rec.names()
    assert names[0] == "started"
    assert names[-2:] == ["succeeded", "finished"]
    assert names.count("finished") == 1
    assert "progress" in names
    assert all(n == "progress" for n in names[1:-2])
    assert rec.events[-2][1] == 42 and task.result == 42 and task.state is TaskState.SUCCEEDED
    assert rec.threads == {threading.get_ident()}  # every slot ran on the GUI thread
    assert worker_threads and worker_threads[0] != threading.get_ident()
    last = [v for n, v in rec.events if n == "progress"][-1]
    assert isinstance(last, Progress) and last.fraction == 1.0  # the newest progress is never dropped


def test_failure_keeps_error_and_traceback(qtbot, runner: Runner) -> None:  # type: ignore[no-untyped-def]
    def job(*, report, cancel):  # type: ignore[no-untyped-def]
        raise InvalidInput("calibration.txt: the file is empty")

    task = runner.submit("bad", job)
    rec = Recorder(task)
    with qtbot.waitSignal(task.finished, timeout=10000):
        pass
    assert rec.names()[-2:] == ["failed", "finished"]
    assert isinstance(task.error, InvalidInput)
    assert "calibration.txt" in str(task.error)
    assert "Traceback" in task.error_details and "InvalidInput" in task.error_details


def test_cancel_running_job(qtbot, runner: Runner) -> None:  # type: ignore[no-untyped-def]
    started = threading.Event()

    def job(*, report, cancel):  # type: ignore[no-untyped-def]
        started.set()
        for _ in range(1000):
            cancel.raise_if_cancelled()
            time.sleep(0.01)
        return "not cancelled"

    task = runner.submit("long", job)
    rec = Recorder(task)
    assert started.wait(10)
    task.cancel()
    with qtbot.waitSignal(task.finished, timeout=10000):
        pass
    assert rec.names()[-2:] == ["cancelled", "finished"]
    assert "failed" not in rec.names()
    assert task.state is TaskState.CANCELLED


def test_jobs_run_one_after_another_and_queued_cancel(qtbot, runner: Runner) -> None:  # type: ignore[no-untyped-def]
    running = []
    overlap = []
    lock = threading.Lock()

    def make(i: int):  # type: ignore[no-untyped-def]
        def job(*, report, cancel):  # type: ignore[no-untyped-def]
            with lock:
                running.append(i)
                if len(running) > 1:
                    overlap.append(tuple(running))
            time.sleep(0.05)
            with lock:
                running.remove(i)
            return i

        return job

    tasks = [runner.submit(f"job{i}", make(i)) for i in range(3)]
    tasks[2].cancel()  # still queued: it must never run, and still finish exactly once
    recs = [Recorder(t) for t in tasks]
    with qtbot.waitSignals([t.finished for t in tasks], timeout=10000):
        pass
    assert not overlap
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED, TaskState.CANCELLED]
    assert recs[2].names() == ["cancelled", "finished"]


def test_streaming_delivers_every_chunk(qtbot, runner: Runner) -> None:  # type: ignore[no-untyped-def]
    pieces = [f"tok{i} " for i in range(300)]

    def job(*, report, cancel, stream):  # type: ignore[no-untyped-def]
        for p in pieces:
            stream(p)
        return len(pieces)

    task = runner.submit("stream", job, streaming=True)
    rec = Recorder(task)
    with qtbot.waitSignal(task.finished, timeout=10000):
        pass
    text = "".join(str(v) for n, v in rec.events if n == "streamed")
    assert text == "".join(pieces)
    assert rec.names()[-2:] == ["succeeded", "finished"]


def test_shutdown_cancels_and_waits(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = Runner("shutdown")
    started = threading.Event()

    def job(*, report, cancel):  # type: ignore[no-untyped-def]
        started.set()
        while True:
            cancel.raise_if_cancelled()
            time.sleep(0.005)

    task1 = runner.submit("forever", job)
    task2 = runner.submit("queued", job)
    rec1, rec2 = Recorder(task1), Recorder(task2)
    assert started.wait(10)
    t0 = time.monotonic()
    assert runner.shutdown(10000)
    assert time.monotonic() - t0 < 5
    # finished was emitted for both, synchronously, exactly once
    assert rec1.names()[-2:] == ["cancelled", "finished"]
    assert rec2.names() == ["cancelled", "finished"]
    assert not runner.active()
    with pytest.raises(RuntimeError):
        runner.submit("late", job)
    qtbot.wait(50)  # queued duplicates of the outcome are delivered now and must be ignored
    assert rec1.names().count("finished") == 1


def test_cancelled_exception_from_core_is_not_a_failure(qtbot, runner: Runner) -> None:  # type: ignore[no-untyped-def]
    def job(*, report, cancel):  # type: ignore[no-untyped-def]
        raise Cancelled()

    task = runner.submit("c", job)
    rec = Recorder(task)
    with qtbot.waitSignal(task.finished, timeout=10000):
        pass
    assert rec.names()[-2:] == ["cancelled", "finished"]
