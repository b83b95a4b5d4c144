"""Importance estimated from the weights alone (core/calibration/weights.py), on real tiny models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from quantpress.core.calibration import compute_imatrix, default_calibration_text
from quantpress.core.errors import Cancelled
from quantpress.core.gguf.convert import convert, plan_importance
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import open_source
from quantpress.core.jobs import CancelToken, Progress


def _log_error(est: np.ndarray, real: np.ndarray) -> float:
    return float(np.mean((np.log(est / est.mean()) - np.log(real / real.mean())) ** 2))


@pytest.mark.parametrize("arch", ["llama", "smollm", "qwen2", "qwen3", "gemma3", "phi3", "mistral"])
def test_estimate_covers_every_linear_and_is_closer_to_the_measured_one_than_uniform(
        tiny: Callable[[str], Path], arch: str, tmp_path: Path) -> None:
    """Same tensors and lengths as an imatrix measured on text, and in log space (what matters to a
    weighted quantizer: ratios between columns) closer to it than the flat vector plain rounding uses."""
    folder = tiny(arch)
    est = plan_importance(plan_conversion(open_source(folder), ["Q4_0"], tmp_path / "x.gguf"))
    real = compute_imatrix(folder, default_calibration_text()[:20_000], n_ctx=64, max_tokens=512)
    assert est is not None and est.n_tokens == 0 and est.datasets == ("weights",)
    assert set(est.names) == set(real.names)
    err_est = err_flat = 0.0
    for name in real.names:
        a, b = est.importance(name), real.importance(name)
        assert a is not None and b is not None and a.shape == b.shape, name
        assert np.isfinite(a).all() and (a > 0).all(), name
        err_est += _log_error(a, b)
        err_flat += _log_error(np.ones_like(b), b)
    assert err_est < 0.95 * err_flat, (err_est, err_flat)


def test_o_proj_input_is_the_variance_of_the_v_rows_it_mixes(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Layer 0 by hand: residual energy = the embeddings' mean square per column, q/k/v input =
    γ² · r / mean(r), o input column c = V row of c's KV head (GQA: heads share it)."""
    folder = tiny("llama")
    cfg = json.loads((folder / "config.json").read_text())
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    assert n_head > n_kv  # the tiny llama uses GQA, so the mapping is exercised
    from safetensors.torch import load_file  # the tiny llama is bf16, which numpy cannot hold

    w = {k: v.double().numpy() for f in folder.glob("*.safetensors") for k, v in load_file(f).items()}
    r = (w["model.embed_tokens.weight"] ** 2).mean(axis=0)
    x = w["model.layers.0.input_layernorm.weight"] ** 2 * r / r.mean()
    v_var = (w["model.layers.0.self_attn.v_proj.weight"] ** 2) @ x
    head_dim = v_var.shape[0] // n_kv
    cols = np.arange(n_head * head_dim)
    expected = v_var[(cols // head_dim) // (n_head // n_kv) * head_dim + cols % head_dim]
    est = plan_importance(plan_conversion(open_source(folder), ["Q4_0"], tmp_path / "x.gguf"))
    np.testing.assert_allclose(est.importance("blk.0.attn_q.weight"), x, rtol=1e-5)
    np.testing.assert_allclose(est.importance("blk.0.attn_output.weight"), expected, rtol=1e-4)


def test_default_conversion_uses_it_and_records_it(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tiny("qwen2")
    plan = plan_conversion(open_source(folder), ["Q4_0"], tmp_path / "out.gguf")
    assert plan.calibration.kind == "weights" and not plan.calibration.from_data
    stages: list[str] = []
    (res,) = convert(plan, report=lambda p: stages.append(p.stage))
    assert "importance" in stages and res.calibration_tokens == 0
    with open_gguf(res.output) as g:
        assert g.get("quantpress.calibration") == "weights"
        assert g.get("quantpress.calibration_tokens") is None
    plain = plan_conversion(open_source(folder), ["Q4_0"], tmp_path / "plain.gguf", calibration="none")
    assert plain.outputs[0].tensor_types == plan.outputs[0].tensor_types  # same mix, same size
    (other,) = convert(plain)
    with open_gguf(res.output) as a, open_gguf(other.output) as b:
        assert a.raw("blk.0.ffn_down.weight").tobytes() != b.raw("blk.0.ffn_down.weight").tobytes()


def test_formats_that_take_no_importance_skip_the_extra_read(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    stages: list[str] = []
    convert(plan_conversion(open_source(tiny("llama")), ["Q8_0", "F16"], tmp_path), report=lambda p: stages.append(p.stage))
    assert "importance" not in stages


def test_cancel_during_the_estimate_leaves_nothing(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    token = CancelToken()

    def report(p: Progress) -> None:
        if p.stage == "importance":
            token.cancel()

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Cancelled):
        convert(plan_conversion(open_source(tiny("llama")), ["Q4_0"], out), report=report, cancel=token)
    assert list(out.iterdir()) == []
