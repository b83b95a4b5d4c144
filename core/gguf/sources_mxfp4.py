"""MXFP4 source weights (OCP Microscaling Formats v1.0, MXFP4), as the gpt-oss releases store their
experts: ``<proj>_blocks`` uint8 [..., n_blocks, 16] and ``<proj>_scales`` uint8 [..., n_blocks].

A block is 32 FP4 (E2M1) elements sharing one E8M0 scale 2^(s - 127). In the checkpoint byte i of a
block holds element 2i in its low nibble and element 2i+1 in its high nibble (the packing OpenAI's
and transformers' readers decode). ggml's ``block_mxfp4`` (ggml-common.h) is the same scale byte
followed by 16 bytes whose byte j holds element j (low nibble) and element j + 16 (high nibble), so a
source block becomes a ggml block by moving nibbles only: no rounding, the same values.

Kept apart from the checkpoint reader so a generic quantized-source reader can take it over.
"""

from __future__ import annotations

import numpy as np

MXFP4_BLOCK = 32  # elements per block (OCP MX v1.0, table 1)
MXFP4_BLOCKS_SUFFIX, MXFP4_SCALES_SUFFIX = "_blocks", "_scales"
GGML_BLOCK_BYTES = 17  # 1 scale byte + 16 bytes of nibbles

# E2M1 code -> value (OCP MX v1.0, 5.3.3): sign bit 3, two exponent bits (bias 1), one mantissa bit.
E2M1_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
                       dtype=np.float32)


def _codes(blocks: np.ndarray) -> np.ndarray:
    """[..., n_blocks, 16] packed bytes -> [..., n_blocks, 32] E2M1 codes in element order."""
    lo, hi = blocks & np.uint8(0x0F), blocks >> np.uint8(4)
    return np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], MXFP4_BLOCK)


def dequantize(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 [..., n_blocks * 32] from checkpoint ``blocks`` [..., n_blocks, 16] and ``scales`` [..., n_blocks]."""
    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != MXFP4_BLOCK // 2:
        raise ValueError(f"MXFP4 blocks {blocks.shape} and scales {scales.shape} do not belong together")
    # E8M0 scale 2^(s - 127); 255 is NaN in the spec, which no trained checkpoint holds (the writer's
    # finite-weights check would name the tensor).
    scale = np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127).astype(np.float32)
    values: np.ndarray = E2M1_VALUES[_codes(blocks)] * scale[..., None]
    return values.reshape(*blocks.shape[:-2], -1)


def to_ggml(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """ggml MXFP4 bytes [..., n_blocks * 17] holding exactly the values of ``blocks``/``scales``."""
    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != MXFP4_BLOCK // 2:
        raise ValueError(f"MXFP4 blocks {blocks.shape} and scales {scales.shape} do not belong together")
    codes = _codes(blocks)
    qs = codes[..., :16] | (codes[..., 16:] << np.uint8(4))
    out = np.concatenate([scales[..., None].astype(np.uint8), qs.astype(np.uint8)], axis=-1)
    return out.reshape(*blocks.shape[:-2], -1)
