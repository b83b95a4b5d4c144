"""The vision projector of Gemma 3 and Mistral 3 wrappers as llama.cpp's mmproj file (issue 16):
quantpress's file against llama.cpp's own converter with ``--mmproj`` on the same tiny checkpoint
(tensor names, shapes, types, bytes, metadata keys and values), the transformers 5.25 tower layout,
and the file written beside the model by ``quantpress convert``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from family_check import OUR_KEYS
from llama_reference import reference_gguf
from quantpress.core.gguf.mmproj import plan_mmproj, write_mmproj
from quantpress.core.gguf.reader import open_gguf
from tiny_mmproj import tiny_mm_model
from tiny_models import tiny_model

# Departures on purpose (docs/ARCHITECTURE.md): quantpress names the model as its text GGUF does
# (general.name = the folder), and writes Pixtral's [IMG_BREAK] row, which llama.cpp's converter drops
# although its runtime requires it.
OUR_VALUES = ("general.name",)
EXTRA_TENSORS = {"gemma3-mm": set(), "mistral3-mm": {"v.token_embd.img_break"}}


def _ours(folder: Path, out: Path, fmt: str) -> Path:
    config = json.loads((folder / "config.json").read_text())
    plan, warnings = plan_mmproj(folder, config["architectures"][0], config, folder.name, out, fmt)
    assert plan is not None and not warnings
    assert write_mmproj(plan, folder, config) == plan.file_bytes == Path(plan.path).stat().st_size
    return Path(plan.path)


def _cases() -> list[object]:
    slow = pytest.mark.slow  # llama.cpp's converter takes 10-70 s a run here (torch import, a loaded machine)
    return [pytest.param("gemma3-mm", "F16", marks=slow), pytest.param("gemma3-mm", "Q8_0", marks=slow),
            pytest.param("mistral3-mm", "F16", marks=slow), pytest.param("mistral3-mm", "Q8_0", marks=slow)]


@pytest.mark.parametrize(("arch", "fmt"), _cases())
def test_mmproj_equals_llama_cpp_converter(arch: str, fmt: str, mm_root: Path, tmp_path: Path) -> None:
    folder = tiny_mm_model(arch, mm_root)
    ref = reference_gguf(folder, tmp_path / "ref.gguf", fmt.lower(), mmproj=True)
    ours = _ours(folder, tmp_path, fmt)
    with open_gguf(ours) as g, open_gguf(ref) as r:
        mine = {t.name: (t.shape, t.ggml_type) for t in g.tensors}
        theirs = {t.name: (t.shape, t.ggml_type) for t in r.tensors}
        assert set(mine) - set(theirs) == EXTRA_TENSORS[arch] and set(theirs) <= set(mine)
        for name, (shape, ggml_type) in theirs.items():
            assert mine[name] == (shape, ggml_type), name
            assert np.array_equal(g.raw(name), r.raw(name)), f"{name}: bytes differ"  # F16, F32 and Q8_0 alike
        keys = {k for k in g.metadata if not k.startswith(OUR_KEYS)}
        assert keys == set(r.metadata)
        for k in keys - set(OUR_VALUES):
            assert (g.value_types[k], g.get(k)) == (r.value_types[k], r.get(k)), k
        assert g.get("general.type") == "mmproj" and g.get("clip.projector_type") in ("gemma3", "pixtral")
        if arch == "mistral3-mm":  # the [IMG_BREAK] row (id 11) of the text embedding
            from safetensors import safe_open

            with safe_open(str(folder / "model.safetensors"), "pt") as f:
                embed = next(k for k in f.keys() if k.endswith("embed_tokens.weight"))
                row = f.get_tensor(embed)[11].float().numpy()
            assert np.array_equal(g.dequantize("v.token_embd.img_break").reshape(-1), row)


def test_transformers_layout_writes_the_hub_layout_file(mm_root: Path, tmp_path: Path) -> None:
    """transformers 5.25 saves Gemma 3's tower as vision_tower.embeddings/encoder (llama.cpp's converter
    refuses it); quantpress reads it and writes the same file as from the Hub's vision_model layout."""
    hub = tiny_mm_model("gemma3-mm", mm_root)
    saved = tiny_model("gemma3-mm", mm_root)
    from safetensors import safe_open

    with safe_open(str(saved / "model.safetensors"), "np") as f:
        assert any(k.startswith("vision_tower.embeddings.") for k in f.keys())
    (saved_out := tmp_path / "saved").mkdir()
    (hub_out := tmp_path / "hub").mkdir()
    a, b = _ours(saved, saved_out, "F16"), _ours(hub, hub_out, "F16")
    with open_gguf(a) as g, open_gguf(b) as h:
        assert [t.name for t in g.tensors] == [t.name for t in h.tensors]
        assert all(np.array_equal(g.raw(t.name), h.raw(t.name)) for t in g.tensors)
        # the same processor defaults as the checkpoint's (SigLIP's 0.5), and the scale factor from the
        # config's mm_tokens_per_image when there is no preprocessor_config.json
        for key in ("clip.vision.image_mean", "clip.vision.projector.scale_factor"):
            assert g.get(key) == h.get(key)


def test_convert_writes_the_mmproj_beside_the_model(mm_root: Path, tmp_path: Path) -> None:
    folder = tiny_mm_model("gemma3-mm", mm_root)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "quantpress.core.cli", "convert", str(folder), "-f", "Q8_0", "--out", str(out), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    line = json.loads(res.stdout.strip().splitlines()[-1])
    mmproj = Path(line["mmproj"])
    assert mmproj == out / f"mmproj-{folder.name}-F16.gguf" and mmproj.is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([mmproj.name, Path(line["output"]).name,
                                                            Path(line["output"]).name + ".json"])
    plan = json.loads((out / (Path(line["output"]).name + ".json")).read_text())["plan"]
    assert plan["mmproj"]["file_bytes"] == mmproj.stat().st_size
    skip = subprocess.run(cmd[:-1] + ["--mmproj", "none", "--dry-run", "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert skip.returncode == 0 and "mmproj" not in json.loads(skip.stdout)[0]


def test_pixtral_without_img_break_token_warns_and_skips(tiny: object, tmp_path: Path) -> None:
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    plan = plan_conversion(open_source(tiny("mistral3")), ["Q8_0"], tmp_path)  # type: ignore[operator]
    assert plan.mmproj is None
    assert any("[IMG_BREAK]" in w and "mmproj" in w for w in plan.warnings)


def test_estimate_counts_the_projector_file_and_compute(mm_root: Path, tmp_path: Path) -> None:
    """The estimate of a wrapper adds the planned mmproj's exact size and its compute buffer to every
    GGUF row (memory.vision_compute_bytes), and the same for a converted GGUF with the file beside it."""
    from quantpress.core.estimate import estimate
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.inspect import open_model
    from quantpress.core.memory import RuntimeConfig, vision_compute_bytes

    folder = tiny_mm_model("gemma3-mm", mm_root)
    plan = plan_conversion(open_model(folder), ["Q8_0"], tmp_path)
    assert plan.mmproj is not None
    compute = vision_compute_bytes({k: v for k, v, _ in plan.mmproj.metadata})
    assert compute > 0
    hw, cfg = detect_hardware(), RuntimeConfig(n_ctx=256)
    with_mm = estimate(open_model(folder), hw, cfg, formats=["Q8_0"]).formats[0]
    assert (with_mm.mmproj_bytes, with_mm.mmproj_compute_bytes) == (plan.mmproj.file_bytes, compute)
    (result,) = convert(plan)
    converted = estimate(open_model(result.output), hw, cfg, formats=["Q8_0"]).formats[0]  # the FILE row
    assert (converted.mmproj_bytes, converted.mmproj_compute_bytes) == (plan.mmproj.file_bytes, compute)
    Path(result.mmproj).unlink()
    alone = estimate(open_model(result.output), hw, cfg, formats=["Q8_0"]).formats[0]
    assert alone.mmproj_bytes == 0
    assert converted.cpu_only_bytes - alone.cpu_only_bytes == plan.mmproj.file_bytes + compute


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gemma3-mm-wide", "mistral3-mm-wide"])
def test_vision_compute_formula_matches_clip_log(arch: str, mm_root: Path, tmp_path: Path) -> None:
    """memory.vision_compute_bytes against the compute buffer clip.cpp logs when it loads a real-width
    tower (one layer: the buffer does not depend on depth): within 1%."""
    import llama_cpp
    from quantpress.core.chat.vision import Projector
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source
    from quantpress.core.memory import vision_compute_bytes

    plan = plan_conversion(open_source(tiny_mm_model(arch, mm_root)), ["Q8_0"], tmp_path)
    (result,) = convert(plan)
    llm = llama_cpp.Llama(result.output, n_ctx=256, n_threads=1, verbose=False)
    try:
        projector = Projector(llm, Path(result.mmproj), 1)
        logged = projector.compute_bytes
        projector.close()
    finally:
        llm.close()
    assert plan.mmproj is not None
    formula = vision_compute_bytes({k: v for k, v, _ in plan.mmproj.metadata})
    assert abs(formula - logged) <= 0.01 * logged, (formula, logged)
