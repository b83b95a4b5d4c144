"""GGUF -> Hugging Face folder ("unpack"): the inverse of convert_hf_to_gguf for supported
architectures.

    unpack_gguf("model.Q4_1.gguf", "model-hf")  ->  model-hf/{config.json, model.safetensors,
        tokenizer.json, tokenizer_config.json, generation_config.json}

What it does, per tensor: dequantize to float32, rename from GGUF to HF names (a table per
architecture, ``ARCHITECTURES``), and undo llama.cpp's Q/K row permutation where the architecture
has one. The tokenizer is rebuilt with the ``tokenizers`` library from the GGUF vocab, merges and
token types; the pre-tokenizer comes from ``tokenizer.ggml.pre`` (table ``PRE_TOKENIZERS``).

Weights are written as F32 by default because dequantized values are float32 products
``f16(d) * q (+ f16(m))`` that F16/BF16 cannot hold exactly. Measured on SmolLM2's Q4_1 file: rounding
to F16 changes 33% of the values of a Q4_1 tensor (blk.0.ffn_up) and 79% of the Q8_0 token_embd;
BF16 changes 75% and 97%. (tests/core/gguf/test_unpack.py::test_f32_is_needed_for_exact_values.)
With F32 the rebuilt folder requantizes to byte-identical Q4_1 tensors. ``dtype="F16"``/``"BF16"``
halves the size for users who accept that rounding.

The output is written to a hidden temporary folder next to ``out_dir`` and renamed into place
when complete; a failure or cancel removes it, so ``out_dir`` either appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import Keys
from quantpress.core.disk import require_free_space
from quantpress.core.errors import InvalidInput, UnsupportedArchitecture
from quantpress.core.gguf.reader import GGUFFile, open_gguf
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore
from quantpress.core.outputs import existing_ancestor, output_folder
from quantpress.core.signals import UNPACK_TMP, remove_stale
from quantpress.core.validate import check_gguf_model, non_finite_weights

SHARD_BYTES = 5 * 1024**3  # the usual HF shard size; smaller models get one model.safetensors
_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (None, 2)}


# --------------------------------------------------------------------------------------------
# Architectures: GGUF tensor names -> HF names, and GGUF metadata -> config.json
# --------------------------------------------------------------------------------------------
def _llama_config(g: GGUFFile) -> dict[str, Any]:
    n_embd = int(g.arch_value("embedding_length"))
    n_head = int(g.arch_value("attention.head_count"))
    cfg: dict[str, Any] = {
        "hidden_size": n_embd,
        "intermediate_size": int(g.arch_value("feed_forward_length")),
        "num_hidden_layers": int(g.arch_value("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(g.arch_value("attention.head_count_kv", n_head)),
        "head_dim": int(g.arch_value("attention.key_length", n_embd // n_head)),
        "max_position_embeddings": int(g.arch_value("context_length", 2048)),
        "rms_norm_eps": _f32(g.arch_value("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": _f32(g.arch_value("rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "initializer_range": 0.02,
    }
    scaling = g.arch_value("rope.scaling.type")
    if scaling == "linear":
        cfg["rope_scaling"] = {"type": "linear", "factor": _f32(g.arch_value("rope.scaling.factor"))}
    elif scaling not in (None, "none"):
        raise UnsupportedArchitecture(f"{g.path.name}: RoPE scaling '{scaling}' cannot be unpacked yet")
    return cfg


def _qwen2_config(g: GGUFFile) -> dict[str, Any]:
    cfg = _llama_config(g)
    cfg.update(use_sliding_window=False, sliding_window=cfg["max_position_embeddings"], max_window_layers=0)
    return cfg


_LLAMA_BLOCK = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_QKV_BIAS = {
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
}
_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


@dataclass(frozen=True)
class ArchSpec:
    """How one llama.cpp architecture maps back to a transformers model class."""

    hf_class: str
    model_type: str
    global_names: Mapping[str, str]  # GGUF name -> HF name
    block_names: Mapping[str, str]  # suffix after 'blk.N.' -> suffix after 'model.layers.N.'
    config: Callable[[GGUFFile], dict[str, Any]]
    # convert_hf_to_gguf permutes Q/K rows for rotary "normal" (interleaved) mode; undo it.
    permute_qk: bool = False
    extra_config: Mapping[str, Any] = field(default_factory=dict)


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec(
        "LlamaForCausalLM",
        "llama",
        _GLOBAL,
        {**_LLAMA_BLOCK, **_QKV_BIAS},
        _llama_config,
        permute_qk=True,
        extra_config={"mlp_bias": False, "pretraining_tp": 1},
    ),
    "qwen2": ArchSpec("Qwen2ForCausalLM", "qwen2", _GLOBAL, {**_LLAMA_BLOCK, **_QKV_BIAS}, _qwen2_config),
}


def _f32(value: Any) -> float:
    """A float32 metadata value as the short decimal it was written from (1e-05, not 9.99e-06)."""
    return float(str(np.float32(value)))


def _arch_spec(g: GGUFFile) -> ArchSpec:
    spec = ARCHITECTURES.get(g.architecture)
    if spec is None:
        raise UnsupportedArchitecture(
            f"{g.path.name}: architecture '{g.architecture or '?'}' cannot be unpacked to a Hugging Face "
            f"folder yet; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return spec


_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


def hf_tensor_name(spec: ArchSpec, gguf_name: str) -> str | None:
    """The HF name of a GGUF tensor, or None if the architecture has no counterpart."""
    if gguf_name in spec.global_names:
        return spec.global_names[gguf_name]
    m = _BLOCK_RE.match(gguf_name)
    if m and m.group(2) in spec.block_names:
        return f"model.layers.{m.group(1)}.{spec.block_names[m.group(2)]}"
    return None


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf's ``permute``: rows (n_head, 2, half) were stored as
    (n_head, half, 2). ``w`` is (n_head * head_dim, ...) for weights or (n_head * head_dim,) for biases."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --------------------------------------------------------------------------------------------
# Tokenizer: GGUF vocab -> tokenizer.json
# --------------------------------------------------------------------------------------------
_GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_bytelevel() -> Any:
    from tokenizers import pre_tokenizers as pt

    return pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def _pre_digits_bytelevel() -> Any:
    from tokenizers import pre_tokenizers as pt

    return pt.Sequence([pt.Digits(individual_digits=True), _pre_bytelevel()])


def _pre_split(pattern: str) -> Callable[[], Any]:
    def build() -> Any:
        from tokenizers import Regex
        from tokenizers import pre_tokenizers as pt

        return pt.Sequence(
            [
                pt.Split(Regex(pattern), behavior="isolated", invert=False),
                pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
            ]
        )

    return build


@dataclass(frozen=True)
class PreTokenizer:
    """How llama.cpp splits text for one ``tokenizer.ggml.pre`` value, as HF tokenizers parts."""

    build: Callable[[], Any]
    ignore_merges: bool = False  # a word that is itself a token is not split (llama 3)
    nfc: bool = False  # the HF tokenizer normalizes to NFC first
    add_bos_default: bool = False  # llama.cpp's add_bos when the GGUF does not say


# tokenizer.ggml.pre -> equivalent of llama.cpp's regexes and flags (src/llama-vocab.cpp).
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    **dict.fromkeys(
        ("smollm", "starcoder", "refact", "codeshell", "command-r"), PreTokenizer(_pre_digits_bytelevel)
    ),
    **dict.fromkeys(("gpt-2", "mpt", "olmo"), PreTokenizer(_pre_bytelevel)),
    **dict.fromkeys(
        ("llama-bpe", "llama3", "llama-v3"),
        PreTokenizer(_pre_split(_LLAMA3_RE), ignore_merges=True, add_bos_default=True),
    ),
    **dict.fromkeys(("dbrx", "smaug-bpe"), PreTokenizer(_pre_split(_LLAMA3_RE))),
    **dict.fromkeys(("qwen2", "stablelm2"), PreTokenizer(_pre_split(_QWEN2_RE), nfc=True)),
}
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 2, 3, 4
_SPECIAL_KEYS = {"bos": "bos", "eos": "eos", "unk": "unknown", "pad": "padding"}


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]
    types: list[int]
    special_ids: dict[str, int]  # 'bos' / 'eos' / 'unk' / 'pad' -> id


def _read_vocab(g: GGUFFile) -> _Vocab:
    model = g.get(Keys.Tokenizer.MODEL)
    if model != "gpt2":
        raise UnsupportedArchitecture(
            f"{g.path.name}: tokenizer type '{model}' cannot be rebuilt yet; only byte-level BPE ('gpt2')"
        )
    tokens = [str(t) for t in g.get(Keys.Tokenizer.LIST, [])]
    types = [int(t) for t in g.get(Keys.Tokenizer.TOKEN_TYPE, [TOKEN_NORMAL] * len(tokens))]
    ids: dict[str, int] = {}
    for key, gguf_key in _SPECIAL_KEYS.items():
        value = g.get(f"tokenizer.ggml.{gguf_key}_token_id")
        if value is not None and 0 <= int(value) < len(tokens):
            ids[key] = int(value)
    return _Vocab(tokens, types, ids)


def build_tokenizer(g: GGUFFile) -> Any:
    """A ``tokenizers.Tokenizer`` equivalent to llama.cpp's tokenizer for this GGUF (byte-level BPE)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    vocab = _read_vocab(g)
    pre = str(g.get(Keys.Tokenizer.PRE, "default"))
    if pre not in PRE_TOKENIZERS:
        raise UnsupportedArchitecture(
            f"{g.path.name}: pre-tokenizer '{pre}' is not known here, so the tokenizer cannot be rebuilt "
            f"exactly; known: {', '.join(sorted(PRE_TOKENIZERS))}"
        )
    merges = [tuple(m.split(" ", 1)) for m in g.get(Keys.Tokenizer.MERGES, [])]
    ids: dict[str, int] = {}
    for i, tok in enumerate(vocab.tokens):
        ids.setdefault(tok, i)  # duplicates (padding tokens) keep their first id
    spec = PRE_TOKENIZERS[pre]
    tokenizer = Tokenizer(
        models.BPE(
            vocab=ids, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=spec.ignore_merges
        )
    )
    if spec.nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = spec.build()
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = _post_processor(vocab, _add_bos(g, spec))
    added = [
        AddedToken(vocab.tokens[i], special=t == TOKEN_CONTROL, normalized=False)
        for i, t in enumerate(vocab.types)
        if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED)
    ]
    tokenizer.add_special_tokens([a for a in added if a.special])
    tokenizer.add_tokens([a for a in added if not a.special])
    return tokenizer


def _add_bos(g: GGUFFile, spec: PreTokenizer) -> bool:
    return bool(g.get(Keys.Tokenizer.ADD_BOS, spec.add_bos_default))


def _post_processor(vocab: _Vocab, add_bos: bool) -> Any:
    from tokenizers import processors

    byte_level = processors.ByteLevel(trim_offsets=False)
    if not add_bos or "bos" not in vocab.special_ids:
        return byte_level
    bos_id = vocab.special_ids["bos"]
    bos = vocab.tokens[bos_id]
    template = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
    )
    return processors.Sequence([byte_level, template])


def _tokenizer_config(g: GGUFFile, vocab: _Vocab, max_length: int) -> dict[str, Any]:
    added = {
        str(i): {
            "content": vocab.tokens[i],
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t == TOKEN_CONTROL,
        }
        for i, t in enumerate(vocab.types)
        if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED)
    }
    cfg: dict[str, Any] = {
        "add_bos_token": _add_bos(g, PRE_TOKENIZERS[str(g.get(Keys.Tokenizer.PRE, "default"))]),
        "add_eos_token": bool(g.get(Keys.Tokenizer.ADD_EOS, False)),
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    for key, idx in vocab.special_ids.items():
        cfg[f"{key}_token"] = vocab.tokens[idx]
    template = g.get(Keys.Tokenizer.CHAT_TEMPLATE)
    if template:
        cfg["chat_template"] = str(template)
    return cfg


# --------------------------------------------------------------------------------------------
# Weights: a streaming safetensors writer (one tensor in memory at a time)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Planned:
    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]
    n_bytes: int


def _shards(items: list[_Planned], max_bytes: int) -> list[list[_Planned]]:
    shards: list[list[_Planned]] = [[]]
    size = 0
    for item in items:
        if shards[-1] and size + item.n_bytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.n_bytes
    return shards


def _safetensors_header(items: list[_Planned], dtype: str, metadata: dict[str, str]) -> bytes:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for item in items:
        header[item.hf_name] = {
            "dtype": dtype,
            "shape": list(item.shape),
            "data_offsets": [offset, offset + item.n_bytes],
        }
        offset += item.n_bytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors itself writes it
    return len(raw).to_bytes(8, "little") + raw


def _encode(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":  # round to nearest even, as torch does
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype("<u2").tobytes()
    return values.astype(np.dtype(_DTYPES[dtype][0]).newbyteorder("<"), copy=False).tobytes()


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnpackResult:
    out_dir: Path
    source: Path
    architecture: str  # HF class, e.g. 'LlamaForCausalLM'
    gguf_arch: str
    n_tensors: int
    n_params: int
    dtype: str  # written dtype: 'F32', 'F16' or 'BF16'
    source_types: dict[str, int]  # GGML type name -> tensor count in the GGUF
    files: tuple[str, ...]
    n_bytes: int  # total size of the written folder
    seconds: float


def _plan(g: GGUFFile, spec: ArchSpec, dtype: str) -> list[_Planned]:
    items = []
    for t in g.tensors:
        hf = hf_tensor_name(spec, t.name)
        if hf is None:
            raise UnsupportedArchitecture(
                f"{g.path.name}: tensor '{t.name}' of architecture '{g.architecture}' has no Hugging Face "
                "counterpart here, so this file cannot be unpacked yet"
            )
        items.append(_Planned(t.name, hf, t.shape, t.n_elements * _DTYPES[dtype][1]))
    return sorted(items, key=lambda p: p.hf_name)


def _check_out(out_dir: Path, src: Path) -> None:
    from quantpress.core.outputs import check_output_folder

    check_output_folder(out_dir, [src], what="unpacked")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidInput(f"{out_dir}: already exists and is not empty; choose a new folder")


def unpack_gguf(
    gguf_path: str | Path,
    out_dir: str | Path,
    *,
    dtype: str = "F32",
    report: Report = ignore,
    cancel: CancelToken = NEVER,
) -> UnpackResult:
    """Rebuild a Hugging Face folder from a GGUF file (see the module docstring)."""
    start = time.monotonic()
    src, out_dir = Path(gguf_path), Path(out_dir)
    if dtype not in _DTYPES:
        raise InvalidInput(f"unknown dtype '{dtype}'; choose one of {', '.join(_DTYPES)}")
    _check_out(out_dir, src)
    with open_gguf(src) as g:
        check_gguf_model(g)
        spec = _arch_spec(g)
        plan = _plan(g, spec, dtype)
        tokenizer = build_tokenizer(g)  # before writing anything: fails fast on unknown tokenizers
        require_free_space(existing_ancestor(out_dir.parent), sum(p.n_bytes for p in plan), what="unpacking",
                           advice="Free some space or choose an output folder on another disk.")
        with output_folder(out_dir.parent):  # only now: a refused or failed unpack leaves no folder behind
            remove_stale(out_dir.parent, UNPACK_TMP)  # what killed unpacks left behind
            tmp = out_dir.parent / f".{out_dir.name}.unpack-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
            tmp.mkdir()  # not mkdtemp: its 0700 mode would stick to the renamed folder
            try:
                files = _write_folder(g, spec, plan, tokenizer, tmp, dtype, Throttle(report), cancel)
                if out_dir.exists():
                    out_dir.rmdir()  # empty (checked above); rename() onto a folder is not portable
                os.replace(tmp, out_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        types: dict[str, int] = {}
        for t in g.tensors:
            types[t.ggml_type] = types.get(t.ggml_type, 0) + 1
        return UnpackResult(
            out_dir=out_dir,
            source=src,
            architecture=spec.hf_class,
            gguf_arch=g.architecture,
            n_tensors=len(plan),
            n_params=sum(t.n_elements for t in g.tensors),
            dtype=dtype,
            source_types=types,
            files=tuple(files),
            n_bytes=sum(f.stat().st_size for f in out_dir.iterdir()),
            seconds=time.monotonic() - start,
        )


def _write_folder(
    g: GGUFFile,
    spec: ArchSpec,
    plan: list[_Planned],
    tokenizer: Any,
    tmp: Path,
    dtype: str,
    report: Report,
    cancel: CancelToken,
) -> list[str]:
    config = _config(g, spec, dtype)
    files = _write_weights(g, spec, config, plan, tmp, dtype, report, cancel)
    vocab = _read_vocab(g)
    tokenizer.save(str(tmp / "tokenizer.json"))
    _write_json(tmp / "tokenizer_config.json", _tokenizer_config(g, vocab, config["max_position_embeddings"]))
    _write_json(tmp / "config.json", config)
    gen = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}
    _write_json(tmp / "generation_config.json", gen)
    return [*files, "tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"]


def _config(g: GGUFFile, spec: ArchSpec, dtype: str) -> dict[str, Any]:
    vocab = _read_vocab(g)
    names = {t.name for t in g.tensors}
    cfg: dict[str, Any] = {"architectures": [spec.hf_class], "model_type": spec.model_type}
    cfg.update(spec.config(g))
    cfg.update(spec.extra_config)
    cfg["attention_bias"] = "blk.0.attn_q.bias" in names
    cfg["vocab_size"] = int(g.arch_value("vocab_size", len(vocab.tokens)))
    cfg["tie_word_embeddings"] = "output.weight" not in names
    for key in ("bos", "eos", "pad"):
        if key in vocab.special_ids:
            cfg[f"{key}_token_id"] = vocab.special_ids[key]
    cfg["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    cfg["use_cache"] = True
    return cfg


def _write_weights(
    g: GGUFFile,
    spec: ArchSpec,
    config: dict[str, Any],
    plan: list[_Planned],
    tmp: Path,
    dtype: str,
    report: Report,
    cancel: CancelToken,
) -> list[str]:
    shards = _shards(plan, SHARD_BYTES)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    total, done = sum(p.n_bytes for p in plan), 0
    meta = {"format": "pt", "source": g.path.name}
    for shard, name in zip(shards, names, strict=True):
        with (tmp / name).open("wb") as f:
            f.write(_safetensors_header(shard, dtype, meta))
            for item in shard:
                cancel.raise_if_cancelled()
                weights = _load(g, spec, config, item.gguf_name)
                if not np.isfinite(weights).all():
                    raise non_finite_weights(g.path.name, item.gguf_name)
                f.write(_encode(weights, dtype))
                done += item.n_bytes
                report(Progress("unpack", done / total, item.hf_name, done, total))
    if len(shards) > 1:
        weight_map = {p.hf_name: n for shard, n in zip(shards, names, strict=True) for p in shard}
        _write_json(
            tmp / "model.safetensors.index.json",
            {"metadata": {"total_size": total}, "weight_map": weight_map},
        )
        names.append("model.safetensors.index.json")
    return names


def _load(g: GGUFFile, spec: ArchSpec, config: dict[str, Any], gguf_name: str) -> np.ndarray:
    values = g.dequantize(gguf_name)
    if spec.permute_qk:
        if ".attn_q." in gguf_name:
            values = unpermute_qk(values, config["num_attention_heads"])
        elif ".attn_k." in gguf_name:
            values = unpermute_qk(values, config["num_key_value_heads"])
    return np.ascontiguousarray(values)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
