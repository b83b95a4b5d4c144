"""Architecture descriptions: how one Hugging Face model family becomes a llama.cpp GGUF.

Each family is one short module in this package holding an :class:`ArchSpec` (a table, not code
paths): which HF classes it covers, the llama.cpp architecture name, the metadata keys to write
(:class:`HParam` rows read from config.json) and the weight transforms (Q/K un-permutation, norm
offset, vocab truncation). Tensor names are mapped with gguf-py's ``TensorNameMap``. Adding a
family is a new module plus one line in ``_MODULES``.

Facts follow llama.cpp's converter (convert_hf_to_gguf.py + conversion/*.py @0c1e57098).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quantpress.core.errors import UnsupportedArchitecture

# One metadata entry: (key, value, GGUF value type name). Type names: UINT32, INT32, FLOAT32, BOOL,
# STRING, or ARRAY[<type>]. Numbers always have a fixed-width type, so file sizes are exact.
KV = tuple[str, Any, str]
Config = Mapping[str, Any]


@dataclass(frozen=True)
class HParam:
    """``{arch}.<key>`` = the first of ``config_keys`` present in config.json (else ``default``)."""

    key: str
    config_keys: tuple[str, ...]
    vtype: str = "UINT32"
    default: Any = None


@dataclass(frozen=True)
class ExpertSpec:
    """How a mixture-of-experts family stores its routed experts in a Hugging Face checkpoint.

    GGUF keeps one 3-D tensor per projection and layer, ``blk.N.ffn_{gate,up,down}_exps`` with
    numpy shape [n_expert, rows, cols]. Checkpoints hold either one 2-D tensor per expert
    (``<layer>.<container>.<e>.<proj>.weight``, the format save_pretrained writes) or, as
    transformers 5 keeps them in memory, stacked ``<container>.gate_up_proj`` [E, 2F, D] (gate rows
    first, split at F) and ``<container>.down_proj`` [E, D, F]. Both become the same GGUF tensors,
    written expert by expert so memory stays at about one expert matrix."""

    # Config keys holding the number of routed experts (first present wins).
    count_keys: tuple[str, ...] = ("num_experts", "num_local_experts", "n_routed_experts")
    # Name of the transformers 5 fused gate/up parameter inside the experts module.
    fused_gate_up: str = "gate_up_proj"
    # Whether llama.cpp's graph for this architecture renormalises the top-k router weights to sum
    # to 1 (a constant in src/models/<arch>.cpp); a config whose norm_topk_prob says otherwise would
    # compute something else, so planning warns. None: the GGUF carries it (expert_weights_norm).
    norm_topk: bool | None = True

    def n_experts(self, config: Config) -> int:
        return int(next((config[k] for k in self.count_keys if config.get(k)), 0))


# One part of a split source tensor: (HF-style name suffix gguf-py's name map knows, numpy shape, the
# HFReader transform that produces it from the source; '' reads it unchanged).
SplitPart = tuple[str, tuple[int, ...], str]


@dataclass(frozen=True)
class Split:
    """An HF tensor whose name ends in ``suffix`` written as the GGUF tensors ``parts(config, shape)``
    returns (a rename, a transpose, gpt-oss's interleaved gate/up columns, DeepSeek's kv_b_proj into
    k_b/v_b). The new suffixes replace ``suffix`` in the name before gguf-py's name map sees it.
    ``dtype``: only a tensor of that stored type (a quantized checkpoint's label from core/dequant,
    e.g. 'MXFP4', whose layout differs from the float release's); None: any. The first match wins."""

    suffix: str
    parts: Callable[[Config, tuple[int, ...]], list[SplitPart]]
    dtype: str | None = None


@dataclass(frozen=True)
class TensorRule:
    """A checkpoint tensor whose name matches ``pattern`` (a regex, ``re.search``) becomes the
    tensors ``outputs(name, shape, config)`` returns: (HF-style name the gguf-py name map knows, or a
    final GGUF name starting with 'blk.' for tensors its tables lack,
    numpy-order shape, transforms), see core/gguf/source.py TensorPlan for the transforms. The
    first matching rule applies; one tensor may become several (Qwen3-Next's in_proj_qkvz)."""

    pattern: str
    outputs: Callable[[str, tuple[int, ...], Config], list[tuple[str, tuple[int, ...], tuple[str, ...]]]]


@dataclass(frozen=True)
class ArchSpec:
    """How to convert one model family (see module docstring)."""

    name: str  # quantpress id, e.g. 'llama'
    gguf_arch: str  # llama.cpp architecture, e.g. 'llama'
    hf_classes: tuple[str, ...]
    hparams: tuple[HParam, ...]
    # Undo HF's rotary permutation of q_proj/k_proj rows (llama.cpp's LLaMA uses interleaved RoPE).
    permute_qk: bool = False
    # Added to every tensor whose name ends in 'norm.weight' (Gemma stores w for a (1 + w) norm).
    norm_offset: float = 0.0
    # Drop embedding rows past the tokenizer's real vocabulary (Gemma pads the matrix).
    truncate_vocab: bool = False
    # SentencePiece 'add_space_prefix' (None: leave llama.cpp's default).
    spm_add_space_prefix: bool | None = None
    # Extra computed metadata (rope dims, sliding-window pattern, ...).
    extra_kv: Callable[[Config], list[KV]] | None = None
    # llama.cpp writes '{arch}.vocab_size' for LLaMA only.
    write_vocab_size: bool = False
    # Tensors computed from the config (llama3 rope_freqs): name -> float32 array.
    extra_tensors: Callable[[Config], dict[str, Any]] | None = None
    # Routed experts (mixture-of-experts families); None for dense models.
    experts: ExpertSpec | None = None
    # Special tokens llama.cpp's converter sets by their text for this family, (SpecialVocab type,
    # token), e.g. GLM's ('bos', '[gMASK]'): they override what tokenizer_config.json says.
    special_tokens: tuple[tuple[str, str], ...] = ()
    # Config key counting extra next-token-prediction (MTP) blocks stored after the decoder's layers;
    # llama.cpp appends them as blocks n_layer.. and counts them in block_count.
    nextn_key: str | None = None
    # False where the family's converter writes no rope keys at all (Gemma 2: llama.cpp's defaults).
    rope_kv: bool = True
    # Source tensors written differently (see Split); the first whose suffix matches applies.
    splits: tuple[Split, ...] = ()
    # Drop tensors of layers past num_hidden_layers (DeepSeek's MTP layers, which llama.cpp's
    # converter skips for deepseek2) instead of refusing them.
    skip_extra_layers: bool = False
    # Whether nextn_predict_layers is written when the config says 0 (GLM writes it; Qwen only when > 0).
    nextn_write_zero: bool = True
    # Regex over checkpoint tensor names whose group 1 is an MTP layer index, for configs that do not
    # count their MTP layers under nextn_key (Qwen3-Next): the count is taken from the tensors.
    nextn_pattern: str | None = None
    # Norm weights that get no ``norm_offset`` (Qwen3-Next's gated DeltaNet norm is a plain w).
    norm_offset_skip: tuple[str, ...] = ()
    # Per-tensor rewrites beyond name mapping (renames, splits, reorders): see TensorRule.
    tensor_rules: tuple[TensorRule, ...] = ()
    # llama.cpp tokenizer model the family's converter writes whatever the files look like (Gemma 4:
    # 'gemma4', tokenizer.json's SentencePiece-style BPE); None: chosen from the tokenizer files.
    tokenizer_model: str | None = None
    # The (name, shape) list of a standard checkpoint, for planning a Hub model from its config alone,
    # where the shared table in core/gguf/source.py cannot say it (Gemma 4's per-layer head sizes).
    hub_tensors: Callable[[Config], list[tuple[str, tuple[int, ...]]]] | None = None


def rope_theta(config: Config, default: float | None = None, *, sliding: bool = False) -> float | None:
    """rope_theta from config.json, old style (top level) or transformers 5 ``rope_parameters``."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if isinstance(params, dict):
        if sliding:
            local = params.get("sliding_attention", {})
            value = local.get("rope_theta", config.get("rope_local_base_freq", default))
            return None if value is None else float(value)
        params = params.get("full_attention", params)
        if "rope_theta" in params:
            return float(params["rope_theta"])
    if sliding:
        local_base = config.get("rope_local_base_freq", default)
        return None if local_base is None else float(local_base)
    value = config.get("rope_theta", default)
    return None if value is None else float(value)


def rope_scaling(config: Config) -> dict[str, Any]:
    """The rope scaling dict (transformers 4 'rope_scaling' or 5 'rope_parameters'), full attention."""
    params = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if not isinstance(params, dict):
        return {}
    return dict(params.get("full_attention", params))


def merged_text_config(config: Config) -> dict[str, Any]:
    """A multimodal wrapper's config with its ``text_config`` moved to the top level (what llama.cpp's
    TextModel does), so the text model's keys read as a plain causal LM's; a plain config is unchanged.
    Idempotent: a saved plan's config (already merged, text_config kept) merges to itself."""
    inner = config.get("text_config")
    return {**config, **inner} if isinstance(inner, dict) else dict(config)


def head_dim(config: Config) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


# Keys every decoder-only text model writes (TextModel.set_gguf_parameters).
TEXT_HPARAMS: tuple[HParam, ...] = (
    HParam("block_count", ("num_hidden_layers", "n_layer")),
    HParam("context_length", ("max_position_embeddings", "n_positions", "max_sequence_length")),
    HParam("embedding_length", ("hidden_size", "n_embd")),
    HParam("feed_forward_length", ("intermediate_size", "n_inner")),
    HParam("attention.head_count", ("num_attention_heads", "n_head")),
    HParam("attention.head_count_kv", ("num_key_value_heads", "num_attention_heads")),
    HParam("attention.layer_norm_rms_epsilon", ("rms_norm_eps",), "FLOAT32"),
    HParam("attention.key_length", ("head_dim",)),
    HParam("attention.value_length", ("head_dim",)),
)


def common_rope_kv(config: Config) -> list[KV]:
    """rope.freq_base and linear/yarn scaling keys, as TextModel writes them."""
    out: list[KV] = []
    theta = rope_theta(config)
    if theta is not None:
        out.append(("rope.freq_base", theta, "FLOAT32"))
    rs = rope_scaling(config)
    rtype, factor = str(rs.get("rope_type", rs.get("type", "")) or "").lower(), rs.get("factor")
    if rtype == "linear" and factor is not None:
        out += [("rope.scaling.type", "linear", "STRING"), ("rope.scaling.factor", float(factor), "FLOAT32")]
    elif rtype == "yarn" and factor is not None:
        out += [("rope.scaling.type", "yarn", "STRING"), ("rope.scaling.factor", float(factor), "FLOAT32"),
                ("rope.scaling.original_context_length", int(rs["original_max_position_embeddings"]), "UINT32")]
        for key, names in _YARN_KEYS:
            value = next((rs[n] for n in names if rs.get(n) is not None), None)
            if value is not None:
                out.append((f"rope.scaling.{key}", float(value), "FLOAT32"))
    if rs.get("mrope_section"):  # M-RoPE (Qwen-VL): [time, height, width, extra] rotary pairs
        sections = [int(v) for v in rs["mrope_section"]][:4]
        out.append(("rope.dimension_sections", sections + [0] * (4 - len(sections)), "ARRAY[INT32]"))
    return out


# Optional YaRN parameters TextModel copies from the rope dict (gpt-oss sets beta_fast/beta_slow).
_YARN_KEYS = (("yarn_ext_factor", ("extrapolation_factor",)), ("yarn_attn_factor", ("attention_factor", "attn_factor")),
              ("yarn_beta_fast", ("beta_fast",)), ("yarn_beta_slow", ("beta_slow",)))


# Keys every mixture-of-experts model writes (TextModel.set_gguf_parameters: expert counts, groups).
MOE_HPARAMS: tuple[HParam, ...] = (
    HParam("expert_count", ("num_local_experts", "num_experts", "n_routed_experts")),
    HParam("expert_used_count", ("num_experts_per_tok", "num_experts_per_token", "top_k_experts")),
    HParam("expert_group_count", ("n_group",)),
    HParam("expert_group_used_count", ("topk_group",)),
)
# llama.cpp's llama_expert_gating_func_type (gguf-py ExpertGatingFuncType).
GATING_FUNCS = {"softmax": 1, "sigmoid": 2, "sqrtsoftplus": 3}
_SCORE_KEYS = ("score_function", "scoring_func", "score_func", "moe_router_activation",
               "moe_router_activation_func", "expert_selection_fn")


def gating_func_kv(config: Config) -> list[KV]:
    """expert_gating_func when the config names a router score function (TextModel does the same)."""
    func = next((config[k] for k in _SCORE_KEYS if config.get(k) is not None), None)
    if func is None:
        return []
    if func not in GATING_FUNCS:
        raise UnsupportedArchitecture(f"expert score function '{func}' is not supported by llama.cpp")
    return [("expert_gating_func", GATING_FUNCS[func], "UINT32")]


_MODULES = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3", "qwen3moe", "mixtral", "qwen2moe", "olmoe",
            "glm4moe", "gemma2", "smollm3", "mistral3", "qwen3vl", "gptoss", "deepseekv3", "qwen35", "qwen35moe",
            "qwen3next", "gemma4", "llama4", "qwen3vlmoe")


def _load_all() -> list[ArchSpec]:
    return [importlib.import_module(f"{__name__}.{m}").SPEC for m in _MODULES]


_specs: tuple[ArchSpec, ...] = ()


def all_specs() -> tuple[ArchSpec, ...]:
    global _specs
    if not _specs:
        _specs = tuple(_load_all())
    return _specs


def block_count(spec: ArchSpec, config: Config) -> int:
    """Decoder layers plus the next-token-prediction blocks llama.cpp appends (GLM-4 MoE's and
    Qwen3.5's MTP)."""
    extra = int(config.get(spec.nextn_key) or 0) if spec.nextn_key else 0
    return int(config["num_hidden_layers"]) + extra


def supported_names() -> str:
    return ", ".join(sorted({c for s in all_specs() for c in s.hf_classes}))


def spec_for_hf_class(hf_class: str) -> ArchSpec:
    """The spec converting HF class ``hf_class`` (UnsupportedArchitecture if none)."""
    for spec in all_specs():
        if hf_class in spec.hf_classes:
            return spec
    raise UnsupportedArchitecture(
        f"'{hf_class}' cannot be converted to GGUF yet; supported: {supported_names()}")


def spec_for_gguf_arch(gguf_arch: str) -> ArchSpec | None:
    for spec in all_specs():
        if spec.gguf_arch == gguf_arch:
            return spec
    return None


def arch_kv(spec: ArchSpec, config: Config) -> list[KV]:
    """All ``{arch}.*`` metadata for ``config`` (keys already prefixed)."""
    rows: dict[str, KV] = {}
    for hp in spec.hparams:
        value = next((config[k] for k in hp.config_keys if config.get(k) is not None), hp.default)
        if value is not None:
            rows[hp.key] = (hp.key, float(value) if hp.vtype == "FLOAT32" else value, hp.vtype)
    n_next = config.get(spec.nextn_key) if spec.nextn_key else None
    if n_next is not None and (n_next or spec.nextn_write_zero):  # GLM: written even when 0, as llama.cpp does
        rows["block_count"] = ("block_count", block_count(spec, config), "UINT32")
        rows["nextn_predict_layers"] = ("nextn_predict_layers", int(n_next), "UINT32")
    rope = common_rope_kv(config) if spec.rope_kv else []
    for key, value, vtype in rope + (spec.extra_kv(config) if spec.extra_kv else []):
        rows[key] = (key, value, vtype)  # later rows override (e.g. Gemma's explicit defaults)
    if spec.write_vocab_size and config.get("vocab_size") is not None:
        rows["vocab_size"] = ("vocab_size", int(config["vocab_size"]), "UINT32")
    return [(f"{spec.gguf_arch}.{k}", v, t) for k, v, t in rows.values()]
