"""GGUF v3 byte layout: encode the header, metadata and tensor infos, and compute exact sizes.

One encoder serves both the planner (sizes, without touching weights) and the writer (bytes),
so a plan's predicted ``file_bytes`` is the written size by construction; tests check it anyway.

File = header (magic, version, n_tensors u64, n_kv u64) + KV pairs + tensor infos
       + zero padding to ALIGNMENT + each tensor's data padded to ALIGNMENT (gguf.cpp, GGUFWriter).
Shapes are given in numpy order (rows first) and written reversed (ggml ``ne``).

The facts (magic, version, alignment, value type ids, GGML type ids and block geometry) come from
gguf-py (llama.cpp's own ``gguf`` package, ``gguf.constants``); only the encoding is ours, because it
must give a file's exact size without writing it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_VERSION,
    GGMLQuantizationType,
    GGUFValueType,
)
from gguf.constants import GGUF_MAGIC as _GGUF_MAGIC_U32

GGUF_MAGIC = struct.pack("<I", _GGUF_MAGIC_U32)  # b"GGUF"
ALIGNMENT = GGUF_DEFAULT_ALIGNMENT

# struct format of each fixed-size value type (STRING and ARRAY are length-prefixed).
STRUCT_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}


def ggml_geometry(names: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """name -> (ggml type id, weights per block, bytes per block), from gguf-py's tables."""
    out = {}
    for name in names:
        t = GGMLQuantizationType[name]
        out[name] = (int(t), *GGML_QUANT_SIZES[t])
    return out


# Every type quantpress writes or reads in a conversion.
GGML_TYPES: dict[str, tuple[int, int, int]] = ggml_geometry(
    ("F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
     "IQ4_XS", "BF16",
     # i-quants below 4 bits (ggml-common.h block_iq*): grids of 8-value patterns, 256-weight super-blocks.
     "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ3_S", "IQ2_S", "IQ1_M",
     # MXFP4 (OCP microscaling FP4, 32-weight blocks with an E8M0 scale): gpt-oss experts, MXFP4_MOE.
     "MXFP4"))


def value_type(vtype: str) -> tuple[GGUFValueType, GGUFValueType | None]:
    """A value type written as in quantpress's KV tables: 'UINT32' -> (UINT32, None),
    'ARRAY[STRING]' -> (ARRAY, STRING). KeyError for a name gguf-py does not know."""
    outer, _, inner = vtype.partition("[")
    if inner:
        return GGUFValueType.ARRAY, GGUFValueType[inner.removesuffix("]")]
    return GGUFValueType[outer], None


def value_type_name(vtype: GGUFValueType, item: GGUFValueType | None = None) -> str:
    """The inverse of :func:`value_type`."""
    return f"ARRAY[{item.name}]" if item is not None else vtype.name


def pad(n: int, align: int = ALIGNMENT) -> int:
    return (n + align - 1) // align * align


def block_size(ggml_type: str) -> int:
    return GGML_TYPES[ggml_type][1]


def tensor_nbytes(shape: Sequence[int], ggml_type: str) -> int:
    """Bytes of a tensor of numpy-order ``shape`` stored as ``ggml_type`` (rows must fit the block)."""
    _, blck, size = GGML_TYPES[ggml_type]
    n_per_row = shape[-1]
    if n_per_row % blck:
        raise ValueError(f"{ggml_type} needs rows that are a multiple of {blck}, got {n_per_row}")
    n_rows = 1
    for d in shape[:-1]:
        n_rows *= d
    return n_rows * (n_per_row // blck) * size


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _scalar(vtype: GGUFValueType, value: Any) -> bytes:
    if vtype == GGUFValueType.STRING:
        return _string(value if isinstance(value, str) else bytes(value).decode("utf-8"))
    return struct.pack("<" + STRUCT_FORMATS[vtype], value)


def _array(item_type: GGUFValueType, values: Sequence[Any]) -> bytes:
    head = struct.pack("<IQ", int(item_type), len(values))
    if item_type == GGUFValueType.STRING:
        parts = [head]
        for v in values:
            raw = v.encode("utf-8") if isinstance(v, str) else bytes(v)
            parts.append(struct.pack("<Q", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return head + struct.pack(f"<{len(values)}{STRUCT_FORMATS[item_type]}", *values)


def encode_kv(key: str, value: Any, vtype: str) -> bytes:
    """One key/value pair. ``vtype`` is a value type name or ``ARRAY[<item type>]``."""
    outer, item = value_type(vtype)
    head = _string(key) + struct.pack("<I", int(outer))
    return head + (_array(item, value) if item is not None else _scalar(outer, value))


def encode_metadata(kvs: Iterable[tuple[str, Any, str]]) -> bytes:
    return b"".join(encode_kv(k, v, t) for k, v, t in kvs)


def encode_header(n_tensors: int, n_kv: int) -> bytes:
    return GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, n_tensors, n_kv)


def encode_tensor_info(name: str, shape: Sequence[int], ggml_type: str, offset: int) -> bytes:
    ne = list(reversed([int(d) for d in shape]))
    return (_string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
            + struct.pack("<IQ", GGML_TYPES[ggml_type][0], offset))


def data_offsets(nbytes: Sequence[int]) -> tuple[list[int], int]:
    """Offset of each tensor inside the data section, and the section's padded size."""
    offsets, pos = [], 0
    for n in nbytes:
        offsets.append(pos)
        pos += pad(n)
    return offsets, pos


def encode_preamble(kv_bytes: bytes, n_kv: int, tensors: Sequence[tuple[str, Sequence[int], str]]) -> tuple[bytes, int]:
    """Everything before the tensor data (padded), and the total file size.

    ``tensors`` = (name, numpy shape, ggml type) in file order.
    """
    nbytes = [tensor_nbytes(shape, t) for _, shape, t in tensors]
    offsets, data_size = data_offsets(nbytes)
    infos = b"".join(encode_tensor_info(n, s, t, o) for (n, s, t), o in zip(tensors, offsets, strict=False))
    head = encode_header(len(tensors), n_kv) + kv_bytes + infos
    head += b"\0" * (pad(len(head)) - len(head))
    return head, len(head) + data_size
