"""A process id that belongs to no running process: what a job killed outright leaves in its temporary
names, for the tests of the sweeps that remove them (core/signals.py ``remove_stale``)."""

from __future__ import annotations

import subprocess
import sys


def dead_pid() -> int:
    """The id of a child that has exited (no process has it, until the system reuses it)."""
    from quantpress.core.signals import pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid
