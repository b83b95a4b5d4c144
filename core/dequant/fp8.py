"""FP8 weights (float8 e4m3fn, or e5m2) with a float scale beside each: w = fp8 · scale.

The scale's shape says its granularity (llama.cpp's converter reads them the same way,
conversion/base.py ``dequant_simple``):
- per tensor: () / (1,) / (1, 1);
- per output channel: (N,) or (N, 1);
- blocks: (ceil(N / bn), ceil(K / bk)) for a weight (N, K), (bn, bk) from the config (DeepSeek-V3 and Qwen
  FP8 releases: ``quant_method: fp8``, ``weight_block_size: [128, 128]``, scale ``weight_scale_inv``;
  compressed-tensors ``strategy: block`` with ``block_structure``, scale ``weight_scale``).
``weight_scale_inv`` despite its name is multiplied: DeepSeek stores the inverse of the quantizer's
scale. Activation and KV-cache scales (``input_scale`` ...) are not needed for the weights.
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
    expect_shape,
    float32,
    sibling,
)
from quantpress.core.dequant.packing import FP8_TABLES
from quantpress.core.errors import InvalidModel
from quantpress.core.model import TensorInfo

DEFAULT_BLOCK = (128, 128)
ACTIVATION_SCALES = (".input_scale", ".output_scale", ".activation_scale", ".k_scale", ".v_scale",
                     ".input_zero_point", ".qscale_act")


@dataclass(frozen=True)
class Fp8:
    """FP8 weights whose scale tensor is named ``<module>.<scale_suffix>``."""

    scale_suffix: str  # 'weight_scale_inv' or 'weight_scale'
    block: tuple[int, int] | None = None  # from the config; None: 128x128 when the scale's shape fits it
    method: str = "FP8"
    ignored: tuple[str, ...] = ACTIVATION_SCALES

    def find(self, stored: Mapping[str, TensorInfo]) -> list[QuantTensor]:
        out = []
        for name, t in stored.items():
            if t.dtype not in FP8_TABLES or not name.endswith(".weight"):
                continue
            scale = sibling(stored, t, name.removesuffix("weight") + self.scale_suffix, "scale")
            if scale.dtype not in FLOAT_DTYPES:
                raise InvalidModel(f"{scale.where} is {scale.dtype}; an FP8 scale is a float tensor")
            if len(t.shape) != 2:
                raise InvalidModel(f"{t.file}: FP8 tensor '{name}' has {len(t.shape)} dimensions; quantpress reads "
                                   "FP8 matrices (2 dimensions) only")
            self.granularity(Part.of(t), scale)  # refuse a scale that fits no layout now, not mid-conversion
            out.append(QuantTensor(name, tuple(t.shape), t.dtype, (("weight", Part.of(t)), ("scale", scale))))
        return out

    def granularity(self, weight: Part, scale: Part) -> tuple[int, int] | None:
        """None for one scale per tensor or per row, else the (rows, columns) of a scale block."""
        n, k = weight.shape
        if scale.shape in ((), (1,), (1, 1), (n,), (n, 1)):
            return None
        bn, bk = self.block or DEFAULT_BLOCK
        expect_shape(scale, (ceil_div(n, bn), ceil_div(k, bk)), f"a {bn}x{bk}-block scale of {list(weight.shape)}")
        return bn, bk

    def open(self, qt: QuantTensor, read: RowReader) -> RowSource:
        weight, scale = qt.need("weight"), qt.need("scale")
        table = FP8_TABLES[weight.dtype]
        block = self.granularity(weight, scale)
        per_row = scale.shape in ((qt.shape[0],), (qt.shape[0], 1)) and qt.shape[0] > 1
        whole = None if block or per_row else float(float32(read(scale, 0, 1, 0), scale.dtype).reshape(-1)[0])

        def rows(a: int, b: int) -> np.ndarray:
            x: np.ndarray = table[read(weight, a, b, 1)]
            if whole is not None:
                return x * np.float32(whole)
            if block is None:  # one scale per row
                out: np.ndarray = x * float32(read(scale, a, b, 1), scale.dtype).reshape(-1, 1)
                return out
            bn, bk = block
            first = a // bn
            s = float32(read(scale, first, ceil_div(b, bn), 1), scale.dtype)
            s = expand_columns(s, x.shape[1], None, bk)[np.arange(a, b) // bn - first]
            blocked: np.ndarray = x * s
            return blocked
        return rows


def from_config(qc: Mapping[str, Any]) -> Fp8:
    """``quant_method: fp8`` (DeepSeek / Qwen / transformers' FineGrainedFP8): scale ``weight_scale_inv``."""
    block = block_from(qc.get("weight_block_size"), "weight_block_size")
    return Fp8("weight_scale_inv", block, f"FP8 ({block[0]}x{block[1]} blocks)" if block else "FP8")


def fbgemm_from_config(qc: Mapping[str, Any]) -> Fp8:
    """``quant_method: fbgemm_fp8``: one scale per output channel, ``weight_scale`` (N, 1)."""
    return Fp8("weight_scale", None, "FP8 (fbgemm, per channel)")


def block_from(value: Any, key: str) -> tuple[int, int] | None:
    """A (rows, columns) block size from a config value (None when absent); InvalidModel when malformed."""
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                               for v in value)):
        return int(value[0]), int(value[1])
    raise InvalidModel(f"config.json: quantization_config '{key}' is {value!r}; it must be two positive whole numbers "
                       "(rows, columns of a scale block), e.g. [128, 128]")

