"""Model intake: describe a model from its metadata only, whatever the user points at.

    resolve_source("demo")            -> Path of the demo HF folder (any command accepts 'demo')
    open_model("path/to/hf-folder")   -> ModelInfo   (config.json + safetensors headers)
    open_model("model.Q4_K_M.gguf")   -> ModelInfo   (GGUF header)
    open_model("org/name")            -> ModelInfo   (Hub: config, tokenizer, safetensors headers;
                                                      see quantpress.core.hub)

Never loads weights, never unpickles (.bin/.pt/.ckpt checkpoints are refused), never runs model
code (no trust_remote_code). Unknown architectures are described from the config as far as it
goes and flagged ``convertible=False`` with the reason.
"""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import Keys
from quantpress.core.dequant import dequantized_tensors
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf.arch.gemma4 import kv_layout as gemma4_kv_layout
from quantpress.core.memory import recurrent_state_bytes
from quantpress.core.model import ModelInfo, SourceKind, TensorInfo
from quantpress.core.validate import (
    SAFETENSORS_DTYPE_BYTES,
    check_config,
    check_gguf_model,
    check_safetensors_header,
    check_weights_match_config,
    read_config,
    text_config,
)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFETENSORS_INDEX = "model.safetensors.index.json"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")


# ----------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class ArchRow:
    """How to read one HF family's hyperparameters. ``swa``: how llama.cpp applies the config's
    sliding window ('none': ignored by llama.cpp's graph for this arch; 'pattern': Gemma 3's
    interleaved local/global layers, from ``layer_types`` or every ``sliding_window_pattern``-th
    layer global; 'chunked': Llama 4's chunked attention, window ``attention_chunk_size`` on the
    ``layer_types`` 'chunked_attention' layers, else on all but every ``swa_pattern_default``-th)."""

    gguf_arch: str
    swa: str = "none"
    swa_pattern_default: int = 0
    # Per-layer cache widths and KV-shared layer count from the text config, for families whose layers
    # differ (ModelInfo.kv_widths, n_kv_shared_layers); None: uniform head_dim * n_kv_heads.
    kv_layout: Callable[[Mapping[str, Any]], tuple[tuple[tuple[int, int], ...], int]] | None = None


# HF class -> gguf arch. llama.cpp facts: Mistral converts to arch 'llama' (whose graph has no SWA);
# Qwen2/3 graphs have no SWA; Phi-3 SWA "is currently disabled" (src/models/phi3.cpp); Gemma 3 uses
# SWA with pattern 6 unless the GGUF carries the per-layer array (src/models/gemma3.cpp).
ARCHITECTURES: dict[str, ArchRow] = {
    "LlamaForCausalLM": ArchRow("llama"),
    "MistralForCausalLM": ArchRow("llama"),
    "Qwen2ForCausalLM": ArchRow("qwen2"),
    "Qwen3ForCausalLM": ArchRow("qwen3"),
    "Gemma3ForCausalLM": ArchRow("gemma3", "pattern", 6),
    "Gemma3ForConditionalGeneration": ArchRow("gemma3", "pattern", 6),
    "Gemma2ForCausalLM": ArchRow("gemma2", "pattern", 2),
    "SmolLM3ForCausalLM": ArchRow("smollm3"),
    "Mistral3ForConditionalGeneration": ArchRow("mistral3"),
    "Ministral3ForCausalLM": ArchRow("mistral3"),
    "Qwen3VLForConditionalGeneration": ArchRow("qwen3vl"),
    "Qwen3VLMoeForConditionalGeneration": ArchRow("qwen3vlmoe"),
    # llama.cpp runs chunked attention as its iSWA cache with n_swa = 8192, 3 chunked layers : 1 global.
    "Llama4ForCausalLM": ArchRow("llama4", "chunked", 4),
    "Llama4ForConditionalGeneration": ArchRow("llama4", "chunked", 4),
    "Phi3ForCausalLM": ArchRow("phi3"),
    # Mixture-of-experts families (llama.cpp runs Mixtral as 'llama' with experts).
    "Qwen3MoeForCausalLM": ArchRow("qwen3moe"),
    "Qwen2MoeForCausalLM": ArchRow("qwen2moe"),
    "MixtralForCausalLM": ArchRow("llama"),
    "OlmoeForCausalLM": ArchRow("olmoe"),
    "Glm4MoeForCausalLM": ArchRow("glm4moe"),
    "DeepseekV3ForCausalLM": ArchRow("deepseek2"),
    # Gated DeltaNet hybrids: recurrent state on linear-attention layers, KV on the others.
    "Qwen3_5ForCausalLM": ArchRow("qwen35"),
    "Qwen3_5ForConditionalGeneration": ArchRow("qwen35"),
    "Qwen3_5MoeForCausalLM": ArchRow("qwen35moe"),
    "Qwen3_5MoeForConditionalGeneration": ArchRow("qwen35moe"),
    "Qwen3NextForCausalLM": ArchRow("qwen3next"),
    # Gemma 4: sliding and global layers of different head sizes, trailing KV-shared layers.
    "Gemma4ForCausalLM": ArchRow("gemma4", "pattern", 6, gemma4_kv_layout),
    "Gemma4ForConditionalGeneration": ArchRow("gemma4", "pattern", 6, gemma4_kv_layout),
}
# llama.cpp archs whose attention is multi-head latent attention (MLA): the converter writes key_length_mla,
# and llama.cpp caches the latent (kv_lora_rank + qk_rope_head_dim per token and layer) instead of K/V per head.
MLA_ARCHS = frozenset({"deepseek2"})
GGUF_SWA = {"gemma3": 6, "gemma2": 2, "gemma4": 6}  # llama.cpp archs with interleaved SWA and their default pattern
# llama.cpp archs whose graph fixes the window itself, (window, pattern): Llama 4's chunked attention
# (src/models/llama4.cpp: n_swa = 8192 whatever the file says, unless it says sliding_window = 0).
GGUF_FIXED_SWA = {"llama4": (8192, 4)}

# config.json keys, first present wins (GPT-2 style names as fallbacks for unknown archs).
_KEYS: dict[str, tuple[str, ...]] = {
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "n_heads": ("num_attention_heads", "n_head"),
    "n_kv_heads": ("num_key_value_heads", "num_kv_heads", "multi_query_group_num"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "ffn_size": ("intermediate_size", "n_inner", "ffn_hidden_size"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "context_length": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"),
    "n_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "n_experts_used": ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k_experts"),
}


def _cfg(config: Mapping[str, Any], what: str, default: int = 0) -> int:
    for key in _KEYS[what]:
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return default


def _swa_layers(config: Mapping[str, Any], row: ArchRow | None, n_layers: int) -> tuple[int | None, tuple[int, ...]]:
    if row is not None and row.swa == "chunked":
        chunk, types = config.get("attention_chunk_size"), config.get("layer_types")
        if not chunk:
            return None, ()
        if isinstance(types, list) and len(types) == n_layers:
            return int(chunk), tuple(i for i, t in enumerate(types) if t == "chunked_attention")
        return int(chunk), tuple(i for i in range(n_layers) if (i + 1) % row.swa_pattern_default)
    window = config.get("sliding_window")
    if row is None or row.swa != "pattern" or not window:
        return (int(window) if window else None), ()
    types = config.get("layer_types")
    if isinstance(types, list) and len(types) == n_layers:
        return int(window), tuple(i for i, t in enumerate(types) if t == "sliding_attention")
    pattern = int(config.get("sliding_window_pattern") or row.swa_pattern_default)
    return int(window), tuple(i for i in range(n_layers) if pattern > 1 and (i + 1) % pattern)


def _recurrent(config: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(linear-attention layer indices, state bytes per layer and sequence) of a Gated DeltaNet
    hybrid config (Qwen3.5, Qwen3-Next; the keys llama.cpp's converter maps to ssm.*), else ((), 0)."""
    types = config.get("layer_types")
    if not isinstance(types, list) or "linear_attention" not in types or "linear_key_head_dim" not in config:
        return (), 0
    d_inner = int(config["linear_value_head_dim"]) * int(config["linear_num_value_heads"])
    state = recurrent_state_bytes(int(config.get("linear_conv_kernel_dim") or 4), d_inner,
                                  int(config["linear_num_key_heads"]), int(config["linear_key_head_dim"]))
    return tuple(i for i, t in enumerate(types) if t == "linear_attention"), state


def gguf_recurrent(av: Callable[[str, Any], Any], n_layers: int) -> tuple[tuple[int, ...], int, int]:
    """(recurrent layer indices, state bytes per layer and sequence, MTP blocks) from a GGUF's
    ``{arch}.*`` metadata (``av``: GGUFFile.arch_value): attention.recurrent_layers and ssm.*."""
    n_nextn = int(av("nextn_predict_layers", 0) or 0)
    flags = av("attention.recurrent_layers", None)
    if not isinstance(flags, list) or not any(flags):
        return (), 0, n_nextn
    state = recurrent_state_bytes(int(av("ssm.conv_kernel", 0) or 0), int(av("ssm.inner_size", 0) or 0),
                                  int(av("ssm.group_count", 0) or 0), int(av("ssm.state_size", 0) or 0))
    return tuple(i for i, r in enumerate(flags) if r and i < n_layers - n_nextn), state, n_nextn


def _convertible(hf_class: str) -> str:
    """'' if quantpress's GGUF converter supports ``hf_class``, else the reason."""
    from quantpress.core.gguf.arch import spec_for_hf_class

    try:
        spec_for_hf_class(hf_class)
    except UnsupportedArchitecture as exc:
        return str(exc)
    return ""


def describe_config(config: Mapping[str, Any], tensors: tuple[TensorInfo, ...], *, source: str,
                    kind: SourceKind, local_path: Path | None, name: str) -> ModelInfo:
    """A ModelInfo from config.json and the tensor list (shared by the folder and Hub paths)."""
    hf_class = str((config.get("architectures") or [config.get("model_type", "unknown")])[0])
    text = text_config(config)  # multimodal configs (Gemma 3 4B+) nest the language model
    row = ARCHITECTURES.get(hf_class)
    n_layers, n_heads = _cfg(text, "n_layers"), _cfg(text, "n_heads")
    hidden = _cfg(text, "hidden_size")
    head_dim = int(text.get("head_dim") or (hidden // n_heads if n_heads else 0))
    window, swa = _swa_layers(text, row, n_layers)
    kv_widths, n_kv_shared = row.kv_layout(text) if row and row.kv_layout else ((), 0)
    recurrent, state = _recurrent(text)
    names = {t.name for t in tensors}
    tied = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))) or (
        bool(tensors) and not any(n.endswith("lm_head.weight") for n in names))
    if config.get("auto_map") and hf_class not in ARCHITECTURES:
        reason = f"'{hf_class}' needs custom model code (auto_map); quantpress never runs remote code"
    else:
        reason = _convertible(hf_class)
    return ModelInfo(
        source=source, kind=kind, architecture=hf_class, gguf_arch=row.gguf_arch if row else None,
        n_params=sum(_n_elements(t.shape) for t in tensors), n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=_cfg(text, "n_kv_heads", n_heads), head_dim=head_dim, head_dim_v=head_dim,
        hidden_size=hidden, ffn_size=_cfg(text, "ffn_size"), vocab_size=_cfg(text, "vocab_size"),
        context_length=_cfg(text, "context_length"), sliding_window=window, swa_layers=swa,
        recurrent_layers=recurrent, recurrent_state_bytes=state, kv_widths=kv_widths, n_kv_shared_layers=n_kv_shared,
        mla_kv_width=_mla_kv_width(text, row),
        tied_embeddings=tied, n_experts=_cfg(text, "n_experts"), n_experts_used=_cfg(text, "n_experts_used"),
        dtype=_dominant_dtype(tensors, str(text.get("torch_dtype") or text.get("dtype") or "bfloat16")),
        tensors=tensors, convertible=not reason, not_convertible_reason=reason, local_path=local_path,
        config=dict(config), name=name)


def _mla_kv_width(text: Mapping[str, Any], row: ArchRow | None) -> int:
    """The MLA cache row width llama.cpp will use for this config (0: not MLA): the GGUF's key_length
    over its one KV head, kv_lora_rank + qk_rope_head_dim (core/gguf/arch/deepseekv3.py writes them)."""
    if row is None or row.gguf_arch not in MLA_ARCHS or not text.get("kv_lora_rank"):
        return 0
    return int(text["kv_lora_rank"]) + int(text.get("qk_rope_head_dim") or 0)


def _n_elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


_TORCH_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "half": "F16", "float": "F32"}


def _dominant_dtype(tensors: tuple[TensorInfo, ...], config_dtype: str) -> str:
    if not tensors:
        return _TORCH_DTYPES.get(config_dtype, "BF16")
    by_bytes: Counter[str] = Counter()
    for t in tensors:
        by_bytes[t.dtype] += t.n_bytes
    return by_bytes.most_common(1)[0][0]


# ----------------------------------------------------------------------------- safetensors


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one .safetensors file (reads only the header bytes)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InvalidModel(f"{path}: truncated safetensors file ({size} bytes, no header length)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise InvalidModel(f"{path}: not a safetensors file (header length {n} is implausible)")
            raw = f.read(n)
    except OSError as exc:
        raise InvalidModel(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) < n:
        raise InvalidModel(f"{path}: truncated safetensors header ({len(raw)} of {n} bytes); download it again")
    return parse_safetensors_header(raw, path.name, data_bytes=size - 8 - n)


def parse_safetensors_header(raw: bytes, label: str, data_bytes: int | None = None) -> dict[str, Any]:
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidModel(f"{label}: corrupt safetensors header ({exc})") from None
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise InvalidModel(f"{label}: corrupt safetensors header (__metadata__ is not a map of strings)")
    check_safetensors_header(header, label, data_bytes)
    return header


def tensors_from_header(header: Mapping[str, Any], file: str) -> list[TensorInfo]:
    out = []
    for name, meta in header.items():
        try:
            shape = tuple(int(d) for d in meta["shape"])
            dtype = str(meta["dtype"])
        except (KeyError, TypeError, ValueError):
            raise InvalidModel(f"{file}: malformed entry for tensor '{name}' in the safetensors header") from None
        out.append(TensorInfo(name, shape, dtype, _n_elements(shape) * SAFETENSORS_DTYPE_BYTES.get(dtype, 4), file))
    return out


def _weight_files(folder: Path) -> list[str]:
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidModel(f"{index}: not a valid safetensors index ({exc})") from None
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise InvalidModel(f"{folder}: {len(missing)} of {len(files)} weight shards are missing "
                               f"({', '.join(missing[:3])}); download the complete model")
        return files
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise InvalidModel(f"{folder}: only pickle checkpoints ({', '.join(pickles[:3])}); quantpress never "
                           "unpickles (it can run code). Use a .safetensors version of the model")
    raise InvalidModel(f"{folder}: no .safetensors weights found")


def open_hf_folder(folder: Path) -> ModelInfo:
    config = read_config(folder)
    check_config(config, f"{folder.name}/config.json")
    tensors: list[TensorInfo] = []
    for fname in _weight_files(folder):
        tensors += tensors_from_header(read_safetensors_header(folder / fname), fname)
    tensors = dequantized_tensors(config, tensors, folder.name, strict=False)  # quantized: as the float model
    check_weights_match_config(config, tensors, str(folder))
    from quantpress.core.hub_download import repo_of_snapshot

    repo = repo_of_snapshot(folder)  # a Hub download: its folder is named by commit, so name it by repo
    return describe_config(config, tuple(tensors), source=str(folder), kind=SourceKind.HF_FOLDER,
                           local_path=folder, name=repo.split("/")[-1] if repo else folder.name)


# ----------------------------------------------------------------------------- GGUF


def gguf_swa(arch: str, n_layers: int, av: Callable[[str, Any], Any]) -> tuple[int, tuple[int, ...]]:
    """(window, indices of the sliding-window or chunked layers) of a GGUF model as llama.cpp runs it,
    from its ``{arch}.*`` metadata (``av``: GGUFFile.arch_value): attention.sliding_window and
    attention.sliding_window_pattern (a per-layer list or a period; else the architecture's)."""
    window = int(av("attention.sliding_window", 0) or 0)
    if arch in GGUF_FIXED_SWA:
        if av("attention.sliding_window", None) == 0:  # the converter's marker for no chunked attention
            return 0, ()
        window, default = GGUF_FIXED_SWA[arch]
    elif not window or arch not in GGUF_SWA:
        return window, ()
    else:
        default = GGUF_SWA[arch]
    pattern = av("attention.sliding_window_pattern", None)
    if isinstance(pattern, list) and len(pattern) == n_layers:
        return window, tuple(i for i, is_swa in enumerate(pattern) if is_swa)
    p = int(pattern or default)
    return window, tuple(i for i in range(n_layers) if (i + 1) % p)


def gguf_kv_layout(av: Callable[[str, Any], Any], n_layers: int,
                   swa: tuple[int, ...]) -> tuple[tuple[tuple[int, int], ...], int]:
    """(per-layer (K, V) cache widths where the metadata sizes layers apart, else (); KV-shared trailing
    layers) from a GGUF's ``{arch}.*`` metadata, as llama-hparams.cpp sizes each layer: the *_swa head
    sizes on sliding layers, head_count_kv per layer when it is an array, attention.shared_kv_layers."""
    heads = av("attention.head_count_kv", None)
    if heads is None:
        heads = av("attention.head_count", 0)
    per_layer = [int(h) for h in heads] if isinstance(heads, list) else [int(heads or 0)] * n_layers
    k_full = int(av("attention.key_length", 0) or 0)
    v_full = int(av("attention.value_length", 0) or k_full)
    k_swa, v_swa = int(av("attention.key_length_swa", 0) or k_full), int(av("attention.value_length_swa", 0) or v_full)
    n_shared = int(av("attention.shared_kv_layers", 0) or 0)
    if not k_full or len(per_layer) != n_layers:
        return (), n_shared
    widths = tuple(((k_swa, v_swa) if i in swa else (k_full, v_full)) for i in range(n_layers))
    per_layer_sizes = isinstance(heads, list) or av("attention.key_length_swa", None) is not None
    return (tuple((k * per_layer[i], v * per_layer[i]) for i, (k, v) in enumerate(widths))
            if per_layer_sizes else ()), n_shared


def open_gguf_file(path: Path) -> ModelInfo:
    from quantpress.core.gguf.reader import open_gguf

    with open_gguf(path) as g:
        check_gguf_model(g)
        arch = g.architecture
        av = g.arch_value
        tensors = tuple(TensorInfo(t.name, t.shape, t.ggml_type, t.n_bytes, str(path)) for t in g.tensors)
        n_layers = int(av("block_count", 0) or 0)
        n_heads = int(av("attention.head_count", 0) or 0)
        n_kv = av("attention.head_count_kv", n_heads)
        n_kv = int(max(n_kv) if isinstance(n_kv, list) else n_kv or n_heads)
        hidden = int(av("embedding_length", 0) or 0)
        head_dim = int(av("attention.key_length", 0) or (hidden // n_heads if n_heads else 0))
        window, swa = gguf_swa(arch, n_layers, av)
        n_vocab = av("vocab_size") or len(g.get(Keys.Tokenizer.LIST, []) or [])
        ffn = av("feed_forward_length", 0)
        recurrent, state, n_nextn = gguf_recurrent(av, n_layers)
        name = str(g.get(Keys.General.NAME) or path.stem)
        info: dict[str, Any] = dict(context_length=int(av("context_length", 0) or 0), head_dim_v=int(av("attention.value_length", 0)
                    or head_dim), ffn_size=int(max(ffn) if isinstance(ffn, list) else ffn or 0),
                    n_experts=int(av("expert_count", 0) or 0), n_experts_used=int(av("expert_used_count", 0) or 0),
                    recurrent_layers=recurrent, recurrent_state_bytes=state, n_nextn_layers=n_nextn,
                    mla_kv_width=head_dim * n_kv if av("attention.key_length_mla") else 0)
        kv_widths, n_kv_shared = gguf_kv_layout(av, n_layers, swa)
    from quantpress.core.gguf.arch import spec_for_gguf_arch

    names = {t.name for t in tensors}
    reason = "" if spec_for_gguf_arch(arch) else f"GGUF architecture '{arch}' is not one quantpress can requantize"
    by_bytes: Counter[str] = Counter()
    for t in tensors:
        by_bytes[t.dtype] += t.n_bytes
    return ModelInfo(
        source=str(path), kind=SourceKind.GGUF, architecture=arch, gguf_arch=arch,
        n_params=sum(_n_elements(t.shape) for t in tensors), n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
        head_dim=head_dim, hidden_size=hidden, vocab_size=int(n_vocab or 0),
        sliding_window=window or None, swa_layers=swa, kv_widths=kv_widths, n_kv_shared_layers=n_kv_shared,
        tied_embeddings="output.weight" not in names,
        dtype=by_bytes.most_common(1)[0][0] if by_bytes else "F32", tensors=tensors, convertible=not reason,
        not_convertible_reason=reason, local_path=path, name=name, **info)


# ----------------------------------------------------------------------------- entry points


def is_demo_alias(source: str | Path) -> bool:
    """Whether ``source`` names the demo model ('demo', unless a file or folder of that name exists)."""
    return str(source).strip().lower() == "demo" and not Path(str(source)).exists()


def resolve_source(source: str | Path) -> str | Path:
    """'demo' -> the demo model folder (built on first use); anything else unchanged."""
    if is_demo_alias(source):
        from quantpress.core.demo import ensure_demo_model

        return ensure_demo_model()
    return source


def open_model(source: str | Path) -> ModelInfo:
    """Describe ``source`` (HF folder, GGUF file, Hub repo id or 'demo') from metadata only."""
    source = resolve_source(source)
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return open_hf_folder(path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise InvalidModel(f"{path}: a pickle checkpoint; quantpress never unpickles (it can run code). "
                               "Use a .safetensors or .gguf version of the model")
        if path.suffix.lower() == ".safetensors":
            raise InvalidModel(f"{path}: give the folder that holds this file and its config.json")
        return open_gguf_file(path)
    text = str(source)
    if _REPO_ID.match(text) and not text.startswith((".", "/", "~")):
        from quantpress.core.hub import open_hub_model

        return open_hub_model(text)
    raise InvalidModel(f"{source}: no such file or folder (and not a Hub repo id like 'org/name')")
