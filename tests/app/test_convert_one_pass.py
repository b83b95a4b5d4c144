"""The Convert pane asks core what ``quantpress convert`` asks: three GGUF formats are one job that runs
the previewed plan, reads each source tensor once, and writes the CLI's bytes for the same options."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quantpress.app.jobqueue import JobState
from tiny_models import tiny_model

FORMATS = ["Q8_0", "Q4_K_M", "Q6_K"]


def test_three_formats_one_job_one_read_cli_bytes(qtbot, window, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from quantpress.app import convert_jobs
    from quantpress.core.cli import main
    from quantpress.core.gguf.source import HFReader

    source = tiny_model("smollm", tmp_path / "tiny")
    reads: Counter[str] = Counter()
    slabs = HFReader.slabs

    def counted_slabs(self: HFReader, t: Any, max_rows: int) -> Iterator[Any]:
        reads[t.name] += 1
        yield from slabs(self, t, max_rows)

    ran: list[tuple[Any, ...]] = []

    def in_this_process(fn: Any, *args: Any, report: Any, cancel: Any) -> Any:
        ran.append(args)  # the child's function, here, so the read counter sees it
        return fn(*args, report=report, cancel=cancel)

    monkeypatch.setattr(HFReader, "slabs", counted_slabs)
    monkeypatch.setattr(convert_jobs, "run_isolated", in_this_process)

    with qtbot.waitSignal(window.state.model_changed, timeout=120000):
        window.model_pane.open_source(str(source))
    pane = window.convert_pane
    pane.out_edit.setText(str(tmp_path / "gui"))
    pane.set_selected_formats(FORMATS)
    pane.calibration_combo.setCurrentIndex(pane.calibration_combo.findData("none"))
    task = pane.preview()
    assert task is not None
    with qtbot.waitSignal(task.succeeded, timeout=120000):
        pass
    assert pane.plan_tree.topLevelItemCount() == len(FORMATS)

    (job,) = pane.enqueue()  # one job for the three formats
    with qtbot.waitSignal(pane.queue.job_changed, timeout=600000,
                          check_params_cb=lambda j: j is job and not j.active):
        pass
    assert job.state is JobState.DONE, job.log
    (args,) = ran
    plan = args[2]
    assert pane._previewed is not None and plan is pane._previewed[2]  # the plan it showed
    assert reads and set(reads.values()) == {1}, reads  # every source tensor read once
    assert set(reads) == {t.name for t in plan.tensors}

    assert main(["convert", str(source), *[a for f in FORMATS for a in ("-f", f)], "--calibration", "none",
                 "--out", str(tmp_path / "cli"), "--json"]) == 0
    gui = sorted(job.outputs)
    assert [p.name for p in gui] == sorted(f"{source.name}-{f}.gguf" for f in FORMATS)
    for out in gui:
        assert out.read_bytes() == (tmp_path / "cli" / out.name).read_bytes(), out.name
