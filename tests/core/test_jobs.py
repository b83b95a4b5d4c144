"""Progress throttling and cancellation (core/jobs.py)."""

from __future__ import annotations

import pytest
from quantpress.core.errors import Cancelled
from quantpress.core.jobs import NEVER, CancelToken, Progress, Throttle


def test_throttle_forwards_first_final_and_every_step_however_fast() -> None:
    seen: list[Progress] = []
    throttle = Throttle(seen.append, interval_s=3600.0, step=0.1)
    for i in range(1001):  # a job far faster than the time interval
        throttle(Progress("x", i / 1000))
    fractions = [p.fraction for p in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    # About one update per 10% step (the final one may follow its predecessor more closely):
    # speed-independent milestones without flooding the GUI.
    assert 10 <= len(fractions) <= 11
    steps = list(zip(fractions[:-1], fractions[1:-1], strict=False))
    assert all(b - a >= 0.1 - 1e-9 for a, b in steps)


def test_throttle_fills_in_an_eta() -> None:
    seen: list[Progress] = []
    throttle = Throttle(seen.append, interval_s=0.0)
    throttle(Progress("x", 0.0))
    throttle(Progress("x", 0.5))
    assert seen[-1].eta_seconds is not None and seen[-1].eta_seconds >= 0.0


def test_throttle_leaves_out_an_eta_it_cannot_read_a_pace_from() -> None:
    seen: list[Progress] = []
    throttle = Throttle(seen.append, interval_s=0.0)
    throttle(Progress("x", 1e-6))  # a sliver of the work after the start-up
    assert seen[-1].eta_seconds is None
    throttle(Progress("x", 0.5, elapsed_seconds=2.0))  # a StagedProgress that measured too little yet
    assert seen[-1].eta_seconds is None


def test_cancel_token() -> None:
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()
    with pytest.raises(RuntimeError):
        NEVER.cancel()
