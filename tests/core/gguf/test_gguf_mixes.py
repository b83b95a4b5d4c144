"""The 'llama.cpp' policy chooses exactly llama-quantize's per-tensor types (checked against the
real llama_model_quantize on F16 files we write), and the quantpress policy differs only in fallbacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.mixes import FALLBACK, MixContext, tensor_types, use_more_bits
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.reference import llama_quantize
from quantpress.core.gguf.source import open_source

FORMATS = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1", "Q5_K_S",
           "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS"]


@pytest.mark.parametrize("arch", ["smollm", "llama", "phi3"])  # 32-only rows, 256 rows, fused qkv
def test_llama_cpp_policy_matches_llama_quantize(arch: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    model = open_source(tiny(arch))
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    plan = plan_conversion(model, FORMATS, tmp_path / "nowhere.gguf", policy="llama.cpp")
    for o in plan.outputs:
        dst = tmp_path / f"ref-{o.format}.gguf"
        llama_quantize(Path(f16.output), dst, o.format, threads=2)
        with open_gguf(dst) as g:
            ref = {t.name: t.ggml_type for t in g.tensors}
        # llama-quantize keeps non-quantizable tensors in the input's type; ours are F32 too
        assert o.tensor_types == ref, o.format
        dst.unlink()


def test_use_more_bits_pattern() -> None:
    assert [i for i in range(16) if use_more_bits(i, 16)] == [0, 1, 4, 7, 10, 13, 14, 15]


def test_quantpress_policy_only_changes_fallbacks() -> None:
    shapes = {"token_embd.weight": (1000, 576), "blk.0.attn_q.weight": (576, 576),
              "blk.0.attn_v.weight": (192, 576), "blk.0.ffn_down.weight": (576, 1536),
              "blk.0.attn_norm.weight": (576,)}
    for mix in ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M"):
        a = tensor_types(shapes, mix, MixContext(n_layers=1, policy="llama.cpp"))
        b = tensor_types(shapes, mix, MixContext(n_layers=1, policy="quantpress"))
        for name in shapes:
            if a[name] != b[name]:
                assert b[name] == FALLBACK["quantpress"][_unfallback(a[name])], (mix, name)


def test_iquant_mixes_keep_llama_cpps_fallbacks_under_either_policy() -> None:
    """576-wide rows: an i-quant mix's Q2_K attn_v falls back to Q4_0 as llama-quantize's does (IQ4_NL
    there measured worse with an imatrix), while a k-quant mix still gets quantpress's IQ4_NL."""
    from quantpress.core.gguf.mixes_iq import IQ_MIXES

    shapes = {"token_embd.weight": (1000, 576), "blk.0.attn_q.weight": (576, 576),
              "blk.0.attn_v.weight": (192, 576), "blk.0.ffn_down.weight": (576, 1536),
              "blk.0.attn_norm.weight": (576,)}
    for mix in IQ_MIXES:
        ctx = {"n_layers": 1, "n_gqa": 3, "has_imatrix": True}
        assert (tensor_types(shapes, mix, MixContext(**ctx, policy="llama.cpp"))  # type: ignore[arg-type]
                == tensor_types(shapes, mix, MixContext(**ctx, policy="quantpress"))), mix  # type: ignore[arg-type]
    assert tensor_types(shapes, "IQ2_XXS", MixContext(n_layers=1, has_imatrix=True))["blk.0.attn_v.weight"] == "Q4_0"
    assert tensor_types(shapes, "Q2_K", MixContext(n_layers=1))["blk.0.attn_v.weight"] == "IQ4_NL"


def _unfallback(t: str) -> str:
    return next(k for k, v in FALLBACK["llama.cpp"].items() if v == t)


def test_overrides_win() -> None:
    shapes = {"token_embd.weight": (1000, 256), "output.weight": (1000, 256), "blk.0.ffn_down.weight": (256, 512)}
    ctx = MixContext(n_layers=1, output_type="Q8_0", token_embd_type="Q4_K",
                     tensor_overrides=(("ffn_down", "Q6_K"),))
    types = tensor_types(shapes, "Q4_K_M", ctx)
    assert types == {"output.weight": "Q8_0", "token_embd.weight": "Q4_K", "blk.0.ffn_down.weight": "Q6_K"}


@pytest.mark.parametrize("with_imatrix", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_bytes_identical_to_llama_quantize(with_imatrix: bool, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """With ggml's quantizer selected (engine "ggml"), the converter writes exactly llama-quantize's
    bytes: same types, same importance (none, or the same imatrix), same layout
    (bf16 weights are exact in F16, so llama.cpp's F16 intermediate loses nothing here)."""
    from quantpress.core.calibration import compute_imatrix, save_imatrix

    model = open_source(tiny("llama"))
    imatrix = None
    kw: dict[str, object] = {"calibration": "none"}  # llama-quantize without an imatrix rounds plainly
    if with_imatrix:
        text = " ".join(["The quick brown fox jumps over the lazy dog while the model counts 1 2 3."] * 20)
        imatrix = compute_imatrix(tiny("llama"), text, n_ctx=64)
        save_imatrix(imatrix, tmp_path / "imatrix.gguf")
        kw = {"imatrix": tmp_path / "imatrix.gguf"}
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    formats = ["Q4_K_M", "Q2_K", "IQ4_XS", "Q5_0", "Q6_K"]
    ours = convert(plan_conversion(model, formats, tmp_path / "ours.gguf", policy="llama.cpp", engine="ggml",
                                   **kw))  # type: ignore[arg-type]
    means = {n: imatrix.importance(n) for n in imatrix.names} if imatrix is not None else None
    for r in ours:
        ref_path = tmp_path / f"ref-{r.format}.gguf"
        llama_quantize(Path(f16.output), ref_path, r.format, imatrix=means, threads=2)
        with open_gguf(ref_path) as ref, open_gguf(r.output) as got:
            for t in ref.tensors:
                assert got.tensor(t.name).ggml_type == t.ggml_type
                assert bytes(got.raw(t.name).tobytes()) == bytes(ref.raw(t.name).tobytes()), (r.format, t.name)
