"""The Fit pane's "Measure my GPU": enabled for an NVIDIA GPU, says which runtime overhead the VRAM
figures include, and runs the real probe in a child process (here, without a GPU, it fails with the
probe's own message through the error funnel)."""

from __future__ import annotations

import dataclasses

from quantpress.app.errors import hub
from quantpress.core.hardware import Gpu, detect_hardware
from quantpress.core.memory import MIB

GIB = 1024**3


def _with_gpu(gpu: Gpu):  # type: ignore[no-untyped-def]
    return dataclasses.replace(detect_hardware(), gpus=(gpu,))


def test_measure_button_and_overhead_note(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    pane = window.fit_pane
    window.go_to("fit")
    qtbot.waitUntil(lambda: window.state.hardware is not None, timeout=30000)
    if not any(g.backend == "cuda" for g in window.state.hardware.gpus):
        assert not pane.measure_button.isEnabled()

    window.state.set_hardware(_with_gpu(Gpu("NVIDIA Test GPU", 24 * GIB, 23 * GIB, "cuda", "580.1")))
    assert pane.measure_button.isEnabled()
    assert "768.00 MiB" in pane.gpu_note.text() and "not measured" in pane.gpu_note.text()

    task = pane.measure_gpu()
    assert task is not None and not pane.measure_button.isEnabled()
    with qtbot.waitSignal(hub().shown, timeout=120000) as shown:
        pass
    title, message = shown.args
    assert title == "Cannot measure the GPU" and "No NVIDIA GPU found" in message
    qtbot.waitUntil(lambda: task.done, timeout=10000)
    assert pane.measure_button.isEnabled()

    measured = Gpu("NVIDIA Test GPU", 24 * GIB, 23 * GIB, "cuda", "580.1", runtime_bytes=470 * MIB)
    window.state.set_hardware(_with_gpu(measured))
    assert "470.00 MiB" in pane.gpu_note.text() and "measured on this GPU" in pane.gpu_note.text()
