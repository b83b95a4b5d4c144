"""Int4 asymmetric group quantization (AWQ's quantizer) and the two packed layouts.

Math (llm-awq / AutoAWQ ``pseudo_quantize_tensor``), per group of ``group_size`` input columns:
    scale = max(max - min, 1e-5) / 15;  zero = clamp(-round(min / scale), 0, 15)
    q = clamp(round(w / scale) + zero, 0, 15);  w' = (q - zero) · scale
Scales are rounded to fp16 *before* q is computed, so the stored (q, zero, fp16 scale) reproduce
w' exactly in every format.

Layouts (weight W of shape (N out, K in), G = K / group_size groups):
- compressed-tensors "pack-quantized": ``weight_packed`` int32 (N, K/8), value j of every 8 along K
  in bits 4j..4j+3 (natural order), stored unsigned (= signed q + 8, i.e. our q);
  ``weight_zero_point`` int32 (N/8, G) packed the same way along N; ``weight_scale`` (N, G);
  ``weight_shape`` int32 [N, K].
- AutoAWQ "GEMM": ``qweight`` int32 (K, N/8) and ``qzeros`` int32 (G, N/8) packed along N with
  nibble i holding output 8c + AWQ_ORDER[i]; ``scales`` fp16 (G, N).
"""

from __future__ import annotations

from typing import Any

ALLOWED_GROUP_SIZES = (128, 64, 32)
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of a GEMM word holds output column 8c + AWQ_ORDER[i]


def group_size_for(in_features: int, requested: int) -> int | None:
    """The largest allowed group size <= ``requested`` that divides ``in_features`` (None: none does)."""
    for gs in ALLOWED_GROUP_SIZES:
        if gs <= requested and in_features % gs == 0:
            return gs
    return None


def qparams(w: Any, group_size: int) -> tuple[Any, Any]:
    """Per-group (scale fp16-rounded, zero) for ``w`` (N, K) -> each (N, K // group_size) float32."""
    import torch

    g = w.reshape(-1, group_size)
    wmax, wmin = g.amax(dim=1), g.amin(dim=1)
    scale = ((wmax - wmin).clamp(min=1e-5) / 15).to(torch.float16).to(torch.float32)
    zero = (-torch.round(wmin / scale)).clamp(0, 15)
    shape = (w.shape[0], w.shape[1] // group_size)
    return scale.reshape(shape), zero.reshape(shape)


def quantize(w: Any, group_size: int) -> tuple[Any, Any, Any]:
    """(q uint8 (N, K) in 0..15, scale float32 (N, G), zero float32 (N, G)) for ``w`` (N, K)."""
    import torch

    scale, zero = qparams(w, group_size)
    s = scale.repeat_interleave(group_size, dim=1)
    z = zero.repeat_interleave(group_size, dim=1)
    q = (torch.round(w / s) + z).clamp(0, 15)
    return q.to(torch.uint8), scale, zero


def dequantize(q: Any, scale: Any, zero: Any, group_size: int) -> Any:
    """w' float32 (N, K) from quantize()'s outputs."""
    s = scale.repeat_interleave(group_size, dim=1)
    z = zero.repeat_interleave(group_size, dim=1)
    return (q.float() - z) * s


def fake_quantize(w: Any, group_size: int) -> Any:
    """Quantize then dequantize (the search's inner step); same dtype/shape as ``w``. In-place
    arithmetic on one temporary: this runs ~100 times per layer in the searches."""
    import torch

    g = w.float().reshape(-1, group_size)
    wmin, wmax = torch.aminmax(g, dim=1, keepdim=True)
    scale = (wmax - wmin).clamp_(min=1e-5).div_(15).to(torch.float16).to(torch.float32)
    zero = wmin.div_(scale).neg_().round_().clamp_(0, 15)
    out = (g / scale).round_().add_(zero).clamp_(0, 15).sub_(zero).mul_(scale)
    return out.reshape(w.shape).to(w.dtype)


# ---------------------------------------------------------------------------------------------
# packing


def _pack_last(values: Any, order: tuple[int, ...] = tuple(range(8))) -> Any:
    """Pack 0..15 integers along the last dim (a multiple of 8) into int32 words; nibble i of
    word c holds element 8c + order[i]."""
    import torch

    v = values.to(torch.int64).reshape(*values.shape[:-1], -1, 8)
    word = torch.zeros(v.shape[:-1], dtype=torch.int64)
    for i, src in enumerate(order):
        word |= v[..., src] << (4 * i)
    return (word - ((word >> 31) << 32)).to(torch.int32)  # two's complement view of the uint32 bits


def _unpack_last(words: Any, order: tuple[int, ...] = tuple(range(8))) -> Any:
    import torch

    w = words.to(torch.int64) & 0xFFFFFFFF
    out = torch.empty(*w.shape, 8, dtype=torch.uint8)
    for i, dst in enumerate(order):
        out[..., dst] = ((w >> (4 * i)) & 0xF).to(torch.uint8)
    return out.reshape(*w.shape[:-1], -1)


def pack_compressed_tensors(q: Any, scale: Any, zero: Any, scale_dtype: Any) -> dict[str, Any]:
    """compressed-tensors pack-quantized tensors for one linear (suffixes after the module name)."""
    import torch

    n, k = q.shape
    if n % 8:
        raise ValueError(f"output width {n} is not a multiple of 8")
    return {
        "weight_packed": _pack_last(q),
        "weight_scale": scale.to(scale_dtype).contiguous(),
        "weight_zero_point": _pack_last(zero.T.contiguous()).T.contiguous(),  # packed along N: (N/8, G)
        "weight_shape": torch.tensor([n, k], dtype=torch.int32),
    }


def unpack_compressed_tensors(t: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(q (N, K), scale float32 (N, G), zero (N, G)) from pack_compressed_tensors' tensors."""
    import torch

    q = _unpack_last(t["weight_packed"])
    if "weight_zero_point" not in t:  # symmetric (GPTQ W4A16): stored q = signed value + 8
        return q, t["weight_scale"].float(), torch.full_like(t["weight_scale"], 8.0, dtype=torch.float32)
    zero = _unpack_last(t["weight_zero_point"].T.contiguous()).T.contiguous()
    return q, t["weight_scale"].float(), zero.float()


def pack_autoawq(q: Any, scale: Any, zero: Any) -> dict[str, Any]:
    """AutoAWQ GEMM tensors (qweight, qzeros, scales) for one linear."""
    import torch

    n, _ = q.shape
    if n % 8:
        raise ValueError(f"output width {n} is not a multiple of 8")
    return {
        "qweight": _pack_last(q.T.contiguous(), AWQ_ORDER),  # (K, N/8)
        "qzeros": _pack_last(zero.T.contiguous().to(torch.uint8), AWQ_ORDER),  # (G, N/8)
        "scales": scale.T.contiguous().to(torch.float16),  # (G, N)
    }


def unpack_autoawq(t: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(q (N, K), scale float32 (N, G), zero (N, G)) from AutoAWQ GEMM tensors."""
    q = _unpack_last(t["qweight"], AWQ_ORDER).T.contiguous()
    zero = _unpack_last(t["qzeros"], AWQ_ORDER).T.contiguous().float()
    return q, t["scales"].float().T.contiguous(), zero
