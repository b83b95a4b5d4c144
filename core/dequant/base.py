"""The shapes every quantized-source reader shares: a stored tensor (``Part``), a weight made of parts
(``QuantTensor``: its dequantized name and shape), the reader protocol (``Scheme``) and the row reader
the converter hands it (``RowReader``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from quantpress.core.errors import InvalidModel
from quantpress.core.model import TensorInfo

# numpy dtype each stored safetensors dtype is read as (BF16: its bits, widened by ``float32``).
NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "F8_E4M3": np.uint8, "F8_E5M2": np.uint8, "F8_E8M0": np.uint8, "U8": np.uint8, "I8": np.int8,
    "I16": np.int16, "I32": np.int32, "F16": np.float16, "F32": np.float32, "BF16": np.uint16,
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


@dataclass(frozen=True)
class Part:
    """One stored tensor of a quantized weight (PyTorch-order shape, safetensors dtype)."""

    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    n_bytes: int

    @classmethod
    def of(cls, t: TensorInfo) -> Part:
        return cls(t.name, t.file, t.dtype, tuple(int(d) for d in t.shape), t.n_bytes)

    @property
    def where(self) -> str:
        return f"{self.file}: tensor '{self.name}'"


@dataclass(frozen=True)
class QuantTensor:
    """A quantized weight as the converter sees it: ``name`` and ``shape`` of the dequantized tensor
    (what a float checkpoint would store), ``label`` the stored format ('F8_E4M3', 'MXFP4', 'GPTQ_INT4',
    ...), ``parts`` its stored tensors by role ('weight', 'scale', 'zero', ...)."""

    name: str
    shape: tuple[int, ...]
    label: str
    parts: tuple[tuple[str, Part], ...]

    def part(self, role: str) -> Part | None:
        return next((p for r, p in self.parts if r == role), None)

    def need(self, role: str) -> Part:
        p = self.part(role)
        if p is None:  # find() always records the roles open() asks for
            raise KeyError(role)
        return p

    @property
    def n_bytes(self) -> int:
        return sum(p.n_bytes for _, p in self.parts)

    @property
    def main(self) -> Part:
        return self.parts[0][1]

    def info(self) -> TensorInfo:
        """The TensorInfo a model description lists for this weight: dequantized shape, stored bytes."""
        return TensorInfo(self.name, self.shape, self.label, self.n_bytes, self.main.file)


# read(part, first, stop, lead): rows first..stop of ``part`` viewed as (prod(shape[:lead]), *shape[lead:]),
# as a numpy array of NUMPY_DTYPES[dtype] (BF16 as its uint16 bits: ``float32`` widens it).
RowReader = Callable[[Part, int, int, int], np.ndarray]
# rows(first, stop) -> float32 (stop - first, last dim) of the dequantized tensor viewed as 2-D.
RowSource = Callable[[int, int], np.ndarray]


class Scheme(Protocol):
    """One quantized-checkpoint format (a row of core.dequant.READERS)."""

    @property
    def method(self) -> str:
        """How messages name the format, e.g. 'FP8 (128x128 blocks)'."""

    @property
    def ignored(self) -> tuple[str, ...]:
        """Suffixes of stored tensors a GGUF does not need (activation scales, KV-cache scales)."""

    def find(self, stored: Mapping[str, TensorInfo]) -> list[QuantTensor]:
        """The quantized weights among ``stored`` (InvalidModel naming the tensor when one is incomplete)."""

    def open(self, qt: QuantTensor, read: RowReader) -> RowSource:
        """A row source of ``qt``'s float32 values."""


def sibling(stored: Mapping[str, TensorInfo], owner: TensorInfo, name: str, what: str) -> Part:
    """The stored tensor ``name`` that ``owner`` needs (InvalidModel when it is absent)."""
    t = stored.get(name)
    if t is None:
        raise InvalidModel(f"{owner.file}: tensor '{owner.name}' is quantized but its {what} '{name}' is not stored "
                           "in any weight file; the checkpoint is incomplete. Download the complete model")
    return Part.of(t)


def expect_shape(part: Part, shape: tuple[int, ...], what: str) -> None:
    if part.shape != shape:
        raise InvalidModel(f"{part.where} is {list(part.shape)}, but {what} needs {list(shape)}; the checkpoint's "
                           "quantized tensors do not fit together (damaged, or a layout quantpress does not know)")


def expect_dtype(part: Part, dtypes: tuple[str, ...]) -> None:
    if part.dtype not in dtypes:
        raise InvalidModel(f"{part.where} is {part.dtype}; this format stores it as {' or '.join(dtypes)}. The file is "
                           "damaged or not the quantization its config.json names")


def float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 of stored float values (BF16 read as uint16)."""
    if dtype == "BF16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values.astype(np.float32)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def expand_columns(scale: np.ndarray, n_cols: int, g_idx: np.ndarray | None, group_size: int | None = None
                   ) -> np.ndarray:
    """(rows, G) per-group values -> (rows, n_cols): column k takes group g_idx[k], else k // group_size
    (default: ceil(n_cols / G); one group: every column)."""
    if g_idx is not None:
        return scale[:, g_idx]
    width = group_size or ceil_div(n_cols, scale.shape[1])
    return np.repeat(scale, width, axis=1)[:, :n_cols]
