"""The i-quant mixes (IQ1_S ... IQ3_M): the 'llama.cpp' policy picks exactly llama-quantize's per-tensor
types (checked against the real llama_model_quantize, given an imatrix as it requires), plain rounding is
refused where llama.cpp refuses it, and every mix converts to a file of the planned size that
llama-cpp-python loads and chats with."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.calibration import from_means, save_imatrix
from quantpress.core.errors import InvalidInput
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.mixes_iq import IQ_MIXES, NEEDS_IMPORTANCE, tensors_needing_importance
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.reference import llama_quantize
from quantpress.core.gguf.source import open_source

IQ = list(IQ_MIXES)


def _deep_gqa4(tiny: Callable[[str], Path], root: Path) -> Path:
    """A 16-layer Llama with 4 query heads per KV head: the layer-position rules (first 1/8 of ffn_down,
    IQ3_XS's middle layers) and the n_gqa >= 4 attn_v rule only show on such a model."""
    import torch
    import transformers

    folder = root / "deep-gqa4"
    if folder.exists():
        return folder
    src = tiny("llama")
    config = transformers.LlamaConfig(**{**json.loads((src / "config.json").read_text()), "num_hidden_layers": 16,
                                         "num_key_value_heads": 1, "hidden_size": 256, "intermediate_size": 512})
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, folder / f.name)
    return folder


def _uniform_imatrix(f16: Path, path: Path) -> Path:
    with open_gguf(f16) as g:
        means = {t.name: np.ones(t.shape[-1], np.float32) for t in g.tensors if len(t.shape) >= 2}
    return save_imatrix(from_means(means, n_tokens=1), path)


# 32-only rows (IQ4_NL fallbacks), fused qkv, 16 layers with GQA 4 (slow: ~1 min each on 2 cores)
@pytest.mark.parametrize("arch", ["smollm", pytest.param("phi3", marks=pytest.mark.slow),
                                  pytest.param("deep", marks=pytest.mark.slow)])
def test_llama_cpp_policy_matches_llama_quantize(arch: str, tiny: Callable[[str], Path], tmp_path: Path,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = _deep_gqa4(tiny, tmp_path_factory.getbasetemp()) if arch == "deep" else tiny(arch)
    model = open_source(folder)
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    imatrix = _uniform_imatrix(Path(f16.output), tmp_path / "imatrix.gguf")
    with open_gguf(Path(f16.output)) as g:
        means = {t.name: np.ones(t.shape[-1], np.float32) for t in g.tensors if len(t.shape) >= 2}
    cases = [(fmt, imatrix) for fmt in IQ] + [(fmt, None) for fmt in ("IQ3_S", "IQ3_M")]
    for fmt, imx in cases:
        kw = {"imatrix": imx} if imx else {"calibration": "none"}
        (o,) = plan_conversion(model, [fmt], tmp_path / "nowhere.gguf", policy="llama.cpp", **kw).outputs  # type: ignore[arg-type]
        dst = tmp_path / f"ref-{fmt}.gguf"
        llama_quantize(Path(f16.output), dst, fmt, imatrix=means if imx else None, threads=2)
        with open_gguf(dst) as g:
            ref = {t.name: t.ggml_type for t in g.tensors}
        assert o.tensor_types == ref, (fmt, imx is not None)
        dst.unlink()


def test_plain_rounding_is_refused_where_llama_cpp_refuses_it(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    model = open_source(tiny("llama"))
    for fmt in IQ:
        needs = tensors_needing_importance(plan_conversion(model, [fmt], tmp_path).outputs[0].tensor_types)
        if fmt in ("IQ3_S", "IQ3_M"):
            assert not needs
            plan_conversion(model, [fmt], tmp_path, calibration="none")
            continue
        assert needs, fmt
        with pytest.raises(InvalidInput, match=rf"{fmt} cannot be made with --calibration none.*--calibration weights"):
            plan_conversion(model, [fmt], tmp_path, calibration="none")


@pytest.mark.parametrize("formats", [["IQ2_XXS", "IQ3_M"], pytest.param(IQ, marks=pytest.mark.slow)])
def test_every_mix_converts_loads_and_chats(formats: list[str], tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Default calibration (importance estimated from the weights): one pass writes every file, each of
    exactly the planned size, with the planned types, and llama-cpp-python chats with each."""
    from quantpress.core.chat import ChatSession, ChatSettings

    model = open_source(tiny("llama"))
    plan = plan_conversion(model, formats, tmp_path)
    results = convert(plan)
    assert [r.format for r in results] == formats
    for o, r in zip(plan.outputs, results, strict=True):
        assert Path(r.output).stat().st_size == o.file_bytes == r.file_bytes
        with open_gguf(Path(r.output)) as g:
            assert {t.name: t.ggml_type for t in g.tensors} == o.tensor_types
            assert g.metadata["general.file_type"] == IQ_MIXES[o.format][0]
        assert set(o.tensor_types.values()) & (NEEDS_IMPORTANCE | {"IQ3_S"}), o.format
        session = ChatSession.load(r.output, ChatSettings(temperature=0.0, seed=1, max_tokens=8, ctx_tokens=256,
                                                          threads=1))
        try:
            reply = session.send("Hello")
            assert reply.stats.generated_tokens > 0, o.format
        finally:
            session.close()


def test_imatrix_without_an_entry_for_an_iq_tensor_is_a_clear_error(tiny: Callable[[str], Path],
                                                                   tmp_path: Path) -> None:
    folder = tiny("llama")
    model = open_source(folder)
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    with open_gguf(Path(f16.output)) as g:
        means = {t.name: np.ones(t.shape[-1], np.float32) for t in g.tensors
                 if len(t.shape) >= 2 and t.name != "blk.1.ffn_up.weight"}
    path = save_imatrix(from_means(means, n_tokens=4), tmp_path / "partial.gguf")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidInput, match=r"blk\.1\.ffn_up\.weight is IQ2_XXS, which needs importance"):
        convert(plan_conversion(model, ["IQ2_XXS"], out, imatrix=path))
    assert list(out.iterdir()) == []  # nothing left behind
