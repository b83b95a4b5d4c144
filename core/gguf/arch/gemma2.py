"""Gemma 2 (Gemma2ForCausalLM): Gemma's (1 + w) norms with extra post-attention and pre/post
feed-forward norms, tanh soft-capping of attention scores and final logits, every other layer a
sliding-window layer (conversion/gemma.py Gemma2Model). Its converter writes no rope keys
(llama.cpp's default base 10000 is Gemma 2's). llama.cpp scales queries by 1/sqrt(head_dim) (by
n_embd/n_head for the 46-layer 27B), as query_pre_attn_scalar says in the released checkpoints."""

from __future__ import annotations

from quantpress.core.gguf.arch import KV, TEXT_HPARAMS, ArchSpec, Config

# config key -> GGUF key, written when the config sets them (the released checkpoints all do).
_CAPS = (("attn_logit_softcapping", "attn_logit_softcapping"),
         ("final_logit_softcapping", "final_logit_softcapping"))


def _gemma2_kv(config: Config) -> list[KV]:
    out: list[KV] = [(key, float(config[ck]), "FLOAT32") for ck, key in _CAPS if config.get(ck) is not None]
    if config.get("sliding_window"):
        out.append(("attention.sliding_window", int(config["sliding_window"]), "UINT32"))
    return out


SPEC = ArchSpec(
    name="gemma2",
    gguf_arch="gemma2",
    hf_classes=("Gemma2ForCausalLM",),
    hparams=TEXT_HPARAMS,
    norm_offset=1.0,
    spm_add_space_prefix=False,
    extra_kv=_gemma2_kv,
    rope_kv=False,
)
