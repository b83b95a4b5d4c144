"""Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B): Qwen3 attention (per-head q/k norms, explicit head_dim)
with every layer's MLP a router ``mlp.gate`` (ffn_gate_inp, kept F32) over routed experts
(ffn_{gate,up,down}_exps); expert width moe_intermediate_size (conversion/qwen.py Qwen3MoeModel,
which inherits Qwen2MoeModel's expert stacking)."""

from __future__ import annotations

from quantpress.core.gguf.arch import (
    MOE_HPARAMS,
    TEXT_HPARAMS,
    ArchSpec,
    ExpertSpec,
    HParam,
    gating_func_kv,
)

MOE_FFN_HPARAMS = (
    HParam("expert_feed_forward_length", ("moe_intermediate_size",)),
    HParam("expert_shared_feed_forward_length", ("shared_expert_intermediate_size",)),
)


SPEC = ArchSpec(name="qwen3moe", gguf_arch="qwen3moe", hf_classes=("Qwen3MoeForCausalLM",),
                hparams=TEXT_HPARAMS + MOE_HPARAMS + MOE_FFN_HPARAMS, extra_kv=gating_func_kv, experts=ExpertSpec())
