"""Calibration: activation statistics from running a model over text (the importance matrix that
GGUF k-quants take, and the inputs AWQ searches on). No torch/transformers at import time.

Public API
- ``default_calibration_text() -> str``: the shipped licence-clean text (~33.5k SmolLM2 tokens of
  prose/dialogue, Python documentation and code; origin in resources/calibration/README.md).
- ``load_calibration_text(source) -> str``: "default", a .txt file, or .jsonl with a "text" field.
- ``compute_imatrix(model_dir, text=None, *, n_ctx=512, max_tokens=32768, device="auto",
  batch_chunks=4, dataset_name=None, report, cancel) -> Imatrix``: mean x² per input column of
  every decoder linear, keyed by GGUF tensor name (``blk.N.attn_q.weight``; phi3: ``attn_qkv``,
  ``ffn_up``); routed experts one row per expert over the tokens routed to it
  (``blk.N.ffn_{gate,up,down}_exps``, core/calibration/experts.py); one decoder layer in memory at a
  time. Records token and chunk counts.
- ``Imatrix``: frozen; ``sums``/``counts`` per GGUF name (llama.cpp's in_sum2/counts),
  ``importance(name) -> float32 array | None`` (the mean, what quantizers take; an expert without
  tokens gets its layer's pooled mean), ``experts_without_tokens``, ``names``,
  ``datasets``, ``chunk_count``, ``chunk_size``, ``n_tokens``.
- ``load_imatrix(path) -> Imatrix`` (llama.cpp GGUF imatrix or legacy .dat, detected from content),
  ``save_imatrix(imatrix, path, format="gguf"|"dat") -> Path`` (atomic).
- ``LlamaImatrixData(imatrix)``: the ``imatrix`` field of llama-cpp-python's
  ``llama_model_quantize_params`` (``params.imatrix = data.pointer``; keep ``data`` alive).
- ``weight_importance(tensors, read, kv, arch) -> Imatrix`` (core/calibration/weights.py): the same
  statistics estimated from the weights alone, no text; what ``quantpress convert`` uses by default.
- ``LayerwiseModel`` / ``run_layer`` (core/calibration/layerwise.py): the one-layer-at-a-time runner
  AWQ shares.
"""

from __future__ import annotations

from quantpress.core.calibration.collect import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_N_CTX,
    compute_imatrix,
    resolve_device,
)
from quantpress.core.calibration.imatrix import (
    FORMATS,
    Imatrix,
    LlamaImatrixData,
    from_means,
    load_imatrix,
    save_imatrix,
)
from quantpress.core.calibration.layerwise import LayerwiseModel, run_layer
from quantpress.core.calibration.text import (
    Chunks,
    chunk_text,
    default_calibration_text,
    load_calibration_text,
    load_tokenizer,
)
from quantpress.core.calibration.weights import weight_importance

__all__ = [
    "DEFAULT_MAX_TOKENS", "DEFAULT_N_CTX", "FORMATS", "Chunks", "Imatrix", "LayerwiseModel", "LlamaImatrixData",
    "chunk_text", "compute_imatrix", "default_calibration_text", "from_means", "load_calibration_text",
    "load_imatrix", "load_tokenizer", "resolve_device", "run_layer", "save_imatrix", "weight_importance",
]
