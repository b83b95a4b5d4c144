"""MXFP4 (OCP Microscaling Formats v1.0): blocks of 32 FP4 (e2m1) values sharing one E8M0 scale.

Stored as gpt-oss does (``quant_method: mxfp4``): ``<name>_blocks`` uint8 (..., G, 16), two elements per
byte, the low nibble first; ``<name>_scales`` uint8 (..., G), the exponent biased by 127. The dequantized
tensor ``<name>`` is (..., G * 32): value = FP4[nibble] · 2**(scale - 127) (transformers'
``convert_moe_packed_tensors`` computes the same).

Orientation: the stored one. For gpt-oss's experts that is (E, out, in), the layout GGUF wants; the bf16
gpt-oss release stores ``gate_up_proj`` as the module's (E, in, out) parameter instead, so architecture
code tells the two apart by the dtype label 'MXFP4' (llama.cpp's converter does the same, by name).

ggml's ``block_mxfp4`` (ggml-common.h) is the same scale byte followed by 16 bytes whose byte j holds
element j (low nibble) and element j + 16 (high nibble), so a stored block becomes a ggml block by
moving nibbles only (``to_ggml``): the MXFP4_MOE mix writes the checkpoint's own values, unrounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from quantpress.core.dequant.base import (
    Part,
    QuantTensor,
    RowReader,
    RowSource,
    expect_dtype,
    expect_shape,
    sibling,
)
from quantpress.core.dequant.packing import FP4_E2M1, e8m0
from quantpress.core.model import TensorInfo

BLOCK = 32  # elements per shared scale
LABEL = "MXFP4"
_SCALE_DTYPES = ("U8", "F8_E8M0")


@dataclass(frozen=True)
class Mxfp4:
    method: str = "MXFP4"
    ignored: tuple[str, ...] = ()

    def find(self, stored: Mapping[str, TensorInfo]) -> list[QuantTensor]:
        out = []
        for name, t in stored.items():
            if not name.endswith("_blocks"):
                continue
            blocks = Part.of(t)
            expect_dtype(blocks, ("U8",))
            base = name.removesuffix("_blocks")
            scales = sibling(stored, t, base + "_scales", "shared scales")
            expect_dtype(scales, _SCALE_DTYPES)
            if len(blocks.shape) < 3 or blocks.shape[-1] != BLOCK // 2:
                expect_shape(blocks, (*blocks.shape[:-1], BLOCK // 2), "MXFP4 blocks of 32 values (16 bytes)")
            expect_shape(scales, blocks.shape[:-1], f"one scale per 32-value block of '{name}'")
            shape = (*blocks.shape[:-2], blocks.shape[-2] * BLOCK)
            out.append(QuantTensor(base, shape, LABEL, (("blocks", blocks), ("scales", scales))))
        return out

    def open(self, qt: QuantTensor, read: RowReader) -> RowSource:
        blocks, scales = qt.need("blocks"), qt.need("scales")
        lead = len(qt.shape) - 1

        def rows(a: int, b: int) -> np.ndarray:
            values = FP4_E2M1[_codes(read(blocks, a, b, lead))]  # (r, G, 32)
            out: np.ndarray = (values * e8m0(read(scales, a, b, lead))[..., None]).reshape(b - a, -1)
            return out
        return rows


def _codes(packed: np.ndarray) -> np.ndarray:
    """(..., G, 16) stored bytes -> (..., G, 32) E2M1 codes in element order (low nibble first)."""
    return np.stack((packed & 0x0F, packed >> 4), axis=-1).reshape(*packed.shape[:-1], BLOCK)


def to_ggml(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """ggml ``block_mxfp4`` bytes (..., G * 17) holding exactly the values of stored ``blocks`` (..., G, 16)
    and ``scales`` (..., G)."""
    codes = _codes(blocks)
    qs = codes[..., :16] | (codes[..., 16:] << 4)
    out = np.concatenate((scales[..., None].astype(np.uint8), qs.astype(np.uint8)), axis=-1)
    return out.reshape(*blocks.shape[:-2], -1)


def ggml_rows(qt: QuantTensor, read: RowReader, e: int, first: int, step: int) -> np.ndarray:
    """ggml MXFP4 bytes of rows first::step of expert ``e`` of a stacked (E, rows, cols) MXFP4 weight."""
    blocks = read(qt.need("blocks"), e, e + 1, 1)[0][first::step]
    scales = read(qt.need("scales"), e, e + 1, 1)[0][first::step]
    return to_ggml(blocks, scales)


def from_config(qc: Mapping[str, Any]) -> Mxfp4:
    return Mxfp4()
