"""The numbers, as llama.cpp's perplexity tool defines them (tools/perplexity/perplexity.cpp):

- NLL of a token = logsumexp(logits) - logit[target]; PPL = exp(mean NLL) over all scored tokens.
- KL-divergence per token = sum over tokens whose reference log-prob is above -16 of
  p_ref * (log p_ref - log p_model) (``log_softmax(..., kl_divergence_result&)``, the -16 cut-off
  included); reported: its mean and its 99th percentile (llama.cpp's ``percentile``: linear
  interpolation between sorted values at fraction * (n - 1)).
- top-1 agreement ("same top p") = share of tokens where both argmaxes agree.
- Δ PPL = PPL(model) - PPL(reference), both over the same tokens.
Sums are in float64 (llama.cpp accumulates in double too).
"""

from __future__ import annotations

import numpy as np

LOG_PROB_FLOOR = -16.0  # reference log-probs at or below this are left out of the KL sum (llama.cpp)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities in float64. logits: [n, vocab]."""
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


def token_nll(log_probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    nll: np.ndarray = -log_probs[np.arange(len(targets)), targets]
    return nll


def token_kld(ref_log_probs: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """Per-token KL(ref || model); both [n, vocab] log-probs."""
    mask = ref_log_probs > LOG_PROB_FLOOR
    p = np.where(mask, np.exp(ref_log_probs), 0.0)
    kld: np.ndarray = np.where(mask, p * (ref_log_probs - log_probs), 0.0).sum(axis=1)
    return kld


def percentile(values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile (perplexity.cpp, ``kl_divergence``)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = fraction * (len(v) - 1)
    i = int(p)
    p -= i
    return float((1 - p) * v[i] + p * v[min(i + 1, len(v) - 1)])
