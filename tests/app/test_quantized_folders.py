"""GPTQ / FP8 / NF4 rows of the Convert pane: offered for a Hugging Face folder, queued as a job in a child
process, the output listed in the Evaluate pane with its format and evaluated against the original."""

from __future__ import annotations

from pathlib import Path

import pytest
from quantpress.app.jobqueue import JobState


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import tiny_model

    return tiny_model("llama", tmp_path_factory.mktemp("models"))


def test_fp8_row_queues_a_job_and_evaluate_lists_the_folder(qtbot, window, tiny_src: Path) -> None:  # type: ignore[no-untyped-def]
    from quantpress.app.convert_jobs import FOLDER_BY_KEY, available_formats
    from quantpress.app.panes.evaluate_pane import format_of
    from quantpress.core.inspect import open_model

    window.state.set_model(open_model(tiny_src))
    offered = [key for key, _, _ in available_formats(window.state.model)]
    assert {"HFQ:gptq:compressed-tensors", "HFQ:gptq:gptq", "HFQ:fp8"} <= set(offered)
    assert FOLDER_BY_KEY["HFQ:fp8"].label.startswith("FP8 W8A8")
    pane = window.convert_pane
    pane.set_selected_formats(["HFQ:fp8"])
    assert pane.selected_formats() == ["HFQ:fp8"]
    (job,) = pane.enqueue()
    assert job.title.endswith(FOLDER_BY_KEY["HFQ:fp8"].label)
    with qtbot.waitSignal(pane.queue.job_changed, timeout=300000, check_params_cb=lambda j: j is job and not j.active):
        pass
    assert job.state is JobState.DONE, job.log[-20:]
    (out,) = job.outputs
    assert out.name == f"{tiny_src.name}-FP8" and out in window.state.outputs
    assert format_of(out) == "FP8_E4M3"
    ev = window.evaluate_pane
    window.go_to("evaluate")
    assert out in ev.checked_files() and ev.reference() == tiny_src
    ev.tokens_spin.setValue(512)
    tasks = ev.run_selected()
    with qtbot.waitSignals([t.finished for t in tasks], timeout=300000):
        pass
    row = next(r for r in range(ev.table.rowCount()) if ev.table.item(r, 1).text() == "FP8_E4M3")
    assert 0 <= float(ev.table.item(row, 3).text()) < 0.05  # FP8: near-lossless
