"""AWQ end to end on tiny real models: exact scale folding per architecture, the packed outputs in
an independent reader (transformers + compressed-tensors) against our int4 backend, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from quantpress.core.awq.pipeline import awq_convert
from quantpress.core.awq.run import AwqSettings, plan_awq
from quantpress.core.errors import Cancelled, InvalidInput, InvalidModel, UnsupportedArchitecture
from quantpress.core.jobs import CancelToken, Progress

FAST = dict(samples=4, seqlen=64, search_samples=2, batch_rows=2, n_grid=6)


def _logits(folder: Path, ids: torch.Tensor, **kw: object) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("arch", ["qwen2", "gemma3", "phi3", pytest.param("llama", marks=pytest.mark.slow),
                                  pytest.param("qwen3", marks=pytest.mark.slow),
                                  pytest.param("mistral", marks=pytest.mark.slow)])
def test_scales_fold_exactly(tiny, tmp_path: Path, arch: str) -> None:  # type: ignore[no-untyped-def]
    """With clipping off, the scaled full-precision model computes the same function as the source:
    checks every scaling group's fold (norms incl. Gemma's 1+w, fused Phi-3 rows, v->o, up->down)."""
    src = tiny(arch)
    out = tmp_path / "fp"
    # 5 rows in batches of 2 (a short last batch) and 3 search rows: masks of several shapes (gemma3's
    # sliding window is 32 < 64 tokens, so its layers get real masks).
    settings = AwqSettings(clip_search=False, samples=5, seqlen=64, search_samples=3, batch_rows=2, n_grid=6)
    awq_convert(src, out, format="fp", settings=settings)
    side = json.loads((out / "quantpress_awq.json").read_text())
    assert any(layer["scale_ratios"] for layer in side["layers"])  # groups were searched
    ids = torch.randint(0, 300, (1, 40))
    a, b = _logits(src, ids), _logits(out, ids)
    # The output is stored in the source dtype (bf16 for most tiny models): allow its rounding only.
    # A wrong fold (e.g. Gemma's 1+w divided as w) changes the logits by their own magnitude.
    assert float((b - a).norm() / a.norm()) < (1e-5 if arch == "qwen2" else 2e-2)  # qwen2 tiny is f32


@pytest.fixture(scope="module")
def packed(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The tiny llama in both packed formats (one pass each, same settings)."""
    root = tmp_path_factory.mktemp("awq-packed")
    settings = AwqSettings(**FAST)  # type: ignore[arg-type]
    seen: list[Progress] = []
    res = awq_convert(tiny("llama"), root / "ct", settings=settings, report=seen.append)
    assert seen[-1].fraction == 1.0 and res.n_tokens == 256
    awq_convert(tiny("llama"), root / "gemm", format="autoawq", settings=settings)
    return {"ct": root / "ct", "gemm": root / "gemm"}


def _decompress_kwargs(config_class: type) -> dict[str, bool]:
    """"Decompress to dense": ``dequantize=True`` since transformers 5.25, ``run_compressed=False``
    (deprecated there) before."""
    import inspect

    params = inspect.signature(config_class.__init__).parameters  # type: ignore[misc]
    return {"dequantize": True} if "dequantize" in params else {"run_compressed": False}


# transformers warns that the checkpoint's own quantization_config wins over the loading attributes we pass
# (run_compressed=False, i.e. decompress to dense): that is exactly what we ask for.
@pytest.mark.filterwarnings("ignore:You passed `quantization_config`:UserWarning")
def test_compressed_tensors_output_loads_in_transformers_like_our_backend(packed: dict[str, Path]) -> None:
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings, Message, Role
    from transformers import CompressedTensorsConfig

    out = packed["ct"]
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["format"] == "pack-quantized" and cfg["config_groups"]["group_0"]["weights"]["group_size"] == 128
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    ids = torch.randint(0, 300, (1, 48))
    ref = _logits(out, ids, quantization_config=CompressedTensorsConfig(**_decompress_kwargs(CompressedTensorsConfig)))
    backend = AwqBackend(out, ChatSettings())
    assert not backend.dense_fallbacks  # every linear runs on the int4 kernel
    ours = backend.logits(ids)
    torch.testing.assert_close(ours, ref, rtol=1e-2, atol=5e-3)  # bf16-level tolerance
    reply = backend.generate(backend.encode_chat([Message(Role.USER, "hi")]), ChatSettings(seed=0), 5)
    assert reply.tokens <= 5


def test_compressed_tensors_output_of_mixed_widths_loads_in_transformers(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The SmolLM2 shape (rows 96 wide beside 256 wide, like the demo's 576 and 1536): one group size
    for the whole model, so transformers with compressed-tensors loads it, with our backend's logits."""
    import warnings

    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings
    from transformers import CompressedTensorsConfig

    out = tmp_path / "ct"
    awq_convert(tiny("smollm"), out, settings=AwqSettings(**FAST))  # type: ignore[arg-type]
    groups = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]
    assert [g["weights"]["group_size"] for g in groups.values()] == [32]
    ids = torch.randint(0, 300, (1, 48))
    with warnings.catch_warnings():  # our own quantization_config wins over the loading attributes
        warnings.filterwarnings("ignore", "You passed `quantization_config`", UserWarning)
        ref = _logits(out, ids, quantization_config=CompressedTensorsConfig(**_decompress_kwargs(CompressedTensorsConfig)))
    ours = AwqBackend(out, ChatSettings()).logits(ids)
    torch.testing.assert_close(ours, ref, rtol=1e-2, atol=5e-3)  # bf16-level tolerance


@pytest.mark.slow
def test_demo_model_compressed_tensors_output_loads_in_transformers(demo_model_dir: Path, tmp_path: Path) -> None:
    """Issue 13: the demo model's AWQ output (576- and 1536-wide rows) loads in transformers with
    compressed-tensors' decompression, logits equal to our int4 backend's to bf16 precision over 30 layers
    (measured: relative norm 9e-4, largest difference 0.8% of the largest logit, same top-1 everywhere)."""
    import warnings

    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.types import ChatSettings
    from transformers import CompressedTensorsConfig

    out = tmp_path / "ct"
    awq_convert(demo_model_dir, out)
    groups = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]
    assert [g["weights"]["group_size"] for g in groups.values()] == [64]
    ids = torch.randint(0, 20000, (1, 64), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You passed `quantization_config`", UserWarning)
        ref = _logits(out, ids, quantization_config=CompressedTensorsConfig(**_decompress_kwargs(CompressedTensorsConfig)))
    ours = AwqBackend(out, ChatSettings()).logits(ids)
    assert float((ours - ref).norm() / ref.norm()) < 2**-8  # bf16's relative precision
    assert float((ours - ref).abs().max() / ref.abs().max()) < 2**-6
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))


def test_autoawq_output_holds_the_same_integers(packed: dict[str, Path]) -> None:
    from quantpress.core.awq.quantizer import unpack_autoawq, unpack_compressed_tensors
    from safetensors.torch import load_file

    cfg = json.loads((packed["gemm"] / "config.json").read_text())
    assert cfg["quantization_config"] == {"quant_method": "awq", "zero_point": True, "group_size": 128, "bits": 4,
                                          "version": "gemm", "modules_to_not_convert": None}
    ct = {k: v for f in packed["ct"].glob("*.safetensors") for k, v in load_file(f).items()}
    gemm = {k: v for f in packed["gemm"].glob("*.safetensors") for k, v in load_file(f).items()}
    name = "model.layers.1.mlp.down_proj"
    a = unpack_compressed_tensors({k: ct[f"{name}.{k}"] for k in ("weight_packed", "weight_scale", "weight_zero_point")})
    b = unpack_autoawq({k: gemm[f"{name}.{k}"] for k in ("qweight", "qzeros", "scales")})
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])


def test_plan_records_group_size_fallback(demo_model_dir: Path) -> None:
    plan = plan_awq(demo_model_dir, AwqSettings())
    sizes = plan.group_sizes()
    assert sizes["model.layers.0.mlp.down_proj"] == 128 and sizes["model.layers.0.self_attn.q_proj"] == 64
    assert any("576-wide" in n and "group size 64" in n for n in plan.notes)
    assert plan_awq(demo_model_dir, AwqSettings(), uniform=True).group_sizes()["model.layers.0.mlp.down_proj"] == 64


def test_bad_input(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tiny("llama")
    with pytest.raises(InvalidInput, match="too little"):
        awq_convert(src, tmp_path / "a", settings=AwqSettings(samples=64, seqlen=512), text="short text")
    assert not (tmp_path / "a").exists()
    odd = tmp_path / "gpt2"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(UnsupportedArchitecture, match="GPT2LMHeadModel"):
        plan_awq(odd)
    with pytest.raises(InvalidInput, match="unknown AWQ format"):
        awq_convert(src, tmp_path / "b", format="exl2")


def test_cancel_mid_layer_leaves_nothing(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = CancelToken()

    def stop(p: Progress) -> None:
        if "layer 1/2:" in p.message:  # a stage inside the first layer
            token.cancel()

    with pytest.raises(Cancelled):
        awq_convert(tiny("qwen2"), tmp_path / "c", settings=AwqSettings(**FAST), report=stop,  # type: ignore[arg-type]
                    cancel=token)
    assert list(tmp_path.iterdir()) == []


def test_nan_activations_name_the_layer(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from safetensors.torch import load_file, save_file

    src = tmp_path / "nan-model"
    shutil.copytree(tiny("smollm"), src)
    f = src / "model.safetensors"
    state = load_file(f)
    # Finite weights so large that layer 1 overflows (NaN weights are already refused when loaded).
    state["model.layers.1.mlp.down_proj.weight"][:] = 3e38
    save_file(state, f, metadata={"format": "pt"})
    with pytest.raises(InvalidModel, match="decoder layer 1( produced NaN|: no finite loss)"):
        awq_convert(src, tmp_path / "d", settings=AwqSettings(**FAST))  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()


def test_cli_json_and_awq_for_gguf(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """``quantpress awq --format gguf:Q4_K_M``: scaled weights -> the GGUF converter with this pass's
    importance matrix; the GGUF loads in llama.cpp."""
    import llama_cpp
    from quantpress.core.cli import main

    out = tmp_path / "g"
    rc = main(["awq", str(tiny("smollm")), "--out", str(out), "--format", "gguf:Q4_K_M", "--samples", "4",
               "--seqlen", "64", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "gguf:Q4_K_M" and result["n_tokens"] == 256
    (gguf,) = result["gguf_files"]
    assert (out / "awq.imatrix.gguf").is_file()
    side = json.loads((out / "quantpress_awq.json").read_text())
    # Clips are off by default for GGUF (measured to hurt, BENCHMARKS.md); the sidecar says what was applied.
    assert side["settings"]["clip_search"] is False and "scaled (not clipped)" in side["awq_for_gguf"]
    llm = llama_cpp.Llama(gguf, n_ctx=64, verbose=False)
    try:
        assert len(llm.tokenize(b"hello world")) > 0
        llm.eval(llm.tokenize(b"hello world"))
    finally:
        llm.close()


def test_chat_finds_the_awq_runtime_for_packed_folders(packed: dict[str, Path]) -> None:
    from quantpress.core.awq.backend import AwqBackend
    from quantpress.core.chat.backend import load_backend
    from quantpress.core.chat.types import ChatSettings

    for folder in packed.values():
        assert isinstance(load_backend(folder, ChatSettings()), AwqBackend)


def test_device_auto_is_the_default_and_reported(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17: AWQ runs on the GPU when torch sees one (else the CPU, as before) and says where."""
    from quantpress.core.calibration import resolve_device

    assert AwqSettings().device == "auto"
    result = awq_convert(tiny("qwen2"), tmp_path / "fp", format="fp", settings=AwqSettings(**FAST))
    assert result.device == resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantpress.core.calibration import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(InvalidInput, match="torch sees no CUDA GPU"):
        resolve_device("cuda")


def test_cli_says_when_it_replaces_an_earlier_output(tiny, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from quantpress.core.cli import main

    out = tmp_path / "awq"
    argv = ["awq", str(tiny("smollm")), "--out", str(out), "--samples", "4", "--seqlen", "64", "--json"]
    assert main(argv) == 0
    assert "will be replaced" not in capsys.readouterr().err
    assert main(argv) == 0
    assert f"note: {out} exists; it will be replaced" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["awq"]  # no temporary folder left beside it
