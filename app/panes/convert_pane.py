"""Convert: pick formats, calibration and output folder, preview the plan (per-tensor types, sizes,
disk space), then queue jobs that run one after another with progress, ETA, cancel and a log.

The pane's choices become one core ``ConversionRequest`` (the object ``quantpress convert`` builds
from its arguments). All GGUF formats of a model are one job: the one-pass converter reads each
source tensor once for all of them, and the job runs the plan the preview showed when the choices
have not changed since."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from quantpress.app import settings
from quantpress.app.convert_jobs import (
    AWQ_BY_KEY,
    CALIBRATION_CHOICES,
    FOLDER_BY_KEY,
    available_formats,
    awq_job,
    conversion_job,
    describe_plan,
    folder_job,
    plan_job,
    unavailable_formats,
)
from quantpress.app.errors import show_error
from quantpress.app.format_tips import tip
from quantpress.app.icons import icon
from quantpress.app.jobqueue import Job, JobQueue
from quantpress.app.state import AppState, is_model_output
from quantpress.app.tasks import Task
from quantpress.app.widgets.common import Pane, format_bytes, hint
from quantpress.app.widgets.job_row import JobRow
from quantpress.core.choices import CalibrationKind
from quantpress.core.disk import available_bytes
from quantpress.core.errors import InvalidInput
from quantpress.core.model import ModelInfo
from quantpress.core.outputs import check_writable, default_output_dir
from quantpress.core.paths import models_dir

if TYPE_CHECKING:  # the planner imports numpy and gguf: not at the window's first paint
    from quantpress.app.best_fit_jobs import BestFitRequest
    from quantpress.core.gguf.plan import ConversionPlan
    from quantpress.core.gguf.request import ConversionRequest


def write_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or where it would be created), or None when they can."""
    try:
        check_writable(folder / "output")
    except InvalidInput as exc:
        return str(exc)
    return None


class ConvertPane(Pane):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(
            "Convert",
            "Choose one or more formats and press Add to queue. Jobs run one after another (never all at "
            "once), keep running when you switch pages, and leave nothing behind if cancelled.",
            parent,
        )
        self.state = state
        self.queue = JobQueue(state.heavy, self)
        self.queue.job_added.connect(self._on_job_added)
        self.queue.job_changed.connect(self._on_job_changed)
        self.queue.job_succeeded.connect(self._on_job_succeeded)
        self.rows: dict[int, JobRow] = {}
        self._plan_task: Task | None = None
        self._planning: tuple[ModelInfo, ConversionRequest] | None = None  # what the running preview plans
        self._previewed: tuple[ModelInfo, ConversionRequest, ConversionPlan] | None = None  # what it showed
        self._best_fit_planning: set[int] = set()  # ids of best-fit planning jobs (their result is a plan to write)
        self._build()
        state.model_changed.connect(self._on_model)
        self._on_model(state.model)

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        formats_box = QGroupBox("Formats")
        fl = QVBoxLayout(formats_box)
        self.formats_list = QListWidget()
        self.formats_list.setToolTip("Tick every format you want; each becomes one file")
        self.formats_list.setSpacing(1)
        # A click on a format's name ticks it too (not only a click on the small box).
        self._pressed_check: tuple[QListWidgetItem, Qt.CheckState] | None = None
        self.formats_list.itemPressed.connect(self._on_format_pressed)
        self.formats_list.itemClicked.connect(self._on_format_clicked)
        fl.addWidget(self.formats_list)
        left_layout.addWidget(formats_box, 1)

        options = QGroupBox("Options")
        form = QFormLayout(options)
        self.calibration_combo = QComboBox()
        for key, label, tooltip in CALIBRATION_CHOICES:
            self.calibration_combo.addItem(label, key)
            self.calibration_combo.setItemData(self.calibration_combo.count() - 1, tooltip, Qt.ItemDataRole.ToolTipRole)
        self.calibration_combo.setToolTip("Importance weights from sample text make 2-4 bit formats noticeably better")
        self.calibration_combo.currentIndexChanged.connect(self._on_calibration_changed)
        self.calibration_path = QLineEdit()
        self.calibration_path.setPlaceholderText("file for the chosen calibration")
        self.calibration_browse = QPushButton("…")
        self.calibration_browse.setFixedWidth(32)
        self.calibration_browse.clicked.connect(self._browse_calibration)
        cal_row = QHBoxLayout()
        cal_row.addWidget(self.calibration_path, 1)
        cal_row.addWidget(self.calibration_browse)
        form.addRow("Calibration", self.calibration_combo)
        form.addRow("", cal_row)
        self.out_edit = QLineEdit()
        self.out_edit.setToolTip("Folder for the converted files (created if missing)")
        out_browse = QPushButton(icon("folder"), "")
        out_browse.setToolTip("Choose the output folder")
        out_browse.clicked.connect(self._browse_out)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(out_browse)
        form.addRow("Output folder", out_row)
        self.output_type_combo = QComboBox()
        self.embed_type_combo = QComboBox()
        for combo in (self.output_type_combo, self.embed_type_combo):
            combo.addItem("as the format decides", "")
            for t in ("F32", "F16", "Q8_0", "Q6_K", "Q4_K"):
                combo.addItem(t, t)
        self.output_type_combo.setToolTip("Advanced: force the type of the output (lm_head) tensor")
        self.embed_type_combo.setToolTip("Advanced: force the type of the token embedding tensor")
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(0, 256)
        self.threads_spin.setSpecialValueText("all cores")
        self.threads_spin.setValue(int(settings.get("threads")))
        self.threads_spin.setToolTip("CPU threads for quantizing (also used by Chat); all cores is fastest")
        self.threads_spin.valueChanged.connect(self._on_threads)
        form.addRow("Threads", self.threads_spin)
        form.addRow("Output tensor", self.output_type_combo)
        form.addRow("Token embedding", self.embed_type_combo)
        left_layout.addWidget(options)
        self._on_calibration_changed()

        buttons = QHBoxLayout()
        self.preview_button = QPushButton(icon("plan"), "Preview plan")
        self.preview_button.setToolTip("Show per-tensor types, file sizes and disk space before converting")
        self.preview_button.clicked.connect(self.preview)
        self.queue_button = QPushButton(icon("play"), "Add to queue")
        self.queue_button.setToolTip("Convert the ticked formats (Ctrl+Return)")
        self.queue_button.setShortcut("Ctrl+Return")
        self.queue_button.clicked.connect(self.enqueue)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.queue_button)
        left_layout.addLayout(buttons)
        splitter.addWidget(left)

        right = QSplitter(Qt.Orientation.Vertical)
        plan_box = QGroupBox("Plan preview")
        pl = QVBoxLayout(plan_box)
        self.plan_summary = QLabel("Press Preview plan to see what will be written.")
        self.plan_summary.setWordWrap(True)
        pl.addWidget(self.plan_summary)
        self.plan_tree = QTreeWidget()
        self.plan_tree.setHeaderLabels(["Output / tensor", "Type", "Size"])
        # The names take the width left by Type and Size, so nothing scrolls sideways at 1024x640 (a
        # long name is elided in the middle, whole in its tooltip); a file's mix of types is in the
        # Type cell's tooltip, its own rows list each tensor's.
        header = self.plan_tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        fm = self.plan_tree.fontMetrics()
        self.plan_tree.setColumnWidth(1, fm.horizontalAdvance("IQ4_XS_M") + 16)
        self.plan_tree.setColumnWidth(2, fm.horizontalAdvance("999.99 MiB") + 14)
        self.plan_tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.plan_tree.setUniformRowHeights(True)
        pl.addWidget(self.plan_tree, 1)
        right.addWidget(plan_box)

        queue_box = QGroupBox("Queue")
        ql = QVBoxLayout(queue_box)
        self.queue_empty = hint("No conversions yet. Jobs you add appear here with their progress and log.")
        ql.addWidget(self.queue_empty)
        self.queue_total = QLabel()  # the whole queue: jobs left, elapsed, time left for the running one
        self.queue_total.setWordWrap(True)
        self.queue_bar = QProgressBar()
        self.queue_bar.setRange(0, 1000)
        self.queue_bar.setTextVisible(False)
        self.queue_bar.setFixedHeight(6)
        for w in (self.queue_total, self.queue_bar):
            w.hide()
            ql.addWidget(w)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        holder = QWidget()
        self.queue_layout = QVBoxLayout(holder)
        self.queue_layout.setContentsMargins(0, 0, 0, 0)
        self.queue_layout.addStretch(1)
        scroll.setWidget(holder)
        ql.addWidget(scroll, 1)
        clear = QPushButton(icon("clear"), "Clear finished")
        clear.clicked.connect(self.clear_finished)
        ql.addWidget(clear, 0, Qt.AlignmentFlag.AlignRight)
        right.addWidget(queue_box)
        right.setSizes([260, 340])
        splitter.addWidget(right)
        splitter.setSizes([340, 640])
        self.body.addWidget(splitter, 1)

    # -- model & options ---------------------------------------------------------------------------
    @Slot(object)
    def _on_model(self, model: ModelInfo | None) -> None:
        self._pressed_check = None
        self.formats_list.clear()
        self._previewed = None
        formats = available_formats(model) if model is not None else []
        refused = unavailable_formats(model) if model is not None else {}
        defaults = set(settings.get("default_formats"))
        for fmt, label, description in formats:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, fmt)
            item.setToolTip(tip(fmt, description))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if fmt in defaults and fmt not in refused else Qt.CheckState.Unchecked)
            if fmt in refused:  # listed, so the user learns why, but it cannot be ticked or queued
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setToolTip(refused[fmt])
            self.formats_list.addItem(item)
        out = default_output_dir(model) if model is not None else None
        self.out_edit.setText(str(out) if out else str(settings.get("last_output_dir")))
        self.out_edit.setToolTip(self.out_edit.text())
        self.out_edit.setPlaceholderText(f"empty: {self.default_out_dir()}")
        enabled = model is not None and bool(formats)
        for w in (self.preview_button, self.queue_button):
            w.setEnabled(enabled)
        if model is None:
            self.banner.show_message("Open a model first (Model page, Ctrl+1).", "info")
        elif not getattr(model, "convertible", True):
            self.banner.show_message(f"This model cannot be converted: {model.not_convertible_reason}", "warn")
        else:
            self.banner.clear()
        self.plan_tree.clear()
        self.plan_summary.setText("Press Preview plan to see what will be written.")

    @Slot(QListWidgetItem)
    def _on_format_pressed(self, item: QListWidgetItem) -> None:
        self._pressed_check = (item, item.checkState())

    @Slot(QListWidgetItem)
    def _on_format_clicked(self, item: QListWidgetItem) -> None:
        # A click on the box itself has already toggled it; a click on the name has not.
        if self._pressed_check == (item, item.checkState()):
            checked = item.checkState() == Qt.CheckState.Checked
            item.setCheckState(Qt.CheckState.Unchecked if checked else Qt.CheckState.Checked)
        self._pressed_check = None

    def selected_formats(self) -> list[str]:
        out = []
        for i in range(self.formats_list.count()):
            item = self.formats_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def set_selected_formats(self, formats: list[str]) -> None:
        for i in range(self.formats_list.count()):
            item = self.formats_list.item(i)
            enabled = bool(item.flags() & Qt.ItemFlag.ItemIsEnabled)  # a refused format (AWQ on MoE) stays off
            checked = enabled and item.data(Qt.ItemDataRole.UserRole) in formats
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def default_out_dir(self) -> Path:
        """Where outputs go when the Output folder is empty: the model's folder from core.outputs (for a
        model without local files, quantpress's models folder), never the process's working directory,
        which for a desktop launcher is $HOME or /."""
        model = self.state.model
        default = default_output_dir(model) if model is not None else None
        return default if default is not None else models_dir()

    def out_dir(self) -> Path:
        """The Output folder as typed; empty means the default folder, a relative path is taken beside it."""
        text = self.out_edit.text().strip()
        if not text:
            return self.default_out_dir()
        typed = Path(text).expanduser()
        return typed if typed.is_absolute() else self.default_out_dir().parent / typed

    def request(self) -> ConversionRequest:
        """The GGUF conversion the pane's choices ask for (AWQ choices use its calibration and folder)."""
        from quantpress.core.gguf.plan import Overrides
        from quantpress.core.gguf.request import ConversionRequest

        return ConversionRequest(
            formats=tuple(f for f in self.selected_formats() if f not in AWQ_BY_KEY and f not in FOLDER_BY_KEY),
            out=self.out_dir(),
            calibration=CalibrationKind(self.calibration_combo.currentData()),
            calibration_path=self.calibration_path.text().strip() or None,
            overrides=Overrides(output_type=self.output_type_combo.currentData() or None,
                                token_embd_type=self.embed_type_combo.currentData() or None),
            threads=self.threads_spin.value(),
        )

    @Slot(int)
    def _on_threads(self, value: int) -> None:
        settings.put("threads", value)

    @Slot()
    def _on_calibration_changed(self) -> None:
        needs_file = self.calibration_combo.currentData() in (CalibrationKind.FILE, CalibrationKind.IMATRIX)
        self.calibration_path.setEnabled(needs_file)
        self.calibration_browse.setEnabled(needs_file)

    @Slot()
    def _browse_calibration(self) -> None:
        kind = self.calibration_combo.currentData()
        pattern = "imatrix files (*.gguf *.dat)" if kind == CalibrationKind.IMATRIX else "Text (*.txt *.jsonl)"
        path, _ = QFileDialog.getOpenFileName(self, "Calibration file", str(settings.get("last_file_dir")), pattern)
        if path:
            settings.put("last_file_dir", str(Path(path).parent))
            self.calibration_path.setText(path)

    @Slot()
    def _browse_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if folder:
            settings.put("last_output_dir", folder)
            self.out_edit.setText(folder)

    # -- plan --------------------------------------------------------------------------------------
    @Slot()
    def preview(self) -> Task | None:
        model, request = self.state.model, self.request()
        if model is None or not request.formats:
            self.plan_summary.setText("Tick at least one GGUF format (AWQ, GPTQ, FP8 and NF4 jobs show their plan "
                                      "in their log).")
            return None
        # Planning reads the tokenizer and tensor headers (~0.5-2 s): never on the GUI thread.
        task = self.state.quick_runner().submit("plan", plan_job(model, request))
        self._planning = (model, request)
        task.succeeded.connect(self.show_plan)
        task.failed.connect(self._on_plan_failed)
        task.finished.connect(self._on_plan_finished)
        self._plan_task = task
        self.preview_button.setEnabled(False)
        self.plan_summary.setText("Planning…")
        return task

    @Slot(object)
    def _on_plan_failed(self, exc: BaseException) -> None:
        task = self.sender()
        self.plan_summary.setText("The plan could not be made (see the message).")
        show_error(self, exc, title="Cannot plan this conversion",
                   details=task.error_details if isinstance(task, Task) else "")

    @Slot()
    def _on_plan_finished(self) -> None:
        self._plan_task = None
        self.preview_button.setEnabled(self.state.model is not None)

    @Slot(object)
    def show_plan(self, plan: ConversionPlan) -> None:
        if self._planning is not None:
            self._previewed = (*self._planning, plan)  # what "Add to queue" runs if nothing changes
        outputs, total_bytes = describe_plan(plan)
        self.plan_tree.clear()
        for out in outputs:
            top = QTreeWidgetItem([out.path.name, out.format, format_bytes(out.file_bytes)])
            top.setToolTip(0, str(out.path))
            counts: dict[str, int] = {}
            for t in out.tensor_types.values():
                counts[t] = counts.get(t, 0) + 1
            top.setToolTip(1, "Tensors by type: " + ", ".join(
                f"{n}×{t}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1])))
            for name, ggml_type in out.tensor_types.items():
                child = QTreeWidgetItem(top, [name, ggml_type, ""])
                child.setToolTip(0, name)
            self.plan_tree.addTopLevelItem(top)
        if self.plan_tree.topLevelItemCount() == 1:
            self.plan_tree.topLevelItem(0).setExpanded(True)  # one file: show its per-tensor types
        folder = self.out_dir()
        unwritable = write_problem(folder)
        free = available_bytes(folder)
        disk = f"{format_bytes(free)} free in {folder}" if free is not None else f"{folder} (not created yet)"
        enough = free is None or free > total_bytes
        warning = f"  <b>Not writable: {escape(unwritable)}</b>" if unwritable else (
            "" if enough else "  <b>Not enough disk space.</b>")
        self.plan_summary.setText(
            f"{len(outputs)} file(s), {format_bytes(total_bytes)} in total (exact). Disk: {disk}." + warning)

    # -- queue -------------------------------------------------------------------------------------
    @Slot()
    def enqueue(self) -> list[Job]:
        """One job for all ticked GGUF formats (one read of the model), one per AWQ/GPTQ/FP8/NF4 choice."""
        model, formats = self.state.model, self.selected_formats()
        if model is None or not formats:
            self.plan_summary.setText("Tick at least one format.")
            return []
        settings.put("default_formats", formats)
        request = self.request()
        try:  # refuse now, with the folder named, rather than queue a job that fails with raw OS text
            check_writable(self.out_dir() / "output")
        except InvalidInput as exc:
            show_error(self, exc, title="Cannot write to the output folder")
            self.plan_summary.setText(f"<b>Not writable:</b> {escape(str(exc))}")
            return []
        if self.out_edit.text().strip():  # an empty field stays "the model's default folder"
            settings.put("last_output_dir", str(request.out))
        name, jobs = model.name or "model", []
        if request.formats:
            previewed = self._previewed
            plan = previewed[2] if previewed and previewed[0] is model and previewed[1] == request else None
            fn = conversion_job(model, request, plan)
            jobs.append(self.queue.add(Job(f"{name} → {', '.join(request.formats)}", fn, request.out)))
        for choice in (AWQ_BY_KEY[f] for f in formats if f in AWQ_BY_KEY):
            jobs.append(self.queue.add(Job(f"{name} → {choice.label}", awq_job(model, choice, request), request.out)))
        for folder_choice in (FOLDER_BY_KEY[f] for f in formats if f in FOLDER_BY_KEY):
            jobs.append(self.queue.add(Job(f"{name} → {folder_choice.label}", folder_job(model, folder_choice, request),
                                           request.out)))
        return jobs

    def enqueue_best_fit(self, request: BestFitRequest) -> Job:
        """Queue the Fit pane's "Best quality that fits" (app/best_fit_jobs.py) with this pane's
        calibration, threads and output folder: a planning job; its plan is shown in the preview and
        then queued for writing (_on_job_succeeded)."""
        from quantpress.app.best_fit_jobs import plan_job

        conversion = self.request()
        settings.put("last_output_dir", str(conversion.out))
        job = self.queue.add(Job(request.title, plan_job(request, conversion), conversion.out))
        self._best_fit_planning.add(id(job))
        return job

    def _write_planned(self, job: Job) -> Job:
        """Show a finished planning job's plan and queue the job that writes it."""
        from quantpress.app.best_fit_jobs import convert_plan_job

        plan = job.result
        self._best_fit_planning.discard(id(job))
        for line in plan.describe().splitlines():
            job.add_log(line.strip())
        self.show_plan(plan)
        out = plan.outputs[0]
        title = f"{plan.model_name or 'model'} → {out.format} {plan.target.label if plan.target else ''}".strip()
        return self.queue.add(Job(title, convert_plan_job(plan), Path(out.path).parent))

    @Slot(object)
    def _on_job_added(self, job: Job) -> None:
        row = JobRow(job)
        row.cancel_requested.connect(self.queue.cancel)
        self.rows[id(job)] = row
        self.queue_layout.insertWidget(self.queue_layout.count() - 1, row)
        self.queue_empty.hide()
        self._show_queue_total()

    @Slot(object)
    def _on_job_changed(self, job: Job) -> None:
        row = self.rows.get(id(job))
        if row is not None:
            row.refresh()
        self._show_queue_total()

    def _show_queue_total(self) -> None:
        text, fraction = self.queue.summary()
        self.queue_total.setText(f"Queue: {text}" if text else "")
        self.queue_bar.setValue(int(fraction * 1000))
        for w in (self.queue_total, self.queue_bar):
            w.setVisible(bool(text))

    @Slot(object)
    def _on_job_succeeded(self, job: Job) -> None:
        if id(job) in self._best_fit_planning:
            self._write_planned(job)
            return
        self.state.add_outputs([p for p in job.outputs if is_model_output(p)])

    @Slot()
    def clear_finished(self) -> None:
        for job in self.queue.clear_finished():
            row = self.rows.pop(id(job), None)
            if row is not None:
                row.deleteLater()
        self.queue_empty.setVisible(not self.rows)
