"""Qwen3.5 / 3.6 MoE (Qwen3_5MoeForCausalLM): Qwen3.5's hybrid layers (core/gguf/arch/qwen35.py)
with every MLP a router over routed experts plus a gated shared expert, as Qwen2-MoE
(conversion/qwen.py Qwen3_5MoeTextModel)."""

from __future__ import annotations

from quantpress.core.gguf.arch import MOE_HPARAMS, TEXT_HPARAMS, ArchSpec, ExpertSpec
from quantpress.core.gguf.arch.deltanet import DELTANET_HPARAMS, MTP_COUNT_KEY, linear_attn_rules
from quantpress.core.gguf.arch.qwen3moe import MOE_FFN_HPARAMS
from quantpress.core.gguf.arch.qwen35 import qwen35_kv

SPEC = ArchSpec(
    name="qwen35moe",
    gguf_arch="qwen35moe",
    hf_classes=("Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration"),
    hparams=TEXT_HPARAMS + MOE_HPARAMS + MOE_FFN_HPARAMS + DELTANET_HPARAMS,
    norm_offset=1.0,
    norm_offset_skip=("linear_attn.norm.weight",),
    extra_kv=qwen35_kv,
    experts=ExpertSpec(),
    nextn_key=MTP_COUNT_KEY,
    nextn_write_zero=False,
    tensor_rules=linear_attn_rules(reorder_v=True),
)
