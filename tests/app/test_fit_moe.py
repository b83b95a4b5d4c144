"""The Fit and Model panes on a mixture-of-experts model: active/total parameters, and the
"GPU + experts in RAM" placement (llama.cpp --n-cpu-moe N) with the note that this app's chat cannot
load it (llama-cpp-python has no tensor buffer overrides)."""

from __future__ import annotations

from pathlib import Path

from quantpress.core.estimate import estimate
from quantpress.core.hardware import GIB, detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.memory import RuntimeConfig
from tiny_models import tiny_model


def test_fit_pane_offers_experts_in_ram(qtbot, window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from quantpress.app.panes.model_pane import CARD_FIELDS

    model = open_model(tiny_model("qwen3moe", tmp_path))
    cfg = RuntimeConfig(n_ctx=512)
    roomy = detect_hardware().with_overrides(vram_gib=64, ram_gib=64)
    full = estimate(model, roomy, cfg, formats=["F16"]).formats[0]
    tight = detect_hardware().with_overrides(vram_gib=(full.vram_bytes - 1) / GIB, ram_gib=64)
    est = estimate(model, tight, cfg, formats=["F16"])
    assert est.formats[0].cpu_moe_layers == 1

    window.fit_pane.show_result(est, tight)
    fit_item = window.fit_pane.table.item(0, 6)
    assert "GPU + experts in RAM (N=1)" in fit_item.text()
    assert "--n-cpu-moe 1" in fit_item.toolTip() and "cannot load this placement" in fit_item.toolTip()

    params = next(f for label, f, _ in CARD_FIELDS if label == "Parameters")
    assert "active per token" in params(model)
