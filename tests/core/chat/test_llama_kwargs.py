"""The keyword arguments quantpress passes to ``llama_cpp.Llama`` (issue 17: a chat with more of them
than needed died on CUDA): only those that differ from llama-cpp-python's defaults, and a real
``Llama`` built with exactly those loads and chats."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from quantpress.core.chat import ChatSession, ChatSettings, KVCacheType, llama_loader
from quantpress.core.chat.llama_loader import llama_defaults, llama_kwargs

THREADS = 1  # as in conftest.py: llama.cpp spinning threads slow a busy 2-core machine

# Each with its reason in llama_kwargs' docstring; nothing else may be passed.
ALLOWED = {"n_ctx", "n_gpu_layers", "n_batch", "type_k", "type_v", "flash_attn", "logits_all", "n_threads",
           "n_threads_batch", "verbose"}


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Record every ``llama_cpp.Llama(...)`` call of the real code path, then build the real thing."""
    import llama_cpp

    real = llama_cpp.Llama
    calls: list[tuple[str, dict[str, Any]]] = []

    def spy(path: str, **kwargs: Any) -> Any:
        calls.append((path, dict(kwargs)))
        return real(path, **kwargs)

    monkeypatch.setattr(llama_cpp, "Llama", spy)
    return calls


def test_chat_with_exactly_the_kwargs_quantpress_passes(demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    calls = _capture(monkeypatch)
    session = ChatSession.load(demo_gguf, ChatSettings(temperature=0.0, seed=1, max_tokens=12, ctx_tokens=1024,
                                                       threads=THREADS))
    try:
        reply = session.send("What is the capital of France?")
    finally:
        session.close()
    monkeypatch.undo()
    assert reply.text.strip() and reply.tokens > 0
    [(path, kwargs)] = calls
    defaults = llama_defaults()
    assert set(kwargs) <= ALLOWED, set(kwargs) - ALLOWED
    assert {k for k, v in kwargs.items() if defaults.get(k, object()) == v} == set(), "passed a default value"
    assert kwargs["verbose"] is False and kwargs["n_ctx"] == 1024
    assert not {"seed", "n_ubatch", "flash_attn", "type_k", "type_v", "logits_all"} & set(kwargs)

    # The same call as a user's own script: exactly these arguments, a prompt pass and generation.
    llm = llama_cpp.Llama(path, **kwargs)
    try:
        prompt = llm.tokenize(b"The capital of France is", add_bos=True)
        out = []
        for token in llm.generate(prompt, temp=0.0, top_k=1):
            out.append(token)
            if len(out) == 8:
                break
        assert len(out) == 8
        assert llm.detokenize(out).strip()
    finally:
        llm.close()


def test_quantized_cache_adds_only_what_it_needs() -> None:
    kw = llama_kwargs(ctx_tokens=4096, kv_type_k=KVCacheType.Q8_0, kv_type_v=KVCacheType.Q8_0)
    assert kw == {"n_ctx": 4096, "type_k": 8, "type_v": 8, "flash_attn": True, "verbose": False}
    assert llama_kwargs(ctx_tokens=512, n_gpu_layers=-1) == {"n_gpu_layers": -1, "verbose": False}
    assert llama_kwargs(ctx_tokens=2048, n_batch=256, logits_all=True, threads=3) == {
        "n_ctx": 2048, "n_batch": 256, "logits_all": True, "n_threads": 3, "n_threads_batch": 3, "verbose": False}


def test_gpu_layers_are_estimated_in_another_process(demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a build with GPU offload the estimate (NVML, the converter's plan) must not run in the
    process that then initialises CUDA: it runs in a child, whose verdict is used."""
    import llama_cpp

    def in_process(*_: Any) -> int:
        raise AssertionError("the estimate ran in the loading process")

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    monkeypatch.setattr(llama_loader, "estimated_placement", in_process)
    had_nvml = "pynvml" in sys.modules
    place = llama_loader.default_placement(demo_gguf, 1024, KVCacheType.F16)
    assert (place.gpu_layers, place.n_cpu_moe) == (0, 0)  # no GPU here: the child's estimate says CPU
    assert ("pynvml" in sys.modules) == had_nvml
