"""Per-expert calibration statistics against a direct computation: the whole model loaded by
transformers (its own checkpoint loading fuses the experts), each MoE block's input captured, routed
again with the block's own router, and every expert's input and intermediate activation recomputed
in float64 numpy from its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from quantpress.core.calibration.collect import calibration_chunks, compute_imatrix
from quantpress.core.calibration.experts import FAMILIES, by_block, fallback_note
from quantpress.core.calibration.imatrix import Imatrix
from quantpress.core.calibration.text import default_calibration_text

TEXT = default_calibration_text()[:30_000]
N_CTX, MAX_TOKENS = 64, 256


def _silu(z: np.ndarray) -> np.ndarray:
    return z / (1.0 + np.exp(-z))


def _intermediate(arch: str, experts: Any, x: np.ndarray, e: int) -> np.ndarray:
    """The expert's intermediate activation, written from the families' definitions (not the module)."""
    w = experts.gate_up_proj[e].detach().double().numpy()
    if arch == "gptoss":  # [D, 2F], bias, gate/up interleaved, clamped SwiGLU with (up + 1)
        h = x @ w + experts.gate_up_proj_bias[e].detach().double().numpy()
        gate, up = np.minimum(h[:, ::2], experts.limit), np.clip(h[:, 1::2], -experts.limit, experts.limit)
        return (up + 1) * gate / (1.0 + np.exp(-gate * experts.alpha))
    h = x @ w.T  # [2F, D]: gate rows, then up rows; every other family here is SiLU
    f = h.shape[1] // 2
    return _silu(h[:, :f]) * h[:, f:]


def _reference(arch: str, folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """GGUF name -> (Σ x² [E, n], counts [E]) from the whole model."""
    import torch
    from transformers import AutoModelForCausalLM

    chunks, _ = calibration_chunks(folder, TEXT, n_ctx=N_CTX, max_tokens=MAX_TOKENS)
    kwargs: dict[str, Any] = {"attn_implementation": "eager"} if arch == "gptoss" else {}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    blocks: dict[int, tuple[Any, list[Any]]] = {}
    for i, layer in enumerate(model.model.layers):
        for _, module in layer.named_modules():
            experts = getattr(module, "experts", None)
            if experts is not None and type(experts).__name__ in FAMILIES:
                seen: list[Any] = []
                module.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0].detach()))
                blocks[i] = (module, seen)
    assert blocks, f"{arch}: no routed experts found"
    with torch.no_grad():
        model(torch.tensor(chunks.rows))
    out = {}
    for i, (block, seen) in blocks.items():
        router = getattr(block, "gate", None) or block.router
        x = torch.cat([s.reshape(-1, s.shape[-1]) for s in seen])
        with torch.no_grad():
            index = router(x)[2].reshape(x.shape[0], -1).numpy()
        xs = x.double().numpy()
        n_expert = block.experts.gate_up_proj.shape[0]
        inputs, inter, counts = [], [], []
        for e in range(n_expert):
            xe = xs[(index == e).any(axis=1)]
            h = _intermediate(arch, block.experts, xe, e)
            inputs.append((xe * xe).sum(0))
            inter.append((h * h).sum(0))
            counts.append(len(xe))
        c = np.array(counts, np.float64)
        for t in ("ffn_gate_exps", "ffn_up_exps"):
            out[f"blk.{i}.{t}.weight"] = (np.array(inputs), c)
        out[f"blk.{i}.ffn_down_exps.weight"] = (np.array(inter), c)
    return out


def _check_family(tiny: Any, arch: str) -> None:
    folder = tiny(arch)
    im = compute_imatrix(folder, TEXT, n_ctx=N_CTX, max_tokens=MAX_TOKENS, batch_chunks=3, device="cpu")
    ref = _reference(arch, folder)
    assert {n for n in im.names if "_exps." in n} == set(ref)
    for name, (sums, counts) in ref.items():
        np.testing.assert_array_equal(im.counts[name], counts, err_msg=name)  # the same tokens routed
        np.testing.assert_allclose(im.sums[name], sums, rtol=2e-3, atol=1e-6 * float(sums.max()), err_msg=name)
        assert counts.sum() == 2 * MAX_TOKENS  # every family here routes each token to 2 experts


def test_mixtral_per_expert_statistics(tiny) -> None:  # type: ignore[no-untyped-def]
    """Default-run check: per-expert w1/w2/w3 checkpoint under block_sparse_moe, 8 experts."""
    _check_family(tiny, "mixtral")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen3moe", "qwen3moe-fused", "qwen2moe", "olmoe", "glm4moe", "gptoss", "deepseekv3"])
def test_per_expert_statistics(tiny, arch: str) -> None:  # type: ignore[no-untyped-def]
    _check_family(tiny, arch)


def test_shared_experts_are_dense_linears(tiny) -> None:  # type: ignore[no-untyped-def]
    im = compute_imatrix(tiny("qwen2moe"), TEXT, n_ctx=N_CTX, max_tokens=128, device="cpu")
    for kind in ("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"):
        assert im.sums[f"blk.0.{kind}.weight"].shape[0] == 1 and im.counts[f"blk.0.{kind}.weight"][0] == 128


def test_experts_without_tokens_fall_back_and_are_named() -> None:
    rng = np.random.default_rng(0)
    sums = rng.random((4, 8)) * 10
    counts = np.array([10, 0, 30, 0], np.float32)
    sums[[1, 3]] = 0
    im = Imatrix({"blk.2.ffn_down_exps.weight": sums.astype(np.float32),
                  "blk.2.ffn_up_exps.weight": sums.astype(np.float32),
                  "blk.10.ffn_up_exps.weight": sums.astype(np.float32)},
                 {"blk.2.ffn_down_exps.weight": counts, "blk.2.ffn_up_exps.weight": counts,
                  "blk.10.ffn_up_exps.weight": np.array([5, 5, 0, 5], np.float32)})
    assert im.experts_without_tokens == {"blk.10.ffn_up_exps.weight": (2,), "blk.2.ffn_down_exps.weight": (1, 3),
                                         "blk.2.ffn_up_exps.weight": (1, 3)}
    v = im.importance("blk.2.ffn_down_exps.weight")
    assert v is not None
    rows = v.reshape(4, 8)
    pooled = (sums[0] + sums[2]) / 40  # Σ sums / Σ counts over the experts that saw tokens
    np.testing.assert_allclose(rows[1], pooled, rtol=1e-6)
    np.testing.assert_allclose(rows[3], pooled, rtol=1e-6)
    np.testing.assert_allclose(rows[2], sums[2] / 30, rtol=1e-6)
    blocks = by_block(im.experts_without_tokens)
    assert blocks == {"blk.2": (1, 3), "blk.10": (2,)}
    assert "blk.2: 1, 3; blk.10: 2" in fallback_note(blocks)
    nobody = Imatrix({"x": np.zeros((2, 3), np.float32)}, {"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(nobody.importance("x"), np.ones(6, np.float32))  # llama.cpp's 1s


def test_narrow_text_names_uncovered_experts_in_the_result(tiny, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A text that cannot reach every expert (one word repeated: every token's hidden state, and so its
    route, is the same): the conversion still works and names them (CLI --json)."""
    import json

    from quantpress.core.cli import main
    from quantpress.core.gguf.convert import ConversionResult

    text = tmp_path / "short.txt"
    text.write_text("hello " * 700, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["convert", str(tiny("mixtral")), "-f", "Q4_K_M", "--calibration", str(text), "--out", str(out),
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    uncovered = result["uncalibrated_experts"]
    assert uncovered and all(k.startswith("blk.") and v for k, v in uncovered.items()), result
    assert Path(result["output"]).stat().st_size == result["file_bytes"]
    note = ConversionResult("x", "Q4_K_M", 1, 1.0, 1, uncalibrated_experts={"blk.0": (1, 5)}).notes
    assert note == (fallback_note({"blk.0": (1, 5)}),) and "blk.0: 1, 5" in note[0]
    assert ConversionResult("x", "Q4_K_M", 1, 1.0, 1).notes == ()


def _kind(name: str) -> Any:
    from quantpress.core.choices import CalibrationKind

    return CalibrationKind[name]


@pytest.mark.slow
def test_moe_imatrix_files_round_trip_and_llama_cpp_takes_them(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A computed MoE imatrix written as GGUF reads back with the same per-expert rows (legacy .dat:
    the same values, flattened, as llama.cpp's .dat has one row per tensor); llama.cpp's
    llama_model_quantize takes them with the per-expert layout and quantizes each expert with its own
    row: its expert tensors are byte-identical to quantpress's ggml engine given the same file, and
    differ when the experts' rows are swapped."""
    from quantpress.core.calibration.imatrix import load_imatrix, save_imatrix
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.reference import llama_quantize
    from quantpress.core.gguf.request import ConversionRequest
    from quantpress.core.inspect import open_model

    folder = tiny("qwen3moe-fused")  # 256-wide experts: k-quants on every expert matrix
    im = compute_imatrix(folder, TEXT, n_ctx=N_CTX, max_tokens=MAX_TOKENS, device="cpu")
    experts = [n for n in im.names if "_exps." in n]
    assert experts and all(im.sums[n].shape[0] == 4 for n in experts)
    path = save_imatrix(im, tmp_path / "moe.imatrix.gguf")
    back = load_imatrix(path)
    for n in im.names:
        np.testing.assert_array_equal(back.sums[n], im.sums[n])
        np.testing.assert_array_equal(back.counts[n], im.counts[n])
    dat = load_imatrix(save_imatrix(im, tmp_path / "moe.imatrix.dat", "dat"))
    for n in im.names:
        np.testing.assert_allclose(dat.importance(n), im.importance(n), rtol=1e-6)

    model = open_model(folder)
    f32, ours = tmp_path / "f32", tmp_path / "ours"
    f32.mkdir()
    ours.mkdir()
    (src,) = convert(ConversionRequest(formats=("F32",), out=f32, calibration=_kind("NONE")).plan(model))
    (mine,) = convert(ConversionRequest(formats=("Q4_K_M",), out=ours, calibration=_kind("IMATRIX"),
                                        calibration_path=path, engine="ggml").plan(model))
    ref, swapped = tmp_path / "ref.gguf", tmp_path / "swapped.gguf"
    llama_quantize(Path(src.output), ref, "Q4_K_M", imatrix={n: back.importance(n) for n in back.names})
    rolled = {n: np.roll(back.importance(n).reshape(back.sums[n].shape[0], -1), 1, axis=0)  # type: ignore[union-attr]
              for n in back.names}
    llama_quantize(Path(src.output), swapped, "Q4_K_M", imatrix=rolled)
    with open_gguf(ref) as r, open_gguf(Path(mine.output)) as g, open_gguf(swapped) as s:
        for n in experts:
            assert r.tensor(n).ggml_type == g.tensor(n).ggml_type == "Q4_K" or n.endswith("down_exps.weight"), n
            assert r.tensor(n).ggml_type == g.tensor(n).ggml_type, n
            assert bytes(r.raw(n)) == bytes(g.raw(n)), n
        assert any(bytes(r.raw(n)) != bytes(s.raw(n)) for n in experts)
