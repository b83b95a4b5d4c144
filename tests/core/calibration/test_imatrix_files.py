"""llama.cpp imatrix files (GGUF and legacy .dat) and the llama.cpp quantizer taking our values."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.calibration.imatrix import (
    Imatrix,
    LlamaImatrixData,
    from_means,
    load_imatrix,
    save_imatrix,
)
from quantpress.core.errors import InvalidInput


def _sample() -> Imatrix:
    rng = np.random.default_rng(0)
    sums = {"blk.0.attn_q.weight": rng.random((1, 64), dtype=np.float32) * 100,
            "blk.0.ffn_down_exps.weight": rng.random((4, 32), dtype=np.float32) * 10}  # 4 experts
    counts = {"blk.0.attn_q.weight": np.array([1024], np.float32),
              "blk.0.ffn_down_exps.weight": np.array([10, 0, 300, 7], np.float32)}
    return Imatrix(sums, counts, ("my-text",), 2, 512, 1024)


def test_gguf_round_trip_is_exact(tmp_path: Path) -> None:
    im = _sample()
    back = load_imatrix(save_imatrix(im, tmp_path / "m.gguf", "gguf"))
    assert back.names == im.names and back.datasets == ("my-text",)
    assert (back.chunk_count, back.chunk_size) == (2, 512)
    for n in im.names:
        np.testing.assert_array_equal(back.sums[n], im.sums[n])
        np.testing.assert_array_equal(back.counts[n], im.counts[n])


def test_gguf_file_has_llama_cpp_layout(tmp_path: Path) -> None:
    from gguf import GGUFReader

    r = GGUFReader(str(save_imatrix(_sample(), tmp_path / "m.gguf")))
    assert r.fields["general.type"].contents() == "imatrix"
    assert "general.architecture" not in r.fields
    t = {x.name: x for x in r.tensors}
    assert list(t["blk.0.ffn_down_exps.weight.in_sum2"].shape) == [32, 4]  # ggml ne = {n_per_row, n_mat}
    assert list(t["blk.0.ffn_down_exps.weight.counts"].shape) == [1, 4]


def test_dat_round_trip_keeps_the_means(tmp_path: Path) -> None:
    im = _sample()
    back = load_imatrix(save_imatrix(im, tmp_path / "m.dat", "dat"))
    assert back.datasets == ("my-text",) and back.chunk_count == 2
    for n in im.names:
        np.testing.assert_allclose(back.importance(n), im.importance(n), rtol=1e-6)


def test_dat_layout_matches_llama_cpp(tmp_path: Path) -> None:
    im = from_means({"blk.1.ffn_up.weight": np.full(8, 0.5, np.float32)}, 1536, chunk_size=512, chunk_count=3)
    data = save_imatrix(im, tmp_path / "x.dat", "dat").read_bytes()
    name = b"blk.1.ffn_up.weight"
    head = struct.pack("<ii", 1, len(name)) + name + struct.pack("<ii", 3, 8)  # ncall = ceil(1536 / 512)
    assert data.startswith(head)
    values = np.frombuffer(data, "<f4", 8, len(head))
    np.testing.assert_allclose(values, 1.5)  # mean · ncall
    assert data[len(head) + 32:] == struct.pack("<ii", 3, 0)


def test_expert_without_tokens_reads_as_its_layers_mean() -> None:
    im = _sample()
    v = im.importance("blk.0.ffn_down_exps.weight")
    assert v is not None and v.shape == (128,)
    s = im.sums["blk.0.ffn_down_exps.weight"].astype(np.float64)
    np.testing.assert_allclose(v[32:64], (s[0] + s[2] + s[3]) / 317, rtol=1e-6)  # Σ sums / Σ counts, counts 0 skipped
    assert im.experts_without_tokens == {"blk.0.ffn_down_exps.weight": (1,)}


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_imatrix(tmp_path / "none.gguf")
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x05\x00\x00\x00\x10\x00")
    with pytest.raises(InvalidInput, match="truncated|damaged"):
        load_imatrix(junk)
    with pytest.raises(InvalidInput, match="unknown imatrix format"):
        save_imatrix(_sample(), tmp_path / "x", "bin")


def test_llama_cpp_quantizer_accepts_the_values(tmp_path: Path) -> None:
    """llama_model_quantize with our imatrix entries (names and sizes must match the GGUF)."""
    import llama_cpp
    from gguf import GGUFReader
    from quantpress.core.demo import demo_gguf_path

    src = demo_gguf_path()
    reader = GGUFReader(str(src))
    rng = np.random.default_rng(1)
    means = {t.name: rng.random(int(t.shape[0]), dtype=np.float32) + 0.01
             for t in reader.tensors if t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) == 2}
    data = LlamaImatrixData(from_means(means, 512))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 15  # Q4_K_M
    params.allow_requantize = True
    params.nthread = 2
    params.imatrix = data.pointer
    out = tmp_path / "q.gguf"
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params)) == 0
    assert out.stat().st_size > 1_000_000
