"""Gemma 4 (Gemma4ForCausalLM; the text model of Gemma4ForConditionalGeneration): Gemma 3's layout with
plain w norms (no +1), sliding layers with their own head size (``head_dim``) and global layers with a
larger one (``global_head_dim`` or ``per_layer_config``) and, with ``attention_k_eq_v``, fewer KV heads
and no v_proj; per-layer embeddings (E2B/E4B: ``embed_tokens_per_layer`` plus a gate and projection in
every block); KV-shared trailing layers (no k/v of their own, reusing the last producer of their type)
with double-wide feed-forwards when ``use_double_wide_mlp``; a learned ``layer_scalar`` per block; and
"proportional" RoPE on global layers, which llama.cpp runs as full-width NeoX RoPE with a generated
``rope_freqs`` tensor whose unrotated pairs get factor 1e30 (conversion/gemma.py Gemma4Model). Its
vocabulary is tokenizer.json's SentencePiece-style BPE, llama.cpp tokenizer model 'gemma4'.
The mixture-of-experts release (26B-A4B, ``enable_moe_block``) adds a router (its own input scale and
per-expert output scales) and stacked experts beside the dense MLP, kept as transformers stores them."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.arch import KV, Config, TensorRule
from quantpress.core.gguf.arch.gemma3 import SPEC as GEMMA3
from quantpress.core.gguf.arch.gemma3 import _gemma3_kv

FULL, SLIDING = "full_attention", "sliding_attention"


def _full_layer_value(config: Config, key: str, top_key: str) -> Any:
    """A global layer's override (``top_key`` at the top level, else the first full_attention entry
    of per_layer_config that sets ``key``), as llama.cpp's converter reads it; None when absent."""
    if config.get(top_key) is not None:
        return config[top_key]
    types = list(config.get("layer_types") or [])
    for idx, layer in (config.get("per_layer_config") or {}).items():
        i = int(idx)
        if i < len(types) and types[i] == FULL and isinstance(layer, dict) and key in layer:
            return layer[key]
    return None


def _check(config: Config) -> None:
    """Refuse what llama.cpp's gemma4 graph cannot express, so no GGUF computes another model."""
    types = list(config.get("layer_types") or [])
    if len(types) != int(config["num_hidden_layers"]) or set(types) - {FULL, SLIDING}:
        raise UnsupportedArchitecture(
            "Gemma 4 config.json needs layer_types with one 'sliding_attention' or 'full_attention' per layer")
    # llama.cpp keeps one head size and KV-head count per layer kind; a per-layer override that differs
    # within a kind (or touches sliding layers) would be silently flattened.
    seen: dict[str, dict[str, Any]] = {}
    for idx, layer in (config.get("per_layer_config") or {}).items():
        i = int(idx)
        kind = types[i] if i < len(types) else SLIDING
        values = {k: v for k, v in (layer or {}).items() if k in ("head_dim", "num_key_value_heads")}
        if kind == SLIDING and any(v != config.get(k) for k, v in values.items()):
            raise UnsupportedArchitecture(f"Gemma 4 per_layer_config overrides sliding layer {i}; llama.cpp "
                                          "gives every sliding layer the top-level head_dim and KV heads")
        if seen.setdefault(kind, values) != values:
            raise UnsupportedArchitecture(f"Gemma 4 per_layer_config gives layer {i} other sizes than the "
                                          f"earlier {kind} layers; llama.cpp has one size per layer kind")
    rope_full = (config.get("rope_parameters") or {}).get(FULL) or {}
    if rope_full.get("rope_type", "default") not in ("proportional", "default"):
        raise UnsupportedArchitecture(f"Gemma 4 global-layer rope_type '{rope_full.get('rope_type')}' is not "
                                      "one llama.cpp's gemma4 graph runs (proportional)")


def head_dim_full(config: Config) -> int:
    """Head size of the global (full-attention) layers."""
    value = _full_layer_value(config, "head_dim", "global_head_dim")
    return int(value if value is not None else config.get("head_dim", 256))


def kv_heads_full(config: Config) -> int | None:
    """KV heads of the global layers when the config sets them apart (attention_k_eq_v), else None."""
    value = _full_layer_value(config, "num_key_value_heads", "num_global_key_value_heads")
    return None if value is None else int(value)


def _gemma4_kv(config: Config) -> list[KV]:
    _check(config)
    types = list(config["layer_types"])
    swa = [t == SLIDING for t in types]
    n_layers, n_shared = int(config["num_hidden_layers"]), int(config.get("num_kv_shared_layers") or 0)
    hd_full, hd_swa = head_dim_full(config), int(config.get("head_dim", 256))
    out: list[KV] = _gemma3_kv(config) + [
        ("attention.shared_kv_layers", n_shared, "UINT32"),
        ("embedding_length_per_layer_input", int(config.get("hidden_size_per_layer_input") or 0), "UINT32"),
        ("attention.sliding_window_pattern", swa, "ARRAY[BOOL]"),
        ("attention.key_length", hd_full, "UINT32"), ("attention.value_length", hd_full, "UINT32"),
        ("attention.key_length_swa", hd_swa, "UINT32"), ("attention.value_length_swa", hd_swa, "UINT32"),
    ]
    if config.get("use_double_wide_mlp"):  # KV-shared layers have twice the feed-forward width
        n_ff = int(config["intermediate_size"])
        out.append(("feed_forward_length", [n_ff * (2 if i >= n_layers - n_shared else 1) for i in range(n_layers)],
                    "ARRAY[INT32]"))
    kv_full, kv_swa = kv_heads_full(config), config.get("num_key_value_heads")
    if kv_full is not None and kv_swa is not None:
        out.append(("attention.head_count_kv", [int(kv_swa) if s else kv_full for s in swa], "ARRAY[INT32]"))
    # Global layers rotate all of their head (the unrotated pairs are masked by rope_freqs); sliding
    # layers by the top-level partial factor, which Gemma 4 configs leave at 1.
    factor = float((config.get("rope_parameters") or {}).get("partial_rotary_factor", 1.0))
    out += [("rope.dimension_count", hd_full, "UINT32"), ("rope.dimension_count_swa", int(hd_swa * factor), "UINT32")]
    return out + _moe_kv(config)


def gemma4_rope_freqs(config: Config) -> dict[str, Any]:
    """rope_freqs for the global layers: factor 1 on the rotated pairs, 1e30 (no rotation) on the
    rest, so ggml's NeoX RoPE over the whole head equals HF's proportional RoPE (cc00..ss00..)."""
    import numpy as np

    rope_full = (config.get("rope_parameters") or {}).get(FULL) or {}
    hd = head_dim_full(config)
    n_rot = int(hd * float(rope_full.get("partial_rotary_factor", 1.0)) / 2)
    return {"rope_freqs.weight": np.asarray([1.0] * n_rot + [1e30] * (hd // 2 - n_rot), dtype=np.float32)}


def kv_layout(config: Config) -> tuple[tuple[tuple[int, int], ...], int]:
    """Per layer (K, V) cache widths (head size times KV heads of its kind; attention_k_eq_v keeps V
    as wide as K) and the number of trailing KV-shared layers, for the memory estimate."""
    kv_swa, kv_full = int(config.get("num_key_value_heads") or config["num_attention_heads"]), kv_heads_full(config)
    hd_swa, hd_full = int(config.get("head_dim", 256)), head_dim_full(config)
    widths = tuple((hd_full * (kv_full or kv_swa),) * 2 if t == FULL else (hd_swa * kv_swa,) * 2
                   for t in config.get("layer_types") or [])
    return widths, int(config.get("num_kv_shared_layers") or 0)


Outputs = list[tuple[str, tuple[int, ...], tuple[str, ...]]]


def _as_weight(name: str, shape: tuple[int, ...], config: Config) -> Outputs:
    # bare parameters in the checkpoint (layer_scalar; the MoE block's stacked experts, which llama.cpp
    # keeps as they are: gate and up fused, ffn_gate_up_exps [E, 2F, D]); gguf-py's table maps them as weights
    return [(name + ".weight", shape, ())]


def _router_scale(name: str, shape: tuple[int, ...], config: Config) -> Outputs:
    # the router's input scale [D] and its per-expert output scale [E]: llama.cpp's ffn_gate_inp.scale and
    # ffn_down_exps.scale (names gguf-py's table lacks, so written as GGUF names)
    i = re.search(r"layers\.(\d+)\.", name)
    assert i is not None  # the rule's pattern matched a layer tensor
    gname = "ffn_down_exps" if name.endswith("per_expert_scale") else "ffn_gate_inp"
    return [(f"blk.{i.group(1)}.{gname}.scale", shape, ())]


def _moe_kv(config: Config) -> list[KV]:
    """Expert counts and width of the MoE release (26B-A4B), as TextModel and Gemma4Model write them."""
    if not config.get("enable_moe_block"):
        return []
    return [("expert_count", int(config["num_experts"]), "UINT32"),
            ("expert_used_count", int(config["top_k_experts"]), "UINT32"),
            ("expert_feed_forward_length", int(config["moe_intermediate_size"]), "UINT32")]


def gemma4_tensors(config: Config) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of a standard Gemma 4 text checkpoint (transformers' Gemma4TextModel), for
    planning from config.json alone: every layer's shapes follow its kind and whether it shares KV."""
    _check(config)
    h, f, n_head = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["num_attention_heads"])
    n_layers, n_shared = int(config["num_hidden_layers"]), int(config.get("num_kv_shared_layers") or 0)
    ple, kv_full = int(config.get("hidden_size_per_layer_input") or 0), kv_heads_full(config)
    vocab = int(config["vocab_size"])
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, h)), ("model.norm.weight", (h,))]
    if not config.get("tie_word_embeddings", True):
        out.append(("lm_head.weight", (vocab, h)))
    if ple:
        out += [("model.embed_tokens_per_layer.weight", (int(config.get("vocab_size_per_layer_input") or vocab),
                                                         n_layers * ple)),
                ("model.per_layer_model_projection.weight", (n_layers * ple, h)),
                ("model.per_layer_projection_norm.weight", (ple,))]
    for i, kind in enumerate(config["layer_types"]):
        full, shared = kind == FULL, i >= n_layers - n_shared
        hd = head_dim_full(config) if full else int(config.get("head_dim", 256))
        kv = (kv_full if full and kv_full is not None else int(config.get("num_key_value_heads") or n_head)) * hd
        ff = 2 * f if shared and config.get("use_double_wide_mlp") else f
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (n_head * hd, h)), (p + "self_attn.q_norm.weight", (hd,)),
                (p + "self_attn.o_proj.weight", (h, n_head * hd)), (p + "layer_scalar", (1,)),
                (p + "mlp.gate_proj.weight", (ff, h)), (p + "mlp.up_proj.weight", (ff, h)),
                (p + "mlp.down_proj.weight", (h, ff))]
        out += [(p + n + ".weight", (h,)) for n in ("input_layernorm", "post_attention_layernorm",
                                                    "pre_feedforward_layernorm", "post_feedforward_layernorm")]
        if not shared:  # KV-shared layers reuse an earlier layer's keys and values: no k/v weights
            out += [(p + "self_attn.k_proj.weight", (kv, h)), (p + "self_attn.k_norm.weight", (hd,))]
            if not (full and config.get("attention_k_eq_v")):  # k_eq_v: global layers' values are their keys
                out.append((p + "self_attn.v_proj.weight", (kv, h)))
        if config.get("enable_moe_block"):  # router, stacked experts and their norms beside the dense MLP
            n_exp, m = int(config["num_experts"]), int(config["moe_intermediate_size"])
            out += [(p + "router.proj.weight", (n_exp, h)), (p + "router.scale", (h,)),
                    (p + "router.per_expert_scale", (n_exp,)), (p + "experts.gate_up_proj", (n_exp, 2 * m, h)),
                    (p + "experts.down_proj", (n_exp, h, m))]
            out += [(p + n + ".weight", (h,)) for n in ("post_feedforward_layernorm_1", "post_feedforward_layernorm_2",
                                                        "pre_feedforward_layernorm_2")]
        if ple:
            out += [(p + "per_layer_input_gate.weight", (ple, h)), (p + "per_layer_projection.weight", (h, ple)),
                    (p + "post_per_layer_input_norm.weight", (h,))]
    return out


SPEC = replace(
    GEMMA3,
    name="gemma4",
    gguf_arch="gemma4",
    hf_classes=("Gemma4ForCausalLM", "Gemma4ForConditionalGeneration"),
    norm_offset=0.0,  # Gemma4RMSNorm multiplies by w itself
    extra_kv=_gemma4_kv,
    extra_tensors=gemma4_rope_freqs,
    tensor_rules=(TensorRule(r"\.(layer_scalar|experts\.gate_up_proj|experts\.down_proj)$", _as_weight),
                  TensorRule(r"\.router\.(scale|per_expert_scale)$", _router_scale)),
    tokenizer_model="gemma4",
    hub_tensors=gemma4_tensors,
)
