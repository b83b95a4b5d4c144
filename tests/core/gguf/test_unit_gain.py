"""Tensors rescaled to unit gain (core/quant/unit_gain.py): the quantizer's codes with each block's
scales multiplied by 1 / the tensor's gain, checked against gguf-py's dequantizers; and what the
converter's "auto" uses it for (the i-quant mixes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from quantpress.core.quant import quantize_tensor
from quantpress.core.quant.auto import GGML_UNIT_GAIN_MIXED, QuantChoice, choose, for_output
from quantpress.core.quant.unit_gain import SCALE_FIELDS, tensor_gain, to_unit_gain


def _rows(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.standard_normal((8, 512)).astype(np.float32))


def _scale_bytes(qtype: str) -> np.ndarray:
    """Mask over one block's bytes: True where the whole-block scales lie."""
    field = SCALE_FIELDS[qtype]
    mask = np.zeros(field.block_bytes, bool)
    for o in field.offsets:
        mask[o:o + 2] = True
    if field.iq1m_packed:  # the top nibble of each uint16 scales word: the high byte of each (little-endian)
        mask[[49, 51, 53, 55]] = True
    return mask


@pytest.mark.parametrize("qtype", sorted(SCALE_FIELDS))
def test_gain_becomes_one_and_only_the_scales_change(qtype: str) -> None:
    x = _rows()
    imp = np.linspace(0.5, 2.0, x.shape[1]).astype(np.float32)
    raw = quantize_tensor(x, qtype, imp, threads=1, engine="ggml")
    unit = quantize_tensor(x, qtype, imp, threads=1, engine="ggml", unit_gain=True)
    g_raw = tensor_gain(raw, x, qtype, imp)
    assert g_raw != 1.0 and tensor_gain(unit, x, qtype, imp) == pytest.approx(1.0, abs=2e-3)
    size = SCALE_FIELDS[qtype].block_bytes
    a, b = raw.reshape(-1, size), unit.reshape(-1, size)
    keep = ~_scale_bytes(qtype)
    if SCALE_FIELDS[qtype].iq1m_packed:  # the low 12 bits of the scales words' high bytes are codes
        a, b = a.copy(), b.copy()
        a[:, [49, 51, 53, 55]] &= 0x0F
        b[:, [49, 51, 53, 55]] &= 0x0F
        keep[[49, 51, 53, 55]] = True
    assert np.array_equal(a[:, keep], b[:, keep])
    t = GGMLQuantizationType[qtype]
    q_raw, q_unit = dequantize(raw, t).reshape(x.shape), dequantize(unit, t).reshape(x.shape)
    # the decoded tensor is the raw one divided by the gain, to fp16 rounding of each scale
    np.testing.assert_allclose(q_unit, q_raw / g_raw, rtol=3e-3, atol=3e-3 * float(np.abs(q_raw).max()))


def test_other_types_and_degenerate_tensors_are_untouched() -> None:
    x = _rows(1)
    f16 = x.astype(np.float16).view(np.uint8)
    assert to_unit_gain(f16, x, "F16", None) is f16
    zeros = np.zeros_like(x)
    blocks = quantize_tensor(zeros, "IQ4_NL", np.ones(512, np.float32), 1, "ggml")
    assert np.array_equal(quantize_tensor(zeros, "IQ4_NL", np.ones(512, np.float32), 1, "ggml", unit_gain=True), blocks)


def test_wrong_block_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="IQ3_S blocks"):
        to_unit_gain(np.zeros((2, 100), np.uint8), np.zeros((2, 256), np.float32), "IQ3_S", None)


def test_auto_uses_unit_gain_where_it_measured_no_worse() -> None:
    unit = QuantChoice("ggml", True, unit_gain=True)
    for mix in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_M", "IQ3_S", "IQ3_M"):
        assert choose("auto", mix, "imatrix") == choose("auto", mix, "default") == GGML_UNIT_GAIN_MIXED
    for mix in ("IQ3_XXS", "IQ3_XS"):
        assert choose("auto", mix, "imatrix") == QuantChoice("ggml", True)
    iq2_s = choose("auto", "IQ2_S", "imatrix")
    assert iq2_s.rescales("IQ2_XS") and iq2_s.rescales("IQ3_S") and not iq2_s.rescales("IQ4_NL")
    assert not iq2_s.rescales("Q5_K") and not choose("auto", "IQ2_S", "weights").unit_gain
    assert choose("auto", "IQ2_XS", "weights") == unit and choose("auto", "IQ3_M", "weights") == QuantChoice("ggml", True)
    # an explicit engine is that quantizer's own bytes (--engine ggml: llama-quantize's)
    assert not choose("ggml", "IQ3_M", "imatrix").unit_gain
    assert not choose("auto", "Q4_K_M", "weights").unit_gain


def test_an_iquant_mix_converts_at_unit_gain(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """End to end: auto's IQ2_XS file (the default importance) holds the tensors of ``--engine ggml``'s,
    each divided by one factor of its own (its gain), and those factors are not all 1."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.source import open_source

    model = open_source(tiny("llama"))
    files = []
    for engine in ("auto", "ggml"):
        (tmp_path / engine).mkdir()
        files.append(convert(plan_conversion(model, ["IQ2_XS"], tmp_path / engine, engine=engine))[0].output)
    factors = {}
    with open_gguf(Path(files[0])) as a, open_gguf(Path(files[1])) as b:
        for t in a.tensors:
            if t.ggml_type not in SCALE_FIELDS:
                continue
            ty = GGMLQuantizationType[t.ggml_type]
            qa, qb = dequantize(np.asarray(a.raw(t.name)), ty), dequantize(np.asarray(b.raw(t.name)), ty)
            big = np.abs(qb) > 0.25 * np.abs(qb).max()
            ratio = qb[big] / qa[big]
            # one factor per tensor, up to the fp16 rounding of each block's scales (and of d and dmin apart)
            lo, hi = np.percentile(ratio, [1, 99])
            assert hi - lo < 3e-3 * ratio.mean(), t.name
            factors[t.name] = (t.ggml_type, float(ratio.mean()))
    assert "IQ2_XS" in {ty for ty, _ in factors.values()}
    assert max(abs(f - 1) for _, f in factors.values()) > 0.005


def test_unit_gain_only_where_types_of_different_gains_meet() -> None:
    """Given a measured imatrix, an i-quant file keeps ggml's bytes where it holds no type that ggml stores
    far from unit gain (every block tensor fell back to IQ4_NL); the best fit's and the weights-estimate
    IQ2_XS's unit gain hold whatever the types."""
    mixed = choose("auto", "IQ2_XXS", "imatrix")
    assert for_output(mixed, ["IQ2_XXS", "Q2_K", "Q5_K"]).unit_gain
    assert for_output(mixed, ["IQ4_NL", "Q4_K", "Q8_0"]) == QuantChoice("ggml", True)
    assert for_output(choose("auto", "MIXED", "imatrix"), ["IQ4_NL", "Q5_0"]).unit_gain
    assert for_output(choose("auto", "IQ2_XS", "weights"), ["IQ4_NL"]).unit_gain
    assert for_output(choose("auto", "Q4_K_M", "imatrix"), ["Q4_K"]) == choose("auto", "Q4_K_M", "imatrix")


def test_an_iquant_file_of_fallbacks_only_is_ggml_bytes(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """End to end with an imatrix: IQ2_XXS with every block tensor overridden to IQ4_NL (what a model whose
    rows 256 never divides gets) is byte for byte ``--engine ggml``'s file, while the plain IQ2_XXS mix is
    rescaled."""
    from quantpress.core.calibration import from_means, save_imatrix
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import Overrides, plan_conversion
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.gguf.source import open_source

    model = open_source(tiny("llama"))
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    rng = np.random.default_rng(0)
    with open_gguf(Path(f16.output)) as g:
        means = {t.name: rng.uniform(0.5, 2.0, t.shape[-1]).astype(np.float32) for t in g.tensors if len(t.shape) >= 2}
    imx = save_imatrix(from_means(means, n_tokens=4), tmp_path / "imatrix.gguf")
    fallbacks = Overrides(output_type="Q8_0", token_embd_type="Q8_0",
                          tensor_types=((r"blk\..*\.weight", "IQ4_NL"),))
    files = {}
    for label, engine, overrides in (("auto", "auto", fallbacks), ("ggml", "ggml", fallbacks),
                                     ("auto-mix", "auto", Overrides()), ("ggml-mix", "ggml", Overrides())):
        (tmp_path / label).mkdir()
        plan = plan_conversion(model, ["IQ2_XXS"], tmp_path / label, imatrix=imx, engine=engine, overrides=overrides)
        files[label] = Path(convert(plan)[0].output).read_bytes()
    assert files["auto"] == files["ggml"]
    assert files["auto-mix"] != files["ggml-mix"] and len(files["auto-mix"]) == len(files["ggml-mix"])
