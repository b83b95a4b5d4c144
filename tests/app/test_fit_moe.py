"""The Fit and Model panes on a mixture-of-experts model: active/total parameters, and the
"GPU + experts in RAM" placement (llama.cpp --n-cpu-moe N), which the Chat page loads
(tests/core/chat/test_cpu_moe.py), and a screenshot of both panes for a person to look at."""

from __future__ import annotations

from pathlib import Path

from quantpress.app.widgets.common import format_bytes
from quantpress.core.estimate import estimate
from quantpress.core.hardware import GIB, detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.memory import RuntimeConfig
from tiny_models import tiny_model


def test_fit_pane_offers_experts_in_ram(qtbot, window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from quantpress.app.panes.model_pane import CARD_FIELDS

    folder = tiny_model("qwen3moe", tmp_path)
    with qtbot.waitSignal(window.state.model_changed, timeout=120000):
        window.model_pane.open_source(str(folder))
    window.go_to("model")
    shot = window.grab()  # the Model page's card: Parameters (total, active) and Experts
    assert not shot.isNull() and shot.save(str(tmp_path / "moe-model-pane.png"))
    model = open_model(folder)
    cfg = RuntimeConfig(n_ctx=512)
    roomy = detect_hardware().with_overrides(vram_gib=64, ram_gib=64)
    full = estimate(model, roomy, cfg, formats=["F16"]).formats[0]
    tight = detect_hardware().with_overrides(vram_gib=(full.vram_bytes - 1) / GIB, ram_gib=64)
    est = estimate(model, tight, cfg, formats=["F16"])
    assert est.formats[0].cpu_moe_layers == 1

    window.go_to("fit")
    window.fit_pane.show_result(est, tight)
    shot = window.grab()  # before any event runs: the page as show_result left it
    assert not shot.isNull() and shot.save(str(tmp_path / "moe-fit-pane.png"))
    fit_item = window.fit_pane.table.item(0, 6)
    assert "GPU + experts in RAM (N=1)" in fit_item.text()
    total = est.formats[0].cpu_moe_ram_bytes + est.formats[0].cpu_moe_vram_bytes  # that placement's RAM + VRAM
    assert window.fit_pane.table.item(0, 5).text() == format_bytes(total)
    assert "--n-cpu-moe 1" in fit_item.toolTip() and "Chat page loads this placement" in fit_item.toolTip()
    assert "Mixture of experts: 4 experts per layer, 2 used per token" in window.fit_pane.summary.text()
    assert "parameters active per token" in window.fit_pane.summary.text()

    params = next(f for label, f, _ in CARD_FIELDS if label == "Parameters")
    assert "active per token" in params(model)
    experts = next(f for label, f, _ in CARD_FIELDS if label == "Experts")
    assert experts(model) == "4 (2 used per token)"
