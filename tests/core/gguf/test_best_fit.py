"""Types chosen for a target (core/gguf/best_fit.py) on a tiny real model: the plan keeps its budget
(file size exactly, memory by the estimator), only types the rows allow, converts to exactly the planned
bytes, loads and runs in llama.cpp, and replays from its sidecar to the same file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.errors import InvalidInput
from quantpress.core.gguf import layout, loss_cache
from quantpress.core.gguf.best_fit import CANDIDATES, candidates_for, plan_best_fit
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import MIXED_FORMAT, ConversionPlan, plan_conversion
from quantpress.core.gguf.source import open_source
from quantpress.core.gguf.targets import Target, parse_size
from quantpress.core.hardware import detect_hardware


@pytest.fixture(scope="module")
def model(tiny: Callable[[str], Path]) -> Path:
    return tiny("llama")  # rows of 256: every candidate type applies


def test_parse_size() -> None:
    assert parse_size("4.5GB") == 4_500_000_000
    assert parse_size("2GiB") == parse_size("2G") == 2 * 1024**3
    assert parse_size("700 MB") == 700_000_000
    assert parse_size("12345") == 12345
    for bad in ("4.5 parsecs", "", "-3GB", "0"):
        with pytest.raises(InvalidInput):
            parse_size(bad)


def test_candidates_follow_the_row_length() -> None:
    assert candidates_for("blk.0.attn_q.weight", (256, 256)) == CANDIDATES
    wide = candidates_for("blk.0.attn_q.weight", (576, 576))  # SmolLM2's rows: 32-block types only
    assert wide and all(layout.block_size(t) == 32 for t in wide)
    assert candidates_for("blk.0.attn_norm.weight", (256,)) == ()


def test_size_target_is_kept_and_the_file_is_what_the_plan_says(model: Path, tmp_path: Path) -> None:
    info = open_source(model)
    fixed = plan_conversion(info, ["Q4_K_M"], tmp_path, policy="llama.cpp").outputs[0]
    plan = plan_best_fit(info, Target.size(fixed.file_bytes), tmp_path)
    (out,) = plan.outputs
    assert out.format == MIXED_FORMAT and plan.target is not None and plan.target.kind == "size"
    assert fixed.file_bytes * 0.995 <= out.file_bytes <= fixed.file_bytes
    shapes = {t.name: t.shape for t in plan.tensors}
    assert all(shapes[n][-1] % layout.block_size(t) == 0 for n, t in out.tensor_types.items())
    assert {t for n, t in out.tensor_types.items() if len(shapes[n]) == 1} == {"F32"}
    (res,) = convert(plan)
    assert Path(res.output).stat().st_size == out.file_bytes

    from llama_cpp import Llama

    # logits_all: scores of every position are set (without it only the last row is; the rest is garbage)
    llm = Llama(res.output, n_ctx=64, logits_all=True, verbose=False)
    llm.eval([1, 5, 9, 13])
    assert np.isfinite(np.asarray(llm.scores[:4])).all()
    llm.close()

    # replay: the sidecar's plan writes the same bytes again
    saved = ConversionPlan.from_dict(json.loads(Path(res.output + ".json").read_text())["plan"])
    assert saved.target == plan.target and saved.outputs[0].tensor_types == out.tensor_types
    again = tmp_path / "again"
    again.mkdir()
    import dataclasses

    replay = dataclasses.replace(saved, outputs=(dataclasses.replace(saved.outputs[0], path=str(again / "r.gguf")),))
    (res2,) = convert(replay)
    assert Path(res2.output).read_bytes() == Path(res.output).read_bytes()


@pytest.mark.slow
def test_bigger_targets_never_expect_more_loss(model: Path, tmp_path: Path) -> None:
    info = open_source(model)
    sizes = [o.file_bytes for o in plan_conversion(info, ["Q3_K_S", "Q4_K_M", "Q6_K"], tmp_path).outputs]
    losses = [plan_best_fit(info, Target.size(n), tmp_path).target.expected_kld for n in sizes]  # type: ignore[union-attr]
    assert losses[0] >= losses[1] >= losses[2]
    assert losses[0] > losses[2]


@pytest.mark.slow
def test_bpw_target(model: Path, tmp_path: Path) -> None:
    info = open_source(model)
    plan = plan_best_fit(info, Target.bpw(4.0), tmp_path)
    shapes = {t.name: t.shape for t in plan.tensors}
    data = sum(layout.tensor_nbytes(shapes[n], t) for n, t in plan.outputs[0].tensor_types.items())
    n_params = sum(t.n_elements for t in plan.tensors)
    assert 3.9 <= 8 * data / n_params <= 4.0


@pytest.mark.slow
def test_fit_ram_stays_within_the_budget(model: Path, tmp_path: Path) -> None:
    from quantpress.core.estimate import estimate
    from quantpress.core.memory import RuntimeConfig

    info = open_source(model)
    hw = detect_hardware()
    est = {e.format: e.cpu_only_bytes for e in estimate(info, hw, RuntimeConfig(n_ctx=256),
                                                         formats=["Q3_K_S", "Q8_0"]).formats}
    budget = (est["Q3_K_S"] + est["Q8_0"]) // 2
    plan = plan_best_fit(info, Target.fit("ram", ctx_tokens=256, memory_bytes=budget), tmp_path, hardware=hw)
    assert plan.target is not None and 0.97 * budget <= plan.target.memory_bytes <= budget
    assert set(plan.outputs[0].tensor_types.values()) - {"F32", "Q8_0"}  # a real choice, not the maximum
    with pytest.raises(InvalidInput, match="nothing fits"):
        plan_best_fit(info, Target.fit("ram", ctx_tokens=256, memory_bytes=est["Q3_K_S"] // 4), tmp_path, hardware=hw)


def test_too_small_a_size_is_refused_with_the_smallest_possible(model: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="too small for this model"):
        plan_best_fit(open_source(model), Target.size(100_000), tmp_path)


@pytest.mark.slow
def test_fit_gpu_counts_what_the_gpu_holds(model: Path, tmp_path: Path) -> None:
    from quantpress.core.estimate import estimate_output
    from quantpress.core.memory import RuntimeConfig

    info = open_source(model)
    hw = detect_hardware().with_overrides(vram_gib=1.0)
    plan = plan_best_fit(info, Target.fit("gpu", ctx_tokens=256, kv_type="q8_0"), tmp_path, hardware=hw)
    assert plan.target is not None and plan.target.budget_bytes == 1024**3
    out = plan.outputs[0]
    est = estimate_output(info, hw, RuntimeConfig(n_ctx=256, kv_type="q8_0"), {t.name: t.shape for t in plan.tensors},
                out.tensor_types, out.file_bytes, out.metadata_bytes)
    assert est.fit == "gpu" and est.vram_bytes == plan.target.memory_bytes <= 1024**3


@pytest.mark.slow
def test_fisher_sensitivity_on_request(model: Path, tmp_path: Path) -> None:
    info = open_source(model)
    size = plan_conversion(info, ["Q4_K_M"], tmp_path).outputs[0].file_bytes
    plan = plan_best_fit(info, Target.size(size), tmp_path, sensitivity="fisher")
    assert plan.target is not None and plan.target.sensitivity == "fisher"
    assert plan.outputs[0].file_bytes <= size
    with pytest.raises(InvalidInput, match="unknown sensitivity"):
        plan_best_fit(info, Target.size(size), tmp_path, sensitivity="guess")


def on_q4_1_grid(src: Path, dst: Path) -> Path:
    """A copy of model ``src`` whose 2-D weights lie on llama.cpp's min/max Q4_1 grid (as the demo
    model's do), saved in F32: Q4_1 and Q5_1 store them exactly."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    for f in dst.glob("*.safetensors"):
        tensors = load_file(str(f))
        for name, w in tensors.items():
            x = w.float()
            if x.ndim == 2:
                b = x.reshape(-1, 32)
                lo, hi = b.min(1, keepdim=True).values, b.max(1, keepdim=True).values
                d = ((hi - lo) / 15).half().float().clamp_min(1e-6)
                m = lo.half().float()
                x = (torch.round((b - m) / d).clamp(0, 15) * d + m).reshape(x.shape)
            tensors[name] = x.contiguous()
        save_file(tensors, str(f), metadata={"format": "pt"})
    return dst


@pytest.mark.slow
def test_a_size_target_is_met_with_lossless_bytes_when_nothing_else_is_left(model: Path, tmp_path: Path) -> None:
    """Weights on a grid: past the size where every tensor is stored exactly, the leftover buys
    dearer exact types (Q4_1 -> Q5_1), so the file is the size asked for (within 0.5%, never above)
    at no more expected loss, and converts to exactly the planned bytes."""
    info = open_source(on_q4_1_grid(model, tmp_path / "grid"))
    exact_sizes = [plan_conversion(info, [f], tmp_path).outputs[0].file_bytes for f in ("Q4_1", "Q5_1")]
    target = (exact_sizes[0] + exact_sizes[1]) // 2
    plan = plan_best_fit(info, Target.size(target), tmp_path)
    out = plan.outputs[0]
    assert plan.target is not None and plan.target.expected_kld == 0.0
    assert target * (1 - 0.005) <= out.file_bytes <= target
    types = out.tensor_types
    assert "Q5_1" in types.values() and "Q4_1" in types.values()
    assert not any("most accurate choice" in w for w in plan.warnings)
    (res,) = convert(plan)
    assert Path(res.output).stat().st_size == out.file_bytes
    # planned again from the kept losses (core/gguf/loss_cache.py) without the kept lossless checks: those
    # are made again, with the importance worked out anew, and come out the same
    (entry,) = loss_cache.cache_folder().glob("*.json")
    kept = json.loads(entry.read_text())
    assert kept["exact"] and all(ok for _, _, ok in kept["exact"])
    entry.write_text(json.dumps({**kept, "exact": []}))
    assert plan_best_fit(info, Target.size(target), tmp_path).outputs == plan.outputs
    assert json.loads(entry.read_text())["exact"] == kept["exact"]
    small = plan_best_fit(info, Target.size(exact_sizes[0] + (exact_sizes[1] - exact_sizes[0]) // 8), tmp_path)
    assert small.outputs[0].file_bytes < out.file_bytes and small.target.expected_kld == 0.0  # type: ignore[union-attr]
    # a fit target keeps its headroom: memory spent for nothing measured is not bought
    fit = plan_best_fit(info, Target.fit("ram", ctx_tokens=256, memory_bytes=1 << 30), tmp_path, hardware=detect_hardware())
    assert "Q5_1" not in fit.outputs[0].tensor_types.values() and fit.target.expected_kld == 0.0  # type: ignore[union-attr]
    assert any("most accurate choice" in w for w in fit.warnings)


@pytest.mark.slow
def test_bytes_bought_for_nothing_are_checked_on_every_row(model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The leftover of a size target buys dearer types measured lossless on the sampled rows only; each
    purchase is checked on all rows, and one that fails (here: told so for one tensor's Q5_1) is not
    bought: the plan is solved again without it, still within the target."""
    from quantpress.core.gguf import best_fit

    info = open_source(on_q4_1_grid(model, tmp_path / "grid"))
    exact_sizes = [plan_conversion(info, [f], tmp_path).outputs[0].file_bytes for f in ("Q4_1", "Q5_1")]
    target = (exact_sizes[0] + exact_sizes[1]) // 2
    first = plan_best_fit(info, Target.size(target), tmp_path).outputs[0].tensor_types
    victim = next(n for n, t in first.items() if t == "Q5_1")
    checker, asked = best_fit._exact_checker, []

    def told(*args, **kwargs):  # type: ignore[no-untyped-def]
        exact = checker(*args, **kwargs)

        def checked(choices: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
            asked.extend(choices)
            return {c: ok and c != (victim, "Q5_1") for c, ok in exact(choices).items()}

        return checked

    monkeypatch.setattr(best_fit, "_exact_checker", told)
    plan = plan_best_fit(info, Target.size(target), tmp_path, reuse=False)  # not the first plan's checks
    types = plan.outputs[0].tensor_types
    assert (victim, "Q5_1") in asked and all(t == "Q5_1" for _, t in asked)
    assert types[victim] == "Q4_1" and "Q5_1" in types.values()
    assert target * (1 - 0.005) <= plan.outputs[0].file_bytes <= target
