"""The Convert pane on a mixture-of-experts model: the AWQ outputs are listed but disabled, with the
refusal (naming the family) as their tooltip, so they can be neither ticked nor queued; GGUF stays."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from quantpress.app.convert_jobs import AWQ_CHOICES, unavailable_formats
from quantpress.core.inspect import open_model
from tiny_models import tiny_model


def test_awq_disabled_for_moe(qtbot, window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = open_model(tiny_model("mixtral", tmp_path))
    refused = unavailable_formats(model)
    assert set(refused) == {c.key for c in AWQ_CHOICES}
    pane = window.convert_pane
    with qtbot.waitSignal(window.state.model_changed, timeout=10000):
        window.state.set_model(model)
    items = {pane.formats_list.item(i).data(Qt.ItemDataRole.UserRole): pane.formats_list.item(i)
             for i in range(pane.formats_list.count())}
    for key in refused:
        item = items[key]
        assert not item.flags() & Qt.ItemFlag.ItemIsEnabled
        assert "mixture-of-experts" in item.toolTip() and "MixtralForCausalLM" in item.toolTip()
    assert items["Q4_K_M"].flags() & Qt.ItemFlag.ItemIsEnabled
    pane.set_selected_formats([*refused, "Q4_K_M"])
    assert pane.selected_formats() == ["Q4_K_M"]  # the AWQ outputs cannot be ticked, so none is queued
