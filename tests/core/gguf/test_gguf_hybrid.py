"""Gated DeltaNet hybrids (Qwen3.5 dense and MoE, Qwen3-Next) end to end: tiny random models of the
real transformers classes, with the MTP block the releases carry, converted to F32, Q8_0, Q4_K_M and
Q2_K, loaded by llama-cpp-python, compared with transformers' log-probabilities and with llama.cpp's
own converter (tensor names, shapes, metadata keys and values, F32 data), and chatted with (slow:
about a minute per family). The default suite converts Qwen3.5 to F32 and checks it against
transformers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from llama_reference import reference_gguf
from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import ConversionPlan, plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import _qkvz_order, _vhead_order, open_source
from tiny_hybrid import HYBRID_ARCHS, tiny_hybrid
from tiny_models import hf_logprobs, llama_logprobs

FORMATS = ["F32", "Q8_0", "Q4_K_M", "Q2_K"]
DEFAULT_RUN = "qwen35"  # the family the default suite checks (F32 against transformers only; the full run is slow)
OUR_KEYS = ("quantpress.", "general.basename", "general.quantized_by")


@pytest.fixture(scope="session")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    root = tmp_path_factory.mktemp("tiny_hybrid")
    return lambda arch: tiny_hybrid(arch, root)


def _convert(folder: Path, out: Path, formats: list[str]) -> tuple[ConversionPlan, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_conversion(open_source(folder), formats, out)
    return plan, [Path(r.output) for r in convert(plan)]


def _reference(folder: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """llama.cpp's conversion of ``folder``, and the keys to leave out of the comparison.

    llama.cpp's converter names the BPE pre-tokenizer by hashing AutoTokenizer's output; for
    model_type qwen3_5_moe_text and the wrappers' qwen3_5 / qwen3_5_moe, transformers 5 forces its
    Qwen3_5Tokenizer (Qwen's split regex) over the test vocabulary, a hash llama.cpp does not know.
    The reference runs on a copy that names the dense text model_type (same tensors, same hparams in
    config.json); for the MoE models AutoConfig then adds the dense class's default
    intermediate_size, so their feed_forward_length is an artefact of the copy."""
    cfg = json.loads((folder / "config.json").read_text())
    if cfg["model_type"] not in ("qwen3_5_moe_text", "qwen3_5", "qwen3_5_moe"):
        return reference_gguf(folder, tmp_path / "ref.gguf"), set()
    copy = tmp_path / "ref-src"
    shutil.copytree(folder, copy)
    (copy / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen3_5_text"}))
    return reference_gguf(copy, tmp_path / "ref.gguf"), {"qwen35moe.feed_forward_length"}


def _logprob_diff(folder: Path, path: Path) -> float:
    n_vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    ids = [int(i) for i in np.random.default_rng(1).integers(3, n_vocab, 64)]
    return float(np.abs(llama_logprobs(path, ids) - hf_logprobs(folder, ids)).max())


def test_qwen35_f32_matches_transformers(hybrid: Callable[[str], Path], tmp_path: Path) -> None:
    folder = hybrid(DEFAULT_RUN)
    plan, (path,) = _convert(folder, tmp_path, ["F32"])
    assert plan.gguf_arch == "qwen35" and any(t.name.startswith("blk.4.nextn.") for t in plan.tensors)
    assert _logprob_diff(folder, path) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("arch", HYBRID_ARCHS)
def test_hybrid_family_end_to_end(arch: str, hybrid: Callable[[str], Path], tmp_path: Path) -> None:
    from llama_cpp import Llama

    folder = hybrid(arch)
    plan, paths = _convert(folder, tmp_path / "ours", FORMATS)
    for o, path in zip(plan.outputs, paths, strict=True):
        assert path.stat().st_size == o.file_bytes, o.format
        with open_gguf(path) as g:
            assert {t.name: t.ggml_type for t in g.tensors} == o.tensor_types
        # llama-quantize keeps the DeltaNet conv kernels, A, dt bias and norms in F32
        small = [n for n in o.tensor_types if n.endswith(("ssm_conv1d.weight", "ssm_a", "ssm_dt.bias", "ssm_norm.weight"))]
        assert small and all(o.tensor_types[n] == "F32" for n in small), o.format

    # F32 next-token log-probabilities equal transformers' (64 tokens)
    diff = _logprob_diff(folder, paths[0])
    assert diff < 0.01, f"{arch}: max |Δ log p| = {diff}"

    # the same tensors, metadata and F32 data as llama.cpp's own converter (V-head reorder, A_log,
    # the in_proj_qkvz split and the MTP block included)
    ref, artefacts = _reference(folder, tmp_path)
    with open_gguf(ref) as r, open_gguf(paths[0]) as g:
        assert {t.name: t.shape for t in g.tensors} == {t.name: t.shape for t in r.tensors}
        ours = {k for k in g.metadata if not k.startswith(OUR_KEYS)}
        assert ours ^ set(r.metadata) <= artefacts, (ours ^ set(r.metadata))
        for k in (k for k in r.metadata if k.startswith(r.architecture + ".") and k not in artefacts):
            assert np.allclose(g.metadata[k], r.metadata[k]), (k, g.metadata[k], r.metadata[k])
        assert g.get("general.size_label") == r.get("general.size_label")
        for t in r.tensors:
            assert np.allclose(g.raw(t.name), r.raw(t.name), rtol=1e-5, atol=1e-6), t.name

    # every quantized file loads; the Q4_K_M file chats with the model's template
    for path in paths[1:]:
        llm = Llama(str(path), n_ctx=256, verbose=False, n_threads=2)
        try:
            if "Q4_K_M" in path.name:
                reply = llm.create_chat_completion([{"role": "user", "content": "Hello there"}], max_tokens=8,
                                                   temperature=0)
                assert reply["choices"][0]["message"]["content"], path.name
                assert reply["usage"]["completion_tokens"] > 0
        finally:
            llm.close()


def test_v_head_order_tiles_value_heads() -> None:
    """Grouped by key head [K0: v0 v1, K1: v0 v1] -> tiled [K0v0, K1v0, K0v1, K1v1], rows of hd."""
    order = _vhead_order(8, nk=2, per_k=2, hd=2)
    assert order.tolist() == [0, 1, 4, 5, 2, 3, 6, 7]


def test_qkvz_split_groups_each_part() -> None:
    """Per key head [q dk, k dk, v dvg, z dvg] -> all q, all k, all v; and all z."""
    nk, dk, dvg = 2, 1, 2
    qkv, z = _qkvz_order("qkv", nk, dk, dvg), _qkvz_order("z", nk, dk, dvg)
    assert qkv.tolist() == [0, 6, 1, 7, 2, 3, 8, 9]
    assert z.tolist() == [4, 5, 10, 11]


def test_hub_hybrid_without_weights_is_a_clear_error(hybrid: Callable[[str], Path], tmp_path: Path) -> None:
    from dataclasses import replace

    from quantpress.core.model import SourceKind

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in hybrid(DEFAULT_RUN).iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, bare / f.name)
    info = replace(open_source(hybrid(DEFAULT_RUN)), kind=SourceKind.HUB, tensors=(), source=str(bare),
                   local_path=bare)
    with pytest.raises(UnsupportedArchitecture, match="qwen35.*download"):
        plan_conversion(info, ["Q4_K_M"], tmp_path)
