"""The format catalogue: every format the issue lists, consistent with the converter's mixes."""

from __future__ import annotations

import pytest
from quantpress.core.errors import InvalidInput
from quantpress.core.formats import FORMATS, KLD_SOURCE, FormatKind, get_format, gguf_formats

REQUIRED = ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "IQ4_XS",
            "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "AWQ_INT4_G128", "AWQ_INT4_G64", "AWQ_INT4_G32", "GPTQ_INT4_G128",
            "NF4", "NF4_DQ", "FP8_E4M3", "INT8")


def test_every_required_format_is_there() -> None:
    assert set(REQUIRED) <= set(FORMATS)
    for f in FORMATS.values():
        assert f.bits_per_weight > 0 and f.runtime and f.explanation.endswith(".") and f.quality


def test_gguf_formats_are_converter_mixes() -> None:
    from quantpress.core.gguf.mixes import MIXES

    for f in gguf_formats():
        assert f.name in MIXES and MIXES[f.name].base == f.gguf_type or f.name in ("F32", "F16", "BF16")


def test_quality_hints_are_labelled_and_ordered() -> None:
    kq = [f for f in gguf_formats() if f.kld and "no imatrix" in f.quality]
    assert all(KLD_SOURCE in f.quality for f in kq)
    by_rank = sorted(kq, key=lambda f: f.quality_rank)
    assert [f.kld for f in by_rank] == sorted(f.kld for f in by_rank)  # published KLD order
    assert FORMATS["Q4_K_M"].kld == pytest.approx(0.03127)


def test_bits_per_weight() -> None:
    assert FORMATS["Q8_0"].bits_per_weight == 8.5 and FORMATS["Q6_K"].bits_per_weight == 6.5625
    assert FORMATS["AWQ_INT4_G128"].bits_per_weight == pytest.approx(4.15625)
    assert FORMATS["NF4"].bits_per_weight == 4.5 and FORMATS["NF4_DQ"].bits_per_weight < 4.2
    assert FORMATS["NF4"].kind == FormatKind.BNB


def test_get_format_aliases_and_errors() -> None:
    assert get_format("awq").name == "AWQ_INT4_G128" and get_format("q4_k_m").name == "Q4_K_M"
    with pytest.raises(InvalidInput, match="unknown format"):
        get_format("Q9_X")
