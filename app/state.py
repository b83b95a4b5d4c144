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
from quantpress.app.core_access import core_function
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
        """Find outputs already made from this model in the default output folder: GGUF files, AWQ
        folders, and the GGUF files inside "AWQ for GGUF" folders."""
        folder = default_output_dir(self.model)
        if folder is not None and folder.is_dir():
            found: list[Path] = []
            for p in sorted(folder.iterdir()):
                if p.name.startswith("."):
                    continue
                if is_model_output(p):
                    found.append(p)
                elif p.is_dir() and (sidecar := core_function("quantpress.core.awq.export", "SIDECAR")) \
                        and (p / sidecar).is_file():  # an "AWQ for GGUF" folder
                    found.extend(sorted(g for g in p.glob("*.gguf") if not g.name.startswith(".")))
            self.add_outputs(found)

    def shutdown(self) -> None:
        self.heavy.shutdown()
        self.chat.shutdown()


def is_model_output(path: Path) -> bool:
    """Something chat and evaluate can open: a GGUF file or a quantized output folder (AWQ, GPTQ, FP8, NF4)."""
    if path.is_file():
        return path.suffix.lower() == ".gguf"
    if not path.is_dir():
        return False
    awq_format = core_function("quantpress.core.awq.backend", "awq_format")
    try:
        return bool(awq_format) and awq_format(path) is not None
    except (OSError, ValueError):  # an unreadable config.json: not something we can open
        return False


def default_output_dir(model: Any) -> Path | None:
    """Where converted files go by default: a ``<name>-gguf`` folder next to the model source."""
    local = getattr(model, "local_path", None)
    if local is None:
        return None
    from quantpress.core.hub_download import output_parent, repo_of_snapshot

    local = Path(local)
    name = local.stem if local.is_file() else local.name
    repo = repo_of_snapshot(local)  # a Hub download: a folder in huggingface_hub's cache named by commit
    if repo:
        name = repo.split("/")[-1]
    return output_parent(local) / f"{name}-gguf"
