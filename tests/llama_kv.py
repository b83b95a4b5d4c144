"""llama.cpp's own account of its KV cache: the 'KV buffer size = X MiB' lines it logs while a
ChatSession loads a GGUF (one per cache: an iSWA model has two), summed.

    from llama_kv import llama_kv_buffer_mib      # tests/ is on sys.path under pytest
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from quantpress.core.chat import ChatSession, ChatSettings, KVCacheType


def llama_kv_buffer_mib(path: Path, ctx: int, kv: KVCacheType, threads: int = 1) -> float:
    """Load ``path`` through ChatSession with a ``ctx``-token ``kv`` cache, capturing llama.cpp's log."""
    import llama_cpp
    import llama_cpp._logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode(errors="replace"))

    llama_cpp.llama_log_set(capture, ctypes.c_void_p(0))
    try:
        settings = ChatSettings(ctx_tokens=ctx, kv_type_k=kv, kv_type_v=kv, threads=threads)
        ChatSession.load(path, settings).close()
    finally:
        llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
    sizes = [float(line.split("=")[1].split("MiB")[0]) for line in lines if "KV buffer size" in line]
    assert sizes, "llama.cpp did not log its KV buffer size"
    return sum(sizes)
