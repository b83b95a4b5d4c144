"""Memory of hybrid models: a fixed recurrent state on Gated DeltaNet layers, KV only on the
attention layers, nothing on MTP blocks; the same from config.json and from the GGUF header.
(Measured against peak RSS in benchmarks/estimate_memory.py --hybrid.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from quantpress.core import memory as mem
from quantpress.core.chat.llama_loader import kv_cache_bytes as chat_kv_bytes
from quantpress.core.chat.llama_loader import read_gguf_shape
from quantpress.core.chat.types import KVCacheType
from quantpress.core.inspect import open_model
from tiny_hybrid import tiny_hybrid


@pytest.fixture(scope="module")
def qwen35(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hybrid("qwen35", tmp_path_factory.mktemp("hybrid"))


def test_deltanet_layers_hold_a_fixed_state(qwen35: Path) -> None:
    info = open_model(qwen35)
    assert info.recurrent_layers == (0, 1, 2)  # layer 3 is full attention
    # conv state (d_conv - 1) * (d_inner + 2 * groups * d_state) + state d_state * d_inner, F32
    d_inner = 32 * 4
    assert info.recurrent_state_bytes == 4 * (3 * (d_inner + 2 * 2 * 32) + 32 * d_inner)
    small, large = (mem.RuntimeConfig(n_ctx=n) for n in (512, 4096))
    for layer in info.recurrent_layers:
        assert mem.kv_layer_bytes(info, small, layer) == mem.kv_layer_bytes(info, large, layer) \
            == info.recurrent_state_bytes
    kv_row = 2 * 2 * 64 * 2  # K and V, 2 KV heads of 64, f16
    assert mem.kv_cache_bytes(info, large) - mem.kv_cache_bytes(info, small) == (4096 - 512) * kv_row
    two_seqs = mem.RuntimeConfig(n_ctx=512, n_seq=2)
    assert mem.kv_layer_bytes(info, two_seqs, 0) == 2 * info.recurrent_state_bytes


def test_gguf_header_gives_the_same_memory(qwen35: Path, tmp_path: Path) -> None:
    """From the converted file: the recurrent_layers array and ssm.* keys; the MTP block (block 4)
    gets no cache, as in llama.cpp."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    (result,) = convert(plan_conversion(open_model(qwen35), ["Q8_0"], tmp_path))
    hf, gguf = open_model(qwen35), open_model(result.output)
    assert gguf.n_layers == 5 and gguf.n_nextn_layers == 1
    assert (gguf.recurrent_layers, gguf.recurrent_state_bytes) == (hf.recurrent_layers, hf.recurrent_state_bytes)
    cfg = mem.RuntimeConfig(n_ctx=2048)
    assert mem.kv_layer_bytes(gguf, cfg, 4) == 0
    assert mem.kv_cache_bytes(gguf, cfg) == mem.kv_cache_bytes(hf, cfg)
    shape = read_gguf_shape(Path(result.output))
    assert chat_kv_bytes(shape, 2048, KVCacheType.F16, KVCacheType.F16) == mem.kv_cache_bytes(hf, cfg)
