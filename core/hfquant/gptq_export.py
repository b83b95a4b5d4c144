"""GPTQ int4 checkpoints in two layouts, from one pass's (q, scale) per linear:

- ``compressed-tensors``: W4A16 ``pack-quantized`` as llm-compressor writes it (symmetric, so no zero
  point): ``weight_packed`` int32 (N, K/8), ``weight_scale`` fp16 (N, G), ``weight_shape`` int32 [N, K];
  config groups ``weights: {num_bits: 4, type: int, symmetric: true, strategy: group}``.
- ``gptq``: GPTQ v1 (``checkpoint_format: gptq``) for GPTQModel and vLLM: ``qweight``, ``qzeros`` (zero 8
  stored as 7, the v1 offset), ``scales`` fp16, ``g_idx`` (core/hfquant/formats.py has the layout).

One group size for the whole model (GPTQ v1 has a single ``group_size``; transformers refuses
compressed-tensors groups that give layers of different widths different sizes): the largest of 128, 64, 32
that divides every linear's input width (the demo model's 576-wide rows take 64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantpress.core.hfquant.fp8 import ct_version, targets
from quantpress.core.hfquant.plan import Scheme
from quantpress.core.hfquant.safetensors_out import Entry

FORMATS = ("compressed-tensors", "gptq")
GROUP_SIZES = (128, 64, 32)


def uniform_group_size(widths: Sequence[int], requested: int = 128) -> int | None:
    """The largest allowed group size <= ``requested`` dividing every input width (None: none does)."""
    for gs in GROUP_SIZES:
        if gs <= requested and all(w % gs == 0 for w in widths):
            return gs
    return None


def _ct_entries(group_size: int) -> Any:
    def entries(module: str, shape: tuple[int, int], dtype: str) -> tuple[Entry, ...] | None:
        n, k = shape
        if k % group_size or k % 8:
            return None
        return (Entry(f"{module}.weight_packed", "I32", (n, k // 8)),
                Entry(f"{module}.weight_scale", "F16", (n, k // group_size)),
                Entry(f"{module}.weight_shape", "I32", (2,)))
    return entries


def _v1_entries(group_size: int) -> Any:
    def entries(module: str, shape: tuple[int, int], dtype: str) -> tuple[Entry, ...] | None:
        n, k = shape
        if k % group_size or n % 8 or k % 8:
            return None
        g = k // group_size
        return (Entry(f"{module}.qweight", "I32", (k // 8, n)), Entry(f"{module}.qzeros", "I32", (g, n // 8)),
                Entry(f"{module}.scales", "F16", (g, n)), Entry(f"{module}.g_idx", "I32", (k,)))
    return entries


def _ct_config(group_size: int, act_order: str) -> Any:
    def config(modules: Sequence[str]) -> dict[str, Any]:
        weights = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": group_size,
                   "dynamic": False, "actorder": None if act_order == "off" else act_order, "observer": "minmax",
                   "observer_kwargs": {}, "block_structure": None}
        return {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
                "config_groups": {"group_0": {"targets": targets(modules), "weights": weights,
                                              "input_activations": None, "output_activations": None}},
                "ignore": ["lm_head"], "kv_cache_scheme": None, "global_compression_ratio": None,
                "version": ct_version()}
    return config


def _v1_config(group_size: int, act_order: str) -> Any:
    def config(modules: Sequence[str]) -> dict[str, Any]:
        # desc_act false: with act-order "weight" only the processing order changed; the groups and g_idx
        # stay contiguous, which is what a reader with desc_act false expects.
        return {"quant_method": "gptq", "bits": 4, "group_size": group_size, "sym": True, "desc_act": False,
                "static_groups": act_order == "weight", "true_sequential": False, "damp_percent": 0.01,
                "checkpoint_format": "gptq", "lm_head": False, "quantizer": ["quantpress"]}
    return config


def gptq_scheme(fmt: str, group_size: int, act_order: str = "off") -> Scheme:
    """The Scheme of GPTQ output ``fmt`` ("compressed-tensors" or "gptq") at ``group_size``."""
    if fmt == "compressed-tensors":
        return Scheme("GPTQ_INT4", _ct_entries(group_size), _ct_config(group_size, act_order))
    if fmt == "gptq":
        # v1 readers (GPTQModel, vLLM's gptq kernels) run fp16 activations
        return Scheme("GPTQ_INT4", _v1_entries(group_size), _v1_config(group_size, act_order), torch_dtype="float16")
    raise ValueError(f"unknown GPTQ format '{fmt}'; use one of {', '.join(FORMATS)}")


def pack(fmt: str, q: Any, scale: Any) -> dict[str, Any]:
    """Stored tensors (suffix -> tensor) of one linear from q (N, K) 0..15 and scale (N, G)."""
    import torch
    from quantpress.core.awq.quantizer import _pack_last
    from quantpress.core.hfquant.formats import pack_gptq

    if fmt == "gptq":
        return pack_gptq(q, scale, torch.full_like(scale, 8.0))
    n, k = q.shape
    return {"weight_packed": _pack_last(q), "weight_scale": scale.to(torch.float16).contiguous(),
            "weight_shape": torch.tensor([n, k], dtype=torch.int32)}


def model_group_size(model_dir: Any, requested: int = 128) -> int:
    """The uniform group size for the linears of a safetensors folder (InvalidInput when none fits)."""
    from pathlib import Path

    from quantpress.core.errors import InvalidInput
    from quantpress.core.gguf.source import list_hf_tensors
    from quantpress.core.hfquant.plan import is_layer_linear

    widths = sorted({int(t.shape[1]) for t in list_hf_tensors(Path(model_dir)) if is_layer_linear(t.name, t.shape)})
    gs = uniform_group_size(widths, requested)
    if gs is None:
        raise InvalidInput(f"{Path(model_dir).name}: no group size of {', '.join(map(str, GROUP_SIZES))} divides "
                           f"every linear input width ({', '.join(map(str, widths))}); GPTQ needs one that does")
    return gs
