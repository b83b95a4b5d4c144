"""Heavy jobs in a child process: progress, result, user errors, cancel, and a crash that is reported."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from quantpress.app import isolated
from quantpress.app.isolated import ChildProcessDied, run_isolated
from quantpress.core.errors import Cancelled, InvalidInput
from quantpress.core.jobs import CancelToken, Progress


def count(n: int, *, report, cancel):  # type: ignore[no-untyped-def]
    for i in range(n):
        cancel.raise_if_cancelled()
        report(Progress("count", (i + 1) / n, f"step {i}", i + 1, n))
        time.sleep(0.01)
    return {"pid": os.getpid(), "n": n}


def fail(*, report, cancel):  # type: ignore[no-untyped-def]
    raise InvalidInput("notes.txt: the calibration text is empty")


def crash(*, report, cancel):  # type: ignore[no-untyped-def]
    report(Progress("crash", 0.5, "about to die"))
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def deaf(path: str, *, report, cancel):  # type: ignore[no-untyped-def]
    """A job that never checks cancel (like one stuck in a long native call) and cleans up in finally."""
    temp = Path(path)
    temp.write_text("partial output")
    try:
        report(Progress("deaf", 0.1, "writing"))
        time.sleep(60)
    finally:
        temp.unlink()


def test_result_and_progress_cross_the_process() -> None:
    seen: list[Progress] = []
    result = run_isolated(count, 5, report=seen.append, cancel=CancelToken())
    assert result["n"] == 5 and result["pid"] != os.getpid()
    assert [p.done for p in seen] == [1, 2, 3, 4, 5]


def test_user_error_arrives_with_child_traceback() -> None:
    with pytest.raises(InvalidInput, match="calibration text is empty") as info:
        run_isolated(fail, report=lambda p: None, cancel=CancelToken())
    assert "Traceback" in info.value.child_traceback  # type: ignore[attr-defined]


def test_cancel_reaches_the_child() -> None:
    token = CancelToken()
    started = threading.Event()

    def report(p: Progress) -> None:
        started.set()
        token.cancel()

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        run_isolated(count, 100000, report=report, cancel=token)
    assert started.is_set() and time.monotonic() - t0 < 30


def test_killed_child_is_a_clear_error() -> None:
    with pytest.raises(ChildProcessDied, match="killed"):
        run_isolated(crash, report=lambda p: None, cancel=CancelToken())


def test_terminated_after_the_grace_period_the_child_still_cleans_up(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The GUI terminate()s a child that ignores cancel for the grace period: SIGTERM must unwind the
    job's cleanup (its temporary output removed), not kill it on the spot."""
    monkeypatch.setattr(isolated, "CANCEL_GRACE_S", 0.5)
    temp = tmp_path / ".out.gguf.partial-child"
    token = CancelToken()
    with pytest.raises(Cancelled):
        run_isolated(deaf, str(temp), report=lambda p: token.cancel(), cancel=token)
    assert not temp.exists()
