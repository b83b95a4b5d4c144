"""Source tensors of a conversion: listing them (from safetensors headers, a GGUF header, or, for a
Hub model with no local weights, from config.json alone), naming them in GGUF, and reading them
back as float32 row slabs with the architecture's transforms applied.

Reading never loads a whole checkpoint: safetensors are memory-mapped and converted slab by slab.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.dequant import QuantizedSource, mxfp4, quantization_config
from quantpress.core.dequant.base import NUMPY_DTYPES, Part
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf.arch import ArchSpec, Config, block_count, head_dim
from quantpress.core.model import TensorInfo
from quantpress.core.validate import SAFETENSORS_DTYPE_BYTES

# HF tensors llama.cpp's converter drops.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "attention.masked_bias", "attention.bias")
# Vision towers, projectors and audio encoders of multimodal wrappers (Gemma3ForConditionalGeneration,
# Mistral3ForConditionalGeneration, Qwen3VLForConditionalGeneration): not part of the text GGUF (the
# mmproj file holds them). The markers are those llama.cpp's TextModel.filter_tensors skips.
MULTIMODAL_MARKERS = ("vision_tower.", "vision_model.", "multi_modal_projector.", "visual.", "vision.", "audio.",
                      "vision_", "audio_", "projector.", "patch_embed", "image_newline")


def is_multimodal_tensor(name: str) -> bool:
    """True for the vision/audio tensors a text conversion leaves out."""
    return any(m in name for m in MULTIMODAL_MARKERS)


def text_tensor_name(name: str) -> str:
    """A wrapper's language-model tensor as the text model names it: 'model.language_model.layers.0...'
    (transformers 5) and 'language_model.model.layers.0...' (older saves) both become 'model.layers.0...'."""
    return name.replace("language_model.", "")


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: GGUF name, numpy-order shape, where it comes from and how it is changed.

    ``transforms``: 'permute_q:<n_head>', 'permute_k:<n_kv_head>', 'add:<float>', 'rows:<n>' (keep
    the first n rows), 'generated' (computed from config, e.g. rope_freqs), 'expert_rows:<a>:<b>'
    (rows a..b of every expert's matrix of a stacked [E, R, C] source: the gate or up half of a
    fused gate_up_proj), 'expert_span_t:<a>:<b>' (columns a..b of every expert of [E, R, C],
    transposed: a half of a gate_up_proj stored [E, D, 2F]), 'neg_exp' (A = -exp(A_log)), 'vheads:<first>:<nk>:<per_k>:<hd>' (V-head rows
    from first on reordered to tiled order), 'vcols:<nk>:<per_k>:<hd>' (the same on columns),
    'qkvz:<part>:<nk>:<dk>:<dvg>' (Qwen3-Next's q/k/v or z rows of in_proj_qkvz); see deltanet.py.

    ``parts``: for an expert tensor stacked from per-expert sources, the (source tensor, shard file)
    of each expert in order; ``source`` then names the stacked tensor (it exists in no file)."""

    name: str
    shape: tuple[int, ...]
    source: str  # source tensor name ('' if generated)
    source_file: str  # shard file name (HF) or GGUF path
    source_dtype: str  # 'BF16', 'F16', 'F32' or a GGML type name
    transforms: tuple[str, ...] = ()
    parts: tuple[tuple[str, str], ...] = ()

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


# ----------------------------------------------------------------------------------- listing


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a .safetensors file and the offset where its data starts."""
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError("header length is implausible")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as exc:
        raise InvalidModel(f"{path.name}: not a readable safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    return header, 8 + n


def list_hf_tensors(folder: Path) -> list[TensorInfo]:
    """All tensors of the safetensors checkpoint in ``folder`` (header reads only)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidModel(f"{index}: not a valid safetensors index ({exc})") from None
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise InvalidModel(
                f"{folder}: {len(missing)} of {len(files)} weight shards are missing ({', '.join(missing[:3])}"
                f"{', …' if len(missing) > 3 else ''}). Download the complete model.")
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
        if not files:
            raise InvalidModel(f"{folder}: no .safetensors weights found (pickled .bin checkpoints are refused)")
    out = []
    for fname in files:
        header, _ = read_safetensors_header(folder / fname)
        for name, meta in header.items():
            shape = tuple(int(d) for d in meta["shape"])
            n = int(np.prod(shape, dtype=np.int64)) * SAFETENSORS_DTYPE_BYTES.get(meta["dtype"], 4)
            out.append(TensorInfo(name, shape, meta["dtype"], n, fname))
    return out


# Per-layer tensors synthesised from config.json (Hub models described without weights).
# Dimension symbols: h hidden, q n_head*head_dim, k n_kv*head_dim, f ffn, d head_dim.
_LAYER_SHAPES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "attn": (("self_attn.q_proj.weight", ("q", "h")), ("self_attn.k_proj.weight", ("k", "h")),
             ("self_attn.v_proj.weight", ("k", "h")), ("self_attn.o_proj.weight", ("h", "q"))),
    "mlp": (("mlp.gate_proj.weight", ("f", "h")), ("mlp.up_proj.weight", ("f", "h")),
            ("mlp.down_proj.weight", ("h", "f"))),
    "norms": (("input_layernorm.weight", ("h",)), ("post_attention_layernorm.weight", ("h",))),
    "qkv_bias": (("self_attn.q_proj.bias", ("q",)), ("self_attn.k_proj.bias", ("k",)),
                 ("self_attn.v_proj.bias", ("k",))),
    "qk_norm": (("self_attn.q_norm.weight", ("d",)), ("self_attn.k_norm.weight", ("d",))),
    "gemma_norms": (("pre_feedforward_layernorm.weight", ("h",)), ("post_feedforward_layernorm.weight", ("h",))),
    "phi3": (("self_attn.qkv_proj.weight", ("qkk", "h")), ("self_attn.o_proj.weight", ("h", "q")),
             ("mlp.gate_up_proj.weight", ("ff", "h")), ("mlp.down_proj.weight", ("h", "f"))),
    # Mixture of experts ({e}: once per routed expert; m expert width, E expert count).
    "experts": (("mlp.gate.weight", ("E", "h")), ("mlp.experts.{e}.gate_proj.weight", ("m", "h")),
                ("mlp.experts.{e}.up_proj.weight", ("m", "h")), ("mlp.experts.{e}.down_proj.weight", ("h", "m"))),
    "mixtral_experts": (("block_sparse_moe.gate.weight", ("E", "h")),
                        ("block_sparse_moe.experts.{e}.w1.weight", ("m", "h")),
                        ("block_sparse_moe.experts.{e}.w3.weight", ("m", "h")),
                        ("block_sparse_moe.experts.{e}.w2.weight", ("h", "m"))),
    "shared_expert": (("mlp.shared_expert.gate_proj.weight", ("s", "h")), ("mlp.shared_expert.up_proj.weight", ("s", "h")),
                      ("mlp.shared_expert.down_proj.weight", ("h", "s")), ("mlp.shared_expert_gate.weight", ("1", "h"))),
    "olmoe_norm": (("self_attn.q_norm.weight", ("q",)), ("self_attn.k_norm.weight", ("k",))),
    "glm_experts": (("mlp.gate.e_score_correction_bias", ("E",)), ("mlp.shared_experts.gate_proj.weight", ("S", "h")),
                    ("mlp.shared_experts.up_proj.weight", ("S", "h")), ("mlp.shared_experts.down_proj.weight", ("h", "S"))),
    # gpt-oss: biased attention with sinks, a biased router, experts fused as transformers saves them.
    "gptoss": (("self_attn.o_proj.bias", ("h",)), ("self_attn.sinks", ("H",)), ("mlp.router.weight", ("E", "h")),
               ("mlp.router.bias", ("E",)), ("mlp.experts.gate_up_proj", ("E", "h", "ff")),
               ("mlp.experts.gate_up_proj_bias", ("E", "ff")), ("mlp.experts.down_proj", ("E", "f", "h")),
               ("mlp.experts.down_proj_bias", ("E", "h"))),
    # DeepSeek's multi-head latent attention (queries through a LoRA pair unless q_lora_rank is null).
    "mla": (("self_attn.q_a_proj.weight", ("ql", "h")), ("self_attn.q_a_layernorm.weight", ("ql",)),
            ("self_attn.q_b_proj.weight", ("qhead", "ql")), ("self_attn.kv_a_proj_with_mqa.weight", ("kvr_rope", "h")),
            ("self_attn.kv_a_layernorm.weight", ("kvr",)), ("self_attn.kv_b_proj.weight", ("kvb", "kvr")),
            ("self_attn.o_proj.weight", ("h", "ov"))),
    "mla_q": (("self_attn.q_proj.weight", ("qhead", "h")), ("self_attn.kv_a_proj_with_mqa.weight", ("kvr_rope", "h")),
              ("self_attn.kv_a_layernorm.weight", ("kvr",)), ("self_attn.kv_b_proj.weight", ("kvb", "kvr")),
              ("self_attn.o_proj.weight", ("h", "ov"))),
    # Experts fused and transposed as the releases store them (transposed_experts.py; mm = 2m).
    "fused_t_experts": (("mlp.gate.weight", ("E", "h")), ("mlp.experts.gate_up_proj", ("E", "h", "mm")),
                        ("mlp.experts.down_proj", ("E", "m", "h"))),
    # Llama 4: dense layers of width intermediate_size_mlp (fm); MoE layers of expert width f, with a
    # router, fused transposed experts and a shared expert of the same width.
    "llama4_mlp": (("feed_forward.gate_proj.weight", ("fm", "h")), ("feed_forward.up_proj.weight", ("fm", "h")),
                   ("feed_forward.down_proj.weight", ("h", "fm"))),
    "llama4_moe": (("feed_forward.router.weight", ("E", "h")), ("feed_forward.experts.gate_up_proj", ("E", "h", "ff")),
                   ("feed_forward.experts.down_proj", ("E", "f", "h")),
                   ("feed_forward.shared_expert.gate_proj.weight", ("f", "h")),
                   ("feed_forward.shared_expert.up_proj.weight", ("f", "h")),
                   ("feed_forward.shared_expert.down_proj.weight", ("h", "f"))),
    "nextn": (("eh_proj.weight", ("h", "hh")), ("enorm.weight", ("h",)), ("hnorm.weight", ("h",)),
              ("shared_head.norm.weight", ("h",))),
}
# Keyed by ArchSpec.name (families sharing a llama.cpp arch, like Mixtral, differ in layout).
_ARCH_LAYERS = {"llama": ("attn", "mlp", "norms"), "qwen2": ("attn", "mlp", "norms", "qkv_bias"),
                "qwen3": ("attn", "mlp", "norms", "qk_norm"),
                "gemma3": ("attn", "mlp", "norms", "qk_norm", "gemma_norms"), "phi3": ("phi3", "norms"),
                "gemma2": ("attn", "mlp", "norms", "gemma_norms"), "qwen3vl": ("attn", "mlp", "norms", "qk_norm"),
                "smollm3": ("attn", "mlp", "norms"), "mistral3": ("attn", "mlp", "norms"),
                "qwen3moe": ("attn", "norms", "qk_norm", "experts"), "mixtral": ("attn", "norms", "mixtral_experts"),
                "qwen2moe": ("attn", "norms", "qkv_bias", "experts", "shared_expert"),
                "olmoe": ("attn", "norms", "olmoe_norm", "experts"),
                "glm4moe": ("attn", "norms", "qkv_bias", "experts", "glm_experts"),
                "gptoss": ("attn", "norms", "qkv_bias", "gptoss"),
                "qwen3vlmoe": ("attn", "norms", "qk_norm", "fused_t_experts"), "llama4": ("attn", "norms", "llama4_mlp"),
                "deepseekv3": ("mla", "norms", "experts", "glm_experts")}
# Families whose first ``first_k_dense_replace`` layers are dense, and those layers' groups.
_DENSE_LEAD = {"glm4moe": ("attn", "norms", "qkv_bias", "mlp"), "deepseekv3": ("mla", "norms", "mlp")}
# Families whose every <config key>-th layer is MoE, and those layers' groups (Llama 4: layer i when
# (i + 1) % interleave_moe_layer_step == 0, as llama.cpp and transformers' default moe_layers).
_MOE_EVERY = {"llama4": ("interleave_moe_layer_step", ("attn", "norms", "llama4_moe"))}


def synthesize_hf_tensors(spec: ArchSpec, config: Config) -> list[TensorInfo]:
    """The tensor list a standard checkpoint of this config has (for Hub models without weights)."""
    d = head_dim(config)
    h, f = int(config["hidden_size"]), int(config["intermediate_size"])
    q, k = int(config["num_attention_heads"]) * d, int(config.get("num_key_value_heads") or
                                                      config["num_attention_heads"]) * d
    n_expert = spec.experts.n_experts(config) if spec.experts else 0
    dims = {"h": h, "f": f, "q": q, "k": k, "d": d, "qkk": q + 2 * k, "ff": 2 * f, "E": n_expert, "1": 1,
            "m": int(config.get("moe_intermediate_size") or f), "mm": 2 * int(config.get("moe_intermediate_size") or f),
            "fm": int(config.get("intermediate_size_mlp") or f), "s": int(config.get("shared_expert_intermediate_size") or 0),
            "S": int(config.get("moe_intermediate_size") or f) * int(config.get("n_shared_experts") or 1), "hh": 2 * h,
            "H": int(config["num_attention_heads"]), **_mla_dims(config)}
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    st = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(dtype, "BF16")
    nb = SAFETENSORS_DTYPE_BYTES[st]

    def info(name: str, shape: tuple[int, ...]) -> TensorInfo:
        return TensorInfo(name, shape, st, int(np.prod(shape)) * nb, "")

    if spec.hub_tensors is not None:  # a family whose layers differ in shape lists its own
        return [info(name, shape) for name, shape in spec.hub_tensors(config)]
    vocab = int(config["vocab_size"])
    out = [info("model.embed_tokens.weight", (vocab, h)), info("model.norm.weight", (h,))]
    if not config.get("tie_word_embeddings", False):
        out.append(info("lm_head.weight", (vocab, h)))
    groups = _ARCH_LAYERS.get(spec.name) or _ARCH_LAYERS.get("llama" if spec.gguf_arch == "llama" else spec.gguf_arch)
    if groups is None:
        raise UnsupportedArchitecture(
            f"{spec.name}: quantpress cannot yet describe this family's tensors from config.json alone; "
            "download the model (its safetensors) and convert the local folder")
    n_dense = int(config.get("first_k_dense_replace") or 0) if spec.name in _DENSE_LEAD else 0
    n_layers = int(config["num_hidden_layers"])
    for i in range(block_count(spec, config)):  # MTP blocks (i >= n_layers): a MoE layer plus their own tensors
        layer_groups = _DENSE_LEAD[spec.name] if i < n_dense else groups + (("nextn",) if i >= n_layers else ())
        if spec.name in _MOE_EVERY and (i + 1) % int(config.get(_MOE_EVERY[spec.name][0]) or 1) == 0:
            layer_groups = _MOE_EVERY[spec.name][1]
        if config.get("kv_lora_rank") and config.get("q_lora_rank") is None:
            layer_groups = tuple("mla_q" if g == "mla" else g for g in layer_groups)
        for group in layer_groups:
            for suffix, sym in _LAYER_SHAPES[group]:
                for e in range(n_expert) if "{e}" in suffix else (0,):
                    out.append(info(f"model.layers.{i}.{suffix.format(e=e)}", tuple(dims[s] for s in sym)))
    return out


def _mla_dims(config: Config) -> dict[str, int]:
    """Dimension symbols of DeepSeek's multi-head latent attention (zero for other families)."""
    n_head, rope = int(config["num_attention_heads"]), int(config.get("qk_rope_head_dim") or 0)
    nope, v, rank = int(config.get("qk_nope_head_dim") or 0), int(config.get("v_head_dim") or 0), int(
        config.get("kv_lora_rank") or 0)
    return {"ql": int(config.get("q_lora_rank") or 0), "qhead": n_head * (nope + rope), "kvr": rank,
            "kvr_rope": rank + rope, "kvb": n_head * (nope + v), "ov": n_head * v}


# ----------------------------------------------------------------------------------- mapping


def map_hf_tensors(spec: ArchSpec, config: Config, tensors: list[TensorInfo], n_vocab: int) -> list[TensorPlan]:
    """GGUF tensors (with transforms) for the HF ``tensors`` of a ``spec`` model."""
    import gguf

    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == spec.gguf_arch)
    n_layers = block_count(spec, config)
    name_map = gguf.get_tensor_name_map(arch, n_layers)
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    out: list[TensorPlan] = []
    stacked = stack_experts(spec, config, apply_splits(spec, config, _drop_extra_layers(spec, config, tensors)))
    for t, name, shape, rule_tr in _apply_rules(spec, config, stacked):
        gname = name if name.startswith("blk.") else name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise UnsupportedArchitecture(
                f"tensor '{t.name}' has no GGUF equivalent for {spec.name}; this checkpoint variant is not supported")
        tr: list[str] = list(rule_tr)
        if spec.permute_qk and name.endswith(("q_proj.weight", "q_proj.bias")):
            tr.append(f"permute:{n_head}")
        elif spec.permute_qk and name.endswith(("k_proj.weight", "k_proj.bias")):
            tr.append(f"permute:{n_kv}")
        if spec.norm_offset and name.endswith("norm.weight") and not name.endswith(spec.norm_offset_skip):
            tr.append(f"add:{spec.norm_offset}")
        if spec.truncate_vocab and gname == "token_embd.weight" and shape[0] > n_vocab:
            tr.append(f"rows:{n_vocab}")
            shape = (n_vocab,) + shape[1:]
        if isinstance(t, _Stacked):
            tr += t.transforms
            out.append(TensorPlan(gname, shape, t.source, t.file, t.dtype, tuple(tr), t.parts))
            continue
        out.append(TensorPlan(gname, shape, t.name, t.file, t.dtype, tuple(tr)))
    if spec.extra_tensors:
        for gname, arr in spec.extra_tensors(config).items():
            out.append(TensorPlan(gname, tuple(arr.shape), "", "", "F32", ("generated",)))
    names = [p.name for p in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InvalidModel(f"checkpoint maps several tensors to {sorted(dupes)[0]}; it is not a standard {spec.name}")
    return out


_LAYER = re.compile(r"^model\.(?:language_model\.)?layers\.(\d+)\.")


def _drop_extra_layers(spec: ArchSpec, config: Config, tensors: list[TensorInfo]) -> list[TensorInfo]:
    """``tensors`` without the layers past num_hidden_layers, for ``skip_extra_layers`` specs. (A
    quantized checkpoint's scales never get here: core/dequant lists each weight once, dequantized.)"""
    if not spec.skip_extra_layers:
        return list(tensors)
    n_layers = int(config.get("num_hidden_layers") or 0)
    return [t for t in tensors if not ((m := _LAYER.match(t.name)) and int(m.group(1)) >= n_layers)]


def apply_splits(spec: ArchSpec, config: Config, tensors: list[TensorInfo]) -> list[TensorInfo | _Stacked]:
    """``tensors`` with each one a ``spec.splits`` entry matches replaced by its parts (in its place)."""
    if not spec.splits:
        return list(tensors)
    out: list[TensorInfo | _Stacked] = []
    for t in tensors:
        split = next((sp for sp in spec.splits if t.name.endswith(sp.suffix) and sp.dtype in (None, t.dtype)), None)
        if split is None:
            out.append(t)
            continue
        base = t.name.removesuffix(split.suffix)
        for suffix, shape, transform in split.parts(config, t.shape):
            out.append(_Stacked(base + suffix, shape, t.dtype, t.file, t.name, transforms=(transform,) if transform else ()))
    return out


def _apply_rules(spec: ArchSpec, config: Config, tensors: list[TensorInfo | _Stacked]
                 ) -> Iterator[tuple[TensorInfo | _Stacked, str, tuple[int, ...], tuple[str, ...]]]:
    """(source tensor, name for gguf-py's map, output shape, transforms) for every kept tensor: the
    spec's TensorRules (renames, splits, reorders) applied to the checkpoint's names."""
    for t in tensors:
        if t.name.endswith(IGNORED_SUFFIXES) or is_multimodal_tensor(t.name):
            continue
        name = text_tensor_name(t.name)
        # DeepSeek-style router score bias: gguf-py's table knows it as '...e_score_correction' + '.bias'
        name = name.replace("e_score_correction_bias", "e_score_correction.bias")
        rule = next((r for r in spec.tensor_rules if re.search(r.pattern, name)), None)
        for out_name, shape, tr in rule.outputs(name, t.shape, config) if rule else [(name, t.shape, ())]:
            yield t, out_name, shape, tr


def with_nextn_count(spec: ArchSpec, config: Config, tensors: list[TensorInfo]) -> Config:
    """``config`` with the MTP layer count under ``spec.nextn_key`` taken from the checkpoint's
    tensor names when the config does not say it (Qwen3-Next), as llama.cpp's converter does."""
    if not spec.nextn_pattern or not spec.nextn_key or config.get(spec.nextn_key) is not None:
        return config
    found = [int(m[1]) for t in tensors if (m := re.match(spec.nextn_pattern, t.name))]
    return {**config, spec.nextn_key: max(found) + 1} if found else config


# One routed expert's projection in a checkpoint that stores experts one by one.
_PER_EXPERT = re.compile(r"^(?P<base>.+\.experts)\.(?P<e>\d+)\.(?P<proj>\w+)\.weight$")


@dataclass(frozen=True)
class _Stacked:
    """A 3-D expert tensor as the name map sees it: ``name`` is the stacked HF name gguf-py's
    TensorNameMap knows (``...experts.gate_proj.weight`` -> ``ffn_gate_exps``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: str
    source: str
    parts: tuple[tuple[str, str], ...] = ()
    transforms: tuple[str, ...] = ()


def stack_experts(spec: ArchSpec, config: Config,
                  tensors: list[TensorInfo | _Stacked]) -> list[TensorInfo | _Stacked]:
    """``tensors`` with each layer's per-expert projections replaced by one stacked tensor, and a
    fused ``gate_up_proj`` [E, 2F, D] replaced by its gate and up halves (dense specs: unchanged).
    A stacked tensor takes the place of its first expert, so file order stays the checkpoint's."""
    if spec.experts is None:
        return list(tensors)
    n_expert = spec.experts.n_experts(config)
    groups: dict[str, list[tuple[int, TensorInfo]]] = {}
    out: list[TensorInfo | _Stacked | str] = []
    for t in tensors:
        m = _PER_EXPERT.match(t.name)
        if isinstance(t, _Stacked):  # already split (ArchSpec.splits)
            out.append(t)
        elif m:
            key = f"{m['base']}.{m['proj']}.weight"
            if key not in groups:
                groups[key] = []
                out.append(key)  # placeholder, filled below
            groups[key].append((int(m["e"]), t))
        elif t.name.endswith(f".experts.{spec.experts.fused_gate_up}") and len(t.shape) == 3:
            if t.shape[1] % 2:
                raise InvalidModel(f"{t.file}: '{t.name}' {t.shape} cannot be split into gate and up halves")
            half = t.shape[1] // 2
            base = t.name.removesuffix(spec.experts.fused_gate_up)
            for proj, (a, b) in (("gate_proj", (0, half)), ("up_proj", (half, 2 * half))):
                out.append(_Stacked(f"{base}{proj}.weight", (t.shape[0], half, t.shape[2]), t.dtype, t.file, t.name,
                                    transforms=(f"expert_rows:{a}:{b}",)))
        elif re.search(r"\.experts\.\w+_proj$", t.name) and len(t.shape) == 3:  # fused down_proj [E, D, F]
            out.append(_Stacked(t.name + ".weight", t.shape, t.dtype, t.file, t.name))
        else:
            out.append(t)
    result: list[TensorInfo | _Stacked] = []
    for item in out:
        if not isinstance(item, str):
            result.append(item)
            continue
        members = sorted(groups[item])
        ids = [e for e, _ in members]
        if ids != list(range(len(ids))) or (n_expert and len(ids) != n_expert):
            raise InvalidModel(f"'{item}': the checkpoint holds experts {_ranges(ids)}, the config says {n_expert}; "
                               "some weight shards may be missing. Download the complete model.")
        first = members[0][1]
        for _, t in members:
            if t.shape != first.shape or t.dtype != first.dtype:
                raise InvalidModel(f"{t.file}: expert tensor '{t.name}' is {t.dtype} {t.shape}, its siblings "
                                   f"{first.dtype} {first.shape}; not a standard {spec.name} checkpoint")
        result.append(_Stacked(item, (len(ids),) + first.shape, first.dtype, first.file, item,
                               tuple((t.name, t.file) for _, t in members)))
    return result


def _ranges(ids: list[int]) -> str:
    return f"{ids[0]}..{ids[-1]} ({len(ids)})" if ids else "none"


# ----------------------------------------------------------------------------------- reading


def _to_f32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return raw.view(np.float16).astype(np.float32)
    if dtype == "F32":
        return np.array(raw.view(np.float32), dtype=np.float32)
    if dtype == "F64":
        return raw.view(np.float64).astype(np.float32)
    raise InvalidModel(f"safetensors dtype {dtype} is not supported (expected BF16, F16 or F32)")


def _permute_rows(n_rows: int, n_head: int) -> np.ndarray:
    """Source row for each output row of llama.cpp's permute(W, n_head): de-interleave RoPE halves."""
    hd = n_rows // n_head
    idx = np.arange(n_rows).reshape(n_head, 2, hd // 2).swapaxes(1, 2).reshape(n_rows)
    return idx


# Transforms that cut a tensor out of a differently shaped source (HFReader._reshaped).
_RESHAPING = frozenset({"expert_rows", "expert_cols_t", "expert_span_t", "expert_rows_step", "cols", "mla_k_b",
                        "mla_v_b"})


def _chunks(x: np.ndarray, max_rows: int) -> Iterator[np.ndarray]:
    for a in range(0, x.shape[0], max_rows):
        yield x[a:a + max_rows]


def _vhead_order(n: int, nk: int, per_k: int, hd: int) -> np.ndarray:
    """Index of V-head rows from grouped-by-key-head [K0: v0..v(r-1), K1: ...] to tiled order
    [v0 of K0, v0 of K1, ..., v1 of K0, ...] (llama.cpp's _reorder_v_heads)."""
    return np.arange(n).reshape(nk, per_k, hd).transpose(1, 0, 2).reshape(n)


def _qkvz_order(part: str, nk: int, dk: int, dvg: int) -> np.ndarray:
    """Rows of Qwen3-Next's in_proj_qkvz ([q dk, k dk, v dvg, z dvg] per key head) for attn_qkv
    (all q, then all k, then all v) or attn_gate (all z)."""
    base = np.arange(nk)[:, None] * (2 * dk + 2 * dvg)
    pieces = {"q": (0, dk), "k": (dk, 2 * dk), "v": (2 * dk, 2 * dk + dvg), "z": (2 * dk + dvg, 2 * dk + 2 * dvg)}
    return np.concatenate([(base + np.arange(*pieces[p])[None, :]).reshape(-1)
                           for p in ("qkv" if part == "qkv" else "z")])


def _vhead_cols(x: np.ndarray, *, nk: int, per_k: int, hd: int) -> np.ndarray:
    return x[:, _vhead_order(x.shape[1], nk, per_k, hd)]


def row_order(transforms: tuple[str, ...], n_rows: int) -> np.ndarray | None:
    """Source row of each output row for the row-picking transforms (None: rows as stored)."""
    for tr in transforms:
        kind, _, arg = tr.partition(":")
        if kind == "permute":
            return _permute_rows(n_rows, int(arg))
        if kind == "vheads":
            first, nk, per_k, hd = (int(v) for v in arg.split(":"))
            return np.concatenate([np.arange(first), first + _vhead_order(n_rows - first, nk, per_k, hd)])
        if kind == "qkvz":
            part, *dims = arg.split(":")
            return _qkvz_order(part, *(int(v) for v in dims))
    return None


def _slab_transform(transforms: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Element and column transforms applied to each float32 slab, in order: 'add:<f>' (norm
    offset), 'neg_exp' (A = -exp(A_log)), 'vcols:<nk>:<per_k>:<hd>' (V-head columns reordered)."""
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    for tr in transforms:
        kind, _, arg = tr.partition(":")
        if kind == "add":
            steps.append(partial(np.add, np.float32(arg)))
        elif kind == "neg_exp":
            steps.append(lambda x: -np.exp(x))
        elif kind == "vcols":
            nk, per_k, hd = (int(v) for v in arg.split(":"))
            steps.append(partial(_vhead_cols, nk=nk, per_k=per_k, hd=hd))

    def apply(x: np.ndarray) -> np.ndarray:
        for step in steps:
            x = step(x)
        return np.ascontiguousarray(x, dtype=np.float32)
    return apply


class HFReader:
    """Reads transformed float32 row slabs of HF tensors from safetensors files.

    Plain positioned reads, not a memory map: mapped pages would stay resident and count towards
    the process's memory until the whole checkpoint had been touched."""

    def __init__(self, folder: Path, config: Config, spec: ArchSpec | None) -> None:
        self.folder = Path(folder)
        self.label = self.folder.name  # names the model in errors
        self.config = config
        self.spec = spec
        self._files: dict[str, tuple[Any, dict[str, Any], int]] = {}
        self._quantized: QuantizedSource | None | bool = False  # False: not looked at yet

    def quantized(self) -> QuantizedSource | None:
        """The checkpoint's quantized weights (core/dequant), None for a float checkpoint."""
        if self._quantized is False:
            from quantpress.core.dequant import quantized_source

            self._quantized = quantized_source(self.config, list_hf_tensors(self.folder), self.label)
        return self._quantized if isinstance(self._quantized, QuantizedSource) else None

    def _dequantized(self, source: str) -> QuantizedSource | None:
        q = self.quantized() if quantization_config(self.config) else None
        return q if q is not None and source in q.weights else None

    def _shape(self, fname: str, source: str) -> tuple[int, ...]:
        q = self._dequantized(source)
        return q.weights[source].shape if q else tuple(int(d) for d in self._open(fname)[1][source]["shape"])

    def stored_rows(self, part: Part, first: int, stop: int, lead: int) -> np.ndarray:
        """Rows first..stop of a stored tensor viewed as (prod(shape[:lead]), *shape[lead:]), as numpy
        (core/dequant's RowReader; BF16 comes back as its uint16 bits)."""
        f, header, start = self._open(part.file)
        meta = header[part.name]
        begin, end = meta["data_offsets"]
        shape = tuple(int(d) for d in meta["shape"])
        n_rows = int(np.prod(shape[:lead], dtype=np.int64))
        row_bytes = (end - begin) // max(1, n_rows)
        raw = self._read(f, start + begin + first * row_bytes, (stop - first) * row_bytes, part.where)
        return raw.view(NUMPY_DTYPES[meta["dtype"]]).reshape((stop - first,) + shape[lead:])

    def _open(self, fname: str) -> tuple[Any, dict[str, Any], int]:
        if fname not in self._files:
            path = self.folder / fname
            if not path.is_file():
                raise InvalidModel(f"{self.folder}: weight shard '{fname}' is missing. Download the complete model.")
            header, start = read_safetensors_header(path)
            self._files[fname] = (path.open("rb"), header, start)
        return self._files[fname]

    @staticmethod
    def _read(f: Any, offset: int, n: int, what: str) -> np.ndarray:
        f.seek(offset)
        data = f.read(n)
        if len(data) != n:
            raise InvalidModel(f"{what}: the weight file is truncated. Download the model again.")
        return np.frombuffer(data, dtype=np.uint8)

    def slabs(self, t: TensorPlan, max_rows: int) -> Iterator[np.ndarray]:
        """Float32 (rows, n_per_row) slabs of the transformed tensor (1-D tensors: one (1, n) slab)."""
        if "generated" in t.transforms:
            assert self.spec is not None and self.spec.extra_tensors is not None
            yield np.ascontiguousarray(self.spec.extra_tensors(self.config)[t.name], dtype=np.float32).reshape(1, -1)
            return
        if t.parts:  # stacked experts: one source matrix after another, in expert order
            for source, fname in t.parts:
                yield from self._rows(fname, source, 0, None, max_rows)
            return
        special = next((tr for tr in t.transforms if tr.partition(":")[0] in _RESHAPING), None)
        if special:
            yield from self._reshaped(t, special, max_rows)
            return
        src_shape = self._shape(t.source_file, t.source)
        order = row_order(t.transforms, src_shape[0] if src_shape else 1)
        post = _slab_transform(t.transforms)
        what = f"{t.source_file}: tensor '{t.source}'"
        if order is not None and self._dequantized(t.source):  # dequantize whole, then permute the rows
            x = np.concatenate(list(self._rows(t.source_file, t.source, 0, src_shape[0], src_shape[0])))[order]
            for a in range(0, x.shape[0], max_rows):
                yield post(x[a:a + max_rows])
            return
        if len(src_shape) <= 1 or order is not None:  # whole tensor: permutations pick rows anywhere
            f, header, start = self._open(t.source_file)
            meta = header[t.source]
            begin, end = meta["data_offsets"]
            raw = self._read(f, start + begin, end - begin, what).reshape(src_shape[0] if src_shape else 1, -1)
            picked = raw[order] if order is not None else raw
            x = _to_f32(np.ascontiguousarray(picked), meta["dtype"])
            x = x.reshape(1, -1) if len(src_shape) <= 1 else x.reshape(len(picked), -1)
            for a in range(0, x.shape[0], max_rows):
                yield post(x[a:a + max_rows])
            return
        for x in self._rows(t.source_file, t.source, 0, int(np.prod(t.shape[:-1], dtype=np.int64)), max_rows):
            yield post(x)

    def _reshaped(self, t: TensorPlan, transform: str, max_rows: int) -> Iterator[np.ndarray]:
        """Slabs of a tensor cut out of a differently shaped source (see _RESHAPING), one expert
        matrix (or one small whole tensor) in memory at a time."""
        kind, *args = transform.split(":")
        a, b, c = (int(v) for v in args + ["0"] * (3 - len(args)))
        src_shape = self._shape(t.source_file, t.source)
        if kind == "expert_rows":  # rows a..b of every expert of [E, R, C]
            rows = src_shape[1]
            for e in range(t.shape[0]):
                yield from self._rows(t.source_file, t.source, e * rows + a, e * rows + b, max_rows)
        elif kind in ("expert_cols_t", "expert_span_t", "expert_rows_step"):
            # per expert of [E, R, C]: columns a::b or a..b (transposed), or rows a::b
            rows = src_shape[1]
            for e in range(src_shape[0]):
                m = np.concatenate(list(self._rows(t.source_file, t.source, e * rows, (e + 1) * rows, max_rows)))
                part = m[:, a::b].T if kind == "expert_cols_t" else m[:, a:b].T if kind == "expert_span_t" else m[a::b]
                yield from _chunks(np.ascontiguousarray(part), max_rows)
        elif kind == "cols":  # columns a::b of a small 2-D tensor (gpt-oss's fused expert biases)
            yield from _chunks(np.ascontiguousarray(self._whole(t.source_file, t.source)[:, a::b]), max_rows)
        else:  # mla_k_b / mla_v_b: DeepSeek's kv_b_proj [H * (nope + v), rank] per head (a heads, b nope, c v)
            x = self._whole(t.source_file, t.source).reshape(a, b + c, -1)
            part = x[:, :b, :].transpose(0, 2, 1) if kind == "mla_k_b" else x[:, b:, :]
            yield from _chunks(np.ascontiguousarray(part).reshape(-1, t.shape[-1]), max_rows)

    def raw_chunks(self, t: TensorPlan) -> Iterator[np.ndarray]:
        """The tensor's bytes in its source's quantized type, expert by expert: MXFP4 expert blocks
        moved into ggml's block layout (values unchanged; core/dequant/mxfp4.py)."""
        transform = next((tr for tr in t.transforms if tr.startswith("expert_rows_step:")), None)
        q = self._dequantized(t.source)
        qt = q.weights[t.source] if q is not None else None
        if transform is None or qt is None or qt.label != mxfp4.LABEL:
            raise InvalidModel(f"{t.source}: only MXFP4 expert blocks can be copied unchanged")
        a, b = (int(v) for v in transform.split(":")[1:])
        for e in range(t.shape[0]):
            yield mxfp4.ggml_rows(qt, self.stored_rows, e, a, b)

    def _whole(self, fname: str, source: str) -> np.ndarray:
        """A small tensor as float32 (rows, last dim)."""
        return np.concatenate(list(self._rows(fname, source, 0, None, 1 << 30)))

    def _rows(self, fname: str, source: str, first: int, stop: int | None, max_rows: int) -> Iterator[np.ndarray]:
        """Float32 slabs of rows first..stop (None: all) of ``source`` viewed as 2-D (rows, last dim)."""
        q = self._dequantized(source)
        if q is not None:
            shape = q.weights[source].shape
            total = int(np.prod(shape[:-1], dtype=np.int64))
            for x in q.slabs(source, self.stored_rows, first, total if stop is None else stop, max_rows):
                yield x
            return
        f, header, start = self._open(fname)
        meta = header[source]
        begin, end = meta["data_offsets"]
        src_shape = tuple(meta["shape"])
        n_per_row = src_shape[-1]
        row_bytes = (end - begin) // int(np.prod(src_shape[:-1], dtype=np.int64))
        stop = int(np.prod(src_shape[:-1], dtype=np.int64)) if stop is None else stop
        what = f"{fname}: tensor '{source}'"
        for a in range(first, stop, max_rows):
            b = min(stop, a + max_rows)
            raw = self._read(f, start + begin + a * row_bytes, (b - a) * row_bytes, what)
            x = _to_f32(raw, meta["dtype"]).reshape(b - a, n_per_row)
            yield x

    def close(self) -> None:
        for f, _, _ in self._files.values():
            f.close()
        self._files.clear()


# ----------------------------------------------------------------------------------- model intake


def open_source(source: str | Path) -> Any:
    """A ModelInfo for ``source`` (``quantpress.core.inspect.open_model``)."""
    from quantpress.core.inspect import open_model

    return open_model(source)
