"""How much did quantization cost? Perplexity and KL-divergence against a reference, as llama.cpp's
perplexity tool defines them.

Public API:
- ``evaluate(model, reference=None, *, text=None, max_tokens=4096, ctx_tokens=512, kv_type=KVCacheType.F16,
  reference_kv_type=KVCacheType.F16, threads=None, flash_attn=None, reference_flash_attn=None, cache_dir=None,
  save=True, report=ignore, cancel=NEVER) -> EvalResult`` (frozen: perplexity, reference_perplexity, delta_perplexity, kld_mean, kld_p99,
  top1_agreement, tokens, chunks, ...). Reference log-probs are cached on disk (``cache_dir``, default the
  user cache) keyed by the reference file (size, mtime, head hash), the text hash, context and chunks.
  Results are merged into the sidecar ``<model>.gguf.json`` (the converter's file) under ``"evaluations"``
  (key: ``result_key(result)``), so the GUI can plot ``model_bytes`` against ``kld_mean`` per format.
  KV-cache cost: ``evaluate(m, m, kv_type=Q8_0)`` (reference: the same file with an f16 cache).
  ``model`` and ``reference`` may each be a GGUF (llama.cpp, runner.py), an AWQ output folder (torch
  with the AWQ backend's int4 kernels) or a plain Hugging Face folder (float32 torch, the original of an
  AWQ output); torch_runner.py chunks and scores exactly like the llama.cpp runner. A folder's sidecar
  is ``<folder>.json`` beside it (the folder itself is not written to).
- ``default_eval_text()``, ``read_eval_text(path)``, ``eval_text(text, name)`` -> ``EvalText``.
- ``metrics``: the numpy definitions (log_softmax, token_nll, token_kld, percentile).
Errors: ``InvalidInput`` (empty or too short text, different vocabulary/tokenizer), ``ModelLoadError``.
"""

from __future__ import annotations

from quantpress.core.evaluate.evaluate import (
    DEFAULT_CTX_TOKENS,
    DEFAULT_MAX_TOKENS,
    EvalResult,
    evaluate,
    result_key,
)
from quantpress.core.evaluate.sidecar import read_sidecar, sidecar_path
from quantpress.core.evaluate.text import EvalText, default_eval_text, eval_text, read_eval_text

__all__ = [
    "DEFAULT_CTX_TOKENS",
    "DEFAULT_MAX_TOKENS",
    "EvalResult",
    "EvalText",
    "default_eval_text",
    "eval_text",
    "evaluate",
    "read_eval_text",
    "read_sidecar",
    "result_key",
    "sidecar_path",
]
