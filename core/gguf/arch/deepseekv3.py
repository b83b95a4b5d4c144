"""DeepSeek-V3/R1 and Kimi-K2 (DeepseekV3ForCausalLM; llama.cpp arch 'deepseek2'): multi-head latent
attention (MLA), the first ``first_k_dense_replace`` layers dense, then a sigmoid router choosing
within expert groups with a score-correction bias (exp_probs_b), routed experts plus shared experts
(*_shexp), top-k weights renormalised and scaled by ``routed_scaling_factor``
(conversion/deepseek.py DeepseekV2Model).

MLA as llama.cpp runs it: queries through a LoRA pair (q_a -> q_a_norm -> q_b, rank q_lora_rank),
keys and values from one compressed latent (kv_a_mqa -> kv_a_norm, rank kv_lora_rank) shared by all
heads, so the GGUF says one KV head with key length kv_lora_rank + qk_rope_head_dim and value length
kv_lora_rank; the per-head lengths after decompression are the ``_mla`` keys. ``kv_b_proj``
[H * (nope + v), rank] is split per head into ``attn_k_b`` [H, rank, nope] (transposed, for the
absorbed key product) and ``attn_v_b`` [H, v, rank]. RoPE runs on interleaved pairs (llama.cpp's
normal mode), as transformers' ``rope_interleave`` does, so no row permutation. Layers past
num_hidden_layers (the MTP head of the released checkpoints) are dropped, as llama.cpp's converter
does."""

from __future__ import annotations

from quantpress.core.gguf import arch
from quantpress.core.gguf.arch import KV, Config, Split, SplitPart


def _kv_b(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
    n_head, rank = int(config["num_attention_heads"]), shape[1]
    nope, v = int(config["qk_nope_head_dim"]), int(config["v_head_dim"])
    if shape[0] != n_head * (nope + v):
        from quantpress.core.errors import InvalidModel

        raise InvalidModel(f"kv_b_proj {shape} does not hold {n_head} heads of {nope} + {v} rows")
    mla = f"{n_head}:{nope}:{v}"
    return [(".self_attn.k_b_proj.weight", (n_head, rank, nope), f"mla_k_b:{mla}"),
            (".self_attn.v_b_proj.weight", (n_head, v, rank), f"mla_v_b:{mla}")]


def _deepseek_kv(config: Config) -> list[KV]:
    rank, rope = int(config.get("kv_lora_rank") or 512), int(config["qk_rope_head_dim"])
    has_moe = config.get("n_routed_experts") is not None
    dense = config.get("first_k_dense_replace")
    out: list[KV] = [
        ("attention.head_count_kv", 1, "UINT32"),  # MLA runs as multi-query attention over the latent
        ("leading_dense_block_count", int(dense if dense is not None else (0 if has_moe else config["num_hidden_layers"])),
         "UINT32"),
        ("attention.kv_lora_rank", rank, "UINT32"),
        ("attention.key_length", rank + rope, "UINT32"),
        ("attention.value_length", rank, "UINT32"),
        ("attention.key_length_mla", int(config["qk_nope_head_dim"]) + rope, "UINT32"),
        ("attention.value_length_mla", int(config["v_head_dim"]), "UINT32"),
        ("expert_feed_forward_length", int(config.get("moe_intermediate_size") or config["intermediate_size"]), "UINT32"),
        ("expert_shared_count", int(config.get("n_shared_experts") or 0), "UINT32"),
        ("rope.dimension_count", rope, "UINT32"),
    ]
    if config.get("q_lora_rank") is not None:
        out.append(("attention.q_lora_rank", int(config["q_lora_rank"]), "UINT32"))
    if config.get("routed_scaling_factor") is not None:
        out.append(("expert_weights_scale", float(config["routed_scaling_factor"]), "FLOAT32"))
    if config.get("norm_topk_prob"):
        out.append(("expert_weights_norm", True, "BOOL"))
    mscale_all = arch.rope_scaling(config).get("mscale_all_dim")
    if mscale_all is not None:  # llama.cpp's converter writes 0.1 * mscale_all_dim; its loader divides by 0.1
        out.append(("rope.scaling.yarn_log_multiplier", 0.1 * float(mscale_all), "FLOAT32"))
    return out + arch.gating_func_kv(config)


SPEC = arch.ArchSpec(
    name="deepseekv3",
    gguf_arch="deepseek2",
    hf_classes=("DeepseekV3ForCausalLM",),
    hparams=arch.TEXT_HPARAMS + arch.MOE_HPARAMS + (
        arch.HParam("attention.layer_norm_rms_epsilon", ("rms_norm_eps",), "FLOAT32", default=1e-6),),
    extra_kv=_deepseek_kv,
    write_vocab_size=True,
    experts=arch.ExpertSpec(count_keys=("n_routed_experts",), norm_topk=None),
    splits=(Split(".self_attn.kv_b_proj.weight", _kv_b),),
    skip_extra_layers=True,
)
