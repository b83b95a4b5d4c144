"""One validation layer for model inputs, used by every command and both runtimes (llama.cpp, torch).

Each check reads metadata only (JSON files, safetensors headers, GGUF key/values) and raises a
:mod:`core.errors` error naming the file and what is wrong, so that a bad input never reaches
transformers, torch, llama.cpp or the converter, where it would surface as a traceback, a prompt
to run the folder's own code, or numbers computed from garbage.

    check_safetensors_header(header, "model.safetensors", data_bytes)  dtype x shape = byte range, in
                                                                        bounds, contiguous, no overlap
    check_config(config, "config.json")       the hyperparameters quantpress and the runtimes read
    check_layers_present(names, n_layers, where)  every decoder layer the config declares is stored
    check_gguf_model(g)                       GGUF metadata values of the right type and range
    refuse_custom_code(folder)                an auto_map entry that transformers would need to import
    check_torch_folder(folder)                all folder checks, before anything calls transformers
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from gguf.constants import Keys
from quantpress.core.errors import InvalidModel

# Bytes per element of the safetensors dtypes (safetensors' own list, sub-byte types excluded).
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
                           "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean", float: "a number with a "
            "fraction", type(None): "null"}.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------- safetensors


def check_safetensors_header(header: Mapping[str, Any], label: str, data_bytes: int | None) -> None:
    """Refuse a header that safetensors (or our own reader) could not load: each entry's dtype, shape
    and data_offsets agree (elements x dtype bytes = end - begin), the ranges lie in the data area, follow
    each other without gaps or overlaps and cover it exactly. ``header`` is without ``__metadata__``."""
    ranges: list[tuple[int, int, str]] = []
    for name, meta in header.items():
        where = f"{label}: tensor '{name}'"
        if not isinstance(meta, dict):
            raise InvalidModel(f"{where}: malformed safetensors header entry (not an object); download the file again")
        shape, dtype, offsets = meta.get("shape"), meta.get("dtype"), meta.get("data_offsets")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise InvalidModel(f"{where}: malformed shape {shape!r} in the safetensors header; download the file again")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets):
            raise InvalidModel(f"{where}: malformed data_offsets {offsets!r} in the safetensors header")
        begin, end = offsets
        if end < begin:
            raise InvalidModel(f"{where}: data_offsets [{begin}, {end}] run backwards; the header is damaged")
        n_elements = 1
        for d in shape:
            n_elements *= d
        item = SAFETENSORS_DTYPE_BYTES.get(str(dtype))
        if item is None:
            raise InvalidModel(f"{where}: unknown safetensors dtype {dtype!r}; supported: "
                               f"{', '.join(SAFETENSORS_DTYPE_BYTES)}")
        if n_elements * item != end - begin:
            raise InvalidModel(f"{where}: shape {shape} as {dtype} needs {n_elements * item} bytes but its "
                               f"data_offsets hold {end - begin}; the header is damaged")
        if data_bytes is not None and end > data_bytes:
            raise InvalidModel(f"{label}: truncated safetensors file (tensor '{name}' needs {end} bytes of data, "
                               f"the file has {data_bytes}); download it again")
        ranges.append((begin, end, name))
    ranges.sort()
    at = 0
    for begin, end, name in ranges:
        if begin < at:
            raise InvalidModel(f"{label}: tensor '{name}' overlaps the data of another tensor in the safetensors "
                               "header; the file is damaged")
        if begin > at:
            raise InvalidModel(f"{label}: a gap of {begin - at} bytes before tensor '{name}' in the safetensors "
                               "data; the file is damaged")
        at = end
    if data_bytes is not None and at != data_bytes:
        raise InvalidModel(f"{label}: {data_bytes - at} bytes after the last tensor that no header entry "
                           "describes; the file is damaged or not a safetensors file")


# ----------------------------------------------------------------------------- config.json

# Keys quantpress and the runtimes read as counts or sizes (GPT-2 style names for unknown archs).
_POSITIVE_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "hidden_size", "n_embd", "d_model", "vocab_size",
                  "max_position_embeddings", "n_positions")
# Keys that may also be per-layer lists (OpenELM-style configs, per-layer FFN widths).
_POSITIVE_OR_LIST_KEYS = ("num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size", "head_dim")


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's part of a config (multimodal configs nest it under text_config)."""
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) and not config.get("num_hidden_layers") else config


def check_config(config: Mapping[str, Any], label: str) -> None:
    """Refuse config values of the wrong kind or range: counts and sizes must be positive integers,
    the heads must divide the hidden size (when no head_dim says otherwise) and the KV heads the heads."""
    text = text_config(config)
    for key in (*_POSITIVE_KEYS, *_POSITIVE_OR_LIST_KEYS):
        value = text.get(key)
        if value is None:
            continue
        ok = _is_int(value) and value > 0
        if not ok and key in _POSITIVE_OR_LIST_KEYS and isinstance(value, list) and value:
            ok = all(_is_int(v) and v >= 0 for v in value) and max(value) > 0
        if not ok:
            shown = f"{value!r}" if len(repr(value)) < 40 else _kind(value)
            raise InvalidModel(f"{label}: '{key}' is {shown}; it must be a positive whole number. The config is "
                               "damaged or was edited by hand")
    heads, kv_heads, hidden = text.get("num_attention_heads"), text.get("num_key_value_heads"), text.get("hidden_size")
    if _is_int(heads) and _is_int(kv_heads) and heads % kv_heads:
        raise InvalidModel(f"{label}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    if _is_int(heads) and _is_int(hidden) and text.get("head_dim") is None and hidden % heads:
        raise InvalidModel(f"{label}: hidden_size {hidden} is not a multiple of num_attention_heads {heads} and "
                           "there is no head_dim")


_LAYER = re.compile(r"^(.*?(?:layers|\.h|blocks))\.(\d+)\.")
# Where decoder layers live in the common checkpoint layouts (vision towers and encoders excluded).
_DECODER_PREFIXES = ("model.layers", "model.language_model.layers", "language_model.model.layers", "transformer.h",
                     "backbone.layers", "model.decoder.layers", "gpt_neox.layers", "transformer.blocks")


def check_layers_present(names: Iterable[str], n_layers: int, where: str) -> None:
    """Refuse a checkpoint that stores fewer decoder layers than the config declares (a runtime would
    fill the rest with random numbers, a converter would stop half-way)."""
    found: dict[str, set[int]] = {}
    for name in names:
        m = _LAYER.match(name)
        if m and m.group(1) in _DECODER_PREFIXES:
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    if not found or n_layers <= 0:
        return
    stored = max(found.values(), key=len)
    missing = sorted(set(range(n_layers)) - stored)
    if missing:
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InvalidModel(f"{where}: config.json declares {n_layers} layers but the weights hold {len(stored)}; "
                           f"no weights for layer {shown}. Download the complete model or fix num_hidden_layers")


def check_shapes(config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], where: str) -> None:
    """Refuse weights whose shapes contradict the config (a runtime would stop with a shape error, or
    a converter write a file llama.cpp refuses): the embedding is vocab_size x hidden_size, the first
    layer's attention projections hold heads x head_dim rows. Checked where the common names exist."""
    text = text_config(config)
    values = [text.get(k) for k in ("hidden_size", "vocab_size", "num_attention_heads", "num_key_value_heads")]
    values[3] = text.get("num_attention_heads") if values[3] is None else values[3]
    ints = [v for v in values if _is_int(v) and v > 0]
    if len(ints) != 4:
        return  # per-layer lists or unknown names: nothing simple to compare
    hidden, vocab, heads, kv_heads = ints
    head_dim = text.get("head_dim") or hidden // heads
    expected = {"model.embed_tokens.weight": (vocab, hidden),
                "model.layers.0.self_attn.q_proj.weight": (heads * head_dim, hidden),
                "model.layers.0.self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
                "model.layers.0.self_attn.v_proj.weight": (kv_heads * head_dim, hidden)}
    for name, shape in expected.items():
        found = shapes.get(name)
        # a bitsandbytes 4-bit weight is stored packed, its real shape in "<name>.quant_state.*" beside it
        packed = any(k.startswith(name + ".quant_state.") for k in shapes)
        if found is not None and tuple(found) != shape and not packed:
            raise InvalidModel(f"{where}: tensor '{name}' is {list(found)} but config.json implies {list(shape)} "
                               "(hidden_size, vocab_size, heads, head_dim); the config does not belong to these "
                               "weights")


def check_weights_match_config(config: Mapping[str, Any], tensors: Sequence[Any], where: str) -> None:
    """The stored tensors (``TensorInfo``: name, shape, file) against the config: no name stored twice
    (one would shadow the other), every declared layer present, the common shapes as the config implies."""
    files: dict[str, str] = {}
    for t in tensors:
        if t.name in files:
            raise InvalidModel(f"{where}: tensor '{t.name}' is stored twice (in {files[t.name]} and {t.file}); one "
                               "would silently shadow the other. Download the model again")
        files[t.name] = t.file
    text = text_config(config)
    n_layers = next((v for k in ("num_hidden_layers", "n_layer", "num_layers") if _is_int(v := text.get(k))), 0)
    check_layers_present(files, n_layers, where)
    check_shapes(config, {t.name: t.shape for t in tensors}, where)


# ----------------------------------------------------------------------------- GGUF


def _gguf_count(g: Any, key: str, *, required: bool, allow_list: bool = False) -> None:
    full = f"{g.architecture}.{key}"
    value = g.get(full)
    name = g.path.name
    if value is None:
        if required:
            raise InvalidModel(f"{name}: GGUF metadata lacks '{full}'; the file is damaged or was not written "
                               "for llama.cpp. Convert it again")
        return
    if allow_list and isinstance(value, list):
        if value and all(_is_int(v) and v >= 0 for v in value) and max(value) > 0:
            return
        raise InvalidModel(f"{name}: GGUF metadata '{full}' is a list that is empty or holds values other than "
                           "whole numbers >= 0; the file is damaged")
    if not (_is_int(value) and value > 0):
        shown = f"{value!r}" if len(repr(value)) < 40 else _kind(value)
        raise InvalidModel(f"{name}: GGUF metadata '{full}' is {shown} ({g.value_types.get(full, '?')}); it must be "
                           "a positive whole number. The file is damaged; convert it again")


def check_gguf_model(g: Any) -> None:
    """The metadata a model GGUF must carry for quantpress and llama.cpp: the architecture, positive
    counts and sizes of the right type, and a vocabulary as long as the token embedding."""
    arch = g.get(Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise InvalidModel(f"{g.path.name}: GGUF metadata 'general.architecture' is missing or not a string; "
                           "this is not a model file llama.cpp can load")
    _gguf_count(g, "block_count", required=True)
    _gguf_count(g, "embedding_length", required=True)
    _gguf_count(g, "attention.head_count", required=False, allow_list=True)
    _gguf_count(g, "attention.head_count_kv", required=False, allow_list=True)
    _gguf_count(g, "feed_forward_length", required=False, allow_list=True)
    for key in ("context_length", "attention.key_length", "attention.value_length", "vocab_size"):
        _gguf_count(g, key, required=False)
    tokens = g.get(Keys.Tokenizer.LIST)
    if tokens is not None and (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)):
        raise InvalidModel(f"{g.path.name}: GGUF metadata 'tokenizer.ggml.tokens' is not a list of strings")
    names = {t.name: t for t in g.tensors}
    embd = names.get("token_embd.weight")
    if embd is not None and len(embd.shape) == 2:
        n_embd = g.get(f"{arch}.embedding_length")
        if tokens is not None and embd.shape[0] != len(tokens):
            raise InvalidModel(f"{g.path.name}: the vocabulary has {len(tokens)} tokens but token_embd.weight has "
                               f"{embd.shape[0]} rows; llama.cpp would refuse it. The file is damaged")
        if embd.shape[1] != n_embd:
            raise InvalidModel(f"{g.path.name}: token_embd.weight is {embd.shape[1]} wide but "
                               f"'{arch}.embedding_length' says {n_embd}; the file is damaged")
    n_layers = int(g.get(f"{arch}.block_count"))
    blocks = {int(m.group(1)) for n in names if (m := re.match(r"^blk\.(\d+)\.", n))}
    if blocks:
        check_layers_present((f"model.layers.{i}.x" for i in blocks), n_layers, g.path.name)


# ----------------------------------------------------------------------------- NaN / Inf values


def non_finite_weights(where: str, tensor: str) -> InvalidModel:
    """The error for a stored tensor holding NaN or Inf (every path that reads weights raises it)."""
    return InvalidModel(f"{where}: tensor '{tensor}' contains NaN or Inf values; the checkpoint is damaged "
                        "(download it again) or was saved from a diverged training run")


def non_finite_output(where: str) -> InvalidModel:
    """The error for a model whose computed logits hold NaN or Inf (its weights do: a score or an
    answer from it would be noise)."""
    return InvalidModel(f"{where}: the model computes NaN or Inf values; its weights contain NaN or Inf (a damaged "
                        "file, or one made from a diverged checkpoint). Convert it again from a sound source")


# ----------------------------------------------------------------------------- custom code

_CUSTOM_CODE_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable files are reported by the checks that need them
    return data if isinstance(data, dict) else None


def _auto_map_entries(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(auto class, 'module.Class') pairs of an auto_map (dict form, or the old tokenizer list form)."""
    auto_map = data.get("auto_map")
    if isinstance(auto_map, list):  # very old tokenizer configs: ["module.Slow", "module.Fast"]
        auto_map = {"AutoTokenizer": auto_map}
    if not isinstance(auto_map, dict):
        return []
    out = []
    for key, target in auto_map.items():
        targets = target if isinstance(target, list) else [target]
        out += [(str(key), str(t)) for t in targets if t]
    return out


def _builtin(name: Any) -> bool:
    """Whether transformers itself provides the class ``name`` (then an auto_map entry is never used)."""
    if not isinstance(name, str) or not name.isidentifier():
        return False
    import transformers

    try:
        return getattr(transformers, name, None) is not None
    except Exception:  # noqa: BLE001 - a lazy import failing means: not usable built in
        return False


def _needs_own_code(file: str, key: str, data: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    known_type = isinstance(model_type, str) and model_type in CONFIG_MAPPING
    if file == "tokenizer_config.json" or key in ("AutoTokenizer", "AutoProcessor", "AutoImageProcessor",
                                                  "AutoFeatureExtractor"):
        cls = data.get("tokenizer_class") or data.get("processor_class") or data.get("image_processor_type")
        return not (_builtin(cls) or (cls is None and known_type))
    if key == "AutoConfig":
        return not known_type
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else None
    return not (known_type and (arch is None or _builtin(arch)))


def refuse_custom_code(folder: Path) -> None:
    """Raise InvalidModel naming the file and the entry when loading ``folder`` in transformers would
    need the folder's own Python code (an ``auto_map`` entry for a class transformers lacks). Entries
    that only duplicate a built-in class (Phi-3 checkpoints carry such) are harmless: with
    ``trust_remote_code=False`` transformers uses its own class and never imports the folder's."""
    config = _read_json(folder / "config.json") or {}
    for file in _CUSTOM_CODE_FILES:
        data = config if file == "config.json" else _read_json(folder / file)
        if not data:
            continue
        for key, target in _auto_map_entries(data):
            if _needs_own_code(file, key, data, config):
                raise InvalidModel(
                    f"{folder.name}/{file}: auto_map entry '{key}': '{target}' needs the model's own Python "
                    f"code ({target.split('.')[0].split('--')[-1]}.py), and quantpress never runs code from a model "
                    "folder. Use a model whose architecture transformers supports without custom code")


def read_config(folder: Path) -> dict[str, Any]:
    """``folder``'s config.json as a dict; InvalidModel when it is missing, not JSON or not an object."""
    path = folder / "config.json"
    if not path.is_file():
        raise InvalidModel(f"{folder}: no config.json; this is not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InvalidModel(f"{path}: not a JSON object")
    return config


def check_config_file(folder: Path) -> None:
    """:func:`check_config` on ``folder``'s config.json (InvalidModel when it is missing or not JSON)."""
    check_config(read_config(folder), f"{folder.name}/config.json")


def check_torch_folder(folder: Path) -> None:
    """Every check a Hugging Face folder passes before transformers or torch touch it: no custom code,
    safetensors weights (pickle checkpoints are never loaded) with sound headers, config values, and
    every declared layer stored. Raises InvalidModel."""
    if not folder.is_dir():
        raise InvalidModel(f"{folder}: no such folder")
    refuse_custom_code(folder)
    from quantpress.core.inspect import open_hf_folder

    open_hf_folder(folder)
