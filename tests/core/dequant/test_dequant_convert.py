"""Quantized checkpoints converted end to end (issue 16, "quantized sources"): a tiny random llama
quantized to FP8 blocks, MXFP4, compressed-tensors int4 and GPTQ v1 (plus compressed-tensors FP8 and AWQ
GEMM) converts to an F32 GGUF whose log-probabilities llama.cpp computes within 0.01 of transformers on
the same checkpoint, or, where transformers cannot load the format on this machine (MXFP4 on a dense
llama, GPTQ and AWQ without their kernel packages), on the float32 checkpoint holding the values the
quantized one stands for, decoded by an independent reader (tests/quantized_models.py)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import quantized_models as qm
import torch
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.source import open_source
from tiny_models import VOCAB_SIZE, llama_logprobs

FAST_GPTQ = dict(samples=4, seqlen=64, batch_rows=2, device="cpu")


def _transformers_logprobs(folder: Path, ids: list[int], **kw: Any) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():  # the checkpoint's quantization_config wins over our loading attributes
        warnings.filterwarnings("ignore", "You passed `quantization_config`", UserWarning)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1).numpy()


def _fp8_block(src: Path, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    from transformers import FineGrainedFP8Config

    folder = qm.fp8_block(src, root / "fp8-block")
    return folder, folder, {"quantization_config": FineGrainedFP8Config(weight_block_size=(128, 128), dequantize=True)}


def _mxfp4(src: Path, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    folder = qm.mxfp4(src, root / "mxfp4")
    ref = qm.dense_equivalent(folder, root / "mxfp4-dense",
                              lambda t: qm.decode_mxfp4_with_transformers(t["weight_blocks"], t["weight_scales"]))
    return folder, ref, {}


def _ct_int4(src: Path, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    from quantpress.core.hfquant.gptq_run import GptqSettings, gptq_convert
    from transformers import CompressedTensorsConfig

    gptq_convert(src, root / "ct-int4", settings=GptqSettings(**FAST_GPTQ))  # type: ignore[arg-type]
    return root / "ct-int4", root / "ct-int4", {"quantization_config": CompressedTensorsConfig(dequantize=True)}


def _gptq_v1(src: Path, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    from quantpress.core.hfquant.gptq_run import GptqSettings, gptq_convert

    gptq_convert(src, root / "gptq", settings=GptqSettings(format="gptq", **FAST_GPTQ))  # type: ignore[arg-type]
    return root / "gptq", qm.dense_equivalent(root / "gptq", root / "gptq-dense", qm.decode_gptq), {}


def _ct_fp8(src: Path, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    from quantpress.core.hfquant import weights_only
    from quantpress.core.hfquant.write import convert_weights_only
    from transformers import CompressedTensorsConfig

    scheme, quantizer = weights_only("fp8", src)
    convert_weights_only(src, root / "ct-fp8", scheme, quantizer)
    return root / "ct-fp8", root / "ct-fp8", {"quantization_config": CompressedTensorsConfig(dequantize=True)}


def _awq(src: Path, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    from quantpress.core.awq.quantizer import dequantize, unpack_autoawq

    folder = qm.awq_gemm(src, root / "awq")
    return folder, qm.dense_equivalent(folder, root / "awq-dense", lambda t: dequantize(*unpack_autoawq(t), 128)), {}


# kind -> (quantized folder, the folder transformers computes the reference on, its loading arguments)
KINDS: dict[str, Callable[[Path, Path], tuple[Path, Path, dict[str, Any]]]] = {
    "fp8-block": _fp8_block, "mxfp4": _mxfp4, "ct-int4": _ct_int4, "gptq-v1": _gptq_v1, "ct-fp8": _ct_fp8,
    "awq-gemm": _awq}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_f32_from_quantized_source_matches_transformers(kind: str, tiny_llama: Path, tmp_path: Path) -> None:
    folder, ref, load_kw = KINDS[kind](tiny_llama, tmp_path)
    model = open_source(folder)
    plan = plan_conversion(model, ["F32", "Q4_K_M"], tmp_path / "out")
    assert any("already quantized" in w and "quality cannot improve" in w for w in plan.warnings), plan.warnings
    (tmp_path / "out").mkdir()
    f32, q4 = (Path(r.output) for r in convert(plan))
    assert [f32.stat().st_size, q4.stat().st_size] == [o.file_bytes for o in plan.outputs]
    ids = [int(i) for i in np.random.default_rng(1).integers(3, VOCAB_SIZE, 64)]
    diff = np.abs(llama_logprobs(f32, ids) - _transformers_logprobs(ref, ids, **load_kw)).max()
    print(f"{kind}: max |d log p| over 64 tokens = {diff:.2e}")
    assert diff < 0.01, f"{kind}: max |Δ log p| = {diff}"
    assert np.isfinite(llama_logprobs(q4, ids)).all()


def test_description_and_estimate_of_a_quantized_folder(tiny_llama: Path, tmp_path: Path) -> None:
    """The model is described as the float model (names, shapes, parameters) with the checkpoint's real size."""
    from quantpress.core.estimate import estimate
    from quantpress.core.hardware import detect_hardware

    src = tiny_llama
    folder = qm.fp8_block(src, tmp_path / "fp8")
    model, float_model = open_source(folder), open_source(src)
    data_bytes = sum(f.stat().st_size - 8 - int.from_bytes(f.read_bytes()[:8], "little")
                     for f in folder.glob("*.safetensors"))
    assert model.weight_bytes == data_bytes < float_model.weight_bytes
    assert model.n_params == float_model.n_params and model.dtype == "F8_E4M3"
    assert {t.name: t.shape for t in model.tensors} == {t.name: t.shape for t in float_model.tensors}
    assert {t.dtype for t in model.tensors if ".layers." in t.name and "proj" in t.name} == {"F8_E4M3"}
    est = estimate(model, detect_hardware(), formats=["Q4_K_M"])
    ref = estimate(float_model, detect_hardware(), formats=["Q4_K_M"])
    assert est.model.params == ref.model.params
    assert any("already quantized (F8_E4M3)" in w for w in est.warnings)
    assert not any("already quantized" in w for w in ref.warnings)
    assert est.formats[0].weights_bytes == ref.formats[0].weights_bytes  # planned from the dequantized shapes


def test_calibration_text_refused_for_quantized_source(tiny_llama: Path, tmp_path: Path) -> None:
    from quantpress.core.errors import InvalidInput

    folder = qm.fp8_block(tiny_llama, tmp_path / "fp8")
    with pytest.raises(InvalidInput, match="calibration text is not supported for an already quantized source"):
        plan_conversion(open_source(folder), ["Q4_K_M"], tmp_path, calibration="default")


def test_fp8_config_survives_plan_save_and_replay(tiny_llama: Path, tmp_path: Path) -> None:
    from quantpress.core.gguf.plan import ConversionPlan

    folder = qm.fp8_block(tiny_llama, tmp_path / "fp8")
    plan = plan_conversion(open_source(folder), ["Q8_0"], tmp_path / "a.gguf")
    plan.save(tmp_path / "plan.json")
    again = ConversionPlan.load(tmp_path / "plan.json")
    (result,) = convert(again)
    assert Path(result.output).stat().st_size == plan.outputs[0].file_bytes
    assert json.loads((tmp_path / "a.gguf.json").read_text())["result"]["warnings"]


def _decode_fp8_block(t: dict[str, Any]) -> Any:
    n, k = t["weight"].shape
    scale = t["weight_scale_inv"].repeat_interleave(128, 0).repeat_interleave(128, 1)[:n, :k]
    return t["weight"].float() * scale


@pytest.mark.slow
def test_fp8_experts_stack_like_the_float_checkpoint(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """DeepSeek/Qwen-MoE FP8 releases store every expert's projections with their own block scales: the
    stacked ffn_*_exps tensors of the F32 GGUF equal those converted from the decoded float checkpoint."""
    from quantpress.core.gguf.reader import open_gguf
    from tiny_models import tiny_model

    src = tiny_model("qwen3moe", tmp_path_factory.mktemp("dequant-moe"))
    folder = qm.fp8_block(src, tmp_path / "fp8")
    dense = qm.dense_equivalent(folder, tmp_path / "dense", _decode_fp8_block)
    paths = []
    for f in (folder, dense):
        plan = plan_conversion(open_source(f), ["F32"], tmp_path / f"{f.name}.gguf")
        (result,) = convert(plan)
        paths.append(Path(result.output))
    with open_gguf(paths[0]) as a, open_gguf(paths[1]) as b:
        names = [t.name for t in a.tensors]
        assert names == [t.name for t in b.tensors] and any(n.endswith("ffn_gate_exps.weight") for n in names)
        for name in names:
            np.testing.assert_array_equal(a.dequantize(name), b.dequantize(name), err_msg=name)
