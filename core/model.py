"""What we know about a model before touching its weights: the shared description that intake
(core/inspect.py), the estimator, the converter and the GUI all pass around."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SourceKind(str, enum.Enum):
    HF_FOLDER = "hf_folder"  # local folder with config.json and safetensors
    GGUF = "gguf"  # a local .gguf file
    HUB = "hub"  # a Hugging Face Hub repo id, described from metadata only


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor. ``shape`` is in the source's own order (HF: PyTorch order, rows first;
    GGUF: numpy order as gguf.GGUFReader reports it, i.e. reversed ``ne``). ``dtype`` is the
    source dtype name: 'BF16', 'F16', 'F32' for safetensors, a GGML type name for GGUF."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    n_bytes: int
    file: str = ""  # shard file name (HF) or the GGUF path


@dataclass(frozen=True)
class ModelInfo:
    """A model's architecture and tensor list, read from config/header metadata only."""

    source: str  # what the user gave: a path or a repo id
    kind: SourceKind
    architecture: str  # HF class name (e.g. 'LlamaForCausalLM') or GGUF general.architecture
    gguf_arch: str | None  # llama.cpp architecture name ('llama', 'qwen2', ...) if known
    n_params: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int  # key/query head size
    head_dim_v: int
    hidden_size: int
    ffn_size: int
    vocab_size: int
    context_length: int
    sliding_window: int | None = None  # window size of the SWA layers, if any
    swa_layers: tuple[int, ...] = ()  # indices of sliding-window layers
    # Hybrid models (Gated DeltaNet, Mamba): layers holding a fixed-size recurrent state instead of a
    # KV cache, and that state's bytes per layer and sequence (core/memory.py recurrent_state_bytes).
    recurrent_layers: tuple[int, ...] = ()
    recurrent_state_bytes: int = 0
    n_nextn_layers: int = 0  # trailing MTP blocks counted in n_layers (GGUF): llama.cpp gives them no cache
    # Multi-head latent attention (DeepSeek-V2/V3, llama.cpp 'deepseek2'): llama.cpp caches one row of
    # this width per token and layer (kv_lora_rank + qk_rope_head_dim: the compressed latent and the
    # shared RoPE key) and no V at all (llama-kv-cache.cpp: has_v = !is_mla). 0: ordinary K/V per head.
    mla_kv_width: int = 0
    # Layers whose cache widths differ (Gemma 4: sliding and global head sizes and KV heads): per layer
    # (K width, V width) summed over KV heads; () when every layer has head_dim * n_kv_heads.
    kv_widths: tuple[tuple[int, int], ...] = ()
    n_kv_shared_layers: int = 0  # trailing layers reusing an earlier layer's cache (Gemma 4): none of their own
    tied_embeddings: bool = False
    n_experts: int = 0
    n_experts_used: int = 0
    dtype: str = "BF16"  # dominant weight dtype ('BF16', 'F16', 'F32' or a GGML type name)
    tensors: tuple[TensorInfo, ...] = ()
    convertible: bool = True
    not_convertible_reason: str = ""
    local_path: Path | None = None  # folder or file on disk (None for Hub metadata-only)
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    name: str = ""  # a display name (folder or repo name, or general.name)

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)
