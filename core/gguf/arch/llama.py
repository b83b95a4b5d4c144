"""LLaMA family (Llama 2/3.x, SmolLM/SmolLM2, TinyLlama): interleaved RoPE, so HF's rotary
permutation of q_proj/k_proj is undone; Llama 3.1+ 'llama3' rope scaling becomes a rope_freqs
tensor (conversion/llama.py LlamaModel)."""

from __future__ import annotations

import math
from typing import Any

from quantpress.core.gguf.arch import KV, TEXT_HPARAMS, ArchSpec, Config, head_dim, rope_scaling, rope_theta


def _rope_dims(config: Config) -> list[KV]:
    return [("rope.dimension_count", head_dim(config), "UINT32")]


def llama3_rope_freqs(config: Config) -> dict[str, Any]:
    """The 'llama3' frequency factors (one per rotary pair), or nothing for other rope types."""
    import numpy as np

    rs = rope_scaling(config)
    if str(rs.get("rope_type", rs.get("type", ""))).lower() != "llama3":
        return {}
    base, dim = rope_theta(config, 10000.0) or 10000.0, head_dim(config)
    factor = rs.get("factor", 8.0)
    low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old_ctx = rs.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (np.float32(i) / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return {"rope_freqs.weight": np.asarray(out, dtype=np.float32)}


SPEC = ArchSpec(
    name="llama",
    gguf_arch="llama",
    hf_classes=("LlamaForCausalLM", "LLaMAForCausalLM"),
    hparams=TEXT_HPARAMS,
    permute_qk=True,
    extra_kv=_rope_dims,
    write_vocab_size=True,
    extra_tensors=llama3_rope_freqs,
)
