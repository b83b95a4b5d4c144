"""SIGTERM and SIGHUP end a job the way Ctrl-C does, and temporary outputs of dead jobs are swept.

Python's default for SIGTERM/SIGHUP is to die on the spot, so no ``finally`` runs and a job's
temporary outputs (``.NAME.partial-<pid>`` files, ``.NAME.tmp-<pid>/`` folders) stay on disk. With
:func:`terminate_gracefully` installed, the signal raises :class:`Terminated` in the main thread
instead; it unwinds through every job's cleanup like ``KeyboardInterrupt`` (but is not one, so a
chat REPL's Ctrl-C handler does not swallow it), and the CLI exits ``128 + signum`` (143 for SIGTERM).

A process killed harder (SIGKILL, a power cut) still leaves its temporary outputs. Each job kind names
them with its PID, and :func:`remove_stale` deletes those whose process is gone at the next start of
the same kind of job in the same folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(BaseException):
    """A termination signal arrived. A BaseException, like KeyboardInterrupt: ``except Exception``
    cleanup code does not stop it, ``finally`` and ``except BaseException`` cleanups run."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by a signal: 128 + its number (SIGTERM: 143, SIGHUP: 129)."""
        return 128 + self.signum

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return (type(self), (self.signum,))


def _raise(signum: int, _frame: FrameType | None) -> None:
    for s in HANDLED:  # once: a second signal must not interrupt the cleanup the first one started
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


def terminate_gracefully() -> Callable[[], None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` in this (main) thread; returns a function that
    puts the previous handlers back (a no-op where nothing was installed: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in HANDLED}
    for s in HANDLED:
        signal.signal(s, _raise)

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    return restore


# ----------------------------------------------------------------------------- helpers die with their parent

PARENT_POLL_S = 0.5
PARENT_GONE_GRACE_S = 30.0  # time for a job's own cleanup after the SIGTERM before a hard exit


def exit_with_parent(parent_pid: int | None = None, *, poll_s: float = PARENT_POLL_S,
                     death_signal: bool = False) -> None:
    """End this process when the process that started it is gone (killed, crashed, even by SIGKILL):
    the GUI's job, chat and helper processes would otherwise run on, orphaned, and with them
    multiprocessing's resource tracker, which waits for every process holding its pipe (issue 18:
    still alive 15 minutes after the GUI was killed).

    ``parent_pid`` is the PID the parent gave us (``os.getpid()`` on its side). Pass it: reading
    ``os.getppid()`` here instead races with a parent killed while this child was still importing
    (the child then takes the reaper's PID for its parent's and never notices). A daemon thread polls
    ``os.getppid()``: an orphan is re-parented, so the number changes (portable: every POSIX system;
    Windows has no re-parenting and no SIGTERM, so there it is a no-op).

    ``death_signal=True`` also asks Linux for SIGTERM the moment the parent dies (``PR_SET_PDEATHSIG``),
    for no 0.5 s poll. Only for a child whose starting *thread* lives as long as the child: Linux
    sends that signal when the thread that forked the child ends, as an idle pool thread does.

    Either way the process gets SIGTERM, which runs the job's cleanup where
    :func:`terminate_gracefully` is installed, and it exits hard if that has not ended it
    ``PARENT_GONE_GRACE_S`` later."""
    parent = os.getppid() if parent_pid is None else parent_pid
    term = getattr(signal, "SIGTERM", None)
    if term is None or not hasattr(os, "getppid") or sys.platform == "win32":
        return
    if threading.current_thread() is threading.main_thread():
        # A process started from a thread that blocks or ignores SIGTERM inherits that (the mask and an
        # ignored disposition survive exec): the signal below would never arrive.
        if signal.getsignal(term) == signal.SIG_IGN:
            signal.signal(term, signal.SIG_DFL)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {term})
    if death_signal:
        _ask_for_death_signal(term)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(poll_s)
        os.kill(os.getpid(), term)
        threading.Event().wait(PARENT_GONE_GRACE_S)
        os._exit(128 + int(term))

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _ask_for_death_signal(signum: int) -> bool:
    """Linux only: have the kernel send ``signum`` when the parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # no prctl in this libc (musl has it; be safe anyway)
        return False


# ----------------------------------------------------------------------------- stale temporary outputs


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Delete the entries of ``folder`` whose name matches ``pattern`` (a ``pid`` group) and whose
    process is no longer alive; returns what was removed. Never touches this process's own entries,
    and a folder that cannot be listed is left alone (the job reports its own error about it)."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m:
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


# Temporary names of each job kind (the sweeps below must match what the jobs write).
CONVERT_PARTIAL = re.compile(r"^\..+\.partial-(?P<pid>\d+)$")  # core/gguf/convert.py (outputs, sidecars)
LOSS_CACHE_TMP = re.compile(r"^\.[0-9a-f]+\.tmp-(?P<pid>\d+)-\d+$")  # core/gguf/loss_cache.py (an entry being saved)
PROBE_FOLDER = re.compile(r"^quantpress-probe-(?P<pid>\d+)-")  # core/gguf/runtime_probe.py (its F16 copy, in TMPDIR)
AWQ_TMP = re.compile(r"^\..+\.tmp-(?P<pid>\d+)$")  # core/awq/export.py
UNPACK_TMP = re.compile(r"^\..+\.unpack-(?P<pid>\d+)-[0-9a-f]+\.tmp$")  # core/gguf/unpack.py
EVAL_REFERENCE_TMP = re.compile(r"^\.[0-9a-f]+\.(?P<pid>\d+)\..+$")  # core/evaluate/reference.py
