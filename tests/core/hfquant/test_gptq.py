"""GPTQ int4: the algorithm against round-to-nearest on the layer's own objective, both output layouts in
independent readers (transformers + compressed-tensors' decompression; GPTQ v1 dequantized here from
its public layout, not with quantpress's code) with the logits of quantpress's torch backend, exact sizes
(plan = files = estimator), the CLI."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from quantpress.core.cli import main
from quantpress.core.hfquant.gptq import dequantize_sym, gptq, gptq_ref, rtn
from quantpress.core.hfquant.gptq_run import GptqSettings, gptq_convert, plan_gptq

FAST = dict(samples=4, seqlen=64, batch_rows=2, device="cpu")


def _layer_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight (64, 256) and correlated inputs with a few loud channels, like a transformer's."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 256, generator=g) * 0.05
    mix = torch.randn(256, 256, generator=g) / 16
    x = torch.randn(2048, 256, generator=g) @ mix
    x[:, :8] *= 20
    return w, x


def _out_err(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ (wq - w).T) ** 2).mean())


@pytest.mark.parametrize("act_order", ["off", "weight"])
def test_gptq_beats_rounding_on_the_layer_output(act_order: str) -> None:
    w, x = _layer_problem()
    h = 2 * x.T @ x / x.shape[0]
    q, s = gptq(w, h, 128, act_order=act_order)
    qr, sr = rtn(w, 128)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15 and s.shape == (64, 2)
    e_gptq, e_rtn = _out_err(w, dequantize_sym(q, s, 128), x), _out_err(w, dequantize_sym(qr, sr, 128), x)
    assert e_gptq < 0.6 * e_rtn, (e_gptq, e_rtn)


@pytest.mark.parametrize(("width", "group_size", "act_order"), [
    (256, 128, "off"), (576, 64, "off"), (576, 64, "weight"), (384, 32, "off"), (512, 256, "off")])
def test_blocked_gptq_equals_the_column_by_column_reference(width: int, group_size: int, act_order: str) -> None:
    """The lazy-batch loop gives the levels and scales of Algorithm 1 fed column by column (groups wider than
    a block included), and so the same layer-output error."""
    g = torch.Generator().manual_seed(width + group_size)
    w = torch.randn(48, width, generator=g) * 0.05
    x = torch.randn(1024, width, generator=g) @ (torch.randn(width, width, generator=g) / 16)
    x[:, :8] *= 20
    x[:, 9] = 0  # a dead input
    h = 2 * x.T @ x / x.shape[0]
    (q, s), (q_ref, s_ref) = gptq(w, h, group_size, act_order=act_order), gptq_ref(w, h, group_size, act_order=act_order)
    assert torch.equal(s, s_ref)
    assert int((q != q_ref).sum()) <= q.numel() // 10000  # float summation order may flip a tie, nothing more
    errs = [_out_err(w, dequantize_sym(a, b, group_size), x) for a, b in ((q, s), (q_ref, s_ref))]
    assert errs[0] == pytest.approx(errs[1], rel=1e-3)
    assert int(q[:, 9].ne(8).sum()) == 0  # the dead input's weights are zero


def test_identity_hessian_is_plain_rounding() -> None:
    w, _ = _layer_problem(1)
    q, s = gptq(w, torch.eye(256), 64)
    qr, sr = rtn(w, 64)
    assert torch.equal(s, sr) and torch.equal(q, qr)


@pytest.fixture(scope="module")
def folders(tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gptq")
    src = tiny("llama")
    gptq_convert(src, root / "ct", settings=GptqSettings(**FAST))  # type: ignore[arg-type]
    gptq_convert(src, root / "v1", settings=GptqSettings(format="gptq", **FAST))  # type: ignore[arg-type]
    return {"src": src, "ct": root / "ct", "v1": root / "v1"}


def _model_logits(folder: Path, ids: torch.Tensor, weights: dict[str, torch.Tensor] | None = None,
                  **kw: object) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():  # the checkpoint's quantization_config wins over our loading attributes
        warnings.filterwarnings("ignore", "You passed `quantization_config`", UserWarning)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    if weights:
        model.load_state_dict(weights, strict=False)
    with torch.no_grad():
        return model(ids).logits


def test_compressed_tensors_output_in_transformers_equals_our_backend(folders: dict[str, Path]) -> None:
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings, Message, Role
    from transformers import CompressedTensorsConfig

    qc = json.loads((folders["ct"] / "config.json").read_text())["quantization_config"]
    weights = qc["config_groups"]["group_0"]["weights"]
    assert qc["format"] == "pack-quantized" and weights["symmetric"] and weights["group_size"] == 128
    ids = torch.randint(0, 300, (1, 40))
    ref = _model_logits(folders["ct"], ids, quantization_config=CompressedTensorsConfig(dequantize=True))
    backend = AwqBackend(folders["ct"], ChatSettings())
    assert not backend.dense_fallbacks
    torch.testing.assert_close(backend.logits(ids), ref, rtol=1e-2, atol=5e-3)  # fp16 scales: bf16-level tolerance
    reply = backend.generate(backend.encode_chat([Message(Role.USER, "hi")]), ChatSettings(seed=0), 4)
    assert 0 < reply.tokens <= 4


def _v1_dequantized(folder: Path) -> dict[str, torch.Tensor]:
    """Dense weights from a GPTQ v1 folder, decoded from the format's public description (AutoGPTQ's
    QuantLinear): qweight int32 (K/8, N) holding 8 nibbles along K (bits 4j..4j+3 = row 8i + j), qzeros int32
    (G, N/8) holding 8 nibbles along N, stored as zero - 1, scales (G, N), g_idx (K,): w[n, k] =
    (q[k, n] - (z[g_idx[k], n] + 1)) * scales[g_idx[k], n]."""
    from safetensors import safe_open

    state: dict[str, np.ndarray] = {}
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key.endswith((".qweight", ".qzeros", ".scales", ".g_idx")):
                    state[key] = st.get_tensor(key).numpy()
    out = {}
    shifts = np.arange(8, dtype=np.uint32) * 4
    for name in [k[: -len(".qweight")] for k in state if k.endswith(".qweight")]:
        qw = state[f"{name}.qweight"].view(np.uint32)
        q = ((qw[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(-1, qw.shape[1])  # (K, N)
        qz = state[f"{name}.qzeros"].view(np.uint32)
        z = ((qz[:, :, None] >> shifts[None, None, :]) & 0xF).reshape(qz.shape[0], -1) + 1  # (G, N)
        g_idx = state[f"{name}.g_idx"].astype(np.int64)
        scales = state[f"{name}.scales"].astype(np.float32)
        w = (q.astype(np.float32) - z[g_idx].astype(np.float32)) * scales[g_idx]
        out[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w.T))
    return out


def test_gptq_v1_decoded_from_its_layout_equals_our_backend(folders: dict[str, Path]) -> None:
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings

    qc = json.loads((folders["v1"] / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["checkpoint_format"] == "gptq" and qc["bits"] == 4 and qc["sym"]
    dense = _v1_dequantized(folders["v1"])
    assert len(dense) == 14
    ids = torch.randint(0, 300, (1, 40))
    ref = _model_logits(folders["src"], ids, dense)  # the source model with the decoded weights in place
    torch.testing.assert_close(AwqBackend(folders["v1"], ChatSettings()).logits(ids), ref, rtol=1e-4, atol=1e-4)
    # both layouts hold the same numbers: the compressed-tensors folder gives the same logits
    torch.testing.assert_close(AwqBackend(folders["ct"], ChatSettings()).logits(ids), ref, rtol=1e-4, atol=1e-4)


def test_sizes_are_planned_exactly_and_estimated(folders: dict[str, Path]) -> None:
    from quantpress.core.estimate import estimate
    from quantpress.core.gguf.source import open_source
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.memory import RuntimeConfig

    for key, fmt in (("ct", "compressed-tensors"), ("v1", "gptq")):
        plan, gs = plan_gptq(folders["src"], GptqSettings(format=fmt))
        assert gs == 128 and sum(p.stat().st_size for p in folders[key].glob("*.safetensors")) == plan.file_bytes
    (row,) = estimate(open_source(folders["src"]), detect_hardware(), RuntimeConfig(n_ctx=256),
                      formats=["GPTQ_INT4_G128"]).formats
    assert row.file_bytes_exact and row.file_bytes == sum(p.stat().st_size for p in folders["ct"].glob("*.safetensors"))


def test_cli_json_uniform_group_size_for_mixed_widths(tiny: Callable[[str], Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny("smollm")  # 96-wide rows beside 256-wide ones: one group size (32) for every linear
    assert main(["gptq", str(src), "--plan", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["group_size"] == 32
    assert main(["gptq", str(src), "--out", str(tmp_path / "q"), "--samples", "2", "--seqlen", "32",
                 "--device", "cpu", "--act-order", "weight", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file_bytes"] == planned["file_bytes"] and result["format"] == "GPTQ_INT4_G32"
    side = json.loads((tmp_path / "q" / "quantpress_quant.json").read_text())
    assert side["act_order"] == "weight" and side["method"] == "gptq"


def test_rtn_baseline_is_plain_rounding_without_text(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from quantpress.core.hfquant.gptq_export import pack
    from safetensors import safe_open

    src = tiny("llama")
    res = gptq_convert(src, tmp_path / "rtn", settings=GptqSettings(method="rtn", device="cpu"))
    assert res.n_tokens == 0 and res.calibration == "none"
    name = "model.layers.1.mlp.down_proj"
    with safe_open(str(next(src.glob("*.safetensors"))), framework="pt") as f:
        w = f.get_tensor(name + ".weight").float()
    expected = pack("compressed-tensors", *rtn(w, 128))
    shard = next(p for p in (tmp_path / "rtn").glob("*.safetensors") if name + ".weight_packed" in
                 safe_open(str(p), framework="pt").keys())
    with safe_open(str(shard), framework="pt") as f:
        assert torch.equal(f.get_tensor(name + ".weight_packed"), expected["weight_packed"])
        assert torch.equal(f.get_tensor(name + ".weight_scale"), expected["weight_scale"])


def test_both_layouts_chat_and_evaluate_through_the_torch_int4_backend(folders: dict[str, Path]) -> None:
    """The chat session picks the torch int4 backend for a GPTQ folder (no dense fallback) and answers;
    evaluation against the source model gives the same KLD for both layouts (they hold the same numbers)."""
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat import ChatSession, ChatSettings
    from quantpress.core.evaluate.evaluate import evaluate

    klds = []
    for key in ("ct", "v1"):
        session = ChatSession.load(folders[key], ChatSettings(temperature=0.0, seed=1, max_tokens=4, ctx_tokens=128))
        try:
            assert isinstance(session.backend, AwqBackend) and not session.backend.dense_fallbacks
            assert session.send("hi").tokens > 0
        finally:
            session.close()
        res = evaluate(folders[key], folders["src"], max_tokens=128, ctx_tokens=64, save=False)
        assert res.tokens > 0 and res.kld_mean is not None and 0 < res.kld_mean < 1
        klds.append(res.kld_mean)
    assert klds[0] == pytest.approx(klds[1], rel=1e-4)
