"""The estimator on mixture-of-experts models: total and active parameters, and the "GPU + experts
in RAM" placement (llama.cpp's --n-cpu-moe N) with the smallest N that fits."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from quantpress.core.estimate import estimate
from quantpress.core.gguf import layout
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.hardware import GIB, detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.memory import RuntimeConfig
from tiny_models import tiny_model

CFG = RuntimeConfig(n_ctx=512)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return lambda arch: tiny_model(arch, root)


def _expert_bytes(folder: Path, fmt: str) -> list[int]:
    """Bytes of each layer's ffn_*_exps tensors in ``fmt``, from the converter's plan."""
    plan = plan_conversion(open_model(folder), [fmt], folder.parent / "unused")
    shapes = {t.name: t.shape for t in plan.tensors}
    per_layer = [0] * int(plan.config["num_hidden_layers"])
    for name, ty in plan.outputs[0].tensor_types.items():
        if "_exps." in name:
            per_layer[int(name.split(".")[1])] += layout.tensor_nbytes(shapes[name], ty)
    return per_layer


def _row(folder: Path, fmt: str, vram_bytes: int) -> object:
    hw = detect_hardware().with_overrides(vram_gib=vram_bytes / GIB, ram_gib=64)
    return estimate(open_model(folder), hw, CFG, formats=[fmt]).formats[0]


def test_active_and_total_params(tiny: Callable[[str], Path]) -> None:
    folder = tiny("qwen3moe")
    model = open_model(folder)
    est = estimate(model, detect_hardware().with_overrides(vram_gib=0, ram_gib=64), CFG, formats=["Q8_0"])
    routed = sum(t.n_bytes // 2 for t in model.tensors if ".experts." in t.name)  # bf16: 2 bytes each
    assert (est.model.n_experts, est.model.n_experts_used) == (4, 2)
    assert est.model.params == model.n_params
    assert est.model.active_params == model.n_params - routed // 2  # 2 of 4 experts per token


def test_smallest_n_cpu_moe_that_fits(tiny: Callable[[str], Path]) -> None:
    folder = tiny("qwen3moe")
    experts = _expert_bytes(folder, "F16")
    full = _row(folder, "F16", 64 * GIB)
    assert full.fit == "gpu" and full.cpu_moe_layers == 0  # type: ignore[attr-defined]
    assert full.cpu_moe_vram_bytes == full.vram_bytes  # type: ignore[attr-defined]
    # one byte too little for everything on the GPU: the experts of layer 0 go to RAM
    one = _row(folder, "F16", full.vram_bytes - 1)  # type: ignore[attr-defined]
    assert one.fit != "gpu" and one.cpu_moe_layers == 1  # type: ignore[attr-defined]
    assert one.cpu_moe_vram_bytes == full.vram_bytes - experts[0]  # type: ignore[attr-defined]
    assert one.cpu_moe_ram_bytes > full.ram_bytes + experts[0]  # type: ignore[attr-defined]
    # too little even with every expert in RAM: no N fits
    none = _row(folder, "F16", full.vram_bytes - sum(experts) - 1)  # type: ignore[attr-defined]
    assert none.cpu_moe_layers == -1  # type: ignore[attr-defined]


def test_dense_model_has_no_expert_placement(tiny: Callable[[str], Path]) -> None:
    row = _row(tiny("qwen3"), "Q8_0", 64 * GIB)
    assert row.cpu_moe_layers == -1 and row.cpu_moe_vram_bytes == 0  # type: ignore[attr-defined]


def test_cli_estimate_json_carries_the_placement(tiny: Callable[[str], Path]) -> None:
    folder = tiny("qwen3moe")
    out = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "estimate", str(folder), "--json",
                          "--format", "Q4_K_M", "--vram", "40", "--ram", "64", "--context", "512"],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["model"]["n_experts"] == 4 and 0 < data["model"]["active_params"] < data["model"]["params"]
    row = data["formats"][0]
    assert row["cpu_moe_layers"] == 0 and row["cpu_moe_vram_bytes"] == row["vram_bytes"]


def test_cpu_memory_of_a_moe_gguf_matches_measured_rss(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """The CPU-only estimate of a converted MoE file is within 10% of the peak RSS increase of a real
    llama-cpp-python load plus a full-context evaluation (tests/rss_probe.py)."""
    from quantpress.core.gguf.convert import convert
    from rss_probe import measure_rss_increase

    (result,) = convert(plan_conversion(open_model(tiny("qwen3moe")), ["Q4_K_M"], tmp_path))
    hw = detect_hardware().with_overrides(vram_gib=0, ram_gib=64)
    row = estimate(open_model(result.output), hw, CFG, formats=[]).formats[0]
    measured = measure_rss_increase(result.output, CFG)
    assert abs(row.cpu_only_bytes / measured - 1) < 0.10, (row.cpu_only_bytes, measured)


def test_mxfp4_moe_is_offered_for_moe_models_with_the_written_size(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """MXFP4_MOE (experts MXFP4, the rest Q8_0, llama-quantize's mix) is a row for a MoE model, and its
    estimated file size is the size the converter writes."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.reader import open_gguf

    model = open_model(tiny("qwen3moe"))
    hw = detect_hardware().with_overrides(vram_gib=0, ram_gib=64)
    assert "MXFP4_MOE" in {r.format for r in estimate(model, hw, CFG).formats}
    (row,) = estimate(model, hw, CFG, formats=["MXFP4_MOE"]).formats
    (result,) = convert(plan_conversion(model, ["MXFP4_MOE"], tmp_path))
    assert row.file_bytes_exact and row.file_bytes == Path(result.output).stat().st_size
    with open_gguf(Path(result.output)) as g:
        matrices = {t.name: t.ggml_type for t in g.tensors if len(t.shape) >= 2 and "gate_inp" not in t.name}
    assert {t for n, t in matrices.items() if "_exps." in n} == {"MXFP4"}
    assert {t for n, t in matrices.items() if "_exps." not in n} == {"Q8_0"}  # routers stay F32, left out above


def test_mxfp4_moe_is_not_offered_for_dense_models(tiny: Callable[[str], Path]) -> None:
    hw = detect_hardware().with_overrides(vram_gib=0, ram_gib=64)
    assert "MXFP4_MOE" not in {r.format for r in estimate(open_model(tiny("qwen3")), hw, CFG).formats}


def _logged_kv(path: Path, ctx: int) -> tuple[float, float]:
    """llama.cpp's own account of its KV cache: 'K (f16): X MiB, V (f16): Y MiB' from its load log."""
    import re

    import llama_cpp
    from llama_log import captured_llama_log

    with captured_llama_log() as lines:
        llama_cpp.Llama(str(path), n_ctx=ctx, n_threads=1, verbose=False).close()
    (k, v), = [(float(m.group(1)), float(m.group(2))) for line in lines
               if (m := re.search(r"K \(f16\):\s*([\d.]+) MiB, V \(f16\):\s*([\d.]+) MiB", line))]
    return k, v


def test_mla_kv_cache_is_llama_cpps(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """DeepSeek-V3 (llama.cpp deepseek2, MLA): llama.cpp caches per token and layer only the latent
    (kv_lora_rank + qk_rope_head_dim) as K and no V; the estimator (from the HF folder and from the
    GGUF) and the chat's KV figure equal the size llama.cpp logs, at two contexts."""
    from quantpress.core.chat import KVCacheType, kv_cache_bytes, read_gguf_shape
    from quantpress.core.gguf.convert import convert
    from quantpress.core.memory import kv_cache_bytes as model_kv_bytes

    folder = tiny("deepseekv3")
    (result,) = convert(plan_conversion(open_model(folder), ["Q8_0"], tmp_path))
    path = Path(result.output)
    hf, gguf = open_model(folder), open_model(path)
    assert hf.mla_kv_width == gguf.mla_kv_width == 128 + 32  # kv_lora_rank + qk_rope_head_dim
    hw = detect_hardware().with_overrides(vram_gib=0, ram_gib=64)
    for ctx in (1000, 4096):
        k_mib, v_mib = _logged_kv(path, ctx)
        assert v_mib == 0.0
        cfg = RuntimeConfig(n_ctx=ctx)
        for model in (hf, gguf):
            assert model_kv_bytes(model, cfg) / 2**20 == pytest.approx(k_mib, abs=0.01)
            assert estimate(model, hw, cfg, formats=["Q8_0"]).formats[-1].kv_cache_bytes == model_kv_bytes(model, cfg)
        chat = kv_cache_bytes(read_gguf_shape(path), ctx, KVCacheType.F16, KVCacheType.F16)
        assert chat / 2**20 == pytest.approx(k_mib, abs=0.01)


def test_llama4_is_moe_with_chunked_attention(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Llama 4 (dense and MoE layers interleaved, one routed expert of 4 per token): total and active
    parameters; its chunked attention sized as llama.cpp's iSWA cache (n_swa = 8192 on the three
    chunked layers of four, the NoPE layer global), the same from config.json and from the GGUF,
    which carries no window key (llama.cpp's graph fixes it)."""
    from quantpress.core.chat.llama_loader import read_gguf_shape
    from quantpress.core.gguf.convert import convert
    from quantpress.core.memory import kv_cache_bytes, kv_row_bytes, pad

    folder = tiny("llama4")
    model = open_model(folder)
    est = estimate(model, detect_hardware().with_overrides(vram_gib=0, ram_gib=64), CFG, formats=["Q8_0"])
    routed = sum(t.n_bytes // 2 for t in model.tensors if ".experts." in t.name)  # bf16
    assert routed and (est.model.n_experts, est.model.n_experts_used) == (4, 1)
    assert est.model.active_params == model.n_params - routed * 3 // 4
    assert (model.sliding_window, model.swa_layers) == (8192, (0, 1, 2))
    (result,) = convert(plan_conversion(model, ["Q8_0"], tmp_path))
    gguf = open_model(result.output)
    assert (gguf.sliding_window, gguf.swa_layers) == (8192, (0, 1, 2))
    shape = read_gguf_shape(result.output)  # the chat's KV figure reads the same
    assert (shape.sliding_window, shape.swa_layers) == (8192, (0, 1, 2))
    cfg = RuntimeConfig(n_ctx=32768, swa_full=False)
    per_cell = 2 * kv_row_bytes("f16", model.head_dim * model.n_kv_heads)
    expected = 3 * pad(8192 + 512, 256) * per_cell + 32768 * per_cell
    assert kv_cache_bytes(model, cfg) == kv_cache_bytes(gguf, cfg) == expected
    # llama-cpp-python's default (swa_full): every layer holds the whole context
    assert kv_cache_bytes(model, RuntimeConfig(n_ctx=32768)) == 4 * 32768 * per_cell
