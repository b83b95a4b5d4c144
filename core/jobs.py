"""Progress reporting and cancellation for long jobs: plain callables, no Qt.

A long core function takes ``report: Report = ignore`` and ``cancel: CancelToken = NEVER``.
It calls ``cancel.raise_if_cancelled()`` between units of work (tensors, layers, batches) and
``report(Progress(...))`` at most about ten times a second (use :class:`Throttle`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from quantpress.core.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress update. ``fraction`` is in [0, 1]; ``eta_seconds`` is None when unknown;
    ``elapsed_seconds`` is the job's time so far (None when the reporter does not track it)."""

    stage: str
    fraction: float
    message: str = ""
    done: int = 0
    total: int = 0
    eta_seconds: float | None = None
    elapsed_seconds: float | None = None


Report = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """The default ``report``: drop progress updates."""


class CancelToken:
    """A thread-safe flag that a job checks between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


class _NeverCancelled(CancelToken):
    def cancel(self) -> None:  # a shared default must never be tripped by one caller
        raise RuntimeError("NEVER cannot be cancelled; create a CancelToken()")


NEVER: CancelToken = _NeverCancelled()


def linear_eta(elapsed_s: float, fraction: float) -> float | None:
    """Time left if the rest goes at the pace so far (None before any progress; 0 when done)."""
    if fraction <= 0.0:
        return None
    return max(0.0, elapsed_s * (1.0 - fraction) / fraction)


MIN_ETA_FRACTION = 0.02


class Throttle:
    """Forward progress at most every ``interval_s`` seconds, plus whenever the fraction has moved
    by ``step`` since the last forwarded update (always the first and the final one), and fill in
    an ETA from the elapsed time and the fraction done.

    The step rule makes the updates a listener sees independent of machine speed: a fast job still
    reports about every 5%, so "cancel at 50%" or a progress bar behave the same everywhere, at a cost
    of at most ``1 / step`` extra updates per job."""

    def __init__(self, report: Report, interval_s: float = 0.1, step: float = 0.05) -> None:
        self._report = report
        self._interval_s = interval_s
        self._step = step
        self._start = time.monotonic()
        self._last = -1.0
        self._last_fraction = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        final = progress.fraction >= 1.0
        moved = progress.fraction - self._last_fraction >= self._step
        if not final and not moved and self._last >= 0 and now - self._last < self._interval_s:
            return
        self._last = now
        self._last_fraction = progress.fraction
        eta = progress.eta_seconds
        # Only where the reporter keeps no time itself (a StagedProgress, core/eta.py, sets elapsed
        # and leaves the ETA out on purpose while too little is measured), and only from a share of the
        # work a pace can be read from: seconds of start-up over the first tiny tensor had shown
        # "0.0% ... ETA 145040s".
        if eta is None and progress.elapsed_seconds is None and MIN_ETA_FRACTION <= progress.fraction < 1.0:
            eta = linear_eta(now - self._start, progress.fraction)
        self._report(replace(progress, eta_seconds=eta))
