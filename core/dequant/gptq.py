"""GPTQ checkpoints (AutoGPTQ / GPTQModel, ``quant_method: gptq``), v1 and v2.

Per linear (N out, K in), ``bits`` in 2, 4, 8 (3-bit packing crosses word boundaries: refused):
``qweight`` int32 (K·bits/32, N), fields packed along K, low bits first; ``qzeros`` int32
(G, N·bits/32) packed along N; ``scales`` (G, N); ``g_idx`` int32 (K,), the group of each input column
(k // group_size without act-order; any order with ``desc_act``). w[n, k] = (q - zero) · scale of group
g_idx[k], where the v1 format (``checkpoint_format: gptq``, the default) stores zero - 1 and v2
(``gptq_v2``) the zero itself (GPTQModel's ``dequantize_weight``; llama.cpp's converter,
conversion/base.py ``dequant_gptq``, reads the same).

Streaming: qweight is packed across the input dimension, so a row of the dequantized weight is a
column of the stored one; the packed tensors (bits/32 of the float32 size) are read once per weight and
dequantized slab by slab.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from quantpress.core.dequant.base import (
    FLOAT_DTYPES,
    Part,
    QuantTensor,
    RowReader,
    RowSource,
    ceil_div,
    expect_dtype,
    expect_shape,
    float32,
    sibling,
)
from quantpress.core.dequant.packing import unpack
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.model import TensorInfo

FORMATS = ("gptq", "gptq_v2")


def whole(read: RowReader, part: Part) -> np.ndarray:
    """All of a stored tensor (its leading dimension as rows)."""
    return read(part, 0, part.shape[0] if part.shape else 1, 1)


def packed_siblings(stored: Mapping[str, TensorInfo], t: TensorInfo, base: str) -> tuple[Part, Part, Part]:
    """(qweight, qzeros, scales) of the GPTQ/AWQ linear ``base`` (dtypes checked)."""
    qweight = Part.of(t)
    qzeros = sibling(stored, t, base + ".qzeros", "zero points")
    scales = sibling(stored, t, base + ".scales", "scales")
    for p in (qweight, qzeros):
        expect_dtype(p, ("I32",))
    expect_dtype(scales, FLOAT_DTYPES)
    return qweight, qzeros, scales


@dataclass(frozen=True)
class Gptq:
    bits: int
    group_size: int  # -1: one group per row
    v2: bool
    method: str = "GPTQ"
    ignored: tuple[str, ...] = ()

    def find(self, stored: Mapping[str, TensorInfo]) -> list[QuantTensor]:
        out = []
        per_word = 32 // self.bits
        for name, t in stored.items():
            if not name.endswith(".qweight"):
                continue
            base = name.removesuffix(".qweight")
            qweight, qzeros, scales = packed_siblings(stored, t, base)
            k, n = qweight.shape[0] * per_word, qweight.shape[1]
            groups = scales.shape[0]
            if self.group_size > 0 and base + ".g_idx" not in stored:
                expect_shape(scales, (ceil_div(k, self.group_size), n), f"group size {self.group_size}")
            expect_shape(scales, (groups, n), f"one scale per output of '{name}'")
            expect_shape(qzeros, (groups, ceil_div(n, per_word)), f"{self.bits}-bit zero points of '{name}'")
            parts = [("qweight", qweight), ("qzeros", qzeros), ("scales", scales)]
            if base + ".g_idx" in stored:
                g_idx = Part.of(stored[base + ".g_idx"])
                expect_shape(g_idx, (k,), f"one group index per input column of '{name}'")
                parts.append(("g_idx", g_idx))
            out.append(QuantTensor(base + ".weight", (n, k), f"GPTQ_INT{self.bits}", tuple(parts)))
        return out

    def open(self, qt: QuantTensor, read: RowReader) -> RowSource:
        n, k = qt.shape
        qweight = whole(read, qt.need("qweight"))
        zeros = unpack(whole(read, qt.need("qzeros")), self.bits)[:, :n].astype(np.float32)
        zeros = zeros if self.v2 else zeros + 1  # v1 stores zero - 1
        scale_part = qt.need("scales")
        scales = float32(whole(read, scale_part), scale_part.dtype)
        g_part = qt.part("g_idx")
        width = self.group_size if self.group_size > 0 else k
        g_idx = (whole(read, g_part).astype(np.int64) if g_part is not None else np.arange(k) // width)
        if g_idx.min(initial=0) < 0 or g_idx.max(initial=0) >= scales.shape[0]:
            where = g_part.where if g_part is not None else qt.name
            raise InvalidModel(f"{where}: group indices outside 0..{scales.shape[0] - 1}; the checkpoint is damaged")

        def rows(a: int, b: int) -> np.ndarray:
            q = unpack(np.ascontiguousarray(qweight[:, a:b].T), self.bits).astype(np.float32)  # (rows, K)
            out: np.ndarray = (q - zeros[:, a:b].T[:, g_idx]) * scales[:, a:b].T[:, g_idx]
            return out
        return rows


def from_config(qc: Mapping[str, Any]) -> Gptq:
    bits = qc.get("bits", 4)
    fmt = str(qc.get("checkpoint_format") or qc.get("format") or "gptq").lower()
    if bits not in (2, 4, 8):
        raise UnsupportedArchitecture(f"config.json: {bits}-bit GPTQ cannot be read as a conversion source; "
                                      "quantpress reads 2-, 4- and 8-bit GPTQ. Convert from the original weights")
    if fmt not in FORMATS:
        raise UnsupportedArchitecture(f"config.json: GPTQ checkpoint format '{fmt}' is not one quantpress reads "
                                      f"({', '.join(FORMATS)}); convert from the original weights")
    size = qc.get("group_size", -1)
    if not isinstance(size, int) or isinstance(size, bool) or size == 0 or size < -1:
        raise InvalidModel(f"config.json: GPTQ group_size is {size!r}; it must be a positive whole number or -1")
    return Gptq(int(bits), size, fmt == "gptq_v2", f"GPTQ {bits}-bit ({fmt})")
