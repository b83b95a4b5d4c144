"""Number formats and bit packing shared by the quantized-source readers (numpy, no torch).

- ``FP8_E4M3`` / ``FP8_E5M2``: float32 value of every byte (OCP 8-bit floats: e4m3fn has bias 7, no
  infinities, 0x7F/0xFF are NaN; e5m2 is the top byte of an IEEE half).
- ``FP4_E2M1``: the 16 values of an MXFP4 element (OCP Microscaling Formats v1.0, table 5).
- ``e8m0``: an MX shared scale byte as 2**(e - 127) (255 is NaN).
- ``unpack``: k-bit unsigned integers packed into int32 words along the last axis, low bits first, with
  an optional permutation inside each word (AutoAWQ's GEMM order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _fp8_table(exp_bits: int, bias: int) -> np.ndarray:
    man_bits = 7 - exp_bits
    b = np.arange(256, dtype=np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    e = (b >> man_bits) & ((1 << exp_bits) - 1)
    m = (b & ((1 << man_bits) - 1)).astype(np.float64)
    normal = (1.0 + m / (1 << man_bits)) * np.exp2(e - bias)
    sub = (m / (1 << man_bits)) * np.exp2(1 - bias)
    table: np.ndarray = (sign * np.where(e == 0, sub, normal)).astype(np.float32)
    return table


FP8_E4M3 = _fp8_table(4, 7)
FP8_E4M3[[0x7F, 0xFF]] = np.nan  # e4m3fn: S.1111.111 is NaN, there is no infinity
FP8_E5M2 = (np.arange(256, dtype=np.uint16) << 8).view(np.float16).astype(np.float32)
FP8_TABLES = {"F8_E4M3": FP8_E4M3, "F8_E5M2": FP8_E5M2}

FP4_E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


def e8m0(scale: np.ndarray) -> np.ndarray:
    """float32 2**(e - 127) of E8M0 scale bytes (255: NaN, as the MX spec says)."""
    e = scale.astype(np.int32)
    out = np.ldexp(np.float32(1.0), e - 127).astype(np.float32)
    return np.where(e == 255, np.float32(np.nan), out)


def unpack(words: np.ndarray, bits: int, order: Sequence[int] | None = None) -> np.ndarray:
    """uint8 values (..., n_words * 32 // bits) of ``bits``-bit fields packed in int32 ``words`` along the
    last axis: field j of word c sits in bits j*bits.. and is element c * per_word + order[j]."""
    per_word = 32 // bits
    w = words.astype(np.int64) & 0xFFFFFFFF
    shifts = np.arange(per_word, dtype=np.int64) * bits
    fields = ((w[..., None] >> shifts) & ((1 << bits) - 1)).astype(np.uint8)  # (..., n_words, per_word)
    if order is not None:
        placed = np.empty_like(fields)
        placed[..., list(order)] = fields
        fields = placed
    return fields.reshape(*w.shape[:-1], w.shape[-1] * per_word)
