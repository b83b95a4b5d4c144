"""FP8 W8A8-dynamic (compressed-tensors float-quantized): the bytes compressed-tensors' own quantizer writes,
a folder of exactly the estimated size that transformers + compressed-tensors loads with the logits of
quantpress's torch backend, the CLI, and bad output folders."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from quantpress.core.cli import main
from quantpress.core.errors import InvalidInput
from quantpress.core.hfquant.fp8 import FP8_SCHEME, dequantize_fp8, quantize_fp8
from quantpress.core.hfquant.plan import plan_hf_quant
from quantpress.core.hfquant.write import SIDECAR, convert_weights_only


def test_bytes_equal_compressed_tensors_quantizer() -> None:
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize

    torch.manual_seed(0)
    w = (torch.randn(64, 96) * torch.logspace(-3, 1, 64)[:, None]).to(torch.bfloat16)
    w[3] = 0  # an all-zero row keeps a finite scale
    ours = quantize_fp8(w)
    args = QuantizationArgs(num_bits=8, type="float", strategy="channel", symmetric=True)
    ref = quantize(x=w, scale=ours["weight_scale"], zero_point=None, args=args, dtype=torch.float8_e4m3fn)
    assert ours["weight"].dtype == torch.float8_e4m3fn and ours["weight_scale"].shape == (64, 1)
    assert torch.equal(ours["weight"].view(torch.uint8), ref.view(torch.uint8))
    assert float(ours["weight"].float().abs().amax()) == 448.0  # the row maximum lands on the top of the range
    err = (dequantize_fp8(ours["weight"], ours["weight_scale"]) - w.float()).abs().amax(dim=1)
    assert bool((err <= w.float().abs().amax(dim=1) * 2**-4 + 1e-12).all())  # e4m3: 3 mantissa bits


def _logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    with warnings.catch_warnings():  # the checkpoint's quantization_config wins over our loading attributes
        warnings.filterwarnings("ignore", "You passed `quantization_config`", UserWarning)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                     quantization_config=CompressedTensorsConfig(dequantize=True))
    with torch.no_grad():
        return model.eval()(ids).logits


def test_folder_loads_in_transformers_like_our_backend(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings, Message, Role
    from quantpress.core.estimate import estimate
    from quantpress.core.gguf.source import open_source
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.memory import RuntimeConfig

    src = tiny("llama")
    out = tmp_path / "fp8"
    result = convert_weights_only(src, out, FP8_SCHEME, quantize_fp8)
    shards = sorted(out.glob("*.safetensors"))
    assert sum(p.stat().st_size for p in shards) == result.file_bytes == plan_hf_quant(src, FP8_SCHEME).file_bytes
    (row,) = estimate(open_source(src), detect_hardware(), RuntimeConfig(n_ctx=256), formats=["FP8_E4M3"]).formats
    assert row.file_bytes == result.file_bytes and row.file_bytes_exact
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["format"] == "float-quantized" and qc["config_groups"]["group_0"]["input_activations"]["dynamic"]
    assert result.quantized == 14 and not result.kept  # 2 layers x 7 linears; lm_head stays
    ids = torch.randint(0, 300, (1, 32))
    ref = _logits(out, ids)
    backend = AwqBackend(out, ChatSettings())
    torch.testing.assert_close(backend.logits(ids), ref, rtol=1e-4, atol=1e-4)
    # and it is the quantized model, not the source: the source's logits differ
    assert float((_plain_logits(src, ids) - ref).abs().max()) > 1e-4
    reply = backend.generate(backend.encode_chat([Message(Role.USER, "hi")]), ChatSettings(seed=0), 4)
    assert 0 < reply.tokens <= 4


def _plain_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(ids).logits


def test_cli_json_and_plan(tiny: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny("qwen2")
    assert main(["fp8", str(src), "--plan", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert main(["fp8", str(src), "--out", str(tmp_path / "q"), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["file_bytes"] == planned["file_bytes"] and written["format"] == "FP8_E4M3"
    assert (tmp_path / "q" / SIDECAR).is_file() and (tmp_path / "q" / "tokenizer.json").is_file()


def test_bad_outputs_are_refused_and_leave_nothing(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    src = tiny("llama")
    before = sorted(p.name for p in src.iterdir())
    with pytest.raises(InvalidInput):
        convert_weights_only(src, src, FP8_SCHEME, quantize_fp8)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not written by quantpress"):
        convert_weights_only(src, foreign, FP8_SCHEME, quantize_fp8)

    def boom(w: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        convert_weights_only(src, tmp_path / "new" / "out", FP8_SCHEME, boom)
    assert not (tmp_path / "new").exists()  # no temporary folder, no parent folder left
    assert sorted(p.name for p in src.iterdir()) == before


def test_too_little_disk_is_refused_before_writing(tiny: Callable[[str], Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from quantpress.core import disk
    from quantpress.core.errors import NotEnoughDiskSpace

    monkeypatch.setattr(disk, "free_bytes", lambda _path: 1000)
    with pytest.raises(NotEnoughDiskSpace, match="the quantized folder needs"):
        convert_weights_only(tiny("llama"), tmp_path / "out", FP8_SCHEME, quantize_fp8)
    assert list(tmp_path.iterdir()) == []
