"""engine="auto": per mix and importance source, the quantizer and importance use of core/quant/auto.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.reference import llama_quantize
from quantpress.core.gguf.source import open_source
from quantpress.core.jobs import Progress
from quantpress.core.quant import auto
from quantpress.core.quant.auto import LLAMA_CPP, QuantChoice, choose


def test_explicit_engines_bypass_the_table() -> None:
    assert choose("ggml", "Q4_K_M", "weights") == QuantChoice("ggml", True)
    assert choose("native", "Q5_K_S", "none") == QuantChoice("native", True)
    with pytest.raises(ValueError, match="engine"):
        choose("fast", "Q4_K_M", "weights")


def test_every_listed_choice_is_well_formed() -> None:
    from quantpress.core.gguf.mixes import MIXES
    from quantpress.core.gguf.plan import MIXED_FORMAT

    for mix, by_source in auto.AUTO.items():
        assert mix in MIXES or mix == MIXED_FORMAT  # MIXED: types chosen for a target (core/gguf/best_fit.py)
        assert set(by_source) <= set(auto.IMPORTANCE_SOURCES)
        for how in by_source.values():
            assert how.engine in ("ggml", "native")


def test_unlisted_mixes_are_llama_quantize() -> None:
    assert choose("auto", "NOT_A_MIX", "weights") == LLAMA_CPP
    assert choose("auto", "NOT_A_MIX", "none") == LLAMA_CPP
    assert choose("auto", "NOT_A_MIX", "default") == QuantChoice("ggml", True)  # measured imatrix, as given
    assert choose("auto", "NOT_A_MIX", "imatrix") == QuantChoice("ggml", True)


def _llama_cpp_mixes() -> list[str]:
    """Mixes whose default (importance from the weights) is llama-quantize's behaviour."""
    return [m for m in ("Q4_K_M", "Q5_K_S", "Q6_K", "Q5_K_M", "Q4_K_S", "Q2_K", "Q4_0", "Q8_0")
            if choose("auto", m, "weights") == LLAMA_CPP]


def test_default_falls_back_to_llama_quantize_bytes(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Where auto chose llama-quantize's behaviour, the default conversion writes its exact bytes, and
    when no output uses importance the weights pass is skipped."""
    mixes = _llama_cpp_mixes()
    if not mixes:
        pytest.skip("auto departs from llama-quantize for every mix listed here")
    model = open_source(tiny("llama"))
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    seen: list[Progress] = []
    ours = convert(plan_conversion(model, mixes, tmp_path / "ours.gguf", policy="llama.cpp"), report=seen.append)
    assert not any(p.stage == "importance" for p in seen)  # no weights pass: nothing would use it
    for r in ours:
        ref_path = tmp_path / f"ref-{r.format}.gguf"
        llama_quantize(Path(f16.output), ref_path, r.format, threads=2)
        with open_gguf(ref_path) as ref, open_gguf(r.output) as got:
            for t in ref.tensors:
                assert bytes(got.raw(t.name).tobytes()) == bytes(ref.raw(t.name).tobytes()), (r.format, t.name)


def test_table_decides_engine_and_importance(tiny: Callable[[str], Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Two outputs of one pass quantized differently, as the table says: one with the weights-estimated
    importance on the native kernels, one as llama-quantize."""
    model = open_source(tiny("llama"))
    monkeypatch.setattr(auto, "AUTO", {"Q4_K_M": {"weights": QuantChoice("native", True)},
                                       "Q4_K_S": {"weights": LLAMA_CPP}})
    for d in "abcd":
        (tmp_path / d).mkdir()
    (a_native, a_llama) = convert(plan_conversion(model, ["Q4_K_M", "Q4_K_S"], tmp_path / "a", policy="llama.cpp"))
    (b_ggml,) = convert(plan_conversion(model, ["Q4_K_S"], tmp_path / "b", policy="llama.cpp", engine="ggml",
                                        calibration="none"))
    (c_native,) = convert(plan_conversion(model, ["Q4_K_M"], tmp_path / "c", policy="llama.cpp", engine="native"))
    assert _tensor_bytes(a_llama.output) == _tensor_bytes(b_ggml.output)  # (metadata names the calibration)
    assert _tensor_bytes(a_native.output) == _tensor_bytes(c_native.output)
    (d_ggml,) = convert(plan_conversion(model, ["Q4_K_M"], tmp_path / "d", policy="llama.cpp", engine="ggml",
                                        calibration="none"))
    assert _tensor_bytes(a_native.output) != _tensor_bytes(d_ggml.output)  # the departure is real


def _tensor_bytes(path: str) -> dict[str, bytes]:
    with open_gguf(Path(path)) as g:
        return {t.name: bytes(g.raw(t.name).tobytes()) for t in g.tensors}


def test_missing_native_extension_is_an_error_unless_ggml_was_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent switch to ggml's quantizer (other bytes) when quantpress.native cannot be imported."""
    import sys

    import quantpress
    from quantpress.core.errors import InvalidInput
    from quantpress.core.quant import engine_for

    monkeypatch.delattr(quantpress, "native", raising=False)
    monkeypatch.setitem(sys.modules, "quantpress.native", None)  # import fails as for an unbuilt tree
    with pytest.raises(InvalidInput, match="native extension"):
        engine_for("Q4_K", False, "auto")
    with pytest.raises(InvalidInput, match="--engine ggml"):
        engine_for("Q4_K", True, "native")
    assert engine_for("Q4_K", False, "ggml") == "ggml"


def test_moe_models_keep_llama_quantize_where_the_departure_lost() -> None:
    """Q4_K_M with a measured imatrix: native kernels on dense models, ggml's quantizer (llama.cpp's
    bytes given the same imatrix) on MoE models (BENCHMARKS.md, generated mixture-of-experts model)."""
    assert choose("auto", "Q4_K_M", "default") == auto.NATIVE
    assert choose("auto", "Q4_K_M", "default", experts=True) == QuantChoice("ggml", True)
    assert choose("auto", "Q4_K_M", "imatrix", experts=True) == QuantChoice("ggml", True)
    assert choose("auto", "Q2_K", "default", experts=True) == auto.NATIVE  # won on the MoE too
    assert choose("auto", "Q4_K_M", "weights", experts=True) == LLAMA_CPP
    assert choose("native", "Q4_K_M", "default", experts=True) == QuantChoice("native", True)
    for mix, by_source in auto.AUTO_MOE.items():
        assert set(by_source) <= set(auto.IMPORTANCE_SOURCES), mix

