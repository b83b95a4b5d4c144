"""Memory of Gemma 4: sliding and global layers of different cache widths (head 64 vs 128, and in the
31B layout one KV head on global layers), trailing KV-shared layers with no cache of their own, and
without flash attention every layer's V padded to the widest; the same from config.json, from the
GGUF header and by llama.cpp's own account of its KV buffers (swa_full, as llama-cpp-python keeps it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_kv import llama_kv_buffer_mib
from quantpress.core import memory as mem
from quantpress.core.chat import KVCacheType
from quantpress.core.chat.llama_loader import kv_cache_bytes as chat_kv_bytes
from quantpress.core.chat.llama_loader import read_gguf_shape
from quantpress.core.inspect import open_model
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """arch -> (HF folder, its Q8_0 GGUF)."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    root = tmp_path_factory.mktemp("gemma4")
    out: dict[str, tuple[Path, Path]] = {}
    for arch in ("gemma4", "gemma4-mm"):
        folder = tiny_model(arch, root)
        (root / f"{arch}-out").mkdir()
        (result,) = convert(plan_conversion(open_model(folder), ["Q8_0"], root / f"{arch}-out"))
        out[arch] = (folder, Path(result.output))
    return out


def test_layers_have_their_own_widths_and_shared_layers_no_cache(models: dict[str, tuple[Path, Path]]) -> None:
    e2b = open_model(models["gemma4"][0])
    # sliding: 2 KV heads x 64; global: 2 x 128; layers 2 and 3 read layers 0 and 1's cache
    assert e2b.kv_widths == ((128, 128), (256, 256), (128, 128), (256, 256)) and e2b.n_kv_shared_layers == 2
    fa, no_fa = mem.RuntimeConfig(n_ctx=1024, flash_attn=True), mem.RuntimeConfig(n_ctx=1024)
    assert [mem.kv_layer_bytes(e2b, fa, i) for i in range(4)] == [1024 * 2 * 2 * 128, 1024 * 2 * 2 * 256, 0, 0]
    assert mem.kv_layer_bytes(e2b, no_fa, 0) == 1024 * 2 * (128 + 256)  # V padded to the widest layer
    wrapper = open_model(models["gemma4-mm"][0])  # global layers: one KV head of 128
    assert wrapper.kv_widths == ((128, 128),) * 4 and wrapper.n_kv_shared_layers == 0


@pytest.mark.parametrize("arch", ["gemma4", "gemma4-mm"])
@pytest.mark.parametrize("kv", [KVCacheType.F16, KVCacheType.Q8_0])  # Q8_0 V needs flash attention
def test_config_header_and_llama_cpp_agree(models: dict[str, tuple[Path, Path]], arch: str, kv: KVCacheType) -> None:
    folder, gguf = models[arch]
    cfg = mem.RuntimeConfig(n_ctx=1000, kv_type=kv.value, flash_attn=kv is not KVCacheType.F16)
    hf, header = open_model(folder), open_model(gguf)
    assert (header.kv_widths, header.n_kv_shared_layers) == (hf.kv_widths, hf.n_kv_shared_layers)
    expected = mem.kv_cache_bytes(hf, cfg)
    assert mem.kv_cache_bytes(header, cfg) == expected
    assert chat_kv_bytes(read_gguf_shape(gguf), 1000, kv, kv) == expected
    assert expected / 2**20 == pytest.approx(llama_kv_buffer_mib(gguf, 1000, kv), abs=0.02)
