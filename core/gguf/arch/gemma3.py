"""Gemma 3 text (Gemma3ForCausalLM): RMSNorm is x*(1+w), so +1 goes into every norm weight;
embeddings are tied and scaled by sqrt(n_embd) at run time (llama.cpp's graph does it); local
(sliding-window) and global layers have their own rope bases (conversion/gemma.py Gemma3Model).
Gemma3ForConditionalGeneration (Gemma 3 4B-27B) is the same text model under a SigLIP vision tower
and projector, which the text GGUF leaves out (source.is_multimodal_tensor)."""

from __future__ import annotations

from quantpress.core.gguf.arch import KV, TEXT_HPARAMS, ArchSpec, Config, HParam, rope_theta


def _gemma3_kv(config: Config) -> list[KV]:
    out: list[KV] = [
        ("attention.key_length", int(config.get("head_dim", 256)), "UINT32"),
        ("attention.value_length", int(config.get("head_dim", 256)), "UINT32"),
        ("rope.freq_base", float(rope_theta(config, 1_000_000.0) or 1_000_000.0), "FLOAT32"),
    ]
    local = rope_theta(config, None, sliding=True)
    if local is not None:
        out.append(("rope.freq_base_swa", float(local), "FLOAT32"))
    if config.get("final_logit_softcapping"):
        out.append(("final_logit_softcapping", float(config["final_logit_softcapping"]), "FLOAT32"))
    if config.get("sliding_window_pattern") != 1 and config.get("sliding_window"):
        out.append(("attention.sliding_window", int(config["sliding_window"]), "UINT32"))
        # The exact per-layer pattern from layer_types, so llama.cpp need not assume "every 6th".
        if config.get("layer_types"):
            pattern = [t == "sliding_attention" for t in config["layer_types"]]
            out.append(("attention.sliding_window_pattern", pattern, "ARRAY[BOOL]"))
    return out


_DEFAULTS = (
    HParam("context_length", ("max_position_embeddings",), default=131072),
    HParam("attention.head_count", ("num_attention_heads",), default=8),
    HParam("attention.head_count_kv", ("num_key_value_heads",), default=4),
    HParam("attention.layer_norm_rms_epsilon", ("rms_norm_eps",), "FLOAT32", default=1e-6),
)
_OVERRIDDEN = {h.key for h in _DEFAULTS}

SPEC = ArchSpec(
    name="gemma3",
    gguf_arch="gemma3",
    hf_classes=("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"),
    hparams=tuple(h for h in TEXT_HPARAMS if h.key not in _OVERRIDDEN) + _DEFAULTS,
    norm_offset=1.0,
    truncate_vocab=True,
    spm_add_space_prefix=False,
    extra_kv=_gemma3_kv,
)
