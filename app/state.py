"""What the panes share: the open model, the hardware, the two runners and the converted outputs.

Signals:
    model_changed(object): a ModelInfo was opened (or None when closed).
    model_loading(str): a model source started opening.
    hardware_changed(object): detect_hardware() answered (a Hardware).
    outputs_changed(): the list of converted files of the current model changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from quantpress.app.tasks import Runner
from quantpress.core.outputs import default_output_dir


class AppState(QObject):
    model_changed = Signal(object)
    model_loading = Signal(str)
    hardware_changed = Signal(object)
    outputs_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.heavy = Runner("heavy", self)
        self.chat = Runner("chat", self)
        # Model B of an A/B chat has its own runner thread, so both answers stream at once (each
        # model is a process of its own; a runner thread only waits on its pipe), while the
        # requests to one model stay in order (its pipe takes one at a time).
        self.chat_b = Runner("chat-b", self)
        self.model: Any = None  # ModelInfo
        self.hardware: Any = None  # Hardware
        self.outputs: list[Path] = []  # converted files known for the current model

    def quick_runner(self) -> Runner:
        """For short jobs (opening a model, detecting hardware): the heavy runner unless it is busy
        with a long job, then the chat runner, so a 2-hour conversion never blocks opening a model."""
        if self.heavy.active() and not self.chat.active():
            return self.chat
        return self.heavy

    def set_model(self, model: Any) -> None:
        self.model = model
        self.outputs = []
        self.model_changed.emit(model)
        self.scan_outputs()

    def set_hardware(self, hardware: Any) -> None:
        self.hardware = hardware
        self.hardware_changed.emit(hardware)

    def add_outputs(self, paths: list[Path]) -> None:
        changed = False
        for path in paths:
            if path not in self.outputs:
                self.outputs.append(path)
                changed = True
        if changed:
            self.outputs_changed.emit()

    def remove_outputs(self, paths: list[Path]) -> None:
        """Forget files that turned out unusable (a GGUF that failed to load), so no list offers them again."""
        kept = [p for p in self.outputs if p not in paths]
        if len(kept) != len(self.outputs):
            self.outputs = kept
            self.outputs_changed.emit()

    def scan_outputs(self) -> None:
        """Find outputs already made from this model in the default output folder: GGUF files, AWQ
        folders, and the GGUF files inside "AWQ for GGUF" folders."""
        from quantpress.core.awq.export import SIDECAR  # numpy: not at the window's first paint

        folder = default_output_dir(self.model) if self.model is not None else None
        if folder is not None and folder.is_dir():
            found: list[Path] = []
            for p in sorted(folder.iterdir()):
                if p.name.startswith("."):
                    continue
                if is_model_output(p):
                    found.append(p)
                elif p.is_dir() and (p / SIDECAR).is_file():  # an "AWQ for GGUF" folder
                    found.extend(sorted(g for g in p.glob("*.gguf") if not g.name.startswith(".")))
            self.add_outputs(found)

    def runners(self) -> tuple[Runner, ...]:
        return (self.heavy, self.chat, self.chat_b)

    def shutdown(self) -> None:
        for runner in self.runners():
            runner.shutdown()


def is_model_output(path: Path) -> bool:
    """Something chat and evaluate can open: a GGUF file or a quantized output folder (AWQ, GPTQ, FP8, NF4)."""
    if path.is_file():
        return path.suffix.lower() == ".gguf"
    if not path.is_dir():
        return False
    from quantpress.core.awq.backend import awq_format

    try:
        return awq_format(path) is not None
    except (OSError, ValueError):  # an unreadable config.json: not something we can open
        return False
