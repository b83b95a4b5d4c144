"""Reading quantpress's quantized folders back for chat and evaluation (the torch backend of
core/awq/backend.py): which format a folder is, from config.json's quantization_config, and how its
tensors become weights.

- ``fp8`` (compressed-tensors float-quantized): no FP8 matmul on the CPU, so each linear's weight is
  dequantized once at load (weight · weight_scale, exact) and the model runs in float32.
- ``gptq`` (GPTQ v1: qweight, qzeros, scales, g_idx, ``checkpoint_format: gptq``): int4 with one fp16
  scale and a zero point per group; unpacked to (q, scale, zero) for the int4 kernel.
- ``nf4`` (bitsandbytes 4-bit): dequantized at load, like fp8.
compressed-tensors pack-quantized (AWQ's asymmetric and GPTQ's symmetric W4A16) is read by
core/awq/quantizer.py.
"""

from __future__ import annotations

from typing import Any

DENSE_FORMATS = ("fp8", "nf4")
GPTQ_KEYS = ("qweight", "qzeros", "scales", "g_idx")


def folder_format(qc: dict[str, Any]) -> str | None:
    """'fp8', 'gptq', 'nf4' or None for a quantization_config."""
    method = qc.get("quant_method")
    if method == "compressed-tensors" and qc.get("format") == "float-quantized":
        return "fp8"
    if method == "gptq" and qc.get("bits") == 4 and qc.get("checkpoint_format", "gptq") == "gptq":
        return "gptq"
    if method == "bitsandbytes" and qc.get("load_in_4bit") and qc.get("bnb_4bit_quant_type") == "nf4":
        return "nf4"
    return None


def dequantize_dense(fmt: str, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each quantized linear's stored tensors replaced by its float32 ``weight``."""
    if fmt == "fp8":
        from quantpress.core.hfquant.fp8 import dequantize_fp8

        for name in [k for k in state if k.endswith(".weight_scale")]:
            module = name[: -len(".weight_scale")]
            state[module + ".weight"] = dequantize_fp8(state[module + ".weight"], state.pop(name))
        return state
    if fmt == "nf4":
        from quantpress.core.hfquant.nf4 import dequantize_state

        return dequantize_state(state)
    raise ValueError(f"not a dense-loaded format: {fmt}")


def unpack_gptq(t: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(q uint8 (N, K) in 0..15, scale float32 (N, G), zero float32 (N, G)) from GPTQ v1 tensors.

    GPTQ v1 (AutoGPTQ / GPTQModel "gptq" checkpoint format): ``qweight`` int32 (K/8, N), eight 4-bit values
    along K per word, value j in bits 4j..4j+3; ``qzeros`` int32 (G, N/8) packed the same way along N,
    holding zero - 1 (the v1 offset); ``scales`` fp16 (G, N); ``g_idx`` int32 (K,) = the group of each
    input column. Only contiguous groups (g_idx[k] = k // group_size, i.e. no group act-order) are unpacked
    here; w = (q - zero) · scale."""
    import torch
    from quantpress.core.awq.quantizer import _unpack_last

    q = _unpack_last(t["qweight"].T.contiguous())  # (N, K)
    zero = (_unpack_last(t["qzeros"]).to(torch.int32) + 1).T.contiguous().float()  # (N, G)
    scale = t["scales"].float().T.contiguous()
    k, g = q.shape[1], scale.shape[1]
    expected = torch.arange(k, dtype=torch.int32) // (k // g)
    if "g_idx" in t and not torch.equal(t["g_idx"].to(torch.int32), expected):
        raise ValueError("GPTQ checkpoint with group act-order (a permuted g_idx) is not supported")
    return q, scale, zero


def pack_gptq(q: Any, scale: Any, zero: Any) -> dict[str, Any]:
    """GPTQ v1 tensors for one linear from (q (N, K) 0..15, scale (N, G), zero (N, G) 1..15): see unpack_gptq."""
    import torch
    from quantpress.core.awq.quantizer import _pack_last

    n, k = q.shape
    g = scale.shape[1]
    return {
        "qweight": _pack_last(q).T.contiguous(),  # (K/8, N): packed along K
        "qzeros": _pack_last((zero.T.contiguous() - 1).to(torch.uint8)),  # (G, N/8)
        "scales": scale.T.contiguous().to(torch.float16),  # (G, N)
        "g_idx": torch.arange(k, dtype=torch.int32) // (k // g),
    }
