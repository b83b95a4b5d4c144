"""Q5_1 that never snaps weights back onto an older, coarser grid.

Q5_1 stores each 32-weight block as ``d * q + m`` (q in 0..31). A search for the best ``d`` and ``m``
(the native kernel, or ggml's given importance) has a trap on weights that once were quantized: a model
dequantized from a Q4_1 GGUF has every block on 16 levels, which Q5_1 can hold exactly (``d`` halved), and
a fine-tune of such a model keeps its weights in clusters around those levels. The search then finds the
old grid and rounds every weight of a cluster to its centre: the smallest squared error there is, and
the fine-tune reverted (BENCHMARKS.md, "Why a lower squared error gave a higher KLD on finetuned_far":
79% of the fine-tune's change undone, KLD 0.49 where Q5_0's unrelated levels give 0.056 with twice the
squared error). llama-quantize's own min/max Q5_1 puts its end levels on the extreme clusters too (0.22).

How far the weights sit from such a grid shows in one number: the searched Q5_1's squared error over
that of ggml's max-abs Q5_0 rounding (no search, symmetric levels). On weights that were never quantized
it is 0.61-0.65 for every tensor of three test models (what Q5_1's offset and search buy); on the
demo's fine-tunes it is 0.001-0.011 (a fine-tune far below a step: the weights are still the grid)
or 0.06-0.59, median 0.20 (finetuned_far: clusters with a real spread); on the demo itself 0.
``quantize_q5_1`` takes the ratio over the rows it is given (a tensor, or a slab of a large one) and stores:
- rows whose ratio is at least GENERIC_RATIO (never quantized: no older grid to snap to) or at most
  ON_GRID_RATIO (the weights are the grid, up to changes far below a step: storing the grid loses
  almost nothing) as searched;
- in between, each block at Q5_0's max-abs levels written in Q5_1's layout (``m = -16 d``, exact in
  fp16), which do not line up with where older levels lay, so rounding errors do not undo a
  fine-tune's changes; a block whose own ratio is at most ON_GRID_RATIO stays searched.
ON_GRID_RATIO sits in the gap between the two fine-tunes (0.011 to 0.058); GENERIC_RATIO leaves a margin
below the never-quantized tensors (0.61) and puts one finetuned_far tensor of 210 (0.59) on their side.
Before whole tensors could count as on the grid, Q5_0's levels on finetuned's blocks cost its Q5_K_M 5%
against llama.cpp's search given an imatrix (BENCHMARKS.md, "Choosing auto", "Six models").

Block layouts (ggml-common.h): block_q5_0 = fp16 d, uint32 qh, 16 bytes qs (22 bytes); block_q5_1 =
fp16 d, fp16 m, uint32 qh, 16 bytes qs (24 bytes); both decode ``q = nibble | high bit << 4``, Q5_0
as ``d * (q - 16)``.
"""

from __future__ import annotations

import numpy as np

QK = 32
Q5_0_BYTES = 22
Q5_1_BYTES = 24
# Searched Q5_1 error / max-abs Q5_0 error (module docstring): at or above GENERIC_RATIO the weights are
# treated as never quantized; at or below ON_GRID_RATIO as a grid (the rows given, or one block).
GENERIC_RATIO = 0.5
ON_GRID_RATIO = 0.02
# What quantize_q5_1 runs whatever its caller's engine, as (type, engine, with importance): the converter's
# cost model prices it so (core/eta.py).
WORK: tuple[tuple[str, str, bool], ...] = (("Q5_1", "native", True), ("Q5_0", "ggml", False))


def q5_0_as_q5_1(blocks: np.ndarray) -> np.ndarray:
    """Q5_0 rows (uint8, rows x nb*22) rewritten as Q5_1 rows with the same values (rows x nb*24)."""
    rows = blocks.shape[0]
    b = blocks.reshape(rows, -1, Q5_0_BYTES)
    out = np.empty((rows, b.shape[1], Q5_1_BYTES), dtype=np.uint8)
    d = b[:, :, 0:2].copy().view(np.float16)
    out[:, :, 0:2] = b[:, :, 0:2]
    out[:, :, 2:4] = (d * np.float16(-16)).view(np.uint8)  # a power of two: exact unless it overflows
    out[:, :, 4:] = b[:, :, 2:]
    return out.reshape(rows, -1)


def _block_errors(x: np.ndarray, blocks: np.ndarray, qtype: str) -> np.ndarray:
    """Squared error of each 32-weight block (rows x nb, float64) of ``x`` stored as ``blocks``."""
    from quantpress.core.quant import decode

    back = decode(blocks, qtype, x.shape[1]).astype(np.float64)
    err: np.ndarray = ((back - x) ** 2).reshape(x.shape[0], -1, QK).sum(axis=2)
    return err


def quantize_q5_1(x: np.ndarray, importance: np.ndarray | None, threads: int) -> np.ndarray:
    """Grid-safe Q5_1 of float32 rows ``x`` (rows, n_per_row). The searched Q5_1 is the native kernel's
    (given ``importance``, or uniform); the unaligned levels are ggml's max-abs Q5_0 rounding, with no
    search and no importance: a search, even a symmetric one, leans towards old levels (on finetuned_far
    the native Q5_0 search gave Q5_K_S a KLD of 0.108 against max-abs rounding's 0.089)."""
    from quantpress.core.quant import quantize_tensor

    searched: np.ndarray = quantize_tensor(x, "Q5_1", importance, threads, "native")
    q5_0 = quantize_tensor(x, "Q5_0", None, threads, "ggml")
    e_searched, e_q5_0 = _block_errors(x, searched, "Q5_1"), _block_errors(x, q5_0, "Q5_0")
    ratio = e_searched.sum() / max(e_q5_0.sum(), np.finfo(np.float64).tiny)
    if ratio >= GENERIC_RATIO or ratio <= ON_GRID_RATIO:
        return searched
    out = q5_0_as_q5_1(q5_0).reshape(x.shape[0], -1, Q5_1_BYTES)
    m_finite = np.isfinite(out[:, :, 2:4].copy().view(np.float16)[..., 0])  # -16 d overflows fp16 past |d| 4094
    keep = (e_searched <= ON_GRID_RATIO * e_q5_0) | ~m_finite
    out[keep] = searched.reshape(out.shape)[keep]
    return out.reshape(x.shape[0], -1)
