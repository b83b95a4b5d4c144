"""Evaluate: KL-divergence and perplexity of converted files against a reference file, as a table and
a size-vs-KLD chart. Results are saved by core next to each model (its sidecar) and shown again later."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from quantpress.app import settings
from quantpress.app.convert_jobs import evaluation_job
from quantpress.app.errors import show_error
from quantpress.app.icons import icon
from quantpress.app.state import AppState, is_model_output
from quantpress.app.tasks import Task
from quantpress.app.widgets.charts import Point, ScatterChart
from quantpress.app.widgets.common import Pane, format_bytes, format_seconds, hint
from quantpress.core.jobs import Progress, linear_eta

COLUMNS = ("File", "Format", "Size", "KLD mean", "KLD p99", "Top-1 agree", "Perplexity", "Δ PPL", "Scored tokens")
REFERENCE_PREFERENCE = ("F32", "BF16", "F16", "Q8_0")
_FORMAT_RE = re.compile(r"[-.]((?:I?Q\d_[A-Z0-9_]+)|F32|F16|BF16)\.gguf$", re.IGNORECASE)
_AWQ_GROUP_RE = re.compile(r"-g(\d+)$")  # app/convert_jobs.py names AWQ folders <model>-AWQ-<format>-g<size>
SOURCE_LABEL = "original"


def format_of(path: Path) -> str:
    if path.is_dir():  # an AWQ output folder, or the model's own (unquantized) folder
        if not (path / "config.json").is_file() or "quantization_config" not in (path / "config.json").read_text():
            return SOURCE_LABEL
        side = path / "quantpress_quant.json"  # GPTQ, FP8, NF4 folders (core/hfquant) name their format
        if side.is_file():
            try:
                return str(json.loads(side.read_text())["result"]["format"])
            except (OSError, ValueError, KeyError, TypeError):
                return "?"
        m = _AWQ_GROUP_RE.search(path.name)
        return f"AWQ g{m.group(1)}" if m else "AWQ"
    m = _FORMAT_RE.search(path.name)
    return m.group(1).upper() if m else "?"


def saved_results(path: Path) -> list[dict[str, Any]]:
    """Evaluations stored in ``path``'s sidecar by core (empty when none or unreadable)."""
    from quantpress.core.evaluate.sidecar import read_sidecar

    try:
        data = read_sidecar(path)
    except Exception:  # noqa: BLE001 - a broken sidecar just means no saved results to show
        return []
    evaluations = data.get("evaluations") or {}
    return [v for v in evaluations.values() if isinstance(v, dict)]


class EvaluatePane(Pane):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(
            "Evaluate",
            "How much did each format lose? quantpress compares every file's next-token predictions with a "
            "reference (the F32/F16 file, or the model's original folder) on held-out text: lower KL-divergence and higher top-1 agreement "
            "are better.",
            parent,
        )
        self.state = state
        self.tasks: list[Task] = []
        self._failed_runs: list[str] = []  # files whose evaluation failed in the current batch
        self._batch_fraction: dict[int, float] = {}  # id(task) -> its fraction, for one bar over the batch
        self._batch_started = time.monotonic()
        self.results: dict[str, dict[str, Any]] = {}  # model path -> result dict
        self._build()
        state.outputs_changed.connect(self.refresh_files)
        state.model_changed.connect(self._on_model)
        self.refresh_files()

    def _build(self) -> None:
        row = QHBoxLayout()
        self.reference_combo = QComboBox()
        self.reference_combo.setMinimumWidth(260)
        self.reference_combo.setToolTip("The file every other file is compared with: the highest precision one")
        self.reference_combo.currentIndexChanged.connect(self._mark_reference)
        self.text_combo = QComboBox()
        self.text_combo.addItem("Built-in held-out text", "")
        self.text_combo.addItem("My text file…", "file")
        self.text_combo.setToolTip("Text never used for calibration, so the numbers are honest")
        self.text_combo.activated.connect(self._on_text_choice)
        self.tokens_spin = QSpinBox()
        self.tokens_spin.setRange(1024, 262_144)  # core needs two chunks of 512
        self.tokens_spin.setSingleStep(512)
        self.tokens_spin.setValue(2048)
        self.tokens_spin.setSuffix(" tokens")
        self.tokens_spin.setToolTip("More tokens: steadier numbers, longer runs")
        for label, w in (("Reference", self.reference_combo), ("Text", self.text_combo), ("Length", self.tokens_spin)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addStretch(1)
        self.body.addLayout(row)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 6, 0)
        ll.addWidget(QLabel("Files to evaluate"))
        self.files_list = QListWidget()
        self.files_list.setToolTip("Converted files of this model; tick the ones to measure")
        # A long name loses its middle, never its format ("SmolLM2-135…Q4_K_M.gguf"; whole in its
        # tooltip), instead of being cut behind a sideways scroll bar (issue 18, 1024x640).
        self.files_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.files_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        ll.addWidget(self.files_list, 1)
        add = QPushButton(icon("file"), "Add a GGUF…")
        add.clicked.connect(self._add_file)
        ll.addWidget(add)
        add_folder = QPushButton(icon("file"), "Add a quantized folder…")
        add_folder.setToolTip("An AWQ, GPTQ, FP8 or NF4 output folder: evaluated in torch (int4 kernels for AWQ/GPTQ, "
                              "FP8/NF4 weights dequantized at load)")
        add_folder.clicked.connect(self._add_folder)
        ll.addWidget(add_folder)
        self.run_button = QPushButton(icon("play"), "Evaluate")
        self.run_button.setToolTip("Measure the ticked files (the reference pass is computed once and cached)")
        self.run_button.clicked.connect(self.run_selected)
        ll.addWidget(self.run_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        for widget in (self.progress_label, self.progress, self.cancel_button):
            ll.addWidget(widget)
            widget.hide()
        splitter.addWidget(left)

        right = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        # Every column as wide as its text (a narrow window scrolls instead of cutting "SmolLM2-…" to "Smol…").
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        tips = ("", "", "File size on disk", "Mean KL-divergence of next-token distributions (0 = identical)",
                "99th percentile of per-token KL-divergence: the bad cases", "How often both pick the same top token",
                "Perplexity on the text (lower is better)", "Perplexity minus the reference's", "Scored tokens")
        for i, t in enumerate(tips):
            if t:
                self.table.horizontalHeaderItem(i).setToolTip(t)
        right.addWidget(self.table)
        self.chart = ScatterChart()
        right.addWidget(self.chart)
        right.setSizes([220, 300])
        splitter.addWidget(right)
        splitter.setSizes([280, 700])
        self.body.addWidget(splitter, 1)
        self.footer = hint("")
        self.body.addWidget(self.footer)

    # -- files -------------------------------------------------------------------------------------
    @Slot(object)
    def _on_model(self, _model: Any) -> None:
        self.results.clear()
        self.refresh_files()

    @Slot()
    def refresh_files(self) -> None:
        checked = set(self.checked_files())
        current_ref = self.reference()
        files = list(self.state.outputs)
        source = self.source_folder() if files else None
        self.files_list.clear()
        self.reference_combo.clear()
        for path in files:
            item = QListWidgetItem(icon("file"), path.name)
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if (path in checked or not checked) else Qt.CheckState.Unchecked)
            self.files_list.addItem(item)
            self.reference_combo.addItem(path.name, str(path))
        if source is not None and source not in files:
            self.reference_combo.addItem(f"{source.name} (original folder)", str(source))
        ref = current_ref if current_ref in [*files, source] else best_reference(files, source)
        if ref is not None:
            self.reference_combo.setCurrentIndex(self.reference_combo.findData(str(ref)))
        if not files:
            self.banner.show_message("No converted files yet. Convert the model to F32 or F16 (the reference) and "
                                     "to the formats you want to compare, then come back.", "info")
        elif ref is None or (format_of(ref) not in REFERENCE_PREFERENCE and not _is_demo_source(ref)
                             and ref != source):
            self.banner.show_message("Tip: convert an F32 or F16 file to use as the reference.", "info")
        else:
            self.banner.clear()
        self.run_button.setEnabled(bool(files))
        self._mark_reference()
        self.load_saved()

    def _mark_reference(self, *_: Any) -> None:  # plain method: also connected to currentIndexChanged(int)
        """The reference is not evaluated against itself: say so in the list."""
        ref = self.reference()
        for i in range(self.files_list.count()):
            item = self.files_list.item(i)
            path = Path(item.data(Qt.ItemDataRole.UserRole))
            is_ref = ref is not None and path == ref
            item.setText(f"{path.name}  (reference)" if is_ref else path.name)
            was_ref = not (item.flags() & Qt.ItemFlag.ItemIsEnabled)
            if is_ref:
                item.setCheckState(Qt.CheckState.Unchecked)
            elif was_ref:
                item.setCheckState(Qt.CheckState.Checked)  # no longer the reference: evaluate it again
            flags = item.flags()
            flags = flags & ~Qt.ItemFlag.ItemIsEnabled if is_ref else flags | Qt.ItemFlag.ItemIsEnabled
            item.setFlags(flags)

    def checked_files(self) -> list[Path]:
        out = []
        for i in range(self.files_list.count()):
            item = self.files_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(Path(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def reference(self) -> Path | None:
        data = self.reference_combo.currentData()
        return Path(data) if data else None

    def source_folder(self) -> Path | None:
        """The open model's own Hugging Face folder: the exact reference for its AWQ outputs."""
        model = self.state.model
        local = getattr(model, "local_path", None)
        if getattr(getattr(model, "kind", None), "value", "") != "hf_folder" or local is None:
            return None
        return Path(local) if Path(local).is_dir() else None

    @Slot()
    def _add_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a GGUF file", str(settings.get("last_file_dir")),
                                              "GGUF files (*.gguf)")
        if path:
            self.state.add_outputs([Path(path)])

    @Slot()
    def _add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a quantized output folder", str(settings.get("last_file_dir")))
        if not path:
            return
        if is_model_output(Path(path)):
            self.state.add_outputs([Path(path)])
        else:
            self.banner.show_message(f"{Path(path).name} is not a quantized output folder quantpress can run (its "
                                     "config.json has no compressed-tensors pack-quantized or float-quantized, AWQ "
                                     "GEMM, GPTQ v1 or bitsandbytes NF4 quantization_config).", "warn")

    @Slot(int)
    def _on_text_choice(self, index: int) -> None:
        if self.text_combo.itemData(index) == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Evaluation text", str(settings.get("last_file_dir")),
                                                  "Text (*.txt)")
            if path:
                self.text_combo.addItem(Path(path).name, path)
                self.text_combo.setCurrentIndex(self.text_combo.count() - 1)
            else:
                self.text_combo.setCurrentIndex(0)

    # -- running -----------------------------------------------------------------------------------
    @Slot()
    def run_selected(self) -> list[Task]:
        ref = self.reference()
        files = [p for p in self.checked_files() if p != ref]
        if not files:
            self.progress_label.setText("Tick at least one file other than the reference.")
            self.progress_label.show()
            return []
        text = self.text_combo.currentData() or None
        text = text if text != "file" else None
        tasks = []
        for path in files:
            task = self.state.heavy.submit(f"evaluate {path.name}",
                                           evaluation_job(path, ref, text, self.tokens_spin.value()))
            task.progress.connect(self._on_progress)
            task.succeeded.connect(self._on_result)
            task.failed.connect(self._on_failed)
            task.finished.connect(self._on_finished)
            tasks.append(task)
        if not self.tasks:
            self._failed_runs = []  # a new batch: earlier failures are no longer news
            self._batch_fraction = {}
            self._batch_started = time.monotonic()
            self.progress.setRange(0, 0)  # busy until the first report (loading the reference takes a while)
        self._batch_fraction.update({id(t): 0.0 for t in tasks})
        self.tasks.extend(tasks)
        self._set_busy(True)
        self.progress_label.setText(f"Queued {len(tasks)} evaluation(s)…")
        return tasks

    @Slot()
    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    def _set_busy(self, busy: bool) -> None:
        for w in (self.progress, self.cancel_button):
            w.setVisible(busy)
        self.progress_label.setVisible(True)
        self.run_button.setEnabled(not busy)

    @Slot(object)
    def _on_progress(self, p: Progress) -> None:
        task = self.sender()
        # One bar for the whole batch: each file's share, so it never restarts per file.
        self._batch_fraction[id(task)] = p.fraction
        self.progress.setRange(0, 1000)
        fraction = sum(self._batch_fraction.values()) / max(1, len(self._batch_fraction))
        self.progress.setValue(int(fraction * 1000))
        name = task.name if isinstance(task, Task) else ""
        elapsed = time.monotonic() - self._batch_started
        left = linear_eta(elapsed, fraction)  # over the whole batch: the bar's own pace
        n = len(self._batch_fraction)
        self.progress_label.setText(
            f"{name}: {p.message}\n{fraction:.0%} of {n} file{'s' if n != 1 else ''} · {format_seconds(elapsed)} elapsed"
            + (f" · about {format_seconds(left)} left" if left is not None else ""))

    @Slot(object)
    def _on_result(self, result: Any) -> None:
        self.results[str(result.model)] = _as_dict(result)
        self.show_results()

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        task = self.sender()
        self._failed_runs.append(task.name.removeprefix("evaluate ") if isinstance(task, Task) else "")
        show_error(self, exc, title="Evaluation failed", details=task.error_details if isinstance(task, Task) else "")

    @Slot()
    def _on_finished(self) -> None:
        self._batch_fraction[id(self.sender())] = 1.0
        self.tasks = [t for t in self.tasks if t is not self.sender()]
        if not self.tasks:
            self._set_busy(False)
            if self._failed_runs:  # never "Done." over a failure
                self.progress_label.setText(f"Failed: {', '.join(self._failed_runs)} (see the message).")
            else:
                self.progress_label.setText("Done." if self.results else "")

    # -- results -----------------------------------------------------------------------------------
    def load_saved(self) -> None:
        """Show results saved earlier (sidecars), for the current reference when there is one."""
        ref = self.reference()
        for path in self.state.outputs:
            if str(path) in self.results:
                continue
            saved = saved_results(path)
            match = [r for r in saved if ref is not None and r.get("reference") and Path(r["reference"]).name == ref.name]
            chosen = (match or saved)[-1:] if saved else []
            if chosen:
                self.results[str(path)] = chosen[0]
        self.show_results()

    def show_results(self) -> None:
        rows = sorted(self.results.values(), key=lambda r: r.get("model_bytes", 0))
        self.table.setRowCount(len(rows))
        points = []
        for r, res in enumerate(rows):
            path = Path(str(res.get("model")))
            fmt = format_of(path)
            values = (path.name, fmt, format_bytes(res.get("model_bytes", 0)), _num(res.get("kld_mean"), 5),
                      _num(res.get("kld_p99"), 4), _pct(res.get("top1_agreement")), _num(res.get("perplexity"), 3),
                      _signed(res.get("delta_perplexity")), str(res.get("tokens", "")))
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 0:
                    ref = res.get("reference")
                    item.setToolTip(f"{path}\nreference: {ref or 'none'}")
                self.table.setItem(r, c, item)
            if res.get("kld_mean") is not None:
                points.append(Point(fmt, float(res.get("model_bytes", 0)), float(res["kld_mean"])))
        self.chart.set_points(points)
        refs = {(Path(str(r["reference"])).name, float(r["reference_perplexity"])) for r in rows
                if r.get("reference") and r.get("reference_perplexity") is not None}
        ref_line = "; ".join(f"Reference {name}: perplexity {ppl:.3f}" for name, ppl in sorted(refs))
        saved = "Results are saved next to each file (its .json sidecar) and shown again when you reopen the model."
        self.footer.setText(f"{ref_line} (Δ PPL is each file's perplexity minus this).\n{saved}" if ref_line
                            else saved if rows else "")


def _is_demo_source(path: Path) -> bool:
    """The demo's own GGUF holds exactly the demo folder's weights: a faithful reference."""
    from quantpress.core.demo import GGUF_NAME

    return path.name == GGUF_NAME


def best_reference(files: list[Path], source: Path | None = None) -> Path | None:
    """F32/BF16/F16 GGUF first; then the demo's own GGUF or the model's original folder (both exact);
    then Q8_0; else the largest file."""
    demo = [p for p in files if _is_demo_source(p)]
    for fmt in REFERENCE_PREFERENCE:
        if fmt == "Q8_0" and (demo or source is not None):
            return demo[0] if demo else source
        for path in files:
            if format_of(path) == fmt:
                return path
    return max(files, key=lambda p: p.stat().st_size if p.exists() else 0) if files else None


def _as_dict(result: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(result)
    d["model"] = str(result.model)
    d["reference"] = str(result.reference) if result.reference else None
    return d


def _num(v: Any, digits: int) -> str:
    return "–" if v is None else f"{float(v):.{digits}f}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{float(v) * 100:.1f}%"


def _signed(v: Any) -> str:
    return "–" if v is None else f"{float(v):+.3f}"
