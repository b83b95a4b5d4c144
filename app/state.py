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


class AppState(QObject):
    model_changed = Signal(object)
    model_loading = Signal(str)
    hardware_changed = Signal(object)
    outputs_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.heavy = Runner("heavy", self)
        self.chat = Runner("chat", self)
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

    def scan_outputs(self) -> None:
        """Find GGUF files already converted from this model (the default output folder)."""
        folder = default_output_dir(self.model)
        if folder is not None and folder.is_dir():
            found = sorted(p for p in folder.glob("*.gguf") if not p.name.startswith("."))
            self.add_outputs(found)

    def shutdown(self) -> None:
        self.heavy.shutdown()
        self.chat.shutdown()


def default_output_dir(model: Any) -> Path | None:
    """Where converted files go by default: a ``<name>-gguf`` folder next to the model source."""
    local = getattr(model, "local_path", None)
    if local is None:
        return None
    local = Path(local)
    base = local.parent if local.is_file() else local.parent
    name = local.stem if local.is_file() else local.name
    return base / f"{name}-gguf"
