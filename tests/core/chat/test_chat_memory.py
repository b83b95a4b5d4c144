"""KV cache memory: the computed size equals llama.cpp's own KV buffer, and q8_0 is about half of f16,
both by llama.cpp's account and by the process's resident memory."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from llama_kv import llama_kv_buffer_mib
from quantpress.core.chat import KVCacheType, kv_cache_bytes, read_gguf_shape

THREADS = 1


def _llama_kv_buffer_mib(path: Path, ctx: int, kv: KVCacheType) -> float:
    return llama_kv_buffer_mib(path, ctx, kv, THREADS)


@pytest.mark.parametrize("kv", list(KVCacheType))
def test_computed_kv_bytes_match_llama_cpp(demo_gguf: Path, kv: KVCacheType) -> None:
    shape = read_gguf_shape(demo_gguf)
    ctx = 1000  # llama.cpp pads to 1024 cells
    measured_mib = _llama_kv_buffer_mib(demo_gguf, ctx, kv)
    assert kv_cache_bytes(shape, ctx, kv, kv) / 2**20 == pytest.approx(measured_mib, abs=0.01)


def test_q8_0_kv_cache_is_about_half_of_f16(demo_gguf: Path) -> None:
    f16 = _llama_kv_buffer_mib(demo_gguf, 4096, KVCacheType.F16)
    q8 = _llama_kv_buffer_mib(demo_gguf, 4096, KVCacheType.Q8_0)
    q4 = _llama_kv_buffer_mib(demo_gguf, 4096, KVCacheType.Q4_0)
    assert q8 / f16 == pytest.approx(34 / 64, rel=1e-3)  # 8.5 vs 16 bits per value
    assert q4 / f16 == pytest.approx(18 / 64, rel=1e-3)


_RSS_PROBE = """
import json, sys, psutil, llama_cpp
path, kv = sys.argv[1], int(sys.argv[2])
before = psutil.Process().memory_info().rss
llm = llama_cpp.Llama(path, n_ctx=16384, type_k=kv, type_v=kv, flash_attn=True, n_threads=1, verbose=False)
print(json.dumps(psutil.Process().memory_info().rss - before))
"""


def _rss_delta(path: Path, ggml_type: int) -> int:
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path), str(ggml_type)],
                         capture_output=True, text=True, check=True, timeout=300)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def test_rss_confirms_the_kv_saving(demo_gguf: Path) -> None:
    # Same flash-attention setting on both sides so only the cache type differs; 16k context makes
    # the KV buffer (360 MiB at f16) dominate the process's growth. Each load in a fresh process.
    shape = read_gguf_shape(demo_gguf)
    expected = kv_cache_bytes(shape, 16384, KVCacheType.F16, KVCacheType.F16) - kv_cache_bytes(
        shape, 16384, KVCacheType.Q8_0, KVCacheType.Q8_0
    )
    saved = _rss_delta(demo_gguf, 1) - _rss_delta(demo_gguf, 8)
    assert saved == pytest.approx(expected, rel=0.15)


def test_chat_kv_cache_counts_sliding_windows_like_the_estimator() -> None:
    """One KV formula: the Chat pane's figure for a Gemma-3-like file (5 of 6 layers sliding) equals
    the Fit pane's (core.memory); the chat's Llama() keeps llama-cpp-python's swa_full default, so the
    sliding layers hold a full-size cache (measured: benchmarks/estimate_memory.py --hybrid)."""
    from quantpress.core.chat.llama_loader import GgufShape
    from quantpress.core.memory import RuntimeConfig
    from quantpress.core.memory import kv_cache_bytes as estimator_kv_cache_bytes
    from quantpress.core.model import ModelInfo, SourceKind

    model = ModelInfo(source="g", kind=SourceKind.GGUF, architecture="gemma3", gguf_arch="gemma3", n_params=0,
                      n_layers=6, n_heads=4, n_kv_heads=1, head_dim=256, head_dim_v=256, hidden_size=1024,
                      ffn_size=4096, vocab_size=1000, context_length=32768, sliding_window=512,
                      swa_layers=(0, 1, 2, 3, 4))
    shape = GgufShape(Path("g.gguf"), "gemma3", 6, 256, 256, 1000, 0, None, sliding_window=512,
                      swa_layers=(0, 1, 2, 3, 4))
    chat = kv_cache_bytes(shape, 16384, KVCacheType.Q8_0, KVCacheType.Q8_0)
    assert chat == estimator_kv_cache_bytes(model, RuntimeConfig(n_ctx=16384, kv_type="q8_0"))
    full = kv_cache_bytes(dataclasses.replace(shape, swa_layers=()), 16384, KVCacheType.Q8_0, KVCacheType.Q8_0)
    assert chat == full
    windowed = estimator_kv_cache_bytes(model, RuntimeConfig(n_ctx=16384, kv_type="q8_0", swa_full=False))
    assert windowed < full // 2
