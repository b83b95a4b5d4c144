"""The chat backend's child process without the GUI: load errors cross the pipe as they are, a
cancel during loading ends the child, a child killed while idle is reported on the next request."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from quantpress.app.chat_process import ChatProcess, ChatProcessDied
from quantpress.core.chat import ChatSettings
from quantpress.core.errors import Cancelled, InvalidModel
from quantpress.core.jobs import CancelToken

SETTINGS = ChatSettings(temperature=0.0, seed=1, max_tokens=8, ctx_tokens=512, threads=1)


def test_load_error_is_the_core_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel, match="no such file"):
        ChatProcess.start(tmp_path / "missing.gguf", SETTINGS)


def test_cancel_while_loading_ends_the_child(demo_gguf: Path) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        ChatProcess.start(demo_gguf, SETTINGS, cancel=token)


def test_killed_while_idle_is_reported_then_stays_dead(demo_gguf: Path) -> None:
    session = ChatProcess.start(demo_gguf, SETTINGS)
    pieces: list[str] = []
    reply = session.send("Hi", on_token=pieces.append)
    assert reply.text and "".join(pieces) == reply.text
    os.kill(session.pid, signal.SIGKILL)
    with pytest.raises(ChatProcessDied, match="SIGKILL"):
        session.send("Again")
    assert not session.alive
    with pytest.raises(ChatProcessDied, match="Load the model again"):
        session.clear()
    session.close()
