"""Read GGUF files: metadata as plain Python values, the tensor list, and tensors dequantized to
float32, with every way a file can be broken turned into an :class:`InvalidModel` naming the file.

    with open_gguf(path) as g:
        g.architecture, g.metadata["llama.block_count"], g.tensor("blk.0.attn_q.weight").shape
        w = g.dequantize("blk.0.attn_q.weight")   # float32, numpy order (rows, columns)

Why not ``gguf.GGUFReader`` directly: it builds a numpy memmap view for every part of every
string, ~1M views for a 49k-token vocabulary, which takes 7-15 s on a busy 2-core machine. This
parser reads the header with ``struct`` (~0.2 s) and maps the tensor data once; the type tables and
dequantization still come from the ``gguf`` package (``gguf.quants.dequantize``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from gguf.constants import GGUFValueType, Keys
from quantpress.core.errors import InvalidModel
from quantpress.core.gguf.layout import ALIGNMENT, GGUF_MAGIC, STRUCT_FORMATS

DEFAULT_ALIGNMENT = ALIGNMENT
_STRING, _ARRAY = GGUFValueType.STRING, GGUFValueType.ARRAY
_IDS = {int(t) for t in GGUFValueType}
_PLAIN_DTYPES = {"F32": "f4", "F16": "f2", "F64": "f8", "I8": "i1", "I16": "i2", "I32": "i4", "I64": "i8"}


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a GGUF file. ``shape`` is numpy order (rows first: the reverse of ggml's
    ``ne``), i.e. the PyTorch shape the weight had before conversion."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str  # GGML type name: 'F32', 'Q4_1', 'Q8_0', ...
    n_elements: int
    n_bytes: int
    data_offset: int  # absolute offset in the file


_ByteOrder = Literal["<", ">"]


class _Truncated(Exception):
    pass


class _Cursor:
    """Sequential reads from the mapped file with bounds checks."""

    def __init__(self, buf: memoryview, order: _ByteOrder) -> None:
        self.buf, self.order, self.pos = buf, order, 0
        self._length = struct.Struct(order + "Q").unpack_from  # a string's uint64 byte count

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Truncated(f"needs {n} bytes at offset {self.pos}, the file has {len(self.buf)}")

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self._need(size)
        (value,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        return self.strings(1)[0]

    def strings(self, n: int) -> list[str]:
        """``n`` strings in a row (length, UTF-8 bytes), in one tight loop: a 150k-entry vocabulary and its
        merges are most of a large model's header."""
        buf, pos, size, length = self.buf, self.pos, len(self.buf), self._length
        out: list[str] = []
        append = out.append
        for _ in range(n):
            if pos + 8 > size:
                self.pos = pos
                self._need(8)
            (k,) = length(buf, pos)
            pos += 8
            if pos + k > size:
                self.pos = pos
                self._need(k)
            append(str(buf[pos:pos + k], "utf-8", "replace"))
            pos += k
        self.pos = pos
        return out

    def value(self, vtype: int) -> tuple[Any, str]:
        """A value and its type name ('UINT32', 'ARRAY[STRING]', ...)."""
        if vtype == _STRING:
            return self.string(), "STRING"
        if vtype == _ARRAY:
            sub, n = int(self.take("I")), int(self.take("Q"))
            if sub == _STRING:
                return self.strings(n), "ARRAY[STRING]"
            if sub == _ARRAY:
                items = [self.value(sub) for _ in range(n)]
                return [v for v, _ in items], f"ARRAY[{items[0][1] if items else _type_name(sub)}]"
            if sub not in _IDS:
                raise ValueError(f"unknown array element type {sub}")
            dtype = np.dtype(STRUCT_FORMATS[GGUFValueType(sub)]).newbyteorder(self.order)
            self._need(n * dtype.itemsize)
            arr = np.frombuffer(self.buf, dtype, n, self.pos)
            self.pos += n * dtype.itemsize
            return arr.tolist(), f"ARRAY[{_type_name(sub)}]"
        if vtype not in _IDS:
            raise ValueError(f"unknown value type {vtype} at offset {self.pos}")
        return self.take(STRUCT_FORMATS[GGUFValueType(vtype)]), _type_name(vtype)


def _type_name(vtype: int) -> str:
    return GGUFValueType(vtype).name if vtype in _IDS else f"TYPE{vtype}"


class GGUFFile:
    """An open GGUF file. Use :func:`open_gguf`; close it (or use ``with``) to release the mapping."""

    def __init__(
        self,
        path: Path,
        data: np.ndarray,
        metadata: dict[str, Any],
        value_types: dict[str, str],
        tensors: list[GGUFTensor],
        version: int,
        order: _ByteOrder,
    ) -> None:
        self.path = path
        self.version = version
        self._data: np.ndarray | None = data
        self._order = order
        self._metadata = metadata
        self._value_types = value_types
        self._tensors = {t.name: t for t in tensors}

    # -- metadata -------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """Every key/value pair, in file order, as plain Python values (str, int, float, bool, list)."""
        return self._metadata

    @property
    def value_types(self) -> dict[str, str]:
        """GGUF value type per key, e.g. 'UINT32', 'FLOAT32', 'ARRAY[STRING]'."""
        return self._value_types

    def get(self, key: str, default: Any = None) -> Any:
        return self._metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.get(Keys.General.ARCHITECTURE, ""))

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        """``{architecture}.{suffix}``, e.g. ``arch_value('block_count')``."""
        return self.get(f"{self.architecture}.{suffix}", default)

    # -- tensors --------------------------------------------------------------------------
    @property
    def tensors(self) -> tuple[GGUFTensor, ...]:
        return tuple(self._tensors.values())

    def tensor(self, name: str) -> GGUFTensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise InvalidModel(f"{self.path.name}: has no tensor named '{name}'") from None

    def raw(self, name: str) -> np.ndarray:
        """The stored data as a read-only view of the mapping: a float/int array of ``shape`` for
        plain types, uint8 (..., row_bytes) for quantized types (what gguf.quants expects)."""
        info = self.tensor(name)
        if self._data is None:
            raise InvalidModel(f"{self.path.name}: the file was closed")
        flat = self._data[info.data_offset : info.data_offset + info.n_bytes]
        plain = _PLAIN_DTYPES.get(info.ggml_type)
        if plain is not None:
            return flat.view(np.dtype(plain).newbyteorder(self._order)).reshape(info.shape)
        rows = info.shape[:-1] if len(info.shape) > 1 else ()
        return flat.reshape(*rows, -1)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor as a new float32 array in numpy order (``GGUFTensor.shape``)."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        info = self.tensor(name)
        raw = self.raw(name)
        if info.ggml_type in _PLAIN_DTYPES:
            return np.array(raw, dtype=np.float32)
        try:
            values = dequantize(raw, GGMLQuantizationType[info.ggml_type])
        except NotImplementedError as exc:
            raise InvalidModel(
                f"{self.path.name}: tensor '{name}' is stored as {info.ggml_type}, which cannot be "
                f"dequantized here ({exc})"
            ) from None
        return np.array(values, dtype=np.float32).reshape(info.shape)

    def close(self) -> None:
        """Drop the memory mapping (on Windows an open mapping blocks renames and deletes)."""
        self._data = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_magic(path: Path) -> None:
    """Fail early, with a clear message, on a missing file or one that is not GGUF at all."""
    if not path.is_file():
        raise InvalidModel(f"{path}: no such file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise InvalidModel(
            f"{path.name}: not a GGUF file (it starts with {magic!r}, a GGUF file starts with b'GGUF')"
        )


def _ggml_types() -> tuple[dict[int, str], dict[str, tuple[int, int]]]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    names = {int(t): t.name for t in GGMLQuantizationType}
    sizes = {t.name: (int(b), int(s)) for t, (b, s) in GGML_QUANT_SIZES.items()}
    return names, sizes


def _parse(path: Path, data: np.ndarray) -> GGUFFile:
    buf = data.data  # a memoryview of the mapping
    order: _ByteOrder = "<"
    version = struct.unpack_from("<I", buf, 4)[0] if len(buf) >= 8 else 0
    if version & 0xFFFF == 0 and version:  # a big-endian file (s390x builds write these)
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in (2, 3):
        raise InvalidModel(f"{path.name}: GGUF version {version} is not supported (only 2 and 3)")
    cur = _Cursor(buf, order)
    cur.pos = 8
    n_tensors, n_kv = int(cur.take("Q")), int(cur.take("Q"))
    metadata: dict[str, Any] = {}
    value_types: dict[str, str] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key], value_types[key] = cur.value(int(cur.take("I")))
    type_names, sizes = _ggml_types()
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = int(cur.take("I"))
        if n_dims > 4:
            raise ValueError(f"tensor '{name}' has {n_dims} dimensions (at most 4)")
        ne = [int(cur.take("Q")) for _ in range(n_dims)]
        type_id, offset = int(cur.take("I")), int(cur.take("Q"))
        if type_id not in type_names:
            raise InvalidModel(
                f"{path.name}: tensor '{name}' uses GGML type {type_id}, unknown to the installed gguf "
                "package; upgrade gguf (pip install -U gguf)"
            )
        if any(d == 0 for d in ne):
            raise InvalidModel(f"{path.name}: tensor '{name}' has a zero-size dimension {ne}; the file is damaged")
        infos.append((name, ne, type_names[type_id], offset))
    names = [i[0] for i in infos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidModel(f"{path.name}: tensor '{dup}' appears twice in the GGUF header; the file is damaged")
    alignment = metadata.get(Keys.General.ALIGNMENT, DEFAULT_ALIGNMENT)
    if not (isinstance(alignment, int) and not isinstance(alignment, bool) and alignment > 0
            and alignment & (alignment - 1) == 0):
        raise InvalidModel(f"{path.name}: GGUF metadata 'general.alignment' is {alignment!r}; it must be a power "
                           "of two. The file is damaged")
    data_start = -(-cur.pos // alignment) * alignment
    tensors = []
    for name, ne, type_name, offset in infos:
        block, type_size = sizes[type_name]
        n_elements = int(np.prod(ne, dtype=object)) if ne else 1
        if ne and ne[0] % block:
            raise ValueError(
                f"tensor '{name}': row length {ne[0]} is not a multiple of {type_name}'s block {block}"
            )
        tensors.append(
            GGUFTensor(
                name=name,
                shape=tuple(reversed(ne)),
                ggml_type=type_name,
                n_elements=n_elements,
                n_bytes=n_elements // block * type_size,
                data_offset=data_start + offset,
            )
        )
    spans = sorted((t.data_offset, t.data_offset + t.n_bytes, t.name) for t in tensors if t.n_bytes)
    for (_a0, a1, a_name), (b0, _b1, b_name) in zip(spans, spans[1:], strict=False):
        if b0 < a1:  # llama.cpp would read one tensor's bytes as another's
            raise InvalidModel(f"{path.name}: the data of tensors '{a_name}' and '{b_name}' overlap; the file is "
                               "damaged. Download or convert it again")
    return GGUFFile(path, data, metadata, value_types, tensors, version, order)


def open_gguf(path: str | Path) -> GGUFFile:
    """Open and validate a GGUF file: magic, header, and that every tensor's data lies inside
    the file (a truncated download is the common failure)."""
    path = Path(path)
    _check_magic(path)
    data = np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))  # plain ndarray: cheap slicing
    try:
        g = _parse(path, data)
    except _Truncated as exc:
        raise InvalidModel(
            f"{path.name}: truncated: the GGUF header ends early ({exc}). Download or convert it again."
        ) from None
    except (ValueError, KeyError, OverflowError, struct.error) as exc:
        raise InvalidModel(
            f"{path.name}: the GGUF header is damaged ({exc}). Download or convert it again."
        ) from None
    for t in g.tensors:
        if t.data_offset + t.n_bytes > len(data):
            raise InvalidModel(
                f"{path.name}: truncated: tensor '{t.name}' ends at byte {t.data_offset + t.n_bytes} "
                f"but the file has {len(data)} bytes. Download or convert it again."
            )
    return g
