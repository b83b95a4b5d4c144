"""Models that cannot be chatted with give clear errors, never a crash; A/B runs two models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from quantpress.core.chat import ChatSession, ChatSettings
from quantpress.core.errors import InvalidModel, ModelLoadError, QuantpressError


def _write_gguf(path: Path, arch: str) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(16)  # metadata quantpress checks before llama.cpp sees the file
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unknown_architecture_names_it_and_the_llama_cpp_version(tmp_path: Path) -> None:
    import llama_cpp

    path = _write_gguf(tmp_path / "odd.gguf", "mamba9000")
    with pytest.raises(ModelLoadError, match="'mamba9000'") as info:
        ChatSession.load(path)
    assert f"llama-cpp-python {llama_cpp.__version__}" in str(info.value)


def test_gguf_that_llama_cpp_cannot_load(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "broken.gguf", "llama")  # known architecture, but no real weights
    with pytest.raises(ModelLoadError, match="could not load this 'llama' model"):
        ChatSession.load(path)


def test_truncated_and_foreign_files(tmp_path: Path, demo_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(demo_gguf.read_bytes()[: 5_000_000])
    with pytest.raises(QuantpressError, match="truncated"):
        ChatSession.load(cut)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(QuantpressError, match="not a GGUF file"):
        ChatSession.load(text)
    with pytest.raises(InvalidModel, match="no such file"):
        ChatSession.load(tmp_path / "missing.gguf")
    with pytest.raises(InvalidModel, match="no chat runtime"):
        ChatSession.load(tmp_path)


def test_ab_same_prompt_two_models(demo_gguf: Path) -> None:
    settings = ChatSettings(temperature=0.0, max_tokens=12, ctx_tokens=512, threads=1)
    models = [demo_gguf, demo_gguf]
    replies, memories = [], []
    for model in models:  # what the Chat pane's A/B mode does: one session per side, the same prompt
        session = ChatSession.load(model, settings)
        try:
            replies.append(session.send("What is the capital of Japan?"))
            memories.append(session.memory())
        finally:
            session.close()
    assert len(replies) == len(models)
    a, b = replies
    assert a.text == b.text and "Tokyo" in a.text
    assert a.stats.generation_tokens_per_second and b.stats.generation_tokens_per_second
    assert memories[0].model_bytes == demo_gguf.stat().st_size
