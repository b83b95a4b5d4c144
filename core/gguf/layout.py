"""GGUF v3 byte layout: encode the header, metadata and tensor infos, and compute exact sizes.

One encoder serves both the planner (sizes, without touching weights) and the writer (bytes),
so a plan's predicted ``file_bytes`` is the written size by construction; tests check it anyway.

File = header (magic, version, n_tensors u64, n_kv u64) + KV pairs + tensor infos
       + zero padding to ALIGNMENT + each tensor's data padded to ALIGNMENT (gguf.cpp, GGUFWriter).
Shapes are given in numpy order (rows first) and written reversed (ggml ``ne``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# gguf.h enum gguf_type
VALUE_TYPES: dict[str, tuple[int, str]] = {
    "UINT8": (0, "<B"), "INT8": (1, "<b"), "UINT16": (2, "<H"), "INT16": (3, "<h"),
    "UINT32": (4, "<I"), "INT32": (5, "<i"), "FLOAT32": (6, "<f"), "BOOL": (7, "<?"),
    "STRING": (8, ""), "ARRAY": (9, ""), "UINT64": (10, "<Q"), "INT64": (11, "<q"), "FLOAT64": (12, "<d"),
}

# ggml.h enum ggml_type ids and (block size, bytes per block) of every type quantpress writes or reads.
GGML_TYPES: dict[str, tuple[int, int, int]] = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "IQ4_NL": (20, 32, 18),
    "IQ4_XS": (23, 256, 136), "BF16": (30, 1, 2),
    # i-quants below 4 bits (ggml-common.h block_iq*): grids of 8-value patterns, 256-weight super-blocks.
    "IQ2_XXS": (16, 256, 66), "IQ2_XS": (17, 256, 74), "IQ3_XXS": (18, 256, 98), "IQ1_S": (19, 256, 50),
    "IQ3_S": (21, 256, 110), "IQ2_S": (22, 256, 82), "IQ1_M": (29, 256, 56),
}


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


def _scalar(vtype: str, value: Any) -> bytes:
    if vtype == "STRING":
        return _string(value if isinstance(value, str) else bytes(value).decode("utf-8"))
    return struct.pack(VALUE_TYPES[vtype][1], value)


def _array(item_type: str, values: Sequence[Any]) -> bytes:
    head = struct.pack("<IQ", VALUE_TYPES[item_type][0], len(values))
    if item_type == "STRING":
        parts = [head]
        for v in values:
            raw = v.encode("utf-8") if isinstance(v, str) else bytes(v)
            parts.append(struct.pack("<Q", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    fmt = VALUE_TYPES[item_type][1]
    return head + struct.pack(f"<{len(values)}{fmt[1]}", *values)


def encode_kv(key: str, value: Any, vtype: str) -> bytes:
    """One key/value pair. ``vtype`` is a value type name or ``ARRAY[<item type>]``."""
    if vtype.startswith("ARRAY["):
        return _string(key) + struct.pack("<I", VALUE_TYPES["ARRAY"][0]) + _array(vtype[6:-1], value)
    return _string(key) + struct.pack("<I", VALUE_TYPES[vtype][0]) + _scalar(vtype, value)


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
