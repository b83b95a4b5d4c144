"""GPTQ: int4 symmetric group quantization with second-order error compensation (Frantar et al. 2022,
"GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", Algorithm 1).

Per linear W (N out, K in) with the Hessian H = 2/n Σ x xᵀ of its inputs x (K,) on calibration text:
columns are quantized left to right; each column's rounding error, divided by the diagonal of the
upper Cholesky factor of H⁻¹, is spread over the columns not yet quantized (lazy batches of 128 columns),
so later columns absorb what earlier ones lost. Dead inputs (H_kk = 0) are zeroed; H gets a damping of
``damp`` · mean(diag H) on its diagonal.

Quantizer (AutoGPTQ / llm-compressor symmetric int4): per group of ``group_size`` input columns
scale = max|w| / 7.5 (rounded to fp16, the stored dtype), q = clamp(round(w / scale) + 8, 0, 15),
w' = (q - 8) · scale. A group's scale is taken from the weights as they are when the group's first column
is reached (the error fed forward included), as AutoGPTQ does.

Act-order: "off" (columns in order) or "weight" (columns processed by decreasing H_kk, with every group's
scale computed first from the unpermuted weights: llm-compressor's ``actorder: weight`` / GPTQModel's
static groups). Both keep the groups contiguous (g_idx = k // group_size), so the stored layout is the plain
one; "group" act-order (permuted g_idx) is not offered (vLLM is dropping it).

``rtn`` is the same quantizer without error feedback: the round-to-nearest baseline.
"""

from __future__ import annotations

from typing import Any

ACT_ORDERS = ("off", "weight")
BLOCK_COLUMNS = 128  # lazy-batch width (Algorithm 1's B)


def group_scales(w: Any, group_size: int) -> Any:
    """fp16-rounded symmetric scales (N, K / group_size) float32 of ``w`` (N, K)."""
    import torch

    g = w.float().reshape(w.shape[0], -1, group_size)
    amax = g.abs().amax(dim=2)
    return torch.where(amax > 0, amax / 7.5, torch.ones_like(amax)).to(torch.float16).float()


def _round(w: Any, scale: Any) -> Any:
    import torch

    return torch.clamp(torch.round(w / scale) + 8, 0, 15)


def rtn(w: Any, group_size: int) -> tuple[Any, Any]:
    """(q uint8 (N, K) in 0..15, scale float32 (N, G)) by plain rounding."""
    import torch

    scale = group_scales(w, group_size)
    q = _round(w.float(), scale.repeat_interleave(group_size, dim=1))
    return q.to(torch.uint8), scale


def dequantize_sym(q: Any, scale: Any, group_size: int) -> Any:
    return (q.float() - 8) * scale.repeat_interleave(group_size, dim=1)


def gptq(w: Any, hessian: Any, group_size: int, *, act_order: str = "off", damp: float = 0.01) -> tuple[Any, Any]:
    """(q uint8 (N, K) in 0..15, scale float32 (N, G)) for ``w`` (N, K) given ``hessian`` (K, K), on w's device."""
    import torch

    if act_order not in ACT_ORDERS:
        raise ValueError(f"act-order '{act_order}' is not supported; use one of {', '.join(ACT_ORDERS)}")
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"input width {k} is not a multiple of the group size {group_size}")
    W = w.float().clone()
    H = hessian.float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    static = group_scales(W, group_size) if act_order == "weight" else None
    perm = torch.argsort(torch.diag(H), descending=True) if act_order == "weight" else torch.arange(k, device=W.device)
    W, H = W[:, perm], H[perm][:, perm]
    H += torch.eye(k, device=H.device) * (damp * torch.mean(torch.diag(H)))
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    scale = torch.zeros(n, k // group_size, device=W.device) if static is None else static
    for i1 in range(0, k, BLOCK_COLUMNS):
        i2 = min(i1 + BLOCK_COLUMNS, k)
        W1, err = W[:, i1:i2].clone(), torch.zeros(n, i2 - i1, device=W.device)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            g = col // group_size
            if static is None and col % group_size == 0:  # in order: this column opens group g
                scale[:, g] = group_scales(torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :group_size], group_size)[:, 0]
            s = scale[:, g]
            q = _round(W1[:, i], s)
            Q[:, i1 + i] = q
            e = (W1[:, i] - (q - 8) * s) / h1[i, i]
            W1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            err[:, i] = e
        W[:, i2:] -= err @ hinv[i1:i2, i2:]
    out = torch.empty_like(Q)
    out[:, perm] = Q
    return out.to(torch.uint8), scale
