"""The quantization engine the GGUF converter uses.

Public API:
- ``quantize_tensor(x, qtype, importance=None, threads=0) -> np.ndarray``: float32 (rows, n_per_row)
  C-contiguous -> uint8 (rows, row_bytes) in GGUF block layout. Uses quantpress's native kernel
  where the benchmarks show it is at least as good as ggml's, else ggml's own quantizer.
- ``engine_for(qtype, has_importance, engine="auto") -> "native" | "ggml"``: which one
  ``quantize_tensor`` uses. ``engine`` (also a ConversionPlan field, so saved plans replay the same
  choice): "auto" = the ENGINES table (the benchmarked winner per type), "ggml" = ggml's quantizer
  for every type (llama.cpp's bytes), "native" = quantpress's kernel wherever one exists. Without the
  native extension only "ggml" works; the others raise InvalidInput (never a silent switch).
- ``row_bytes(qtype, n_per_row)``, ``GGML_TYPES`` (name -> id, block size, bytes per block; from gguf-py).
- ``ggml_ref.ggml_quantize(x, qtype, importance=None)``: ggml's ``ggml_quantize_chunk`` (reference).
- ``decode(blocks, qtype, n_per_row)``: GGUF block bytes back to float32 rows (native kernels, gguf-py
  for the types they lack).

Native kernels (quantpress.native): Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 write ggml's exact bytes; Q2_K..Q6_K,
IQ4_NL, IQ4_XS use quantpress's own search (same GGUF layouts, lower error, different bytes).
The native k-quant search minimises sum_j base_j * sqrt(sigma2 + x_j^2) * error_j^2 (base = the
importance, or 1; sigma2 = 2 mean x^2 of the super-block): the weighting ggml uses with an imatrix,
under which larger weights count more. Plain squared error (the kernels' objective before) gave a
lower RMSE than ggml but a higher KL-divergence on models whose weights were never quantized.

Which engine, and whether importance is used, for a whole GGUF mix under engine "auto": core/quant/auto.py.

Importance: one non-negative float per column (e.g. mean x^2 of the layer input from calibration).
ValueError for wrong dtype/shape/row length, unknown types and NaN/Inf input.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from quantpress.core.choices import QuantEngine
from quantpress.core.errors import InvalidInput
from quantpress.core.quant.ggml_ref import GGML_TYPES, check_input, ggml_init, ggml_quantize, row_bytes
from quantpress.core.quant.unit_gain import to_unit_gain

__all__ = ["GGML_TYPES", "ENGINES", "decode", "ENGINE_CHOICES", "QuantEngine", "SEARCH_WITHOUT_IMPORTANCE", "engine_for", "quantize_tensor", "row_bytes", "ggml_quantize"]

Engine = Literal["native", "ggml"]


ENGINE_CHOICES = tuple(e.value for e in QuantEngine)

# qtype -> (engine without importance, engine with importance).
# Legacy types: `python -m benchmarks.quantize` (BENCHMARKS.md, "## Native quantize kernels"): the
# native Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 kernels write the same bytes as ggml without importance, and with
# importance for Q8_0/Q4_1/Q5_1 (tests/native/test_legacy.py), and are faster. With importance Q4_0/Q5_0
# search wider than ggml (native/src/search.cpp qp_make_qx_quants: never a higher weighted error):
# on the demo model with its real imatrix -4% / -7% weighted error, Q4_K_M+imatrix KLD 0.0294 vs
# llama.cpp's 0.0326, at ~2.8x ggml's CPU time for those two types (the conversion as a whole stays
# faster than llama.cpp's pipeline). See SEARCH_WITHOUT_IMPORTANCE for the plain-rounding case.
# k-quants / IQ4: `python -m benchmarks.kquants` (BENCHMARKS.md, same section): for every type, on
# the demo model (with its real calibration imatrix) and on a generated model, with and without
# importance, the native summed RMSE is below ggml's (ratios 0.66-0.97) and single-thread throughput
# is higher (2.6-7x in CPU time); `python -m benchmarks.kquants_kld`: KL-divergence of the demo model
# as Q4_K_M / Q3_K_M is not above ggml's, with and without imatrix.
# A type is native only if both hold; types not listed (IQ2/IQ3/IQ1, ...) always use ggml.
ENGINES: dict[str, tuple[Engine, Engine]] = {
    qtype: ("native", "native")
    for qtype in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS")
}


# Legacy types whose importance-free quantizer in ggml is plain max-abs rounding (``quantize_row_*_ref``).
# Given uniform column importance the same kernels search the scale instead (weights sqrt(sigma^2 + x^2)).
# KL-divergence (BENCHMARKS.md, "GGUF conversion"): on the demo model with its weights jittered off the
# Q4_1 grid they came from (`benchmarks.convert --off-grid`) Q4_0 0.2850 vs 0.3178 plain (paired SE
# 0.003), Q4_1 0.041 vs 0.240, Q5_1 0.024 vs 0.071; on the on-grid demo Q5_0 0.0694 vs 0.0755 and Q4_0 a
# tie (+0.0023, SE 0.0026). Only the native engine does this: the ggml engine stays byte-for-byte llama.cpp.
# Since the converter's default gives every attention/FFN tensor importance estimated from the weights
# (core/calibration/weights.py), this applies there to tensors without an estimate (token_embd, output)
# and to `--calibration none`.
SEARCH_WITHOUT_IMPORTANCE = frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1"})


def _native_types() -> set[str]:
    """Types with a native kernel. A missing extension is an error, never a silent switch to ggml
    (different bytes): only a user's explicit engine "ggml" runs without it."""
    try:
        from quantpress import native
    except ImportError as exc:
        raise InvalidInput(f"quantpress's native extension (quantpress.native) cannot be imported ({exc}). "
                           "Reinstall quantpress (./setup.sh, or pip install -e .), or choose the ggml "
                           "engine (--engine ggml) to quantize with llama.cpp's quantizer.") from None
    return set(native.formats())


def engine_for(qtype: str, has_importance: bool, engine: str = "auto") -> Engine:
    """Which engine ``quantize_tensor`` uses for ``qtype`` (with or without importance weights).

    engine: "auto" (ENGINES table), "ggml" (always) or "native" (wherever a native kernel exists;
    types without one, e.g. IQ2_XS, still use ggml)."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"unknown quantization engine {engine!r}; choose one of {', '.join(ENGINE_CHOICES)}")
    qtype = qtype.upper()
    if engine == "ggml" or qtype not in _native_types():  # the explicit choice needs no extension
        return "ggml"
    if engine == "native":
        return "native"
    choice = ENGINES.get(qtype)
    if choice is None:
        return "ggml"
    return choice[1 if has_importance else 0]


def _threads(threads: int) -> int:
    if threads < 0:
        raise ValueError("threads must be >= 0 (0 = all cores)")
    return threads or (os.cpu_count() or 1)


def _ggml_threaded(x: np.ndarray, qtype: str, importance: np.ndarray | None, threads: int) -> np.ndarray:
    """ggml_quantize over row chunks in a thread pool (ctypes drops the GIL during each call)."""
    rows = x.shape[0]
    n_threads = min(_threads(threads), max(rows, 1))
    if n_threads == 1:
        single: np.ndarray = ggml_quantize(x, qtype, importance)
        return single
    check_input(x, qtype, importance)  # raise once, on the caller's thread, before splitting
    ggml_init(qtype)
    bounds = np.linspace(0, rows, n_threads + 1).astype(int)
    out = np.empty((rows, row_bytes(qtype, x.shape[1])), dtype=np.uint8)

    def work(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        if b > a:
            out[a:b] = ggml_quantize(x[a:b], qtype, importance)

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        list(pool.map(work, range(n_threads)))
    return out


def quantize_tensor(
    x: np.ndarray, qtype: str, importance: np.ndarray | None = None, threads: int = 0, engine: str = "auto",
    unit_gain: bool = False, grid_safe: bool = False,
) -> np.ndarray:
    """Quantize float32 rows (rows, n_per_row) to GGUF blocks: uint8 (rows, row_bytes).

    threads=0 uses all cores; the bytes never depend on the thread count. engine: see engine_for.
    unit_gain: rescale the result's block scales so the stored tensor keeps the weights' size along
    their own direction (core/quant/unit_gain.py).
    grid_safe: Q5_1 blocks stored exactly where the native search can, else at Q5_0's max-abs levels,
    whatever ``engine`` (core/quant/grid_safe.py); other types are unaffected.
    """
    qtype = qtype.upper()
    out: np.ndarray
    if grid_safe and qtype == "Q5_1":
        from quantpress.core.quant.grid_safe import quantize_q5_1

        out = quantize_q5_1(x, importance, threads)
    elif engine_for(qtype, importance is not None, engine) == "native":
        from quantpress import native

        kernel_importance = importance
        if importance is None and qtype in SEARCH_WITHOUT_IMPORTANCE and x.ndim == 2:
            kernel_importance = np.ones(x.shape[1], dtype=np.float32)
        out = native.quantize(x, qtype, kernel_importance, threads)
    else:
        out = _ggml_threaded(x, qtype, importance, threads)
    return to_unit_gain(out, x, qtype, importance) if unit_gain else out


def decode(data: np.ndarray, ggml_type: str, n_per_row: int) -> np.ndarray:
    """GGUF block bytes -> float32 (rows, n_per_row): native kernels, gguf-py for other types (and for
    the float ones, without importing the native extension)."""
    if ggml_type not in ("F32", "F16", "BF16"):
        from quantpress import native

        if ggml_type in native.formats():
            return np.asarray(native.dequantize(np.ascontiguousarray(data).reshape(-1), ggml_type, n_per_row))
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    return np.asarray(dequantize(data, GGMLQuantizationType[ggml_type]), np.float32).reshape(-1, n_per_row)
