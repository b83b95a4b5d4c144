"""core/dequant's readers on real safetensors files, each against an independent decoder: torch's own
float8 types, transformers' MXFP4 decoder, compressed-tensors' unpacking, GPTQ decoded from its public
description, core/awq's AutoAWQ unpacking; row slabs of odd sizes (blocks and packed words cut across);
bad checkpoints refused with the file and tensor named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from quantized_models import decode_gptq, decode_mxfp4_with_transformers, quantize_fp8_block, quantize_mxfp4
from quantpress.core.dequant import dequantized_tensors, quantized_source
from quantpress.core.dequant.packing import FP8_E4M3, FP8_E5M2
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf.source import HFReader, list_hf_tensors


def _folder(tmp_path: Path, tensors: dict[str, torch.Tensor], qc: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    tmp_path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": qc}))
    return tmp_path


def _read(folder: Path, name: str, max_rows: int = 7) -> np.ndarray:
    """The dequantized tensor ``name`` of ``folder``, read through the converter's reader in slabs of
    ``max_rows`` rows (7: slabs cut across scale blocks and packed words)."""
    config = json.loads((folder / "config.json").read_text())
    reader = HFReader(folder, config, None)
    try:
        source = reader.quantized()
        assert source is not None
        shape = source.weights[name].shape
        n_rows = int(np.prod(shape[:-1]))
        slabs = list(source.slabs(name, reader.stored_rows, 0, n_rows, max_rows))
        return np.concatenate(slabs).reshape(shape)
    finally:
        reader.close()


def test_fp8_tables_equal_torch() -> None:
    b = torch.arange(256, dtype=torch.uint8)
    for table, dtype in ((FP8_E4M3, torch.float8_e4m3fn), (FP8_E5M2, torch.float8_e5m2)):
        ref = b.view(dtype).float().numpy()
        np.testing.assert_array_equal(table, ref)  # NaNs in the same places (assert_array_equal treats NaN == NaN)


@pytest.mark.parametrize("shape", [(300, 200), (256, 128)])
def test_fp8_blocks_with_partial_edges(tmp_path: Path, shape: tuple[int, int]) -> None:
    w = torch.randn(*shape) * 0.02
    parts = quantize_fp8_block(w)
    folder = _folder(tmp_path, {"l.weight": parts["weight"], "l.weight_scale_inv": parts["weight_scale_inv"],
                                "l.input_scale": torch.ones(1), "norm.weight": torch.ones(8, dtype=torch.bfloat16)},
                     {"quant_method": "fp8", "weight_block_size": [128, 128]})
    scale = parts["weight_scale_inv"].repeat_interleave(128, 0).repeat_interleave(128, 1)[: shape[0], : shape[1]]
    ref = parts["weight"].float() * scale
    np.testing.assert_array_equal(_read(folder, "l.weight"), ref.numpy())
    listed = {t.name: t for t in dequantized_tensors(json.loads((folder / "config.json").read_text()),
                                                     list_hf_tensors(folder), folder.name)}
    assert set(listed) == {"l.weight", "norm.weight"}  # the scale and the activation scale are parts, not tensors
    assert listed["l.weight"].shape == shape and listed["l.weight"].dtype == "F8_E4M3"
    assert listed["l.weight"].n_bytes == shape[0] * shape[1] + parts["weight_scale_inv"].numel() * 4


@pytest.mark.parametrize("scale_shape", [(), (64, 1)])
def test_fp8_per_tensor_and_per_channel(tmp_path: Path, scale_shape: tuple[int, ...]) -> None:
    q = (torch.randn(64, 96) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    s = (torch.rand(scale_shape, dtype=torch.float32) + 0.01).to(torch.bfloat16)
    folder = _folder(tmp_path, {"l.weight": q, "l.weight_scale": s},
                     {"quant_method": "compressed-tensors", "format": "float-quantized",
                      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}})
    np.testing.assert_array_equal(_read(folder, "l.weight"), (q.float() * s.float()).numpy())


def test_mxfp4_equals_transformers_decoder(tmp_path: Path) -> None:
    w = torch.randn(3, 40, 64) * 0.1  # stacked experts (E, N, K), like gpt-oss
    parts = [quantize_mxfp4(w[e]) for e in range(3)]
    blocks = torch.stack([p["weight_blocks"] for p in parts])
    scales = torch.stack([p["weight_scales"] for p in parts])
    folder = _folder(tmp_path, {"mlp.experts.gate_up_proj_blocks": blocks, "mlp.experts.gate_up_proj_scales": scales},
                     {"quant_method": "mxfp4"})
    ref = torch.stack([decode_mxfp4_with_transformers(blocks[e], scales[e]) for e in range(3)])
    got = _read(folder, "mlp.experts.gate_up_proj")
    assert got.shape == (3, 40, 64)
    np.testing.assert_array_equal(got, ref.numpy())
    assert np.abs(got - w.numpy()).max() <= 0.25 * np.abs(w.numpy()).max()  # and it is w to FP4's precision


@pytest.mark.parametrize("symmetric", [True, False])
def test_compressed_tensors_pack_quantized_equals_its_library(tmp_path: Path, symmetric: bool) -> None:
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from quantpress.core.awq.quantizer import pack_compressed_tensors, quantize
    from quantpress.core.hfquant.gptq import rtn
    from quantpress.core.hfquant.gptq_export import pack

    w = torch.randn(48, 256) * 0.05
    if symmetric:
        q, scale = rtn(w, 64)
        stored = pack("compressed-tensors", q, scale)
    else:
        q, scale, zero = quantize(w, 64)
        stored = pack_compressed_tensors(q, scale, zero, torch.bfloat16)
    folder = _folder(tmp_path, {f"l.{k}": v for k, v in stored.items()},
                     {"quant_method": "compressed-tensors", "format": "pack-quantized",
                      "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "strategy": "group",
                                                          "group_size": 64, "symmetric": symmetric}}}})
    signed = unpack_from_int32(stored["weight_packed"], 4, torch.Size((48, 256))).float()
    if symmetric:
        zp = torch.zeros(48, 4)
    else:
        zp = unpack_from_int32(stored["weight_zero_point"], 4, torch.Size((48, 4)), packed_dim=0).float()
    ref = (signed - zp.repeat_interleave(64, 1)) * stored["weight_scale"].float().repeat_interleave(64, 1)
    np.testing.assert_allclose(_read(folder, "l.weight"), ref.numpy(), rtol=0, atol=0)


def test_compressed_tensors_int8_packed_per_channel_and_plain(tmp_path: Path) -> None:
    """8-bit pack-quantized (channel scales, packed by compressed-tensors itself) and int-quantized int8."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    q = torch.randint(-128, 128, (24, 64), dtype=torch.int8)
    scale = torch.rand(24, 1, dtype=torch.float32).to(torch.bfloat16)
    ref = (q.float() * scale.float()).numpy()
    weights = {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}
    packed = _folder(tmp_path / "packed", {"l.weight_packed": pack_to_int32(q, 8), "l.weight_scale": scale,
                                           "l.weight_shape": torch.tensor([24, 64], dtype=torch.int32)},
                     {"quant_method": "compressed-tensors", "format": "pack-quantized",
                      "config_groups": {"g": {"weights": weights}}})
    np.testing.assert_array_equal(_read(packed, "l.weight"), ref)
    plain = _folder(tmp_path / "plain", {"l.weight": q, "l.weight_scale": scale},
                    {"quant_method": "compressed-tensors", "format": "int-quantized",
                     "config_groups": {"g": {"weights": weights}}})
    np.testing.assert_array_equal(_read(plain, "l.weight"), ref)


@pytest.mark.parametrize(("bits", "v2", "act_order"), [(4, False, False), (4, True, True), (8, False, True),
                                                       (2, True, False)])
def test_gptq_equals_public_decoder(tmp_path: Path, bits: int, v2: bool, act_order: bool) -> None:
    g = torch.Generator().manual_seed(bits)
    n, k, gs = 64, 256, 32
    per_word = 32 // bits
    n_groups = k // gs
    g_idx = torch.arange(k, dtype=torch.int32) // gs
    if act_order:
        g_idx = g_idx[torch.randperm(k, generator=g)]
    t = {"qweight": torch.randint(-2**31, 2**31 - 1, (k // per_word, n), generator=g, dtype=torch.int32),
         "qzeros": torch.randint(-2**31, 2**31 - 1, (n_groups, n // per_word), generator=g, dtype=torch.int32),
         "scales": (torch.rand(n_groups, n, generator=g) * 0.01).half(), "g_idx": g_idx}
    folder = _folder(tmp_path, {f"l.{k_}": v for k_, v in t.items()},
                     {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": act_order,
                      "checkpoint_format": "gptq_v2" if v2 else "gptq"})
    np.testing.assert_allclose(_read(folder, "l.weight", 5), decode_gptq(t, bits, v2).numpy(), rtol=1e-6, atol=0)


def test_awq_gemm_equals_autoawq_unpacking(tmp_path: Path) -> None:
    from quantized_models import quantize_awq_gemm
    from quantpress.core.awq.quantizer import dequantize, unpack_autoawq

    w = torch.randn(40, 256) * 0.05
    stored = quantize_awq_gemm(w, 128)
    folder = _folder(tmp_path, {f"l.{k}": v for k, v in stored.items()},
                     {"quant_method": "awq", "version": "gemm", "bits": 4, "group_size": 128, "zero_point": True})
    q, scale, zero = unpack_autoawq(stored)
    np.testing.assert_array_equal(_read(folder, "l.weight", 3), dequantize(q, scale, zero, 128).numpy())


# ------------------------------------------------------------------------------------- bad checkpoints


def _source(folder: Path, strict: bool = True) -> Any:
    return quantized_source(json.loads((folder / "config.json").read_text()), list_hf_tensors(folder), folder.name,
                            strict=strict)


def test_missing_scale_is_named(tmp_path: Path) -> None:
    from quantpress.core.gguf.source import open_source

    q = torch.zeros(8, 8).to(torch.float8_e4m3fn)
    folder = _folder(tmp_path, {"l.weight": q}, {"quant_method": "fp8", "weight_block_size": [128, 128]})
    with pytest.raises(InvalidModel, match=r"'l\.weight' is quantized but its scale 'l\.weight_scale_inv' is not stored"):
        _source(folder, strict=False)
    with pytest.raises(InvalidModel, match="is not stored in any weight file"):
        open_source(folder)  # the one validation layer every command goes through


def test_block_scale_of_the_wrong_shape(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"l.weight": torch.zeros(300, 200).to(torch.float8_e4m3fn),
                                "l.weight_scale_inv": torch.ones(2, 2)},
                     {"quant_method": "fp8", "weight_block_size": [128, 128]})
    with pytest.raises(InvalidModel, match=r"'l\.weight_scale_inv' is \[2, 2\], but a 128x128-block scale .* needs \[3, 2\]"):
        _source(folder)


def test_unknown_method_refused_for_conversion_only(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"l.weight": torch.zeros(4, 4, dtype=torch.uint8)},
                     {"quant_method": "bitsandbytes", "load_in_4bit": True})
    assert _source(folder, strict=False) is None  # a description (the torch backend runs such folders)
    with pytest.raises(UnsupportedArchitecture, match="quantization method 'bitsandbytes' cannot be read"):
        _source(folder)


def test_stray_integer_tensor_and_empty_quantization(tmp_path: Path) -> None:
    parts = quantize_fp8_block(torch.randn(128, 128))
    folder = _folder(tmp_path / "a", {"l.weight": parts["weight"], "l.weight_scale_inv": parts["weight_scale_inv"],
                                      "other.idx": torch.zeros(4, dtype=torch.int32)},
                     {"quant_method": "fp8", "weight_block_size": [128, 128]})
    with pytest.raises(InvalidModel, match=r"'other\.idx' is I32 but belongs to no FP8 \(128x128 blocks\) weight"):
        _source(folder)
    plain = _folder(tmp_path / "b", {"l.weight": torch.zeros(4, 4)}, {"quant_method": "gptq", "bits": 4})
    with pytest.raises(InvalidModel, match="declares GPTQ 4-bit .* but no quantized weight is stored"):
        _source(plain)


@pytest.mark.parametrize(("qc", "message"), [
    ({"quant_method": "gptq", "bits": 3}, "3-bit GPTQ cannot be read"),
    ({"quant_method": "awq", "version": "gemv"}, "AWQ version 'gemv'"),
    ({"quant_method": "fp8", "weight_block_size": 128}, "'weight_block_size' is 128"),
    ({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
      "config_groups": {"g": {"weights": {"num_bits": 4}}}}, "format 'nvfp4-pack-quantized'"),
])
def test_unreadable_settings_are_named(tmp_path: Path, qc: dict[str, Any], message: str) -> None:
    folder = _folder(tmp_path, {"l.weight": torch.zeros(4, 4)}, qc)
    with pytest.raises((InvalidModel, UnsupportedArchitecture), match=message):
        _source(folder)
