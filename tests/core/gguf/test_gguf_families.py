"""Newer families and the text model of multimodal wrappers (issue 16): Gemma 2, SmolLM3,
Gemma3ForConditionalGeneration, Mistral3ForConditionalGeneration, Qwen3VLForConditionalGeneration,
Gemma 4 (Gemma4ForCausalLM, its MoE release, and Gemma4ForConditionalGeneration), Llama 4
(Llama4ForCausalLM, Llama4ForConditionalGeneration) and Qwen3VLMoeForConditionalGeneration.
Each converts, matches transformers and llama.cpp's own converter, loads and chats (family_check);
one runs in the default suite, the others are marked slow; the default suite also checks Llama 4's F32
log-probabilities against transformers (every layer kind in one tiny model)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from family_check import check_family
from quantpress.core.errors import UnsupportedArchitecture
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import open_source
from tiny_models import FAMILY_ARCHS

DEFAULT_RUN = ("gemma3-mm",)  # the family the default suite runs end to end (Llama 4's: ~80 s here, slow)
# Departures from llama.cpp's converter on purpose (docs/ARCHITECTURE.md): Gemma 3's exact per-layer
# sliding-window pattern from layer_types (llama.cpp otherwise assumes every 6th layer global).
DEPARTURES = {"gemma3-mm": ("gemma3.attention.sliding_window_pattern",)}
# Families whose tokenizer.* values (not only keys) are checked against llama.cpp's converter: Gemma 4's
# vocabulary is read by quantpress's own reader of tokenizer.json (tokenizer.py _gemma4_vocab).
TOKENIZER_VALUES = ("gemma4", "gemma4-mm", "gemma4-moe")


def _family(arch: str) -> object:
    return arch if arch in DEFAULT_RUN else pytest.param(arch, marks=pytest.mark.slow)


@pytest.mark.parametrize("arch", [_family(a) for a in FAMILY_ARCHS])
def test_family_end_to_end(arch: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    _, paths = check_family(tiny(arch), tmp_path, extra_keys=DEPARTURES.get(arch, ()))
    if arch in TOKENIZER_VALUES:
        with open_gguf(paths[0]) as ours, open_gguf(tmp_path / "ref.gguf") as ref:
            for key in (k for k in ref.metadata if k.startswith("tokenizer.")):
                assert list(np.atleast_1d(ours.metadata[key])) == list(np.atleast_1d(ref.metadata[key])), key


@pytest.mark.parametrize("arch", ["gemma3-mm", "mistral3", "qwen3vl", "gemma4-mm", "llama4-mm", "qwen3vlmoe"])
def test_wrapper_text_model_leaves_the_vision_tower_out(arch: str, tiny: Callable[[str], Path],
                                                        tmp_path: Path) -> None:
    """The checkpoint holds vision tensors; the plan has only the language model's, named as a
    plain causal LM's, with the text_config's sizes."""
    folder = tiny(arch)
    from quantpress.core.gguf.source import list_hf_tensors

    stored = [t.name for t in list_hf_tensors(folder)]
    assert any("vision" in n or "visual" in n for n in stored)
    plan = plan_conversion(open_source(folder), ["Q8_0"], tmp_path)
    assert all("language_model" not in t.source or t.name.startswith(("blk.", "token_embd", "output"))
               for t in plan.tensors)
    assert not any(s in t.source for t in plan.tensors for s in ("vision", "visual", "projector"))
    text = json.loads((folder / "config.json").read_text())["text_config"]
    assert plan.tensors[0].shape[-1] == text["hidden_size"]


def test_smollm3_refuses_a_no_rope_pattern_llama_cpp_does_not_run(tiny: Callable[[str], Path],
                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny("smollm3"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["no_rope_layers"] = [1, 0, 1, 1]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitecture, match=r"no_rope_layers \[1, 0, 1, 1\].*every 4th layer"):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)


def test_gemma2_writes_soft_capping_and_window(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from quantpress.core.gguf.convert import convert

    plan = plan_conversion(open_source(tiny("gemma2")), ["Q8_0"], tmp_path)
    (result,) = convert(plan)
    with open_gguf(Path(result.output)) as g:
        assert g.get("gemma2.attn_logit_softcapping") == pytest.approx(50.0)
        assert g.get("gemma2.final_logit_softcapping") == pytest.approx(30.0)
        assert g.get("gemma2.attention.sliding_window") == 32
        assert g.get("gemma2.rope.freq_base") is None  # llama.cpp's Gemma 2 converter writes none


def test_qwen3vl_writes_mrope_sections(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from quantpress.core.gguf.plan import source_metadata

    plan = plan_conversion(open_source(tiny("qwen3vl")), ["Q8_0"], tmp_path)
    kv = {k: v for k, v, _ in source_metadata(plan)}
    assert list(kv["qwen3vl.rope.dimension_sections"]) == [8, 12, 12, 0]
    assert kv["qwen3vl.n_deepstack_layers"] == 1


@pytest.mark.parametrize("arch", FAMILY_ARCHS)
def test_hub_family_without_weights_plans_the_same_sizes(arch: str, tiny: Callable[[str], Path],
                                                         tmp_path: Path) -> None:
    """A Hub model described by config and tokenizer files only: tensors synthesised from config.json."""
    from tiny_models import local_and_hub

    local, hub = local_and_hub(tiny(arch), tmp_path)
    full = plan_conversion(local, ["Q4_K_M"], tmp_path)
    bare = plan_conversion(hub, ["Q4_K_M"], tmp_path)
    assert [o.tensor_types for o in bare.outputs] == [o.tensor_types for o in full.outputs]
    assert [o.file_bytes for o in bare.outputs] == [o.file_bytes for o in full.outputs]


def test_gemma4_writes_per_layer_sizes_and_rope_freqs(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """The E2B-like model: per-layer feed-forward widths (double-wide KV-shared layers), sliding/global
    head sizes, per-layer embeddings and the generated rope_freqs (1 on the 16 rotated pairs of a
    128-wide global head at partial factor 0.25, 1e30 on the other 48); the 31B-like wrapper: per-layer
    KV heads. Its F32 file matches transformers (the default suite's end-to-end Gemma 4 check)."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import source_metadata
    from tiny_models import hf_logprobs, llama_logprobs

    plan = plan_conversion(open_source(tiny("gemma4")), ["F32"], tmp_path)
    kv = {k: v for k, v, _ in source_metadata(plan)}
    assert list(kv["gemma4.feed_forward_length"]) == [512, 512, 1024, 1024]
    assert (kv["gemma4.attention.key_length"], kv["gemma4.attention.key_length_swa"]) == (128, 64)
    assert kv["gemma4.attention.shared_kv_layers"] == 2 and kv["gemma4.embedding_length_per_layer_input"] == 64
    assert kv["tokenizer.ggml.model"] == "gemma4" and "tokenizer.ggml.pre" not in kv
    names = {t.name for t in plan.tensors}
    assert "blk.3.attn_k.weight" not in names and "blk.1.attn_k.weight" in names  # layers 2, 3 share KV
    assert {"per_layer_token_embd.weight", "blk.0.inp_gate.weight", "blk.0.layer_output_scale.weight"} <= names
    (result,) = convert(plan)
    with open_gguf(Path(result.output)) as g:
        freqs = np.array(g.raw("rope_freqs.weight"))
    assert freqs.shape == (64,) and (freqs[:16] == 1).all() and (freqs[16:] == np.float32(1e30)).all()
    ids = [int(i) for i in np.random.default_rng(1).integers(3, 512, 64)]
    diff = np.abs(llama_logprobs(Path(result.output), ids) - hf_logprobs(tiny("gemma4"), ids)).max()
    assert diff < 0.01, diff

    wrapper = plan_conversion(open_source(tiny("gemma4-mm")), ["Q8_0"], tmp_path)
    kv = {k: v for k, v, _ in source_metadata(wrapper)}
    assert list(kv["gemma4.attention.head_count_kv"]) == [2, 1, 2, 1]
    assert "blk.1.attn_v.weight" not in {t.name for t in wrapper.tensors}  # attention_k_eq_v: values are keys

    moe = plan_conversion(open_source(tiny("gemma4-moe")), ["Q8_0"], tmp_path)
    shapes = {t.name: t.shape for t in moe.tensors}
    assert shapes["blk.0.ffn_gate_up_exps.weight"] == (4, 256, 256)  # gate and up kept fused, as llama.cpp
    assert shapes["blk.0.ffn_gate_inp.scale"] == (256,) and shapes["blk.0.ffn_down_exps.scale"] == (4,)
    kv = {k: v for k, v, _ in source_metadata(moe)}
    assert (kv["gemma4.expert_count"], kv["gemma4.expert_used_count"]) == (4, 2)


@pytest.mark.parametrize(("change", "message"), [
    ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}, "rope_type 'linear'"),
    ({"per_layer_config": {"1": {"head_dim": 128}, "3": {"head_dim": 256}}}, "layer 3 other sizes"),
])
def test_gemma4_refuses_what_llama_cpp_cannot_run(change: dict[str, object], message: str,
                                                  tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny("gemma4"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(UnsupportedArchitecture, match=message):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)


def test_llama4_fixture_has_every_layer_kind(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """The tiny Llama 4 holds dense and MoE layers, RoPE (chunked) and NoPE (global) layers, and its
    experts fused as the releases store them; the plan writes them as llama.cpp's layers."""
    folder = tiny("llama4")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["moe_layers"] == [1, 3] and cfg["no_rope_layers"] == [1, 1, 1, 0]
    assert cfg["layer_types"] == ["chunked_attention"] * 3 + ["full_attention"]
    names = {t.name: t.shape for t in plan_conversion(open_source(folder), ["Q8_0"], tmp_path).tensors}
    assert {f"blk.{i}.ffn_gate.weight" for i in (0, 2)} <= set(names)
    for i in (1, 3):
        assert names[f"blk.{i}.ffn_gate_exps.weight"] == (4, 128, 256)
        assert names[f"blk.{i}.ffn_down_exps.weight"] == (4, 256, 128)
        assert f"blk.{i}.ffn_up_shexp.weight" in names and f"blk.{i}.ffn_gate.weight" not in names
    assert names["rope_freqs.weight"] == (32,)


def test_llama4_f32_matches_transformers(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """The default suite's end-to-end check of Llama 4 (the full family check is slow): dense and MoE,
    RoPE and NoPE layers, fused experts and rope_freqs, against transformers' log-probabilities."""
    import numpy as np
    from quantpress.core.gguf.convert import convert
    from tiny_models import hf_logprobs, llama_logprobs

    folder = tiny("llama4")
    (result,) = convert(plan_conversion(open_source(folder), ["F32"], tmp_path))
    ids = [int(i) for i in np.random.default_rng(1).integers(3, 49152, 64)]
    assert np.abs(llama_logprobs(Path(result.output), ids) - hf_logprobs(folder, ids)).max() < 0.01


@pytest.mark.parametrize(("key", "value", "message"), [
    ("no_rope_layers", [1, 0, 1, 1], r"no_rope_layers \[1, 0, 1, 1\] differs.*\[1, 1, 1, 0\]"),
    ("attention_chunk_size", 4096, r"attention_chunk_size 4096 differs.*8192"),
    ("moe_layers", [0, 1, 2, 3], r"moe_layers \[0, 1, 2, 3\] differs.*\[1, 3\]"),
    ("use_qk_norm", False, r"use_qk_norm False differs.*q/k norm on with 4 experts"),
])
def test_llama4_refuses_what_llama_cpp_runs_otherwise(key: str, value: object, message: str,
                                                      tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny("llama4"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitecture, match=message):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)


def test_llama4_accepts_how_release_configs_spell_the_defaults(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """An empty no_rope_layers and no layer_types/moe_layers (transformers derives them), tuning given as a
    number: the model llama.cpp runs, so it plans."""
    folder = tmp_path / "m"
    shutil.copytree(tiny("llama4"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("layer_types", "moe_layers"):
        del cfg[key]
    cfg.update(no_rope_layers=[], attn_temperature_tuning=4)
    (folder / "config.json").write_text(json.dumps(cfg))
    plan = plan_conversion(open_source(folder), ["Q8_0"], tmp_path)
    assert "blk.1.ffn_gate_exps.weight" in {t.name for t in plan.tensors}


def test_qwen3vlmoe_reads_transformers_own_expert_layout(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """transformers 5.25 saves Qwen3-VL-MoE's experts untransposed ([E, 2F, D], [E, D, F]) and loads both
    layouts; both convert to the same GGUF tensors as the released layout."""
    from quantpress.core.gguf.convert import convert
    from tiny_models import _transpose_experts

    release = tiny("qwen3vlmoe")
    memory = tmp_path / "memory"
    shutil.copytree(release, memory)
    _transpose_experts(memory)
    files = []
    for i, f in enumerate((release, memory)):
        (tmp_path / f"out{i}").mkdir()
        files.append(Path(convert(plan_conversion(open_source(f), ["F32"], tmp_path / f"out{i}"))[0].output))
    with open_gguf(files[0]) as a, open_gguf(files[1]) as b:
        assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
        for t in a.tensors:
            assert (a.raw(t.name) == b.raw(t.name)).all(), t.name


def test_qwen3vlmoe_refuses_dense_layers(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny("qwen3vlmoe"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["mlp_only_layers"] = [0]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitecture, match=r"dense layers.*every layer MoE"):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)
