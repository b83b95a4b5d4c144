"""SmolLM3 (SmolLM3ForCausalLM): LLaMA layers where every 4th layer skips RoPE (NoPE); llama.cpp's
smollm3 graph hard-codes that step (src/models/smollm3.cpp: n_no_rope_layer_step = 4), so a
config with another no-rope pattern is refused rather than converted into a different model
(conversion/llama.py SmolLM3Model)."""

from __future__ import annotations

from dataclasses import replace

from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.arch import KV, Config, head_dim
from quantpress.core.gguf.arch.llama import SPEC as LLAMA

NO_ROPE_STEP = 4  # llama.cpp: layer il uses RoPE unless (il + 1) % 4 == 0


def _smollm3_kv(config: Config) -> list[KV]:
    n_layers = int(config["num_hidden_layers"])
    llama_cpp = [int((il + 1) % NO_ROPE_STEP != 0) for il in range(n_layers)]
    ours = config.get("no_rope_layers")
    if ours is not None and [int(bool(v)) for v in ours] != llama_cpp:
        raise UnsupportedArchitecture(
            f"SmolLM3 config no_rope_layers {list(ours)} differs from llama.cpp's fixed pattern (RoPE skipped on "
            f"every {NO_ROPE_STEP}th layer: {llama_cpp}); llama.cpp would run a different model")
    return [("rope.dimension_count", head_dim(config), "UINT32")]


SPEC = replace(LLAMA, name="smollm3", gguf_arch="smollm3", hf_classes=("SmolLM3ForCausalLM",), extra_kv=_smollm3_kv)
