"""GLM-4.5/4.6/4.7 MoE (Glm4MoeForCausalLM): NEOX RoPE over half of each head (partial_rotary_factor),
the first ``first_k_dense_replace`` layers dense, then a sigmoid router with a score-correction bias
(exp_probs_b), routed experts and shared experts (*_shexp); next-token-prediction (MTP) layers, stored
as layers n_layer.., become extra blocks counted in block_count with nextn_predict_layers. Special
tokens by text: BOS [gMASK], EOT <|user|>, EOM <|observation|> (conversion/glm.py Glm4MoeModel,
conversion/base.py _set_vocab_glm)."""

from __future__ import annotations

from quantpress.core.gguf.arch import (
    GATING_FUNCS,
    KV,
    MOE_HPARAMS,
    TEXT_HPARAMS,
    ArchSpec,
    Config,
    ExpertSpec,
    HParam,
    head_dim,
    rope_scaling,
)

_GLM_HPARAMS = (
    HParam("expert_feed_forward_length", ("moe_intermediate_size",)),
    HParam("expert_shared_count", ("n_shared_experts",)),
    HParam("leading_dense_block_count", ("first_k_dense_replace",)),
    HParam("expert_weights_scale", ("routed_scaling_factor",), "FLOAT32"),
    HParam("expert_weights_norm", ("norm_topk_prob",), "BOOL"),
)


def _glm_kv(config: Config) -> list[KV]:
    factor = rope_scaling(config).get("partial_rotary_factor", config.get("partial_rotary_factor")) or 0.5
    return [("rope.dimension_count", int(head_dim(config) * float(factor)), "UINT32"),
            ("expert_gating_func", GATING_FUNCS["sigmoid"], "UINT32")]


SPEC = ArchSpec(
    name="glm4moe",
    gguf_arch="glm4moe",
    hf_classes=("Glm4MoeForCausalLM",),
    hparams=TEXT_HPARAMS + MOE_HPARAMS + _GLM_HPARAMS,
    extra_kv=_glm_kv,
    experts=ExpertSpec(count_keys=("n_routed_experts",), norm_topk=None),
    special_tokens=(("bos", "[gMASK]"), ("eot", "<|user|>"), ("unk", "<|endoftext|>"), ("eom", "<|observation|>")),
    nextn_key="num_nextn_predict_layers",
)
