"""compressed-tensors checkpoints (llm-compressor, and quantpress's own core/hfquant writers).

Per quantized linear, by what is stored (so mixed-precision checkpoints read too):
- ``pack-quantized``: ``weight_packed`` int32 (N, K·bits/32), bits-wide unsigned fields along K, low bits
  first, each the signed value + 2**(bits-1); ``weight_scale`` (N, G) (per group; (N, 1) per channel);
  ``weight_zero_point`` int32 (N·bits/32, G) packed the same way along N when asymmetric; ``weight_shape``
  int32 [N, K]; ``weight_g_idx`` (K,) with group act-order. w = (value - zero) · scale.
- ``int-quantized`` / ``naive-quantized``: ``weight`` int8 (N, K) with ``weight_scale`` (and
  ``weight_zero_point`` int8) of one of those shapes.
- ``float-quantized``: ``weight`` FP8 with ``weight_scale`` (core/dequant/fp8.py).
(compressed-tensors' ``pack_to_int32`` / ``unpack_from_int32``; llama.cpp's converter reads the same,
conversion/base.py ``dequant_packed``.) K is taken from the packed width (K is a multiple of 32/bits in
every real model) and checked against ``weight_shape`` when read.
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
    expand_columns,
    expect_dtype,
    expect_shape,
    float32,
    sibling,
)
from quantpress.core.dequant.fp8 import ACTIVATION_SCALES, Fp8, block_from
from quantpress.core.dequant.packing import FP8_TABLES, unpack
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.model import TensorInfo

FORMATS = ("pack-quantized", "int-quantized", "naive-quantized", "float-quantized", "dense")


@dataclass(frozen=True)
class Compressed:
    bits: int  # pack-quantized width (4 or 8)
    group_size: int | None
    fp8: Fp8
    method: str = "compressed-tensors"
    ignored: tuple[str, ...] = ACTIVATION_SCALES

    def find(self, stored: Mapping[str, TensorInfo]) -> list[QuantTensor]:
        out = self.fp8.find(stored)
        for name, t in stored.items():
            if name.endswith(".weight_packed"):
                out.append(self._packed(stored, t))
            elif name.endswith(".weight") and t.dtype == "I8":
                out.append(self._int8(stored, t))
        return out

    def _scale_parts(self, stored: Mapping[str, TensorInfo], t: TensorInfo, base: str, n: int
                     ) -> tuple[tuple[str, Part], ...]:
        scale = sibling(stored, t, base + "_scale", "scale")
        if scale.dtype not in FLOAT_DTYPES:
            raise InvalidModel(f"{scale.where} is {scale.dtype}; a scale is a float tensor")
        if len(scale.shape) == 2 and scale.shape[0] not in (1, n):
            expect_shape(scale, (n, scale.shape[1]), f"one scale row per output row of '{t.name}'")
        parts = [("scale", scale)]
        for role, suffix in (("zero", "_zero_point"), ("g_idx", "_g_idx")):
            if base + suffix in stored:
                parts.append((role, Part.of(stored[base + suffix])))
        return tuple(parts)

    def _packed(self, stored: Mapping[str, TensorInfo], t: TensorInfo) -> QuantTensor:
        packed = Part.of(t)
        expect_dtype(packed, ("I32",))
        base = t.name.removesuffix("_packed")
        sibling(stored, t, base + "_shape", "shape tensor")
        n, k = packed.shape[0], packed.shape[1] * (32 // self.bits)
        parts = (("packed", packed),) + self._scale_parts(stored, t, base, n)
        return QuantTensor(base, (n, k), f"CT_INT{self.bits}", parts + (("shape", Part.of(stored[base + "_shape"])),))

    def _int8(self, stored: Mapping[str, TensorInfo], t: TensorInfo) -> QuantTensor:
        parts = (("int8", Part.of(t)),) + self._scale_parts(stored, t, t.name, int(t.shape[0]))
        return QuantTensor(t.name, tuple(t.shape), "CT_INT8", parts)

    def open(self, qt: QuantTensor, read: RowReader) -> RowSource:
        if qt.label in FP8_TABLES:
            return self.fp8.open(qt, read)
        n, k = qt.shape
        if qt.part("packed") is not None:
            stored_shape = tuple(int(v) for v in read(qt.need("shape"), 0, 1, 0).reshape(-1))
            if stored_shape != (n, k):
                raise InvalidModel(f"{qt.need('shape').where} says {list(stored_shape)}, the packed weight holds "
                                   f"{[n, k]}; quantpress reads pack-quantized weights whose width is a multiple of "
                                   f"{32 // self.bits}")
        scale = qt.need("scale")
        zero_part, g_part = qt.part("zero"), qt.part("g_idx")
        g_idx = read(g_part, 0, k, 1).astype(np.int64) if g_part is not None else None
        zero = None if zero_part is None else self._zeros(qt, zero_part, read)
        per_tensor = len(scale.shape) < 2 or scale.shape[0] == 1

        def rows(a: int, b: int) -> np.ndarray:
            packed = qt.part("packed")
            if packed is not None:
                q = unpack(read(packed, a, b, 1), self.bits)[:, :k].astype(np.float32) - (1 << (self.bits - 1))
            else:
                q = read(qt.need("int8"), a, b, 1).astype(np.float32)
            s = float32(read(scale, 0, 1, 0) if per_tensor else read(scale, a, b, 1), scale.dtype).reshape(
                1 if per_tensor else b - a, -1)
            if zero is not None:
                q = q - expand_columns(zero[:1] if per_tensor else zero[a:b], k, g_idx, self.group_size)
            out: np.ndarray = q * expand_columns(s, k, g_idx, self.group_size)
            return out
        return rows

    def _zeros(self, qt: QuantTensor, zero: Part, read: RowReader) -> np.ndarray:
        """Zero points (N or 1, G) as float32 in the weight's offset representation."""
        values = read(zero, 0, zero.shape[0] if zero.shape else 1, 1)
        if qt.part("packed") is None:  # int8 weights: plain int8 zero points
            return values.reshape(values.shape[0], -1).astype(np.float32)
        n_rows = qt.shape[0]
        expect_shape(zero, (ceil_div(n_rows, 32 // self.bits), qt.need("scale").shape[-1]),
                     f"zero points packed along the rows of '{qt.name}'")
        unpacked = unpack(np.ascontiguousarray(values.T), self.bits).T[:n_rows]  # packed along N
        return unpacked.astype(np.float32) - (1 << (self.bits - 1))


def _weight_args(qc: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise InvalidModel("config.json: quantization_config (compressed-tensors) has no config_groups; the config "
                           "is damaged")
    out: list[tuple[str, Mapping[str, Any]]] = []
    for key, group in groups.items():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict):
            out.append((str(group.get("format") or qc.get("format") or "dense"), weights))
        elif not isinstance(group, dict):
            raise InvalidModel(f"config.json: compressed-tensors config group '{key}' is not an object")
    return out


def from_config(qc: Mapping[str, Any]) -> Compressed:
    args = _weight_args(qc)
    formats = {fmt for fmt, _ in args} | ({str(qc["format"])} if qc.get("format") not in (None, "mixed-precision")
                                          else set())
    unknown = sorted(formats - set(FORMATS))
    if unknown:
        raise UnsupportedArchitecture(
            f"config.json: compressed-tensors format '{unknown[0]}' cannot be read as a conversion source yet; "
            f"supported: {', '.join(FORMATS)}. Convert from the original weights")
    packed = [w for fmt, w in args if fmt == "pack-quantized"]
    bits = {int(w.get("num_bits") or 4) for w in packed} or {4}
    sizes = {w.get("group_size") for w in packed if w.get("strategy") == "group"}
    if len(bits) > 1 or len(sizes) > 1 or not bits <= {2, 4, 8}:
        raise UnsupportedArchitecture(
            f"config.json: pack-quantized groups with bit widths {sorted(bits)} and group sizes {sorted(map(str, sizes))}; "
            "quantpress reads one width (2, 4 or 8 bits) and one group size per checkpoint")
    block = next((block_from(w.get("block_structure"), "block_structure") for fmt, w in args
                  if fmt == "float-quantized" and w.get("strategy") == "block"), None)
    size = next(iter(sizes), None)
    return Compressed(bits.pop(), int(size) if size else None, Fp8("weight_scale", block, "compressed-tensors FP8"))
