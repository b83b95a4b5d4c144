"""FP8 W8A8-dynamic in compressed-tensors' ``float-quantized`` format (llm-compressor's FP8_DYNAMIC scheme).

Weights: float8 e4m3 (``torch.float8_e4m3fn``, largest finite value 448) with one scale per output
channel, scale = max|w| of the row / 448 (compressed-tensors' symmetric min-max observer for an 8-bit
float), stored in the source's float dtype with shape (out, 1); the weight is divided by that stored
scale in its own dtype, clamped to ±448 and rounded to e4m3 (compressed-tensors' ``quantize`` for float
types, so the bytes are the ones llm-compressor writes); its decompression multiplies in the scale's dtype,
and so does :func:`dequantize_fp8`. Activations: 8-bit float per
token, computed at run time (``dynamic: true``), so no calibration text is needed.

Stored per linear: ``weight`` F8_E4M3 (out, in), ``weight_scale`` (out, 1). Readers: vLLM (FP8 kernels
on Ada/Hopper GPUs), transformers with compressed-tensors (which decompresses to the float dtype on
other hardware).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantpress.core.hfquant.plan import Scheme
from quantpress.core.hfquant.safetensors_out import Entry

FORMAT = "FP8_E4M3"
E4M3_MAX = 448.0


def _entries(module: str, shape: tuple[int, int], dtype: str) -> tuple[Entry, ...] | None:
    return (Entry(f"{module}.weight", "F8_E4M3", shape), Entry(f"{module}.weight_scale", dtype, (shape[0], 1)))


def quantize_fp8(w: Any) -> dict[str, Any]:
    """{"weight": e4m3 (out, in), "weight_scale": (out, 1) in w's dtype} for a float weight ``w``."""
    import torch

    w32 = w.float()
    amax = w32.abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax)).to(w.dtype)
    # divided in the weight's own dtype, as compressed-tensors' quantize does: the bytes llm-compressor writes
    q = (w / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return {"weight": q, "weight_scale": scale}


def dequantize_fp8(weight: Any, weight_scale: Any) -> Any:
    """The float32 weight compressed-tensors' decompression computes (the product in the scale's dtype)."""
    return (weight.to(weight_scale.dtype) * weight_scale).float()


def _args(dynamic: bool, strategy: str, observer: str | None) -> dict[str, Any]:
    return {"num_bits": 8, "type": "float", "symmetric": True, "group_size": None, "strategy": strategy,
            "block_structure": None, "dynamic": dynamic, "actorder": None, "observer": observer,
            "observer_kwargs": {}}


def targets(modules: Sequence[str]) -> list[str]:
    """compressed-tensors targets: one regex per linear suffix (q_proj, down_proj, ...)."""
    suffixes = sorted({m.split(".layers.", 1)[-1].split(".", 1)[1] for m in modules})
    return [f"re:.*\\.{s.replace('.', chr(92) + '.')}$" for s in suffixes]


def ct_version() -> str:
    try:
        from importlib.metadata import version

        return version("compressed-tensors")
    except Exception:  # noqa: BLE001 - optional package; the field is informational
        return "0.20.1"


def fp8_config(modules: Sequence[str]) -> dict[str, Any]:
    return {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": targets(modules),
                                          "weights": _args(False, "channel", "minmax"),
                                          "input_activations": _args(True, "token", None),
                                          "output_activations": None}},
            "ignore": ["lm_head"], "kv_cache_scheme": None, "global_compression_ratio": None, "version": ct_version()}


FP8_SCHEME = Scheme(FORMAT, _entries, fp8_config)
