"""The runtime probe (core/gguf/runtime_probe.py) on a tiny real model: a category stored at a type in the
F16 copy costs llama.cpp exactly what a GGUF holding those stored tensors costs, the copy is restored
byte for byte after each run, the measured model replaces the planner's losses as documented, and the
plan says which sensitivity it used (falling back, with a warning, where the runtime cannot run)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from dead_process import dead_pid
from quantpress.core.calibration.text import default_calibration_text
from quantpress.core.gguf import runtime_probe as rp
from quantpress.core.gguf.best_fit import plan_best_fit
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import Overrides, plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import TensorPlan, open_source
from quantpress.core.gguf.targets import Target
from quantpress.core.gguf.tensor_errors import TensorErrors
from quantpress.core.quant import decode, quantize_tensor


@pytest.fixture(scope="module")
def model(tiny: Callable[[str], Path]) -> Path:
    return tiny("llama")


def test_categories_and_probe_types() -> None:
    assert rp.category("blk.3.attn_q.weight") == "attn_q.weight"
    assert rp.category("token_embd.weight") == "token_embd.weight"
    assert rp.probe_type(("Q2_K", "Q3_K", "IQ4_XS", "IQ4_NL", "Q4_K", "Q5_0")) == "Q5_0"
    assert rp.probe_type(("Q8_0",)) is None


def _errors(name: str, loss: dict[str, float]) -> TensorErrors:
    return TensorErrors(name, 10, 10, 1.0, loss)


def test_probe_points_and_the_measured_model() -> None:
    errors = {"blk.0.ffn_down.weight": _errors("blk.0.ffn_down.weight", {"Q2_K": 8.0, "Q5_0": 2.0, "Q6_K": 0.5}),
              "blk.1.ffn_down.weight": _errors("blk.1.ffn_down.weight", {"Q2_K": 4.0, "Q5_0": 1.0, "Q6_K": 0.25}),
              "blk.0.attn_q.weight": _errors("blk.0.attn_q.weight", {"Q8_0": 1.0})}
    cands = {"blk.0.ffn_down.weight": ("Q2_K", "Q5_0", "Q6_K"), "blk.1.ffn_down.weight": ("Q2_K", "Q5_0", "Q6_K"),
             "blk.0.attn_q.weight": ("Q8_0",)}
    points = rp.probe_points(errors, cands, {"blk.0.ffn_down.weight": 100, "blk.1.ffn_down.weight": 300,
                                             "blk.0.attn_q.weight": 50})
    assert set(points) == {"blk.0.ffn_down.weight", "blk.1.ffn_down.weight"}  # attn_q: no probe type
    assert points["blk.0.ffn_down.weight"] == rp.Point(100, ("Q5_0", 2.0), ("Q2_K", 8.0))
    # measured: 0.04 for all ffn_down at Q5_0 (400 elements: 1e-4 each), 8x that at Q2_K for a 4x error
    exponent = rp._exponent(0.04, _plans(points), _plans(points), points, 0.32)
    assert exponent == pytest.approx(1.5)
    factor = rp.CategoryFactor("ffn_down.weight", 2, 400, 3.0, 0.04, exponent)
    out = rp.calibrated(errors, points, [factor])
    # each tensor at its probe type costs the category's measured loss per element times its size
    # (the estimate's 2:1 between the two is not used), elsewhere (own ratio)^exponent of that
    assert out["blk.0.ffn_down.weight"].loss == pytest.approx({"Q2_K": 0.01 * 8, "Q5_0": 0.01, "Q6_K": 0.01 / 8})
    assert out["blk.1.ffn_down.weight"].loss == pytest.approx({"Q2_K": 0.03 * 8, "Q5_0": 0.03, "Q6_K": 0.03 / 8})
    # not measured: the estimate times the median measured / predicted
    assert out["blk.0.attn_q.weight"].loss == pytest.approx({"Q8_0": 0.04 / 3.0})


def _plans(points: dict[str, rp.Point]) -> list[TensorPlan]:
    return [TensorPlan(n, (1, p.elements), "", "", "F32") for n, p in points.items()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kl(a: Path, b: Path) -> float:
    """KL(llama.cpp on ``a`` ‖ on ``b``) over the probe's tokens."""
    runner = rp._Runner(a, default_calibration_text(), 0)
    try:
        runner.path = b
        return runner._fresh_kl()
    finally:
        runner.close()


def test_kl_rows_is_the_log_softmax_kl() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 4, (8, 500)).astype(np.float32)
    p = np.exp(rp._log_softmax(ref.astype(np.float64)))
    for spread in (1e-4, 1e-2, 1.0, 200.0):  # the last overflows expm1: the log-softmax way takes over
        z = (ref + rng.normal(0, spread, ref.shape)).astype(np.float32)
        lq = rp._log_softmax(z.astype(np.float64))
        expected = np.sum(p * (np.log(p) - lq), axis=1)
        got = rp._kl_rows(p.astype(np.float32), ref, z)
        assert got == pytest.approx(expected, rel=1e-3, abs=1e-12)
    assert rp._kl_rows(p.astype(np.float32), ref, ref.copy()) == pytest.approx(0.0, abs=1e-12)


def test_a_category_in_the_copy_costs_what_the_stored_file_costs(model: Path, tmp_path: Path) -> None:
    info = open_source(model)
    base_plan = plan_conversion(info, ["F16"], tmp_path / "base", calibration="none")
    (tmp_path / "base").mkdir()
    convert(base_plan)
    base = Path(base_plan.outputs[0].path)
    before = _sha(base)
    tensors = [t for t in base_plan.tensors if t.name.endswith("ffn_up.weight")]

    # the oracle: llama-quantize's way of storing those tensors at Q4_K, the rest F16, written by the converter
    oracle_plan = plan_conversion(info, ["F16"], tmp_path / "oracle", calibration="none",
                                  overrides=Overrides(tensor_types=(("ffn_up", "Q4_K"),)))
    (tmp_path / "oracle").mkdir()
    convert(oracle_plan)
    expected = _kl(base, Path(oracle_plan.outputs[0].path))

    def stored(t: TensorPlan, ggml_type: str) -> np.ndarray:
        with open_gguf(base) as f:
            x = np.asarray(f.dequantize(t.name), dtype=np.float32).reshape(-1, t.shape[-1])
        return decode(quantize_tensor(x, ggml_type, None, 1, "ggml"), ggml_type, x.shape[1])

    with open_gguf(base) as f:
        where = {t.name: t for t in f.tensors}
    runner = rp._Runner(base, default_calibration_text(), 0)
    try:
        measured = runner.kl_with(base, tmp_path, where, [(t, "Q4_K") for t in tensors], stored)
        again = runner.kl()
        # the loaded model computed from the patched file itself (no reload): the same as a fresh load of it
        assert runner.live is True
        runner.live = False
        reloaded = runner.kl_with(base, tmp_path, where, [(t, "Q4_K") for t in tensors], stored)
        # a backend that copied the weights (or some types of them) at load would show the reference's
        # logits after a patch, even after earlier runs saw theirs: the runner notices and loads the file
        # afresh from then on
        runner.live = True
        mapped = runner._logits
        runner._logits = lambda llm: runner.ref if llm is runner.llm else mapped(llm)  # type: ignore[method-assign]
        copied = runner.kl_with(base, tmp_path, where, [(t, "Q4_K") for t in tensors], stored)
        assert runner.live is False
        # the KL taken KL_ROWS tokens at a time on the runner's threads: the same to the bit as in one piece
        z = runner.ref + np.random.default_rng(1).normal(0, 0.01, runner.ref.shape).astype(np.float32)
        assert len(z) > rp.KL_ROWS
        assert runner._mean_kl(z) == float(np.mean(rp._kl_rows(runner.p, runner.ref, z)))
    finally:
        runner.close()
    assert expected > 1e-6
    assert measured == pytest.approx(expected, rel=0.02)
    assert reloaded == pytest.approx(measured, rel=1e-6)
    assert copied == pytest.approx(measured, rel=1e-6)
    assert again == pytest.approx(0.0, abs=1e-9)
    assert _sha(base) == before  # put back byte for byte
    assert not list(tmp_path.glob("backup-*"))


def test_the_plan_uses_the_probe_and_falls_back_when_it_cannot_run(model: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    info = open_source(model)
    size = plan_conversion(info, ["Q4_K_M"], tmp_path).outputs[0].file_bytes
    killed = Path(rp.tempfile.gettempdir()) / f"quantpress-probe-{dead_pid()}-x"  # a planner killed outright
    (killed / "sub").mkdir(parents=True)
    left = set(Path(rp.tempfile.gettempdir()).glob("quantpress-probe-*")) - {killed}
    plan = plan_best_fit(info, Target.size(size), tmp_path)
    assert plan.target is not None and plan.target.sensitivity == "runtime"
    assert set(Path(rp.tempfile.gettempdir()).glob("quantpress-probe-*")) == left  # its own copy and the stale one gone

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("unknown model architecture")

    monkeypatch.setattr(rp._Runner, "__init__", refuse)
    plan = plan_best_fit(info, Target.size(size), tmp_path, reuse=False)  # not the losses the first plan kept
    assert plan.target is not None and plan.target.sensitivity == "weights"
    assert any("runtime probe failed (unknown model architecture)" in w for w in plan.warnings)
    assert plan.outputs[0].file_bytes <= size
    assert set(Path(rp.tempfile.gettempdir()).glob("quantpress-probe-*")) == left
