"""Qwen3-Next (Qwen3NextForCausalLM): the first Gated DeltaNet hybrid (core/gguf/arch/deltanet.py)
with Qwen2-MoE style experts and shared expert. Unlike Qwen3.5: no M-RoPE, fused in_proj_qkvz and
in_proj_ba, no V-head reorder, and the config does not count its MTP layers (they are counted from
the checkpoint's mtp.layers.* tensors) (conversion/qwen.py Qwen3NextModel)."""

from __future__ import annotations

from quantpress.core.gguf.arch import KV, MOE_HPARAMS, TEXT_HPARAMS, ArchSpec, Config, ExpertSpec
from quantpress.core.gguf.arch.deltanet import (
    DELTANET_HPARAMS,
    MTP_COUNT_KEY,
    MTP_LAYER_PATTERN,
    deltanet_kv,
    linear_attn_rules,
)
from quantpress.core.gguf.arch.qwen3moe import MOE_FFN_HPARAMS


def _kv(config: Config) -> list[KV]:
    return deltanet_kv(config, mrope=False)


SPEC = ArchSpec(
    name="qwen3next",
    gguf_arch="qwen3next",
    hf_classes=("Qwen3NextForCausalLM",),
    hparams=TEXT_HPARAMS + MOE_HPARAMS + MOE_FFN_HPARAMS + DELTANET_HPARAMS,
    norm_offset=1.0,
    norm_offset_skip=("linear_attn.norm.weight",),
    extra_kv=_kv,
    experts=ExpertSpec(),
    nextn_key=MTP_COUNT_KEY,
    nextn_write_zero=False,
    nextn_pattern=MTP_LAYER_PATTERN,
    tensor_rules=linear_attn_rules(reorder_v=False),
)
