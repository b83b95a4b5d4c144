"""AWQ scaling groups per architecture: which op's output the per-channel scale is folded into,
which linears it multiplies, and which module's output the grid search compares.

Facts: AutoAWQ awq/models/{llama,mistral,qwen2,qwen3,phi3}.py; Gemma 3 follows llm-compressor's
``_gemma3_mappings`` (no input_layernorm -> q/k/v group: q_norm/k_norm make it worse than RTN) and
folds into its (1 + w) RMSNorm as (1 + w) / s - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantpress.core.errors import UnsupportedArchitecture


@dataclass(frozen=True)
class ScaleGroup:
    """One scaling group; module names are relative to the decoder layer."""

    prev: str  # op whose output is divided by s: an RMSNorm or a linear (its last len(s) rows)
    linears: tuple[str, ...]  # weights multiplied by s along their input columns
    inspect: str  # module whose output the search compares (attention, MLP or the linear itself)
    # Only when prev's scaled rows feed the linears one to one: v_proj -> o_proj without GQA.
    needs_matching_width: bool = False


@dataclass(frozen=True)
class AwqArch:
    groups: tuple[ScaleGroup, ...]
    norm_offset: float = 0.0  # Gemma: the norm multiplies by (offset + w)


_LLAMA = AwqArch((
    ScaleGroup("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn"),
    ScaleGroup("self_attn.v_proj", ("self_attn.o_proj",), "self_attn.o_proj", needs_matching_width=True),
    ScaleGroup("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"),
    ScaleGroup("mlp.up_proj", ("mlp.down_proj",), "mlp.down_proj"),
))

ARCHITECTURES: dict[str, AwqArch] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": _LLAMA,
    "Qwen3ForCausalLM": _LLAMA,
    "Gemma3ForCausalLM": AwqArch((
        ScaleGroup("self_attn.v_proj", ("self_attn.o_proj",), "self_attn.o_proj", needs_matching_width=True),
        ScaleGroup("pre_feedforward_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"),
        ScaleGroup("mlp.up_proj", ("mlp.down_proj",), "mlp.down_proj"),
    ), norm_offset=1.0),
    "Phi3ForCausalLM": AwqArch((
        ScaleGroup("input_layernorm", ("self_attn.qkv_proj",), "self_attn"),
        # v is the last third of qkv_proj's rows; only exact without GQA (qkv out = 3 · o in).
        ScaleGroup("self_attn.qkv_proj", ("self_attn.o_proj",), "self_attn.o_proj", needs_matching_width=True),
        ScaleGroup("post_attention_layernorm", ("mlp.gate_up_proj",), "mlp"),
        # up is the second half of gate_up_proj's rows (Phi3MLP chunks gate, up).
        ScaleGroup("mlp.gate_up_proj", ("mlp.down_proj",), "mlp.down_proj"),
    )),
}

# Linears whose weight range is not clipped (AutoAWQ: "due to qk bmm, it is hard to clip precisely";
# substring match as the reference, so Phi-3's fused qkv_proj is clipped).
NO_CLIP_SUBSTRINGS = ("q_", "k_", "query", "key", "Wqkv")


def unsupported_reason(hf_class: str) -> str | None:
    """Why AWQ refuses ``hf_class`` (None: it has a scaling-group map). Mixture-of-experts families
    get their own message: their routed experts would need per-expert scales and per-expert
    calibration inputs, which this AWQ does not have; their GGUF conversion handles every expert."""
    if hf_class in ARCHITECTURES:
        return None
    from quantpress.core.gguf.arch import spec_for_hf_class

    try:
        spec = spec_for_hf_class(hf_class)
    except UnsupportedArchitecture:
        spec = None
    if spec is not None and spec.experts is not None:
        return (f"AWQ does not support mixture-of-experts models yet: '{hf_class}' ({spec.name}) routes each token "
                "to a few of its experts, and AWQ here has no per-expert scales. Convert it to a GGUF format instead "
                "(e.g. Q4_K_M, with calibration text for per-expert importance), which quantizes every expert")
    return f"AWQ has no scaling-group map for '{hf_class}'; supported: {', '.join(sorted(ARCHITECTURES))}"


def arch_for(hf_class: str) -> AwqArch:
    reason = unsupported_reason(hf_class)
    if reason is not None:
        raise UnsupportedArchitecture(reason)
    return ARCHITECTURES[hf_class]


def matching_width_ok(group: ScaleGroup, prev_out: int, first_in: int) -> bool:
    """v -> o is exact only when the scaled rows are exactly o_proj's inputs (no GQA)."""
    if not group.needs_matching_width:
        return True
    return prev_out == first_in or prev_out == 3 * first_in  # plain v_proj, or fused qkv without GQA
