"""Generated bad inputs: damaged copies of a tiny model, one way of being broken each.

    HF_BREAKAGES["offsets reversed"](folder, marker)   breaks a copied Hugging Face folder in place
    GGUF_BREAKAGES["alignment 0"](src_gguf, dst)       writes a damaged copy of a GGUF file

Folder breakages that plant custom code make it create ``marker`` when imported, so a test can tell
that it never ran. The GGUF writer below is deliberately independent of quantpress's (it can write
what quantpress's writer never would: a zero alignment, a string block count, duplicate names).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- Hugging Face folders


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    change(data)
    path.write_text(json.dumps(data))


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.update(values)


def _read_st(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_st(path: Path, header: dict[str, Any], data: bytes, *, header_bytes: bytes | None = None) -> None:
    blob = header_bytes if header_bytes is not None else json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def _tensors(header: dict[str, Any]) -> list[str]:
    """Tensor names of a header in data order."""
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _header_edit(change: Callable[[dict[str, Any], list[str]], None]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, _marker: Path) -> None:
        path = folder / "model.safetensors"
        header, data = _read_st(path)
        change(header, _tensors(header))
        _write_st(path, header, data)

    return apply


def _raw_edit(change: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, _marker: Path) -> None:
        path = folder / "model.safetensors"
        path.write_bytes(change(path.read_bytes()))

    return apply


def _config(**values: Any) -> Callable[[Path, Path], None]:
    return lambda folder, _marker: edit_json(folder / "config.json", _set(**values))


def _payload(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('custom code ran')\n"


def _custom_model_code(folder: Path, marker: Path) -> None:
    """config.json of an architecture transformers lacks, with auto_map into the folder's own code."""
    (folder / "configuration_evil.py").write_text(_payload(marker) + "from transformers import PretrainedConfig\n"
                                                  "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    (folder / "modeling_evil.py").write_text(_payload(marker))
    edit_json(folder / "config.json", _set(model_type="evil", architectures=["EvilForCausalLM"], auto_map={
        "AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}))


def _custom_tokenizer_code(folder: Path, marker: Path) -> None:
    """A standard Llama folder whose tokenizer_config.json points into the folder's own code."""
    (folder / "tokenization_evil.py").write_text(_payload(marker))
    edit_json(folder / "tokenizer_config.json", _set(tokenizer_class="EvilTokenizer", auto_map={
        "AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}))


def _pickle_only(folder: Path, marker: Path) -> None:
    (folder / "model.safetensors").unlink()
    _plant_pickle(folder, marker)


def _plant_pickle(folder: Path, marker: Path) -> None:
    """A pytorch_model.bin whose unpickling would create ``marker``."""
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (exec, (_payload(marker),))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))


def _nan_weights(folder: Path, _marker: Path) -> None:
    path = folder / "model.safetensors"
    header, data = _read_st(path)
    name = next(n for n in _tensors(header) if n.endswith("mlp.down_proj.weight"))
    begin = header[name]["data_offsets"][0]
    nan_bf16 = b"\xc0\x7f"
    _write_st(path, header, data[:begin] + nan_bf16 * 4 + data[begin + 8 :])


def _drop_layer(folder: Path, _marker: Path) -> None:
    """The last decoder layer is missing from the weights (the config still declares it)."""
    path = folder / "model.safetensors"
    header, data = _read_st(path)
    n = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    keep = [k for k in _tensors(header) if not k.startswith(f"model.layers.{n - 1}.")]
    out, chunks, at = {}, [], 0
    for k in keep:
        b, e = header[k]["data_offsets"]
        out[k] = dict(header[k], data_offsets=[at, at + e - b])
        chunks.append(data[b:e])
        at += e - b
    _write_st(path, out, b"".join(chunks))


def _first(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any], list[str]], None]:
    return lambda header, names: change(header[names[0]])


def _second(change: Callable[[dict[str, Any], dict[str, Any]], None]) -> Callable[[dict[str, Any], list[str]], None]:
    return lambda header, names: change(header[names[0]], header[names[1]])


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> None:
    size = b["data_offsets"][1] - b["data_offsets"][0]
    start = a["data_offsets"][1] - 2  # two bytes into the first tensor: overlapping, sizes still right
    b["data_offsets"] = [start, start + size]


def _swap_dtype(m: dict[str, Any]) -> None:
    m["dtype"] = "F32"  # twice the bytes the range holds


HF_BREAKAGES: dict[str, Callable[[Path, Path], None]] = {
    # safetensors files
    "truncated data": _raw_edit(lambda raw: raw[: len(raw) // 2]),
    "header length huge": _raw_edit(lambda raw: struct.pack("<Q", 1 << 40) + raw[8:]),
    "header length past end": _raw_edit(lambda raw: struct.pack("<Q", len(raw)) + raw[8:]),
    "empty file": _raw_edit(lambda raw: b""),
    "header not json": _raw_edit(lambda raw: raw[:8] + b"{" * 8 + raw[16:]),
    "header is a list": lambda folder, m: _write_st(folder / "model.safetensors", {}, _read_st(
        folder / "model.safetensors")[1], header_bytes=b"[1, 2, 3]"),
    "unknown dtype": _header_edit(_first(lambda m: m.update(dtype="Q4_K"))),
    "dtype disagrees with bytes": _header_edit(_first(_swap_dtype)),
    "shape disagrees with bytes": _header_edit(_first(lambda m: m.update(shape=[*m["shape"][:-1], 7]))),
    "negative shape": _header_edit(_first(lambda m: m.update(shape=[-1, *m["shape"][1:]]))),
    "shape as string": _header_edit(_first(lambda m: m.update(shape="96,384"))),
    "overflowing shape": _header_edit(_first(lambda m: m.update(shape=[1 << 62, 1 << 62]))),
    "offsets reversed": _header_edit(_first(lambda m: m.update(data_offsets=m["data_offsets"][::-1]))),
    "offsets missing": _header_edit(_first(lambda m: m.pop("data_offsets"))),
    "offsets past end": _header_edit(_first(lambda m: m.update(data_offsets=[1 << 40, (1 << 40) + 2 * int(
        np.prod(m["shape"]))]))),
    "overlapping tensors": _header_edit(_second(_overlap)),
    "entry not an object": _header_edit(lambda h, names: h.update({names[0]: [1, 2]})),
    "metadata not strings": _header_edit(lambda h, names: h.update(__metadata__={"format": 1})),
    "trailing garbage": _raw_edit(lambda raw: raw + b"\0" * 64),
    # config.json
    "num_attention_heads 0": _config(num_attention_heads=0),
    "hidden_size string": _config(hidden_size="96"),
    "num_hidden_layers negative": _config(num_hidden_layers=-2),
    "vocab_size float": _config(vocab_size=384.5),
    "num_key_value_heads list of strings": _config(num_key_value_heads=["a", "b"]),
    "heads do not divide hidden": _config(num_attention_heads=5, num_key_value_heads=1),
    "kv heads do not divide heads": _config(num_key_value_heads=2),
    "more layers than stored": _config(num_hidden_layers=9),
    "config not json": lambda folder, m: (folder / "config.json").write_text("{'not': json"),
    "config is a list": lambda folder, m: (folder / "config.json").write_text("[]"),
    "no config": lambda folder, m: (folder / "config.json").unlink(),
    # weights
    "layer missing from weights": _drop_layer,
    "nan weights": _nan_weights,
    "pickle only": _pickle_only,
    # foreign code
    "custom model code": _custom_model_code,
    "custom tokenizer code": _custom_tokenizer_code,
}


# ----------------------------------------------------------------------------- GGUF files

_SCALARS = {"UINT8": (0, "B"), "INT8": (1, "b"), "UINT16": (2, "H"), "INT16": (3, "h"), "UINT32": (4, "I"),
            "INT32": (5, "i"), "FLOAT32": (6, "f"), "BOOL": (7, "?"), "UINT64": (10, "Q"), "INT64": (11, "q"),
            "FLOAT64": (12, "d")}
_STRING, _ARRAY = 8, 9


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _value(vtype: str, value: Any) -> bytes:
    """Type id and payload of a GGUF value, ``vtype`` as the reader names it ('UINT32', 'ARRAY[STRING]')."""
    if vtype == "STRING":
        return struct.pack("<I", _STRING) + _str(value)
    if vtype.startswith("ARRAY["):
        sub = vtype[6:-1]
        if sub == "STRING":
            body = b"".join(_str(v) for v in value)
            sub_id = _STRING
        else:
            sub_id, fmt = _SCALARS[sub]
            body = b"".join(struct.pack("<" + fmt, v) for v in value)
        return struct.pack("<IIQ", _ARRAY, sub_id, len(value)) + body
    type_id, fmt = _SCALARS[vtype]
    return struct.pack("<I", type_id) + struct.pack("<" + fmt, value)


class Gguf:
    """A GGUF file's parts, editable: ``kv`` maps key -> (type name, value); ``tensors`` lists
    (name, numpy shape, ggml type name, data bytes)."""

    def __init__(self, path: Path) -> None:
        from quantpress.core.gguf.reader import open_gguf

        with open_gguf(path) as g:
            self.kv = {k: (g.value_types[k], v) for k, v in g.metadata.items()}
            self.tensors = [(t.name, t.shape, t.ggml_type, bytes(g.raw(t.name).reshape(-1).view(np.uint8)))
                            for t in g.tensors]
        self.offsets: dict[str, int] = {}  # data offsets to write instead of the packed ones

    def write(self, path: Path, alignment: int = 32) -> None:
        from gguf import GGMLQuantizationType

        head = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))
        head += b"".join(_str(k) + _value(t, v) for k, (t, v) in self.kv.items())
        data, infos = b"", b""
        for name, shape, ggml_type, raw in self.tensors:
            infos += _str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape[::-1])
            infos += struct.pack("<IQ", int(GGMLQuantizationType[ggml_type]), self.offsets.get(name, len(data)))
            data += raw + b"\0" * (-len(raw) % 32)
        head += infos
        head += b"\0" * (-len(head) % max(alignment, 1))
        path.write_bytes(head + data)


def _kv(key: str, vtype: str | None, value: Any = None) -> Callable[[Gguf], None]:
    """Set (or, with vtype None, delete) ``{arch}.``-relative or absolute key."""

    def apply(g: Gguf) -> None:
        full = key if key.startswith(("general.", "tokenizer.")) else f"{g.kv['general.architecture'][1]}.{key}"
        if vtype is None:
            g.kv.pop(full, None)
        else:
            g.kv[full] = (vtype, value)

    return apply


def _short_vocab(g: Gguf) -> None:
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        if key in g.kv:
            vtype, values = g.kv[key]
            g.kv[key] = (vtype, values[:10])


def _duplicate_tensor(g: Gguf) -> None:
    g.tensors.append(g.tensors[-1])


def _zero_dim(g: Gguf) -> None:
    name, shape, ggml_type, _raw = g.tensors[-1]
    g.tensors[-1] = (name, (0, *shape[1:]), ggml_type, b"")


def _nan_tensor(g: Gguf) -> None:
    i = next(i for i, t in enumerate(g.tensors) if t[2] == "F32" and t[0].endswith("norm.weight"))
    name, shape, ggml_type, raw = g.tensors[i]
    g.tensors[i] = (name, shape, ggml_type, np.full(len(raw) // 4, np.nan, np.float32).tobytes())


def _overlap(g: Gguf) -> None:
    """The last tensor's info points at the first tensor's data (the bytes stay where they were)."""
    g.offsets[g.tensors[-1][0]] = 0


def _relabel(g: Gguf) -> None:
    """A Q8_0 tensor labelled F32: four times the bytes, reaching into the next tensor's data."""
    i = next(i for i, t in enumerate(g.tensors[:-1]) if t[2] == "Q8_0")
    name, shape, _type, raw = g.tensors[i]
    g.tensors[i] = (name, shape, "F32", raw)


def _drop_block(g: Gguf) -> None:
    g.tensors = [t for t in g.tensors if not t[0].startswith("blk.1.")]


GGUF_BREAKAGES: dict[str, tuple[Callable[[Gguf], None], int]] = {
    # name: (edit, alignment to write with)
    "alignment 0": (_kv("general.alignment", "UINT32", 0), 32),
    "alignment 3": (_kv("general.alignment", "UINT32", 3), 32),
    "alignment string": (_kv("general.alignment", "STRING", "32"), 32),
    "no architecture": (lambda g: g.kv.pop("general.architecture"), 32),
    "block_count string": (_kv("block_count", "STRING", "30"), 32),
    "block_count 0": (_kv("block_count", "UINT32", 0), 32),
    "block_count float": (_kv("block_count", "FLOAT32", 2.5), 32),
    "block_count above stored": (_kv("block_count", "UINT32", 40), 32),
    "head_count 0": (_kv("attention.head_count", "UINT32", 0), 32),
    "head_count list of zeros": (_kv("attention.head_count", "ARRAY[UINT32]", [0, 0]), 32),
    "head_count list of strings": (_kv("attention.head_count", "ARRAY[STRING]", ["3", "3"]), 32),
    "head_count_kv string": (_kv("attention.head_count_kv", "STRING", "1"), 32),
    "no embedding_length": (_kv("embedding_length", None), 32),
    "embedding_length wrong": (_kv("embedding_length", "UINT32", 128), 32),
    "context_length 0": (_kv("context_length", "UINT32", 0), 32),
    "feed_forward_length string": (_kv("feed_forward_length", "STRING", "256"), 32),
    "10-token vocabulary": (_short_vocab, 32),
    "tokens not strings": (_kv("tokenizer.ggml.tokens", "ARRAY[INT32]", list(range(384))), 32),
    "duplicate tensor names": (_duplicate_tensor, 32),
    "overlapping tensor data": (_overlap, 32),
    "tensor type relabelled": (_relabel, 32),
    "zero-size dimension": (_zero_dim, 32),
    "layer missing": (_drop_block, 32),
    "nan weights": (_nan_tensor, 32),
}


def break_gguf(src: Path, dst: Path, name: str) -> Path:
    edit, alignment = GGUF_BREAKAGES[name]
    g = Gguf(src)
    edit(g)
    g.write(dst, alignment)
    return dst
