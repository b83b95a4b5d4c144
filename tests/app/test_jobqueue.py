"""The conversion queue: one job at a time, in order; failures keep error and log; queued jobs cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from quantpress.app.jobqueue import Job, JobQueue, JobState
from quantpress.app.tasks import Runner
from quantpress.core.errors import NotEnoughDiskSpace
from quantpress.core.jobs import Progress


@pytest.fixture
def queue(qtbot) -> Iterator[JobQueue]:  # type: ignore[no-untyped-def]
    runner = Runner("heavy")
    q = JobQueue(runner)
    yield q
    q.cancel_all()
    runner.shutdown()


def test_jobs_run_in_order_one_at_a_time(qtbot, queue: JobQueue) -> None:  # type: ignore[no-untyped-def]
    order: list[str] = []
    running = threading.Semaphore(1)

    def make(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def job(*, report, cancel):  # type: ignore[no-untyped-def]
            assert running.acquire(blocking=False), "two jobs ran at once"
            try:
                order.append(name)
                for i in range(3):
                    report(Progress("convert", (i + 1) / 3, f"{name} tensor {i}", i + 1, 3))
                    time.sleep(0.01)
                if fail:
                    raise NotEnoughDiskSpace("/out: the output needs 90 MiB but only 10 MiB are free.")
                return [f"/out/{name}.gguf"]
            finally:
                running.release()

        return job

    a = queue.add(Job("a", make("a")))
    b = queue.add(Job("b", make("b", fail=True)))
    c = queue.add(Job("c", make("c")))
    d = queue.add(Job("d", make("d")))
    queue.cancel(d)  # still queued
    qtbot.waitUntil(lambda: not queue.active(), timeout=20000)
    assert order == ["a", "b", "c"]
    assert [j.state for j in (a, b, c, d)] == [JobState.DONE, JobState.FAILED, JobState.DONE, JobState.CANCELLED]
    assert a.outputs and a.outputs[0].name == "a.gguf"
    assert "only 10 MiB are free" in b.status_text()
    assert any("Traceback" in line for line in b.log) and any("b tensor" in line for line in b.log)
    assert "Cancelled" in d.log[-1]


def test_result_notes_go_to_the_job_log(qtbot, queue: JobQueue) -> None:  # type: ignore[no-untyped-def]
    """A conversion's notes (routed experts the calibration text never reached) are logged once."""
    from quantpress.core.gguf.convert import ConversionResult

    def job(*, report, cancel):  # type: ignore[no-untyped-def]
        return [ConversionResult(f"/out/m-{f}.gguf", f, 1, 1.0, 1, uncalibrated_experts={"blk.3": (5, 9)})
                for f in ("Q4_K_M", "Q2_K")]

    j = queue.add(Job("moe", job))
    qtbot.waitUntil(lambda: not queue.active(), timeout=20000)
    notes = [line for line in j.log if "Note: " in line]
    assert len(notes) == 1 and "blk.3: 5, 9" in notes[0], j.log
