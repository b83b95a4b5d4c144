"""Phi-3 / Phi-3.5 mini: fused qkv_proj -> attn_qkv and gate_up_proj -> ffn_up (llama.cpp splits
them at run time), NEOX RoPE over int(partial_rotary_factor * n_embd) // n_head dims, sliding_window
0 when absent (conversion/phi.py Phi3MiniModel). Long-rope factor tensors are not supported yet."""

from __future__ import annotations

from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.arch import KV, TEXT_HPARAMS, ArchSpec, Config, rope_scaling


def _phi3_kv(config: Config) -> list[KV]:
    rs = rope_scaling(config)
    if rs.get("long_factor"):
        raise UnsupportedArchitecture(
            "Phi-3 checkpoints with long-context rope factors (128k variants) cannot be converted yet; "
            "use a 4k-context Phi-3 model")
    n_embd, n_head = int(config["hidden_size"]), int(config["num_attention_heads"])
    rot = float(rs.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) or 1.0)
    out: list[KV] = [("rope.dimension_count", int(rot * n_embd) // n_head, "UINT32"),
                     ("attention.sliding_window", int(config.get("sliding_window") or 0), "UINT32")]
    orig = rs.get("original_max_position_embeddings", config.get("original_max_position_embeddings"))
    if orig is not None:
        out.append(("rope.scaling.original_context_length", int(orig), "UINT32"))
    return out


SPEC = ArchSpec(name="phi3", gguf_arch="phi3", hf_classes=("Phi3ForCausalLM",), hparams=TEXT_HPARAMS,
                extra_kv=_phi3_kv)
