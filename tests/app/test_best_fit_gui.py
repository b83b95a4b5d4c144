"""Fit pane → "Best quality that fits" → a Convert-queue job that chooses the types for the chosen
context and what-if RAM and writes the file (real window, real runner, real child process)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from quantpress.app.jobqueue import JobState
from tiny_models import tiny_model


def test_best_quality_that_fits_goes_to_the_convert_queue(qtbot, window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_model("llama", tmp_path / "models")
    with qtbot.waitSignal(window.state.model_changed, timeout=120000):
        window.model_pane.open_source(str(folder))
    if window.state.hardware is None:
        with qtbot.waitSignal(window.state.hardware_changed, timeout=60000):
            pass
    fit = window.fit_pane
    window.go_to("fit")
    fit.whatif_check.setChecked(True)
    fit.vram_spin.setValue(0)  # no GPU: the file must fit the RAM
    fit.ram_spin.setValue(1.0)
    fit.ctx_spin.setValue(512)
    fit.kv_combo.setCurrentIndex(fit.kv_combo.findData("q8_0"))
    with qtbot.waitSignal(fit.estimated, timeout=120000):
        fit.refresh()
    assert fit.best_fit_button.isEnabled()
    window.convert_pane.out_edit.setText(str(tmp_path / "out"))
    with qtbot.waitSignal(fit.best_fit_requested, timeout=10000) as requested:
        qtbot.mouseClick(fit.best_fit_button, Qt.MouseButton.LeftButton)
    request = requested.args[0]
    assert (request.device, request.ctx_tokens, request.kv_type) == ("ram", 512, "q8_0")
    assert window.stack.currentWidget() is window.convert_pane
    pane = window.convert_pane
    (planning,) = pane.queue.active()
    with qtbot.waitSignal(pane.queue.job_added, timeout=600000) as added:  # planned: the writing job is queued
        pass
    assert planning.state is JobState.DONE, planning.log
    assert any("target ram-512-q8_0" in line for line in planning.log), planning.log  # the plan, shown first
    top = pane.plan_tree.topLevelItem(0)  # ... and in the plan preview, tensor by tensor
    assert "MIXED" in top.text(0) and top.childCount() == len(planning.result.outputs[0].tensor_types)
    job = added.args[0]
    with qtbot.waitSignal(pane.queue.job_changed, timeout=600000,
                          check_params_cb=lambda j: j is job and j.state not in (JobState.QUEUED, JobState.RUNNING)):
        pass
    assert job.state is JobState.DONE, job.log
    (out,) = job.outputs
    assert out.exists() and "MIXED-ram-512-q8_0" in out.name
    assert out.stat().st_size == planning.result.outputs[0].file_bytes
    plan = json.loads(Path(str(out) + ".json").read_text())["plan"]
    assert plan["target"]["kind"] == "fit-ram" and plan["target"]["ctx_tokens"] == 512
    assert 0 < plan["target"]["memory_bytes"] <= plan["target"]["budget_bytes"] == 1024**3
    assert out in window.state.outputs
