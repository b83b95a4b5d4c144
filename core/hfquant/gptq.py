"""GPTQ: int4 symmetric group quantization with second-order error compensation (Frantar et al. 2022,
"GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", Algorithm 1).

Per linear W (N out, K in) with the Hessian H = 2/n Σ x xᵀ of its inputs x (K,) on calibration text:
columns are quantized left to right; each column's rounding error, divided by the diagonal of the
upper Cholesky factor of H⁻¹, is spread over the columns not yet quantized, so later columns absorb what
earlier ones lost. Lazy batches (the paper's step 2): inside a block of 128 columns the error goes column
by column into the block's own later columns (one rank-1 update each); the block's errors then reach every
later column in one matmul. ``gptq_ref`` feeds every column's error into all later columns at once: the
slow twin the tests compare with (same levels and scales). Dead inputs (H_kk = 0) are zeroed; H gets a damping of
``damp`` · mean(diag H) on its diagonal.

Quantizer (AutoGPTQ / llm-compressor symmetric int4): per group of ``group_size`` input columns
scale = max|w| / 7.5 (rounded to fp16, the stored dtype), q = clamp(round(w / scale) + 8, 0, 15),
w' = (q - 8) · scale. A group's scale is taken from the weights as they are when the group's first column
is reached (the error fed forward from every earlier column included; a block holds whole groups).

Act-order: "off" (columns in order) or "weight" (columns processed by decreasing H_kk, with every group's
scale computed first from the unpermuted weights: llm-compressor's ``actorder: weight`` / GPTQModel's
static groups). Both keep the groups contiguous (g_idx = k // group_size), so the stored layout is the plain
one; "group" act-order (permuted g_idx) is not offered (vLLM is dropping it).

``rtn`` is the same quantizer without error feedback: the round-to-nearest baseline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    """(q uint8 (N, K) in 0..15, scale float32 (N, G)) for ``w`` (N, K) given ``hessian`` (K, K), on w's device.

    Blocked (lazy-batch) form: within a block of columns the error is fed forward one column at a time
    (one rank-1 update of the block's later columns), then once into every later column by one matmul.
    Blocks are whole groups, so a group's scale is taken when its first column is reached from columns that
    have received every earlier column's error (:func:`gptq_ref` is the same algorithm column by column)."""
    import torch

    W, hinv, perm, scale = _prepare(w, hessian, group_size, act_order, damp)
    k = W.shape[1]
    static = act_order == "weight"
    width = group_size * max(1, BLOCK_COLUMNS // group_size)  # whole groups per block
    groups = (perm // group_size).tolist()  # group of each column in processing order
    Q = torch.empty_like(W)  # signed levels -8..7
    for i1 in range(0, k, width):
        i2 = min(i1 + width, k)
        W1 = W[:, i1:i2].clone()  # (N, B): updated column by column
        h1 = hinv[i1:i2, i1:i2]
        inv_d = 1.0 / torch.diagonal(h1)
        S = scale[:, groups[i1:i2]] if static else torch.empty_like(W1)  # (N, B): each column's scale
        with _one_thread(W.device):
            for i in range(i2 - i1):
                if not static and i % group_size == 0:  # in order: column i opens a group
                    S[:, i:i + group_size] = group_scales(W1[:, i:i + group_size], group_size)
                    scale[:, groups[i1 + i]] = S[:, i]
                w_i, s_i = W1[:, i], S[:, i]
                e = (w_i - torch.clamp(torch.round(w_i / s_i), -8, 7) * s_i) * inv_d[i]
                W1[:, i + 1:].addr_(e, h1[i, i + 1:], alpha=-1.0)
        # W1's column i is final once column i is reached: levels and errors of the block at once
        q1 = torch.clamp(torch.round(W1 / S), -8, 7)
        Q[:, i1:i2] = q1
        W[:, i2:].addmm_((W1 - q1 * S) * inv_d, hinv[i1:i2, i2:], alpha=-1.0)
    return _levels(Q, perm), scale


def gptq_ref(w: Any, hessian: Any, group_size: int, *, act_order: str = "off", damp: float = 0.01) -> tuple[Any, Any]:
    """:func:`gptq` without blocks (Algorithm 1 with every column's error fed at once into all later
    columns): the slow twin the blocked version is tested against."""
    import torch

    W, hinv, perm, scale = _prepare(w, hessian, group_size, act_order, damp)
    Q = torch.empty_like(W)
    for c in range(W.shape[1]):
        g = int(perm[c]) // group_size
        if act_order == "off" and c % group_size == 0:
            scale[:, g] = group_scales(W[:, c:c + group_size], group_size)[:, 0]
        Q[:, c] = torch.clamp(torch.round(W[:, c] / scale[:, g]), -8, 7)
        e = (W[:, c] - Q[:, c] * scale[:, g]) / hinv[c, c]
        W[:, c + 1:] -= e[:, None] * hinv[c, c + 1:][None, :]
    return _levels(Q, perm), scale


def _prepare(w: Any, hessian: Any, group_size: int, act_order: str, damp: float) -> tuple[Any, Any, Any, Any]:
    """(W permuted, upper Cholesky factor of the damped H⁻¹ permuted, perm, scale (N, G): act-order weight's
    static scales, else zeros to be filled) with dead inputs zeroed."""
    import torch

    if act_order not in ACT_ORDERS:
        raise ValueError(f"act-order '{act_order}' is not supported; use one of {', '.join(ACT_ORDERS)}")
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"input width {k} is not a multiple of the group size {group_size}")
    W = w.float().clone()
    H = hessian.float().to(W.device).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if act_order == "weight":
        scale = group_scales(W, group_size)  # every group's scale first, from the unpermuted weights
        perm = torch.argsort(torch.diag(H), descending=True)
    else:
        scale = torch.zeros(n, k // group_size, device=W.device)
        perm = torch.arange(k, device=W.device)
    W, H = W[:, perm], H[perm][:, perm]
    eye = torch.eye(k, device=H.device)
    H += eye * (damp * torch.mean(torch.diag(H)))
    # H⁻¹ by cholesky_solve: cholesky_inverse took 12 s of CPU on a 1536-wide H with 2 threads (0.14 s on 1)
    hinv = torch.linalg.cholesky(torch.cholesky_solve(eye, torch.linalg.cholesky(H)), upper=True)
    return W, hinv, perm, scale


def _levels(Q: Any, perm: Any) -> Any:
    """Signed levels in processing order -> stored nibbles (0..15) in column order."""
    import torch

    out = torch.empty_like(Q)
    out[:, perm] = Q + 8
    return out.to(torch.uint8)


@contextmanager
def _one_thread(device: Any) -> Iterator[None]:
    """Run the per-column loop on one CPU thread: its ops touch at most N × 128 values, and splitting
    them over torch's thread pool cost 11× more than it saved on a loaded 2-core machine (a demo-model
    layer: 201 s on 2 threads, 17.6 s on 1). The block matmuls keep every thread."""
    import torch

    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
