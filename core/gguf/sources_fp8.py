"""FP8 block-scaled source weights, as DeepSeek-V3/R1 and Kimi-K2 are released: each ``<name>.weight``
is float8 E4M3 (safetensors dtype F8_E4M3) with ``<name>.weight_scale_inv`` holding one float per
block of ``weight_block_size`` (config.json ``quantization_config``, [128, 128] for DeepSeek):
weight = fp8 value x scale_inv of its block (the name is historical: it is multiplied, as
DeepSeek's own fp8_cast_bf16.py and llama.cpp's converter do).

E4M3 is the OCP 8-bit floating point "FN" variant: sign, 4 exponent bits (bias 7), 3 mantissa bits;
exponent 0 is subnormal (m/8 x 2^-6); S.1111.111 is NaN and there is no infinity.

Kept apart from the checkpoint reader so a generic quantized-source reader can take it over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

FP8_DTYPE = "F8_E4M3"
FP8_SCALE_SUFFIX = "_scale_inv"
DEFAULT_BLOCK = (128, 128)


def _e4m3_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp, man = (codes >> 3) & 0x0F, codes & 0x07
    value = np.where(exp == 0, man / 8.0 * 2.0**-6, (1.0 + man / 8.0) * np.exp2(exp - 7.0))
    value = np.where((codes & 0x7F) == 0x7F, np.nan, value)
    return (sign * value).astype(np.float32)


E4M3_VALUES = _e4m3_table()


def e4m3_to_f32(raw: np.ndarray) -> np.ndarray:
    """float32 values of E4M3 bytes (any shape)."""
    return E4M3_VALUES[raw.view(np.uint8)]


def block_size(config: Mapping[str, Any]) -> tuple[int, int]:
    """(rows, cols) per scale from config.json's quantization_config (DeepSeek: 128 x 128)."""
    qc = config.get("quantization_config") or {}
    size = qc.get("weight_block_size") or DEFAULT_BLOCK
    return int(size[0]), int(size[1])


def dequantize_rows(raw: np.ndarray, scale_inv: np.ndarray, first_row: int, block: tuple[int, int]) -> np.ndarray:
    """float32 rows first_row.. of a block-scaled FP8 matrix: ``raw`` uint8 (rows, cols), ``scale_inv``
    float32 (ceil(R / block_rows), ceil(C / block_cols)) for the whole matrix."""
    n_rows, n_cols = raw.shape
    rows = (first_row + np.arange(n_rows)) // block[0]
    cols = np.arange(n_cols) // block[1]
    values: np.ndarray = e4m3_to_f32(raw) * scale_inv[rows][:, cols]
    return values
