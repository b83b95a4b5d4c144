"""Quantized copies of a tiny float checkpoint, one per format core/dequant reads, for tests.

Each writes a real folder: the source's config (plus its ``quantization_config``) and tokenizer files, and
one ``model.safetensors`` in which every decoder-layer linear is replaced by its quantized parts:

    fp8_block(src, out)        quant_method fp8, F8_E4M3 weight + F32 weight_scale_inv per 128x128 block
    mxfp4(src, out)            quant_method mxfp4, <linear>.weight_blocks / .weight_scales (OCP MX, E8M0)
    awq_gemm(src, out)         quant_method awq, AutoAWQ GEMM (core/awq's quantizer and packing)
quantpress's own writers make the others (core/hfquant: FP8 compressed-tensors, GPTQ v1 and
compressed-tensors int4). ``dense_equivalent`` writes the float32 checkpoint holding exactly the values a
quantized one stands for, decoded by an independent reader (transformers' own MXFP4 decoder, or the
decoders below written from the formats' public descriptions), for formats transformers cannot load here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# (float weight (N, K)) -> stored tensors of that linear by suffix after the module name
Quantizer = Callable[[Any], dict[str, Any]]
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _is_linear(name: str) -> bool:
    return ".layers." in name and name.endswith(tuple(f"{m}.weight" for m in _LINEARS))


def write_quantized(src: Path, out: Path, quantizer: Quantizer, quantization_config: dict[str, Any]) -> Path:
    """Copy ``src`` to ``out`` with every decoder-layer linear stored as ``quantizer`` makes it."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors" and f.name != "model.safetensors.index.json":
            shutil.copy(f, out / f.name)
    state: dict[str, Any] = {}
    for f in sorted(src.glob("*.safetensors")):
        state.update(load_file(str(f)))
    stored: dict[str, Any] = {}
    for name, w in state.items():
        if _is_linear(name):
            module = name.removesuffix(".weight")
            stored.update({f"{module}.{k}": v.contiguous() for k, v in quantizer(w).items()})
        else:
            stored[name] = w
    save_file(stored, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = quantization_config
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


# ------------------------------------------------------------------------------------------ FP8


def quantize_fp8_block(w: Any, block: tuple[int, int] = (128, 128)) -> dict[str, Any]:
    """DeepSeek-V3 style: e4m3 weight, one float32 scale (amax / 448) per block, stored as weight_scale_inv."""
    import torch

    n, k = w.shape
    bn, bk = block
    sn, sk = -(-n // bn), -(-k // bk)
    padded = torch.zeros(sn * bn, sk * bk)
    padded[:n, :k] = w.float()
    amax = padded.reshape(sn, bn, sk, bk).abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
    full = scale.repeat_interleave(bn, 0).repeat_interleave(bk, 1)[:n, :k]
    q = (w.float() / full).clamp(-448, 448).to(torch.float8_e4m3fn)
    return {"weight": q, "weight_scale_inv": scale}


def fp8_block(src: Path, out: Path) -> Path:
    qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    return write_quantized(src, out, quantize_fp8_block, qc)


# ------------------------------------------------------------------------------------------ MXFP4

_FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def quantize_mxfp4(w: Any) -> dict[str, Any]:
    """OCP MX: per 32 values a shared exponent floor(log2(amax)) - 2 (FP4's largest value is 1.5 * 2**2),
    each value rounded to the nearest e2m1 magnitude (clamped at 6), two codes per byte, low nibble first."""
    import torch

    x = w.float().numpy().reshape(w.shape[0], -1, 32)
    amax = np.abs(x).max(axis=-1)
    exp = np.where(amax > 0, np.floor(np.log2(np.maximum(amax, 1e-30))) - 2, -127).astype(np.int64)
    scaled = x / np.exp2(exp)[..., None]
    code = np.abs(np.abs(scaled)[..., None] - _FP4).argmin(axis=-1) + 8 * (scaled < 0)
    code = code.astype(np.uint8)
    blocks = code[..., 0::2] | (code[..., 1::2] << 4)
    return {"weight_blocks": torch.from_numpy(np.ascontiguousarray(blocks)),
            "weight_scales": torch.from_numpy((exp + 127).astype(np.uint8))}


def mxfp4(src: Path, out: Path) -> Path:
    return write_quantized(src, out, quantize_mxfp4, {"quant_method": "mxfp4"})


def decode_mxfp4_with_transformers(blocks: Any, scales: Any) -> Any:
    """(N, K) float32 from one linear's MXFP4 parts, by transformers' gpt-oss decoder (which takes stacked
    experts (E, N, G, 16) and returns them transposed, (E, K, N))."""
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    out = convert_moe_packed_tensors(blocks[None], scales[None], dtype=torch.float32)
    return out[0].T.contiguous()


# ------------------------------------------------------------------------------------------ GPTQ / AWQ


def decode_gptq(t: dict[str, Any], bits: int = 4, v2: bool = False) -> Any:
    """(N, K) float32 from GPTQ tensors, decoded from the format's public description (AutoGPTQ's QuantLinear):
    qweight int32 (K*bits/32, N), fields along K (bits j*bits.. = row per_word*i + j); qzeros int32
    (G, N*bits/32) along N, storing zero - 1 in v1; scales (G, N); g_idx (K,):
    w[n, k] = (q[k, n] - zero[g_idx[k], n]) * scales[g_idx[k], n]."""
    import torch

    per_word, mask = 32 // bits, (1 << bits) - 1
    shifts = np.arange(per_word, dtype=np.uint32) * bits
    qw = t["qweight"].numpy().view(np.uint32)
    q = ((qw[:, None, :] >> shifts[None, :, None]) & mask).reshape(-1, qw.shape[1])  # (K, N)
    qz = t["qzeros"].numpy().view(np.uint32)
    z = ((qz[:, :, None] >> shifts[None, None, :]) & mask).reshape(qz.shape[0], -1) + (0 if v2 else 1)
    g_idx = t["g_idx"].numpy().astype(np.int64)
    scales = t["scales"].float().numpy()
    w = (q.astype(np.float32) - z[g_idx].astype(np.float32)) * scales[g_idx]
    return torch.from_numpy(np.ascontiguousarray(w.T))


def quantize_awq_gemm(w: Any, group_size: int = 128) -> dict[str, Any]:
    from quantpress.core.awq.quantizer import pack_autoawq, quantize

    q, scale, zero = quantize(w.float(), group_size)
    return pack_autoawq(q, scale, zero)


def awq_gemm(src: Path, out: Path) -> Path:
    qc = {"quant_method": "awq", "zero_point": True, "group_size": 128, "bits": 4, "version": "gemm"}
    return write_quantized(src, out, quantize_awq_gemm, qc)


# ------------------------------------------------------------------------------------------ references


def dense_equivalent(quantized: Path, out: Path, decode: Callable[[dict[str, Any]], Any]) -> Path:
    """A float32 copy of ``quantized`` (no quantization_config) whose linears hold ``decode``'s values of
    each linear's stored parts ({suffix: tensor})."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    for f in quantized.iterdir():
        if f.suffix != ".safetensors" and f.name != "model.safetensors.index.json":
            shutil.copy(f, out / f.name)
    state: dict[str, Any] = {}
    for f in sorted(quantized.glob("*.safetensors")):
        state.update(load_file(str(f)))
    modules = sorted({k.rsplit(".", 1)[0] for k in state if ".layers." in k and k.rsplit(".", 1)[0].endswith(_LINEARS)})
    dense = {k: v.float() for k, v in state.items() if k.rsplit(".", 1)[0] not in modules}
    for m in modules:
        dense[f"{m}.weight"] = decode({k.removeprefix(m + "."): v for k, v in state.items() if k.startswith(m + ".")})
    save_file(dense, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config.pop("quantization_config", None)
    config["torch_dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
