"""SIGTERM and SIGHUP end a CLI job like Ctrl-C: cleanup runs, nothing is left, exit 128 + signum.
Temporary outputs of processes that died harder are swept at the next start of the same job kind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from dead_process import dead_pid
from quantpress.core.signals import (
    AWQ_TMP,
    CONVERT_PARTIAL,
    EVAL_REFERENCE_TMP,
    UNPACK_TMP,
    Terminated,
    pid_alive,
    remove_stale,
    terminate_gracefully,
)
from tiny_models import tiny_model


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"])
def test_signal_mid_convert_removes_the_partial_files(signum: int, code: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "quantpress.core.cli", "convert", "demo", "-f", "Q8_0", "-f",
                             "Q4_K_M", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        partial: list[Path] = []
        while not partial and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            partial = [p for p in out.iterdir() if CONVERT_PARTIAL.match(p.name)]
        assert partial, f"no partial output appeared (exit {proc.poll()})"
        assert all(p.name.endswith(f"-{proc.pid}") for p in partial)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert f"terminated by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr + stdout and "error:" not in stderr
    assert list(out.iterdir()) == []


def test_terminated_unwinds_and_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    restore = terminate_gracefully()
    cleaned = []
    try:
        with pytest.raises(Terminated) as info:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises in this thread long before
            finally:
                cleaned.append(True)
        assert info.value.exit_code == 143 and cleaned
        # A second signal during the cleanup must not interrupt it: ignored until restored.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before


# A parent that starts a child, says the child's PID, then waits to be killed. The child takes
# ``delay`` seconds before it sets up its watch (as a spawned child does while importing), says
# WATCHING on the same pipe, then sleeps.
ORPHAN_CHILD = """
import time
time.sleep({delay})
from quantpress.core.signals import exit_with_parent
exit_with_parent({parent}, poll_s={poll_s}, death_signal={death_signal})
print("WATCHING", flush=True)
time.sleep(600)
"""
ORPHAN_PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1].format(parent=os.getpid())])
print(child.pid, flush=True)
time.sleep(600)
"""


def _orphan(delay_s: float, poll_s: float, death_signal: bool) -> tuple[subprocess.Popen[str], int]:
    child_code = ORPHAN_CHILD.format(delay=delay_s, parent="{parent}", poll_s=poll_s, death_signal=death_signal)
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT, child_code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def _gone_within(pid: int, timeout_s: float) -> bool:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


@contextmanager
def _orphaned(delay_s: float, poll_s: float, death_signal: bool) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``_orphan``'s parent and child; the child is killed and the parent reaped whatever the test saw."""
    parent, child = _orphan(delay_s, poll_s, death_signal)
    try:
        yield parent, child
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
        parent.communicate()


def test_a_child_whose_parent_died_before_it_watched_still_exits() -> None:
    """Issue 18, point 12: the GUI killed (SIGKILL) while its child was still importing. The child is
    given its parent's PID, so it does not mistake the process that adopted it for its parent."""
    with _orphaned(delay_s=1.5, poll_s=0.1, death_signal=False) as (parent, child):
        parent.kill()  # before the child has set up its watch
        parent.wait()
        assert _gone_within(child, 10), "the orphaned child kept running"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_death_signal_ends_the_child_at_once() -> None:
    """With ``death_signal`` the kernel ends the child when its parent dies (SIGKILL), without waiting
    for the watching thread's next look (60 s apart here)."""
    with _orphaned(delay_s=0, poll_s=60, death_signal=True) as (parent, child):
        assert parent.stdout is not None and parent.stdout.readline() == "WATCHING\n"
        parent.kill()
        parent.wait()
        assert _gone_within(child, 5), "no parent-death signal arrived"


def test_stale_partials_of_dead_processes_are_swept_by_the_next_conversion(tmp_path: Path) -> None:
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".m-Q8_0.gguf.partial-{dead_pid()}"
    dead.write_bytes(b"\0" * 1024)
    sidecar = out / f".m-Q8_0.gguf.json.partial-{dead_pid()}"
    sidecar.write_text("{")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = out / f".other.gguf.partial-{alive.pid}"  # another conversion still writing
        running.write_bytes(b"\0")
        folder = tiny_model("smollm", tmp_path / "models")
        plan = plan_conversion(open_source(folder), ["Q8_0"], out / "m.gguf", calibration="none")
        convert(plan)
        assert not dead.exists() and not sidecar.exists()
        assert running.exists()
    finally:
        alive.kill()
        alive.wait()


def test_each_job_names_its_temporary_output_as_its_sweep_expects(tmp_path: Path) -> None:
    """The sweeps only work if the names match: check them against the real naming code."""
    from quantpress.core.awq.export import temp_folder
    from quantpress.core.evaluate.reference import ReferenceWriter

    awq_tmp = temp_folder(tmp_path / "awq-out")
    m = AWQ_TMP.match(awq_tmp.name)
    assert m and int(m.group("pid")) == os.getpid()
    writer = ReferenceWriter(tmp_path / "cache", "0123abcd" * 4, np.zeros(8, np.int32), 2, 16)
    m = EVAL_REFERENCE_TMP.match(writer.tmp.name)
    assert m and int(m.group("pid")) == os.getpid()
    writer.abort()
    assert UNPACK_TMP.match(f".out.unpack-{os.getpid()}-0a1b2c3d.tmp")
    # A finished reference pass (named by its key) and finished outputs never match a sweep.
    for name in ("0123abcd" * 4, "m-Q8_0.gguf", "m-Q8_0.gguf.json", "awq-out"):
        assert not any(p.match(name) for p in (AWQ_TMP, EVAL_REFERENCE_TMP, UNPACK_TMP, CONVERT_PARTIAL))


@pytest.mark.parametrize("pattern", [AWQ_TMP, UNPACK_TMP, EVAL_REFERENCE_TMP], ids=["awq", "unpack", "eval"])
def test_remove_stale_takes_dead_folders_and_keeps_live_ones(pattern: object, tmp_path: Path) -> None:
    names = {AWQ_TMP: ".out.tmp-{pid}", UNPACK_TMP: ".out.unpack-{pid}-0a1b2c3d.tmp",
             EVAL_REFERENCE_TMP: ".0123abcd.{pid}.x1y2z3"}
    dead = tmp_path / names[pattern].format(pid=dead_pid())  # type: ignore[index]
    mine = tmp_path / names[pattern].format(pid=os.getpid())  # type: ignore[index]
    for folder in (dead, mine):
        (folder / "inner").mkdir(parents=True)
        (folder / "inner" / "data.bin").write_bytes(b"x")
    assert remove_stale(tmp_path, pattern) == [dead]  # type: ignore[arg-type]
    assert mine.exists() and not dead.exists()
