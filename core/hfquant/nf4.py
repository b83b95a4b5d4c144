"""NF4 (QLoRA's NormalFloat-4) in bitsandbytes' 4-bit layout with double quantization, as transformers saves
a model loaded with ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
bnb_4bit_use_double_quant=True)``.

Per linear weight W (out, in), flattened row-major into n = out·in values, in blocks of 64:
- ``weight`` uint8 (n/2, 1): the 4-bit indices into the 16 NF4 levels, two per byte, first value in the
  high nibble;
- ``weight.quant_map`` float32 (16,): the NF4 levels (value = level · the block's absmax);
- ``weight.absmax`` uint8 (n/64,): the blocks' absmax, double-quantized: (absmax - offset) in blocks of 256
  to 8-bit indices into ``weight.nested_quant_map`` float32 (256,) (bitsandbytes' dynamic map), times
  ``weight.nested_absmax`` float32 (one per 256 blocks), plus the offset (the mean absmax);
- ``weight.quant_state.bitsandbytes__nf4`` uint8: the JSON {quant_type, blocksize, dtype, shape,
  nested_blocksize, nested_offset, nested_dtype}. Its length would depend on how many digits the offset
  prints with, so quantpress pads it with spaces (valid JSON whitespace) to STATE_BYTES: every file size is
  then known before any weight is read.

The quantization itself is bitsandbytes' (``bitsandbytes.functional.quantize_4bit``), an optional
dependency (``pip install 'quantpress[nf4]'``); reading a folder back for chat/eval (``dequantize_state``)
needs only torch: the maps travel in the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from quantpress.core.errors import InvalidInput
from quantpress.core.hfquant.plan import Scheme
from quantpress.core.hfquant.safetensors_out import Entry

FORMAT = "NF4_DQ"
BLOCK = 64
NESTED_BLOCK = 256
STATE_BYTES = 256
STATE_KEY = "quant_state.bitsandbytes__nf4"
_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def _entries(module: str, shape: tuple[int, int], dtype: str) -> tuple[Entry, ...] | None:
    n = shape[0] * shape[1]
    if n % BLOCK:
        return None
    blocks = n // BLOCK
    w = f"{module}.weight"
    return (Entry(w, "U8", (n // 2, 1)), Entry(f"{w}.absmax", "U8", (blocks,)),
            Entry(f"{w}.nested_absmax", "F32", (math.ceil(blocks / NESTED_BLOCK),)),
            Entry(f"{w}.nested_quant_map", "F32", (256,)), Entry(f"{w}.quant_map", "F32", (16,)),
            Entry(f"{w}.{STATE_KEY}", "U8", (STATE_BYTES,)))


def _bnb() -> Any:
    try:
        import bitsandbytes.functional as bnb_functional
    except ImportError:
        raise InvalidInput("NF4 needs the bitsandbytes package, which is not installed: "
                           "pip install 'quantpress[nf4]' (or bitsandbytes)") from None
    return bnb_functional


def quantize_nf4(w: Any) -> dict[str, Any]:
    """The stored tensors of one linear (suffixes after the module name) from its float weight ``w``."""
    import torch

    F = _bnb()
    q, state = F.quantize_4bit(w.contiguous(), blocksize=BLOCK, compress_statistics=True, quant_type="nf4")
    packed = state.as_dict(packed=True)
    raw = bytes(packed.pop(f"{STATE_KEY}").numpy().tobytes())
    if len(raw) > STATE_BYTES:
        raise RuntimeError(f"bitsandbytes quant_state is {len(raw)} bytes, more than the {STATE_BYTES} planned")
    padded = torch.frombuffer(bytearray(raw + b" " * (STATE_BYTES - len(raw))), dtype=torch.uint8).clone()
    out = {"weight": q, f"weight.{STATE_KEY}": padded}
    out.update({f"weight.{k}": v.contiguous() for k, v in packed.items()})
    return out


def dequantize_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each NF4 linear's tensors replaced by its float32 ``weight`` (the layout above)."""
    import torch

    for key in [k for k in state if k.endswith("." + STATE_KEY)]:
        w = key[: -len("." + STATE_KEY)]
        meta = json.loads(bytes(state.pop(key).numpy().tobytes()).decode())
        n_blocks = state[f"{w}.absmax"].numel()
        nested = state.pop(f"{w}.nested_absmax").float().repeat_interleave(int(meta["nested_blocksize"]))[:n_blocks]
        absmax = state.pop(f"{w}.nested_quant_map").float()[state.pop(f"{w}.absmax").long()] * nested
        absmax = absmax + float(meta["nested_offset"])
        packed = state[w].reshape(-1)
        idx = torch.stack([packed >> 4, packed & 0xF], dim=-1).reshape(-1).long()
        shape = tuple(int(d) for d in meta["shape"])
        n = math.prod(shape)
        values = state.pop(f"{w}.quant_map").float()[idx[:n]] * absmax.repeat_interleave(int(meta["blocksize"]))[:n]
        state[w] = values.reshape(shape)
    return state


def nf4_config(source_dtype: str) -> Any:
    def config(modules: Sequence[str]) -> dict[str, Any]:
        return {"quant_method": "bitsandbytes", "_load_in_4bit": True, "_load_in_8bit": False,
                "load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": source_dtype,
                "bnb_4bit_quant_storage": "uint8", "llm_int8_enable_fp32_cpu_offload": False,
                "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None, "llm_int8_threshold": 6.0}
    return config


def nf4_scheme(source_dtype: str = "bfloat16") -> Scheme:
    return Scheme(FORMAT, _entries, nf4_config(source_dtype))


NF4_SCHEME = nf4_scheme()
