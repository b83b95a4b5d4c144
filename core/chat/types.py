"""Data that crosses the chat API boundary: settings, messages, per-reply statistics.

All frozen dataclasses (the GUI and ``--json`` use them as they are).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

# Called once per generated token with that token's text. The text may be "" when a token is only
# part of a multi-byte UTF-8 character; the remaining bytes arrive with the next token.
TokenCallback = Callable[[str], None]


class Role(str, enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    images: tuple[str, ...] = ()  # image files shown with this (user) message, before its text


class KVCacheType(str, enum.Enum):
    """KV cache element types offered in the UI (llama.cpp allows a few more; these are the useful ones)."""

    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"


class OverflowPolicy(str, enum.Enum):
    """What to do when the conversation no longer fits in the context."""

    DROP_OLDEST = "drop_oldest"  # forget the oldest turns, keep the system prompt
    ERROR = "error"  # raise ContextOverflow and let the user clear the chat


@dataclass(frozen=True)
class ChatSettings:
    """Everything a user can set for a chat. ``gpu_layers=None`` means "decide": the estimator's
    verdict when it offers one, else 0 on a machine without GPU offload. ``threads=None``: the
    runtime's default. ``n_cpu_moe`` (with ``gpu_layers`` None: every layer
    on the GPU) keeps the routed experts of the first N blocks in RAM; both None: the estimator's
    placement, "GPU + experts in RAM" when a MoE model needs it. ``seed=None``: a random seed each time. An empty system prompt sends no system
    message (many chat templates then insert the model's own default one)."""

    system_prompt: str = ""  # empty: no system message, so the template's own default applies
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None
    ctx_tokens: int = 2048
    gpu_layers: int | None = None
    n_cpu_moe: int | None = None  # MoE: routed experts of blocks 0..N-1 in RAM (llama.cpp --n-cpu-moe N)
    threads: int | None = None
    kv_type_k: KVCacheType = KVCacheType.F16
    kv_type_v: KVCacheType = KVCacheType.F16
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST

    @property
    def needs_flash_attention(self) -> bool:
        """llama.cpp can only quantize the V cache when flash attention is on
        (llama-context.cpp refuses a quantized V cache without it)."""
        return self.kv_type_v != KVCacheType.F16


@dataclass(frozen=True)
class MemoryUse:
    """Memory a loaded model uses. ``kv_cache_bytes`` is computed from the model's shape and the
    cache types exactly as llama.cpp sizes its KV buffer; ``rss_delta_bytes`` is the measured growth
    of this process's resident memory while loading (model pages mapped lazily may add more later)."""

    model_bytes: int
    kv_cache_bytes: int
    rss_delta_bytes: int
    placement: str = ""  # where the weights were loaded, in words (e.g. "GPU + experts of the first 3 ... in RAM")

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.kv_cache_bytes


@dataclass(frozen=True)
class ReplyStats:
    """Timing of one reply. Tokens per second are None when there was nothing to time."""

    prompt_tokens: int
    generated_tokens: int
    prompt_seconds: float
    generation_seconds: float
    finish_reason: str  # "stop" (end of turn), "length" (max tokens or context full), "cancelled"
    dropped_turns: int = 0  # turns forgotten to make room (OverflowPolicy.DROP_OLDEST)

    @property
    def prompt_tokens_per_second(self) -> float | None:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 and self.prompt_tokens else None

    @property
    def generation_tokens_per_second(self) -> float | None:
        # The first token comes out of the prompt pass; generation speed counts the ones after it.
        n = self.generated_tokens - 1
        return n / self.generation_seconds if self.generation_seconds > 0 and n > 0 else None


@dataclass(frozen=True)
class Reply:
    text: str
    tokens: int
    stats: ReplyStats
