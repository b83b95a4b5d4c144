"""llama.cpp's own log as a test oracle: every line it writes (debug level included), captured
through ``llama_log_set`` and handed back to llama-cpp-python's logger afterwards."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator


@contextlib.contextmanager
def captured_llama_log() -> Iterator[list[str]]:
    """``with captured_llama_log() as lines:`` collects what llama.cpp logs inside the block."""
    import llama_cpp
    import llama_cpp._logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode(errors="replace"))

    llama_cpp.llama_log_set(capture, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
