"""Runtime memory terms against llama.cpp's own numbers, and the CPU estimate against a real
llama-cpp-python load + full-context evaluation (peak RSS increase, fresh subprocess)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from quantpress.core import memory as mem
from quantpress.core.estimate import estimate
from quantpress.core.hardware import detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.model import ModelInfo, SourceKind
from rss_probe import measure_rss_increase

MIB = 1024**2


def _model(**kw: object) -> ModelInfo:
    base = dict(source="x", kind=SourceKind.GGUF, architecture="llama", gguf_arch="llama", n_params=0, n_layers=32,
                n_heads=32, n_kv_heads=8, head_dim=128, head_dim_v=128, hidden_size=4096, ffn_size=14336,
                vocab_size=128256, context_length=8192)
    base.update(kw)
    return ModelInfo(**base)  # type: ignore[arg-type]


def test_kv_cache_llama3_8b_reference_example() -> None:
    # llama.cpp's KV cache (src/llama-kv-cache.cpp): per layer n_ctx × n_embd_k_gqa + n_ctx × n_embd_v_gqa
    # elements. Llama-3-8B, n_ctx 8192, f16 -> 32 * 8192 * (1024 + 1024) * 2 B = 1 GiB
    assert mem.kv_cache_bytes(_model(), mem.RuntimeConfig(n_ctx=8192)) == 1024**3
    q8 = mem.kv_cache_bytes(_model(), mem.RuntimeConfig(n_ctx=8192, kv_type="q8_0"))
    assert q8 == 1024**3 * 34 // 64  # 34 bytes per 32 values instead of 64
    assert mem.kv_cache_bytes(_model(), mem.RuntimeConfig(n_ctx=8192, kv_type="q4_0")) == 1024**3 * 18 // 64


def test_kv_padding_to_256_cells() -> None:
    m = _model()
    assert mem.kv_cache_bytes(m, mem.RuntimeConfig(n_ctx=1000)) == mem.kv_cache_bytes(m, mem.RuntimeConfig(n_ctx=1024))
    assert mem.kv_cache_bytes(m, mem.RuntimeConfig(n_ctx=1025)) == mem.kv_cache_bytes(m, mem.RuntimeConfig(n_ctx=1280))


def test_sliding_window_layers_are_capped() -> None:
    m = _model(n_layers=6, swa_layers=(0, 1, 2, 3, 4), sliding_window=1024)
    # llama-cpp-python's default (swa_full) keeps the full cache on every layer
    assert mem.kv_cells(m, mem.RuntimeConfig(n_ctx=32768), 0) == 32768
    cfg = mem.RuntimeConfig(n_ctx=32768, swa_full=False)
    assert mem.kv_cells(m, cfg, 5) == 32768
    assert mem.kv_cells(m, cfg, 0) == 1536  # pad(1024 + 512, 256)
    full = mem.kv_cache_bytes(dataclasses.replace(m, swa_layers=()), cfg)
    assert mem.kv_cache_bytes(m, cfg) == full // 6 + 5 * full // 6 * 1536 // 32768


def test_quantized_kv_enables_flash_attention() -> None:
    assert not mem.RuntimeConfig().fa and mem.RuntimeConfig(kv_type="q8_0").fa


def test_compute_buffer_matches_llama_cpp_log() -> None:
    # SmolLM2-135M, n_ubatch 512: llama.cpp logs "CPU compute buffer size" 98.25 MiB (ctx 512) and
    # 166.38 MiB (ctx 8192) (llama-cpp-python 0.3.36, this machine).
    smol = _model(n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64, head_dim_v=64, hidden_size=576, ffn_size=1536,
                  vocab_size=49152)
    for n_ctx, logged in ((512, 98.25), (8192, 166.38)):
        got = mem.compute_bytes(smol, mem.RuntimeConfig(n_ctx=n_ctx)).reserved / MIB
        assert abs(got - logged) <= 1.0, (n_ctx, got)


def test_repack_rule() -> None:
    types = mem.repacked_types(("avx2",))
    assert mem.is_repacked("blk.0.ffn_up.weight", (1536, 576), "Q4_0", types)
    assert not mem.is_repacked("token_embd.weight", (49152, 576), "Q4_0", types)
    assert not mem.is_repacked("blk.0.ffn_up.weight", (1536, 576), "Q8_0", types)
    assert not mem.is_repacked("blk.0.attn_k.weight", (3, 576), "Q4_0", types)


def _predict(path: Path, n_ctx: int) -> int:
    hw = detect_hardware().with_overrides(vram_gib=0)
    return estimate(open_model(path), hw, mem.RuntimeConfig(n_ctx=n_ctx), formats=[]).formats[0].cpu_only_bytes


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_cpu_prediction_tiny_models_two_contexts(arch: str, tmp_path: Path) -> None:
    """Default-suite end-to-end check (fast): tiny llama and gemma3 (sliding window) converted by
    quantpress to F16, at two context lengths."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from tiny_models import tiny_model

    plan = plan_conversion(open_model(tiny_model(arch, tmp_path)), ["F16"], tmp_path)
    convert(plan)
    path = Path(plan.outputs[0].path)
    for n_ctx in (512, 2048):
        measured = measure_rss_increase(str(path), mem.RuntimeConfig(n_ctx=n_ctx))
        predicted = _predict(path, n_ctx)
        assert abs(predicted - measured) / measured < 0.10, (arch, n_ctx, predicted / MIB, measured / MIB)


@pytest.mark.slow
@pytest.mark.parametrize("n_ctx", [512, 2048])
def test_cpu_prediction_within_10_percent_of_measured_rss(n_ctx: int) -> None:
    from quantpress.core.demo import demo_gguf_path

    path = demo_gguf_path()
    measured = measure_rss_increase(str(path), mem.RuntimeConfig(n_ctx=n_ctx))
    predicted = _predict(path, n_ctx)
    assert abs(predicted - measured) / measured < 0.10, (predicted / MIB, measured / MIB)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["F16", "Q8_0", "Q4_K_M", "Q2_K"])
def test_cpu_prediction_converted_formats(fmt: str, demo_model_dir: Path, tmp_path: Path) -> None:
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    plan = plan_conversion(open_model(demo_model_dir), [fmt], tmp_path)
    convert(plan)
    path = Path(plan.outputs[0].path)
    for n_ctx in (512, 2048):
        measured = measure_rss_increase(str(path), mem.RuntimeConfig(n_ctx=n_ctx))
        predicted = _predict(path, n_ctx)
        assert abs(predicted - measured) / measured < 0.10, (fmt, n_ctx, predicted / MIB, measured / MIB)
