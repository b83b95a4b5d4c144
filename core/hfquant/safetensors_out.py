"""Safetensors files whose size is known before any weight is read.

The planner and the writer share :func:`header`, so a plan's ``file_bytes`` is the written size by
construction (as core/gguf/layout.py does for GGUF). Format (the safetensors README): u64 little-endian
header length, the JSON header ({name: {dtype, shape, data_offsets}}, "__metadata__"), padded with
spaces to 8 bytes as safetensors itself writes it, then the tensors' bytes back to back in header order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

# safetensors dtype name -> bytes per element
DTYPE_BYTES: dict[str, int] = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I32": 4, "I64": 8, "U8": 1, "I8": 1,
                               "I16": 2}


@dataclass(frozen=True)
class Entry:
    """One tensor as it will be stored: name, safetensors dtype, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def n_bytes(self) -> int:
        n = DTYPE_BYTES[self.dtype]
        for d in self.shape:
            n *= d
        return n


def header(entries: Sequence[Entry], metadata: dict[str, str] | None = None) -> bytes:
    """The bytes before the data of a file holding ``entries`` in this order."""
    head: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for e in entries:
        head[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [offset, offset + e.n_bytes]}
        offset += e.n_bytes
    raw = json.dumps(head, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def file_bytes(entries: Sequence[Entry], metadata: dict[str, str] | None = None) -> int:
    return len(header(entries, metadata)) + sum(e.n_bytes for e in entries)

