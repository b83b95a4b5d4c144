"""Mixture-of-experts families end to end: tiny random models of the real transformers classes
converted to F32, Q8_0, Q4_K_M and Q2_K, loaded by llama-cpp-python, compared with transformers'
log-probabilities and with llama.cpp's own converter (tensor names, shapes, metadata keys), and
chatted with. One family runs in the default suite; the others are marked slow."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from family_check import OUR_KEYS, check_family
from llama_reference import reference_gguf
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf.arch import all_specs
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.mixes import MixContext, tensor_types
from quantpress.core.gguf.moe import param_counts
from quantpress.core.gguf.plan import ConversionPlan, plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import HFReader, open_source
from tiny_models import MOE_ARCHS

DEFAULT_RUN = "qwen3moe"  # the family the default suite runs end to end


def _convert(folder: Path, out: Path, formats: list[str]) -> tuple[ConversionPlan, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_conversion(open_source(folder), formats, out)
    return plan, [Path(r.output) for r in convert(plan)]


def _family(arch: str) -> object:
    return arch if arch == DEFAULT_RUN else pytest.param(arch, marks=pytest.mark.slow)


@pytest.mark.parametrize("arch", [_family(a) for a in MOE_ARCHS])
def test_moe_family_end_to_end(arch: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Converts, matches transformers and llama.cpp's converter, loads, chats (family_check); routers F32."""
    plan, _ = check_family(tiny(arch), tmp_path)
    for o in plan.outputs:
        assert all(ty == "F32" for n, ty in o.tensor_types.items() if "ffn_gate_inp" in n), o.format


def test_fused_and_per_expert_checkpoints_write_the_same_tensors(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """transformers 5's fused gate_up_proj [E, 2F, D] split at F equals the per-expert tensors stacked."""
    import torch
    import transformers
    from safetensors.torch import save_file

    folder = tiny("qwen3moe")
    fused = tmp_path / "fused"
    shutil.copytree(folder, fused)
    for f in fused.glob("*.safetensors"):
        f.unlink()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in state)
    save_file(state, str(fused / "model.safetensors"), metadata={"format": "pt"})
    _, (a,) = _convert(folder, tmp_path / "a", ["Q8_0"])
    _, (b,) = _convert(fused, tmp_path / "b", ["Q8_0"])
    with open_gguf(a) as ga, open_gguf(b) as gb:
        assert [t.name for t in ga.tensors] == [t.name for t in gb.tensors]
        for t in ga.tensors:
            assert np.array_equal(ga.raw(t.name), gb.raw(t.name)), t.name


def test_experts_are_read_one_expert_at_a_time(tiny: Callable[[str], Path]) -> None:
    """Streaming: a stacked expert tensor arrives as slabs that never span two experts."""
    folder = tiny("qwen3moe")
    plan = plan_conversion(open_source(folder), ["Q8_0"], folder.parent / "unused")
    reader = HFReader(folder, plan.config, None)
    try:
        for t in (t for t in plan.tensors if "_exps" in t.name):
            rows = [x.shape[0] for x in reader.slabs(t, max_rows=10**9)]
            assert rows == [t.shape[1]] * t.shape[0], t.name
    finally:
        reader.close()


def test_missing_expert_is_a_clear_error(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path / "m"
    shutil.copytree(tiny("qwen3moe"), folder)
    path = folder / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if ".experts.3." not in k}
    save_file(state, str(path), metadata={"format": "pt"})
    with pytest.raises(InvalidModel, match=r"experts 0\.\.2 \(3\), the config says 4"):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)


def test_moe_type_rules_follow_llama_quantize() -> None:
    """llama.cpp's MoE rules: routers F32; with 8 experts attn_k/attn_v Q8_0 and attn_output Q5_K;
    ffn_down of experts and shared experts takes its layer from the name."""
    n_layers = 8
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (1000, 256), "output.weight": (1000, 256)}
    for i in range(n_layers):
        shapes |= {f"blk.{i}.attn_q.weight": (256, 256), f"blk.{i}.attn_k.weight": (64, 256),
                   f"blk.{i}.attn_v.weight": (64, 256), f"blk.{i}.attn_output.weight": (256, 256),
                   f"blk.{i}.ffn_gate_inp.weight": (8, 256), f"blk.{i}.ffn_gate_exps.weight": (8, 512, 256),
                   f"blk.{i}.ffn_up_exps.weight": (8, 512, 256), f"blk.{i}.ffn_down_exps.weight": (8, 256, 512),
                   f"blk.{i}.ffn_down_shexp.weight": (256, 512), f"blk.{i}.ffn_gate_inp_shexp.weight": (1, 256)}
    types = tensor_types(shapes, "Q4_K_M", MixContext(n_layers=n_layers, n_gqa=4, n_expert=8))
    for i in range(n_layers):
        assert types[f"blk.{i}.ffn_gate_inp.weight"] == "F32"
        assert types[f"blk.{i}.ffn_gate_inp_shexp.weight"] == "F32"
        assert types[f"blk.{i}.attn_v.weight"] == types[f"blk.{i}.attn_k.weight"] == "Q8_0"
        assert types[f"blk.{i}.attn_output.weight"] == "Q5_K"
        more = i < 1 or i >= 7 or (i - 1) % 3 == 2  # use_more_bits(i, 8) by layer index, not by visit count
        assert types[f"blk.{i}.ffn_down_exps.weight"] == ("Q6_K" if more else "Q4_K")
        assert types[f"blk.{i}.ffn_down_shexp.weight"] == ("Q6_K" if more else "Q4_K")
        assert types[f"blk.{i}.ffn_gate_exps.weight"] == "Q4_K"
    dense = tensor_types(shapes, "Q4_K_M", MixContext(n_layers=n_layers, n_gqa=4, n_expert=4))
    assert dense["blk.0.attn_k.weight"] == "Q4_K" and dense["blk.0.attn_output.weight"] == "Q4_K"


def test_param_counts_split_experts() -> None:
    counts = param_counts([("token_embd.weight", (100, 8)), ("blk.0.ffn_up_exps.weight", (4, 16, 8)),
                           ("blk.0.ffn_down_exps.weight", (4, 8, 16)), ("blk.0.ffn_gate_inp.weight", (4, 8))])
    assert (counts.total, counts.shared, counts.per_expert, counts.n_expert) == (1856, 832, 256, 4)
    assert counts.active(2) == 832 + 2 * 256
    assert counts.size_label == "4x1.1K"


def test_unsupported_moe_architecture_names_class_and_list(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny("qwen3moe"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["JambaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    supported = sorted(c for s in all_specs() for c in s.hf_classes)
    assert {"Qwen3MoeForCausalLM", "MixtralForCausalLM", "Qwen2MoeForCausalLM", "OlmoeForCausalLM", "GptOssForCausalLM",
            "DeepseekV3ForCausalLM"} <= set(supported)
    with pytest.raises(UnsupportedArchitecture, match="'JambaForCausalLM'.*supported: .*Qwen3MoeForCausalLM"):
        plan_conversion(open_source(folder), ["Q8_0"], tmp_path)


@pytest.mark.parametrize("arch", [_family(a) for a in MOE_ARCHS])
def test_hub_moe_without_weights_plans_the_same_sizes(arch: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """A Hub MoE model described by config and tokenizer files only: per-expert tensors from config.json."""
    from tiny_models import local_and_hub

    local, hub = local_and_hub(tiny(arch), tmp_path)
    full = plan_conversion(local, ["Q4_K_M", "F16"], tmp_path)
    bare = plan_conversion(hub, ["Q4_K_M", "F16"], tmp_path)
    assert [o.file_bytes for o in bare.outputs] == [o.file_bytes for o in full.outputs]
    assert [o.tensor_types for o in bare.outputs] == [o.tensor_types for o in full.outputs]


def test_weight_importance_covers_experts(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Without calibration text the importance estimate reaches the experts: gate/up one vector,
    down one row per expert, and the writer quantizes each expert with its own row."""
    from quantpress.core.gguf.convert import plan_importance

    plan = plan_conversion(open_source(tiny(DEFAULT_RUN)), ["Q4_0"], tmp_path)  # a mix whose default reads the estimate
    imatrix = plan_importance(plan)
    shapes = {t.name: t.shape for t in plan.tensors}
    n_expert, _, n_per_row = shapes["blk.0.ffn_down_exps.weight"]
    assert imatrix.importance("blk.0.ffn_gate_exps.weight").shape == (shapes["blk.0.ffn_gate_exps.weight"][-1],)
    down = imatrix.importance("blk.0.ffn_down_exps.weight")
    assert down.shape == (n_expert * n_per_row,) and np.all(down > 0)
    assert not np.allclose(down[:n_per_row], down[n_per_row:2 * n_per_row])  # experts differ


@pytest.mark.slow
def test_glm4moe_next_token_prediction_layers_as_llama_cpp_writes_them(tiny: Callable[[str], Path],
                                                                        tmp_path: Path) -> None:
    """GLM-4 MoE checkpoints store MTP blocks after the decoder (layer n_layer: a full MoE layer plus
    eh_proj, enorm, hnorm, shared_head.norm); transformers does not build them, so they are added
    here, and names, shapes and keys are compared with llama.cpp's converter; the file loads."""
    from llama_cpp import Llama
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path / "glm-mtp"
    shutil.copytree(tiny("glm4moe"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    n, h = cfg["num_hidden_layers"], cfg["hidden_size"]
    path = folder / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    last = f"model.layers.{n - 1}."
    state |= {k.replace(last, f"model.layers.{n}."): v.clone() for k, v in state.items() if k.startswith(last)}
    ones = state["model.norm.weight"]
    state |= {f"model.layers.{n}.eh_proj.weight": state[last + "self_attn.o_proj.weight"].repeat(1, 2)[:h].clone(),
              f"model.layers.{n}.enorm.weight": ones.clone(), f"model.layers.{n}.hnorm.weight": ones.clone(),
              f"model.layers.{n}.shared_head.norm.weight": ones.clone()}
    save_file(state, str(path), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**cfg, "num_nextn_predict_layers": 1}))

    plan, (ours,) = _convert(folder, tmp_path / "ours", ["F32"])
    assert any(t.name == f"blk.{n}.nextn.eh_proj.weight" for t in plan.tensors)
    ref = reference_gguf(folder, tmp_path / "ref.gguf")
    with open_gguf(ref) as r, open_gguf(ours) as g:
        assert {t.name: t.shape for t in g.tensors} == {t.name: t.shape for t in r.tensors}
        assert {k for k in g.metadata if not k.startswith(OUR_KEYS)} == set(r.metadata)
        assert g.get("glm4moe.block_count") == r.get("glm4moe.block_count") == n + 1
        assert g.get("glm4moe.nextn_predict_layers") == 1
    Llama(str(ours), n_ctx=64, verbose=False, n_threads=2).close()


def test_calibration_text_is_planned_and_awq_refuses_moe_clearly(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Calibration text runs through the router (core/calibration/experts.py, tested in
    tests/core/calibration/test_imatrix_experts.py); AWQ refuses MoE by family (tests/core/awq/test_awq_moe.py)."""
    from quantpress.core.awq.groups import arch_for

    plan = plan_conversion(open_source(tiny(DEFAULT_RUN)), ["Q4_K_M"], tmp_path, calibration="default")
    assert plan.calibration.kind == "default"
    with pytest.raises(UnsupportedArchitecture, match="'Qwen3MoeForCausalLM' \\(qwen3moe\\).*GGUF"):
        arch_for("Qwen3MoeForCausalLM")


def test_mxfp4_moe_mix_follows_llama_quantize() -> None:
    """MXFP4_MOE (llama_tensor_get_type_impl): tensors with ne[2] > 1 MXFP4 (routed experts, and
    DeepSeek's 3-D attn_k_b), every other quantizable tensor Q8_0, the output included; 1-D tensors and
    routers F32; a row that is no multiple of 32 falls back to F16."""
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (1000, 256), "output.weight": (1000, 256), "blk.0.attn_q.weight": (256, 256),
        "blk.0.attn_sinks.weight": (4,), "blk.0.ffn_gate_inp.weight": (4, 256), "blk.0.ffn_gate_exps.bias": (4, 128),
        "blk.0.ffn_gate_exps.weight": (4, 128, 256), "blk.0.ffn_down_exps.weight": (4, 256, 128),
        "blk.0.attn_k_b.weight": (4, 128, 64), "blk.0.ffn_up_exps.weight": (4, 128, 48)}
    types = tensor_types(shapes, "MXFP4_MOE", MixContext(n_layers=1, n_gqa=2, n_expert=4))
    assert types == {"token_embd.weight": "Q8_0", "output.weight": "Q8_0", "blk.0.attn_q.weight": "Q8_0",
                     "blk.0.attn_sinks.weight": "F32", "blk.0.ffn_gate_inp.weight": "F32",
                     "blk.0.ffn_gate_exps.bias": "F32", "blk.0.ffn_gate_exps.weight": "MXFP4",
                     "blk.0.ffn_down_exps.weight": "MXFP4", "blk.0.attn_k_b.weight": "MXFP4",
                     "blk.0.ffn_up_exps.weight": "F16"}


def test_mxfp4_from_floats_is_ggmls_quantizer() -> None:
    """bf16 experts kept MXFP4 are quantized by ggml's own quantize_mxfp4 (llama-quantize's bytes), and
    decode back within one E2M1 step of the block's scale."""
    import gguf
    from quantpress.core.quant import engine_for, quantize_tensor

    x = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
    assert engine_for("MXFP4", has_importance=False) == "ggml"
    q = quantize_tensor(x, "MXFP4", None, threads=2)
    assert q.shape == (8, 256 // 32 * 17)
    back = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.MXFP4).reshape(8, 256)
    block_max = np.abs(x.reshape(8, 8, 32)).max(axis=-1, keepdims=True)
    assert np.all(np.abs(back - x).reshape(8, 8, 32) <= block_max / 3 + 1e-6)
