"""AWQ output folders in the Evaluate pane: found next to the model, listed with their format, compared
with the model's original folder through the one worker pattern (evaluation in a child process)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_with_awq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny llama and its AWQ output in the model's default output folder (where the GUI writes it)."""
    from quantpress.core.awq.pipeline import awq_convert
    from quantpress.core.awq.run import AwqSettings
    from tiny_models import tiny_model

    src = tiny_model("llama", tmp_path_factory.mktemp("models"))
    out = src.parent / f"{src.name}-gguf" / f"{src.name}-AWQ-compressed-tensors-g128"
    out.parent.mkdir()
    awq_convert(src, out, settings=AwqSettings(samples=4, seqlen=64, search_samples=2, batch_rows=2, n_grid=6))
    return src, out


def test_awq_folder_is_listed_and_evaluated_against_the_original(qtbot, window, tiny_with_awq) -> None:  # type: ignore[no-untyped-def]
    from quantpress.app.panes.evaluate_pane import format_of
    from quantpress.core.inspect import open_model

    src, awq = tiny_with_awq
    window.state.set_model(open_model(src))
    assert awq in window.state.outputs  # scan_outputs found the folder
    ev = window.evaluate_pane
    window.go_to("evaluate")
    assert ev.checked_files() == [awq]
    assert format_of(awq) == "AWQ g128" and format_of(src) == "original"
    assert ev.reference() == src  # no F32/F16 GGUF: the original folder is the exact reference
    ev.tokens_spin.setValue(1024)
    tasks = ev.run_selected()
    assert len(tasks) == 1
    with qtbot.waitSignals([t.finished for t in tasks], timeout=300000):
        pass
    assert ev.table.rowCount() == 1
    assert ev.table.item(0, 1).text() == "AWQ g128"
    assert 0 < float(ev.table.item(0, 3).text()) < 1
    assert len(ev.chart.points) == 1
