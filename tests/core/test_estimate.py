"""Estimates: exact GGUF file sizes (same plan as the converter, checked against written files),
fit verdicts, max context, recommendations and the CLI's JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from quantpress.core.estimate import estimate
from quantpress.core.formats import gguf_formats
from quantpress.core.hardware import detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.memory import RuntimeConfig
from tiny_models import tiny_model

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3")
QUICK_FORMATS = ("Q6_K", "Q4_K_M", "Q3_K_M", "IQ4_XS")
ALL_GGUF = tuple(f.name for f in gguf_formats() if not f.moe_only)  # the models here are dense


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


def _check_file_sizes(folder: Path, formats: tuple[str, ...], out: Path) -> None:
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    model = open_model(folder)
    est = estimate(model, detect_hardware(), RuntimeConfig(n_ctx=512), formats=list(formats))
    predicted = {e.format: e.file_bytes for e in est.formats}
    plan = plan_conversion(model, list(formats), out)
    convert(plan)
    for o in plan.outputs:
        assert predicted[o.format] == Path(o.path).stat().st_size, o.format
        assert next(e for e in est.formats if e.format == o.format).file_bytes_exact


@pytest.mark.parametrize("arch", ARCHS)
def test_file_bytes_equal_written_gguf(arch: str, tiny_dir: Path, tmp_path: Path) -> None:
    _check_file_sizes(tiny_model(arch, tiny_dir), QUICK_FORMATS, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_file_bytes_every_format(arch: str, tiny_dir: Path, tmp_path: Path) -> None:
    _check_file_sizes(tiny_model(arch, tiny_dir), ALL_GGUF, tmp_path)


@pytest.mark.slow
def test_file_bytes_demo_every_format(demo_model_dir: Path, tmp_path: Path) -> None:
    _check_file_sizes(demo_model_dir, ALL_GGUF, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,ftype", [("Q4_K_M", 15), ("Q5_K_M", 17), ("Q3_K_M", 12), ("Q6_K", 18), ("Q8_0", 7), ("Q2_K", 10)])
def test_file_bytes_vs_llama_cpp_quantizer(fmt: str, ftype: int, tiny_dir: Path, tmp_path: Path) -> None:
    """llama.cpp's own llama_model_quantize from quantpress's F16 GGUF: same size within 0.1%
    (only metadata differs: quantpress.* keys)."""
    import llama_cpp
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    plan = plan_conversion(open_model(tiny_model("llama", tiny_dir)), ["F16"], tmp_path)
    convert(plan)
    f16 = Path(plan.outputs[0].path)
    out = tmp_path / f"ref-{fmt}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    llama_cpp.llama_backend_init()
    assert llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), params) == 0
    est = estimate(open_model(f16), detect_hardware(), RuntimeConfig(n_ctx=512), formats=[fmt])
    predicted = next(e.file_bytes for e in est.formats if e.format == fmt)
    assert predicted is not None and abs(predicted - out.stat().st_size) / out.stat().st_size < 0.001


def test_fit_verdicts(demo_model_dir: Path) -> None:
    model = open_model(demo_model_dir)
    hw = detect_hardware()
    cfg = RuntimeConfig(n_ctx=2048)
    big = estimate(model, hw.with_overrides(vram_gib=24, ram_gib=16), cfg, formats=["Q4_K_M", "F16"])
    for e in big.formats:
        assert e.fit == "gpu" and e.gpu_layers == model.n_layers and e.max_context_on_gpu == model.context_length
    cpu = estimate(model, hw.with_overrides(vram_gib=0, ram_gib=16), cfg, formats=["Q4_K_M"]).formats[0]
    assert cpu.fit == "cpu" and cpu.gpu_layers == 0 and cpu.max_context_on_gpu == 0 and cpu.vram_bytes == 0
    # A GPU too small for all 30 layers + compute + runtime, but enough for some.
    full_vram = next(e for e in big.formats if e.format == "Q4_K_M").vram_bytes
    part = estimate(model, hw.with_overrides(vram_gib=(full_vram - 40 * 2**20) / 1024**3, ram_gib=16), cfg,
                    formats=["Q4_K_M"]).formats[0]
    assert part.fit == "partial" and 0 < part.gpu_layers < model.n_layers
    none = estimate(model, hw.with_overrides(vram_gib=0, ram_gib=0.05), cfg, formats=["Q4_K_M"]).formats[0]
    assert none.fit == "no"
    # KV grows with context; a q8_0 cache is about half of f16.
    long = estimate(model, hw.with_overrides(vram_gib=0), RuntimeConfig(n_ctx=8192), formats=["Q4_K_M"]).formats[0]
    q8 = estimate(model, hw.with_overrides(vram_gib=0), RuntimeConfig(n_ctx=8192, kv_type="q8_0"),
                  formats=["Q4_K_M"]).formats[0]
    assert long.kv_cache_bytes == 4 * cpu.kv_cache_bytes and q8.kv_cache_bytes * 64 == long.kv_cache_bytes * 34


def test_max_context_on_gpu_is_the_largest_that_fits(demo_model_dir: Path) -> None:
    model = open_model(demo_model_dir)
    hw = detect_hardware().with_overrides(vram_gib=1.15, ram_gib=16)  # ~410 MiB beside the 768 MiB runtime
    e = estimate(model, hw, RuntimeConfig(n_ctx=512), formats=["F16"]).formats[0]
    assert 256 <= e.max_context_on_gpu < model.context_length
    at = estimate(model, hw, RuntimeConfig(n_ctx=e.max_context_on_gpu), formats=["F16"]).formats[0]
    beyond = estimate(model, hw, RuntimeConfig(n_ctx=e.max_context_on_gpu + 256), formats=["F16"]).formats[0]
    assert at.fit == "gpu" and beyond.fit != "gpu"


def test_recommendations(demo_model_dir: Path) -> None:
    model = open_model(demo_model_dir)
    est = estimate(model, detect_hardware().with_overrides(vram_gib=1.0, ram_gib=16), RuntimeConfig(n_ctx=1024),
                   budget_bytes=500 * 2**20)
    goals = {r.goal: r for r in est.recommendations}
    best_gpu = goals["best quality fully on GPU"].format
    fits = {e.format: e for e in est.formats}
    assert best_gpu is not None and fits[best_gpu].fit == "gpu"
    assert fits["F16"].fit != "gpu" or best_gpu in ("F16", "BF16")
    under = goals["best quality under 0.488281 GiB"].format
    assert under is not None and fits[under].cpu_only_bytes <= 500 * 2**20
    better = [e for e in est.formats if e.format in ("F16", "Q8_0") and e.cpu_only_bytes <= 500 * 2**20]
    assert not better or under in ("F16", "BF16", "Q8_0")


def test_estimate_cli_json_shape(demo_model_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "estimate", "demo", "--context", "2048",
                          "--kv-type", "q8_0", "--vram", "8", "--ram", "16", "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"]["params"] == 134_515_008 and "gpus" in data["hardware"]
    keys = {"format", "bits_per_weight", "weights_bytes", "file_bytes", "kv_cache_bytes", "compute_bytes",
            "total_bytes", "fit", "gpu_layers", "max_context_on_gpu"}
    names = [f["format"] for f in data["formats"]]
    assert set(ALL_GGUF) <= set(names) and "AWQ_INT4_G128" in names and "NF4" in names
    for f in data["formats"]:
        assert keys <= set(f) and f["fit"] in ("gpu", "partial", "cpu", "no")
        if f["format"] in ALL_GGUF:
            assert f["file_bytes"] > 0
    text = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "estimate", "demo", "--vram", "0"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert text.returncode == 0 and "Q4_K_M" in text.stdout and "max ctx on GPU" in text.stdout
