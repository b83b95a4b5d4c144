"""Qwen3.5 / 3.6 dense (Qwen3_5ForCausalLM): Gated DeltaNet layers with full attention every 4th
layer (core/gguf/arch/deltanet.py), gated full attention (q_proj rows hold queries and gates),
per-head q/k norms, partial rotary with interleaved M-RoPE sections, one MTP block
(conversion/qwen.py Qwen3_5TextModel)."""

from __future__ import annotations

from quantpress.core.gguf.arch import KV, TEXT_HPARAMS, ArchSpec, Config
from quantpress.core.gguf.arch.deltanet import DELTANET_HPARAMS, MTP_COUNT_KEY, deltanet_kv, linear_attn_rules


def qwen35_kv(config: Config) -> list[KV]:
    return deltanet_kv(config, mrope=True)


SPEC = ArchSpec(
    name="qwen35",
    gguf_arch="qwen35",
    hf_classes=("Qwen3_5ForCausalLM", "Qwen3_5ForConditionalGeneration"),
    hparams=TEXT_HPARAMS + DELTANET_HPARAMS,
    norm_offset=1.0,
    norm_offset_skip=("linear_attn.norm.weight",),
    extra_kv=qwen35_kv,
    nextn_key=MTP_COUNT_KEY,
    nextn_write_zero=False,
    tensor_rules=linear_attn_rules(reorder_v=True),
)
