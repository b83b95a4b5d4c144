"""Importance matrices ("imatrix"): per-input-column mean of x² for every linear weight, keyed by
GGUF tensor name, and llama.cpp's two file formats for them.

Formats (llama.cpp@0c1e57098 tools/imatrix/imatrix.cpp, common/imatrix-loader.cpp):
- GGUF (current default): ``general.type = "imatrix"``, ``imatrix.datasets`` (string array),
  ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (u32); per weight W two F32 tensors,
  ``W.in_sum2`` with ggml shape {n_per_row, n_mat} (sum of x² over tokens) and ``W.counts`` {1, n_mat}
  (tokens seen). The value used for quantization is in_sum2 / counts (counts 0 -> 1).
- legacy ``.dat``: int32 n_entries; per entry int32 name_len, name, int32 ncall, int32 nval,
  float32[nval] = mean · ncall; trailer int32 chunk_count, int32 len, dataset name. Readers divide by ncall.
"""

from __future__ import annotations

import ctypes
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import Keys
from quantpress.core.errors import InvalidInput

FORMATS = ("gguf", "dat")


@dataclass(frozen=True)
class Imatrix:
    """Accumulated activation statistics. ``sums[name]`` is float32 (n_mat, n_per_row): Σ x² per
    input column (n_mat = 1 except for stacked MoE experts); ``counts[name]`` float32 (n_mat,):
    tokens seen. Use :meth:`importance` for the per-column mean that quantizers take."""

    sums: Mapping[str, np.ndarray]
    counts: Mapping[str, np.ndarray]
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    chunk_size: int = 0
    n_tokens: int = 0  # calibration tokens run through the model (0 when unknown, e.g. .dat files)
    source: str = field(default="", compare=False)  # model folder or file it came from

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.sums))

    def __contains__(self, name: object) -> bool:
        return name in self.sums

    def importance(self, name: str) -> np.ndarray | None:
        """Mean x² per input column as float32 (n_mat · n_per_row,); None when ``name`` has no entry.
        A stacked expert that saw no tokens (count 0) gets the pooled mean of the entry's experts
        that did (Σ sums / Σ counts): the input an average routed token brings. llama.cpp's quantizer
        uses 1 there (tools/quantize/quantize.cpp), i.e. no weighting at all; ones here too when no
        expert of the entry saw a token. An n_mat = 1 entry with count 0 divides by 1 (legacy files)."""
        sums = self.sums.get(name)
        if sums is None:
            return None
        sums = np.asarray(sums, dtype=np.float64)
        counts = np.asarray(self.counts[name], dtype=np.float64).reshape(-1, 1)
        means = sums / np.where(counts == 0, 1.0, counts)
        empty = counts[:, 0] == 0
        if sums.shape[0] > 1 and empty.any():
            seen = counts[:, 0] > 0
            means[empty] = sums[seen].sum(axis=0) / counts[seen].sum() if seen.any() else 1.0
        return np.ascontiguousarray(means.reshape(-1), dtype=np.float32)

    @property
    def experts_without_tokens(self) -> dict[str, tuple[int, ...]]:
        """Stacked-expert entries (n_mat > 1) -> the experts that saw no calibration token (their
        :meth:`importance` rows are a fallback, see there); entries where every expert saw one are absent."""
        out = {}
        for name in self.names:
            counts = np.asarray(self.counts[name]).reshape(-1)
            if counts.size > 1 and (counts == 0).any():
                out[name] = tuple(int(e) for e in np.flatnonzero(counts == 0))
        return out

    def summary(self) -> dict[str, Any]:
        return {"tensors": len(self.sums), "datasets": list(self.datasets), "chunk_count": self.chunk_count,
                "chunk_size": self.chunk_size, "n_tokens": self.n_tokens,
                "experts_without_tokens": {k: list(v) for k, v in self.experts_without_tokens.items()}}


def from_means(means: Mapping[str, np.ndarray], n_tokens: int, **meta: Any) -> Imatrix:
    """An Imatrix from per-column means over ``n_tokens`` tokens (n_mat = 1)."""
    sums = {k: (np.asarray(v, np.float64) * n_tokens).astype(np.float32).reshape(1, -1) for k, v in means.items()}
    counts = {k: np.array([n_tokens], np.float32) for k in means}
    return Imatrix(sums, counts, n_tokens=n_tokens, **meta)


# ---------------------------------------------------------------------------------------------
# files


def save_imatrix(imatrix: Imatrix, path: str | Path, format: str = "gguf") -> Path:
    """Write ``imatrix`` as llama.cpp reads it (``format`` "gguf" or "dat"); atomic (temporary
    name, then rename)."""
    if format not in FORMATS:
        raise InvalidInput(f"unknown imatrix format '{format}'; use one of: {', '.join(FORMATS)}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        (_write_gguf if format == "gguf" else _write_dat)(imatrix, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_gguf(imatrix: Imatrix, path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="imatrix")
    writer.kv_data[0].pop(Keys.General.ARCHITECTURE, None)  # llama.cpp's imatrix files have none
    writer.add_string(Keys.General.TYPE, "imatrix")
    writer.add_array(Keys.IMatrix.DATASETS, list(imatrix.datasets))
    writer.add_uint32(Keys.IMatrix.CHUNK_COUNT, int(imatrix.chunk_count))
    writer.add_uint32(Keys.IMatrix.CHUNK_SIZE, int(imatrix.chunk_size))
    for name in imatrix.names:
        sums = np.ascontiguousarray(imatrix.sums[name], dtype=np.float32)
        counts = np.asarray(imatrix.counts[name], dtype=np.float32).reshape(-1, 1)
        writer.add_tensor(f"{name}.in_sum2", sums)  # numpy (n_mat, n) = ggml {n, n_mat}
        writer.add_tensor(f"{name}.counts", np.ascontiguousarray(counts))  # ggml {1, n_mat}
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_dat(imatrix: Imatrix, path: Path) -> None:
    chunk_size = max(1, imatrix.chunk_size)
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(imatrix.sums)))
        for name in imatrix.names:
            counts = np.asarray(imatrix.counts[name], np.float64).reshape(-1)
            ncall = max(1, math.ceil(float(counts.max()) / chunk_size))
            values = imatrix.importance(name)
            assert values is not None
            raw = name.encode("utf-8")
            f.write(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, values.size))
            f.write((values * np.float32(ncall)).astype("<f4").tobytes())
        dataset = (imatrix.datasets[-1] if imatrix.datasets else "").encode("utf-8")
        f.write(struct.pack("<ii", int(imatrix.chunk_count), len(dataset)) + dataset)


def load_imatrix(path: str | Path) -> Imatrix:
    """Read a llama.cpp imatrix file (GGUF or legacy .dat, detected from the content)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"imatrix file '{path}' does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        imatrix = _read_gguf(path) if magic == b"GGUF" else _read_dat(path)
    except InvalidInput:
        raise
    except (ValueError, KeyError, struct.error, OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"imatrix file '{path}' is damaged or not an imatrix ({exc})") from exc
    for name in imatrix.names:  # sums of squares and token counts: finite and never negative
        for what, values in (("sums", imatrix.sums[name]), ("counts", imatrix.counts[name])):
            if not (np.isfinite(values).all() and (values >= 0).all()):
                raise InvalidInput(f"imatrix file '{path}': the {what} of '{name}' hold NaN, Inf or negative "
                                   "values; the file is damaged. Compute the imatrix again")
    return imatrix


def _read_gguf(path: Path) -> Imatrix:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key: str, default: Any) -> Any:
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    tensors = {t.name: t for t in reader.tensors}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for tname, t in tensors.items():
        if not tname.endswith(".in_sum2"):
            continue
        name = tname[: -len(".in_sum2")]
        c = tensors.get(f"{name}.counts")
        if c is None:
            raise InvalidInput(f"imatrix file '{path}': '{name}' has sums but no counts")
        n_mat = int(c.n_elements)
        sums[name] = np.array(t.data, dtype=np.float32).reshape(n_mat, -1)
        counts[name] = np.array(c.data, dtype=np.float32).reshape(n_mat)
    if not sums:
        raise InvalidInput(f"imatrix file '{path}' holds no importance data (no '*.in_sum2' tensors)")
    n_tokens = int(max(float(c.max()) for c in counts.values()))
    return Imatrix(sums, counts, tuple(str(d) for d in value(Keys.IMatrix.DATASETS, [])),
                   int(value(Keys.IMatrix.CHUNK_COUNT, 0)), int(value(Keys.IMatrix.CHUNK_SIZE, 0)), n_tokens,
                   source=str(path))


def _read_dat(path: Path) -> Imatrix:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise InvalidInput(f"imatrix file '{path}' is truncated (needed {size} bytes at offset {pos})")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    (n_entries,) = take("<i")
    if n_entries < 1 or n_entries > 1_000_000:
        raise InvalidInput(f"imatrix file '{path}' is neither GGUF nor a legacy .dat imatrix")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for _ in range(n_entries):
        (name_len,) = take("<i")
        name = bytes(take(f"<{name_len}s")[0]).decode("utf-8")
        ncall, nval = take("<ii")
        if nval < 1:
            raise InvalidInput(f"imatrix file '{path}': entry '{name}' has no values")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        sums[name] = values.reshape(1, -1)  # mean·ncall; importance() divides by counts = ncall
        counts[name] = np.array([ncall], np.float32)
    chunk_count = 0
    datasets: tuple[str, ...] = ()
    if pos + 4 <= len(data):
        (chunk_count,) = take("<i")
        if pos + 4 <= len(data):
            (n,) = take("<i")
            if n > 0:
                datasets = (bytes(take(f"<{n}s")[0]).decode("utf-8", "replace"),)
    return Imatrix(sums, counts, datasets, chunk_count, 0, 0, source=str(path))


# ---------------------------------------------------------------------------------------------
# llama.cpp quantizer


class LlamaImatrixData:
    """The ``imatrix`` argument of ``llama_model_quantize_params`` (llama-cpp-python 0.3.36): a
    NULL-terminated array of ``llama_model_imatrix_data``. Keep this object alive during the call."""

    def __init__(self, imatrix: Imatrix, names: list[str] | None = None) -> None:
        import llama_cpp

        self._names = [n for n in (names or list(imatrix.names)) if n in imatrix]
        self._values = [imatrix.importance(n) for n in self._names]
        self._bnames = [n.encode("utf-8") for n in self._names]
        entries = (llama_cpp.llama_model_imatrix_data * (len(self._names) + 1))()
        for i, (bname, values) in enumerate(zip(self._bnames, self._values, strict=True)):
            assert values is not None
            entries[i].name = bname
            entries[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = values.size
        entries[len(self._names)].name = None  # terminator
        self.entries = entries

    @property
    def pointer(self) -> Any:
        import llama_cpp

        return ctypes.cast(self.entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
