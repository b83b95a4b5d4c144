"""Mistral 3 (Mistral Small 3.x, Devstral, Magistral: Mistral3ForConditionalGeneration; Ministral 3:
Ministral3ForCausalLM): the language model is LLaMA-shaped (q/k un-permuted) under llama.cpp's
architecture 'mistral3'; the Pixtral vision tower and projector are left out of the text GGUF.
Ministral 3's yarn rope adds its log multiplier and attention temperature (conversion/mistral3.py)."""

from __future__ import annotations

from dataclasses import replace

from quantpress.core.gguf.arch import KV, Config, head_dim, rope_scaling
from quantpress.core.gguf.arch.llama import SPEC as LLAMA


def _mistral3_kv(config: Config) -> list[KV]:
    out: list[KV] = [("rope.dimension_count", head_dim(config), "UINT32")]
    if config.get("model_type") == "ministral3":
        rs = rope_scaling(config)
        out += [("rope.scaling.yarn_log_multiplier", float(rs["mscale_all_dim"]), "FLOAT32"),
                ("attention.temperature_scale", float(rs["llama_4_scaling_beta"]), "FLOAT32")]
    return out


SPEC = replace(LLAMA, name="mistral3", gguf_arch="mistral3",
               hf_classes=("Mistral3ForConditionalGeneration", "Ministral3ForCausalLM"), extra_kv=_mistral3_kv)
