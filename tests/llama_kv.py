"""llama.cpp's own account of its KV cache: the 'KV buffer size = X MiB' lines it logs while a
ChatSession loads a GGUF (one per cache: an iSWA model has two), summed.

    from llama_kv import llama_kv_buffer_mib      # tests/ is on sys.path under pytest
"""

from __future__ import annotations

from pathlib import Path

from llama_log import captured_llama_log
from quantpress.core.chat import ChatSession, ChatSettings, KVCacheType


def llama_kv_buffer_mib(path: Path, ctx: int, kv: KVCacheType, threads: int = 1) -> float:
    """Load ``path`` through ChatSession with a ``ctx``-token ``kv`` cache, capturing llama.cpp's log."""
    with captured_llama_log() as lines:
        settings = ChatSettings(ctx_tokens=ctx, kv_type_k=kv, kv_type_v=kv, threads=threads)
        ChatSession.load(path, settings).close()
    sizes = [float(line.split("=")[1].split("MiB")[0]) for line in lines if "KV buffer size" in line]
    assert sizes, "llama.cpp did not log its KV buffer size"
    return sum(sizes)
