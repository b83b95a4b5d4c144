"""Quantized source checkpoints: gpt-oss's MXFP4 experts (``*_blocks``/``*_scales``) and DeepSeek's FP8
128x128 block-scaled weights (``weight_scale_inv``), both read by core/dequant. MXFP4 decoding is checked
against a bit-by-bit reading of the spec (FP8's tables and edge blocks: tests/core/dequant); whole conversions against llama.cpp's own converter on the same checkpoint
(tests/llama_reference.py), and gpt-oss's MXFP4_MOE mix against llama-quantize's rules."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from llama_reference import reference_gguf
from quantpress.core.dequant import mxfp4
from quantpress.core.dequant.base import Part, QuantTensor
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import open_source


def _ocp_e2m1(code: int) -> float:
    """OCP MX v1.0 E2M1 by its bit fields: sign, 2 exponent bits (bias 1), 1 mantissa bit."""
    sign = -1.0 if code & 0b1000 else 1.0
    exp, man = (code >> 1) & 0b11, code & 1
    return sign * (man / 2 if exp == 0 else 2.0 ** (exp - 1) * (1 + man / 2))


def test_mxfp4_decoding_follows_the_ocp_spec_and_ggml_layout() -> None:
    import gguf

    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (2, 3, 5, 16), dtype=np.uint8)  # 2 experts of 3 rows x 5 blocks
    scales = rng.integers(110, 140, (2, 3, 5), dtype=np.uint8)
    want = np.empty((2, 3, 5, 32), dtype=np.float32)
    for idx in np.ndindex(2, 3, 5):
        for i in range(16):  # byte i: element 2i in the low nibble, 2i+1 in the high one
            for j, code in ((2 * i, blocks[idx][i] & 0xF), (2 * i + 1, blocks[idx][i] >> 4)):
                want[idx][j] = _ocp_e2m1(int(code)) * 2.0 ** (int(scales[idx]) - 127)
    stored = {"w_blocks": blocks, "w_scales": scales}
    parts = tuple((role, Part(f"w_{role}", "m.safetensors", "U8", stored[f"w_{role}"].shape, stored[f"w_{role}"].size))
                  for role in ("blocks", "scales"))
    qt = QuantTensor("w", (2, 3, 160), mxfp4.LABEL, parts)

    def read(part: Part, first: int, stop: int, lead: int) -> np.ndarray:  # the RowReader on arrays
        x = stored[part.name]
        return x.reshape(-1, *x.shape[lead:])[first:stop]

    got = mxfp4.Mxfp4().open(qt, read)(0, 6)
    assert np.array_equal(got, want.reshape(6, 160))
    # ggml blocks of rows 1::2 of expert 1 hold the same values (gguf-py's MXFP4 dequantizer reads them)
    ggml = mxfp4.ggml_rows(qt, read, 1, 1, 2)
    assert ggml.shape == (1, 5 * 17)
    back = gguf.quants.dequantize(ggml, gguf.GGMLQuantizationType.MXFP4).reshape(1, 160)
    assert np.array_equal(back, want[1, 1::2].reshape(1, 160))


def _ggml_to_ocp(ggml: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml MXFP4 bytes [..., n * 17] -> checkpoint (blocks [..., n, 16], scales [..., n]): core/dequant/mxfp4.to_ggml inverted."""
    b = ggml.reshape(*ggml.shape[:-1], -1, 17)
    qs = b[..., 1:]
    codes = np.concatenate([qs & 0xF, qs >> 4], axis=-1)  # element order 0..31
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8), b[..., 0].copy()


def _mxfp4_checkpoint(folder: Path, out: Path) -> Path:
    """The tiny gpt-oss saved as the releases are: experts as MXFP4 blocks/scales, rows = outputs."""
    import gguf
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(folder, out)
    path = out / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    for name in [k for k in state if k.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        w = state.pop(name).float().transpose(1, 2).contiguous().numpy()  # [E, out, in]
        q = gguf.quants.quantize(w.reshape(-1, w.shape[-1]), gguf.GGMLQuantizationType.MXFP4)
        blocks, scales = _ggml_to_ocp(q.reshape(*w.shape[:2], -1))
        state[name + "_blocks"], state[name + "_scales"] = torch.from_numpy(blocks), torch.from_numpy(scales)
    save_file(state, str(path), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn",
                                                                                     "model.layers.*.mlp.router",
                                                                                     "model.embed_tokens", "lm_head"]}
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.slow
def test_gptoss_mxfp4_source_kept_as_mxfp4_and_dequantized(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """MXFP4_MOE writes the checkpoint's expert blocks unchanged (the bytes llama.cpp's converter writes);
    F32 holds their exact values; the files load."""
    import gguf
    from llama_cpp import Llama

    folder = _mxfp4_checkpoint(tiny("gptoss"), tmp_path / "mxfp4")
    plan = plan_conversion(open_source(folder), ["MXFP4_MOE", "F32", "Q4_K_M"], tmp_path)
    assert plan.outputs[0].tensor_types["blk.0.ffn_gate_exps.weight"] == "MXFP4"
    assert plan.outputs[0].tensor_types["blk.0.attn_q.weight"] == "Q8_0"
    assert plan.outputs[0].tensor_types["output.weight"] == "Q8_0"
    ours = [Path(r.output) for r in convert(plan)]
    ref = reference_gguf(folder, tmp_path / "ref.gguf")  # keeps the experts MXFP4, the rest F32
    with open_gguf(ref) as r, open_gguf(ours[0]) as q, open_gguf(ours[1]) as f:
        assert {t.name: t.shape for t in q.tensors} == {t.name: t.shape for t in r.tensors}
        experts = [t.name for t in r.tensors if "_exps.weight" in t.name]
        assert len(experts) == 6
        for name in experts:
            assert r.tensor(name).ggml_type == q.tensor(name).ggml_type == "MXFP4"
            assert np.array_equal(np.asarray(q.raw(name)), np.asarray(r.raw(name))), name
            values = gguf.quants.dequantize(np.asarray(r.raw(name)), gguf.GGMLQuantizationType.MXFP4)
            assert np.array_equal(np.asarray(f.raw(name)).reshape(values.shape), values), name
    for path in ours:
        Llama(str(path), n_ctx=64, verbose=False, n_threads=2).close()


def _fp8_checkpoint(folder: Path, out: Path, block: int = 128) -> Path:
    """The tiny DeepSeek-V3 saved as the releases are: linear weights FP8 E4M3 with one float32 scale
    per 128 x 128 block (``weight_scale_inv``); embeddings, norms, routers and lm_head stay bf16."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(folder, out)
    path = out / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    for name in [k for k, v in state.items() if v.ndim == 2 and k.endswith("proj.weight") or "_proj_with_mqa" in k]:
        w = state[name].float()
        rows, cols = -(-w.shape[0] // block), -(-w.shape[1] // block)
        padded = torch.zeros(rows * block, cols * block)
        padded[: w.shape[0], : w.shape[1]] = w
        amax = padded.reshape(rows, block, cols, block).abs().amax(dim=(1, 3)).clamp(min=1e-12)
        scale = amax / 448.0  # E4M3's largest finite value
        q = (padded.reshape(rows, block, cols, block) / scale[:, None, :, None]).reshape(padded.shape)
        state[name] = q[: w.shape[0], : w.shape[1]].to(torch.float8_e4m3fn).contiguous()
        state[name + "_scale_inv"] = scale.float().contiguous()
    save_file(state, str(path), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": [block, block]}
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.slow
def test_deepseek_fp8_source_dequantized_as_llama_cpp_does(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Block-scaled FP8 weights (partial edge blocks included: rows of 160 and 384) are dequantized on
    the fly to the values llama.cpp's converter computes; the result loads and quantizes."""
    from llama_cpp import Llama

    folder = _fp8_checkpoint(tiny("deepseekv3"), tmp_path / "fp8", block=128)
    plan = plan_conversion(open_source(folder), ["F32", "Q4_K_M"], tmp_path)
    ours = [Path(r.output) for r in convert(plan)]
    ref = reference_gguf(folder, tmp_path / "ref.gguf")
    with open_gguf(ref) as r, open_gguf(ours[0]) as g:
        assert {t.name: t.shape for t in g.tensors} == {t.name: t.shape for t in r.tensors}
        for t in r.tensors:
            assert np.allclose(np.asarray(g.raw(t.name)), np.asarray(r.raw(t.name)), rtol=1e-6, atol=0), t.name
    Llama(str(ours[1]), n_ctx=64, verbose=False, n_threads=2).close()
