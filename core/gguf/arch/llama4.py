"""Llama 4 text model (Llama4ForCausalLM, and the language model of Llama4ForConditionalGeneration:
Scout, Maverick), llama.cpp arch 'llama4' (conversion/llama.py Llama4Model).

Every ``interleave_moe_layer_step``-th layer's MLP is a sigmoid router picking one routed expert (its
input scaled by the router weight) plus a shared expert of the same width; the other layers are dense
with ``intermediate_size_mlp`` (which the converter writes as feed_forward_length, the expert width
``intermediate_size`` as expert_feed_forward_length). Experts are stored fused and transposed
(core/gguf/arch/transposed_experts.py). RoPE rotates interleaved pairs (HF's complex rotation), so
q/k are not un-permuted; Llama 3 rope scaling becomes the rope_freqs tensor.

Three things llama.cpp's graph fixes that a config could set otherwise (src/models/llama4.cpp,
llama-hparams.h): every 4th layer skips RoPE and attends globally, the others attend within chunks of
8192 tokens; the NoPE layers' attention temperature uses floor 8192 and scale 0.1; q/k get the
weightless L2 norm on RoPE layers unless the model has 128 experts (Maverick). A config that differs
is refused, as for SmolLM3: llama.cpp would run another model.
"""

from __future__ import annotations

from typing import Any

from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.arch import (
    KV,
    MOE_HPARAMS,
    TEXT_HPARAMS,
    ArchSpec,
    Config,
    ExpertSpec,
    HParam,
    head_dim,
)
from quantpress.core.gguf.arch.llama import llama3_rope_freqs
from quantpress.core.gguf.arch.transposed_experts import transposed_expert_splits

NO_ROPE_STEP = 4  # llama-hparams.h n_no_rope_layer_step: layer il skips RoPE when (il + 1) % 4 == 0
CHUNK_TOKENS = 8192  # src/models/llama4.cpp: n_swa = 8192, chunked attention on the RoPE layers
NO_KQ_NORM_EXPERTS = 128  # use_kq_norm = (type != 17B_128E)
# Config keys whose value llama.cpp's graph fixes (transformers' defaults, the releases' values).
FIXED = (("attention_chunk_size", CHUNK_TOKENS), ("floor_scale", 8192), ("attn_scale", 0.1),
         ("attn_temperature_tuning", True))

HPARAMS = tuple(HParam("feed_forward_length", ("intermediate_size_mlp",)) if hp.key == "feed_forward_length" else hp
                for hp in TEXT_HPARAMS) + MOE_HPARAMS + (
    HParam("expert_feed_forward_length", ("intermediate_size",)),
    HParam("interleave_moe_layer_step", ("interleave_moe_layer_step",), default=1),
)


def _llama_cpp_layers(config: Config) -> dict[str, list[Any]]:
    """Per-layer facts as llama.cpp's graph derives them, under the config keys transformers uses."""
    n_layers, step = int(config["num_hidden_layers"]), int(config.get("interleave_moe_layer_step") or 1)
    rope = [int((il + 1) % NO_ROPE_STEP != 0) for il in range(n_layers)]
    return {"no_rope_layers": rope,
            "layer_types": ["chunked_attention" if r else "full_attention" for r in rope],
            "moe_layers": [il for il in range(n_layers) if (il + 1) % step == 0]}


def _refuse(what: str, ours: object, llama_cpp: object) -> UnsupportedArchitecture:
    return UnsupportedArchitecture(f"Llama 4 config {what} {ours} differs from what llama.cpp's llama4 graph "
                                   f"runs ({llama_cpp}); llama.cpp would run a different model")


def _llama4_kv(config: Config) -> list[KV]:
    all_full = bool(config.get("layer_types")) and all(t == "full_attention" for t in config["layer_types"])
    if not all_full:  # llama.cpp's chunked graph (all-full configs are MobileLLM's, run without chunks)
        for key, want in _llama_cpp_layers(config).items():
            given = config.get(key)  # transformers derives an empty no_rope_layers / missing list itself
            if (given or (key == "moe_layers" and given is not None)) and list(given) != want:
                raise _refuse(key, list(given), want)
        for key, fixed in FIXED:  # bools as transformers reads them (early Llama 4 configs say tuning: 4)
            given = config.get(key)
            if given is not None and (bool(given) if isinstance(fixed, bool) else given) != fixed:
                raise _refuse(key, given, fixed)
    n_expert = int(config.get("num_local_experts") or 0)
    if config.get("use_qk_norm") is not None and bool(config["use_qk_norm"]) != (n_expert != NO_KQ_NORM_EXPERTS):
        raise _refuse("use_qk_norm", config["use_qk_norm"],
                      f"q/k norm {'off' if n_expert == NO_KQ_NORM_EXPERTS else 'on'} with {n_expert} experts")
    out: list[KV] = [("rope.dimension_count", head_dim(config), "UINT32")]
    if all_full:
        out.append(("attention.sliding_window", 0, "UINT32"))  # the converter's marker: no chunked attention
    return out


SPEC = ArchSpec(
    name="llama4",
    gguf_arch="llama4",
    hf_classes=("Llama4ForCausalLM", "Llama4ForConditionalGeneration"),
    hparams=HPARAMS,
    extra_kv=_llama4_kv,
    write_vocab_size=True,
    extra_tensors=llama3_rope_freqs,
    # llama.cpp's graph: sigmoid of the chosen experts' logits, never renormalised
    experts=ExpertSpec(count_keys=("num_local_experts",), norm_topk=False),
    splits=transposed_expert_splits("intermediate_size"),
)
