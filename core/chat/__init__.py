"""Chat with a local model, independent of the runtime.

Public API:
- ``ChatSession.load(path, settings) -> ChatSession``; ``.send(text, on_token=None, cancel=NEVER) -> Reply``
  (streams each token's text to ``on_token``); ``.stop()`` (thread-safe, takes effect within one token);
  ``.messages``, ``.clear()``, ``.configure(settings)`` (reloads only for load-time settings),
  ``.memory() -> MemoryUse``, ``.uses_fallback_template``, ``.close()``.
- ``ChatSettings`` (system prompt, temperature, top_p, top_k, repeat_penalty, max_tokens, seed, ctx_tokens,
  gpu_layers, n_cpu_moe, threads, kv_type_k / kv_type_v: ``KVCacheType`` f16 | q8_0 | q4_0, overflow: ``OverflowPolicy``).
- ``Reply(text, tokens, stats: ReplyStats)``; ``ReplyStats.prompt_tokens_per_second`` /
  ``.generation_tokens_per_second``, ``.finish_reason`` ("stop" | "length" | "cancelled"), ``.dropped_turns``.
- ``ContextOverflow`` (an ``InvalidInput``): a message that cannot fit even after dropping old turns.
- ``ChatBackend`` (Protocol) and the ``backend.BACKENDS`` table of ``BackendEntry(name, accepts, load)``:
  ``LlamaCppBackend`` serves ``.gguf`` files, ``AwqBackend`` AWQ folders.
- ``kv_cache_bytes(shape, ctx_tokens, kv_type_k, kv_type_v)`` / ``read_gguf_shape(path)``: KV memory math
  (equals llama.cpp's own KV buffer; tested). ``gpu_layers`` and ``n_cpu_moe`` None ask ``core.estimate``
  for the placement (in a separate process: no NVML work where CUDA is then initialised) when llama.cpp can
  offload, else CPU; a MoE file that does not fit the GPU whole loads "GPU + experts in RAM" (llama.cpp's
  --n-cpu-moe, ``placement.py``); ``MemoryUse.placement`` says where it runs. A quantized V cache switches flash attention on (llama.cpp needs it).
  ``Llama()`` gets only the keyword arguments that differ from its defaults (``llama_loader.llama_kwargs``).
Errors: ``ModelLoadError`` (unknown architecture: names it and the llama-cpp-python version; damaged file),
``InvalidModel`` (missing file / no runtime), ``ContextOverflow``, ``InvalidInput``.
"""

from __future__ import annotations

from quantpress.core.chat.backend import BackendEntry, ChatBackend, load_backend
from quantpress.core.chat.llama_loader import kv_cache_bytes, read_gguf_shape
from quantpress.core.chat.session import ChatSession, ContextOverflow
from quantpress.core.chat.types import (
    ChatSettings,
    KVCacheType,
    MemoryUse,
    Message,
    OverflowPolicy,
    Reply,
    ReplyStats,
    Role,
    TokenCallback,
)

__all__ = [
    "BackendEntry",
    "ChatBackend",
    "ChatSession",
    "ChatSettings",
    "ContextOverflow",
    "KVCacheType",
    "MemoryUse",
    "Message",
    "OverflowPolicy",
    "Reply",
    "ReplyStats",
    "Role",
    "TokenCallback",
    "kv_cache_bytes",
    "load_backend",
    "read_gguf_shape",
]
