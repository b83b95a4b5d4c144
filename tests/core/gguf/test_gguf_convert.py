"""The converter end to end: tiny models of every architecture, written and loaded by the real
llama-cpp-python, compared with transformers; exact plan sizes; chat; the demo model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.mixes import MIXES
from quantpress.core.gguf.plan import ConversionPlan, plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import open_source
from tiny_models import ARCHS, VOCAB_SIZE, hf_logprobs, llama_logprobs

PROSE = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
         "movable metal type, oil-based inks and a wooden press adapted from wine making. Within fifty years "
         "printers were working in more than two hundred cities across Europe, the price of books fell sharply, "
         "and pamphlets, maps and scientific tables travelled further and faster than ever before.")


def _convert(folder: Path, formats: list[str], out: Path, **kw: object) -> tuple[ConversionPlan, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_conversion(open_source(folder), formats, out, **kw)  # type: ignore[arg-type]
    results = convert(plan)
    return plan, [Path(r.output) for r in results]


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_matches_transformers(arch: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tiny(arch)
    _, (path,) = _convert(folder, ["F32"], tmp_path)
    ids = [int(i) for i in np.random.default_rng(1).integers(3, VOCAB_SIZE, 64)]
    diff = np.abs(llama_logprobs(path, ids) - hf_logprobs(folder, ids)).max()
    assert diff < 0.01, f"{arch}: max |Δ log p| = {diff}"


def test_every_format_has_the_planned_size_and_loads(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """All mixes in one pass (one read per source tensor) on a model with 256-multiple rows."""
    folder = tiny("llama")
    plan, paths = _convert(folder, list(MIXES), tmp_path)
    for o, path in zip(plan.outputs, paths, strict=False):
        assert path.stat().st_size == o.file_bytes, o.format
        with open_gguf(path) as g:
            assert {t.name: t.ggml_type for t in g.tensors} == o.tensor_types
            assert g.get("general.file_type") == MIXES[o.format].ftype
        assert Path(str(path) + ".json").is_file()
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("arch", ["smollm", "qwen3", "gemma3", "phi3"])
def test_quantized_outputs_chat(arch: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from llama_cpp import Llama

    plan, paths = _convert(tiny(arch), ["Q4_K_M", "Q8_0"], tmp_path)
    for o, path in zip(plan.outputs, paths, strict=False):
        assert path.stat().st_size == o.file_bytes
        llm = Llama(str(path), n_ctx=256, verbose=False, n_threads=2)
        try:
            reply = llm.create_chat_completion([{"role": "user", "content": "Hello there"}], max_tokens=8,
                                               temperature=0)
        finally:
            llm.close()
        assert reply["choices"][0]["message"]["role"] == "assistant"
        assert reply["usage"]["completion_tokens"] >= 1


def test_sharded_f32_source_and_plan_roundtrip(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tiny("qwen2")  # 11 shards, f32
    plan = plan_conversion(open_source(folder), ["Q5_K_M", "IQ4_XS"], tmp_path)
    plan.save(tmp_path / "plan.json")
    replayed = ConversionPlan.load(tmp_path / "plan.json")
    assert replayed == plan
    for r, o in zip(convert(replayed), plan.outputs, strict=False):
        assert r.file_bytes == o.file_bytes == Path(r.output).stat().st_size


def test_plan_engine_is_saved_and_checked(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """The quantizer choice is part of the plan (replayed as saved); plans saved before the field
    existed replay as "auto"; an unknown engine is refused before anything runs."""
    from quantpress.core.errors import InvalidInput

    folder = tiny("llama")
    plan = plan_conversion(open_source(folder), ["Q4_K_M"], tmp_path, engine="ggml")
    plan.save(tmp_path / "plan.json")
    assert ConversionPlan.load(tmp_path / "plan.json").engine == "ggml"
    old = json.loads((tmp_path / "plan.json").read_text())
    del old["engine"]
    assert ConversionPlan.from_dict(old).engine == "auto"
    with pytest.raises(InvalidInput, match="engine"):
        plan_conversion(open_source(folder), ["Q4_K_M"], tmp_path, engine="fast")


def test_hub_folder_without_weights_plans_the_same_sizes(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """A Hub model described by config and tokenizer files only: tensor list from config.json."""
    from tiny_models import local_and_hub

    local, hub = local_and_hub(tiny("llama"), tmp_path)
    full = plan_conversion(local, ["Q4_K_M", "F16"], tmp_path)
    bare = plan_conversion(hub, ["Q4_K_M", "F16"], tmp_path)
    assert [o.file_bytes for o in bare.outputs] == [o.file_bytes for o in full.outputs]
    assert [o.tensor_types for o in bare.outputs] == [o.tensor_types for o in full.outputs]


def test_gguf_source_requantizes_with_warning(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    _, (q8,) = _convert(tiny("smollm"), ["Q8_0"], tmp_path / "a")
    plan, (q4,) = _convert(q8, ["Q4_0"], tmp_path / "b")
    assert plan.warnings and "already quantized" in plan.warnings[0]
    assert q4.stat().st_size == plan.outputs[0].file_bytes
    with open_gguf(q4) as g:
        assert g.get("tokenizer.ggml.pre") == "smollm"
        assert g.get("general.file_type") == MIXES["Q4_0"].ftype


def test_demo_model_q4_k_m_generates(demo_model_dir: Path, tmp_path: Path) -> None:
    """The demo model: exact size, right tokenizer, and it answers."""
    from llama_cpp import Llama

    plan, (path,) = _convert(demo_model_dir, ["Q4_K_M"], tmp_path)
    assert path.stat().st_size == plan.outputs[0].file_bytes
    with open_gguf(path) as g:
        assert g.get("tokenizer.ggml.pre") == "smollm"
        assert g.get("general.size_label") == "135M"
    llm = Llama(str(path), n_ctx=512, verbose=False, n_threads=2)
    try:
        reply = llm.create_chat_completion([{"role": "user", "content": "What is the capital of France?"}],
                                           max_tokens=16, temperature=0)
    finally:
        llm.close()
    assert reply["choices"][0]["message"]["content"].strip()


@pytest.mark.slow
def test_demo_model_f32_matches_transformers(demo_model_dir: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(demo_model_dir / "tokenizer.json")).encode(PROSE).ids[:64]
    assert len(ids) == 64
    _, (path,) = _convert(demo_model_dir, ["F32"], tmp_path)
    diff = np.abs(llama_logprobs(path, ids) - hf_logprobs(demo_model_dir, ids)).max()
    assert diff < 0.01


def test_calibration_text_sets_importance_and_provenance(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    text = tmp_path / "calib.txt"
    text.write_text("A small calibration text about ships, rivers and prime numbers 2 3 5 7 11. " * 40)
    plan, (path,) = _convert(tiny("qwen3"), ["Q4_K_M"], tmp_path / "out", calibration=text)
    assert plan.calibration.kind == "file"
    assert path.stat().st_size == plan.outputs[0].file_bytes
    with open_gguf(path) as g:
        assert g.get("quantpress.calibration") == "calib.txt"
        assert g.get("quantpress.calibration_tokens") > 0
    sidecar = json.loads(Path(str(path) + ".json").read_text())
    assert sidecar["result"]["calibration_tokens"] > 0
    # --device auto (the default): the pass ran where torch sees a GPU, else on the CPU, and says so
    import torch

    assert sidecar["result"]["calibration_device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cli_device_for_calibration(tiny: Callable[[str], Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``convert --device``: auto by default, reported in --json; cuda without a GPU is a clear error."""
    import torch
    from quantpress.core.cli import main

    text = tmp_path / "calib.txt"
    text.write_text("Rivers, ships and prime numbers 2 3 5 7 11 13. " * 40)
    base = ["convert", str(tiny("qwen3")), "-f", "Q4_K_M", "--json"]
    args = [*base, "--calibration", str(text)]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["calibration_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert main([*base, "--calibration", "none", "-o", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["calibration_device"] is None
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda", "-o", str(tmp_path / "c")]) == 2
        assert "torch sees no CUDA GPU" in capsys.readouterr().err
        assert not list((tmp_path / "c").glob("*.gguf"))


def test_cli_json_lines_and_dry_run(tiny: Callable[[str], Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from quantpress.core.cli import main

    folder = str(tiny("smollm"))
    assert main(["convert", folder, "-f", "q8_0", "-f", "Q4_K_S", "--out", str(tmp_path), "--dry-run"]) == 0
    assert "Q4_K_S" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.gguf"))
    assert main(["convert", folder, "-f", "Q8_0", "-f", "Q4_K_S", "--out", str(tmp_path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["format"] for r in rows] == ["Q8_0", "Q4_K_S"]
    for r in rows:
        assert Path(r["output"]).stat().st_size == r["file_bytes"]
        assert r["seconds"] > 0 and r["peak_rss_bytes"] > 0
    assert main(["convert", folder, "-f", "Q9_X", "--out", str(tmp_path)]) == 2
