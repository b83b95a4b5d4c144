"""Qwen3-VL MoE text model (Qwen3VLMoeForConditionalGeneration: Qwen3-VL-30B-A3B, 235B-A22B), llama.cpp
arch 'qwen3vlmoe': Qwen3-VL's attention (q/k norms, interleaved M-RoPE, deepstack layers; qwen3vl.py)
with every MLP a softmax router over routed experts whose top-k weights are renormalised, as Qwen3-MoE
(conversion/qwen3vl.py Qwen3VLMoeTextModel). The experts are stored fused and transposed
(transposed_experts.py; transformers' own in-memory layout is read too). llama.cpp's graph makes every
layer MoE, so a config with dense layers (mlp_only_layers, decoder_sparse_step > 1) is refused."""

from __future__ import annotations

from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.arch import (
    KV,
    MOE_HPARAMS,
    TEXT_HPARAMS,
    ArchSpec,
    Config,
    ExpertSpec,
    gating_func_kv,
)
from quantpress.core.gguf.arch.qwen3moe import MOE_FFN_HPARAMS
from quantpress.core.gguf.arch.qwen3vl import deepstack_kv
from quantpress.core.gguf.arch.transposed_experts import transposed_expert_splits


def _qwen3vlmoe_kv(config: Config) -> list[KV]:
    if config.get("mlp_only_layers") or int(config.get("decoder_sparse_step") or 1) != 1:
        raise UnsupportedArchitecture(
            f"Qwen3-VL MoE config has dense layers (mlp_only_layers {config.get('mlp_only_layers')}, "
            f"decoder_sparse_step {config.get('decoder_sparse_step')}); llama.cpp's qwen3vlmoe graph makes every "
            "layer MoE, so it would run a different model")
    return [*deepstack_kv(config), *gating_func_kv(config)]


SPEC = ArchSpec(name="qwen3vlmoe", gguf_arch="qwen3vlmoe", hf_classes=("Qwen3VLMoeForConditionalGeneration",),
                hparams=TEXT_HPARAMS + MOE_HPARAMS + MOE_FFN_HPARAMS, extra_kv=_qwen3vlmoe_kv, experts=ExpertSpec(),
                splits=transposed_expert_splits("moe_intermediate_size", in_memory_layout=True))
