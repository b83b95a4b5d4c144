"""NF4 with double quantization in bitsandbytes' layout: quantpress's reader decodes exactly what
bitsandbytes dequantizes, and the folder loads in transformers + bitsandbytes on the CPU with the logits of
quantpress's torch backend, at the planned (and estimated) size. Skipped where bitsandbytes or accelerate
(which transformers' bitsandbytes loader needs) is not installed: both are optional (quantpress[nf4])."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")
pytest.importorskip("accelerate")

from quantpress.core.hfquant.nf4 import STATE_BYTES, dequantize_state, nf4_scheme, quantize_nf4  # noqa: E402
from quantpress.core.hfquant.plan import plan_hf_quant  # noqa: E402
from quantpress.core.hfquant.write import convert_weights_only  # noqa: E402

# bitsandbytes, on import, tries to fetch a CPU kernel from the Hub and says it could not (offline here);
# its quantize/dequantize functions work without it.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_our_decoder_equals_bitsandbytes_dequantize() -> None:
    import bitsandbytes.functional as F

    torch.manual_seed(0)
    w = (torch.randn(96, 320) * torch.linspace(0.01, 2, 96)[:, None]).to(torch.bfloat16)
    stored = quantize_nf4(w)
    assert stored["weight"].shape == (96 * 320 // 2, 1) and stored[f"weight.{'quant_state.bitsandbytes__nf4'}"].numel() == STATE_BYTES
    q, st = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    ref = F.dequantize_4bit(q, st).float()
    ours = dequantize_state({f"m.{k}": v for k, v in stored.items()})["m.weight"]
    assert set(dequantize_state({f"m.{k}": v for k, v in quantize_nf4(w).items()})) == {"m.weight"}
    torch.testing.assert_close(ours, ref, rtol=1e-2, atol=1e-3)  # bitsandbytes returns bf16: its rounding only
    assert float((ours - w.float()).abs().mean()) < 0.1 * float(w.float().abs().mean())


def test_folder_loads_in_transformers_and_bitsandbytes_like_our_backend(tiny: Callable[[str], Path],
                                                                       tmp_path: Path) -> None:
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings, Message, Role
    from quantpress.core.estimate import estimate
    from quantpress.core.gguf.source import open_source
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.memory import RuntimeConfig
    from transformers import AutoModelForCausalLM

    src = tiny("llama")
    out = tmp_path / "nf4"
    scheme = nf4_scheme("bfloat16")
    result = convert_weights_only(src, out, scheme, quantize_nf4)
    assert sum(p.stat().st_size for p in out.glob("*.safetensors")) == result.file_bytes \
        == plan_hf_quant(src, scheme).file_bytes
    (row,) = estimate(open_source(src), detect_hardware(), RuntimeConfig(n_ctx=256), formats=["NF4_DQ"]).formats
    assert row.file_bytes == result.file_bytes and row.file_bytes_exact
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "bitsandbytes" and qc["bnb_4bit_use_double_quant"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(out, device_map="cpu").eval()
    linear = model.model.layers[0].mlp.down_proj
    assert type(linear).__name__ == "Linear4bit" and linear.weight.quant_state.nested  # really bitsandbytes NF4
    ids = torch.randint(0, 300, (1, 32))
    with torch.no_grad():
        ref = model(ids).logits.float()
    backend = AwqBackend(out, ChatSettings())
    torch.testing.assert_close(backend.logits(ids), ref, rtol=2e-2, atol=2e-2)  # bitsandbytes computes in bf16
    reply = backend.generate(backend.encode_chat([Message(Role.USER, "hi")]), ChatSettings(seed=0), 4)
    assert 0 < reply.tokens <= 4
