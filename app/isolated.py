"""Run a heavy core job in a child process, seen by the runner as a plain ``fn(report=, cancel=)``.

Why: core code spends long stretches in C calls that hold the GIL (parsing a 3.5 MB tokenizer.json
with ``json``/``tokenizers``: ~0.3 s each), which would freeze every Python slot of the GUI for that
long. In a child process the GUI's interpreter is never blocked; a crash or an out-of-memory kill in
native code ends the job with a clear error instead of taking the window down; and the memory of a
2-hour job is returned to the system when it ends.

Protocol over a multiprocessing queue: ``("progress", Progress)`` while running, then exactly one of
``("result", value)``, ``("cancelled",)``, ``("error", exc_or_None, type_name, message, traceback)``.
Cancel sets a multiprocessing Event that the child's CancelToken reads; core then unwinds through
its own cleanup (temporary outputs removed) and answers ``("cancelled",)``.

No Qt here: the child imports this module, not the GUI.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

from quantpress.core.errors import Cancelled, QuantpressError
from quantpress.core.jobs import CancelToken, Progress, Report
from quantpress.core.signals import Terminated, exit_with_parent, terminate_gracefully

POLL_S = 0.05
CANCEL_GRACE_S = 60.0  # core checks cancel between (and within large) tensors; then we stop waiting


class ChildProcessDied(QuantpressError):
    """The worker process ended without an answer (killed, out of memory, or a crash in native code)."""


class _EventToken(CancelToken):
    def __init__(self, event: Any) -> None:
        super().__init__()
        self._mp_event = event

    @property
    def cancelled(self) -> bool:
        return bool(self._mp_event.is_set())

    def raise_if_cancelled(self) -> None:
        if self._mp_event.is_set():
            raise Cancelled()


def _child(target: Callable[..., Any], args: tuple[Any, ...], out: Any, cancel_event: Any, parent_pid: int) -> None:
    def report(p: Progress) -> None:
        out.put(("progress", p))

    # The parent terminate()s a child that outlives the cancel grace period: SIGTERM then unwinds
    # through the job's cleanup (its temporary outputs removed) instead of killing it on the spot.
    terminate_gracefully()
    # A killed or crashed GUI must not leave this job running. The thread that started this process
    # waits in run_isolated until it ends, so Linux's parent-death signal is safe here (and instant).
    exit_with_parent(parent_pid, death_signal=True)
    try:
        value = target(*args, report=report, cancel=_EventToken(cancel_event))
        out.put(("result", value))
    except (Cancelled, Terminated):
        out.put(("cancelled",))
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        out.put(error_message(exc))


def error_message(exc: BaseException) -> tuple[Any, ...]:
    """``("error", exc_or_None, type_name, message, traceback)``: an exception as it crosses the pipe
    (None in place of one that does not pickle)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.dumps(exc)
        sendable: BaseException | None = exc
    except Exception:  # noqa: BLE001 - unpicklable exception: send its text only
        sendable = None
    return ("error", sendable, type(exc).__name__, str(exc), tb)


def raise_error(message: tuple[Any, ...]) -> Any:
    """Raise the exception of an ``error_message`` in the parent, with the child's traceback attached."""
    _, exc, type_name, text, tb = message
    if exc is None:
        exc = RuntimeError(f"{type_name}: {text}")
    exc.child_traceback = tb  # shown in the error dialog's details
    raise exc


def run_isolated(target: Callable[..., Any], *args: Any, report: Report, cancel: CancelToken) -> Any:
    """Call ``target(*args, report=..., cancel=...)`` in a spawned child process; forward progress,
    cancel and the outcome. ``target`` must be a module-level function; args must pickle."""
    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs Qt threads
    out = ctx.Queue()
    cancel_event = ctx.Event()
    proc = ctx.Process(target=_child, args=(target, args, out, cancel_event, os.getpid()), daemon=True,
                       name=f"quantpress-{getattr(target, '__name__', 'job')}")
    proc.start()
    cancel_sent_at: float | None = None
    try:
        while True:
            if cancel.cancelled and not cancel_event.is_set():
                cancel_event.set()
                cancel_sent_at = time.monotonic()
            try:
                message = out.get(timeout=POLL_S)
            except queue.Empty:
                if not proc.is_alive():
                    try:  # its last message may still be in the pipe when it exits
                        message = out.get(timeout=2.0)
                    except queue.Empty:
                        return _died(proc)
                    return _outcome(message, report)
                if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > CANCEL_GRACE_S:
                    proc.terminate()
                    raise Cancelled() from None
                continue
            if message[0] == "progress":
                report(message[1])
            else:
                return _outcome(message, report)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        out.close()


def _outcome(message: tuple[Any, ...], report: Report) -> Any:
    kind = message[0]
    if kind == "progress":  # the child died right after a progress report
        report(message[1])
        raise ChildProcessDied("The job's worker process stopped without an answer. Nothing was kept.")
    if kind == "result":
        return message[1]
    if kind == "cancelled":
        raise Cancelled()
    return raise_error(message)


def _died(proc: Any) -> Any:
    proc.join(timeout=5)
    code = proc.exitcode
    why = {-9: "it was killed, most likely because the computer ran out of memory",
           -11: "it crashed in native code (segmentation fault)",
           -6: "it aborted in native code"}.get(code or 0, f"exit code {code}")
    raise ChildProcessDied(f"The job's worker process stopped without an answer: {why}. Nothing was kept; "
                           "try a smaller model or format, or close other programs.")


# -- a warm helper process for short jobs (estimates, plan previews) --------------------------------
# These take 0.5-2 s, mostly parsing tokenizer.json with GIL-holding C calls. A spawned process per
# request would pay its imports every time; one long-lived helper keeps them warm.
_pool: Any = None


def run_in_helper(target: Callable[..., Any], *args: Any) -> Any:
    """``target(*args)`` in the long-lived helper process (blocking the calling worker thread only)."""
    global _pool
    if _pool is None:
        from concurrent.futures import ProcessPoolExecutor

        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=exit_with_parent, initargs=(os.getpid(),))
    return _pool.submit(target, *args).result()


def shutdown_helper() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
