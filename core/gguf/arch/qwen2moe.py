"""Qwen1.5/Qwen2-MoE: Qwen2 attention (q/k/v biases) with routed experts plus one shared expert
(ffn_{gate,up,down}_shexp) scaled by a sigmoid gate (ffn_gate_inp_shexp, kept F32); widths
moe_intermediate_size and shared_expert_intermediate_size (conversion/qwen.py Qwen2MoeModel)."""

from __future__ import annotations

from dataclasses import replace

from quantpress.core.gguf.arch import ExpertSpec
from quantpress.core.gguf.arch.qwen3moe import SPEC as QWEN3MOE

# llama.cpp's qwen2moe graph does not renormalise the top-k weights (norm_topk_prob false).
SPEC = replace(QWEN3MOE, name="qwen2moe", gguf_arch="qwen2moe", hf_classes=("Qwen2MoeForCausalLM",),
               experts=ExpertSpec(norm_topk=False))
