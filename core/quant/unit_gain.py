"""Rescale a quantized tensor so that it keeps the size of the weights it stores.

A tensor ``w`` stored as ``q`` has a gain ``<q, w> / <w, w>`` (weighted by the column importance): how
much larger or smaller it comes out along the weights' own direction. ggml's quantizers leave it off 1
by type, and a GGUF mix holds several types: on the test models (benchmarks/unit_gain.py) IQ1_S and
IQ1_M came out at 0.91-0.93, Q2_K 0.94-0.95, IQ2_XXS 0.94-0.96, IQ2_XS 0.97-0.98, Q4_K 0.995-1.000 and
IQ3_S 1.016-1.017. Part of that is by design: ggml multiplies the stored block scales of some i-quants
by fixed constants its source calls empirical "fudge factors" (ggml/src/ggml-quants.c in the llama.cpp that llama-cpp-python 0.3.36
vendors: IQ3_XXS d * 1.0125, IQ3_S d * 1.033, IQ1_S d * 1.125, IQ1_M d * 1.1125, IQ2_S d * 0.9875).
Within a mix, blocks whose paths come out at different gains cost far more than either tensor's own error
(BENCHMARKS.md, "The i-quant scale factors": on Qwen3 the IQ3_S mix's KLD halves once its tensors'
gains agree). ``to_unit_gain`` multiplies every block scale of a tensor by ``1 / gain``: the codes and
sub-block scales are the quantizer's, only the super-block scales change (to fp16 rounding). The gain is
that of the rows it is given: the converter quantizes a tensor a slab of rows at a time (16 MiB of
float32, core/gguf/convert.py) and a routed expert at a time, so a large tensor gets one factor per slab.

Every type here has super-block scales that multiply the whole block's output (``d``, and ``dmin`` or
``m`` beside it where the block has an offset: scaling both scales the output): ggml-common.h's block
layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rows at a time for the gain's dot products: bounds the float64 temporaries.
_ROWS_PER_STEP = 4096


@dataclass(frozen=True)
class ScaleField:
    """Where a block type keeps the fp16 scales that multiply the whole block: bytes per block and the
    byte offsets of each fp16 (IQ1_M packs its one scale into the top nibbles of four uint16s)."""

    block_bytes: int
    offsets: tuple[int, ...] = (0,)
    iq1m_packed: bool = False


SCALE_FIELDS: dict[str, ScaleField] = {
    "Q4_0": ScaleField(18), "Q4_1": ScaleField(20, (0, 2)), "Q5_0": ScaleField(22), "Q5_1": ScaleField(24, (0, 2)),
    "Q8_0": ScaleField(34),
    "Q2_K": ScaleField(84, (80, 82)), "Q3_K": ScaleField(110, (108,)), "Q4_K": ScaleField(144, (0, 2)),
    "Q5_K": ScaleField(176, (0, 2)), "Q6_K": ScaleField(210, (208,)),
    "IQ1_S": ScaleField(50), "IQ1_M": ScaleField(56, (), iq1m_packed=True), "IQ2_XXS": ScaleField(66),
    "IQ2_XS": ScaleField(74), "IQ2_S": ScaleField(82), "IQ3_XXS": ScaleField(98), "IQ3_S": ScaleField(110),
    "IQ4_NL": ScaleField(18), "IQ4_XS": ScaleField(136),
}


def tensor_gain(blocks: np.ndarray, x: np.ndarray, qtype: str, importance: np.ndarray | None) -> float:
    """``<q, x>_w / <x, x>_w`` of float32 rows ``x`` stored as ``blocks`` (uint8 rows of ``qtype``),
    ``w`` the column importance (all ones when None)."""
    from quantpress.core.quant import decode  # native kernels where they exist (bit-identical to gguf-py)

    w = np.ones(x.shape[1]) if importance is None else np.asarray(importance, dtype=np.float64)
    num = den = 0.0
    for a in range(0, x.shape[0], _ROWS_PER_STEP):
        xs = np.asarray(x[a:a + _ROWS_PER_STEP], dtype=np.float64)
        q = decode(np.ascontiguousarray(blocks[a:a + _ROWS_PER_STEP]).reshape(-1), qtype.upper(), x.shape[1])
        q = q.astype(np.float64)
        num += float(((q * xs) @ w).sum())
        den += float(((xs * xs) @ w).sum())
    return num / den if den > 0 else float("nan")


def _rescale_fp16(per_block: np.ndarray, offset: int, factor: float) -> None:
    d = per_block[:, offset:offset + 2].copy().view(np.float16)
    per_block[:, offset:offset + 2] = (d.astype(np.float32) * np.float32(factor)).astype(np.float16).view(np.uint8)


def _rescale_iq1m(per_block: np.ndarray, factor: float) -> None:
    # block_iq1_m: qs[32], qh[16], scales[8]; the fp16 super-block scale's four nibbles are the top
    # nibbles of the four uint16 scales words, lowest nibble first (ggml-quants.c dequantize_row_iq1_m).
    sc = per_block[:, 48:56].copy().view(np.uint16)
    u = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0x00F0) | ((sc[:, 2] >> 4) & 0x0F00) | (sc[:, 3] & 0xF000)
    d = (u.astype(np.uint16).view(np.float16).astype(np.float32) * np.float32(factor)).astype(np.float16)
    bits = d.view(np.uint16)
    for i in range(4):
        sc[:, i] = (sc[:, i] & 0x0FFF) | (((bits >> (4 * i)) & 0xF) << 12)
    per_block[:, 48:56] = sc.view(np.uint8)


def to_unit_gain(blocks: np.ndarray, x: np.ndarray, qtype: str, importance: np.ndarray | None) -> np.ndarray:
    """``blocks`` (uint8 (rows, row_bytes) of ``qtype``, quantized from float32 rows ``x``) with every
    block's scales multiplied by 1 / the tensor's gain (a copy). Types without a whole-block scale, and a
    tensor whose gain is not a positive number (all zeros), come back unchanged."""
    field = SCALE_FIELDS.get(qtype.upper())
    if field is None:
        return blocks
    if blocks.dtype != np.uint8 or blocks.ndim != 2 or blocks.shape[1] % field.block_bytes:
        raise ValueError(f"{qtype} blocks must be uint8 (rows, a multiple of {field.block_bytes} bytes), "
                         f"got {blocks.dtype} {blocks.shape}")
    g = tensor_gain(blocks, x, qtype, importance)
    if not np.isfinite(g) or g <= 0:
        return blocks
    out = np.array(blocks, copy=True)
    per_block = out.reshape(-1, field.block_bytes)
    if field.iq1m_packed:
        _rescale_iq1m(per_block, 1.0 / g)
    for offset in field.offsets:
        _rescale_fp16(per_block, offset, 1.0 / g)
    return out
